"""Every verb's flags, declared once: the CLI parsers, `--help`, the README flag tables and the Flex Template
metadata are all built from `VERBS`. Pipeline verbs declare their flags as Beam `PipelineOptions`, so Beam's own
flags (runner, project, workers, ...) pass through to the runner untouched."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from transforms.dedup.normalize import Normalization
from transforms.io.read import DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_SPLIT_BYTES
from transforms.score.train import REFERENCE_WEIGHT


class UserError(Exception):
    """A problem the user caused and can fix: printed as one line, exit status 2."""


# Value types: the message (not the function's name) is what a user sees after the flag's name.
def fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value!r}")
    return x


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return n


def run_id(value: str) -> str:
    """A run identity is written into every provenance row and the summary line: printable, one line, bounded."""
    if not value or len(value) > 200 or not value.isprintable():
        raise argparse.ArgumentTypeError(f"expected 1-200 printable characters on one line, got {value[:60]!r}")
    return value


def count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return n


def integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def _within(parse, low: int, high: int | None = None, unit: str = ""):
    """An argparse type: `parse`, then refused outside [low, high] (no upper end when `high` is None)."""
    def check(value: str) -> int:
        n = parse(value)
        if n < low or (high is not None and n > high):
            span = f"from {low:,} to {high:,}" if high is not None else f">= {low:,}"
            raise argparse.ArgumentTypeError(f"expected a whole number{unit} {span}, got {value!r}")
        return n
    return check


MAX_SEED = (1 << 31) - 1  # numpy's RandomState takes < 2**32 and fastText a C int
MAX_PERMUTATIONS = 4096  # a 32 KiB signature per document; 10**12 allocated terabytes before anything ran
MIN_SPLIT_BYTES = 4096  # a unit of work per few bytes: --split_bytes=1 read a 289 KB file in 3 minutes, not 8 s
MAX_ROUNDS = 64  # each round is a few transforms in the graph: 10**9 rounds never finished building it
MAX_DOCUMENT_BYTES = 1 << 30  # every reader holds up to this much of one record: a petabyte bounds nothing
seed = _within(integer, 0, MAX_SEED)
permutations = _within(positive_int, 1, MAX_PERMUTATIONS)
split_size = _within(positive_int, MIN_SPLIT_BYTES, unit=" of bytes")
rounds = _within(count, 0, MAX_ROUNDS)
document_bytes = _within(positive_int, 1, MAX_DOCUMENT_BYTES, unit=" of bytes")


def normalization(value: str) -> str:
    try:
        Normalization.parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


class CommonOptions(PipelineOptions):
    """Where outputs go: shared by curate, refresh and mix."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--output", help="output folder (local or gs://)")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace the outputs of an earlier run in a non-empty output folder")
        parser.add_argument("--rows_per_shard", type=positive_int, default=100_000,
                            help="rows per output Parquet/JSONL shard (bounds a writer's memory)")


class CurateOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", nargs="+",
                            help="crawl shard paths or globs, local or gs://; the format comes from the extension "
                                 "(.warc[.gz], .wet[.gz], .jsonl/.json/.ndjson[.gz/.zst], .parquet)")
        parser.add_argument("--max_document_bytes", type=document_bytes, default=DEFAULT_MAX_DOCUMENT_BYTES,
                            help="records or texts larger than this many bytes are dropped as too_large (at most "
                                 "1 GiB)")
        parser.add_argument("--split_bytes", type=split_size, default=DEFAULT_SPLIT_BYTES,
                            help="compressed bytes per unit of reading work for WARC.gz, plain JSONL and Parquet "
                                 "(whole row groups)")
        parser.add_argument("--seed", type=seed, default=1, help="seed of every hash permutation and sample")
        parser.add_argument("--run_id", type=run_id,
                            help="run identity in provenance (default: derived from the config hash)")
        parser.add_argument("--no_exact_dedup", action="store_true", help="skip exact deduplication")
        parser.add_argument("--exact_normalization", type=normalization, default="nfkc,casefold,whitespace",
                            help="steps before the exact-dedup hash: any of nfkc, casefold, whitespace, or none")
        parser.add_argument("--no_near_dedup", action="store_true", help="skip near-duplicate removal")
        parser.add_argument("--ngram", type=positive_int, default=5, help="words per MinHash shingle")
        parser.add_argument("--num_perm", type=permutations, default=128, help="MinHash permutations")
        parser.add_argument("--threshold", type=fraction, default=0.8, help="near-duplicate Jaccard threshold")
        parser.add_argument("--bands", type=positive_int, help="LSH bands (default: derived from --threshold)")
        parser.add_argument("--rows", type=positive_int, help="LSH rows per band (give with --bands)")
        parser.add_argument("--max_bucket_size", type=positive_int, default=5000,
                            help="LSH buckets larger than this are counted and contribute no candidate pairs")
        parser.add_argument("--cc_rounds", type=rounds, default=6, help="large-star/small-star rounds before union-find")
        parser.add_argument("--max_residual_edges", type=positive_int, default=1_000_000,
                            help="fail if connected components leave more residual edges than this")
        parser.add_argument("--no_score", action="store_true", help="skip AI-likelihood scoring")
        parser.add_argument("--human_reference", nargs="+",
                            help="human documents (globs, local or gs://) used as reference besides this run's "
                                 "pre-LLM documents: curated Parquet of an earlier run, or raw crawl files")
        parser.add_argument("--detector_model", default=None,
                            help="folder with model.ftz and model_card.json, local or gs:// (default: the bundled "
                                 "model)")


class MixOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--config", help="mix YAML file (local or gs://)")


class RefreshOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--index", help="refresh index folder (local or gs://); created by the first refresh")


def _sample_args(parser):
    parser.add_argument("--output", default="sample_crawl", help="folder for the sample crawl (local or gs://)")


def _demo_args(parser):
    parser.add_argument("--output", default="out/demo", help="folder for every output of the demo")


def _inspect_args(parser):
    parser.add_argument("doc_id", metavar="DOC_ID", help="the document's id (as in OUT/documents)")
    parser.add_argument("--output", help="a curate or refresh output folder")


def _train_detector_args(parser):
    parser.add_argument("--data", nargs="+", help="labelled JSONL.gz files (text, label, domain, ...)")
    parser.add_argument("--out", help="folder for model.ftz and model_card.json")
    parser.add_argument("--seed", type=seed, default=1, help="seed of the split and of fastText")
    parser.add_argument("--no_lodo", action="store_true", help="skip the leave-one-dataset-out evaluation (the card "
                        "then bounds no out-of-domain TPR: every share interval made with the model reaches 1)")
    parser.add_argument("--limit_per_file", type=positive_int,
                        help="use a keyed-hash sample (by --seed) of at most this many records per file, spread over "
                             "the file (not its first lines)")
    parser.add_argument("--human_reference", nargs="+",
                        help="curated Parquet (globs, local or gs://) whose documents join training as human examples")
    parser.add_argument("--reference_weight", type=positive_int, default=REFERENCE_WEIGHT,
                        help="times each reference document is repeated in training")


def _report_args(parser):
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON on stdout")


@dataclass(frozen=True)
class Verb:
    """A verb's flags (groups of (title, add_arguments)), the ones it requires, and its help texts."""

    name: str
    summary: str
    example: str
    groups: tuple[tuple[str, Callable], ...]
    required: tuple[str, ...] = ()
    pipeline: bool = False  # builds a Beam pipeline: Beam's own flags pass through

    @property
    def pipeline_options(self) -> tuple[type, ...]:
        """The PipelineOptions classes behind its groups (what the Flex Template offers)."""
        return tuple(add.__self__ for _, add in self.groups if isinstance(getattr(add, "__self__", None), type))


_OUT = ("output", CommonOptions._add_argparse_args)
_CURATE = ("curate", CurateOptions._add_argparse_args)
_REPORT = ("report", _report_args)

VERBS = {v.name: v for v in (
    Verb("curate", "read, clean, deduplicate and score crawl shards, accounting for every record",
         "synthcap curate --input 'crawl/*.warc.gz' --output out/curated",
         (_CURATE, _OUT, _REPORT), required=("input", "output"), pipeline=True),
    Verb("refresh", "curate a new crawl against an incremental dedup index, then add it to the index",
         "synthcap refresh --input 'crawl-2024/*.warc.gz' --index out/index --output out/refreshed-2024",
         (("refresh", RefreshOptions._add_argparse_args), _CURATE, _OUT, _REPORT),
         required=("input", "index", "output"), pipeline=True),
    Verb("mix", "a training mix of curated sources under a certified ceiling on the true AI share",
         "synthcap mix --config mix.yaml --output out/mix",
         (("mix", MixOptions._add_argparse_args), _OUT, _REPORT), required=("config", "output"), pipeline=True),
    Verb("inspect", "print one curated document's provenance",
         "synthcap inspect 'urn:uuid:...' --output out/curated",
         (("inspect", _inspect_args),), required=("output",)),
    Verb("sample", "write the embedded sample crawl (WARC + WET shards of two snapshots)",
         "synthcap sample --output sample_crawl", (("sample", _sample_args), _REPORT)),
    Verb("demo", "sample + curate + mix + refresh on the DirectRunner, printing where everything is",
         "synthcap demo --output out/demo", (("demo", _demo_args),)),
    Verb("train-detector", "train, calibrate and evaluate the fastText detector",
         "synthcap train-detector --data ../shared/data/detect/*.jsonl.gz --out models/detector",
         (("train-detector", _train_detector_args), _REPORT), required=("data", "out")),
)}


def _own_keys(cls) -> frozenset[str]:
    parser = argparse.ArgumentParser()
    cls._add_argparse_args(parser)
    return frozenset(a.dest for a in parser._actions if a.dest != "help")


CURATE_KEYS = _own_keys(CurateOptions)


def beam_options() -> list[type]:
    """Beam's own option classes (what passes through to the runner): every registered class that is not ours."""
    return [c for c in PipelineOptions.__subclasses__() if not c.__module__.startswith(("pipeline.", "transforms."))]


class VerbParser(_BeamArgumentParser):
    """argparse that raises UserError (one line) instead of printing usage and exiting 2."""

    def error(self, message):
        raise UserError(message.replace("argument ", "", 1) if message.startswith("argument --") else message)


def verb_parser(verb: Verb) -> VerbParser:
    """The verb's parser: its own flags in titled groups (shown by --help), Beam's flags hidden but accepted."""
    parser = VerbParser(prog=f"synthcap {verb.name}", usage=usage(verb), description=verb.summary, allow_abbrev=False,
                        epilog=f"example:\n  {verb.example}" + (
                            "\n\nBeam pipeline flags (--runner, --project, --region, --temp_location, "
                            "--direct_num_workers, ...) pass through to the runner." if verb.pipeline else ""),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    for title, add in verb.groups:
        group = parser.add_argument_group(f"{title} options" if title != "report" else "report")
        add(group)
        for action in group._group_actions:
            action.help = describe(action, action.dest in verb.required).replace("%", "%%")
    if verb.pipeline:
        before = len(parser._actions)
        for cls in beam_options():
            cls._add_argparse_args(parser)
        for action in parser._actions[before:]:
            action.help = argparse.SUPPRESS
    return parser


def own_actions(verb: Verb) -> list[argparse.Action]:
    """The verb's own flags and positionals as declared (plain help texts), in --help order."""
    probe = argparse.ArgumentParser(add_help=False)
    for _, add in verb.groups:
        add(probe)
    return probe._actions


def usage(verb: Verb) -> str:
    words = [f"synthcap {verb.name}"]
    for a in own_actions(verb):
        if not a.option_strings:
            words.append(a.metavar or a.dest.upper())
        elif a.dest in verb.required:
            words.append(f"{a.option_strings[0]} {a.dest.upper()}" + (" ..." if a.nargs == "+" else ""))
    return " ".join(words + ["[options]"] + (["[beam pipeline flags]"] if verb.pipeline else []))


def default_of(action: argparse.Action, required: bool) -> str:
    """What a user gets without the flag: 'required', 'off' for a switch, the default, or '' for none."""
    if required:
        return "required"
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if action.default is None:
        return ""
    return f"{action.default:,}" if isinstance(action.default, int) else str(action.default)


def describe(action: argparse.Action, required: bool) -> str:
    """The help text with what a user needs next to it: required, or the default when there is one."""
    default = default_of(action, required)
    if default in ("", "off"):
        return action.help or ""
    return f"{action.help} ({default})" if required else f"{action.help} (default: {default})"


def flag_rows(verb: Verb) -> list[tuple[str, str, str]]:
    """(flag, default, meaning) for each declared flag: the README's tables are these rows."""
    return [(", ".join(a.option_strings) or (a.metavar or a.dest.upper()), default_of(a, a.dest in verb.required),
             a.help or "") for a in own_actions(verb)]


def switches() -> frozenset[str]:
    """Flags that take no value, in every pipeline verb (the Flex Template passes them as =true/=false)."""
    return frozenset(a.dest for v in VERBS.values() if v.pipeline for a in own_actions(v)
                     if isinstance(a, argparse._StoreTrueAction))

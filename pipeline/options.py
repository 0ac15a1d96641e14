"""PipelineOptions for the CLI verbs; Beam's own flags (runner, project, workers, ...) pass through untouched."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.io.read import DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_SPLIT_BYTES


class UserError(Exception):
    """A problem the user caused and can fix: printed as one line, exit status 2."""


def _fraction(value: str) -> float:
    x = float(value)
    if not 0 < x <= 1:
        raise ValueError(value)
    return x


def _positive_int(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise ValueError(value)
    return n


class CommonOptions(PipelineOptions):
    """Flags every verb shares (Beam parses all option classes into one parser, so each flag lives once)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--output", help="output folder (local or gs://)")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
        parser.add_argument("--rows_per_shard", type=_positive_int, default=100_000,
                            help="rows per output Parquet/JSONL shard (bounds a writer's memory)")
        parser.add_argument("--detector_model", default=None,
                            help="folder with model.ftz and model_card.json (default: the bundled model)")


class CurateOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", nargs="+", help="crawl shard paths or globs (local or gs://)")
        parser.add_argument("--max_document_bytes", type=_positive_int, default=DEFAULT_MAX_DOCUMENT_BYTES,
                            help="records or texts larger than this are dropped as too_large")
        parser.add_argument("--split_bytes", type=_positive_int, default=DEFAULT_SPLIT_BYTES,
                            help="compressed bytes per unit of reading work for WARC.gz and plain JSONL")
        parser.add_argument("--seed", type=int, default=1, help="seed of every hash permutation and sample")
        parser.add_argument("--run_id", help="run identity in provenance (default: derived from the config hash)")
        parser.add_argument("--no_exact_dedup", action="store_true", help="skip exact deduplication")
        parser.add_argument("--exact_normalization", default="nfkc,casefold,whitespace",
                            help="steps before the exact-dedup hash: any of nfkc, casefold, whitespace, or none")
        parser.add_argument("--no_near_dedup", action="store_true", help="skip near-duplicate removal")
        parser.add_argument("--ngram", type=_positive_int, default=5, help="words per MinHash shingle")
        parser.add_argument("--num_perm", type=_positive_int, default=128, help="MinHash permutations")
        parser.add_argument("--threshold", type=_fraction, default=0.8, help="near-duplicate Jaccard threshold")
        parser.add_argument("--bands", type=_positive_int, help="LSH bands (default: derived from --threshold)")
        parser.add_argument("--rows", type=_positive_int, help="LSH rows per band (give with --bands)")
        parser.add_argument("--max_bucket_size", type=_positive_int, default=5000,
                            help="LSH buckets larger than this are counted and contribute no candidate pairs")
        parser.add_argument("--cc_rounds", type=int, default=6, help="large-star/small-star rounds before union-find")
        parser.add_argument("--max_residual_edges", type=_positive_int, default=1_000_000,
                            help="fail if connected components leave more residual edges than this")
        parser.add_argument("--no_score", action="store_true", help="skip AI-likelihood scoring")
        parser.add_argument("--human_reference", nargs="+",
                            help="curated Parquet of an earlier run (globs, local or gs://) used as human reference "
                                 "besides this run's pre-LLM documents")


class MixOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--config", help="mix YAML file")


class RefreshOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--index", help="refresh index folder (local or gs://); created by the first refresh")


def _own_keys(cls) -> frozenset[str]:
    import argparse

    parser = argparse.ArgumentParser()
    cls._add_argparse_args(parser)
    return frozenset(a.dest for a in parser._actions if a.dest != "help")


CURATE_KEYS = _own_keys(CurateOptions) | {"detector_model"}


def unknown_flags(argv: list[str]) -> list[str]:
    """Flags no registered PipelineOptions class knows (Beam would only log and ignore them)."""
    opts = PipelineOptions(argv)
    known = set(opts.get_all_options(retain_unknown_options=False))
    every = opts.get_all_options(retain_unknown_options=True)
    return sorted(f"--{k}" for k in every if k not in known)

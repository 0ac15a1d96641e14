"""PipelineOptions for the CLI verbs; Beam's own flags (runner, project, workers, ...) pass through untouched."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.io.read import DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_SPLIT_BYTES


class UserError(Exception):
    """A problem the user caused and can fix: printed as one line, exit status 2."""


def _positive_int(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise ValueError(value)
    return n


class CurateOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", nargs="+", help="crawl shard paths or globs (local or gs://)")
        parser.add_argument("--output", help="output folder (local or gs://)")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
        parser.add_argument("--max_document_bytes", type=_positive_int, default=DEFAULT_MAX_DOCUMENT_BYTES,
                            help="records or texts larger than this are dropped as too_large")
        parser.add_argument("--split_bytes", type=_positive_int, default=DEFAULT_SPLIT_BYTES,
                            help="compressed bytes per unit of reading work for WARC.gz and plain JSONL")
        parser.add_argument("--rows_per_shard", type=_positive_int, default=100_000,
                            help="documents per output Parquet shard (bounds a writer's memory)")


def unknown_flags(argv: list[str]) -> list[str]:
    """Flags no registered PipelineOptions class knows (Beam would only log and ignore them)."""
    opts = PipelineOptions(argv)
    known = set(opts.get_all_options(retain_unknown_options=False))
    every = opts.get_all_options(retain_unknown_options=True)
    return sorted(f"--{k}" for k in every if k not in known)

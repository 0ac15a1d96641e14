"""`ReadCrawl`: every supported shard format in one PTransform with documents, drops and dead letters out."""
from __future__ import annotations

import apache_beam as beam

from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED, DeadLetter, Dropped, count, drop
from transforms.document import Document, fallback_id
from transforms.io.files import JSONL, NON_DOCUMENT, PARQUET, SUPPORTED, UNSUPPORTED, WARC, Shard, detect_format, \
    extension, match_shards
from transforms.io.jsonl import ReadJsonlFn
from transforms.io.parquet import ReadParquetAgain, ReadParquetFn
from transforms.io.reader import counted
from transforms.io.warc import ReadWarcFn


class SkipFileFn(beam.DoFn):
    """A file that holds no documents (WAT, CDX) or that no reader handles: one counted drop, never opened."""

    def process(self, shard: Shard):
        count("files_read")
        if shard.format == NON_DOCUMENT:
            out = drop(fallback_id(shard.path, 0), "non_document_file", shard.path, 0,
                       f"{extension(shard.path)} files hold crawl metadata or an index, not documents")
        else:
            out = drop(fallback_id(shard.path, 0), "unsupported_file", shard.path, 0,
                       f"no reader for {extension(shard.path)}; supported extensions: {SUPPORTED}")
        yield from counted([out])


_TYPES = {DOCUMENTS: Document, DROPPED: Dropped, DEAD_LETTERS: DeadLetter}
_READERS = {WARC: ReadWarcFn, JSONL: ReadJsonlFn, PARQUET: ReadParquetFn}
DEFAULT_MAX_DOCUMENT_BYTES = 16 << 20
DEFAULT_SPLIT_BYTES = 64 << 20


class ReadCrawl(beam.PTransform):
    """Reads WARC/WET, JSONL(.gz/.zst) and Parquet shards matched by `patterns` (local, globs, gs://).

    WAT/CDX files and files with extensions no reader handles are counted as one dropped record each
    (`non_document_file`, `unsupported_file`), so a glob never skips a file silently.

    Returns a dict of PCollections: `documents` (Document), `dropped` (Dropped), `dead_letters` (DeadLetter).
    Globs are matched when the pipeline is built, so a pattern that matches nothing fails at launch.
    """

    def __init__(self, patterns: list[str] | None = None, shards: list[Shard] | None = None,
                 max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES, split_bytes: int = DEFAULT_SPLIT_BYTES):
        super().__init__()
        if (patterns is None) == (shards is None):
            raise ValueError("give exactly one of patterns or shards")
        self._shards = shards if shards is not None else match_shards(list(patterns))
        self._max = max_document_bytes
        self._split = split_bytes

    def expand(self, pbegin):
        shards = [s._replace(split_bytes=self._split) for s in self._shards]
        per_format = {}
        for fmt, fn in _READERS.items():
            mine = [s for s in shards if s.format == fmt]
            if not mine:
                continue
            per_format[fmt] = (
                pbegin
                | f"Shards[{fmt}]" >> beam.Create(mine)
                | f"Spread[{fmt}]" >> beam.Reshuffle()
                | f"Read[{fmt}]" >> beam.ParDo(fn(self._max)).with_output_types(Document).with_outputs(
                    DROPPED, DEAD_LETTERS, main=DOCUMENTS)
            )
        skipped = [s for s in shards if s.format in (NON_DOCUMENT, UNSUPPORTED)]
        if skipped:
            per_format["skipped"] = (
                pbegin
                | "Shards[skipped]" >> beam.Create(skipped)
                | "Skip" >> beam.ParDo(SkipFileFn()).with_output_types(Document).with_outputs(
                    DROPPED, DEAD_LETTERS, main=DOCUMENTS)
            )
        out = {}
        for tag in (DOCUMENTS, DROPPED, DEAD_LETTERS):
            parts = [res[tag] for res in per_format.values()]
            out[tag] = ((parts or [pbegin | f"Empty[{tag}]" >> beam.Create([]).with_output_types(_TYPES[tag])])
                        | f"Flatten[{tag}]" >> beam.Flatten().with_output_types(_TYPES[tag]))
        return out


def can_read_again(path: str) -> bool:
    """Whether `ReadAgain` reads this file: Parquet, whose row groups can be read on their own and whose rows become
    Python objects one by one; a line or record stream would have to be parsed whole again."""
    return detect_format(path) == PARQUET


class ReadAgain(beam.PTransform):
    """Shards that `can_read_again` -> the Documents whose `document.identity_hash` is `wanted` (a side input: a
    container of ints), each as `ReadCrawl` with the same limit made it. For a second pass over inputs already
    read: nothing is counted, dropped or dead-lettered again, and a record that cannot be read again is absent
    (the caller, which knows what it wanted, reports it)."""

    def __init__(self, shards: list[Shard], wanted, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES):
        super().__init__()
        refused = [s.path for s in shards if not can_read_again(s.path)]
        if refused:
            raise ValueError(f"cannot read again: {refused[0]}")
        self._shards, self._wanted, self._max = list(shards), wanted, max_document_bytes

    def expand(self, pbegin):
        return pbegin | "Parquet" >> ReadParquetAgain(self._shards, self._wanted, self._max)

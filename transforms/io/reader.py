"""What every shard reader shares: opening the file (or one `read_error` dead letter) and counting records read.

A reader yields exactly one output per record it reads (a Document, a drop or a dead letter), so counting its
outputs here is the `records_read` counter the summary reconciles against; a new format adds only its parsing.
`files_read` (what progress lines show) is counted once per file, by the range that holds the file's end, so a
file split over workers counts once.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam

from transforms.accounting import count, dead_letter
from transforms.io.files import Shard, open_raw


def counted(outputs: Iterable[Any], records: Callable[[Any], int] | None = None) -> Iterator[Any]:
    """Each output is one record read, or `records(output)` records."""
    for out in outputs:
        count("records_read", 1 if records is None else records(out))
        yield out


class ShardReader(beam.DoFn):
    """Base of the format readers. Subclasses declare `process(shard, tracker=RestrictionParam(...))` as
    `yield from self.read_shard(shard, tracker)` (Beam reads the restriction provider from that signature) and
    implement `read`, plus `open` when the format needs more than the byte stream."""

    STAGE = "read"

    def __init__(self, max_document_bytes: int):
        self._limit = max_document_bytes

    def open(self, f, shard: Shard):
        """What `read` gets: the raw stream, or a format's handle on it; raising here is a `read_error`."""
        return f

    def read(self, handle, shard: Shard, tracker) -> Iterator[Any]:
        raise NotImplementedError

    def records(self, output) -> int:
        """How many records read an output of `read` stands for: one (a subclass may emit records in batches)."""
        return 1

    def read_shard(self, shard: Shard, tracker) -> Iterator[Any]:
        restriction = tracker.current_restriction()
        f = None
        try:
            f = open_raw(shard.path)
            handle = self.open(f, shard)
        except Exception as e:  # filesystems and format libraries raise their own types
            if f is not None:
                f.close()
            if restriction.start == 0 and tracker.try_claim(0):  # one dead letter per file, however split
                yield from counted([dead_letter(shard.path, 0, "read_error", e, self.STAGE)])
                count("files_read")
            tracker.try_claim(restriction.stop)
            return
        with f:
            yield from counted(self.read(handle, shard, tracker), self.records)
        if tracker.current_restriction().stop >= self._file_end(shard):
            count("files_read")

    def _file_end(self, shard: Shard) -> int:
        """Where the shard's whole-file restriction stops (the provider named in the subclass's `process`)."""
        ends = self.__dict__.setdefault("_file_ends", {})
        if shard.path not in ends:
            provider = type(self).process.__defaults__[0].restriction_provider
            ends[shard.path] = provider.initial_restriction(shard).stop
        return ends[shard.path]

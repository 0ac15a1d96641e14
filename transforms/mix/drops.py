"""The mixer's drops as batches: each step that drops documents hands on, per input batch (or bundle), their
`dropped/` lines and their counts, not one element per drop.

Most documents of a ceiling-limited mix end as drops; as elements each one paid Beam's per-element cost in the
drops' Flatten, two tallies, the writer's count and its shard assignment. A `DropBatch` carries the drops as
plain tuples (the writer formats each line when it writes its shard, so no stage holds the lines) and their
counts by (mix source or reader detail, reason) that the summary and the manifest read, so the books are kept
per batch. The mixer's own drops are `DropRecord`s (no `Dropped` object, no counter call each): the Ledger
counts them on the Beam counters, once per reason, when it hands their batch on.
"""
from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from transforms.accounting import DROP_REASONS, CountByKey, Dropped, count, drop_json
from transforms.mix.classify import PlainTupleCoder


def drop_key(record: tuple) -> str:
    """The order of `dropped/` files, of a `DropBatch` record: by reason, then the record's identity."""
    doc_id, reason, source, offset, _ = record
    return f"{reason}\x00{doc_id}\x00{source}\x00{offset:020d}"


def drop_line(record: tuple) -> str:
    """A `DropBatch` record's line in `dropped/`: `Dropped.to_json()`."""
    return drop_json(*record)


class DropRecord(NamedTuple):
    """A drop made by the mixer: a `Dropped`'s fields."""

    id: str
    reason: str
    source: str
    offset: int
    detail: str


class DropBatch(NamedTuple):
    records: list  # (id, reason, source, offset, detail): a Dropped's fields
    counts: dict  # (detail, reason) -> drops


beam.coders.registry.register_coder(DropBatch, PlainTupleCoder)


class Ledger:
    """Drops gathered by one step; `batch()` hands them on and starts afresh."""

    def __init__(self):
        self._records, self._counts, self._uncounted = [], {}, {}

    def __bool__(self) -> bool:
        return bool(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, d: Dropped) -> None:
        """A drop already counted where it was made (`accounting.drop`)."""
        self._records.append((d.id, d.reason, d.source, d.offset, d.detail))
        k = (d.detail, d.reason)
        self._counts[k] = self._counts.get(k, 0) + 1

    def drop(self, r: DropRecord) -> None:
        """A drop made here: counted on its Beam counter by `batch()`."""
        self._records.append(tuple(r))
        k = (r.detail, r.reason)
        self._counts[k] = self._counts.get(k, 0) + 1
        self._uncounted[r.reason] = self._uncounted.get(r.reason, 0) + 1

    def batch(self) -> DropBatch:
        for reason, n in self._uncounted.items():
            if reason not in DROP_REASONS:
                raise ValueError(f"unknown drop reason {reason!r}")
            count(f"dropped_{reason}", n)
        out = DropBatch(self._records, self._counts)
        self._records, self._counts, self._uncounted = [], {}, {}
        return out


def batch_of(d: Dropped) -> DropBatch:
    """One drop made elsewhere (the reader's) as a batch."""
    ledger = Ledger()
    ledger.add(d)
    return ledger.batch()


class _SumCounts(CountByKey):
    """CountByKey over the counts each DropBatch carries."""

    def add_input(self, acc, batch: DropBatch):
        for k, n in batch.counts.items():
            acc[k] = acc.get(k, 0) + n
        return acc


class DropCounts(beam.PTransform):
    """DropBatches -> {(detail, reason): drops}, one dict (a singleton PCollection)."""

    def expand(self, batches):
        return batches | "Sum" >> beam.CombineGlobally(_SumCounts())


def by_reason(counts: dict) -> dict:
    """{(detail, reason): n} -> {reason: n}, as `accounting.Tally(by_reason)` gives it."""
    out = {}
    for (_, reason), n in counts.items():
        out[reason] = out.get(reason, 0) + n
    return dict(sorted(out.items()))

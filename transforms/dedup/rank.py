"""Record identity and who survives a duplicate cluster.

Ids are the user's and need not be unique (JSONL and Parquet exports often restart them at "0" in every file), so
every internal key is the rank: (first seen or capture date, id, source, offset, text hash). Its order is the
survivor rule: the copy seen first (earliest capture date), then the smallest id, then source and offset, then
the text. Source and offset are the record's own when a Dolma line or a curated row carries them, so two records
read from different files can share all four: the text hash keeps their ranks apart (and their order independent
of which file was read first), instead of near dedup taking them for one node. Records sharing an id are both
kept unless their texts are duplicates; `IdCollisions` counts them.
"""
from __future__ import annotations

import apache_beam as beam

from transforms.accounting import count
from transforms.dates import seen_date
from transforms.document import Document, text_hash

Rank = tuple[str, str, str, int, int]


def rank(doc: Document) -> Rank:
    return seen_date(doc), doc.id, doc.source, doc.offset, text_hash(doc.text)


def describe(r: Rank, prefix: str) -> dict:
    """The record a rank names, as `{prefix}_id`, `{prefix}_source`, `{prefix}_offset`."""
    return {f"{prefix}_id": r[1], f"{prefix}_source": r[2], f"{prefix}_offset": r[3]}


def _sum_colliding(kv):
    _, n = kv
    if n > 1:
        count("id_collision_ids")
        count("id_collision_documents", n)
        yield n


class _Totals(beam.CombineFn):
    def create_accumulator(self):
        return 0, 0

    def add_input(self, acc, n):
        return acc[0] + 1, acc[1] + n

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), sum(a[1] for a in accs)

    def extract_output(self, acc):
        return {"ids": acc[0], "documents": acc[1]}


class IdCollisions(beam.PTransform):
    """Documents -> {"ids": ids carried by more than one document, "documents": documents carrying them}."""

    def expand(self, docs):
        return (
            docs
            | "Ids" >> beam.Map(lambda d: (d.id, 1))
            | "PerId" >> beam.CombinePerKey(sum)
            | "Colliding" >> beam.FlatMap(_sum_colliding)
            | "Totals" >> beam.CombineGlobally(_Totals())
        )

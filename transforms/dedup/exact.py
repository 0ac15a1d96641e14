"""`ExactDedup`: one survivor per normalised text; every other copy is dropped as `duplicate_exact`."""
from __future__ import annotations

import json

import apache_beam as beam

from transforms.accounting import DOCUMENTS, DROPPED, drop
from transforms.dedup.normalize import Normalization
from transforms.dates import as_first_seen, last_seen_date, later_date, seen_date
from transforms.dedup.rank import describe, rank
from transforms.document import Document, DocumentCoder, replace

_CODER = DocumentCoder()


class _Survivor(beam.DoFn):
    def process(self, kv):
        _, docs = kv
        best, best_i, best_rank, size, first, last, i = None, -1, None, 0, None, None, -1
        for i, d in enumerate(docs):
            r = rank(d)
            size += d.dup_cluster_size or 1
            seen = seen_date(d)
            first = seen if first is None or seen < first else first
            last = later_date(last_seen_date(d), last)
            if best is None or r < best_rank or (r == best_rank and _CODER.encode(d) < _CODER.encode(best)):
                best, best_i, best_rank = d, i, r  # a full tie (the same record twice) is broken by every field
        if i > 0:  # nearly every group is one document: no copies, no detail to write
            detail = json.dumps(describe(best_rank, "survivor"), sort_keys=True)
            for i, d in enumerate(docs):  # a re-iteration: positions are stable, object identity is not
                if i != best_i:
                    yield drop(d.id, "duplicate_exact", d.source, d.offset, detail)
        yield replace(best, dup_cluster_id=best.dup_cluster_id or best.id, dup_cluster_size=size,
                      first_seen=as_first_seen(first), last_seen=last)


@beam.typehints.with_input_types(Document)
class ExactDedup(beam.PTransform):
    """Keys documents by a hash of their normalised text; returns {"documents", "dropped"}.

    Survivors carry `dup_cluster_id` (the survivor's id), `dup_cluster_size` (copies, itself included),
    `first_seen` and `last_seen` (the earliest and latest capture dates in the cluster). Dropped copies name their
    survivor (id, source, offset: ids may collide) in `detail`, a JSON object.
    """

    def __init__(self, normalization: Normalization = Normalization()):
        super().__init__()
        self._norm = normalization

    def expand(self, docs):
        norm = self._norm
        out = (
            docs
            | "Key" >> beam.Map(lambda d: (norm.key(d.text), d)).with_output_types(tuple[str, Document])
            | "Group" >> beam.GroupByKey()
            | "Survivor" >> beam.ParDo(_Survivor()).with_output_types(Document).with_outputs(DROPPED, main=DOCUMENTS)
        )
        return {DOCUMENTS: out[DOCUMENTS], DROPPED: out[DROPPED]}

"""`MatchIndex`: drop new documents that duplicate the index (exactly or nearly); `WriteSegment`: index survivors.

Both joins are CoGroupByKeys on keys (exact hash; LSH band key), so no worker loads the index. A dropped
document names the indexed document it matches and when that was first seen; `pre_llm_origin` is true when
that was before 2022-11-30 — evidence that the text is of human origin, whatever its score.
"""
from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa

from transforms.accounting import DOCUMENTS, DROPPED, count, drop
from transforms.dedup.lsh import band_keys
from transforms.dedup.minhash import MinHasher
from transforms.dedup.normalize import Normalization
from transforms.io.write import WriteSharded, parquet_bytes
from transforms.provenance.tag import CHATGPT_RELEASE
from transforms.refresh.index import IndexParams

EXACT = pa.schema([("key", pa.string()), ("id", pa.string()), ("first_seen", pa.string())])
BANDS = pa.schema([("band", pa.int32()), ("hash", pa.uint64()), ("id", pa.string()), ("first_seen", pa.string()),
                   ("sig", pa.binary())])


def _first_seen(doc) -> str:
    return doc.first_seen or doc.capture_date or "~"


class _Sign(beam.DoFn):
    def __init__(self, params: IndexParams):
        self._p = params

    def setup(self):
        self._hasher = MinHasher(self._p.ngram, self._p.num_perm, self._p.seed)

    def process(self, doc):
        sig = self._hasher.signature(doc.text)
        for key in band_keys(sig, self._p.bands, self._p.rows):
            yield key, (doc.id, _first_seen(doc), sig.tobytes())


def _detail(indexed_id: str, first_seen: str, how: str) -> str:
    return json.dumps({"indexed_id": indexed_id, "first_seen": first_seen, "match": how,
                       "pre_llm_origin": first_seen < CHATGPT_RELEASE}, sort_keys=True)


def _drop_indexed(docs, hits, how: str):
    """Drops every document of a key with hits, naming the earliest-seen indexed match; keeps the rest."""
    hits = sorted(hits)
    for doc in docs:
        if hits:
            count(f"refresh_{how}_matches")
            yield drop(doc.id, "duplicate_indexed", doc.source, doc.offset, _detail(hits[0][1], hits[0][0], how))
        else:
            yield doc


def _exact_match(kv):
    _, g = kv
    return _drop_indexed(g["new"], [(first_seen, i) for i, first_seen in g["index"]], "exact")


class _NearMatches(beam.DoFn):
    def __init__(self, threshold: float, max_bucket_size: int):
        self._t, self._max = threshold, max_bucket_size

    def process(self, kv):
        _, g = kv
        old = list(g["index"])
        if not old:
            return
        if len(old) > self._max:
            count("lsh_oversized_buckets")
            old = sorted(old)[: self._max]
        for new_id, _, sig in g["new"]:
            s = np.frombuffer(sig, dtype=np.uint32)
            for old_id, first_seen, old_sig in old:
                if np.count_nonzero(np.frombuffer(old_sig, dtype=np.uint32) == s) / len(s) >= self._t:
                    yield new_id, (first_seen, old_id)


def _near_match(kv):
    _, g = kv
    return _drop_indexed(g["doc"], g["hit"], "near")


class MatchIndex(beam.PTransform):
    """Documents -> {"documents": those new to the index, "dropped": duplicate_indexed}."""

    def __init__(self, exact_files: list[str], band_files: list[str], params: IndexParams,
                 max_bucket_size: int = 5000):
        super().__init__()
        self._exact, self._bands, self._p, self._max = exact_files, band_files, params, max_bucket_size

    def _read(self, p, files, label):
        if not files:
            return p | f"No{label}" >> beam.Create([])
        return p | f"{label}Files" >> beam.Create(files) | f"Read{label}" >> beam.io.ReadAllFromParquet()

    def expand(self, docs):
        norm, params = Normalization.parse(self._p.normalization), self._p
        index_exact = (self._read(docs.pipeline, self._exact, "Exact")
                       | "ExactKV" >> beam.Map(lambda r: (r["key"], (r["id"], r["first_seen"]))))
        exact = (
            {"new": docs | "ExactKey" >> beam.Map(lambda d: (norm.key(d.text), d)), "index": index_exact}
            | "JoinExact" >> beam.CoGroupByKey()
            | "ExactMatch" >> beam.FlatMap(_exact_match).with_outputs(DROPPED, main=DOCUMENTS)
        )
        fresh = exact[DOCUMENTS]
        index_bands = (self._read(docs.pipeline, self._bands, "Bands")
                       | "BandKV" >> beam.Map(lambda r: ((r["band"], r["hash"]), (r["id"], r["first_seen"], r["sig"]))))
        hits = (
            {"new": fresh | "Sign" >> beam.ParDo(_Sign(params)), "index": index_bands}
            | "JoinBands" >> beam.CoGroupByKey()
            | "NearMatches" >> beam.ParDo(_NearMatches(params.threshold, self._max))
        )
        near = (
            {"doc": fresh | "ById" >> beam.Map(lambda d: (d.id, d)), "hit": hits}
            | "JoinHits" >> beam.CoGroupByKey()
            | "NearMatch" >> beam.FlatMap(_near_match).with_outputs(DROPPED, main=DOCUMENTS)
        )
        dropped = (exact[DROPPED], near[DROPPED]) | "IndexDropped" >> beam.Flatten()
        return {DOCUMENTS: near[DOCUMENTS], DROPPED: dropped}


class WriteSegment(beam.PTransform):
    """Index entries of the surviving documents: one exact entry and `bands` band entries each. Returns the
    written paths (the index commit waits for them)."""

    def __init__(self, segment_dir: str, params: IndexParams):
        super().__init__()
        self._dir, self._p = segment_dir, params

    def expand(self, docs):
        from apache_beam.io.filesystems import FileSystems

        norm, params = Normalization.parse(self._p.normalization), self._p
        exact_rows = docs | "ExactRows" >> beam.Map(lambda d: {"key": norm.key(d.text), "id": d.id,
                                                               "first_seen": _first_seen(d)})
        band_rows = docs | "BandRows" >> beam.ParDo(_Sign(params)) | "BandDicts" >> beam.MapTuple(
            lambda k, v: {"band": k[0], "hash": k[1], "id": v[0], "first_seen": v[1], "sig": v[2]})
        exact = exact_rows | "WriteExact" >> WriteSharded(
            FileSystems.join(self._dir, "exact"), ".parquet", lambda r: f"{r['key']}\x00{r['id']}",
            lambda rows: parquet_bytes(pa.Table.from_pylist(rows, schema=EXACT)), write_empty=False)
        bands = band_rows | "WriteBands" >> WriteSharded(
            FileSystems.join(self._dir, "bands"), ".parquet", lambda r: f"{r['band']}\x00{r['hash']}\x00{r['id']}",
            lambda rows: parquet_bytes(pa.Table.from_pylist(rows, schema=BANDS)), write_empty=False)
        return (exact, bands) | "SegmentFiles" >> beam.Flatten()

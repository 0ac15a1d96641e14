"""`MatchIndex`: drop new documents that duplicate the index (exactly or nearly); `WriteSegment`: index survivors.

Every join is a CoGroupByKey on keys (exact hash; LSH band key; record rank), so no worker loads the index. Near
matches use the same recall-first banding and exact verification as `NearDedup`: candidate (new, indexed) pairs
from shared band keys are verified on both documents' shingle hashes (`VerifyPairs`). Records are keyed by their
rank (first seen, id, source, offset, text hash), never by id alone, so colliding ids never match each other's
hits. The text hash matters across refreshes: a crawl that reuses its file names (`daily/part-0.jsonl`) with ids
restarting per file and no dates gives every day's first record the same (first seen, id, source, offset). A dropped
document names the indexed record it matches, when that was first seen, and (near matches) the verified Jaccard;
`pre_llm_origin` is true when it was first seen before `transforms.dates.PRE_LLM_CUTOFF` (2022-11-30) — evidence
that the text is of human origin, whatever its score.
"""
from __future__ import annotations

import json

import apache_beam as beam
import pyarrow as pa

from transforms.accounting import DOCUMENTS, DROPPED, count, drop
from transforms.dates import is_pre_llm
from transforms.dedup.lsh import shuffled_hash, stored_hash
from transforms.dedup.near import BANDS as _BANDS, SHINGLES as _SHINGLES, Sketch
from transforms.dedup.normalize import Normalization
from transforms.dedup.rank import describe, rank
from transforms.dedup.verify import VerifyPairs
from transforms.io.write import WriteSharded, parquet_bytes
from transforms.refresh.index import IndexParams

_FIELDS = ("first_seen", "id", "source", "offset", "text_hash")
_RECORD = [("first_seen", pa.string()), ("id", pa.string()), ("source", pa.string()), ("offset", pa.int64()),
           ("text_hash", pa.int64())]
EXACT = pa.schema([("key", pa.string()), *_RECORD])
BANDS = pa.schema([("band", pa.int32()), ("hash", pa.uint64()), *_RECORD])
SHINGLES = pa.schema([*_RECORD, ("shingles", pa.binary())])
_NEW, _INDEXED = 0, 1  # the two key spaces of verification: a new record may share its rank with an indexed one


def _rank_of(row: dict) -> tuple:
    """A stored record's rank. Segments written before the text hash was stored read it as 0: their records are
    keyed as they were then."""
    return row["first_seen"], row["id"], row["source"], row["offset"], row.get("text_hash") or 0


def _record(r: tuple) -> dict:
    return dict(zip(_FIELDS, r))


def _detail(indexed: tuple, how: str, jaccard: float | None = None) -> str:
    detail = {**describe(indexed, "indexed"), "first_seen": indexed[0], "match": how,
              "pre_llm_origin": is_pre_llm(indexed[0])}
    if jaccard is not None:
        detail["jaccard"] = jaccard
    return json.dumps(detail, sort_keys=True)


def _exact_match(kv):
    """Drops every new document of a text hash with index entries, naming the earliest-seen one."""
    _, g = kv
    hits = sorted(g["index"])
    for doc in g["new"]:
        if hits:
            count("refresh_exact_matches")
            yield drop(doc.id, "duplicate_indexed", doc.source, doc.offset, _detail(hits[0], "exact"))
        else:
            yield doc


class _Pairs(beam.DoFn):
    """A shared band key -> candidate (new rank, indexed rank) pairs; the indexed side is capped."""

    def __init__(self, max_bucket_size: int):
        self._max = max_bucket_size

    def process(self, kv):
        _, g = kv
        old = list(g["index"])
        if not old:
            return
        if len(old) > self._max:
            count("lsh_oversized_buckets")
            old = sorted(old)[: self._max]
        for new in g["new"]:
            for o in old:
                yield (_NEW, new), (_INDEXED, o)


def _earliest_hit(hits):
    """The earliest-seen verified indexed match (the strongest pre-LLM evidence), then the smallest rank."""
    return min(hits, key=lambda h: (h[0], -h[1]))


def _near_match(kv):
    _, g = kv
    hits = list(g["hit"])
    for doc in g["doc"]:
        if hits:
            old, j = hits[0]
            count("refresh_near_matches")
            yield drop(doc.id, "duplicate_indexed", doc.source, doc.offset, _detail(old, "near", j))
        else:
            yield doc


class _ReadSegmentFile(beam.DoFn):
    """The rows of one index segment file. A file that cannot be read as a segment of its kind is first checked
    against the sha256 its pointer lists, so a segment damaged after its commit fails the run as a changed file
    (CommittedFileChanged: one line, exit 2) whichever of the reading and the hashing check (`VerifyCommitted`)
    runs first; Arrow's own error (exit 1) said only that some Parquet was bad."""

    def __init__(self, schema: pa.Schema, committed: dict):
        # segments written before the text hash was stored lack that one column (see _rank_of)
        self._layouts = [schema.names, [n for n in schema.names if n != "text_hash"]]
        self._names, self._committed = schema.names, committed

    def process(self, path: str):
        import pyarrow.parquet as pq

        from transforms.io.commit import verify_entry
        from transforms.io.files import open_raw

        try:
            with open_raw(path) as f:
                pf = pq.ParquetFile(f)
                if pf.schema_arrow.names not in self._layouts:
                    raise ValueError(f"{path} is not an index segment file: its columns are "
                                     f"{pf.schema_arrow.names[:8]}, a segment's are {self._names}")
                for batch in pf.iter_batches():
                    yield from batch.to_pylist()
        except Exception:
            if path in self._committed:
                verify_entry(path, *self._committed[path])  # raises when the bytes are not those committed
            raise


class MatchIndex(beam.PTransform):
    """Documents -> {"documents": those new to the index, "dropped": duplicate_indexed}. `committed`: {path: (size,
    sha256)} of the segment files, as the index pointer lists them."""

    def __init__(self, exact_files: list[str], band_files: list[str], shingle_files: list[str],
                 params: IndexParams, max_bucket_size: int = 5000, committed: dict | None = None):
        super().__init__()
        self._exact, self._bands, self._shingles = exact_files, band_files, shingle_files
        self._p, self._max = params, max_bucket_size
        self._committed = dict(committed or {})

    def _read(self, p, files, label):
        if not files:
            return p | f"No{label}" >> beam.Create([])
        schema = {"Exact": EXACT, "Bands": BANDS, "Shingles": SHINGLES}[label]
        return (p | f"{label}Files" >> beam.Create(files) | f"Spread{label}" >> beam.Reshuffle()
                | f"Read{label}" >> beam.ParDo(_ReadSegmentFile(schema, self._committed)))

    def expand(self, docs):
        norm, params = Normalization.parse(self._p.normalization), self._p
        index_exact = (self._read(docs.pipeline, self._exact, "Exact")
                       | "ExactKV" >> beam.Map(lambda r: (r["key"], _rank_of(r))))
        exact = (
            {"new": docs | "ExactKey" >> beam.Map(lambda d: (norm.key(d.text), d)), "index": index_exact}
            | "JoinExact" >> beam.CoGroupByKey()
            | "ExactMatch" >> beam.FlatMap(_exact_match).with_outputs(DROPPED, main=DOCUMENTS)
        )
        fresh = exact[DOCUMENTS]
        sketches = fresh | "Sketch" >> beam.ParDo(Sketch(params.lsh)).with_outputs(_SHINGLES, _BANDS)
        index_bands = (self._read(docs.pipeline, self._bands, "Bands")
                       | "BandKV" >> beam.Map(lambda r: ((r["band"], shuffled_hash(r["hash"])), _rank_of(r))))
        index_shingles = (self._read(docs.pipeline, self._shingles, "Shingles")
                          | "ShinglesKV" >> beam.Map(lambda r: ((_INDEXED, _rank_of(r)), r["shingles"])))
        new_shingles = sketches[_SHINGLES] | "TagNew" >> beam.MapTuple(lambda r, sh: ((_NEW, r), sh))
        pairs = (
            {"new": sketches[_BANDS], "index": index_bands}
            | "JoinBands" >> beam.CoGroupByKey()
            | "Candidates" >> beam.ParDo(_Pairs(self._max))
        )
        hits = (
            {"pairs": pairs, "shingles": (new_shingles, index_shingles) | "AllShingles" >> beam.Flatten()}
            | "Verify" >> VerifyPairs(params.lsh.threshold)
            | "ByNew" >> beam.Map(lambda e: (e[0][1], (e[1][1], e[2])))
            | "EarliestHit" >> beam.CombinePerKey(_earliest_hit)
        )
        near = (
            {"doc": fresh | "ByRank" >> beam.Map(lambda d: (rank(d), d)), "hit": hits}
            | "JoinHits" >> beam.CoGroupByKey()
            | "NearMatch" >> beam.FlatMap(_near_match).with_outputs(DROPPED, main=DOCUMENTS)
        )
        dropped = (exact[DROPPED], near[DROPPED]) | "IndexDropped" >> beam.Flatten()
        return {DOCUMENTS: near[DOCUMENTS], DROPPED: dropped}


def _sort_key(row: dict) -> str:
    return json.dumps([row.get("band"), row.get("hash"), row.get("key"), *(row[f] for f in _FIELDS)])


class WriteSegment(beam.PTransform):
    """Index entries of the surviving documents: one exact entry, `bands` band entries and one shingles entry
    each (the shingle hashes are what later refreshes verify against). Returns the written paths (the index
    commit waits for them)."""

    def __init__(self, segment_dir: str, params: IndexParams):
        super().__init__()
        self._dir, self._p = segment_dir, params

    def expand(self, docs):
        from apache_beam.io.filesystems import FileSystems

        norm, params = Normalization.parse(self._p.normalization), self._p
        exact_rows = docs | "ExactRows" >> beam.Map(lambda d: {"key": norm.key(d.text), **_record(rank(d))})
        sketches = docs | "Sketch" >> beam.ParDo(Sketch(params.lsh)).with_outputs(_SHINGLES, _BANDS)
        band_rows = sketches[_BANDS] | "BandDicts" >> beam.MapTuple(
            lambda k, r: {"band": k[0], "hash": stored_hash(k[1]), **_record(r)})
        shingle_rows = sketches[_SHINGLES] | "ShingleDicts" >> beam.MapTuple(
            lambda r, sh: {**_record(r), "shingles": sh})
        written = [
            rows | f"Write{label}" >> WriteSharded(
                FileSystems.join(self._dir, label.lower()), ".parquet", _sort_key,
                lambda rs, schema=schema: parquet_bytes(pa.Table.from_pylist(rs, schema=schema)), write_empty=False)
            for label, rows, schema in (("Exact", exact_rows, EXACT), ("Bands", band_rows, BANDS),
                                        ("Shingles", shingle_rows, SHINGLES))]
        return written | "SegmentFiles" >> beam.Flatten()

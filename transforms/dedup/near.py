"""`NearDedup`: MinHash -> recall-first LSH candidates -> exact verification -> connected components -> one
survivor per near-duplicate cluster.

Cluster semantics: an edge is a candidate pair whose exact Jaccard over the shingle sets reaches the threshold;
a cluster is a connected component of edges (so two members may be less similar than the threshold through a
chain); its survivor is its smallest rank. Every other member is dropped naming the survivor and its own best
edge (the neighbour and verified Jaccard), so no document is dropped without a verified match >= threshold.
"""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.accounting import DOCUMENTS, DROPPED, drop
from transforms.dates import UNDATED, as_first_seen, last_seen_date, later_date
from transforms.dedup.components import ConnectedComponents
from transforms.dedup.lsh import BandPacks, BucketPairs, LshParams, band_hashes
from transforms.dedup.minhash import MinHasher
from transforms.dedup.rank import describe, rank
from transforms.dedup.verify import VerifyPairs
from transforms.document import Document, DocumentCoder, replace

SHINGLES = "shingles"
BANDS = "bands"


class Sketch(beam.DoFn):
    """(band key, rank) per band on BANDS, and (rank, shingle-hash bytes) on SHINGLES, from one kernel pass; the
    permutations are built once per worker from the seed. Near dedup and the refresh index both sketch here."""

    def __init__(self, params: LshParams):
        self._p = params

    def setup(self):
        self._hasher = MinHasher(self._p.ngram, self._p.num_perm, self._p.seed)

    def process(self, doc):
        r = rank(doc)
        sig, shingles = self._hasher.sketch(doc.text)
        hashes = band_hashes(sig, self._p.bands, self._p.rows)
        if hashes is None:
            return
        yield beam.pvalue.TaggedOutput(SHINGLES, (r, shingles.tobytes()))
        yield from self._bands(hashes, r)

    def _bands(self, hashes, r):
        for key in enumerate(hashes.tolist()):
            yield beam.pvalue.TaggedOutput(BANDS, (key, r))


class PackedSketch(Sketch):
    """`Sketch` whose band entries leave as (partition, pack) on BANDS (`lsh.BandPacks`), at the end of each
    bundle or when its buffer is full: a shuffle element per partition instead of one per band and document."""

    def start_bundle(self):
        self._packs = BandPacks()

    def _bands(self, hashes, r):
        if self._packs.add(hashes, r):
            for pack in self._packs.flush():
                yield beam.pvalue.TaggedOutput(BANDS, pack)

    def finish_bundle(self):
        for pack in self._packs.flush():
            yield beam.pvalue.TaggedOutput(BANDS, GlobalWindows.windowed_value(pack))


def _both_ends(edge):
    a, b, j = edge
    return [(a, (j, b)), (b, (j, a))]


def _best(edges):
    """The highest verified Jaccard, then the smallest neighbour rank (deterministic under any combining order)."""
    return min(edges, key=lambda e: (-e[0], e[1]))


def _copies(doc):
    """(rank, (copies, last seen date)) of a document that already stands for several (exact dedup's survivors)
    or was last seen on another date than first; (1, its seen date) is implied for the rest."""
    size, last = doc.dup_cluster_size or 1, last_seen_date(doc)
    r = rank(doc)
    if size != 1 or last != as_first_seen(r[0]):
        yield r, (size, last)


def _member_stats(kv):
    """(root, (copies, first seen, last seen)) for each clustered document, from its label and copies; a rank
    starts with its seen date."""
    r, grouped = kv
    for root in grouped["root"]:
        copies = list(grouped["copies"])
        size, last = copies[0] if copies else (1, as_first_seen(r[0]))
        yield root, (size, r[0], last)


class _ClusterStats(beam.CombineFn):
    def create_accumulator(self):
        return 0, UNDATED, None

    def add_input(self, acc, value):
        return acc[0] + value[0], min(acc[1], value[1]), later_date(acc[2], value[2])

    def merge_accumulators(self, accs):
        accs = list(accs)
        last = None
        for a in accs:
            last = later_date(last, a[2])
        return sum(a[0] for a in accs), min(a[1] for a in accs), last

    def extract_output(self, acc):
        return acc


_DOC, _ROOT, _EDGE, _STATS = range(4)  # what a value of the label join carries
_CODER = DocumentCoder()


def _tagged(tag: int):
    return lambda r, value: (r, (tag, value))


def _resolve(kv):
    """Per document, in the one join with the documents (which travel as `DocumentCoder` bytes, never pickled):
    unclustered ones pass, a cluster's survivor is stamped with its cluster's size and first and last seen dates,
    the others are dropped naming survivor and best edge."""
    r, values = kv
    encoded, found = [], {}
    for tag, value in values:
        if tag == _DOC:
            encoded.append(value)
        else:
            found[tag] = value
    root = found.get(_ROOT)
    for data in encoded:
        doc = _CODER.decode(data)
        if root is None:
            yield doc
        elif root == r:
            size, first, last = found[_STATS]
            yield replace(doc, dup_cluster_id=doc.dup_cluster_id or doc.id, dup_cluster_size=size,
                          first_seen=as_first_seen(first), last_seen=last)
        else:
            j, neighbour = found[_EDGE]
            detail = {**describe(root, "survivor"), **describe(neighbour, "matched"), "jaccard": j}
            yield drop(doc.id, "duplicate_near", doc.source, doc.offset, json.dumps(detail, sort_keys=True))


@beam.typehints.with_input_types(Document)
class NearDedup(beam.PTransform):
    """Near-duplicate removal; returns {"documents", "dropped"}.

    The survivor of a cluster is its earliest-captured document (then smallest id, source, offset); it carries
    the cluster's `dup_cluster_size` (copies, exact ones included), `first_seen` and `last_seen`. Dropped documents name
    their survivor and the verified Jaccard of their best edge.
    """

    def __init__(self, ngram: int = 5, num_perm: int = 128, threshold: float = 0.8, bands: int | None = None,
                 rows: int | None = None, seed: int = 1, max_bucket_size: int = 5000, rounds: int = 6,
                 max_residual_edges: int = 1_000_000):
        super().__init__()
        self.params = LshParams.resolve(ngram, num_perm, threshold, bands, rows, seed)
        self.max_bucket_size, self.rounds, self.max_residual_edges = max_bucket_size, rounds, max_residual_edges

    def expand(self, docs):
        sketches = docs | "Sketch" >> beam.ParDo(PackedSketch(self.params)).with_outputs(SHINGLES, BANDS)
        pairs = (
            sketches[BANDS]
            | "Buckets" >> beam.GroupByKey()
            | "Candidates" >> beam.ParDo(BucketPairs(self.max_bucket_size))
        )
        edges = {"pairs": pairs, "shingles": sketches[SHINGLES]} | "Verify" >> VerifyPairs(self.params.threshold)
        labels = (edges | "EdgeEnds" >> beam.Map(lambda e: (e[0], e[1]))
                  | "Components" >> ConnectedComponents(self.rounds, self.max_residual_edges))
        best = edges | "BothEnds" >> beam.FlatMap(_both_ends) | "BestEdge" >> beam.CombinePerKey(_best)
        copies = docs | "Copies" >> beam.FlatMap(_copies)
        stats = (
            {"root": labels, "copies": copies}
            | "JoinSizes" >> beam.CoGroupByKey()
            | "MemberStats" >> beam.FlatMap(_member_stats)
            | "ClusterStats" >> beam.CombinePerKey(_ClusterStats())
        )
        resolved = (
            (docs | "ByRank" >> beam.Map(lambda d: (rank(d), (_DOC, _CODER.encode(d)))),
             labels | "TagRoot" >> beam.MapTuple(_tagged(_ROOT)),
             best | "TagEdge" >> beam.MapTuple(_tagged(_EDGE)),
             stats | "TagStats" >> beam.MapTuple(_tagged(_STATS)))
            | "Labelled" >> beam.Flatten()
            | "JoinLabels" >> beam.GroupByKey()
            | "Resolve" >> beam.FlatMap(_resolve).with_output_types(Document).with_outputs(DROPPED, main=DOCUMENTS)
        )
        return {DOCUMENTS: resolved[DOCUMENTS], DROPPED: resolved[DROPPED]}

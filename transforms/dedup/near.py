"""`NearDedup`: MinHash -> LSH buckets -> connected components -> one survivor per near-duplicate cluster."""
from __future__ import annotations

import apache_beam as beam

from transforms.accounting import DOCUMENTS, DROPPED, drop
from transforms.dedup.components import ConnectedComponents
from transforms.dedup.lsh import BucketStars, band_keys, optimal_param
from transforms.dedup.minhash import MinHasher
from transforms.dedup.rank import UNDATED, id_of, rank
from transforms.document import replace


class _Signatures(beam.DoFn):
    """(rank, signature bytes) per document; the permutations are built once per worker from the seed."""

    def __init__(self, ngram: int, num_perm: int, seed: int):
        self._args = (ngram, num_perm, seed)

    def setup(self):
        self._hasher = MinHasher(*self._args)

    def process(self, doc):
        yield rank(doc), self._hasher.signature(doc.text)


class _Resolve(beam.DoFn):
    """Per document: survivor candidates go on to the size join, the rest are dropped naming their survivor."""

    ROOTS = "roots"
    STATS = "stats"

    def process(self, kv):
        r, grouped = kv
        roots = list(grouped["root"])
        root = roots[0] if roots else None
        for doc in grouped["doc"]:
            if root is None:
                yield doc
                continue
            yield beam.pvalue.TaggedOutput(self.STATS, (root, (doc.dup_cluster_size or 1,
                                                               doc.first_seen or doc.capture_date or UNDATED)))
            if root == r:
                yield beam.pvalue.TaggedOutput(self.ROOTS, (r, doc))
            else:
                yield drop(doc.id, "duplicate_near", doc.source, doc.offset, id_of(root))


class _ClusterStats(beam.CombineFn):
    def create_accumulator(self):
        return 0, UNDATED

    def add_input(self, acc, value):
        return acc[0] + value[0], min(acc[1], value[1])

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), min(a[1] for a in accs)

    def extract_output(self, acc):
        return acc


def _stamp(kv):
    _, grouped = kv
    (size, first), = grouped["stats"]
    for doc in grouped["doc"]:
        yield replace(doc, dup_cluster_id=doc.dup_cluster_id or doc.id, dup_cluster_size=size,
                      first_seen=None if first == UNDATED else first)


class NearDedup(beam.PTransform):
    """Near-duplicate removal; returns {"documents", "dropped"}.

    The survivor of a cluster is its earliest-captured document (then smallest id); it carries the cluster's
    `dup_cluster_size` (copies, exact ones included) and `first_seen`. Dropped documents name their survivor.
    """

    def __init__(self, ngram: int = 5, num_perm: int = 128, threshold: float = 0.8, bands: int | None = None,
                 rows: int | None = None, seed: int = 1, verify: bool = True, max_bucket_size: int = 5000,
                 rounds: int = 6, max_residual_edges: int = 1_000_000):
        super().__init__()
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither")
        if bands is None:
            bands, rows = optimal_param(threshold, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {num_perm}")
        self.ngram, self.num_perm, self.seed = ngram, num_perm, seed
        self.threshold, self.bands, self.rows, self.verify = threshold, bands, rows, verify
        self.max_bucket_size, self.rounds, self.max_residual_edges = max_bucket_size, rounds, max_residual_edges

    def expand(self, docs):
        bands, rows, verify = self.bands, self.rows, self.verify

        def to_buckets(rs):
            r, sig = rs
            payload = sig.tobytes() if verify else b""
            return [(key, (r, payload)) for key in band_keys(sig, bands, rows)]

        edges = (
            docs
            | "Signatures" >> beam.ParDo(_Signatures(self.ngram, self.num_perm, self.seed))
            | "Bands" >> beam.FlatMap(to_buckets)
            | "Buckets" >> beam.GroupByKey()
            | "Stars" >> beam.ParDo(BucketStars(self.threshold, verify, self.max_bucket_size))
        )
        labels = edges | "Components" >> ConnectedComponents(self.rounds, self.max_residual_edges)
        resolved = (
            {"doc": docs | "ByRank" >> beam.Map(lambda d: (rank(d), d)), "root": labels}
            | "JoinLabels" >> beam.CoGroupByKey()
            | "Resolve" >> beam.ParDo(_Resolve()).with_outputs(_Resolve.ROOTS, _Resolve.STATS, DROPPED,
                                                               main=DOCUMENTS)
        )
        stats = resolved[_Resolve.STATS] | "ClusterStats" >> beam.CombinePerKey(_ClusterStats())
        survivors = (
            {"doc": resolved[_Resolve.ROOTS], "stats": stats}
            | "JoinStats" >> beam.CoGroupByKey()
            | "Stamp" >> beam.FlatMap(_stamp)
        )
        documents = (resolved[DOCUMENTS], survivors) | "Merge" >> beam.Flatten()
        return {DOCUMENTS: documents, DROPPED: resolved[DROPPED]}

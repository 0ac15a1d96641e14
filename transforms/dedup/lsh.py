"""LSH banding of MinHash signatures, recall first, and the candidate pairs each bucket contributes.

Bands x rows are chosen for recall: a pair at true Jaccard J shares at least one of b bands of r rows with
probability P(J) = 1 - (1 - J^r)^b. `recall_first_params` takes, among b·r <= num_perm, the (b, r) with
P(min(threshold + 0.05, 0.99)) >= 0.999 that makes the fewest candidates below the threshold (least integral of P over
[0, threshold]). Candidates are only candidates: every pair is verified exactly afterwards (`verify.py`), so the
extra candidates cost work, never precision.

Bucket rule: a bucket's members, in rank order, are each paired with the `CENTRES` smallest ranks of the bucket:
all pairs in buckets of up to `CENTRES` + 1 members, linear work in larger ones (a member that is a
near-duplicate of any of the earliest copies links to them, so the whole cluster joins through them). A bucket
with more than `max_bucket_size` members (boilerplate shared by thousands of pages) is counted
(`lsh_oversized_buckets`) and contributes no pairs for that band: its members can still be linked through their
other bands, and identical copies were already removed by exact dedup.

Band entries travel in packs: almost every bucket has one member, and a shuffle element per (band key, rank) costs
more than everything else near dedup does (18 of them per document). `BandPacks` gathers a bundle's entries by
partition of the band-hash space (`PARTITIONS`, the low bits of the hash) and `BucketPairs` rebuilds the buckets of
one partition from all its packs: the same buckets, hence the same pairs, whatever the bundles were. A partition
holds bands x documents / `PARTITIONS` entries (1.1 M for 18 bands and a billion documents).
"""
from __future__ import annotations

import marshal
import math
from dataclasses import dataclass
from functools import lru_cache

import apache_beam as beam
import numpy as np
import xxhash

from transforms.accounting import count
from transforms.dedup.minhash import EMPTY

RECALL = 0.999
MARGIN = 0.05
CAP = 0.99  # at J = 1 every banding has P = 1: aim at 0.99 for thresholds above 0.94
CENTRES = 8
PARTITIONS = 1 << 14
FLUSH = 1 << 19  # band entries a bundle buffers before it sends its packs


def candidate_probability(j: float, bands: int, rows: int) -> float:
    return 1.0 - (1.0 - j**rows) ** bands


def _false_candidates(threshold: float, bands: int, rows: int, n: int = 2001) -> float:
    xs = np.linspace(0.0, threshold, n)
    return float(np.trapezoid(1.0 - (1.0 - xs**rows) ** bands, xs))


@lru_cache(maxsize=64)
def recall_first_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with P(candidate) >= RECALL at J = threshold + MARGIN and the fewest false candidates."""
    target = min(CAP, threshold + MARGIN)
    best, best_fp = None, math.inf
    for rows in range(1, num_perm + 1):
        miss = 1.0 - target**rows
        if miss >= 1.0:
            break
        bands = 1 if miss <= 0.0 else math.ceil(math.log(1.0 - RECALL) / math.log(miss))
        if bands * rows > num_perm:
            continue
        fp = _false_candidates(threshold, bands, rows)
        if fp < best_fp:
            best, best_fp = (bands, rows), fp
    if best is None:
        raise ValueError(f"no bands x rows within {num_perm} permutations reaches P(candidate) >= {RECALL} at "
                         f"Jaccard {target:.2f}; raise --num_perm")
    return best


@dataclass(frozen=True)
class LshParams:
    """The one source of the MinHash and banding settings: `NearDedup` and the refresh index both take them from
    here (the index records them and refuses a run with others, whose band keys it could not match)."""

    ngram: int
    num_perm: int
    threshold: float
    bands: int
    rows: int
    seed: int

    @classmethod
    def resolve(cls, ngram: int = 5, num_perm: int = 128, threshold: float = 0.8, bands: int | None = None,
                rows: int | None = None, seed: int = 1) -> "LshParams":
        """Explicit bands x rows, or the recall-first choice for the threshold; ValueError when inconsistent."""
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither")
        if bands is None:
            bands, rows = recall_first_params(threshold, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {num_perm}")
        return cls(ngram, num_perm, threshold, bands, rows, seed)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray | None:
    """xxh64 of each band's rows read as signed 64-bit ints (band i at position i); None for an empty signature.
    Signed, because Beam's default coder writes an int below 2^63 as a varint and pickles any larger one.
    `stored_hash` / `shuffled_hash` convert for the index's uint64 column."""
    if sig[0] == EMPTY and (sig == EMPTY).all():
        return None
    data, width = sig.tobytes(), 4 * rows
    digests = [xxhash.xxh64_intdigest(data[i * width : (i + 1) * width]) for i in range(bands)]
    return np.array(digests, dtype=np.uint64).view(np.int64)


def shuffled_hash(stored: int) -> int:
    return stored - (1 << 64) if stored >> 63 else stored


def stored_hash(shuffled: int) -> int:
    return shuffled & 0xFFFFFFFFFFFFFFFF


class BandPacks:
    """A bundle's band entries; `flush` empties it into (partition, pack) pairs, a pack being the marshalled
    (band numbers as uint16 bytes, band hashes as int64 bytes, ranks) of the entries in that partition."""

    def __init__(self):
        self._hashes: list[np.ndarray] = []
        self._ranks: list = []
        self._n = 0

    def add(self, hashes: np.ndarray, r) -> bool:
        """Adds one document's band hashes (`band_hashes`); True when the buffer is full enough to flush."""
        self._hashes.append(hashes)
        self._ranks.append(r)
        self._n += len(hashes)
        return self._n >= FLUSH

    def flush(self) -> list[tuple[int, bytes]]:
        if not self._ranks:
            return []
        hashes, ranks = np.stack(self._hashes), self._ranks
        self._hashes, self._ranks, self._n = [], [], 0
        bands = hashes.shape[1]
        flat = hashes.ravel()
        part = flat & (PARTITIONS - 1)
        order = np.argsort(part, kind="stable")  # entries grouped by partition, in insertion order within each
        part, doc, band = part[order], *np.divmod(order, bands)
        band, flat = band.astype(np.uint16), flat[order]
        ranks = [ranks[d] for d in doc.tolist()]
        starts = [0, *(np.flatnonzero(np.diff(part)) + 1).tolist()]
        ends = starts[1:] + [len(order)]
        return [(int(part[a]), marshal.dumps((band[a:b].tobytes(), flat[a:b].tobytes(), ranks[a:b])))
                for a, b in zip(starts, ends)]


class BucketPairs(beam.DoFn):
    """(partition, [pack]) -> candidate pairs (smaller rank, larger rank) of every bucket in the partition; the
    buckets with one member, nearly all of them, are skipped in numpy."""

    def __init__(self, max_bucket_size: int):
        self._max = max_bucket_size

    def process(self, kv):
        _, packs = kv
        bands, hashes, ranks = [], [], []
        for pack in packs:
            b, h, rs = marshal.loads(pack)
            bands.append(np.frombuffer(b, dtype=np.uint16))
            hashes.append(np.frombuffer(h, dtype=np.int64))
            ranks += rs
        band, h = np.concatenate(bands), np.concatenate(hashes)
        order = np.lexsort((band, h))
        band, h = band[order], h[order]
        same = (h[1:] == h[:-1]) & (band[1:] == band[:-1])  # entry i and i + 1 share a bucket
        if not same.any():
            return
        edges = np.flatnonzero(np.diff(np.concatenate(([False], same, [False])).astype(np.int8)))
        for start, last in zip(edges[::2].tolist(), edges[1::2].tolist()):
            yield from self.pairs([ranks[i] for i in order[start : last + 1].tolist()])

    def pairs(self, ranks: list):
        """One bucket's candidate pairs under the bucket rule (none when it is oversized)."""
        if len(ranks) > self._max:
            count("lsh_oversized_buckets")
            return
        if len(ranks) < 2:
            return
        count("lsh_candidate_buckets")
        ranks = sorted(ranks)
        centres = ranks[:CENTRES]
        for i, r in enumerate(ranks[1:], start=1):
            for c in centres[: min(i, CENTRES)]:
                yield c, r

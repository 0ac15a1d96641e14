"""LSH banding of MinHash signatures, and the star edges each bucket contributes.

Bands x rows are chosen as datasketch's `optimal_param` chooses them (minimise the equally weighted integrated
false-positive and false-negative probabilities of the S-curve at the threshold), unless given.

Bucket rule: each bucket becomes a star on its smallest rank (earliest capture, then smallest id), linear in
the bucket's size, never pairwise. With verification on, a member joins the star only if its estimated Jaccard
with the centre reaches the threshold. A bucket with more than `max_bucket_size` members (boilerplate shared by
thousands of pages) is counted (`lsh_oversized_buckets`) and contributes no edges for that band: its members can
still be linked through their other bands, and identical copies were already removed by exact dedup.
"""
from __future__ import annotations

from functools import lru_cache

import apache_beam as beam
import numpy as np
import xxhash

from transforms.accounting import count
from transforms.dedup.minhash import EMPTY


def _integral(f, lo: float, hi: float, n: int = 2001) -> float:
    xs = np.linspace(lo, hi, n)
    return float(np.trapezoid(f(xs), xs))


@lru_cache(maxsize=64)
def optimal_param(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising fp_weight * P(false positive) + fn_weight * P(false negative)."""
    best, best_err = (1, 1), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integral(lambda s: 1 - (1 - s**r) ** b, 0.0, threshold)
            fn = _integral(lambda s: (1 - s**r) ** b, threshold, 1.0)
            err = fp * fp_weight + fn * fn_weight
            if err < best_err:
                best, best_err = (b, r), err
    return best


def band_keys(sig: np.ndarray, bands: int, rows: int) -> list[tuple[int, int]]:
    """(band, hash of the band's rows) for each band; an empty signature has none."""
    if sig[0] == EMPTY and (sig == EMPTY).all():
        return []
    return [(i, xxhash.xxh64_intdigest(sig[i * rows : (i + 1) * rows].tobytes())) for i in range(bands)]


class BucketStars(beam.DoFn):
    """(band key, [(rank, signature bytes)]) -> star edges (member rank, centre rank)."""

    def __init__(self, threshold: float, verify: bool, max_bucket_size: int):
        self._threshold = threshold
        self._verify = verify
        self._max = max_bucket_size

    def process(self, kv):
        _, members = kv
        n = 0
        centre, centre_sig = None, None
        for rank, sig in members:
            n += 1
            if n > self._max:
                count("lsh_oversized_buckets")
                return
            if centre is None or rank < centre:
                centre, centre_sig = rank, sig
        if n < 2:
            return
        count("lsh_candidate_buckets")
        c = np.frombuffer(centre_sig, dtype=np.uint32) if self._verify else None
        for rank, sig in members:
            if rank == centre:
                continue
            if self._verify:
                est = np.count_nonzero(np.frombuffer(sig, dtype=np.uint32) == c) / len(c)
                if est < self._threshold:
                    count("lsh_pairs_rejected")
                    continue
            yield rank, centre

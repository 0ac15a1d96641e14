"""MinHash signatures over word n-gram shingles, in one compiled pass over the UTF-8 bytes of a document.

The hot path builds no shingle strings: words are hashed as they are scanned (64-bit FNV-1a over their bytes,
ASCII lower-cased in the loop), the n word hashes of a shingle, each multiplied by a key of its position, fold
into a 32-bit shingle hash, and every shingle updates all permutations at once. Permutation k is
h_k(x) = fmix32(x XOR s_k), MurmurHash3's 32-bit finaliser keyed by a 32-bit s_k drawn from the configured seed:
a bijection of the 32-bit space for each k, computed in 32-bit lanes that the compiler vectorises across
permutations (datasketch's (a·x + b) mod (2^61 − 1) needs 64-bit multiplies that AVX2 lacks).
Every worker derives the same s_k, so signatures are identical everywhere. Its estimates are checked against
datasketch's in tests and in `benchmarks/dedup_quality.py`.

Shingling rule: text is NFKC-normalised and lower-cased, words are maximal runs of non-whitespace; a document
with fewer words than n is a single shingle of all its words; a document with no words has no signature
(all values 2^32 - 1) and is never a near-duplicate of anything.
"""
from __future__ import annotations

import unicodedata

import numba
import numpy as np

MAX_HASH = np.uint64((1 << 32) - 1)
EMPTY = np.uint32(0xFFFFFFFF)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_U32 = np.uint32


def permutations(num_perm: int, seed: int) -> np.ndarray:
    """The num_perm 32-bit permutation keys, from a seeded generator (never the clock or the process)."""
    return np.random.RandomState(seed).randint(0, 1 << 32, size=num_perm, dtype=np.uint64).astype(np.uint32)


def prepare(text: str) -> bytes:
    """NFKC is the identity on ASCII, which most crawl text is, and the kernel lower-cases ASCII bytes itself: an
    ASCII document goes straight to bytes."""
    if text.isascii():
        return text.encode("ascii")
    return unicodedata.normalize("NFKC", text).lower().encode("utf-8", "surrogatepass")


@numba.njit(cache=True, nogil=True)
def _shingle_hashes(buf, ngram):
    words = np.empty(len(buf) // 2 + 1, dtype=np.uint64)
    nw = 0
    h = _FNV_OFFSET
    in_word = False
    for i in range(len(buf)):
        c = buf[i]
        if c == 32 or (9 <= c <= 13):
            if in_word:
                words[nw] = h
                nw += 1
                in_word = False
                h = _FNV_OFFSET
        else:
            if 65 <= c <= 90:
                c += 32
            h = (h ^ np.uint64(c)) * _FNV_PRIME
            in_word = True
    if in_word:
        words[nw] = h
        nw += 1
    if nw == 0:
        return np.empty(0, dtype=np.uint32)
    count = max(1, nw - ngram + 1)
    span = min(ngram, nw)
    shingles = np.empty(count, dtype=np.uint32)
    for i in range(count):
        h = np.uint64(0)
        for j in range(span):  # independent multiplies (no serial chain): word j of the shingle by its own odd key
            h ^= words[i + j] * (_GOLDEN * np.uint64(2 * j + 1))
        h ^= h >> np.uint64(29)
        h *= _FNV_PRIME
        shingles[i] = _U32((h >> np.uint64(32)) ^ (h & MAX_HASH))
    return shingles


@numba.njit(cache=True, nogil=True, fastmath=True)
def _signature(buf, ngram, keys, sig):
    """Casts after every step keep the arithmetic in 32 bits, which is what lets it vectorise."""
    shingles = _shingle_hashes(buf, ngram)
    num_perm = len(keys)
    for k in range(num_perm):
        sig[k] = _U32(0xFFFFFFFF)
    for i in range(len(shingles)):
        x = shingles[i]
        for k in range(num_perm):
            v = _U32(x ^ keys[k])
            v = _U32(v ^ (v >> _U32(16)))
            v = _U32(v * _U32(0x85EBCA6B))
            v = _U32(v ^ (v >> _U32(13)))
            v = _U32(v * _U32(0xC2B2AE35))
            sig[k] = min(sig[k], _U32(v ^ (v >> _U32(16))))
    return len(shingles)


class MinHasher:
    """Computes signatures for one (ngram, num_perm, seed) configuration."""

    def __init__(self, ngram: int = 5, num_perm: int = 128, seed: int = 1):
        self.ngram, self.num_perm, self.seed = ngram, num_perm, seed
        self.keys = permutations(num_perm, seed)

    def signature(self, text: str) -> np.ndarray:
        sig = np.empty(self.num_perm, dtype=np.uint32)
        _signature(np.frombuffer(prepare(text), dtype=np.uint8), self.ngram, self.keys, sig)
        return sig


def jaccard_estimate(s1: np.ndarray, s2: np.ndarray) -> float:
    if s1[0] == EMPTY and (s1 == EMPTY).all():
        return 0.0
    return float(np.count_nonzero(s1 == s2)) / len(s1)


def shingle_set(text: str, ngram: int) -> set[tuple[str, ...]]:
    """The exact shingles the kernel hashes (for ground truth in tests and benchmarks)."""
    words = unicodedata.normalize("NFKC", text).lower().split()
    if not words:
        return set()
    if len(words) < ngram:
        return {tuple(words)}
    return {tuple(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}

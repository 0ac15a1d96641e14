"""MinHash signatures over word n-gram shingles, in one compiled pass over the UTF-8 bytes of a document.

The hot path builds no shingle strings: words are hashed as they are scanned (64-bit FNV-1a over their bytes),
n consecutive word hashes are folded into a 32-bit shingle hash, and every shingle updates all permutations at
once. Permutations are datasketch's universal hashing, h_k(x) = ((a_k * x + b_k) mod (2^61 - 1)) & (2^32 - 1),
with (a_k, b_k) drawn from the configured seed, so every worker computes identical signatures.

Shingling rule: text is NFKC-normalised and lower-cased, words are maximal runs of non-whitespace; a document
with fewer words than n is a single shingle of all its words; a document with no words has no signature
(all values 2^32 - 1) and is never a near-duplicate of anything.
"""
from __future__ import annotations

import unicodedata

import numba
import numpy as np

MERSENNE = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
EMPTY = np.uint32(0xFFFFFFFF)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) as datasketch draws them: a in [1, p), b in [0, p), from a seeded generator."""
    rng = np.random.RandomState(seed)
    a = rng.randint(1, int(MERSENNE), size=num_perm, dtype=np.uint64)
    b = rng.randint(0, int(MERSENNE), size=num_perm, dtype=np.uint64)
    return a, b


def prepare(text: str) -> bytes:
    return unicodedata.normalize("NFKC", text).lower().encode("utf-8", "surrogatepass")


@numba.njit(cache=True, nogil=True)
def _word_hashes(buf):
    out = np.empty(len(buf) // 2 + 1, dtype=np.uint64)
    n = 0
    h = _FNV_OFFSET
    in_word = False
    for i in range(len(buf)):
        c = buf[i]
        if c == 32 or (9 <= c <= 13):
            if in_word:
                out[n] = h
                n += 1
                in_word = False
                h = _FNV_OFFSET
        else:
            h = (h ^ np.uint64(c)) * _FNV_PRIME
            in_word = True
    if in_word:
        out[n] = h
        n += 1
    return out[:n]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _signature(buf, ngram, a, b, sig):
    words = _word_hashes(buf)
    nw = len(words)
    sig[:] = 0xFFFFFFFF
    if nw == 0:
        return 0
    count = max(1, nw - ngram + 1)
    span = min(ngram, nw)
    shingles = np.empty(count, dtype=np.uint64)
    for i in range(count):
        h = _FNV_OFFSET
        for j in range(span):
            h = (h ^ words[i + j]) * _FNV_PRIME
        shingles[i] = (h >> np.uint64(32)) ^ (h & MAX_HASH)
    for k in range(len(a)):
        ak, bk = a[k], b[k]
        m = MAX_HASH
        for i in range(count):
            v = ak * shingles[i] + bk
            v = ((v & MERSENNE) + (v >> np.uint64(61))) & MAX_HASH
            m = min(m, v)
        sig[k] = np.uint32(m)
    return count


class MinHasher:
    """Computes signatures for one (ngram, num_perm, seed) configuration."""

    def __init__(self, ngram: int = 5, num_perm: int = 128, seed: int = 1):
        self.ngram, self.num_perm, self.seed = ngram, num_perm, seed
        self.a, self.b = permutations(num_perm, seed)

    def signature(self, text: str) -> np.ndarray:
        sig = np.empty(self.num_perm, dtype=np.uint32)
        _signature(np.frombuffer(prepare(text), dtype=np.uint8), self.ngram, self.a, self.b, sig)
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

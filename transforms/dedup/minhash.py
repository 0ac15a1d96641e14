"""MinHash signatures over word n-gram shingles, in one compiled pass over the UTF-8 bytes of a document.

The hot path builds no shingle strings: words are hashed as they are scanned (64-bit FNV-1a over their bytes,
ASCII lower-cased in the loop), the n word hashes of a shingle, each multiplied by a key of its position, fold
into a 64-bit shingle hash, and every shingle updates all permutations at once with its low 32 bits. Permutation
k is h_k(x) = fmix32(x XOR s_k), MurmurHash3's 32-bit finaliser keyed by a 32-bit s_k drawn from the configured
seed: a bijection of the 32-bit space for each k, computed in 32-bit lanes that the compiler vectorises across
permutations (datasketch's (a·x + b) mod (2^61 − 1) needs 64-bit multiplies that AVX2 lacks).
Every worker derives the same s_k, so signatures are identical everywhere. Its estimates are checked against
datasketch's in tests and in `benchmarks/dedup_quality.py`. The same pass returns the distinct 64-bit shingle
hashes, on which candidate pairs are verified exactly (`jaccard`).

Shingling rule: text is NFKC-normalised and lower-cased; words are maximal runs of non-whitespace (ASCII
whitespace, which NFKC maps the Unicode spaces to), except that every character of a script written without
spaces (Thai, Lao, Tibetan, Myanmar, Khmer, CJK ideographs, kana, CJK punctuation) is a word of its own, so
n-word shingles become n-character shingles there. A document with fewer words than n is a single shingle of
all its words; a document with no words has no signature (all values 2^32 - 1) and is never a near-duplicate of
anything.
"""
from __future__ import annotations

import re
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
def _spaceless(cp):
    """Scripts written without spaces between words: each of their characters is a word of its own."""
    return (0x0E00 <= cp <= 0x0FFF or 0x1000 <= cp <= 0x109F or 0x1780 <= cp <= 0x17FF or 0x3000 <= cp <= 0x30FF
            or 0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF
            or 0x20000 <= cp <= 0x3FFFF)


@numba.njit(cache=True, nogil=True)
def _shingles(buf, ngram):
    """64-bit hash of every shingle, in text order (repeats included)."""
    n = len(buf)
    words = np.empty(n // 2 + 1, dtype=np.uint64)
    nw = 0
    h = _FNV_OFFSET
    in_word = False
    i = 0
    while i < n:
        c = buf[i]
        if c < 128:
            i += 1
            if c == 32 or (9 <= c <= 13):
                if in_word:
                    words[nw] = h
                    nw += 1
                    in_word = False
                    h = _FNV_OFFSET
                continue
            if 65 <= c <= 90:
                c += 32
            h = (h ^ np.uint64(c)) * _FNV_PRIME
            in_word = True
            continue
        length = 4 if c >= 0xF0 else 3 if c >= 0xE0 else 2 if c >= 0xC0 else 1
        length = min(length, n - i)
        cp = np.int64(c & (0x07 if length == 4 else 0x0F if length == 3 else 0x1F))
        for k in range(1, length):
            cp = (cp << 6) | np.int64(buf[i + k] & 0x3F)
        if length >= 3 and _spaceless(cp):
            if in_word:
                words[nw] = h
                nw += 1
                in_word = False
            h = _FNV_OFFSET
            for k in range(length):
                h = (h ^ np.uint64(buf[i + k])) * _FNV_PRIME
            words[nw] = h
            nw += 1
            h = _FNV_OFFSET
        else:
            for k in range(length):
                h = (h ^ np.uint64(buf[i + k])) * _FNV_PRIME
            in_word = True
        i += length
    if in_word:
        words[nw] = h
        nw += 1
    if nw == 0:
        return np.empty(0, dtype=np.uint64)
    count = max(1, nw - ngram + 1)
    span = min(ngram, nw)
    shingles = np.empty(count, dtype=np.uint64)
    for i in range(count):
        h = np.uint64(0)
        for j in range(span):  # independent multiplies (no serial chain): word j of the shingle by its own odd key
            h ^= words[i + j] * (_GOLDEN * np.uint64(2 * j + 1))
        h ^= h >> np.uint64(29)
        h *= _FNV_PRIME
        h ^= h >> np.uint64(32)
        shingles[i] = h
    return shingles


@numba.njit(cache=True, nogil=True, fastmath=True)
def _signature(buf, ngram, keys, sig):
    """Fills `sig` and returns the 64-bit shingle hashes. Casts after every step keep the permutation arithmetic
    in 32 bits, which is what lets it vectorise."""
    shingles = _shingles(buf, ngram)
    num_perm = len(keys)
    for k in range(num_perm):
        sig[k] = _U32(0xFFFFFFFF)
    for i in range(len(shingles)):
        x = _U32(shingles[i] & MAX_HASH)
        for k in range(num_perm):
            v = _U32(x ^ keys[k])
            v = _U32(v ^ (v >> _U32(16)))
            v = _U32(v * _U32(0x85EBCA6B))
            v = _U32(v ^ (v >> _U32(13)))
            v = _U32(v * _U32(0xC2B2AE35))
            sig[k] = min(sig[k], _U32(v ^ (v >> _U32(16))))
    return shingles


@numba.njit(cache=True, nogil=True)
def _distinct(values):
    """Sorted distinct values (what np.unique returns, without its hash table and Python overhead)."""
    out = np.sort(values)
    n = 0
    for i in range(len(out)):
        if n == 0 or out[i] != out[n - 1]:
            out[n] = out[i]
            n += 1
    return out[:n]


@numba.njit(cache=True, nogil=True)
def _intersection(a, b):
    i = j = inter = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            inter += 1
            i += 1
            j += 1
        elif a[i] < b[j]:
            i += 1
        else:
            j += 1
    return inter


class MinHasher:
    """Computes signatures (and the shingle hashes that verify them) for one (ngram, num_perm, seed)."""

    def __init__(self, ngram: int = 5, num_perm: int = 128, seed: int = 1):
        self.ngram, self.num_perm, self.seed = ngram, num_perm, seed
        self.keys = permutations(num_perm, seed)

    def _run(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        sig = np.empty(self.num_perm, dtype=np.uint32)
        return sig, _signature(np.frombuffer(prepare(text), dtype=np.uint8), self.ngram, self.keys, sig)

    def signature(self, text: str) -> np.ndarray:
        return self._run(text)[0]

    def sketch(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(signature, sorted distinct 64-bit shingle hashes) from one pass over the text."""
        sig, shingles = self._run(text)
        return sig, _distinct(shingles)


def jaccard_estimate(s1: np.ndarray, s2: np.ndarray) -> float:
    if s1[0] == EMPTY and (s1 == EMPTY).all():
        return 0.0
    return float(np.count_nonzero(s1 == s2)) / len(s1)


def jaccard(a, b) -> float:
    """The exact Jaccard |a & b| / |a | b|, one definition for production and tests: of two sorted distinct
    shingle-hash arrays (the kernel's, merged in compiled code) or of two Python sets (`shingle_set`, the ground
    truth of tests and benchmarks). 0.0 when either is empty: an empty document is never a duplicate."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    inter = len(a & b) if isinstance(a, (set, frozenset)) else _intersection(a, b)
    return inter / (len(a) + len(b) - inter)


_SPACELESS = ("\u0e00-\u0fff\u1000-\u109f\u1780-\u17ff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
              "\uf900-\ufaff\U00020000-\U0003ffff")
_WORD = re.compile(f"[{_SPACELESS}]|[^\t\n\x0b\x0c\r {_SPACELESS}]+")


def words(text: str) -> list[str]:
    """The kernel's words, in Python: runs of non-whitespace (ASCII whitespace) split so that every character of
    a space-less script is a word of its own."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def shingle_set(text: str, ngram: int) -> set[tuple[str, ...]]:
    """The exact shingles the kernel hashes (ground truth in tests and benchmarks)."""
    ws = words(text)
    if not ws:
        return set()
    if len(ws) < ngram:
        return {tuple(ws)}
    return {tuple(ws[i : i + ngram]) for i in range(len(ws) - ngram + 1)}

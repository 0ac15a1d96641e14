"""MinHash against datasketch (the reference), the short-document rule, normalisation."""
from __future__ import annotations

import random
import unicodedata

import numpy as np
import pytest
from datasketch import MinHash

from transforms.dedup.lsh import band_hashes
from transforms.dedup.minhash import MinHasher, jaccard, jaccard_estimate, shingle_set
from transforms.dedup.normalize import Normalization

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega").split()


def _text(rng, n):
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def test_estimates_are_as_accurate_as_datasketch():
    rng = random.Random(3)
    ours, theirs = [], []
    hasher = MinHasher(5, 128, seed=11)
    for _ in range(300):
        words = _text(rng, rng.randrange(60, 400)).split()
        edited = list(words)
        for _ in range(rng.randrange(0, 40)):
            edited[rng.randrange(len(edited))] = "edit" + str(rng.random())
        a, b = " ".join(words), " ".join(edited)
        sa, sb = shingle_set(a, 5), shingle_set(b, 5)
        truth = jaccard(sa, sb)
        ours.append(abs(jaccard_estimate(hasher.signature(a), hasher.signature(b)) - truth))
        m1, m2 = MinHash(128, seed=11), MinHash(128, seed=11)
        m1.update_batch([" ".join(s).encode() for s in sa])
        m2.update_batch([" ".join(s).encode() for s in sb])
        theirs.append(abs(m1.jaccard(m2) - truth))
    assert np.mean(ours) <= np.mean(theirs) * 1.15 + 0.002, (np.mean(ours), np.mean(theirs))


def test_signatures_depend_on_seed_only():
    text = "the same words in the same order give the same signature everywhere"
    assert (MinHasher(5, 64, 7).signature(text) == MinHasher(5, 64, 7).signature(text)).all()
    assert not (MinHasher(5, 64, 7).signature(text) == MinHasher(5, 64, 8).signature(text)).all()


def test_short_and_empty_documents_follow_the_documented_rule():
    h = MinHasher(5, 64, 1)
    assert shingle_set("two words", 5) == {("two", "words")}
    assert jaccard_estimate(h.signature("two words"), h.signature("Two  WORDS")) == 1.0
    assert jaccard_estimate(h.signature("two words"), h.signature("two other")) < 0.5
    empty = h.signature("   \n ")
    assert band_hashes(empty, 8, 8) is None and jaccard_estimate(empty, empty) == 0.0


def test_exact_normalisation():
    n = Normalization()
    assert n.key("Ｈello\tWorld ") == n.key("hello world")
    assert Normalization.parse("none").key("A") != Normalization.parse("none").key("a")
    with pytest.raises(ValueError, match="unknown normalisation"):
        Normalization.parse("nfkc,stem")


def test_exact_normalisation_collapses_every_unicode_whitespace_run_like_the_regex():
    """The regex-free whitespace step equals `re.sub(r"\\s+", " ", text).strip()` (what it replaced), including
    non-ASCII spaces and ASCII text that skips NFKC."""
    import re

    rng = random.Random(9)
    pool = [" ", "\t", "\n", "\r", "\x0b", "\x1c", "\x85", "\xa0", "\u2003", "\u3000", "a", "Z", "é", "ﬁ", "\u200b"]
    n = Normalization()
    for _ in range(3000):
        text = "".join(rng.choice(pool) for _ in range(rng.randrange(0, 15)))
        expected = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()
        assert n.apply(text) == expected, repr(text)


def test_band_keys_shuffle_as_signed_ints_and_store_as_xxh64():
    """Band keys stay below 2^63 in magnitude (a varint for Beam's coder, never a pickle) and map back to the
    unsigned xxh64 of the band's rows that the refresh index stores."""
    import xxhash

    from transforms.dedup.lsh import shuffled_hash, stored_hash

    for h in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        assert -(2**63) <= shuffled_hash(h) < 2**63 and stored_hash(shuffled_hash(h)) == h
    sig = MinHasher(5, 128, 1).signature(" ".join(f"w{i}" for i in range(50)))
    hashes = band_hashes(sig, 18, 7).tolist()
    assert [stored_hash(h) for h in hashes] == [xxhash.xxh64_intdigest(sig[i * 7 : (i + 1) * 7].tobytes())
                                                 for i in range(18)]

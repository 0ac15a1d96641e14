"""`count_tokens`' fast path counts exactly what the regex `\\w+|[^\\w\\s]` finds, on any text."""
from __future__ import annotations

import gzip
import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED
from transforms.tokens import TOKEN, count_tokens


def regex_count(text: str) -> int:
    return len(TOKEN.findall(text))


# every character class the fast path could treat differently from the regex: letters, digits and numerics of
# any script, the underscore, punctuation, symbols, marks, every kind of whitespace (including the separators
# str.split() knows, \x1c-\x1f and \x85), controls and surrogates
SPECIAL = ("_ \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u3000\u200b\ufeff"
           "½²٣Ⅻ〇०'-.,!?é\u0301")


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(SPECIAL)), max_size=60))
def test_fast_path_equals_regex_on_any_text(text):
    assert count_tokens(text) == regex_count(text)


def test_fast_path_equals_regex_on_every_character():
    """Each code point alone and between words: the two agree on what is a word, a mark or a separator."""
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        for text in (ch, f"a{ch}b", f"{ch}{ch} x"):
            assert count_tokens(text) == regex_count(text), hex(cp)


def test_counts_words_and_marks():
    assert count_tokens("Hello, world! It's 2024_x.") == 9  # Hello , world ! It ' s 2024_x .
    assert count_tokens("") == count_tokens(" \n\t ") == 0


@pytest.mark.slow  # every labelled text of ../shared; the fast tier keeps the property test on any text
def test_fast_path_equals_regex_on_labelled_texts():
    files = sorted((SHARED / "data" / "detect").glob("*.jsonl.gz"))
    if not files:
        pytest.skip(f"no labelled texts under {SHARED / 'data' / 'detect'} (set SYNTHCAP_SHARED)")
    n = 0
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                text = json.loads(line)["text"]
                assert count_tokens(text) == regex_count(text), (path.name, text[:80])
                n += 1
    assert n > 10_000

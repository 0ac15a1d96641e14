"""Token counting for budgets and the ceiling: words and punctuation marks, offline and deterministic.

`\\w+|[^\\w\\s]` counts a word or a single punctuation mark as one token. It needs no vocabulary file; subword
tokenizers of current LLMs typically produce 1.1-1.5x as many tokens on English prose, so budgets are in
"synthcap tokens", and the ceiling (a ratio) holds whatever the tokenizer.

Counted without a regex match per token: a whitespace-separated chunk of word characters only (`str.isalnum`,
the regex's `\\w` minus `_`) is one token, and only the other chunks go through the regex, joined by a space in
one call (and when the chunks joined are all word characters, no chunk is looked at alone). `str.split()` and
`\\s` split on the same characters and no token spans whitespace, so the count is the regex's
(tests/test_tokens.py: arbitrary text, every code point, the labelled texts), several times faster.
"""
from __future__ import annotations

import re

TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    chunks = text.split()
    if "".join(chunks).isalnum():  # every chunk is word characters only: one C call, not one per chunk
        return len(chunks)
    other = [c for c in chunks if not c.isalnum()]
    if not other:
        return len(chunks)
    return len(chunks) - len(other) + len(TOKEN.findall(" ".join(other)))

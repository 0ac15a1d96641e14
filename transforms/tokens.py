"""Token counting for budgets and the ceiling: words and punctuation marks, offline and deterministic.

`\\w+|[^\\w\\s]` counts a word or a single punctuation mark as one token. It needs no vocabulary file; subword
tokenizers of current LLMs typically produce 1.1-1.5x as many tokens on English prose, so budgets are in
"synthcap tokens", and the ceiling (a ratio) holds whatever the tokenizer.
"""
from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))

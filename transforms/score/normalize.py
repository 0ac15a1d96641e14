"""What the detector sees: NFKC, no invisible characters, common homoglyphs folded, one line.

Provenance counts the invisible characters before this runs, so nothing is lost by stripping them here.
"""
from __future__ import annotations

import re
import unicodedata

_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad\ufe00-\ufe0f\U000e0100-\U000e01ef]")
# Cyrillic and Greek letters that render like Latin ones: the usual homoglyph attack on detectors.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "Ι": "I", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Χ": "X", "ο": "o", "ν": "v",
})
_SPACE = re.compile(r"\s+")
MAX_CHARS = 20_000


def for_scoring(text: str) -> str:
    """fastText's predict raises on newlines; the first MAX_CHARS characters carry enough signal."""
    text = unicodedata.normalize("NFKC", text[: MAX_CHARS * 2])
    text = _INVISIBLE.sub("", text).translate(_HOMOGLYPHS)
    return _SPACE.sub(" ", text).strip()[:MAX_CHARS]

"""Invisible and unusual code points, counted before any normalisation, and the C2PA text wrapper."""
from __future__ import annotations

import re

# Code points that are invisible or unusual in running text; variation selectors are counted as one class.
TRACKED = {"\u200b": "U+200B", "\u200c": "U+200C", "\u200d": "U+200D", "\u2060": "U+2060", "\ufeff": "U+FEFF",
           "\u00ad": "U+00AD", "\u202f": "U+202F"}
_VS = "\ufe00-\ufe0f\U000e0100-\U000e01ef"
_TRACKED_RE = re.compile(f"[{''.join(TRACKED)}{_VS}]")
_WRAPPER_RE = re.compile(f"\ufeff([{_VS}]{{8,}})")
C2PA_MAGIC = b"C2PATXT\x00"


def invisible_counts(text: str) -> dict[str, int]:
    if text.isascii():  # every tracked code point is outside ASCII; the check costs a fraction of the scan
        return {}
    counts: dict[str, int] = {}
    for ch in _TRACKED_RE.findall(text):
        key = TRACKED.get(ch, "variation_selector")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _vs_byte(ch: str) -> int:
    cp = ord(ch)
    return cp - 0xFE00 if cp <= 0xFE0F else cp - 0xE0100 + 16


def has_c2pa_text_wrapper(text: str) -> bool:
    """U+FEFF followed by variation selectors whose bytes begin with C2PATXT\\0 (C2PA unstructured-text
    embedding). Presence only: the manifest's signature is not verified."""
    if text.isascii():
        return False
    for m in _WRAPPER_RE.finditer(text):
        if bytes(_vs_byte(c) for c in m.group(1)[:8]) == C2PA_MAGIC:
            return True
    return False


def c2pa_text_wrapper(payload: bytes) -> str:
    """Encodes bytes as the wrapper does (for tests and fixtures)."""
    return "\ufeff" + "".join(chr(0xFE00 + b) if b < 16 else chr(0xE0100 + b - 16) for b in payload)

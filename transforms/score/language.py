"""Which documents the detector may score: it was trained on English text only.

The WET `WARC-Identified-Content-Language` header (ISO 639-3, e.g. `eng` or `eng,deu`; `language` on a
Document) decides when present; otherwise py3langid, whose model ships inside the pip package (nothing is
downloaded at run time), classifies the first `SAMPLE_CHARS` characters (~1 ms per document on one core).
"""
from __future__ import annotations

SUPPORTED = frozenset({"en"})
SAMPLE_CHARS = 1000
_ISO3 = {"eng": "en"}


def declared_language(language: str | None) -> str | None:
    """The primary language of a WET header or a Document's `language` field, as ISO 639-1 where known. A BCP 47
    tag's region or script (`en-US`, `en_GB`, `EN`) is not another language: it was, and English documents so
    tagged went unscored (and English training texts so tagged were left out as not English)."""
    if not language or not isinstance(language, str):
        return None
    first = language.split(",")[0].strip().lower().replace("_", "-").split("-")[0]
    if not first:
        return None
    return _ISO3.get(first, first)


class LanguageGate:
    """Loaded once per worker (the identifier takes ~1.5 s to load)."""

    def __init__(self):
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)

    def language(self, text: str, declared: str | None) -> str:
        lang = declared_language(declared)
        if lang is not None:
            return lang
        return self._identifier.classify(text[:SAMPLE_CHARS])[0]

    def supported(self, text: str, declared: str | None) -> bool:
        return self.language(text, declared) in SUPPORTED

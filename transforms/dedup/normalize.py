"""Text normalisation for exact-duplicate keys: what counts as 'the same text'."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import xxhash


@dataclass(frozen=True)
class Normalization:
    """Steps applied before hashing: NFKC, case folding, whitespace collapsing (each can be switched off)."""

    nfkc: bool = True
    casefold: bool = True
    whitespace: bool = True

    @classmethod
    def parse(cls, spec: str) -> "Normalization":
        """From a comma list such as "nfkc,casefold,whitespace" ("none" for raw text)."""
        named = {s.strip() for s in spec.split(",") if s.strip()}
        if not named or ("none" in named and len(named) > 1):  # `--exact_normalization=$UNSET` meant no steps
            raise ValueError(f"expected nfkc, casefold and/or whitespace, or none alone, got {spec!r}")
        steps = named - {"none"}
        unknown = steps - {"nfkc", "casefold", "whitespace"}
        if unknown:
            raise ValueError(f"unknown normalisation step(s) {sorted(unknown)}; allowed: nfkc, casefold, whitespace")
        return cls("nfkc" in steps, "casefold" in steps, "whitespace" in steps)

    def apply(self, text: str) -> str:
        """NFKC is the identity on ASCII (skipped there); `str.split()` and the regex `\\s` agree on what whitespace is
        (`str.isspace`), and joining the split words is the regex collapse-and-strip at a fraction of its cost."""
        if self.nfkc and not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        if self.casefold:
            text = text.casefold()
        if self.whitespace:
            text = " ".join(text.split())
        return text

    def key(self, text: str) -> str:
        return xxhash.xxh3_128_hexdigest(self.apply(text).encode("utf-8", "surrogatepass"))

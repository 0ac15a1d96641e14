"""Per document: excluded or not, its tokens, its synthetic tokens by the rule, its priority and stream.

The ceiling c holds on the output iff the sum over output rows of excess = synthetic_tokens - c * tokens is <= 0.
`under` documents (excess <= 0: human, or AI-likely below the ceiling under the expected rule) can never break it;
`over` documents are taken only while the slack left by anchors and under documents lasts. Unscored documents
count as synthetic (the conservative reading). A declared-AI page (IPTC digital source type) is synthetic
whatever its score.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import xxhash

from transforms.document import Document
from transforms.mix.config import Exclude, MixConfig
from transforms.tokens import count_tokens

ANCHOR, UNDER, OVER = "anchor", "under", "over"
BUCKET_BITS = 12


@dataclass
class Item:
    source: str
    stream: str
    epoch: int
    priority: int
    units: int
    tokens: int
    synthetic: Fraction
    excess: Fraction
    doc: Document

    @property
    def bucket(self) -> int:
        return (self.epoch << BUCKET_BITS) | (self.priority >> (64 - BUCKET_BITS))

    @property
    def order(self) -> tuple[int, int, str]:
        return self.epoch, self.priority, self.doc.id


def priority(seed: int, doc_id: str) -> int:
    """A keyed hash of seed and id: the within-source order, the same on every worker and run."""
    return xxhash.xxh64_intdigest(f"{seed}\x00{doc_id}".encode())


def exclusion(doc: Document, ex: Exclude, tokens: int) -> Optional[str]:
    p = doc.provenance or {}
    if ex.opt_out and (p.get("tdm_reservation") == 1 or p.get("robots_noai")):
        return "excluded_opt_out"
    if doc.language and doc.language in ex.languages:
        return "excluded_filter"
    if ex.domains and (p.get("registered_domain") in ex.domains or doc.domain in ex.domains):
        return "excluded_filter"
    if tokens < ex.min_tokens:
        return "excluded_filter"
    return None


def synthetic_tokens(doc: Document, tokens: int, cfg: MixConfig) -> Fraction:
    if (doc.provenance or {}).get("declared_ai") or doc.p_ai is None:
        return Fraction(tokens)
    if cfg.rule == "threshold":
        return Fraction(tokens) if doc.p_ai >= cfg.threshold else Fraction(0)
    return Fraction(doc.p_ai) * tokens


def make_item(doc: Document, source: str, anchor: bool, cfg: MixConfig, tokens: int) -> Item:
    syn = synthetic_tokens(doc, tokens, cfg)
    excess = syn - cfg.ceiling * tokens
    stream = ANCHOR if anchor else (UNDER if excess <= 0 else OVER)
    units = tokens if cfg.unit == "tokens" else 1
    return Item(source, stream, 0, priority(cfg.seed, doc.id), units, tokens, syn, excess, doc)

"""Per document: excluded or not, valid scores or not, its tokens, its priority, and what the ceiling knows of it.

The ceiling c holds on the output iff the sum over output rows of excess = tokens x (rate - c) is <= 0, where a
row's rate is the AI share it is charged with, in fixed point (`certify.SCALE`), so every sum is an exact
integer. Certified (default): a document's rate is its source's certified AI rate at the source's p-value cut,
known once the plan is made; here it gets its reference group and grid level. Rule counts (opt-in): `threshold`
charges 1 or 0, `expected` charges p_ai (rounded up to the fixed point); unscored documents and declared-AI
pages (IPTC digital source type) are charged 1 under every rule. `under` documents (excess <= 0) can never
break the ceiling; `over` documents are taken only while the slack left by anchors and under documents lasts.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple, Optional, Union

import apache_beam as beam
import xxhash

from transforms.document import Document
from transforms.mix import certify
from transforms.mix.config import Exclude, MixConfig
from transforms.tokens import count_tokens

ANCHOR, UNDER, OVER = "anchor", "under", "over"
BUCKET_BITS = 12
SCORE_FIELDS = ("p_ai", "ai_score", "ai_pvalue")


class Item(NamedTuple):
    """What selection needs of a document, and nothing more: the document stays behind (rows.py joins the
    selected keys back to it), so the shuffles and side-input barriers of selection move only small tuples."""

    source: str
    stream: str  # anchor / under / over; "" until a certified plan sets the source's rate
    epoch: int
    priority: int
    units: int
    tokens: int
    rate: int  # AI share charged, fixed point
    excess: int  # tokens x (rate - ceiling), see excess_of
    id: str
    src: str  # where the record was read (Document.source)
    offset: int
    p_ai: Optional[float]
    pvalue: Optional[float]
    expected: int  # the `expected` rule's charge, for the manifest's reference count
    group: str = ""  # certified: reference group key (or a pseudo-group)
    level: int = 0  # certified: grid level of the document's p-value
    text_hash: int = 0  # records of two files may share (id, src, offset): the text tells them apart

    @property
    def bucket(self) -> int:
        return (self.epoch << BUCKET_BITS) | (self.priority >> (64 - BUCKET_BITS))

    @property
    def order(self) -> tuple[int, int, str, str, int, int]:
        return self.epoch, self.priority, self.id, self.src, self.offset, self.text_hash

    @property
    def key(self) -> tuple[str, str, int]:
        """The record's identity (id, where it was read, offset): what rows.py joins the document back on."""
        return self.id, self.src, self.offset


class PlainTupleCoder(beam.coders.Coder):
    """A NamedTuple of primitives encoded as a plain tuple. Beam would otherwise pickle it, class name and all, at
    every stage boundary: selection moves each item across a dozen of them. Registered for `Item` (and rows.py's
    `Row`); a PCollection gets it through its type hint."""

    def __init__(self, cls):
        self._cls = cls
        self._values = beam.coders.FastPrimitivesCoder()

    @classmethod
    def from_type_hint(cls, typehint, unused_registry):
        return cls(typehint)

    def encode(self, value) -> bytes:
        return self._values.encode(tuple(value))

    def decode(self, encoded: bytes):
        return self._cls._make(self._values.decode(encoded))

    def is_deterministic(self) -> bool:
        return False  # floats and strings as FastPrimitivesCoder writes them: never used as a grouping key

    def to_type_hint(self):
        return self._cls


beam.coders.registry.register_coder(Item, PlainTupleCoder)


BATCH = 1024


class Batch(list):
    """Items that cross a stage boundary together. Selection moves every offered document through several
    stages, most of them to end as drops; as one element each, Beam's per-element cost (and one encoding call
    each) was most of the mixer's time. Order within and between batches carries no meaning."""


class BatchCoder(beam.coders.Coder):
    """A Batch as one list of plain tuples (`PlainTupleCoder`'s form, in one encoding call)."""

    def __init__(self):
        self._values = beam.coders.FastPrimitivesCoder()

    def encode(self, batch: Batch) -> bytes:
        return self._values.encode([tuple(i) for i in batch])

    def decode(self, encoded: bytes) -> Batch:
        return Batch(map(Item._make, self._values.decode(encoded)))

    def is_deterministic(self) -> bool:
        return False  # as PlainTupleCoder: never a grouping key

    def to_type_hint(self):
        return Batch


beam.coders.registry.register_coder(Batch, BatchCoder)


def fingerprint(item: Item) -> tuple:
    """What selection used of a document besides its identity, as classification made it (selection changes only
    the stream, copy, charge and excess): a second read of the document must give the same."""
    return item.units, item.tokens, item.p_ai, item.pvalue, item.expected, item.group, item.level, item.text_hash


def stream_of(rate: int, ceiling: Fraction) -> str:
    return UNDER if rate * ceiling.denominator <= ceiling.numerator * certify.SCALE else OVER


def excess_of(tokens: int, rate: int, ceiling: Fraction) -> int:
    """tokens x (rate - ceiling), in units of 1 / (SCALE x ceiling's denominator): exact integers, no Fraction."""
    return tokens * (rate * ceiling.denominator - ceiling.numerator * certify.SCALE)


def classify(doc: Document, source: str, folder: str, cfg: MixConfig, usable: frozenset,
             anchor: bool) -> Union[Item, tuple[str, str]]:
    """A document as selection sees it: its Item, or why it has none: ("invalid_score", message), a dead letter,
    or ("drop", reason). The one definition for the first read and for the check of the second."""
    bad = invalid_score(doc)
    if bad:
        return "invalid_score", f"{doc.id}: {bad}"
    tokens = count_tokens(doc.text)
    reason = exclusion(doc, cfg.exclude, tokens)
    if reason:
        return "drop", reason
    units = tokens if cfg.unit == "tokens" else 1
    order = priority(cfg.seed, doc)
    if cfg.rule != "certified":
        rate = rule_rate(doc, cfg.rule, cfg.threshold)
        excess = excess_of(tokens, rate, cfg.ceiling)
        stream = ANCHOR if anchor else (UNDER if excess <= 0 else OVER)
        return make_item(doc, source, stream, order, units, tokens, rate, excess)
    group = certified_group(doc, folder, usable, cfg.pre_llm_is_human)
    if group is None:
        if cfg.unestimable != "treat_as_synthetic":
            return "drop", "unestimable"
        group = certify.UNESTIMATED
    level = {certify.DECLARED: 0, certify.PRE_LLM: certify.PRE_LLM_ONLY}.get(group)
    if level is None:
        level = certify.grid_index(doc.ai_pvalue)
    return make_item(doc, source, ANCHOR if anchor else "", order, units, tokens, 0, 0, group, level)


def make_item(doc: Document, source: str, stream: str, order: int, units: int, tokens: int, rate: int, excess: int,
              group: str = "", level: int = 0) -> Item:
    return Item(source, stream, 0, order, units, tokens, rate, excess, doc.id, doc.source, doc.offset, doc.p_ai,
                doc.ai_pvalue, tokens * rule_rate(doc, "expected"), group, level,
                xxhash.xxh3_64_intdigest(doc.text.encode("utf-8", "surrogatepass")))


def priority(seed: int, doc: Document) -> int:
    """A keyed hash of seed, id and where the record was read: the within-source order, the same on every worker
    and run, and distinct for two records that share an id."""
    return xxhash.xxh64_intdigest(f"{seed}\x00{doc.id}\x00{doc.source}\x00{doc.offset}".encode())


def invalid_score(doc: Document) -> Optional[str]:
    """Why a score entering the mixer cannot be trusted (NaN, infinite, outside [0, 1], not a number), or None."""
    for name in SCORE_FIELDS:
        v = getattr(doc, name)
        if v is None or (type(v) is float and 0.0 <= v <= 1.0):  # NaN and infinities fail the range
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            return f"{name} = {v!r} is not a number in [0, 1]"
    return None


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


def declared_ai(doc: Document) -> bool:
    return bool((doc.provenance or {}).get("declared_ai"))


def rule_rate(doc: Document, rule: str, threshold: float = 0.5) -> int:
    """The opt-in rules' charge in fixed point: `threshold` 1 or 0, `expected` p_ai rounded up."""
    if declared_ai(doc) or doc.p_ai is None:
        return certify.SCALE
    if rule == "threshold":
        return certify.SCALE if doc.p_ai >= threshold else 0
    return min(certify.SCALE, math.ceil(doc.p_ai * certify.SCALE))


def pre_llm(doc: Document) -> bool:
    return (doc.provenance or {}).get("pre_llm") is True


def certified_group(doc: Document, folder: str, usable: frozenset, pre_llm_is_human: bool = True) -> Optional[str]:
    """The document's reference group key, a pseudo-group for declared-AI and (when so configured) pre-LLM pages,
    or None when unestimable."""
    if declared_ai(doc):
        return certify.DECLARED
    if pre_llm_is_human and pre_llm(doc):
        return certify.PRE_LLM
    if doc.ai_pvalue is None or doc.ai_reference is None or not folder:
        return None
    key = certify.group_key(folder, doc.ai_reference)
    return key if key in usable else None

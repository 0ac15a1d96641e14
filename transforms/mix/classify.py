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

import marshal
import math
import operator
from fractions import Fraction
from typing import NamedTuple, Optional, Union

import apache_beam as beam
from xxhash import xxh64_intdigest

from transforms.document import Document, text_hash
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


_MARSHAL, _BEAM = b"m", b"b"


def encode_values(values, fallback: beam.coders.Coder) -> bytes:
    """Plain values (tuples, lists, dicts of str / int / float / None / bytes) in `marshal`'s format: its C
    encoder and decoder are about twice as fast as Beam's FastPrimitivesCoder on selection's batches, and the
    bytes a third smaller. A value marshal refuses (a numpy scalar) sends the whole element to `fallback`."""
    try:
        return _MARSHAL + marshal.dumps(values)
    except ValueError:
        return _BEAM + fallback.encode(values)


def decode_values(encoded: bytes, fallback: beam.coders.Coder):
    body = memoryview(encoded)[1:]
    return marshal.loads(body) if encoded[:1] == _MARSHAL else fallback.decode(body.tobytes())


class PlainTupleCoder(beam.coders.Coder):
    """A NamedTuple of primitives encoded as a plain tuple (`encode_values`). Beam would otherwise pickle it,
    class name and all, at every stage boundary: selection moves each item across a dozen of them. Registered for
    `Item` (and rows.py's `Row`, drops.py's `DropBatch`); a PCollection gets it through its type hint."""

    def __init__(self, cls):
        self._cls = cls
        self._values = beam.coders.FastPrimitivesCoder()

    @classmethod
    def from_type_hint(cls, typehint, unused_registry):
        return cls(typehint)

    def encode(self, value) -> bytes:
        return encode_values(tuple(value), self._values)

    def decode(self, encoded: bytes):
        return self._cls._make(decode_values(encoded, self._values))

    def is_deterministic(self) -> bool:
        return False  # never used as a grouping key

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
        return encode_values([tuple(i) for i in batch], self._values)

    def decode(self, encoded: bytes) -> Batch:
        return Batch(map(Item._make, decode_values(encoded, self._values)))

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


# What classification reads of a document, in this order: the mixer's first read of a Parquet table takes them
# straight from its columns (no Document is built for a row, `transforms/mix/read.py`); any other caller from a
# Document (`fields_of`).
FIELDS = ("id", "text", "source", "offset", "p_ai", "ai_score", "ai_pvalue", "ai_reference", "language", "domain")
PROVENANCE_FIELDS = ("registered_domain", "tdm_reservation", "robots_noai", "declared_ai", "pre_llm")
_document_fields = operator.attrgetter(*FIELDS)
_provenance_fields = operator.attrgetter(*PROVENANCE_FIELDS)
_NO_PROVENANCE = (None,) * len(PROVENANCE_FIELDS)


def fields_of(doc: Document) -> tuple:
    """A Document's FIELDS and PROVENANCE_FIELDS values (None where it has no provenance)."""
    p = doc.provenance
    return _document_fields(doc) + (_NO_PROVENANCE if p is None else _provenance_fields(p))


def classify(doc: Document, source: str, folder: str, cfg: MixConfig, usable: frozenset,
             anchor: bool) -> Union[Item, tuple[str, str]]:
    """A document as selection sees it: its Item, or why it has none (see `classify_rows`)."""
    return classify_rows([fields_of(doc)], [count_tokens(doc.text)], source, folder, cfg, usable, anchor)[0]


def classify_rows(rows, tokens, source: str, folder: str, cfg: MixConfig, usable: frozenset,
                  anchor: bool) -> list:
    """Documents as selection sees them, the one definition for every read: each row (FIELDS then
    PROVENANCE_FIELDS values) with its `count_tokens` -> its Item, or why it has none: ("invalid_score",
    message), a dead letter, or ("drop", reason)."""
    out = []
    append = out.append
    ex, seed, ceiling, rule, threshold = cfg.exclude, cfg.seed, cfg.ceiling, cfg.rule, cfg.threshold
    documents = cfg.unit != "tokens"
    certified = rule == "certified"
    first = ANCHOR if anchor else ""
    for (doc_id, text, src, offset, p_ai, ai_score, pvalue, reference, language, domain, registered, tdm, noai,
         declared, pre), n in zip(rows, tokens):
        bad = invalid_score(p_ai, ai_score, pvalue)
        if bad:
            append(("invalid_score", f"{doc_id}: {bad}"))
            continue
        reason = exclusion(ex, n, language, domain, registered, tdm, noai)
        if reason:
            append(("drop", reason))
            continue
        order = priority(seed, doc_id, src, offset)
        units = 1 if documents else n
        expected = n * rule_rate(p_ai, declared, "expected")
        digest = text_hash(text)
        if not certified:
            rate = rule_rate(p_ai, declared, rule, threshold)
            excess = excess_of(n, rate, ceiling)
            stream = ANCHOR if anchor else (UNDER if excess <= 0 else OVER)
            append(Item(source, stream, 0, order, units, n, rate, excess, doc_id, src, offset, p_ai, pvalue, expected,
                        "", 0, digest))
            continue
        group = certified_group(declared, pre, pvalue, reference, folder, usable, cfg.pre_llm_is_human)
        if group is None:
            if cfg.unestimable != "treat_as_synthetic":
                append(("drop", "unestimable"))
                continue
            group = certify.UNESTIMATED
        level = _PSEUDO_LEVEL.get(group)
        if level is None:
            level = certify.grid_index(pvalue)
        append(Item(source, first, 0, order, units, n, 0, 0, doc_id, src, offset, p_ai, pvalue, expected, group, level,
                    digest))
    return out


_PSEUDO_LEVEL = {certify.DECLARED: 0, certify.PRE_LLM: certify.PRE_LLM_ONLY}


def priority(seed: int, doc_id: str, src: str, offset: int) -> int:
    """A keyed hash of seed, id and where the record was read: the within-source order, the same on every worker
    and run, and distinct for two records that share an id."""
    return xxh64_intdigest(f"{seed}\x00{doc_id}\x00{src}\x00{offset}".encode())


def invalid_score(*scores) -> Optional[str]:
    """Why a score (p_ai, ai_score, ai_pvalue) entering the mixer cannot be trusted (NaN, infinite, outside [0, 1],
    not a number), or None."""
    for name, v in zip(SCORE_FIELDS, scores):
        if v is None or (type(v) is float and 0.0 <= v <= 1.0):  # NaN and infinities fail the range
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            return f"{name} = {v!r} is not a number in [0, 1]"
    return None


def exclusion(ex: Exclude, tokens: int, language: Optional[str], domain: Optional[str],
              registered_domain: Optional[str], tdm_reservation: Optional[int], robots_noai: Optional[bool]
              ) -> Optional[str]:
    if ex.opt_out and (tdm_reservation == 1 or robots_noai):
        return "excluded_opt_out"
    if language and language in ex.languages:
        return "excluded_filter"
    if ex.domains and (registered_domain in ex.domains or domain in ex.domains):
        return "excluded_filter"
    if tokens < ex.min_tokens:
        return "excluded_filter"
    return None


def rule_rate(p_ai: Optional[float], declared_ai: Optional[bool], rule: str, threshold: float = 0.5) -> int:
    """The opt-in rules' charge in fixed point: `threshold` 1 or 0, `expected` p_ai rounded up; a page that
    declares AI generation (provenance `declared_ai`) and an unscored one are charged 1."""
    if declared_ai or p_ai is None:
        return certify.SCALE
    if rule == "threshold":
        return certify.SCALE if p_ai >= threshold else 0
    return min(certify.SCALE, math.ceil(p_ai * certify.SCALE))


def certified_group(declared_ai: Optional[bool], pre_llm: Optional[bool], pvalue: Optional[float],
                    reference: Optional[str], folder: str, usable: frozenset,
                    pre_llm_is_human: bool = True) -> Optional[str]:
    """The document's reference group key, a pseudo-group for declared-AI and (when so configured) pre-LLM pages,
    or None when unestimable."""
    if declared_ai:
        return certify.DECLARED
    if pre_llm_is_human and pre_llm is True:
        return certify.PRE_LLM
    if pvalue is None or reference is None or not folder:
        return None
    key = certify.group_key(folder, reference)
    return key if key in usable else None

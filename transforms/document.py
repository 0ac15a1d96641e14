"""The one record that flows between stages, its provenance record, their Arrow schema, and their Parquet /
Dolma-JSONL forms.

Stages add fields and never rewrite another stage's fields. The reader fills a WARC response's page signals from
the one HTML parse that also gives the text, so no stage after reading holds raw HTML.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import marshal
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import apache_beam as beam
import pyarrow as pa
import xxhash


def _arrow(typ: pa.DataType):
    return field(default=None, metadata={"arrow": typ})


@dataclass(frozen=True)
class Provenance(Mapping):
    """Where a page came from and what it declares about itself. None is "not observable", never "absent".

    Read-only mapping access (`p["pre_llm"]`, `p.get(...)`) is kept for callers that treat it as a dict."""

    registered_domain: Optional[str] = _arrow(pa.string())
    pre_llm: Optional[bool] = _arrow(pa.bool_())
    html_observable: Optional[bool] = _arrow(pa.bool_())
    tdm_reservation: Optional[int] = _arrow(pa.int8())  # header wins over <meta> (TDMRep)
    tdm_reservation_header: Optional[int] = _arrow(pa.int8())
    tdm_reservation_meta: Optional[int] = _arrow(pa.int8())
    tdm_policy: Optional[str] = _arrow(pa.string())
    robots_noai: Optional[bool] = _arrow(pa.bool_())
    robots_noimageai: Optional[bool] = _arrow(pa.bool_())
    digital_source_type: Optional[str] = _arrow(pa.string())
    declared_ai: Optional[bool] = _arrow(pa.bool_())
    c2pa_manifest: Optional[bool] = _arrow(pa.bool_())
    c2pa_text_wrapper: Optional[bool] = _arrow(pa.bool_())
    generator: Optional[str] = _arrow(pa.string())
    invisible_chars: Optional[dict[str, int]] = _arrow(pa.map_(pa.string(), pa.int32()))
    invisible_total: Optional[int] = _arrow(pa.int32())

    __hash__ = None  # holds a dict

    @classmethod
    def of(cls, value: Mapping) -> "Provenance":
        """From a mapping (a Parquet struct, a JSON object, a partial dict); unknown names are a ValueError."""
        if isinstance(value, Provenance):
            return value
        unknown = sorted(set(value) - set(PROVENANCE_FIELDS))
        if unknown:
            raise ValueError(f"provenance has unknown fields {unknown[:5]}")
        inv = value.get("invisible_chars")
        return cls(**{**value, "invisible_chars": None if inv is None else _as_dict(inv)})

    def to_row(self) -> dict[str, Any]:
        """The Arrow struct value (the map as sorted pairs)."""
        row = dict(zip(PROVENANCE_FIELDS, _prov_values(self)))
        if self.invisible_chars is not None:
            row["invisible_chars"] = sorted(self.invisible_chars.items())
        return row

    def __getitem__(self, name: str):
        if name not in PROVENANCE_FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(PROVENANCE_FIELDS)

    def __len__(self) -> int:
        return len(PROVENANCE_FIELDS)


PROVENANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Provenance))
_PROVENANCE_SET = frozenset(PROVENANCE_FIELDS)
PROVENANCE = pa.struct([pa.field(f.name, f.metadata["arrow"]) for f in dataclasses.fields(Provenance)])

@dataclass
class Document:
    id: str
    text: str
    source: str
    offset: int
    url: Optional[str] = None
    domain: Optional[str] = None
    warc_record_id: Optional[str] = None
    refers_to: Optional[str] = None
    crawl_id: Optional[str] = None
    capture_date: Optional[str] = None
    language: Optional[str] = None
    content_digest: Optional[str] = None
    dup_cluster_id: Optional[str] = None
    dup_cluster_size: Optional[int] = None
    first_seen: Optional[str] = None
    last_seen: Optional[str] = None
    provenance: Optional[Provenance] = None
    ai_score: Optional[float] = None
    ai_pvalue: Optional[float] = None
    ai_reference: Optional[str] = None
    p_ai: Optional[float] = None
    ai_model: Optional[str] = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.provenance is not None and not isinstance(self.provenance, Provenance):
            self.provenance = Provenance.of(self.provenance)


_STRING_FIELDS = (
    "url", "domain", "warc_record_id", "refers_to", "crawl_id", "capture_date", "language", "content_digest",
)
_STAGE_FIELDS = ("dup_cluster_id", "dup_cluster_size", "first_seen", "last_seen", "provenance", "ai_score",
                 "ai_pvalue", "ai_reference", "p_ai", "ai_model")

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        *[pa.field(name, pa.string()) for name in _STRING_FIELDS],
        pa.field("dup_cluster_id", pa.string()),
        pa.field("dup_cluster_size", pa.int64()),
        pa.field("first_seen", pa.string()),
        pa.field("last_seen", pa.string()),
        pa.field("provenance", PROVENANCE),
        pa.field("ai_score", pa.float64()),
        pa.field("ai_pvalue", pa.float64()),
        pa.field("ai_reference", pa.string()),
        pa.field("p_ai", pa.float64()),
        pa.field("ai_model", pa.string()),
        pa.field("metadata", pa.map_(pa.string(), pa.string())),
    ]
)
COLUMNS = tuple(SCHEMA.names)
ADDED_COLUMNS = ("last_seen",)  # newer than some curated outputs: read as null when a file lacks them
REQUIRED_COLUMNS = tuple(name for name in COLUMNS if name not in ADDED_COLUMNS)
_FIELDS = tuple(f.name for f in dataclasses.fields(Document))
_FIELD_SET = frozenset(_FIELDS)
_CODER_FORMAT = 1
_NUMBERS = tuple((i, float if SCHEMA.field(name).type == pa.float64() else int) for i, name in enumerate(_FIELDS)
                 if pa.types.is_floating(SCHEMA.field(name).type) or pa.types.is_integer(SCHEMA.field(name).type))
_PROV, _META = _FIELDS.index("provenance"), _FIELDS.index("metadata")
_doc_values = operator.attrgetter(*_FIELDS)
_prov_values = operator.attrgetter(*PROVENANCE_FIELDS)
_INVISIBLE = PROVENANCE_FIELDS.index("invisible_chars")


class DocumentCoder(beam.coders.Coder):
    """Documents on the wire between workers: the fields as a tuple in `marshal` format 2 (no back-references,
    so equal documents always give equal bytes), metadata and invisible characters as sorted pairs. Smaller and
    faster than pickling the object (which names the class and every field in each record)."""

    def encode(self, doc: Document) -> bytes:
        values = list(_doc_values(doc))
        for i, kind in _NUMBERS:  # a detector may hand back numpy scalars, which marshal refuses
            if values[i] is not None and type(values[i]) is not kind:
                values[i] = kind(values[i])
        prov = values[_PROV]
        if prov is not None:  # Provenance.to_row's values, read without building the dict
            row = _prov_values(Provenance.of(prov))
            if row[_INVISIBLE] is not None:
                row = (*row[:_INVISIBLE], sorted(row[_INVISIBLE].items()), *row[_INVISIBLE + 1 :])
            values[_PROV] = row
        values[_META] = tuple(sorted(values[_META].items()))
        return bytes([_CODER_FORMAT]) + marshal.dumps(tuple(values), 2)

    def estimate_size(self, doc: Document) -> int:
        """Beam samples element sizes for its metrics: the strings that dominate a record, counted instead of
        encoding it (which cost as much as a shuffle)."""
        return len(doc.text) + len(doc.id) + len(doc.source)

    def decode(self, data: bytes) -> Document:
        if data[0] != _CODER_FORMAT:
            raise ValueError(f"not a DocumentCoder record (format byte {data[0]})")
        values = list(marshal.loads(memoryview(data)[1:]))
        prov = values[_PROV]
        if prov is not None:
            fields = dict(zip(PROVENANCE_FIELDS, prov))
            if fields["invisible_chars"] is not None:
                fields["invisible_chars"] = dict(fields["invisible_chars"])
            values[_PROV] = _restore(Provenance, fields)
        values[_META] = dict(values[_META])
        return _restore(Document, dict(zip(_FIELDS, values)))

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self):
        return Document


def _restore(cls, fields: dict):
    """An instance from already checked field values, as unpickling makes one (no __init__)."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


beam.coders.registry.register_coder(Document, DocumentCoder)


def identity_hash(doc_id: str, source: str, offset: int) -> int:
    """A record's identity (id, where read, offset) as a 64-bit hash: what a second read of a file matches records
    on. Two identities may share a hash; a caller that needs the record itself compares the full identity."""
    return xxhash.xxh64_intdigest(f"{doc_id}\x00{source}\x00{offset}".encode())


def text_hash(text: str) -> int:
    """A text's 64-bit hash, signed: what tells apart two records that share (id, source, offset). Signed because
    Beam's coders write an int in [-2**63, 2**63) as a varint and pickle a larger one (rank is a grouping key)."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass")) - (1 << 63)


def fallback_id(source: str, offset: int, index: int = 0) -> str:
    """A stable id for records that carry none: a hash of where they were read."""
    return "sc:" + xxhash.xxh3_128_hexdigest(f"{source}\x00{offset}\x00{index}".encode())


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else dict(value or [])


_column_values = operator.attrgetter(*COLUMNS)
_COLUMN_PROV, _COLUMN_META = COLUMNS.index("provenance"), COLUMNS.index("metadata")


def _column_tuple(doc: Document) -> list:
    values = list(_column_values(doc))
    values[_COLUMN_META] = sorted(doc.metadata.items())
    if doc.provenance is not None:
        values[_COLUMN_PROV] = Provenance.of(doc.provenance).to_row()
    return values


def to_row(doc: Document) -> dict[str, Any]:
    return dict(zip(COLUMNS, _column_tuple(doc)))


def from_row(row: dict[str, Any]) -> Document:
    kwargs = {name: row.get(name) for name in COLUMNS if name != "metadata"}
    return Document(metadata=_as_dict(row.get("metadata")), **kwargs)


def columns_table(rows: list, schema: pa.Schema) -> pa.Table:
    """A table from rows given as value sequences in `schema` order: the table `from_pylist` makes of the same
    rows as dicts, built column by column without a dict per row."""
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema)], schema=schema)


def to_table(docs: list[Document]) -> pa.Table:
    return columns_table([_column_tuple(d) for d in docs], SCHEMA)


def from_table(table: pa.Table) -> list[Document]:
    return [from_row(r) for r in table.to_pylist()]


def to_dolma(doc: Document) -> dict[str, Any]:
    """Dolma document convention: id, text, source, added, created, metadata (the rest, so it round-trips)."""
    meta: dict[str, Any] = {name: getattr(doc, name) for name in ("offset", *_STRING_FIELDS, *_STAGE_FIELDS)}
    if doc.provenance is not None:
        meta["provenance"] = dict(doc.provenance)
    meta["extra"] = dict(sorted(doc.metadata.items()))
    return {
        "id": doc.id,
        "text": doc.text,
        "source": doc.source,
        "added": doc.capture_date,
        "created": doc.capture_date,
        "metadata": meta,
    }


def from_dolma(obj: dict[str, Any]) -> Document:
    meta = dict(obj.get("metadata") or {})
    extra = meta.pop("extra", None) or {}
    known = {k: meta.pop(k) for k in ("offset", *_STRING_FIELDS, *_STAGE_FIELDS) if k in meta}
    extra.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in meta.items()})
    return Document(
        id=obj["id"],
        text=obj["text"],
        source=obj.get("source") or "",
        offset=int(known.pop("offset", 0) or 0),
        metadata=extra,
        **known,
    )


def dolma_line(doc: Document) -> str:
    return json.dumps(to_dolma(doc), ensure_ascii=False, sort_keys=True)


def replace(doc: Document, **changes) -> Document:
    """`dataclasses.replace` without re-running `__init__` (no conversion needed); provenance given as anything
    but a `Provenance` (or None) still goes through it, to be converted."""
    prov = changes.get("provenance")
    if not changes.keys() <= _FIELD_SET or not (prov is None or type(prov) is Provenance):
        return dataclasses.replace(doc, **changes)
    return _restore(Document, {**doc.__dict__, **changes})


def replace_provenance(prov: Provenance, **changes) -> Provenance:
    """`dataclasses.replace` of a `Provenance` with values of its fields' types, without re-running `__init__`."""
    if not changes.keys() <= _PROVENANCE_SET:
        raise TypeError(f"not provenance fields: {sorted(changes.keys() - _PROVENANCE_SET)}")
    return _restore(Provenance, {**prov.__dict__, **changes})


def _as_string(value: Any) -> str:
    """A foreign value as metadata (and ids) keep it: strings as they are, bytes (a Parquet binary column) as UTF-8
    with undecodable bytes escaped, a date or time (a Parquet timestamp or date column) as ISO 8601, anything else
    as JSON. (JSON of a timestamp was its text in quotes, which no date reader takes: a Parquet crawl whose
    `capture_date` is a timestamp column lost every capture date, and with it `pre_llm`.)"""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _foreign_metadata(value: Any) -> dict[str, Any]:
    """A foreign record's own `metadata` (a Dolma-style object, an Arrow map's pairs): its entries by their names,
    or, when it is no mapping, the value under `metadata`. Dropping it lost every field a dataset keeps there."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return {str(k): v for k, v in value}
    return {} if value is None else {"metadata": value}


def from_record(obj: dict[str, Any], source: str, offset: int) -> Document:
    """A Document from a foreign record (JSONL line or Parquet row) that has at least a string `text`.

    Our own outputs (Parquet rows, Dolma lines) come back losslessly; for anything else `id` is kept when the
    record has one (a non-string id as JSON), `url`/`domain`/... are taken by name, and other fields land in
    `metadata`, with the entries of the record's own `metadata`."""
    if isinstance(obj.get("metadata"), dict) and "offset" in obj["metadata"] and "id" in obj:
        return from_dolma(obj)
    if all(name in obj for name in REQUIRED_COLUMNS):
        return from_row(obj)
    rid = obj.get("id")
    fields = {name: obj.get(name) for name in _STRING_FIELDS}
    fields = {k: v if v is None else _as_string(v) for k, v in fields.items()}
    if fields["capture_date"] is None and obj.get("created") is not None:
        # Dolma's `created`: when the text was made (gives pre_llm). One that is not a string (an epoch number, a
        # list) is read as its JSON text, so a value that is no date is flagged and counted as unparsed like any
        # other, never dropped unsaid
        fields["capture_date"] = _as_string(obj["created"])
    # A foreign `source` (Dolma's "c4"), `offset` or stage-field value is the record's own, not ours: kept in
    # metadata under its name (the Document's source and offset say where this run read it)
    skip = {"id", "text", "metadata", *_STRING_FIELDS}
    others = {k: v for k, v in obj.items() if k not in skip}
    nested = _foreign_metadata(obj.get("metadata"))
    meta = {k: _as_string(v) for k, v in {**nested, **others}.items() if v is not None}  # top-level names win
    return Document(
        id=_as_string(rid) if rid not in (None, "") else fallback_id(source, offset),
        text=obj["text"],
        source=source,
        offset=offset,
        metadata=dict(sorted(meta.items())),
        **fields,
    )

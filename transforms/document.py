"""The one record that flows between stages, its Arrow schema, and its Parquet / Dolma-JSONL forms.

Stages add fields and never rewrite another stage's fields. `raw` carries the HTTP headers and HTML of a WARC
response record from the reader to the provenance stage; it is transient and never written.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pyarrow as pa
import xxhash

from transforms.provenance.schema import SIGNALS


@dataclass
class RawRecord:
    """What the reader saw before text extraction: needed for signals that live in headers and markup."""

    http_headers: tuple[tuple[str, str], ...] = ()
    html: bytes = b""


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
    provenance: Optional[dict[str, Any]] = None
    ai_score: Optional[float] = None
    ai_pvalue: Optional[float] = None
    ai_reference: Optional[str] = None
    p_ai: Optional[float] = None
    ai_model: Optional[str] = None
    metadata: dict[str, str] = field(default_factory=dict)
    raw: Optional[RawRecord] = field(default=None, compare=False, repr=False)


_STRING_FIELDS = (
    "url", "domain", "warc_record_id", "refers_to", "crawl_id", "capture_date", "language", "content_digest",
)
_STAGE_FIELDS = ("dup_cluster_id", "dup_cluster_size", "first_seen", "provenance", "ai_score", "ai_pvalue",
                 "ai_reference", "p_ai", "ai_model")

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
        pa.field("provenance", SIGNALS),
        pa.field("ai_score", pa.float64()),
        pa.field("ai_pvalue", pa.float64()),
        pa.field("ai_reference", pa.string()),
        pa.field("p_ai", pa.float64()),
        pa.field("ai_model", pa.string()),
        pa.field("metadata", pa.map_(pa.string(), pa.string())),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def fallback_id(source: str, offset: int, index: int = 0) -> str:
    """A stable id for records that carry none: a hash of where they were read."""
    return "sc:" + xxhash.xxh3_128_hexdigest(f"{source}\x00{offset}\x00{index}".encode())


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else dict(value or [])


def to_row(doc: Document) -> dict[str, Any]:
    row = {name: getattr(doc, name) for name in COLUMNS}
    row["metadata"] = sorted(doc.metadata.items())
    if doc.provenance is not None:
        row["provenance"] = {**doc.provenance,
                             "invisible_chars": sorted(_as_dict(doc.provenance.get("invisible_chars")).items())}
    return row


def from_row(row: dict[str, Any]) -> Document:
    kwargs = {name: row.get(name) for name in COLUMNS if name not in ("metadata", "provenance")}
    prov = row.get("provenance")
    if prov is not None:
        prov = {**prov, "invisible_chars": _as_dict(prov.get("invisible_chars"))}
    return Document(metadata=_as_dict(row.get("metadata")), provenance=prov, **kwargs)


def to_table(docs: list[Document]) -> pa.Table:
    return pa.Table.from_pylist([to_row(d) for d in docs], schema=SCHEMA)


def from_table(table: pa.Table) -> list[Document]:
    return [from_row(r) for r in table.to_pylist()]


def to_dolma(doc: Document) -> dict[str, Any]:
    """Dolma document convention: id, text, source, added, created, metadata (the rest, so it round-trips)."""
    meta: dict[str, Any] = {name: getattr(doc, name) for name in ("offset", *_STRING_FIELDS, *_STAGE_FIELDS)}
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
    return dataclasses.replace(doc, **changes)


def from_record(obj: dict[str, Any], source: str, offset: int) -> Document:
    """A Document from a foreign record (JSONL line or Parquet row) that has at least a string `text`.

    Our own outputs (Parquet rows, Dolma lines) come back losslessly; for anything else `id` is kept when the
    record has one, `url`/`domain`/... are taken by name, and other scalar fields land in `metadata`."""
    if isinstance(obj.get("metadata"), dict) and "offset" in obj["metadata"] and "id" in obj:
        return from_dolma(obj)
    if all(name in obj for name in COLUMNS):
        return from_row(obj)
    rid = obj.get("id")
    fields = {name: obj.get(name) for name in _STRING_FIELDS}
    fields = {k: v if v is None or isinstance(v, str) else str(v) for k, v in fields.items()}
    skip = {"id", "text", "source", "offset", "metadata", *_STRING_FIELDS, *_STAGE_FIELDS}
    meta = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            for k, v in obj.items() if k not in skip and v is not None}
    return Document(
        id=str(rid) if rid not in (None, "") else fallback_id(source, offset),
        text=obj["text"],
        source=source,
        offset=offset,
        metadata=dict(sorted(meta.items())),
        **fields,
    )

"""Foreign records (JSONL objects, Parquet rows) to Documents, with every field's type checked at the reader boundary.

A record that would make a later stage crash (a null id in a Dolma line, a string `dup_cluster_size`, a lone
surrogate that no UTF-8 writer accepts) is refused here with a one-line reason naming the field, so it becomes one
dead letter instead of a failed run.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from transforms.accounting import count
from transforms.dates import DATE_FIELDS, UNPARSED, has_unparsed_date, normalise_date, unparsed_key
from transforms.document import COLUMNS, REQUIRED_COLUMNS, SCHEMA, Document, from_record, replace

_SURROGATE = re.compile("[\ud800-\udfff]")


class RecordError(ValueError):
    """The record cannot become a Document; `reason` is the dead-letter reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def describe(value: Any) -> str:
    """What a JSON value is, for messages: `a JSON array of 3 items`, `a string`, `null`..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return f"a JSON array of {len(value)} items"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


def _fits(value: Any, typ: pa.DataType) -> bool:
    if value is None:
        return True
    if pa.types.is_string(typ):
        return isinstance(value, str)
    if pa.types.is_integer(typ):
        return isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < (1 << 63)
    if pa.types.is_floating(typ):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if pa.types.is_boolean(typ):
        return isinstance(value, bool)
    try:
        pa.array([value], type=typ)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return False
    return True


_TYPES = {f.name: f.type for f in SCHEMA}  # once: each schema lookup builds a Field (~1.4 µs), per column per row
_FLOATS = tuple(name for name, typ in _TYPES.items() if pa.types.is_floating(typ))


def _check_fields(values: dict, names) -> None:
    for name in names:
        if name in values and not _fits(values[name], _TYPES[name]):
            raise RecordError("schema_error", f"field `{name}` is {describe(values[name])}, expected {_TYPES[name]}")


def check_unicode(obj: Any) -> None:
    """Lone surrogates (from `\\ud800` escapes) cannot be written as UTF-8; walk without recursion (any depth)."""
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                raise RecordError("decode_error", f"lone surrogate in string {v[:40]!r}")
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _normalised_dolma(obj: dict, source: str, offset: int) -> dict:
    """A Dolma line (our own JSONL output) checked field by field; `extra` values become strings. One without a
    `source` has no lineage to keep: it is where it was read (`source`, `offset`), or else every such line
    would share one identity ('', metadata.offset) and near dedup could not tell them apart."""
    if not isinstance(obj["id"], str) or not obj["id"]:
        raise RecordError("schema_error", f"Dolma `id` is {describe(obj['id'])}, expected a non-empty string")
    if obj.get("source") is not None and not isinstance(obj["source"], str):
        raise RecordError("schema_error", f"Dolma `source` is {describe(obj['source'])}, expected a string")
    meta = dict(obj["metadata"])
    if not obj.get("source"):
        obj, meta["offset"] = {**obj, "source": source}, offset
    if not _fits(meta["offset"], pa.int64()) or meta["offset"] is None or meta["offset"] < 0:
        raise RecordError("schema_error",
                          f"Dolma `metadata.offset` is {describe(meta['offset'])}, expected an integer >= 0")
    _check_fields(meta, [n for n in COLUMNS if n not in ("id", "text", "source", "offset", "metadata")])
    extra = meta.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise RecordError("schema_error", f"Dolma `metadata.extra` is {describe(extra)}, expected an object")
    if extra:
        meta["extra"] = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in extra.items()}
    return {**obj, "metadata": meta}


NOT_NULL = ("id", "text", "source", "offset")


def _check_required(obj: dict) -> None:
    for name in NOT_NULL:
        if obj[name] is None:
            raise RecordError("schema_error", f"field `{name}` is null")
    for name in _FLOATS:
        value = obj.get(name)
        if value is not None and not math.isfinite(value):
            raise RecordError("schema_error", f"field `{name}` is {value}, expected a finite number")


def may_fail_required(table: pa.Table) -> set[int]:
    """The rows of a table with the Document schema that `_check_required` may refuse (a null in a NOT_NULL column,
    a non-finite float), found by column: a superset, for a caller that reads only the other rows without it."""
    mask = None
    for name in NOT_NULL + _FLOATS:
        col = table.column(name)
        if name in NOT_NULL:
            if not col.null_count:
                continue
            bad = pc.is_null(col)
        else:
            bad = pc.fill_null(pc.invert(pc.is_finite(col)), False)
        mask = bad if mask is None else pc.or_(mask, bad)
    return set() if mask is None else set(pc.indices_nonzero(mask).to_pylist())


def unparsed_dates(table: pa.Table, rows: list[int]) -> int:
    """How many of `rows` (indices, rows `_check_required` accepts) of a table with the Document schema become
    Documents with an unreadable date (those `emitted` counts). Only a row holding a date value that does not
    parse, or a metadata key naming one, can be such a Document: those rows are found by column (each distinct date
    parsed once), made into Documents as the reader makes them, and asked (`has_unparsed_date`)."""
    suspect: set[int] = set()
    for name in DATE_FIELDS:
        col = table.column(name)
        if col.null_count < len(col):
            bad = [v for v in pc.unique(col).to_pylist() if v is not None and normalise_date(v)[1]]
            if bad:
                suspect.update(pc.indices_nonzero(pc.is_in(col, value_set=pa.array(bad, col.type))).to_pylist())
    meta = table.column("metadata")
    keys = {unparsed_key(name) for name in DATE_FIELDS}
    if any(pc.any(pc.is_in(chunk.keys, value_set=pa.array(sorted(keys)))).as_py() for chunk in meta.chunks):
        suspect.update(i for i, pairs in enumerate(meta.to_pylist()) if any(k in keys for k, _ in pairs or ()))
    asked = sorted(suspect.intersection(rows))
    if not asked:
        return 0
    return sum(has_unparsed_date(to_document(row, "", 0, typed=True)) for row in table.take(asked).to_pylist())


def to_document(obj: Any, source: str, offset: int, typed: bool = False) -> Document:
    """A Document from a parsed record, or RecordError. `typed` rows (a Parquet table already cast to the
    Document schema) need only their required and floating-point fields checked."""
    if not isinstance(obj, dict):
        raise RecordError("schema_error", f"found {describe(obj)} where a JSON object with a string `text` is "
                                          "expected (JSON Lines: one object per line)")
    if not isinstance(obj.get("text"), str):
        found = "no `text` field" if "text" not in obj else f"`text` is {describe(obj['text'])}"
        raise RecordError("schema_error", f"record has {found}; a string `text` is required")
    if typed:
        _check_required(obj)
    elif isinstance(obj.get("metadata"), dict) and "offset" in obj["metadata"] and "id" in obj:
        obj = _normalised_dolma(obj, source, offset)
    elif "provenance" in obj and all(name in obj for name in REQUIRED_COLUMNS):
        _check_fields(obj, COLUMNS)
        _check_required(obj)
    try:
        doc = from_record(obj, source, offset)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as e:
        raise RecordError("schema_error", f"record does not fit a Document: {type(e).__name__}: {e}") from None
    return _normalised_dates(doc)


def _normalised_dates(doc: Document) -> Document:
    changes: dict[str, Any] = {}
    for name in DATE_FIELDS:
        value = getattr(doc, name)
        if value is None:
            continue
        date, unparsed = normalise_date(value)
        if unparsed:
            changes["metadata"] = {**changes.get("metadata", doc.metadata), unparsed_key(name): str(value)[:100]}
        if date != value:
            changes[name] = date
    return replace(doc, **changes) if changes else doc


def emitted(doc: Document) -> Document:
    """A document as a reader emits it: one with an unreadable date is counted here, once, so the Beam counter
    and the summary count the same documents."""
    if has_unparsed_date(doc):
        count(UNPARSED)
    return doc

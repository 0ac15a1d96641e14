"""Parquet reading split by row group; a file or row group without a string `text` column is one dead letter.

Text may be stored as string, large_string, string_view or dictionary-encoded strings. A file with every Document
column (our own output) must have the Document schema's types: a row group that cannot be cast is one dead letter
naming the column, so no wrongly typed value reaches a later stage.
"""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.restriction_trackers import OffsetRange

from transforms.accounting import count, dead_letter, drop
from transforms.dates import UNPARSED
from transforms.document import REQUIRED_COLUMNS, SCHEMA, identity_hash
from transforms.io.files import ByteRanges, Shard, open_raw
from transforms.io.parquet_budget import PageHeaderError, decoded_bytes, dictionary_columns, oversize, row_group_budget
from transforms.io.reader import ShardReader
from transforms.io.record import RecordError, emitted, may_fail_required, to_document, unparsed_dates

STAGE = "read_parquet"


def _plain(typ: pa.DataType) -> pa.DataType:
    """The type a column is read as: dictionaries decoded, string/binary views made plain."""
    if pa.types.is_dictionary(typ):
        return _plain(typ.value_type)
    if pa.types.is_string_view(typ):
        return pa.string()
    if pa.types.is_binary_view(typ):
        return pa.binary()
    return typ


def is_text_type(typ: pa.DataType) -> bool:
    typ = _plain(typ)
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


class _ColumnTypeError(ValueError):
    pass


def _as_read(table: pa.Table) -> tuple[pa.Table, bool]:
    """Views and dictionaries made plain; a table with every Document column (those added since some outputs
    were written may be missing: null) is cast to the Document schema (then True: its rows are typed)."""
    plain = pa.schema([f.with_type(_plain(f.type)) for f in table.schema])
    if not plain.equals(table.schema):
        table = table.cast(plain)
    if not all(name in table.column_names for name in REQUIRED_COLUMNS):
        return table, False
    columns = []
    for field in SCHEMA:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        try:
            columns.append(col.cast(field.type) if not col.type.equals(field.type) else col)
        except (pa.ArrowException, NotImplementedError) as e:
            raise _ColumnTypeError(f"column `{field.name}` is {col.type}, the Document schema has {field.type}: "
                                   f"{str(e)[:200]}") from None
    return pa.Table.from_arrays(columns, schema=SCHEMA), True


_VALUE_ERRORS = (pa.ArrowException, ValueError, OverflowError, TypeError, KeyError)


def python_rows(table: pa.Table) -> list:
    """The table's rows as dicts; a row holding a value Python cannot take (invalid UTF-8 in a string, a
    year-10000 timestamp) is its exception instead, so one bad value costs its row, not the row group."""
    try:
        return table.to_pylist()
    except _VALUE_ERRORS:
        pass
    rows: list = []
    for i in range(table.num_rows):
        try:
            rows.append(table.slice(i, 1).to_pylist()[0])
        except _VALUE_ERRORS as e:
            rows.append(e)
    return rows


SLICE_ROWS = 8192  # rows made Python objects at a time


def sliced_rows(table: pa.Table, indices=None):
    """(index, row) for the rows `indices` of a table (default: all), as `python_rows` gives them, made Python
    objects SLICE_ROWS at a time. A row group is bounded in bytes, not rows: one of 5 million short rows (a 12 KB
    file) became 5 million dicts at once, gigabytes for one unit of work."""
    indices = range(table.num_rows) if indices is None else indices
    for start in range(0, len(indices), SLICE_ROWS):
        part = indices[start:start + SLICE_ROWS]
        rows = table.slice(part[0], len(part)) if isinstance(part, range) else table.take(part)
        yield from zip(part, python_rows(rows))


def _values(table: pa.Table, name: str) -> list:
    """One column's values, None where a row's value cannot be taken (that row was a dead letter)."""
    try:
        return table.column(name).to_pylist()
    except _VALUE_ERRORS:
        return [None if isinstance(row, Exception) else row[name] for row in python_rows(table.select([name]))]


def read_bounded(pf, f, size: int, group: int, max_document_bytes: int) -> tuple[pa.Table | None, str | None]:
    """(row group `group` as a table, None), or (None, why it is not read): nothing is decompressed or decoded
    beyond `parquet_budget.row_group_budget` (see there). When only the dictionary bound is over, the row group is
    read with its dictionaries kept and measured exactly before anything expands. PageHeaderError when the
    pages cannot be walked (the file is damaged)."""
    budget = row_group_budget(pf.metadata.row_group(group).num_rows, max_document_bytes)
    try:
        why, exact = oversize(pf, f, group, budget, size)
    except PageHeaderError as e:  # pages that cannot be walked are damage (a read_error), not a size over budget
        raise PageHeaderError(f"row group {group}: {e}") from None
    if why is None:
        return pf.read_row_group(group), None
    if not exact:
        return None, why
    f.seek(0)
    table = pq.ParquetFile(f, read_dictionary=dictionary_columns(pf, group)).read_row_group(group)
    size = decoded_bytes(table)
    if size > budget:
        return None, f"row group {group}: its dictionaries expand to {size:,} bytes, over the read budget of {budget:,}"
    return table, None


def _row_groups(path: str) -> int:
    try:
        with open_raw(path) as f:
            return max(pq.ParquetFile(f).metadata.num_row_groups, 1)
    except Exception:
        return 1  # unreadable: one unit, reported by process()


def has_rows(path: str) -> bool:
    """Whether a committed file holds any record: empty shards of two runs are byte-identical and hold nothing."""
    if not path.endswith(".parquet"):
        return True
    try:
        with open_raw(path) as f:
            return pq.ParquetFile(f).metadata.num_rows > 0
    except Exception:  # unreadable here: the reader will say so; a copy is a copy
        return True


def per_unit(shard: Shard, row_groups: int) -> int:
    """Row groups per unit of work: about `split_bytes` of the file each, at least one row group. Each unit opens
    the file and parses its footer, whose size grows with the row groups: a 7 MB file of 20,000 one-row groups
    split one group per unit parsed 20,000 footers of 0.17 s each (about an hour)."""
    if not shard.split_bytes:
        return max(row_groups, 1)
    units = max(1, -(-shard.size // shard.split_bytes))
    return max(1, -(-row_groups // units))


class _RowGroups(ByteRanges):
    """Row-group indexes rather than bytes: a row group is the unit Parquet can read on its own."""

    def initial_restriction(self, shard: Shard):
        return OffsetRange(0, _row_groups(shard.path))

    def split(self, shard: Shard, restriction):
        yield from restriction.split(per_unit(shard, restriction.stop - restriction.start))


class ReadParquetFn(ShardReader):
    STAGE = STAGE

    def process(self, shard: Shard, tracker=beam.DoFn.RestrictionParam(_RowGroups())):
        yield from self.read_shard(shard, tracker)

    def open(self, f, shard: Shard):
        return pq.ParquetFile(f), f

    def read(self, handle, shard: Shard, tracker):
        pf, f = handle
        r = tracker.current_restriction()
        field = pf.schema_arrow.field("text") if pf.schema_arrow.names.count("text") == 1 else None
        bad_schema = field is None or not is_text_type(field.type)
        first_row = sum(pf.metadata.row_group(i).num_rows for i in range(r.start))
        group = r.start
        while tracker.try_claim(group):
            n = pf.metadata.row_group(group).num_rows if pf.metadata.num_row_groups else 0
            if bad_schema:
                yield dead_letter(shard.path, first_row, "schema_error",
                                  f"row group {group} ({n} rows): no string `text` column; schema is "
                                  f"{pf.schema_arrow.to_string(show_schema_metadata=False)[:300]}", STAGE)
            elif n:
                yield from self._rows(pf, f, group, first_row, shard)
            first_row += n
            group += 1

    def _rows(self, pf, f, group: int, first_row: int, shard: Shard):
        try:
            table, over = read_bounded(pf, f, shard.size, group, self._limit)
        except Exception as e:
            yield dead_letter(shard.path, first_row, "read_error", e, STAGE)
            return
        if over:
            yield dead_letter(shard.path, first_row, "over_read_budget", over, STAGE)
            return
        try:
            table, typed = _as_read(table)
        except (_ColumnTypeError, *_VALUE_ERRORS) as e:
            # a column that cannot be cast, a repeated name: the row group has no rows to speak of
            yield dead_letter(shard.path, first_row, "schema_error", f"row group {group} ({table.num_rows} rows): {e}",
                              STAGE)
            return
        yield from self._records(table, typed, group, first_row, shard)

    def _records(self, table: pa.Table, typed: bool, group: int, first_row: int, shard: Shard, rows=None):
        """A row group's records (`rows`: only these row indices), one output each: a Document, a drop or a dead
        letter."""
        for i, row in sliced_rows(table, rows):
            offset = first_row + i
            if isinstance(row, Exception):
                yield dead_letter(shard.path, offset, "schema_error", f"row {i} of row group {group}: {row}", STAGE)
                continue
            doc, reason = self._document(row, shard.path, offset, typed)
            if doc is None:
                yield dead_letter(shard.path, offset, reason.reason, reason, STAGE)
            elif reason == "too_large":
                yield drop(doc.id, "too_large", shard.path, offset, f"{len(doc.text)} characters")
            elif reason:
                yield drop(doc.id, reason, shard.path, offset)
            else:
                yield emitted(doc)

    def _document(self, row: dict, path: str, offset: int, typed: bool):
        """A row as both reads see it: (Document, None) when it is kept, (Document, drop reason), or (None,
        RecordError)."""
        try:
            doc = to_document({**row, "text": row.get("text") or ""}, path, offset, typed)
        except RecordError as e:
            return None, e
        return doc, text_drop(doc.text, self._limit)

    def _plain(self, table: pa.Table, typed: bool, names) -> tuple[list[int], list[list]] | None:
        """The rows of a row group this reader emits as they are, without building them: (their indices, the
        columns `names` of those rows as Python lists; "provenance.x" names a provenance field), counted as
        emitted (`record.emitted`). Only for a table with the Document schema whose values Python can all take
        (else None): its rows become Documents field for field, so a row with no null in a required column, no
        non-finite score (`record.may_fail_required`) and a text this reader keeps (`text_drop`) is emitted as
        it is. Every other row is `_records`' to read, record by record."""
        if not typed:
            return None
        try:
            table.validate(full=True)  # what would stop `to_pylist` (invalid UTF-8): such a table is read row by row
        except (pa.ArrowException, ValueError):
            return None
        texts = table.column("text").to_pylist()
        limit = self._limit
        suspect = may_fail_required(table)
        rows = [i for i, text in enumerate(texts) if i not in suspect and text_drop(text, limit) is None]
        columns = []
        for name in names:
            if name == "text":
                values = texts
            elif name.startswith("provenance."):
                values = pc.struct_field(table.column("provenance"), name.split(".", 1)[1]).to_pylist()
            else:
                values = table.column(name).to_pylist()
            columns.append(values if len(rows) == len(values) else [values[i] for i in rows])
        unparsed = unparsed_dates(table, rows)
        if unparsed:
            count(UNPARSED, unparsed)
        return rows, columns


def text_drop(text: str, limit: int) -> str | None:
    """Why a reader drops a record for its text: over `limit` characters, or nothing but whitespace."""
    if len(text) > limit:
        return "too_large"
    if not text.strip():
        return "empty_text"
    return None


class _ReadAgainFn(ReadParquetFn):
    """One row group, read again: the Documents whose `identity_hash` is wanted, among those the first read kept.
    A table with the Document schema (a curated folder's) has each row's identity in three columns, so only the
    wanted rows become Python objects; any other table is converted slice by slice. Nothing is counted or dropped
    here (the first read accounted for every record), and a row group that cannot be read is skipped: the caller
    finds its wanted records missing."""

    def process(self, element, wanted):
        path, size, start, stop = element
        try:
            with open_raw(path) as f:
                pf = pq.ParquetFile(f)
                first_row = sum(pf.metadata.row_group(i).num_rows for i in range(start))
                for group in range(start, stop):
                    yield from self._group(pf, f, path, size, group, first_row, wanted)
                    first_row += pf.metadata.row_group(group).num_rows
        except Exception:  # any filesystem's or Arrow's error: the wanted records are reported missing by the caller
            pass

    def _group(self, pf, f, path: str, size: int, group: int, first_row: int, wanted):
        try:
            table, over = read_bounded(pf, f, size, group, self._limit)
            if over:  # the first read made it a dead letter
                return
            table, typed = _as_read(table)
            if typed:
                keys = zip(*(_values(table, name) for name in ("id", "source", "offset")))
                rows = [i for i, key in enumerate(keys) if None not in key and identity_hash(*key) in wanted]
            else:
                rows = None
        except Exception:  # any filesystem's or Arrow's error: the wanted records are reported missing by the caller
            return
        for i, row in sliced_rows(table, rows):
            if isinstance(row, Exception):
                continue  # a dead letter of the first read
            doc, reason = self._document(row, path, first_row + i, typed)
            if doc is not None and reason is None and identity_hash(doc.id, doc.source, doc.offset) in wanted:
                yield doc


def _units(shard: Shard) -> list[tuple[str, int, int, int]]:
    n = _row_groups(shard.path)
    per = per_unit(shard, n)
    return [(shard.path, shard.size, start, min(start + per, n)) for start in range(0, n, per)]


class ReadParquetAgain(beam.PTransform):
    """Parquet shards -> the Documents whose `document.identity_hash` is `wanted` (a side input: a container of
    ints), each exactly as `ReadParquetFn` made it in the first read. Split by row group; in Document-schema files
    only the wanted rows become Python objects, so reading again costs the columnar read plus the wanted rows."""

    def __init__(self, shards: list[Shard], wanted, max_document_bytes: int):
        super().__init__()
        self._shards, self._wanted, self._max = list(shards), wanted, max_document_bytes

    def expand(self, pbegin):
        return (pbegin | "Shards" >> beam.Create(self._shards)
                | "RowGroups" >> beam.FlatMap(_units)
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadAgainFn(self._max), self._wanted))

"""Parquet reading split by row group; a file or row group without a string `text` column is one dead letter."""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.restriction_trackers import OffsetRange

from transforms.accounting import count, dead_letter, drop
from transforms.document import from_record
from transforms.io.files import ByteRanges, Shard, open_raw

STAGE = "read_parquet"


def _row_groups(path: str) -> int:
    try:
        with open_raw(path) as f:
            return max(pq.ParquetFile(f).metadata.num_row_groups, 1)
    except Exception:
        return 1  # unreadable: one unit, reported by process()


class _RowGroups(ByteRanges):
    """Row-group indexes rather than bytes: a row group is the unit Parquet can read on its own."""

    def initial_restriction(self, shard: Shard):
        return OffsetRange(0, _row_groups(shard.path))

    def split(self, shard: Shard, restriction):
        yield from (restriction.split(1) if shard.split_bytes else [restriction])


class ReadParquetFn(beam.DoFn):
    def __init__(self, max_document_bytes: int):
        self._limit = max_document_bytes

    def process(self, shard: Shard, tracker=beam.DoFn.RestrictionParam(_RowGroups())):
        r = tracker.current_restriction()
        try:
            f = open_raw(shard.path)
            pf = pq.ParquetFile(f)
        except Exception as e:
            if tracker.try_claim(r.start):
                count("records_read")
                yield dead_letter(shard.path, 0, "read_error", e, STAGE)
            return
        with f:
            field = pf.schema_arrow.field("text") if "text" in pf.schema_arrow.names else None
            bad_schema = field is None or not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))
            first_row = sum(pf.metadata.row_group(i).num_rows for i in range(r.start))
            group = r.start
            while tracker.try_claim(group):
                n = pf.metadata.row_group(group).num_rows if pf.metadata.num_row_groups else 0
                if bad_schema:
                    count("records_read")
                    yield dead_letter(shard.path, first_row, "schema_error",
                                      f"row group {group} ({n} rows): no string `text` column; schema is "
                                      f"{pf.schema_arrow.to_string(show_schema_metadata=False)[:300]}", STAGE)
                elif n:
                    yield from self._rows(pf, group, first_row, shard)
                first_row += n
                group += 1

    def _rows(self, pf, group: int, first_row: int, shard: Shard):
        try:
            rows = pf.read_row_group(group).to_pylist()
        except Exception as e:
            count("records_read")
            yield dead_letter(shard.path, first_row, "read_error", e, STAGE)
            return
        for i, row in enumerate(rows):
            offset = first_row + i
            count("records_read")
            doc = from_record({**row, "text": row.get("text") or ""}, shard.path, offset)
            if len(doc.text) > self._limit:
                yield drop(doc.id, "too_large", shard.path, offset, f"{len(doc.text)} characters")
            elif not doc.text.strip():
                yield drop(doc.id, "empty_text", shard.path, offset)
            else:
                yield doc

"""How many bytes reading a Parquet row group would make, known before Arrow decompresses anything.

A few kilobytes of Parquet can decompress to gigabytes (a Brotli page of one repeated byte is ~1:400,000) or
decode to them (a dictionary page of one long string referenced by a million rows). Arrow allocates what a page
header announces and decodes every row group whole, so the reader checks first:

1. the footer's uncompressed column-chunk sizes (cheap, but written by whoever made the file);
2. the page headers themselves, which are what Arrow allocates by: each column chunk's byte range (the range Arrow
   reads) is walked header by header (Thrift compact protocol), summing `uncompressed_page_size`; a dictionary-
   encoded data page counts `num_values` × its dictionary's longest entry (the dictionary page, already counted,
   is decompressed to find it), an upper bound on what it decodes to.

A row group whose size is over the budget by (1) or (2) is not read. When only the dictionary bound is over, the
caller may measure the decoded size exactly (`decoded_bytes`, reading the dictionaries without expanding them).
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

MAX_ROW_GROUP_BYTES = 1 << 30  # the documented cap on one row group's decompressed (and decoded) bytes
ROW_ALLOWANCE = 64 << 10  # per row, for the columns besides the text (id, url, metadata, provenance)
GROUP_ALLOWANCE = 1 << 20  # per row group, for page headers and dictionaries
MAX_HEADER_BYTES = 16 << 20  # Arrow's own limit on one page header
_DICTIONARY_ENCODINGS = {2, 8}  # PLAIN_DICTIONARY, RLE_DICTIONARY
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3


def row_group_budget(rows: int, max_document_bytes: int) -> int:
    """`--max_document_bytes` (plus ROW_ALLOWANCE) per row and GROUP_ALLOWANCE, never over MAX_ROW_GROUP_BYTES
    (nor under one document)."""
    return min(max(rows, 1) * (max_document_bytes + ROW_ALLOWANCE) + GROUP_ALLOWANCE,
               max(MAX_ROW_GROUP_BYTES, max_document_bytes))


class PageHeaderError(ValueError):
    """A page header that cannot be parsed, or that points outside its column chunk."""


class _Compact:
    """Just enough of Thrift's compact protocol to read a PageHeader and skip what it does not need."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise EOFError
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise PageHeaderError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, kind: int, depth: int = 0) -> None:
        if depth > 32:
            raise PageHeaderError("page header nested too deep")
        if kind in (1, 2):
            return
        if kind == 3:
            self.byte()
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            length = self.varint()
            self.pos += length
        elif kind in (9, 10):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                self.skip(elem, depth + 1) if elem not in (1, 2) else self.byte()
        elif kind == 11:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4, depth + 1)
                    self.skip(types & 0x0F, depth + 1)
        elif kind == 12:
            self.struct(lambda field, kind: self.skip(kind, depth + 1), depth + 1)
        else:
            raise PageHeaderError(f"unknown Thrift type {kind}")
        if self.pos > len(self.data):
            raise EOFError

    def struct(self, on_field, depth: int = 0) -> None:
        """Calls `on_field(field_id, type)` for each field; it must consume the value."""
        field = 0
        while True:
            head = self.byte()
            if head == 0:
                return
            kind, delta = head & 0x0F, head >> 4
            field = field + delta if delta else self.zigzag()
            on_field(field, kind)


def _page_header(data: bytes) -> tuple[dict, int]:
    """(the header's fields we use, its length in bytes); EOFError when `data` ends inside it."""
    r = _Compact(data)
    header: dict = {}

    def sub(names: dict):
        def on_field(field, kind):
            if field in names and kind == 5:
                header[names[field]] = r.zigzag()
            else:
                r.skip(kind)
        return on_field

    def top(field, kind):
        if field in (1, 2, 3) and kind == 5:
            header[("type", "uncompressed", "compressed")[field - 1]] = r.zigzag()
        elif field in (5, 7) and kind == 12:  # data page, dictionary page: the same two leading fields
            r.struct(sub({1: "num_values", 2: "encoding"}))
        elif field == 8 and kind == 12:
            r.struct(sub({1: "num_values", 4: "encoding"}))
        else:
            r.skip(kind)

    r.struct(top)
    return header, r.pos


def _read_header(f, pos: int) -> tuple[dict, int]:
    size = 1 << 10
    while True:
        f.seek(pos)
        data = f.read(size)
        try:
            return _page_header(data)
        except EOFError:
            if len(data) < size or size >= MAX_HEADER_BYTES:
                raise PageHeaderError(f"page header at byte {pos} is cut or over {MAX_HEADER_BYTES} bytes") from None
            size *= 4


def chunk_range(column) -> tuple[int, int]:
    """The byte range of a column chunk, as Arrow computes it from the footer."""
    start = column.data_page_offset
    if column.has_dictionary_page and 0 < column.dictionary_page_offset < start:
        start = column.dictionary_page_offset
    return start, start + column.total_compressed_size


_CODECS = {"SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "ZSTD": "zstd", "LZ4_RAW": "lz4_raw"}


def _longest_entry(f, column, pos: int, header: dict, limit: int) -> int:
    """The longest value of a dictionary page (whose header starts at `pos`): its size when the page is larger
    than `limit` or its codec is not one Arrow decompresses on its own (a bound that still holds)."""
    unc, comp, entries = header["uncompressed"], header["compressed"], max(header.get("num_values", 0), 1)
    if column.physical_type != "BYTE_ARRAY":
        return -(-unc // entries)  # fixed width: every entry is as long
    codec = _CODECS.get(column.compression, "" if column.compression == "UNCOMPRESSED" else None)
    if unc > limit or codec is None:
        return unc
    f.seek(pos)
    data = f.read(comp)
    try:
        data = pa.Codec(codec).decompress(data, decompressed_size=unc).to_pybytes() if codec else data
    except (pa.ArrowException, ValueError):
        return unc
    longest, i, n = 0, 0, len(data)
    while i + 4 <= n:  # PLAIN byte arrays: a 4-byte little-endian length, then the bytes
        size = int.from_bytes(data[i:i + 4], "little")
        longest, i = max(longest, size), i + 4 + size
    return min(longest, unc)


def page_sizes(f, column, file_size: int, limit: int = MAX_ROW_GROUP_BYTES) -> tuple[int, int]:
    """(bytes the pages of a column chunk decompress to, an upper bound on what its dictionary-encoded pages decode
    to beyond that), from the page headers in the chunk's byte range; no dictionary page over `limit` is
    decompressed."""
    start, end = chunk_range(column)
    if start < 0 or end > file_size or end < start:
        raise PageHeaderError(f"column chunk at bytes {start}-{end} lies outside the file ({file_size} bytes)")
    pos, decompressed, expansion, longest = start, 0, 0, 0
    while pos < end:
        header, length = _read_header(f, pos)
        unc, comp = header.get("uncompressed", -1), header.get("compressed", -1)
        if unc < 0 or comp < 0:
            raise PageHeaderError(f"page header at byte {pos} has no valid sizes")
        decompressed += unc
        kind = header.get("type")
        if kind == _DICTIONARY_PAGE:
            longest = _longest_entry(f, column, pos + length, header, limit)
        elif kind in (_DATA_PAGE, _DATA_PAGE_V2) and header.get("encoding") in _DICTIONARY_ENCODINGS:
            expansion += max(header.get("num_values", 0), 0) * longest
        pos += length + comp
    return decompressed, expansion


def dictionary_columns(pf, group: int) -> list[str]:
    """Top-level columns of a row group whose pages may be dictionary-encoded (read them with read_dictionary to
    measure what they decode to)."""
    md = pf.metadata.row_group(group)
    names = []
    for i in range(md.num_columns):
        column = md.column(i)
        if column.has_dictionary_page and "." not in column.path_in_schema:
            names.append(column.path_in_schema)
    return names


def decoded_bytes(table: pa.Table) -> int:
    """Bytes the string and binary columns of `table` (dictionaries kept) take once their dictionaries expand."""
    total = 0
    for col in table.columns:
        for chunk in col.chunks:
            if pa.types.is_dictionary(chunk.type) and (pa.types.is_string(chunk.type.value_type)
                                                       or pa.types.is_binary(chunk.type.value_type)
                                                       or pa.types.is_large_string(chunk.type.value_type)
                                                       or pa.types.is_large_binary(chunk.type.value_type)):
                lengths = pc.binary_length(chunk.dictionary).take(chunk.indices)
                total += pc.sum(lengths).as_py() or 0
            else:
                total += chunk.nbytes
    return total


def oversize(pf, f, group: int, budget: int, file_size: int) -> tuple[str | None, bool]:
    """(why row group `group` may not be read, or None; whether only the dictionary bound is over the budget, so
    an exact measure with `decoded_bytes` may still admit it)."""
    md = pf.metadata.row_group(group)
    declared = sum(md.column(i).total_uncompressed_size for i in range(md.num_columns))
    if declared > budget:
        return (f"row group {group} ({md.num_rows} rows): the footer declares {declared:,} uncompressed bytes, over "
                f"the read budget of {budget:,}"), False
    decompressed = expansion = 0
    for i in range(md.num_columns):
        d, e = page_sizes(f, md.column(i), file_size, budget)
        decompressed, expansion = decompressed + d, expansion + e
    if decompressed > budget:
        return (f"row group {group} ({md.num_rows} rows): its page headers declare {decompressed:,} decompressed "
                f"bytes, over the read budget of {budget:,}"), False
    if decompressed + expansion > budget:
        return (f"row group {group} ({md.num_rows} rows): its dictionary-encoded pages may decode to "
                f"{decompressed + expansion:,} bytes, over the read budget of {budget:,}"), True
    return None, False

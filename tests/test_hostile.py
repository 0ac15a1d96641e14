"""Crafted hostile inputs: decompression bombs, files changed after their commit, inputs that are not what they
claim. Each ends in a named drop, a dead letter or a one-line refusal; nothing is read unbounded."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import curate
from tests.helpers import read_documents, read_jsonl
from transforms.io.parquet_budget import (_page_header, chunk_range, oversize,
                                            row_group_budget)

LIMIT = 16 << 10  # --max_document_bytes: a row group may decompress to this many bytes per row


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _lie_in_footer(data: bytes, true: int, claimed: int) -> bytes:
    """Every footer field that says `true` bytes says `claimed` instead (a non-canonical varint of the same
    length, which Thrift readers accept)."""
    old = _zigzag(true)
    new = bytearray(_zigzag(claimed))
    new = bytes(b | 0x80 for b in new[:-1]) + bytes([new[-1] | 0x80]) + b"\x80" * (len(old) - len(new) - 1) + b"\x00"
    assert len(new) == len(old)
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    footer = data[start:-8]
    assert footer.count(old) >= 1
    return data[:start] + footer.replace(old, new) + data[-8:]


@pytest.fixture(scope="module")
def parquet_bombs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bombs")
    rows = 4
    text = "a" * (4 * LIMIT)  # 4 rows of 64 KiB: 256 KiB decompressed against a budget of 64 KiB
    bomb = pa.table({"id": [f"b{i}" for i in range(rows)], "text": [text] * rows})
    pq.write_table(bomb, d / "honest.parquet", compression="brotli", use_dictionary=False)
    # the same bomb, but its footer claims 100 bytes per column chunk: only the page headers tell the truth
    sink = io.BytesIO()
    pq.write_table(bomb, sink, compression="brotli", use_dictionary=False)
    data = sink.getvalue()
    md = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    size = md.column(1).total_uncompressed_size
    lying = _lie_in_footer(data, size, 100)
    assert pq.ParquetFile(io.BytesIO(lying)).metadata.row_group(0).column(1).total_uncompressed_size == 100
    (d / "lying.parquet").write_bytes(lying)
    # a dictionary bomb: one 64 KiB string referenced by 1,000 rows decodes to 64 MiB from a few KiB
    many = 1000
    pq.write_table(pa.table({"text": pa.array([text] * many).dictionary_encode()}), d / "dictionary.parquet",
                   compression="zstd", dictionary_pagesize_limit=1 << 20)
    # the dictionary bound trips, but the exact decoded size fits: read, the long row dropped as too_large
    mixed = ["short text %d" % (i % 7) for i in range(many - 1)] + [text]
    pq.write_table(pa.table({"text": pa.array(mixed).dictionary_encode()}), d / "fits.parquet",
                   compression="zstd", dictionary_pagesize_limit=1 << 20)
    # a good file beside them: the bombs cost only their own row groups
    pq.write_table(pa.table({"id": ["g1"], "text": ["a good row"]}), d / "good.parquet")
    out = tmp_path_factory.mktemp("bombs_out")
    summary, counters = curate.run(["--input", str(d / "*.parquet"), "--output", str(out), "--no_score",
                                    "--no_exact_dedup", "--no_near_dedup", f"--max_document_bytes={LIMIT}"])
    return d, out, summary, counters


def _dead(out, name):
    return [(r["reason"], r["offset"], r["message"]) for r in read_jsonl(out, "dead_letters")
            if r["source"].endswith(name)]


def test_a_parquet_bomb_is_one_dead_letter_read_from_the_footer(parquet_bombs):
    _, out, s, c = parquet_bombs
    (reason, offset, message), = _dead(out, "honest.parquet")
    assert (reason, offset) == ("over_read_budget", 0) and "footer declares" in message
    assert s["reconciles"] and c["dead_letter_over_read_budget"] == s["dead_letters"]["over_read_budget"] == 3


def test_a_footer_that_lies_is_caught_by_the_page_headers(parquet_bombs):
    _, out, _, _ = parquet_bombs
    (reason, offset, message), = _dead(out, "lying.parquet")
    assert (reason, offset) == ("over_read_budget", 0) and "page headers declare" in message


def test_a_dictionary_bomb_is_measured_without_expanding_it(parquet_bombs):
    _, out, _, _ = parquet_bombs
    (reason, offset, message), = _dead(out, "dictionary.parquet")
    assert (reason, offset) == ("over_read_budget", 0) and "dictionaries expand to 65,5" in message


def test_a_dictionary_that_fits_is_read(parquet_bombs):
    d, out, _, _ = parquet_bombs
    with open(d / "fits.parquet", "rb") as f:  # the bound alone would refuse it: the exact measure admits it
        why, exact = oversize(pq.ParquetFile(f), f, 0, row_group_budget(1000, LIMIT), (d / "fits.parquet").stat().st_size)
    assert why and exact
    assert _dead(out, "fits.parquet") == []
    assert len([d for d in read_documents(out) if d.source.endswith("fits.parquet")]) == 999
    assert [r["reason"] for r in read_jsonl(out, "dropped") if r["source"].endswith("fits.parquet")
            ] == ["too_large"]
    assert [d.id for d in read_documents(out) if d.source.endswith("good.parquet")] == ["g1"]


def test_page_headers_are_parsed_as_arrow_writes_them(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["x" * 5000, "y"]}), path, compression="zstd")
    data = path.read_bytes()
    column = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start, end = chunk_range(column)
    total, pos = 0, start
    while pos < end:
        header, length = _page_header(data[pos:pos + 1024])
        total += length + header["uncompressed"]
        pos += length + header["compressed"]
    assert pos == end and total == column.total_uncompressed_size  # the footer counts headers with pages

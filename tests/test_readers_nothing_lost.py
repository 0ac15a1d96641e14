"""Issue 10 (items 4, 5, 8, 9, 10, 14), 13 (item 3) and 15 (readers): crafted inputs that used to lose records,
crash the run or exhaust memory now end as documents, named drops or dead letters that say what was found."""
from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import tracemalloc
import zlib

import brotli
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRestrictionTracker
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.pvalue import TaggedOutput

from pipeline import curate
from pipeline.sample import warc_record
from tests.crafted import HTML, member, page, response
from tests.helpers import read_jsonl, utf8_unchecked
from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED, NAMESPACE, drop
from transforms.dates import has_unparsed_date, is_pre_llm, normalise_date
from transforms.document import Document, dolma_line, to_table
from transforms.io.files import ByteRanges, InputError, Shard, match_shards
from transforms.io.gzip_members import FileWindow, PlainStream
from transforms.io.html import MAX_DEPTH
from transforms.io.jsonl import ReadJsonlFn, _LineRanges
from transforms.io.parquet import ReadParquetFn, _RowGroups
from transforms.io.reader import ShardReader
from transforms.io.warc import ReadWarcFn, _ByteRanges

MiB = 1 << 20


def _iter(fn, provider, path, fmt: str, split: int = 0):
    """Every range of a static split through the reader DoFn, as a runner would."""
    shard = Shard(str(path), os.path.getsize(path), fmt, split)
    if hasattr(fn, "setup"):
        fn.setup()
    for r in provider.split(shard, provider.initial_restriction(shard)):
        tracker = OffsetRestrictionTracker(r)
        yield from fn.process(shard, tracker)
        tracker.check_done()


def _run(fn, provider, path, fmt: str, split: int = 0) -> list:
    return list(_iter(fn, provider, path, fmt, split))


def read_warc(path, limit=16 * MiB, split=0):
    return _run(ReadWarcFn(limit), _ByteRanges(), str(path), "warc", split)


def read_jsonl_file(path, limit=16 * MiB, split=0):
    return _run(ReadJsonlFn(limit), _LineRanges(), str(path), "jsonl", split)


def read_parquet(path, limit=16 * MiB):
    return _run(ReadParquetFn(limit), _RowGroups(), str(path), "parquet")


def docs(out):
    return [x for x in out if isinstance(x, Document)]


def tagged(out, tag):
    return [x.value for x in out if isinstance(x, TaggedOutput) and x.tag == tag]


def dead(out):
    return tagged(out, "dead_letters")


def dropped(out):
    return tagged(out, "dropped")


def wet(n: int, text: str | None = None, date: str = "2024-03-01T00:00:00Z") -> bytes:
    body = (text or f"conversion record {n} with some words").encode()
    return warc_record("conversion", body, [("WARC-Record-ID", f"<urn:uuid:wet-{n}>"), ("WARC-Date", date),
                                            ("WARC-Target-URI", f"https://crafted.example/{n}")], "text/plain")


def wet_with_length(n: int, length: str) -> bytes:
    """Record n with its Content-Length replaced by `length`."""
    record = wet(n)
    true = len(record.split(b"\r\n\r\n", 1)[1]) - 4
    return record.replace(f"Content-Length: {true}".encode(), f"Content-Length: {length}".encode())


def peak_bytes(outputs) -> tuple[int, list]:
    """Peak traced memory while the reader runs, and its outputs with document texts let go as they come (so
    the peak is the reader's, not the test's)."""
    kept = []
    tracemalloc.start()
    try:
        for x in outputs():
            kept.append(x.id if isinstance(x, Document) else x)
        return tracemalloc.get_traced_memory()[1], kept
    finally:
        tracemalloc.stop()


# -- 10.4: one gzip member holding a whole WARC file -------------------------------------------------------------

def test_10_4_single_member_warc_gz_reads_every_record_with_the_limit_per_record(tmp_path):
    records = [wet(n, f"record {n} " + "words " * 2000) for n in range(200)]  # ~2.4 MB decompressed
    records[77] = wet(77, "huge " * 30_000)  # 150 KB: the one record over the limit
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(gzip.compress(b"".join(records), compresslevel=1))  # what `gzip crawl.warc` makes
    out = read_warc(path, limit=64 * 1024)
    assert len(out) == 200 and not dead(out)
    assert [d.reason for d in dropped(out)] == ["too_large"]
    assert sorted(d.url for d in docs(out)) == sorted(f"https://crafted.example/{n}" for n in range(200) if n != 77)
    # offsets are positions in the decompressed stream (what `zcat | tail -c +N` finds), unique per record
    assert len({d.offset for d in docs(out)}) == 199
    plain = b"".join(records)
    assert all(plain[d.offset : d.offset + 8] == b"WARC/1.0" for d in docs(out))
    # one member is one unit of work: any split reads each record once
    key = lambda xs: sorted(repr(x.value) if isinstance(x, TaggedOutput) else repr((x.id, x.offset)) for x in xs)
    assert key(read_warc(path, 64 * 1024, split=97)) == key(out)


def test_10_4_multi_record_member_is_read_with_memory_bounded_by_the_record_limit(tmp_path):
    records = [wet(n, "words " * 20_000) for n in range(160)]  # 120 KB each, ~19 MB in one member
    path = tmp_path / "big.warc.gz"
    path.write_bytes(gzip.compress(b"".join(records), compresslevel=1))
    peak, out = peak_bytes(lambda: _iter(ReadWarcFn(256 * 1024), _ByteRanges(), path, "warc"))
    assert out == [f"urn:uuid:wet-{n}" for n in range(160)]
    assert peak < 12 * MiB  # the member is 19 MB: it was never held whole


def test_10_4_bad_length_inside_a_member_resyncs_within_it(tmp_path):
    stream = wet(1) + wet_with_length(2, "10") + wet(3)
    path = tmp_path / "one.warc.gz"
    path.write_bytes(gzip.compress(stream, mtime=0))
    out = read_warc(path)
    assert [d.url for d in docs(out)] == ["https://crafted.example/1", "https://crafted.example/3"]
    [letter] = dead(out)
    assert letter.reason == "warc_header_error" and letter.offset == len(wet(1))
    assert "Content-Length 10" in letter.message and "gzip member at 0" in letter.message


# -- 10.5: plain .warc resynchronises on the next WARC/ line -----------------------------------------------------

def _five(tmp_path, name, second: bytes):
    parts = [wet(1), second, wet(3), wet(4), wet(5)]
    path = tmp_path / name
    path.write_bytes(b"".join(parts))
    return path, parts


def test_10_5_plain_warc_resyncs_after_oversized_content_length(tmp_path):
    path, parts = _five(tmp_path, "over.warc", wet_with_length(2, "999999999"))
    out = read_warc(path)
    assert [d.url[-1] for d in docs(out)] == ["1", "3", "4", "5"]
    [letter] = dead(out)
    start, nxt = len(parts[0]), len(parts[0]) + len(parts[1])
    assert letter.offset == start and f"skipped bytes {start}..{nxt}" in letter.message
    assert len(out) == 5


def test_10_5_plain_warc_reads_past_a_valid_70kb_header(tmp_path):
    big_header = wet(2).replace(b"WARC-Date:", b"X-Padding: " + b"p" * 70_000 + b"\r\nWARC-Date:", 1)
    path, _ = _five(tmp_path, "header.warc", big_header)
    out = read_warc(path)
    assert [d.url[-1] for d in docs(out)] == ["1", "2", "3", "4", "5"] and not dead(out)


def test_10_5_plain_warc_resyncs_after_short_content_length(tmp_path):
    path, parts = _five(tmp_path, "short.warc", wet_with_length(2, "10"))
    out = read_warc(path)
    assert [d.url[-1] for d in docs(out)] == ["1", "3", "4", "5"]
    [letter] = dead(out)
    assert letter.reason == "warc_header_error" and letter.offset == len(parts[0])
    assert f"..{len(parts[0]) + len(parts[1])}" in letter.message


def test_10_5_every_skipped_byte_range_is_a_dead_letter(tmp_path):
    junk = b"this is not a WARC record\r\n" * 20
    path = tmp_path / "junk.warc"
    path.write_bytes(wet(1) + junk + wet(2) + b"garbage at the end without any record")
    out = read_warc(path)
    assert [d.url[-1] for d in docs(out)] == ["1", "2"]
    letters = dead(out)
    assert [(x.offset, x.reason) for x in letters] == [(len(wet(1)), "warc_header_error"),
                                                      (len(wet(1) + junk + wet(2)), "warc_header_error")]
    assert f"skipped bytes {len(wet(1))}..{len(wet(1) + junk)}" in letters[0].message
    assert "..the end" in letters[1].message


def test_10_5_truncated_last_record_is_one_dead_letter(tmp_path):
    path = tmp_path / "cut.warc"
    path.write_bytes(wet(1) + wet(2)[:-30])
    out = read_warc(path)
    assert [d.url[-1] for d in docs(out)] == ["1"]
    assert [(x.reason, x.offset) for x in dead(out)] == [("truncated", len(wet(1)))]


def test_10_5_lf_only_headers_are_read(tmp_path):
    lf = [wet(n).replace(b"\r\n", b"\n") for n in (1, 2)]
    head, block = response("https://crafted.example/3", HTML % b"crlf http inside", "lf3").split(b"\r\n\r\n", 1)
    lf.append(head.replace(b"\r\n", b"\n") + b"\n\n" + block[:-4] + b"\n\n")  # CRLF only in the HTTP block
    path = tmp_path / "lf.warc"
    path.write_bytes(b"".join(lf))
    out = read_warc(path)
    assert [d.url[-1] for d in docs(out)] == ["1", "2", "3"] and not dead(out)


# -- 10.8: one record must never kill a run ----------------------------------------------------------------------

def test_10_8_content_length_superscript_two_is_a_dead_letter(tmp_path):
    path, parts = _five(tmp_path, "sup.warc", wet_with_length(2, "\u00b2"))
    out = read_warc(path)
    assert [d.url[-1] for d in docs(out)] == ["1", "3", "4", "5"]
    [letter] = dead(out)
    assert letter.reason == "warc_header_error" and "Content-Length" in letter.message
    gz = tmp_path / "sup.warc.gz"
    gz.write_bytes(b"".join(member(p) for p in parts))
    out = read_warc(gz)
    assert [d.url[-1] for d in docs(out)] == ["1", "3", "4", "5"] and len(dead(out)) == 1


def test_10_8_negative_http_chunk_size_is_a_dead_letter_not_a_hang(tmp_path):
    record = response("https://crafted.example/chunked", b"-5\r\nhello\r\n0\r\n\r\n", "chunked",
                      headers="Content-Type: text/html\r\nTransfer-Encoding: chunked")
    path = tmp_path / "chunked.warc.gz"
    path.write_bytes(member(record) + member(wet(2)))
    out = read_warc(path)
    assert [x.reason for x in dead(out)] == ["http_error"] and "chunk size" in dead(out)[0].message
    assert [d.url for d in docs(out)] == ["https://crafted.example/2"]


def test_10_8_parquet_values_python_cannot_hold_are_a_dead_letter(tmp_path):
    far = pa.array([253402300800 * 1_000_000], pa.timestamp("us"))  # year 10000
    pq.write_table(pa.table({"id": ["a"], "text": ["t"], "when": far}), tmp_path / "far.parquet")
    pq.write_table(pa.table([pa.array(["a"]), pa.array(["b"])], names=["text", "text"]), tmp_path / "twice.parquet")
    full = to_table([Document(id="a", text="t", source="s", offset=0)])
    pq.write_table(full.append_column("id", pa.array(["again"])), tmp_path / "twice_id.parquet")
    assert [x.reason for x in dead(read_parquet(tmp_path / "twice_id.parquet"))] == ["schema_error"]
    assert [x.reason for x in dead(read_parquet(tmp_path / "far.parquet"))] == ["schema_error"]
    assert [x.reason for x in dead(read_parquet(tmp_path / "twice.parquet"))] == ["schema_error"]


@pytest.mark.parametrize("typed", [False, True])
def test_10_8_one_bad_parquet_value_costs_its_row_not_the_row_group(tmp_path, typed):
    """Invalid UTF-8 in one row's text (or a year-10000 timestamp in one row) made the whole row group one
    dead letter: its good rows were never read. Now each bad row is a dead letter at its own offset, the others
    are documents, and the mixer's second read finds the same documents."""
    from transforms.document import identity_hash
    from transforms.io.parquet import _ReadAgainFn

    text = utf8_unchecked([b"first good row", b"bad \xff\xfe row", b"third good row", b"\xed\xa0\x80 surrogate"])
    if typed:  # a curated-schema file: text is checked as the rows are converted
        table = to_table([Document(id=f"d{i}", text="x", source="s", offset=i) for i in range(4)])
        table = table.set_column(table.schema.get_field_index("text"), "text", text)
        bad, good = [1, 3], ["first good row", "third good row"]
    else:  # any other table, with a year-10000 timestamp in the third row
        when = pa.array([1, 1, 253402300800 * 1_000_000, 1], pa.timestamp("us"))
        table = pa.table({"id": ["d0", "d1", "d2", "d3"], "text": text, "when": when})
        bad, good = [1, 2, 3], ["first good row"]
    pq.write_table(table, tmp_path / "rows.parquet")
    out = read_parquet(tmp_path / "rows.parquet")
    assert [(x.reason, x.offset) for x in dead(out)] == [("schema_error", i) for i in bad]
    kept = docs(out)
    assert [d.text for d in kept] == good
    assert all("row" in x.message and "of row group 0" in x.message for x in dead(out))
    wanted = {identity_hash(d.id, d.source, d.offset) for d in kept}
    path = tmp_path / "rows.parquet"
    again = list(_ReadAgainFn(16 * MiB).process((str(path), path.stat().st_size, 0, 1), wanted))
    assert again == kept


def _jsonl(tmp_path, name, lines: list[bytes]):
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return read_jsonl_file(path)


def test_10_8_deep_json_nesting_is_a_dead_letter(tmp_path):
    deep = b'{"text": "t", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    out = _jsonl(tmp_path, "deep.jsonl", [deep, b'{"id": "ok", "text": "fine"}'])
    assert [d.id for d in docs(out)] == ["ok"]
    assert [(x.reason, x.offset) for x in dead(out)] == [("json_error", 0)]
    assert "nested too deep" in dead(out)[0].message


def test_10_8_lone_surrogates_are_dead_letters(tmp_path):
    lines = [b'{"id": "\\ud800", "text": "escaped lone surrogate in the id"}',
             b'{"id": "r", "text": "raw bytes \xed\xa0\x80 of a surrogate"}',
             b'{"id": "m", "text": "t", "tags": {"k": ["\\udfff"]}}',
             b'{"id": "pair", "text": "a real pair \\ud83d\\ude00 is fine"}']
    out = _jsonl(tmp_path, "surrogates.jsonl", lines)
    assert [d.id for d in docs(out)] == ["pair"] and docs(out)[0].text.endswith("\U0001F600 is fine")
    assert [x.reason for x in dead(out)] == ["decode_error"] * 3


@pytest.mark.parametrize("change,field", [
    ({"id": 7}, "id"), ({"id": None}, "id"), ({"source": 5}, "source"),
    ({"metadata.offset": "12"}, "offset"), ({"metadata.offset": 1.5}, "offset"),
    ({"metadata.offset": 1 << 70}, "offset"), ({"metadata.offset": None}, "offset"),
    ({"metadata.url": 3}, "url"), ({"metadata.first_seen": ["2020"]}, "first_seen"),
    ({"metadata.dup_cluster_size": "2"}, "dup_cluster_size"), ({"metadata.extra": ["a"]}, "extra"),
    ({"metadata.p_ai": "high"}, "p_ai"), ({"metadata.p_ai": float("nan")}, "p_ai"),
    ({"metadata.provenance": {"pre_llm": "yes"}}, "provenance"),
])
def test_10_8_dolma_lines_with_wrong_types_are_dead_letters(tmp_path, change, field):
    obj = json.loads(dolma_line(Document(id="d1", text="dolma text", source="s.warc.gz", offset=3)))
    for key, value in change.items():
        if key.startswith("metadata."):
            obj["metadata"][key.split(".", 1)[1]] = value
        else:
            obj[key] = value
    good = dolma_line(Document(id="d2", text="another", source="s", offset=0)).encode()
    out = _jsonl(tmp_path, "dolma.jsonl", [json.dumps(obj).encode(), good])
    assert [d.id for d in docs(out)] == ["d2"]
    [letter] = dead(out)
    assert letter.reason == "schema_error" and field in letter.message


def test_10_8_dolma_lines_without_a_source_are_where_they_were_read(tmp_path):
    """Lines with `metadata.offset` but no `source` all had the identity ('', metadata.offset): unrelated texts
    sharing an id then shared one dedup rank, and a near duplicate of one of them was kept."""
    lines = [json.dumps({"id": "a", "text": f"text {i}", "metadata": {"offset": 1}}).encode() for i in range(3)]
    lines.append(dolma_line(Document(id="a", text="kept lineage", source="s.warc.gz", offset=1)).encode())
    out = _jsonl(tmp_path, "dolma.jsonl", lines)
    path = str(tmp_path / "dolma.jsonl")
    starts = [0, len(lines[0]) + 1, len(lines[0]) + len(lines[1]) + 2]
    assert [(d.source, d.offset) for d in docs(out)] == [(path, o) for o in starts] + [("s.warc.gz", 1)]


def test_10_8_parquet_with_document_columns_of_other_types_is_a_dead_letter(tmp_path):
    good = to_table([Document(id="a", text="typed", source="s", offset=1)])
    bad = good.set_column(good.schema.get_field_index("offset"), "offset", pa.array(["not a number"]))
    pq.write_table(bad, tmp_path / "bad.parquet")
    out = read_parquet(tmp_path / "bad.parquet")
    [letter] = dead(out)
    assert letter.reason == "schema_error" and "`offset`" in letter.message and not docs(out)
    nulls = good.set_column(0, pa.field("id", pa.string()), pa.array([None], pa.string()))
    pq.write_table(nulls, tmp_path / "null.parquet")
    assert [x.reason for x in dead(read_parquet(tmp_path / "null.parquet"))] == ["schema_error"]
    pq.write_table(good, tmp_path / "good.parquet")
    assert [d.id for d in docs(read_parquet(tmp_path / "good.parquet"))] == ["a"]


# -- 10.9: decoders never produce more than the limit -------------------------------------------------------------

def _encoded_response(encoding: str, payload: bytes, tag: str = "") -> bytes:
    body = {"gzip": lambda b: gzip.compress(b, mtime=0), "deflate": zlib.compress,
            "br": lambda b: brotli.compress(b, quality=5),
            "zstd": lambda b: zstandard.ZstdCompressor(level=3).compress(b)}[encoding](payload)
    headers = f"Content-Type: text/html\r\nContent-Encoding: {encoding}"
    return response(f"https://crafted.example/{encoding}", b"", f"bomb-{encoding}{tag}", headers=headers).replace(
        b"Content-Encoding: " + encoding.encode() + b"\r\n\r\n", b"Content-Encoding: " + encoding.encode()
        + b"\r\n\r\n" + body).replace(b"Content-Length: ", b"Content-Length-Old: ", 1)


def _fix_length(record: bytes) -> bytes:
    head, block = record.split(b"\r\n\r\n", 1)
    block = block[:-4]
    head = b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Content-Length-Old"))
    return head + f"\r\nContent-Length: {len(block)}".encode() + b"\r\n\r\n" + block + b"\r\n\r\n"


# zstd: a page so encoded (browsers ask for it, so browser-driven crawlers store it) was kept compressed and dropped
# as binary_content
@pytest.mark.parametrize("encoding", ["br", "gzip", "deflate", "zstd"])
def test_10_9_http_content_encoding_bombs_are_too_large_without_being_held(tmp_path, encoding):
    bomb = _fix_length(_encoded_response(encoding, HTML % (b"a" * (32 * MiB))))
    assert len(bomb) < MiB
    ok = _fix_length(_encoded_response(encoding, HTML % b"a small encoded page", "-ok"))
    path = tmp_path / f"{encoding}.warc.gz"
    path.write_bytes(member(bomb) + member(ok))
    peak, out = peak_bytes(lambda: _iter(ReadWarcFn(MiB), _ByteRanges(), path, "warc"))
    assert [x.reason for x in dropped(out)] == ["too_large"] and "decoded payload over" in dropped(out)[0].detail
    assert out[1] == f"urn:uuid:bomb-{encoding}-ok"
    assert peak < 8 * MiB  # decoded, the bomb is 32 MiB


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst", ".jsonl"])
def test_10_9_jsonl_line_bombs_are_too_large_without_being_held(tmp_path, suffix):
    line = json.dumps({"id": "bomb", "text": "x" * (32 * MiB)}).encode()
    data = line + b"\n" + b'{"id": "after", "text": "kept"}\n'
    path = tmp_path / f"bomb{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(data, compresslevel=1))
    elif suffix.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    else:
        path.write_bytes(data)
    peak, out = peak_bytes(lambda: _iter(ReadJsonlFn(MiB), _LineRanges(), path, "jsonl"))
    assert out[1] == "after"
    assert [(x.reason, x.offset) for x in dropped(out)] == [("too_large", 0)]
    assert dropped(out)[0].detail.startswith(f"{len(line)} bytes")
    assert peak < 12 * MiB  # the line is 32 MiB


# -- 10.10: HTML extraction is bounded per record ----------------------------------------------------------------

def test_10_10_deeply_nested_html_is_dropped_before_extraction(tmp_path):
    nested = b"<html><body>" + b"<div><span><b><i>x " * 20_000 + b"</body></html>"  # 380 KB
    path = tmp_path / "nested.warc.gz"
    normal = HTML % (b"<div>" * 50 + b"normal words" + b"</div>" * 50)
    path.write_bytes(member(response("https://crafted.example/deep", nested, "deep"))
                     + member(response("https://crafted.example/ok", normal, "ok")))
    out = read_warc(path)
    [d] = dropped(out)
    assert d.reason == "html_too_complex" and f"limits {MAX_DEPTH}" in d.detail
    assert [x.url for x in docs(out)] == ["https://crafted.example/ok"]


# -- 10.14 / 13.3: capture dates --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,want", [
    ("2024-06-01T10:00:00Z", "2024-06-01T10:00:00Z"),
    ("2024-06-01T10:00:00.123456Z", "2024-06-01T10:00:00Z"),
    ("2024-06-01T12:00:00+02:00", "2024-06-01T10:00:00Z"),
    ("2009-01-13T18:05:10-0800", "2009-01-14T02:05:10Z"),
    ("01 Jun 2024 10:00:00 GMT", "2024-06-01T10:00:00Z"),
    ("Sat, 01 Jun 2024 10:00:00 GMT", "2024-06-01T10:00:00Z"),
    ("15/06/2024", "2024-06-15T00:00:00Z"),
    ("06/15/2024", "2024-06-15T00:00:00Z"),
    ("2024-06-01", "2024-06-01T00:00:00Z"),
    ("20240601100000", "2024-06-01T10:00:00Z"),
    ("2024-06-01 10:00:00", "2024-06-01T10:00:00Z"),
    ("2022-11-29T23:30:00-05:00", "2022-11-30T04:30:00Z"),  # local time before the cut-off, UTC after it
    ("Tue, 29 Nov 2022 23:30:00 -0500", "2022-11-30T04:30:00Z"),
    # a year or a month is read as its last second: an upper bound, so the era never claims a page it may not own
    ("2021", "2021-12-31T23:59:59Z"),
    ("2022-10", "2022-10-31T23:59:59Z"),
    ("2022-11", "2022-11-30T23:59:59Z"),
    ("2024-02", "2024-02-29T23:59:59Z"),
])
def test_10_14_warc_dates_in_the_wild_are_parsed_to_utc(raw, want):
    assert normalise_date(raw) == (want, False)


@pytest.mark.parametrize("raw", ["2008-10-294T05:21:46-0700", "06/07/2024", "yesterday", "2024-13-01",
                                 "2024-13", "2024-00", "2022-1", "1990", "9999",
                                 "0001-01-01T00:00:00Z",
                                 # no zone is a day or more off UTC: +99:00 moved 2022-11-30 into the pre-LLM era
                                 "2022-11-30T01:00:00+99:00", "2022-11-30T01:00:00+05:99", "2022-11-30T01:00:00-2400",
                                 "Wed, 30 Nov 2022 01:00:00 +9999"])
def test_10_14_unparseable_dates_are_null_and_flagged(raw):
    assert normalise_date(raw) == (None, True)


def test_10_14_a_partial_date_is_pre_llm_only_when_its_whole_span_is():
    assert [is_pre_llm(normalise_date(raw)[0]) for raw in ("2021", "2022-10", "2022-11", "2022")] == [
        True, True, False, False]


def test_10_14_non_iso_warc_date_never_wins_survivorship_as_a_string(tmp_path):
    path = tmp_path / "dates.warc"
    path.write_bytes(wet(1, date="01 Jun 2024 10:00:00 GMT") + wet(2, date="2021-03-01T00:00:00Z")
                     + wet(3, date="15/06/2024") + wet(4, date="someday"))
    by_url = {d.url[-1]: d for d in docs(read_warc(path))}
    assert by_url["1"].capture_date == "2024-06-01T10:00:00Z" > by_url["2"].capture_date
    assert by_url["3"].capture_date == "2024-06-15T00:00:00Z"
    assert by_url["4"].capture_date is None and by_url["4"].metadata["capture_date_unparsed"] == "someday"


def test_13_3_jsonl_capture_dates_are_normalised_too(tmp_path):
    out = _jsonl(tmp_path, "dated.jsonl", [b'{"id": "a", "text": "t", "capture_date": "01 Jun 2024 10:00:00 GMT"}',
                                           b'{"id": "b", "text": "t", "capture_date": "soon"}'])
    assert [(d.id, d.capture_date) for d in docs(out)] == [("a", "2024-06-01T10:00:00Z"), ("b", None)]
    assert docs(out)[1].metadata["capture_date_unparsed"] == "soon"


def test_a_dolma_created_that_is_not_a_string_is_an_unparsed_date_not_dropped_unsaid(tmp_path):
    """`created: 1700000000` (an epoch number), a list or `true` gave no capture date and was not flagged or counted
    as unparsed (a string that is no date was); now read as its JSON text like any other foreign value. A string
    field that is not a string is kept as JSON text, as metadata values are (it was Python's repr)."""
    out = _jsonl(tmp_path, "created.jsonl", [b'{"id": "e", "text": "t", "created": 1700000000}',
                                             b'{"id": "l", "text": "t", "created": [2024, 1]}',
                                             b'{"id": "d", "text": "t", "created": 20240101}',
                                             b'{"id": "u", "text": "t", "url": ["http://a.example/"]}'])
    got = {d.id: d for d in docs(out)}
    assert got["e"].capture_date is None and got["e"].metadata["capture_date_unparsed"] == "1700000000"
    assert got["l"].capture_date is None and got["l"].metadata["capture_date_unparsed"] == "[2024, 1]"
    assert got["d"].capture_date == "2024-01-01T00:00:00Z"
    assert got["u"].url == '["http://a.example/"]'
    assert sum(has_unparsed_date(d) for d in got.values()) == 2


# -- 15: Parquet text encodings, arrays in .json, CR-only JSONL --------------------------------------------------

@pytest.mark.parametrize("text_type", ["dictionary", "string_view", "large_string"])
def test_15_dictionary_and_string_view_parquet_text_is_read(tmp_path, text_type):
    texts = ["first text", "second text", "first text"]
    column = {"dictionary": pa.array(texts).dictionary_encode(), "string_view": pa.array(texts, pa.string_view()),
              "large_string": pa.array(texts, pa.large_string())}[text_type]
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": column}), tmp_path / "t.parquet")
    out = read_parquet(tmp_path / "t.parquet")
    assert [(d.id, d.text) for d in docs(out)] == list(zip("abc", texts)) and not dead(out)


def test_15_json_array_file_is_one_dead_letter_that_says_so(tmp_path):
    rows = [{"id": str(i), "text": f"row {i}"} for i in range(3)]
    one_line = tmp_path / "array.json"
    one_line.write_text(json.dumps(rows))
    [letter] = dead(read_jsonl_file(one_line))
    assert letter.reason == "schema_error" and "JSON array of 3 items" in letter.message and "jq" in letter.message
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(rows, indent=2))
    for split in (0, 7):
        out = read_jsonl_file(pretty, split=split)
        assert len(out) == 1 and "JSON array spread over lines" in dead(out)[0].message
    obj = tmp_path / "object.json"
    obj.write_text(json.dumps(rows[0], indent=2))
    assert "JSON object spread over lines" in dead(read_jsonl_file(obj))[0].message
    damaged_first = tmp_path / "damaged.jsonl"  # real JSON Lines with a broken first line: only that line is lost
    damaged_first.write_text('[{"id": "0", "te\n' + "\n".join(json.dumps(r) for r in rows[1:]) + "\n")
    assert [d.id for d in docs(read_jsonl_file(damaged_first))] == ["1", "2"]
    gz = tmp_path / "pretty.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(rows, indent=2).encode()))
    assert ["schema_error"] == [x.reason for x in dead(read_jsonl_file(gz))]


def test_15_cr_only_jsonl_is_a_dead_letter_that_names_the_line_endings(tmp_path):
    path = tmp_path / "mac.jsonl"
    path.write_bytes(b"\r".join(json.dumps({"id": str(i), "text": f"t{i}"}).encode() for i in range(4)) + b"\r")
    [letter] = dead(read_jsonl_file(path))
    assert letter.reason == "json_error" and "CR-only line endings" in letter.message


# -- 13.3: files that hold no documents, unknown extensions ------------------------------------------------------

def test_13_3_explicit_unsupported_path_lists_the_supported_extensions(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"unsupported file type \.txt; supported extensions: .*\.warc\.gz.*"
                                         r"\.parquet"):
        match_shards([str(tmp_path / "notes.txt")])
    with pytest.raises(InputError, match=r"1 files with unsupported extensions \.txt\); supported extensions"):
        match_shards([str(tmp_path / "*.txt")])


def test_13_3_a_folder_named_without_its_slash_says_how_to_read_it(tmp_path):
    """`--input crawl` said "unsupported file type (none)" while `crawl/` reads the files in it."""
    (tmp_path / "crawl" / "sub").mkdir(parents=True)
    (tmp_path / "crawl" / "a.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "crawl" / "sub" / "b.jsonl").write_text('{"text": "b"}\n')
    folder = str(tmp_path / "crawl")
    with pytest.raises(InputError, match=re.escape(f"{folder} is a folder: give {folder}/ for the files in it, or "
                                                   f"{folder}/** for its whole tree")):
        match_shards([folder])
    assert [s.path for s in match_shards([folder + "/"])] == [folder + "/a.jsonl"]
    assert [s.path for s in match_shards([folder + "/**"])] == [folder + "/a.jsonl", folder + "/sub/b.jsonl"]


@pytest.mark.slow
def test_13_3_wat_files_unknown_extensions_and_unreadable_dates_are_counted_in_the_summary(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "crawl.warc.gz").write_bytes(member(wet(1)) + member(wet(2, "another page", date="someday")))
    (src / "crawl.warc.wat.gz").write_bytes(member(warc_record("metadata", b'{"Envelope": {}}', [
        ("WARC-Record-ID", "<urn:uuid:wat>")], "application/json")))
    (src / "readme.txt").write_text("not a crawl file")
    (src / "table.csv.gz").write_bytes(gzip.compress(b"a,b\n"))
    summary, counters = curate.run(["--input", str(src / "*"), "--output", str(tmp_path / "out"), "--no_score"])
    assert summary["dropped"] == {"non_document_file": 1, "unsupported_file": 2}
    assert summary["documents_out"] == 2 and summary["records_read"] == 5 and summary["reconciles"]
    assert summary["capture_date_unparsed"] == counters["capture_date_unparsed"] == 1
    assert counters["dropped_unsupported_file"] == 2 and counters["dropped_non_document_file"] == 1
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_jsonl(tmp_path / "out", "dropped")}
    assert rows["table.csv.gz"]["detail"].startswith("no reader for .csv.gz")
    assert rows["crawl.warc.wat.gz"]["reason"] == "non_document_file"


# -- splitting stays exact on damaged files ----------------------------------------------------------------------

def _damaged(seed: int, data: bytes) -> bytes:
    rng = random.Random(seed)  # a local, seeded generator: the same damage on every run
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(out))
        if rng.random() < 0.5:
            out[i] = rng.randrange(256)
        else:
            del out[i : i + rng.randint(1, 40)]
    return bytes(out)


def test_any_split_of_a_damaged_file_reads_each_record_once_and_says_the_same(tmp_path):
    members = b"".join(page(n) for n in range(6))
    plain = b"".join(wet(n) for n in range(6))
    key = lambda xs: sorted(repr(x.value) if isinstance(x, TaggedOutput) else repr((x.id, x.offset, x.text))
                            for x in xs)
    for seed in range(40):
        for name, data in (("d.warc.gz", members), ("d.warc", plain)):
            path = tmp_path / name
            path.write_bytes(_damaged(seed, data))
            whole = key(read_warc(path))
            for split in (7, 100):
                assert key(read_warc(path, split=split)) == whole, (seed, name, split)


class _TextLines(ShardReader):
    """A format written only for this test: one Document per line of a text file, through the reader base."""

    STAGE = "read_text"

    def process(self, shard: Shard, tracker=beam.DoFn.RestrictionParam(ByteRanges())):
        yield from self.read_shard(shard, tracker)

    def read(self, f, shard: Shard, tracker):
        if not tracker.try_claim(0):
            return
        for i, line in enumerate(f.read().decode().splitlines()):
            yield Document(f"{shard.path}:{i}", line, shard.path, i) if line else drop(
                f"{shard.path}:{i}", "empty_text", shard.path, i)
        tracker.try_claim(shard.size + 1)


def test_a_new_format_adds_only_its_parsing(tmp_path):
    """The reader base counts every output as one record read and turns a file that cannot be opened into one
    `read_error` dead letter: the toy reader above has no counter and no error handling of its own."""
    good = tmp_path / "a.txt"
    good.write_text("one\n\ntwo\n")
    shards = [Shard(str(good), good.stat().st_size, "text"), Shard(str(tmp_path / "gone.txt"), 10, "text")]
    p = beam.Pipeline(runner=FnApiRunner())
    _ = p | beam.Create(shards) | beam.ParDo(_TextLines(1 << 20)).with_outputs(DROPPED, DEAD_LETTERS,
                                                                                main=DOCUMENTS)
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    assert counters["records_read"] == 4  # two documents, one empty line, one unreadable file
    assert counters["dead_letter_read_error"] == 1 and counters["dropped_empty_text"] == 1


# -- hostile inputs, round 7 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("charset, body", [
    ("utf-7", b"+2AA- a page whose declared charset turns these bytes into a lone surrogate"),
    ("unicode_escape", b"\\ud800 a page whose declared charset turns an escape into a lone surrogate"),
    ("raw_unicode_escape", b"\\udfff a page whose declared charset turns an escape into a lone surrogate"),
    ("utf\x00-8", b"a page whose declared charset has a NUL byte in its name"),
    ("rot13", b"a page whose declared charset is no text encoding at all"),
])
def test_a_charset_no_web_page_may_declare_is_detected_instead(tmp_path, charset, body):
    """utf-7 and the escape codecs made lone surrogates (an extract_error from the HTML parser's UTF-8 encoding), a
    NUL in the name a ValueError: each cost a readable page. Such a charset is treated as unknown, as browsers do:
    the encoding is detected from the bytes. (A codec that refuses the bytes, punycode, stays an extract_error.)"""
    path = tmp_path / "charset.warc.gz"
    path.write_bytes(member(response("https://crafted.example/c", HTML % body, "c",
                                     headers=f"Content-Type: text/html; charset={charset}")) + member(wet(2)))
    out = read_warc(path)
    assert not dead(out) and [d.text for d in docs(out)][0] == body.decode()


def test_a_valid_parquet_footer_on_garbage_pages_is_a_read_error(tmp_path):
    """Pages that cannot be walked are damage, not a size over the read budget: `read_error`, naming the row
    group (it was an `over_read_budget` dead letter saying "unknown Thrift type")."""
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["some text", "more text"]}), good)
    data = good.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little") + 8
    path = tmp_path / "garbage.parquet"
    path.write_bytes(b"PAR1" + b"\xff" * (len(data) - footer - 4) + data[-footer:])
    letter, = dead(read_parquet(path))
    assert (letter.reason, letter.offset, letter.error_type) == ("read_error", 0, "PageHeaderError")
    assert letter.message.startswith("row group 0: ")


def test_a_foreign_records_own_metadata_is_kept_and_ids_that_are_not_strings_are_json(tmp_path):
    """A Dolma-style `metadata` object (no `offset`: not our own output) or an Arrow map column was dropped whole,
    losing every field a dataset keeps there; a boolean or object id became Python's repr (`True`, `{'a': 1}`)."""
    lines = [{"id": True, "text": "a text with a boolean id", "metadata": {"lang": "en", "score": 0.5}},
             {"id": {"a": 1}, "text": "a text with an object id", "metadata": {"lang": "de"}, "lang": "fr"},
             {"id": 5, "text": "a text with a number id", "metadata": [1, 2]}]
    path = tmp_path / "foreign.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    got = {d.id: d.metadata for d in docs(read_jsonl_file(path))}
    assert got == {"true": {"lang": "en", "score": "0.5"}, '{"a": 1}': {"lang": "fr"}, "5": {"metadata": "[1, 2]"}}
    table = pa.table({"id": ["m"], "text": ["a text with a map of metadata"],
                      "metadata": pa.array([[("lang", "en")]], pa.map_(pa.string(), pa.string()))})
    pq.write_table(table, tmp_path / "foreign.parquet")
    doc, = docs(read_parquet(tmp_path / "foreign.parquet"))
    assert doc.metadata == {"lang": "en"}
    table = pa.table({"id": pa.array([b"r\xc3\xa9f", b"\xff"], pa.binary()), "text": ["one", "two"],
                      "blob": pa.array([b"\x00\x01", None], pa.binary())})
    pq.write_table(table, tmp_path / "binary.parquet")
    assert [(d.id, d.metadata) for d in docs(read_parquet(tmp_path / "binary.parquet"))] == [
        ("réf", {"blob": "\x00\x01"}), ("\\xff", {})]  # not "b'\\xff'", Python's repr


@pytest.mark.parametrize("split", [0, 7, 300, 4096])
def test_nul_padding_after_the_last_gzip_member_is_no_record(tmp_path, split):
    """Tape blocks and preallocated files end in NUL bytes that gzip(1) ignores: they were one phantom record read
    and one gzip_error dead letter. Zeros followed by anything else are still damage."""
    path = tmp_path / "padded.warc.gz"
    path.write_bytes(page(1) + page(2) + b"\0" * 1000)
    out = read_warc(path, split=split)
    assert len(docs(out)) == 2 and not dead(out)
    path.write_bytes(page(1) + b"\0" * 1000 + b"junk")
    out = read_warc(path, split=split)
    assert len(docs(out)) == 1 and [x.reason for x in dead(out)] == ["gzip_error"]


def test_nul_padding_after_the_last_member_of_a_jsonl_gz_is_no_record(tmp_path):
    path = tmp_path / "padded.jsonl.gz"
    member_ = gzip.compress(b'{"id": "a", "text": "a line in a padded gzip file"}\n')
    path.write_bytes(member_ + b"\0" * (3 << 20))
    out = read_jsonl_file(path)
    assert [d.id for d in docs(out)] == ["a"] and not dead(out)
    path.write_bytes(member_ + b"\0" * 10 + b"junk")
    assert [x.reason for x in dead(read_jsonl_file(path))] == ["gzip_error"]
    path.write_bytes(b"\0" * 100)  # zeros alone are no gzip file at all
    assert [x.reason for x in dead(read_jsonl_file(path))] == ["gzip_error"]


def test_a_foreign_field_named_like_an_unparsed_date_is_not_counted_as_one(tmp_path):
    """`capture_date_unparsed` beside a readable date (a top-level field, or in the record's own metadata) made the
    summary count a document whose date was read fine."""
    from transforms.dates import has_unparsed_date

    lines = [{"id": "a", "text": "one", "created": "2024-01-01", "capture_date_unparsed": "x"},
             {"id": "b", "text": "two", "created": "2024-01-01", "metadata": {"capture_date_unparsed": "x"}},
             {"id": "c", "text": "three", "created": "garbage"}]
    path = tmp_path / "dates.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert {d.id: has_unparsed_date(d) for d in docs(read_jsonl_file(path))} == {"a": False, "b": False, "c": True}


def test_a_page_full_of_xmp_source_type_names_is_read_in_linear_work(tmp_path):
    """Every `Iptc4xmpExt:DigitalSourceType` made the signal regex rescan the rest of the page (quadratic: 120 KB
    took 16 s, this 420 KB page minutes, 16 MB days); the three real XMP forms are still read."""
    from transforms.io.signals import page_signals

    hostile = b"<html><body><p>" + b"Iptc4xmpExt:DigitalSourceType " * 14_000 + b"</p></body></html>"
    path = tmp_path / "xmp.warc.gz"
    path.write_bytes(member(response("https://crafted.example/xmp", hostile, "xmp")) + member(wet(2)))
    out = read_warc(path)
    assert len(docs(out)) == 2 and not dead(out)
    ai = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    for form in (f'<x:xmpmeta><rdf:Description Iptc4xmpExt:DigitalSourceType="{ai}"/></x:xmpmeta>',
                 f"<x:xmpmeta><Iptc4xmpExt:DigitalSourceType>{ai}</Iptc4xmpExt:DigitalSourceType></x:xmpmeta>",
                 f'<x:xmpmeta><Iptc4xmpExt:DigitalSourceType xml:lang="en"\n rdf:resource = "{ai}"/></x:xmpmeta>'):
        assert page_signals([], f"<html><head></head><body>{form}</body></html>")["digital_source_type"] == ai, form


def test_a_range_that_syncs_probes_no_further_than_its_own_end(tmp_path, monkeypatch):
    """Each gzip magic number is a candidate member that costs a decompression probe. A range starting mid-file
    searched to the file's end for its first member, so with bytes full of magic numbers every range probed the
    rest of the file (quadratic: 3 MB at 64 KiB ranges took minutes). Outputs are the same at any split."""
    from transforms.io import gzip_members

    path = tmp_path / "magic.warc.gz"
    path.write_bytes(page(1) + gzip_members.MAGIC * 30_000 + page(2))
    probes = []
    real = gzip_members.looks_like_member
    monkeypatch.setattr(gzip_members, "looks_like_member", lambda *a: probes.append(1) or real(*a))
    want = None
    for split in (0, 4096, 20_000):
        probes.clear()
        out = read_warc(path, split=split)
        got = ([d.url for d in docs(out)], [(x.offset, x.reason) for x in dead(out)])
        want = want or got
        assert got == want and len(got[0]) == 2 and len(got[1]) == 1
        assert len(probes) <= 2 * 30_000, (split, len(probes))  # each candidate about once, not once per range


def test_ranges_inside_one_long_jsonl_line_read_no_further_than_their_own_end(tmp_path, monkeypatch):
    """A range starting mid-line looked for the next line start to the end of the line, so every range inside a
    long line scanned the rest of it (quadratic: an 8 MB line at 4 KiB ranges read 8 GB). The outputs are the
    same at any split; the bytes read stay near the file's size (plus the head every range checks)."""
    import io

    from transforms.io import reader

    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"id": "a", "text": "short"}\n{"text": "' + b"x" * (2 << 20) + b'"}\n{"id": "b", "text": "b"}\n')
    read = [0]

    class Counting(io.FileIO):
        def read(self, size=-1):
            data = super().read(size)
            read[0] += len(data)
            return data

    monkeypatch.setattr(reader, "open_raw", lambda p: Counting(p, "rb"))
    for split in (0, 4096, 100_000):
        read[0] = 0
        out = read_jsonl_file(path, limit=1 << 20, split=split)
        assert [d.id for d in docs(out)] == ["a", "b"] and [x.reason for x in dropped(out)] == ["too_large"]
        ranges = path.stat().st_size // split + 1 if split else 1
        assert read[0] < 3 * path.stat().st_size + ranges * (1 << 16), (split, read[0])  # + each range's 64 KiB head


def test_compressed_or_binary_data_named_as_json_lines_is_one_dead_letter_at_any_split(tmp_path):
    """A gzip file named `.jsonl` was read line by line as binary: 1,339 `decode_error` dead letters (each counted
    as a record read) for a 30 KB file. Its magic bytes name what it is and the extension that reads it, in one
    dead letter at offset 0, at any split; a `.jsonl.gz` holding gzip again says so too."""
    import gzip

    import zstandard

    lines = "".join(json.dumps({"id": f"g{i}", "text": f"line {i} of the file"}) + "\n" for i in range(3000)).encode()
    files = {"gz.jsonl": (gzip.compress(lines), "gzip-compressed (magic bytes 1f 8b)", "rename it to end in .jsonl.gz"),
             "zst.jsonl": (zstandard.ZstdCompressor().compress(lines), "zstd-compressed (magic bytes 28 b5 2f fd)",
                           "rename it to end in .jsonl.zst"),
             "xz.json": (b"\xfd7zXZ\x00" + lines, "xz-compressed (magic bytes fd 37 7a 58 5a 00)", "decompress it"),
             "twice.jsonl.gz": (gzip.compress(gzip.compress(lines)), "gzip-compressed (magic bytes 1f 8b)",
                                "rename it to end in .jsonl.gz")}
    for name, (data, what, fix) in files.items():
        (tmp_path / name).write_bytes(data)
        for split in (0, 1000, 7):
            out = read_jsonl_file(tmp_path / name, split=split)
            assert [(d.reason, d.offset, d.message) for d in dead(out)] == [
                ("decode_error", 0, f"the file is {what}, not JSON Lines text: {fix}")] and len(out) == 1, name


def test_a_row_group_of_millions_of_short_rows_is_made_python_objects_a_slice_at_a_time(tmp_path):
    """A row group is bounded in bytes, not rows: 100,000 one-letter rows (a few KB of Parquet) were made 100,000
    dicts at once before the first Document left the reader (5 million: gigabytes for one unit of work)."""
    n = 100_000
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": pa.array(["x"] * n), "n": pa.array(range(n))}), path, row_group_size=n)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    outputs = _iter(ReadParquetFn(16 * MiB), _RowGroups(), path, "parquet")
    tracemalloc.start()
    try:
        first = next(outputs)
        held = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(first, Document) and first.text == "x"
    assert held < 8 * MiB, f"{held:,} bytes of Python objects held for the first of {n:,} rows"
    assert 1 + sum(1 for _ in outputs) == n


class Counted(PlainStream):
    """A plain stream that counts the bytes the reader looks at: linear-time tests bound work, never time."""
    looked = 0

    def peek(self, n):
        data = super().peek(n)
        Counted.looked += len(data)
        return data


def test_a_stretch_of_bad_warc_headers_is_read_in_linear_time(tmp_path):
    """Each `WARC/` line after a bad header was tried on its own, looking at up to 1 MiB again: a 60 KB file of
    short `WARC/` lines took 8 s, 1 MB half an hour. Every line is still one bad region, as before, found in one
    pass (the bytes the reader looks at stay a small multiple of the file)."""
    from transforms.io.warc import MAX_HEADER_BYTES, BadRegion, iter_records

    line = b"WARC/1.0\nX: y\n"
    ended = line * 4000 + b"\n\n"  # each line's header ends at the blank line, and none has a Content-Length
    endless = line * ((MAX_HEADER_BYTES + 30_000) // len(line))  # no header ends within 1 MiB
    for data in (ended + ended, endless):
        Counted.looked = 0
        out = list(iter_records(Counted(FileWindow(io.BytesIO(data))), MiB))
        assert all(isinstance(x, BadRegion) for x in out)
        starts = [m.start() for m in re.finditer(b"WARC/", data)]
        if data is endless:  # reading ends at the first line with less than 1 MiB after it: a header cut short
            starts = [p for p in starts if p + MAX_HEADER_BYTES <= len(data)] + [starts[-1]]
            assert out[-1].reason == "truncated" and out[-1].end is None
        assert len(out) == len(starts)  # one bad region per line, each up to the next line
        assert [x.start for x in out[:-1]] == starts[:-1] and [x.end for x in out[:-1]] == [x.start for x in out[1:]]
        assert Counted.looked < 40 * len(data) + 4 * MAX_HEADER_BYTES, Counted.looked


def test_records_longer_than_the_limit_that_lie_cost_no_restart_of_their_gzip_member():
    """A record over the limit is skipped, not held; when its Content-Length proved wrong, reading went back to
    its block by decompressing its gzip member again from the start: per record, so a member of such records cost
    quadratic time (a 2.4 KB .warc.gz, 9 s). It resumes from a checkpoint now; the outcomes are the same."""
    from transforms.io.gzip_members import MemberStream
    from transforms.io.warc import BadRegion, iter_records

    class CountedMember(MemberStream):
        produced = 0

        def _produce(self):
            out = super()._produce()
            CountedMember.produced += len(out)
            return out

    rec = b"WARC/1.0\nWARC-Type: response\nContent-Length: 9999999\n\n"
    data = rec * 4000 + b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 2\r\n\r\nok\r\n\r\n"
    out = list(iter_records(CountedMember(FileWindow(io.BytesIO(gzip.compress(data))), 0), 1000))
    # each bad region runs to the first WARC/ line after its block's start: the next record but one
    assert [x.start for x in out] == [i * len(rec) for i in range(0, 4000, 2)] + [4000 * len(rec)]
    assert all(isinstance(x, BadRegion) and x.reason == "warc_header_error" for x in out[:-1])
    assert out[-1].block == b"ok"
    assert CountedMember.produced < 3 * len(data), CountedMember.produced


def test_a_chunked_body_cut_short_keeps_what_came(tmp_path):
    """Crawlers that store bodies as sent (chunked) cut long records short (WARC-Truncated): such a body was an
    http_error dead letter, where an unchunked body cut short is read. What came is kept now."""
    words = b"words that were sent before the crawler stopped recording " * 4
    body = b"%x\r\n" % len(HTML % words) + HTML % words + b"\r\n" + b"400\r\n<p>and the rest was cut"
    cut = response("https://crafted.example/cut", body, "00000000-0000-0000-0000-0000000000c7",
                   headers="Content-Type: text/html\r\nTransfer-Encoding: chunked")
    garbage = response("https://crafted.example/garbage", b"not chunked at all", "00000000-0000-0000-0000-0000000000c8",
                       headers="Content-Type: text/html\r\nTransfer-Encoding: chunked")
    (tmp_path / "cut.warc.gz").write_bytes(member(cut) + member(garbage))
    out = read_warc(tmp_path / "cut.warc.gz")
    [doc] = docs(out)
    assert doc.id == "urn:uuid:00000000-0000-0000-0000-0000000000c7" and "before the crawler stopped" in doc.text
    assert "and the rest was cut" in doc.text
    assert [x.reason for x in dead(out)] == ["http_error"]  # a body that is no chunked data at all still is


def test_an_uncompressed_warc_named_gz_is_read_as_what_it_is(tmp_path):
    """Gzip named .warc was read by its bytes, but an uncompressed WARC named .warc.gz (gunzipped in place of its
    name) was one gzip_error dead letter for all its records. Read as plain now, at any split."""
    records = [gzip.decompress(page(i)) for i in range(1, 6)]
    (tmp_path / "plain.warc").write_bytes(b"".join(records))
    (tmp_path / "named.warc.gz").write_bytes(b"".join(records))
    want = [(d.id, d.offset, d.text) for d in docs(read_warc(tmp_path / "plain.warc"))]
    assert len(want) == 5
    for split in (0, 4096, 700):
        out = read_warc(tmp_path / "named.warc.gz", split=split)
        assert [(d.id, d.offset, d.text) for d in docs(out)] == want and len(out) == 5


def test_jsonl_compression_is_told_by_the_bytes(tmp_path):
    """JSON Lines text named .jsonl.gz or .jsonl.zst (decompressed in place of its name), or zstd named .gz, was one
    gzip_error / zstd_error dead letter for the whole file."""
    text = b'{"id": "a", "text": "first line"}\n{"id": "b", "text": "second line"}\n'
    for name, data in (("text.jsonl.gz", text), ("text.jsonl.zst", text),
                       ("zstd.jsonl.gz", zstandard.ZstdCompressor().compress(text)),
                       ("gzip.jsonl.zst", gzip.compress(text))):
        (tmp_path / name).write_bytes(data)
        out = read_jsonl_file(tmp_path / name)
        assert [(d.id, d.offset) for d in docs(out)] == [("a", 0), ("b", 34)] and len(out) == 2, name


def test_a_run_of_short_records_whose_lengths_lie_is_read_in_linear_time():
    """Each record claiming up to the limit copied what followed it (up to the limit) to learn its length was
    wrong, and the search for the next record copied 1 MiB more: 45-byte records claiming 10 MB each made a 1 MB
    file cost 0.5 s and 16 MB minutes. The boundary is checked before anything is copied; outcomes unchanged."""
    from transforms.io.warc import BadRegion, iter_records

    rec = b"WARC/1.0\nWARC-Type: response\nContent-Length: 900000\n\n"
    data = rec * 4000 + b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 2\r\n\r\nok\r\n\r\n"
    out = list(iter_records(Counted(FileWindow(io.BytesIO(data))), MiB))
    assert [x.start for x in out] == [i * len(rec) for i in range(0, 4000, 2)] + [4000 * len(rec)]
    assert all(isinstance(x, BadRegion) for x in out[:-1]) and out[-1].block == b"ok"
    assert Counted.looked < 100 * len(data), Counted.looked  # was 2,000 times the file

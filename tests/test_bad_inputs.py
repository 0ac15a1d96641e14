"""Every kind of bad input ends in a named drop or a dead letter, the run never crashes, and the books balance."""
from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline import curate
from pipeline.sample import warc_record
from tests.crafted import HTML, member, page, response
from tests.helpers import read_documents, read_jsonl
from transforms.document import Document, dolma_line

LIMIT = 1 << 20  # --max_document_bytes: "too large" needs only to be over the limit, not 50 MB
BIG = 2 * LIMIT


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    # gzip-level damage: a bad CRC in the second member, a file cut inside its last member
    crc = bytearray(page(2))
    crc[-8] ^= 0xFF
    (d / "crc.warc.gz").write_bytes(page(1) + bytes(crc) + page(3))
    cut = page(5)
    (d / "truncgz.warc.gz").write_bytes(page(4) + cut[: len(cut) // 2])
    # WARC-level damage: a record shorter than its Content-Length, a record without WARC-Type or Content-Length
    short = response("https://crafted.example/short", HTML % b"short", "00000000-0000-0000-0000-000000000099")
    (d / "truncrec.warc.gz").write_bytes(page(6) + member(short[:-200]))
    no_headers = b"WARC/1.0\r\nWARC-Record-ID: <urn:uuid:x>\r\n\r\nbody\r\n\r\n"
    (d / "noheaders.warc.gz").write_bytes(member(no_headers) + page(7))
    # content-level: binary payload, empty page, a page over the limit, invalid UTF-8 in WET, garbage that is not gzip
    binary = response("https://crafted.example/bin", bytes(range(256)) * 64, "00000000-0000-0000-0000-0000000000b1")
    empty = response("https://crafted.example/empty", b"<html><body> </body></html>", "00000000-0000-0000-0000-0000000000e1")
    huge = response("https://crafted.example/huge", HTML % (b"word " * (BIG // 5)), "00000000-0000-0000-0000-0000000000f1")
    (d / "content.warc.gz").write_bytes(member(binary) + member(empty) + member(huge) + page(8))
    wet = warc_record("conversion", b"caf\xe9", [("WARC-Record-ID", "<urn:uuid:wet-bad>"),
                                                ("WARC-Date", "2024-01-01T00:00:00Z")], "text/plain")
    (d / "bad.warc.wet.gz").write_bytes(member(wet))
    (d / "garbage.warc.gz").write_bytes(b"this is not gzip at all" * 10 + page(9))
    # HTTP-level: a status line that is not HTTP, a charset whose codec cannot decode the page, then a good page
    not_http = warc_record("response", b"HTTP/1.1 abc OK\r\n\r\n<p>x</p>",
                           [("WARC-Target-URI", "https://crafted.example/nothttp"),
                            ("WARC-Record-ID", "<urn:uuid:not-http>")], "application/http; msgtype=response")
    puny = response("https://crafted.example/puny", HTML % b"text", "00000000-0000-0000-0000-0000000000c1",
                    headers="Content-Type: text/html; charset=punycode")
    (d / "http.warc.gz").write_bytes(member(not_http) + member(puny) + page(10))
    # JSONL: malformed lines, non-object, missing text, invalid UTF-8, a line over the limit, blank lines; gz cut
    # short; zst
    good = Document(id="j1", text="a good json line", source="x", offset=0)
    lines = [dolma_line(good).encode(), b"{not json", b"[1, 2]", b'{"id": "nt"}', b'{"text": "\xff\xfe"}', b"",
             json.dumps({"text": "x" * BIG}).encode(), json.dumps({"text": "  "}).encode(),
             json.dumps({"id": "j2", "text": "plain record"}).encode()]
    (d / "lines.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    gz = gzip.compress(b"\n".join(json.dumps({"id": f"g{i}", "text": f"gz line {i}"}).encode() for i in range(50)))
    (d / "cut.jsonl.gz").write_bytes(gz[: len(gz) - 30])
    (d / "ok.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "z1", "text": "zstd line"}\n'))
    (d / "broken.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 40)
    (d / "junk.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "z2", "text": "kept"}\n')
                                       + b"JUNK that is not a zstd frame")
    # Parquet: right schema, wrong schema, not Parquet at all
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["parquet row", ""]}), d / "good.parquet")
    pq.write_table(pa.table({"id": ["w1"], "text": [1]}), d / "wrong.parquet")
    (d / "notparquet.parquet").write_bytes(b"PAR1 definitely not parquet")
    out = tmp_path_factory.mktemp("bad_out")
    summary, counters = curate.run(["--input", str(d / "*"), "--output", str(out), "--overwrite",
                                     f"--max_document_bytes={LIMIT}", "--no_score"])  # readers are under test
    return d, out, summary, counters


def _dead(out, name):
    return sorted((r["reason"], r["offset"]) for r in read_jsonl(out, "dead_letters") if r["source"].endswith(name))


def _drops(out, name):
    return sorted(r["reason"] for r in read_jsonl(out, "dropped") if r["source"].endswith(name))


def _docs(out, name):
    return sorted(d.url or d.id for d in read_documents(out) if d.source.endswith(name))


def test_summary_reconciles_and_counters_carry_the_same_numbers(bad_run):
    _, _, s, c = bad_run
    assert s["reconciles"] and s["records_read"] == s["documents_out"] + sum(s["dropped"].values()) + sum(
        s["dead_letters"].values())
    assert c["records_read"] == s["records_read"]
    assert c["documents_out"] == s["documents_out"]
    for reason, n in s["dropped"].items():
        assert c[f"dropped_{reason}"] == n
    for reason, n in s["dead_letters"].items():
        assert c[f"dead_letter_{reason}"] == n


def test_bad_crc_costs_one_member_and_reading_resumes(bad_run):
    _, out, _, _ = bad_run
    assert _dead(out, "crc.warc.gz") == [("gzip_error", len(page(1)))]
    assert _docs(out, "crc.warc.gz") == ["https://crafted.example/1", "https://crafted.example/3"]


def test_truncated_gzip_keeps_what_came_before(bad_run):
    _, out, _, _ = bad_run
    assert _dead(out, "truncgz.warc.gz") == [("truncated", len(page(4)))]
    assert _docs(out, "truncgz.warc.gz") == ["https://crafted.example/4"]


def test_truncated_warc_record_and_missing_headers(bad_run):
    _, out, _, _ = bad_run
    assert [r for r, _ in _dead(out, "truncrec.warc.gz")] == ["truncated"]
    assert _dead(out, "noheaders.warc.gz") == [("warc_header_error", 0)]
    assert _docs(out, "noheaders.warc.gz") == ["https://crafted.example/7"]


def test_binary_empty_and_huge_pages_are_named_drops(bad_run):
    _, out, _, _ = bad_run
    assert _drops(out, "content.warc.gz") == ["binary_content", "empty_text", "too_large"]
    assert _docs(out, "content.warc.gz") == ["https://crafted.example/8"]


def test_invalid_utf8_in_wet_and_non_gzip_garbage(bad_run):
    _, out, _, _ = bad_run
    assert _dead(out, "bad.warc.wet.gz") == [("decode_error", 0)]
    assert _dead(out, "garbage.warc.gz") == [("gzip_error", 0)]
    assert _docs(out, "garbage.warc.gz") == ["https://crafted.example/9"]


def test_unparseable_http_and_failed_extraction_are_dead_letters(bad_run):
    _, out, _, _ = bad_run
    (extract, at), http = _dead(out, "http.warc.gz")
    assert http == ("http_error", 0) and extract == "extract_error" and at > 0  # the second gzip member
    assert _docs(out, "http.warc.gz") == ["https://crafted.example/10"]


def test_jsonl_bad_lines(bad_run):
    _, out, _, _ = bad_run
    assert [r for r, _ in _dead(out, "lines.jsonl")] == ["decode_error", "json_error", "schema_error", "schema_error"]
    assert _drops(out, "lines.jsonl") == ["empty_text", "too_large"]
    assert sorted(d.id for d in read_documents(out) if d.source.endswith("lines.jsonl")) == ["j2"]
    assert any(d.id == "j1" and d.source == "x" for d in read_documents(out))  # a Dolma line keeps its lineage


def test_compressed_jsonl(bad_run):
    _, out, _, _ = bad_run
    kept = [d for d in read_documents(out) if d.source.endswith("cut.jsonl.gz")]
    assert 0 < len(kept) < 50
    assert [r for r, _ in _dead(out, "cut.jsonl.gz")] == ["truncated"]
    assert [d.id for d in read_documents(out) if d.source.endswith("ok.jsonl.zst")] == ["z1"]
    assert _dead(out, "broken.jsonl.zst") == [("truncated", 0)]  # a frame header, then nothing
    # bytes after a frame that start none: the frame's line is kept, the junk is one dead letter after it
    assert [d.id for d in read_documents(out) if d.source.endswith("junk.jsonl.zst")] == ["z2"]
    assert _dead(out, "junk.jsonl.zst") == [("zstd_error", len(b'{"id": "z2", "text": "kept"}\n'))]


def test_parquet_schema_and_corruption(bad_run):
    _, out, _, _ = bad_run
    assert [d.id for d in read_documents(out) if d.source.endswith("good.parquet")] == ["p1"]
    assert _drops(out, "good.parquet") == ["empty_text"]
    assert _dead(out, "wrong.parquet") == [("schema_error", 0)]
    assert _dead(out, "notparquet.parquet") == [("read_error", 0)]


def test_dead_letters_name_file_offset_and_error(bad_run):
    _, out, _, _ = bad_run
    for row in read_jsonl(out, "dead_letters"):
        assert row["source"] and isinstance(row["offset"], int) and row["error_type"] and row["message"]


def test_a_glob_without_a_folder_matches_in_the_working_directory(tmp_path, monkeypatch):
    """Beam's local file system matches nothing for `*.jsonl`; users mean the working directory."""
    from transforms.io.files import match_shards
    from transforms.score.reference import match_reference

    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "b.jsonl").write_text('{"text": "y"}\n')
    monkeypatch.chdir(tmp_path)
    assert [s.path for s in match_shards(["*.jsonl"])] == ["a.jsonl", "b.jsonl"]
    assert match_reference(["?.jsonl"]) == ["a.jsonl", "b.jsonl"]



def test_a_file_whose_name_holds_brackets_is_found_by_its_name(tmp_path):
    """`a[1].jsonl` is a glob character class that matches `a1.jsonl`, not the file: it was "no crawl shards
    match" for a file that exists. A pattern that matches nothing is tried as the literal name."""
    from transforms.io.files import match_shards

    (tmp_path / "a[1].jsonl").write_text('{"text": "x"}\n')
    assert [s.path for s in match_shards([str(tmp_path / "a[1].jsonl")])] == [str(tmp_path / "a[1].jsonl")]
    (tmp_path / "a1.jsonl").write_text('{"text": "y"}\n')  # a real match of the class still wins
    assert [s.path for s in match_shards([str(tmp_path / "a[1].jsonl")])] == [str(tmp_path / "a1.jsonl")]

def test_a_file_matched_under_several_names_is_one_shard(tmp_path, monkeypatch):
    """`d/a.jsonl`, `./d/a.jsonl`, `d/../d/a.jsonl`, `d//a.jsonl` and a symlink name one file: read once, under
    the smallest name, whatever the order of the patterns."""
    from transforms.io.files import match_shards

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "link").symlink_to(tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    patterns = ["./d/*.jsonl", "d/../d/a.jsonl", "d//a.jsonl", "link/a.jsonl", "d/a.jsonl", str(tmp_path / "d/a.jsonl")]
    assert [s.path for s in match_shards(patterns)] == [s.path for s in match_shards(patterns[::-1])] == ["./d/a.jsonl"]
    assert [s.path for s in match_shards(patterns[1:])] == [str(tmp_path / "d/a.jsonl")]


def test_a_file_name_that_is_not_utf8_is_one_line_at_launch(tmp_path, capsys):
    """`café.jsonl` saved under Latin-1: its name reached the writers as a lone surrogate and failed the whole run
    (UnicodeEncodeError, exit 1). Every output names the file it read, so it is refused before anything runs."""
    from pipeline.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ok.jsonl").write_text('{"text": "fine"}\n')
    with open(bytes(tmp_path / "in") + b"/caf\xe9.jsonl", "wb") as f:
        f.write(b'{"text": "fine too"}\n')
    for args in (["--no_score", "--input"], ["--input", str(tmp_path / "in" / "ok.jsonl"), "--human_reference"]):
        assert main(["curate", *args, str(tmp_path / "in" / "*"), "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "caf\\xe9.jsonl': the file name is not valid UTF-8" in err, err
    assert not (tmp_path / "out").exists()


def _mutate(rng, data: bytes) -> bytes:
    """One random damage of the kinds a broken crawler, disk or transfer leaves: cut, flipped bytes, inserted
    junk, a repeated or missing span, absurd header values, the whole file twice."""
    b, kind = bytearray(data), rng.randrange(7)
    i = rng.randrange(len(b))
    j = min(len(b), i + rng.randrange(1, 20000))
    if kind == 0:
        return bytes(b[:i])
    if kind == 1:
        for _ in range(rng.choice([1, 3, 20, 200])):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:
        return bytes(b[:i] + rng.randbytes(rng.randrange(1, 5000)) + b[i:])
    if kind == 3:
        return bytes(b[:j] + b[i:j] + b[j:])
    if kind == 4:
        return bytes(b[:i] + b[j:])
    if kind == 5:
        s = bytes(b)
        for key in (b"Content-Length: ", b"WARC-Date: ", b"Content-Type: "):
            at = s.find(key, rng.randrange(len(s)))
            if at >= 0:
                end = s.find(b"\r\n", at)
                value = rng.choice([b"-5", b"99999999999999999999", b"abc", b"", b"\x00\xff", b"2024-13-45T99:99:99Z",
                                    b"text/html; charset=\xff\xfe"])
                s = s[:at + len(key)] + value + s[end:]
        return s
    return bytes(b) * 2


@pytest.mark.slow
def test_mutated_real_shards_lose_nothing_and_kill_nothing(webcrawl_dir, tmp_path):
    """Seeded damage to the real WARC / WET / WAT fixtures and to JSONL, Parquet, gzip and zstd files, inside the
    compression and outside it, read in 4 KiB splits: the run completes, and every record read is in exactly one
    place (a document, a named drop or a dead letter) with the counters agreeing."""
    import random

    rng = random.Random(20261130)
    lines = b"".join(json.dumps({"id": f"j{i}", "text": f"some text number {i} " * 20, "url": f"https://x.example/{i}",
                                 "created": "2021-05-01"}).encode() + b"\n" for i in range(30))
    table = pa.table({"id": [f"p{i}" for i in range(30)], "text": [f"parquet text {i} " * 10 for i in range(30)]})
    pq.write_table(table, tmp_path / "seed.parquet", row_group_size=7)
    seeds = [(p.name, p.read_bytes()) for p in sorted(webcrawl_dir.glob("*.gz")) if p.stat().st_size < 300_000]
    seeds += [("x.jsonl", lines), ("x.parquet", (tmp_path / "seed.parquet").read_bytes()),
              ("x.jsonl.zst", zstandard.ZstdCompressor().compress(lines)), ("x.jsonl.gz", gzip.compress(lines, mtime=0))]
    src = tmp_path / "in"
    src.mkdir()
    for i in range(28):
        name, data = seeds[i % len(seeds)]
        if name.endswith(".gz") and rng.random() < 0.6:
            data = gzip.compress(_mutate(rng, gzip.decompress(data)), mtime=0)
        elif name.endswith(".zst") and rng.random() < 0.5:
            plain = zstandard.ZstdDecompressor().decompress(data)
            data = zstandard.ZstdCompressor().compress(_mutate(rng, plain))
        else:
            data = _mutate(rng, data)
        (src / f"m{i:02d}_{name}").write_bytes(data)
    out = tmp_path / "out"
    s, c = curate.run(["--input", str(src / "*"), "--output", str(out), "--no_score", "--split_bytes=4096"])
    assert s["reconciles"] and s["records_read"] > 28
    assert s["records_read"] == s["documents_out"] + sum(s["dropped"].values()) + sum(s["dead_letters"].values())
    assert (c["records_read"], c["documents_out"]) == (s["records_read"], s["documents_out"])
    assert {r: c[f"dead_letter_{r}"] for r in s["dead_letters"]} == s["dead_letters"]
    places = ([(d.source, d.offset) for d in read_documents(out)]
              + [(r["source"], r["offset"]) for part in ("dropped", "dead_letters") for r in read_jsonl(out, part)])
    assert len(places) == len(set(places)) == s["records_read"]
    assert {p for p, _ in places} <= {str(f) for f in src.iterdir()}
    assert s["dead_letters"]  # the damage was real: some records could not be read

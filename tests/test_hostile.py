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


def _padded(n: int, length: int) -> bytes:
    """The zigzag varint of `n` stretched to `length` bytes (non-canonical, which Thrift readers accept)."""
    short = _zigzag(n)
    return bytes(b | 0x80 for b in short) + b"\x80" * (length - len(short) - 1) + b"\x00"


def _lie_in_footer(data: bytes, true: int, claimed: int) -> bytes:
    """Every footer field that says `true` bytes says `claimed` instead."""
    old = _zigzag(true)
    new = _padded(claimed, len(old))
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    footer = data[start:-8]
    assert footer.count(old) >= 1
    return data[:start] + footer.replace(old, new) + data[-8:]


@pytest.fixture(scope="module")
def parquet_bombs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bombs")
    rows = 4
    text = "a" * (1 << 20)  # 4 rows of 1 MiB: 4 MiB decompressed against a budget of 4 x (16 + 64) KiB + 1 MiB
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
    # the page header lies too, claiming 1,000 bytes: Arrow decompresses into what the header says, and fails
    column = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(1)
    start, _ = chunk_range(column)
    header, _ = _page_header(data[start:start + 1024])
    at = data.index(_zigzag(header["uncompressed"]), start)
    small = bytearray(data)
    small[at:at + len(_zigzag(header["uncompressed"]))] = _padded(1000, len(_zigzag(header["uncompressed"])))
    (d / "header_lies.parquet").write_bytes(_lie_in_footer(bytes(small), size, 2000))
    # a dictionary bomb: one 256 KiB string referenced by 1,000 rows decodes to 256 MiB from a few KiB
    many, text = 1000, "a" * (256 << 10)
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


def test_a_page_header_that_lies_small_fails_in_arrow_not_past_it(parquet_bombs):
    _, out, _, _ = parquet_bombs
    (reason, offset, message), = _dead(out, "header_lies.parquet")
    assert (reason, offset) == ("read_error", 0) and "Corrupt brotli compressed data" in message


def test_a_dictionary_bomb_is_measured_without_expanding_it(parquet_bombs):
    _, out, _, _ = parquet_bombs
    (reason, offset, message), = _dead(out, "dictionary.parquet")
    assert (reason, offset) == ("over_read_budget", 0) and "dictionaries expand to 262,1" in message


def test_a_dictionary_that_fits_is_read(parquet_bombs):
    d, out, _, _ = parquet_bombs
    with open(d / "fits.parquet", "rb") as f:  # the bound alone would refuse it: the exact measure admits it
        size = (d / "fits.parquet").stat().st_size
        why, exact = oversize(pq.ParquetFile(f), f, 0, row_group_budget(1000, LIMIT), size)
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


def _flip_a_byte(path) -> None:
    """Changes the file's bytes and keeps its size: what a size check cannot see."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _cli(capsys, *argv) -> tuple[int, list[str]]:
    from pipeline.cli import main

    capsys.readouterr()
    status = main(list(argv))
    return status, capsys.readouterr().err.strip().splitlines()


def _jsonl(path, n: int, tag: str) -> None:
    import json

    path.write_text("".join(json.dumps({"id": f"{tag}{i}", "text": f"document {tag} number {i} " + "words " * i})
                            + "\n" for i in range(n)))


def test_inspect_refuses_a_provenance_file_changed_after_the_commit(tmp_path, capsys):
    _jsonl(tmp_path / "in.jsonl", 5, "d")
    out = tmp_path / "cur"
    curate.run(["--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--no_score"])
    assert _cli(capsys, "inspect", "d1", "--output", str(out))[0] == 0
    shard, = (out / "provenance").glob("*.parquet")
    _flip_a_byte(shard)
    status, err = _cli(capsys, "inspect", "d1", "--output", str(out))
    assert status == 2 and len(err) == 1 and "changed after its output was committed" in err[0]


@pytest.mark.slow
def test_mix_refuses_an_input_changed_after_its_commit(tmp_path, capsys):
    import yaml

    from transforms.document import Document, to_table
    from transforms.io.write import parquet_bytes

    raw = tmp_path / "raw"
    raw.mkdir()
    docs = [Document(id=f"r{i}", text=" ".join(["word"] * (20 + i)), source="r.parquet", offset=i, p_ai=0.1,
                     provenance={"declared_ai": False, "tdm_reservation": None, "robots_noai": False})
            for i in range(20)]
    (raw / "part-0.parquet").write_bytes(parquet_bytes(to_table(docs)))

    def mix(inputs: str, out: str):
        cfg = {"seed": 1, "target_tokens": 200, "max_synthetic_fraction": "0.5",
               "synthetic": {"rule": "threshold", "threshold": 0.5},
               "sources": [{"name": "a", "inputs": [inputs], "weight": 1}]}
        (tmp_path / f"{out}.yaml").write_text(yaml.safe_dump(cfg))
        return _cli(capsys, "mix", "--config", str(tmp_path / f"{out}.yaml"), "--output", str(tmp_path / out))

    first = mix(str(raw / "*.parquet"), "first")
    assert first[0] == 0, first
    second = mix(str(tmp_path / "first" / "train" / "*.parquet"), "second")
    assert second[0] == 0, second  # a complete output reads
    train, = (tmp_path / "first" / "train").glob("*.parquet")
    _flip_a_byte(train)
    status, err = mix(str(tmp_path / "first" / "train" / "*.parquet"), "third")
    assert status == 2 and len(err) == 1 and "changed after its output was committed" in err[0], err
    assert not (tmp_path / "third" / "COMPLETE.json").exists()


def _zero(path):
    path.write_bytes(bytes(path.stat().st_size))


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_flip_a_byte, _zero])
def test_refresh_refuses_an_index_segment_changed_after_its_commit(tmp_path, capsys, damage):
    # a segment Arrow cannot read at all (zeroed, same size) failed the run with ArrowInvalid (exit 1) when the
    # reading came before the hashing
    _jsonl(tmp_path / "a.jsonl", 5, "a")
    _jsonl(tmp_path / "b.jsonl", 5, "b")
    index = tmp_path / "index"
    assert _cli(capsys, "refresh", "--input", str(tmp_path / "a.jsonl"), "--index", str(index), "--output",
                str(tmp_path / "r1"), "--no_score")[0] == 0
    segment = sorted((index / "segments").glob("*/exact-*.parquet"))[0]
    damage(segment)
    status, err = _cli(capsys, "refresh", "--input", str(tmp_path / "b.jsonl"), "--index", str(index), "--output",
                       str(tmp_path / "r2"), "--no_score")
    assert status == 2 and len(err) == 1 and "changed after its output was committed" in err[0], err
    assert not (tmp_path / "r2" / "COMPLETE.json").exists()


def _special_files(tmp_path):
    import os
    import shutil

    from transforms.score.model import DEFAULT_MODEL_DIR

    os.mkfifo(tmp_path / "fifo.yaml")
    os.mkfifo(tmp_path / "fifo.jsonl")
    os.mkfifo(tmp_path / "fifo.jsonl.gz")
    os.symlink("/dev/zero", tmp_path / "zero.jsonl")
    os.symlink(tmp_path / "loop.jsonl", tmp_path / "loop.jsonl")
    os.symlink(tmp_path / "missing.jsonl", tmp_path / "gone.jsonl")
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(os.path.join(DEFAULT_MODEL_DIR, "model_card.json"), model)
    os.mkfifo(model / "model.ftz")
    (tmp_path / "index" / "generations").mkdir(parents=True)
    os.mkfifo(tmp_path / "index" / "CURRENT.json")
    _jsonl(tmp_path / "in.jsonl", 3, "s")


@pytest.mark.parametrize("argv, message", [
    (["mix", "--config", "fifo.yaml", "--output", "o"], "fifo.yaml is a named pipe (FIFO), not a regular file"),
    (["mix", "--config", "/dev/zero", "--output", "o"], "/dev/zero is a device, not a regular file"),
    (["mix", "--config", ".", "--output", "o"], ". is a folder, not a regular file"),
    (["curate", "--input", "fifo.jsonl", "--output", "o"], "fifo.jsonl is a named pipe (FIFO)"),
    (["curate", "--input", "*.jsonl", "--output", "o"], "not a regular file (reading it could block or never end)"),
    (["curate", "--input", "zero.jsonl", "--output", "o"], "zero.jsonl is a device, not a regular file"),
    (["curate", "--input", "loop.jsonl", "--output", "o"], "loop.jsonl is a symlink loop; synthcap reads regular"),
    # Beam's match leaves out a broken link, so a glob over a crawl skipped it unsaid
    (["curate", "--input", "[ig]*.jsonl", "--output", "o"], "gone.jsonl is a symbolic link to a missing file"),
    (["curate", "--input", "gone.jsonl", "--output", "o"], "gone.jsonl is a symbolic link to a missing file"),
    (["curate", "--input", "in.jsonl", "--output", "o", "--detector_model", "model"], "no readable model.ftz"),
    (["curate", "--input", "in.jsonl", "--output", "o", "--human_reference", "fifo.jsonl"], "named pipe"),
    (["refresh", "--input", "in.jsonl", "--index", "index", "--output", "o"], "CURRENT.json is a named pipe"),
    (["train-detector", "--data", "fifo.jsonl.gz", "--out", "m"], "fifo.jsonl.gz is a named pipe (FIFO)"),
])
def test_special_files_in_file_flags_are_refused_in_one_line_before_anything_is_claimed(tmp_path, argv, message):
    import subprocess
    import sys

    _special_files(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and message in err[0], proc.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize("flags, message", [
    (["--runner", "DataflowRunner"], "--runner DataflowRunner needs --project, --region, --temp_location"),
    (["--runner", "DataflowRunner", "--project", "p", "--region", "us-central1"], "needs --temp_location"),
    (["--runner", "DataflowRunner", "--project", "p", "--region", "r", "--temp_location", "/tmp/t"],
     "--temp_location /tmp/t: Dataflow needs a gs:// path"),
])
def test_dataflow_without_its_flags_is_refused_offline_before_the_output_is_claimed(tmp_path, capsys, flags,
                                                                                       message):
    _jsonl(tmp_path / "in.jsonl", 2, "f")
    for argv in (["curate", "--input", str(tmp_path / "in.jsonl")], ["mix", "--config", str(tmp_path / "m.yaml")]):
        status, err = _cli(capsys, *argv, "--output", str(tmp_path / "o"), *flags)
        assert status == 2 and len(err) == 1 and message in err[0], err
        assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_records_sharing_id_source_and_offset_get_one_outcome_whatever_the_file_order(tmp_path):
    """Dolma lines carry their own source and offset, so lines of different files can share (id, source, offset):
    their ranks differ by text, the near duplicate is found (not taken for the same node) and the survivor does
    not depend on which file is read first."""
    from tests.helpers import summary, tree_bytes
    from transforms.document import Document, dolma_line

    base = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat by the door " * 3
    texts = [base + "alpha", base + "beta", base + "Alpha"]  # near duplicates; the first and last exactly so
    outs = []
    for n, order in enumerate((texts, texts[::-1], texts[1:] + texts[:1])):
        d = tmp_path / f"in{n}"
        d.mkdir()
        for i, text in enumerate(order):
            line = dolma_line(Document(id="same", text=text, source="crawl.warc.gz", offset=7,
                                       capture_date="2024-01-01T00:00:00Z"))
            (d / f"{i}.jsonl").write_text(line + "\n")
        out = tmp_path / f"out{n}"
        curate.run(["--input", str(d / "*.jsonl"), "--output", str(out), "--no_score"])
        s = summary(out)
        assert s["records_read"] == 3 and s["documents_out"] == 1
        assert s["dropped"] == {"duplicate_exact": 1, "duplicate_near": 1}
        outs.append((tree_bytes(out, "documents"), tree_bytes(out, "duplicates")))
    assert outs[0] == outs[1] == outs[2]


def test_utf16_and_utf32_jsonl_are_one_dead_letter_per_file_at_any_split(tmp_path):
    import gzip
    import json

    import zstandard

    lines = "".join(json.dumps({"id": f"u{i}", "text": f"line {i} café"}, ensure_ascii=False) + "\n"
                    for i in range(2000)).encode("utf-8")
    text = lines.decode("utf-8")
    (tmp_path / "le.jsonl").write_bytes(text.encode("utf-16"))  # with its byte-order mark, ~100 ranges
    (tmp_path / "be.jsonl").write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    (tmp_path / "nobom.jsonl").write_bytes(text.encode("utf-16-le"))
    (tmp_path / "wide.jsonl").write_bytes(text.encode("utf-32"))
    (tmp_path / "le.jsonl.gz").write_bytes(gzip.compress(text.encode("utf-16")))
    (tmp_path / "be.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode("utf-16-be")))
    (tmp_path / "bom8.jsonl").write_bytes(b"\xef\xbb\xbf" + lines)  # UTF-8 with a BOM is read
    # a zeroed region at the start (a crash while preallocating) is not taken for UTF-16: the lines after it read
    (tmp_path / "zeroed.jsonl").write_bytes(b"\x00" * 20 + b"\n" + b'{"id": "z", "text": "after the zeros"}\n')
    out = tmp_path / "out"
    s, c = curate.run(["--input", str(tmp_path / "*.jsonl*"), "--output", str(out), "--no_score", "--no_exact_dedup",
                       "--no_near_dedup", "--split_bytes", "4096"])
    dead = sorted((r["source"].rsplit("/", 1)[-1], r["reason"], r["offset"], r["message"].split(";")[0])
                  for r in read_jsonl(out, "dead_letters") if not r["source"].endswith("zeroed.jsonl"))
    assert [(r["offset"]) for r in read_jsonl(out, "dead_letters") if r["source"].endswith("zeroed.jsonl")] == [0]
    assert [d.id for d in read_documents(out) if d.source.endswith("zeroed.jsonl")] == ["z"]
    assert dead == [("be.jsonl", "decode_error", 0, "the file is UTF-16BE (byte-order mark fe ff) text"),
                    ("be.jsonl.zst", "decode_error", 0, "the file is UTF-16BE (no byte-order mark) text"),
                    ("le.jsonl", "decode_error", 0, "the file is UTF-16LE (byte-order mark ff fe) text"),
                    ("le.jsonl.gz", "decode_error", 0, "the file is UTF-16LE (byte-order mark ff fe) text"),
                    ("nobom.jsonl", "decode_error", 0, "the file is UTF-16LE (no byte-order mark) text"),
                    ("wide.jsonl", "decode_error", 0, "the file is UTF-32LE (byte-order mark ff fe 00 00) text")]
    assert s["documents_out"] == 2001 and s["records_read"] == 2008 and s["reconciles"]
    assert c["records_read"] == 2008


@pytest.mark.parametrize("argv, message", [
    (["curate", "--input", "gs://synthcap-test/missing/*.jsonl", "--output", "{o}"], "no crawl shards match gs://"),
    (["curate", "--input", "gs://no-such-bucket/a.jsonl", "--output", "{o}"], "no crawl shards match gs://"),
    (["mix", "--config", "gs://synthcap-test/missing.yaml", "--output", "{o}"], "cannot read gs://"),
    (["curate", "--input", "{t}/in.jsonl", "--output", "{o}", "--detector_model", "gs://synthcap-test/nomodel"],
     "unreadable model_card.json"),
    (["curate", "--input", "{t}/in.jsonl", "--output", "{o}", "--human_reference", "gs://synthcap-test/r/*.parquet"],
     "--human_reference: no files match gs://"),
    (["inspect", "x", "--output", "gs://synthcap-test/nothing"], "is not a synthcap output"),
    (["curate", "--input", "{t}/in.jsonl", "--output", "gs://no-such-bucket/out", "--no_score"],
     "cannot write to output folder gs://no-such-bucket/out"),
])
def test_missing_gs_objects_are_one_line_user_errors(gcs_emulator, tmp_path, capsys, argv, message):
    _jsonl(tmp_path / "in.jsonl", 2, "g")
    status, err = _cli(capsys, *[a.format(o=str(tmp_path / "o"), t=str(tmp_path)) for a in argv])
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_curated_file_passes_the_bound_without_the_exact_measure(tmp_path):
    """Unique urls fill a dictionary page referenced once per row: the bound uses the longest entry, not the page
    size, so an ordinary curated file is read directly (no second, dictionary-keeping read)."""
    from transforms.document import Document, to_table
    from transforms.io.write import parquet_bytes

    docs = [Document(id=f"id-{i:05d}", text=f"text number {i} " * 50, source="s.warc.gz", offset=i,
                     url=f"https://example.com/page/{i}", domain="example.com") for i in range(3000)]
    path = tmp_path / "documents.parquet"
    path.write_bytes(parquet_bytes(to_table(docs)))
    with open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        assert oversize(pf, f, 0, row_group_budget(3000, 16 << 10), path.stat().st_size) == (None, False)


def test_many_tiny_row_groups_are_few_units_of_work(tmp_path):
    """Each unit of work parses the file's footer, which grows with its row groups: one row group per unit made
    a 7 MB file of 20,000 one-row groups cost 20,000 footer parses. Units now span about --split_bytes."""
    from transforms.io.files import match_shards
    from transforms.io.parquet import _RowGroups, _units

    n = 3000
    path = tmp_path / "many.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(n)], "text": [f"row number {i}" for i in range(n)]}),
                   path, row_group_size=1)
    shard, = match_shards([str(path)])
    shard = shard._replace(split_bytes=4096)
    provider = _RowGroups()
    units = list(provider.split(shard, provider.initial_restriction(shard)))
    assert len(units) <= -(-shard.size // 4096) < n and units[0].start == 0 and units[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(units, units[1:]))
    again = _units(shard)
    assert [(s, e) for _, _, s, e in again] == [(u.start, u.stop) for u in units]
    out = tmp_path / "out"
    s, _ = curate.run(["--input", str(path), "--output", str(out), "--no_score", "--no_exact_dedup",
                       "--no_near_dedup", "--split_bytes", "4096"])
    assert s["records_read"] == s["documents_out"] == n
    assert sorted(d.offset for d in read_documents(out)) == list(range(n))


def test_train_detector_data_with_an_endless_line_or_deep_nesting_is_one_line(tmp_path, capsys):
    """A gzip bomb without a newline is refused at the cap, not read into one string; deep nesting is named."""
    import gzip

    from transforms.score.train import MAX_LINE_CHARS

    endless = gzip.compress(b'{"text": "' + b"a" * (MAX_LINE_CHARS + 10))
    (tmp_path / "endless.jsonl.gz").write_bytes(endless)
    (tmp_path / "deep.jsonl.gz").write_bytes(gzip.compress(b"[" * 100_000 + b"\n"))
    for name, message in (("endless", "line 1: longer than 16,777,216 characters"),
                          ("deep", "line 1: JSON nested too deep to parse")):
        status, err = _cli(capsys, "train-detector", "--data", str(tmp_path / f"{name}.jsonl.gz"), "--out",
                           str(tmp_path / f"m-{name}"))
        assert status == 2 and len(err) == 1 and message in err[0], err


def test_max_document_bytes_is_bounded_so_every_reader_is(capsys, tmp_path):
    status, err = _cli(capsys, "curate", "--input", "x.jsonl", "--output", str(tmp_path / "o"),
                       "--max_document_bytes", str(1 << 50))
    assert status == 2 and err == ["synthcap curate: error: --max_document_bytes: expected a whole number of bytes "
                                   "from 1 to 1,073,741,824, got '1125899906842624'"]


@pytest.mark.slow
def test_a_mix_keeps_records_that_share_id_source_and_offset_apart(tmp_path, capsys):
    """Three records naming one (id, source, offset) with three texts: each selected copy joins its own text (they
    were one text thrice), in the same bytes whatever the file order."""
    import yaml

    from transforms.document import Document, to_table
    from transforms.io.write import parquet_bytes

    def doc(i):
        return Document(id="x", text=" ".join(f"word{i * j}" for j in range(30)), source="s.warc.gz", offset=1,
                        p_ai=0.1, provenance={"declared_ai": False, "tdm_reservation": None, "robots_noai": False})

    outs = []
    for n, order in enumerate(([1, 2, 3], [3, 2, 1])):
        raw = tmp_path / f"raw{n}"
        raw.mkdir()
        for k, i in enumerate(order):
            (raw / f"part-{k}.parquet").write_bytes(parquet_bytes(to_table([doc(i)])))
        cfg = {"seed": 1, "target_tokens": 1000, "max_synthetic_fraction": "0.5",
               "synthetic": {"rule": "threshold", "threshold": 0.5},
               "sources": [{"name": "a", "inputs": [str(raw / "*.parquet")], "weight": 1}]}
        (tmp_path / f"m{n}.yaml").write_text(yaml.safe_dump(cfg))
        status, _ = _cli(capsys, "mix", "--config", str(tmp_path / f"m{n}.yaml"), "--output", str(tmp_path / f"o{n}"))
        assert status == 0
        train, = (tmp_path / f"o{n}" / "train").glob("*.parquet")
        assert sorted(pq.read_table(train)["text"].to_pylist()) == sorted(doc(i).text for i in (1, 2, 3))
        outs.append([p.read_bytes() for p in sorted((tmp_path / f"o{n}" / "train").iterdir())])
    assert outs[0] == outs[1]


def test_train_detector_refuses_a_reference_changed_after_its_commit(tmp_path, capsys):
    import gzip

    _jsonl(tmp_path / "in.jsonl", 5, "t")
    out = tmp_path / "cur"
    curate.run(["--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--no_score"])
    (tmp_path / "data.jsonl.gz").write_bytes(gzip.compress(b'{"text": "x", "label": "human"}\n'))
    shard, = (out / "documents").glob("*.parquet")
    _flip_a_byte(shard)
    status, err = _cli(capsys, "train-detector", "--data", str(tmp_path / "data.jsonl.gz"), "--out",
                       str(tmp_path / "m"), "--human_reference", str(shard))
    assert status == 2 and len(err) == 1 and "changed after its output was committed" in err[0], err


# Round 7: what the earlier rounds left.

def test_train_detector_data_with_one_label_is_one_line(tmp_path, capsys):
    """Only human texts (or a split left with one label) cannot be fitted, calibrated or thresholded: a user error,
    not a TypeError from the AUROC of a one-class validation split."""
    import gzip
    import json

    rows = [{"text": f"a human text number {i} with some words", "label": "human"} for i in range(60)]
    (tmp_path / "human.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    status, err = _cli(capsys, "train-detector", "--data", str(tmp_path / "human.jsonl.gz"), "--out",
                       str(tmp_path / "m"), "--no_lodo")
    assert status == 2 and len(err) == 1 and "split needs both human and ai texts" in err[0], err
    assert not (tmp_path / "m" / "model.ftz").exists()


@pytest.mark.slow
def test_mix_names_a_curated_folder_that_lost_a_listed_file_or_is_not_curated(tmp_path, capsys):
    """Not "no crawl shards match …/documents/*.parquet; supported extensions: .warc, …": the folder is incomplete,
    or is no curate output at all."""
    import yaml

    _jsonl(tmp_path / "in.jsonl", 5, "d")
    out = tmp_path / "cur"
    curate.run(["--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--no_score"])
    shard, = (out / "documents").glob("*.parquet")
    shard.unlink()
    (tmp_path / "plain").mkdir()
    for folder, message in ((out, f"source a: {out} is incomplete: documents/{shard.name} is listed in "
                                  "COMPLETE.json but missing"),
                            (tmp_path / "plain", f"source a: {tmp_path / 'plain'} holds no documents/*.parquet; "
                                                 "`curated` takes synthcap curate output folders")):
        cfg = {"seed": 1, "target_tokens": 10, "max_synthetic_fraction": "0.1",
               "sources": [{"name": "a", "curated": [str(folder)], "weight": 1}]}
        (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
        status, err = _cli(capsys, "mix", "--config", str(tmp_path / "mix.yaml"), "--output", str(tmp_path / "m"))
        assert status == 2 and err == [f"synthcap mix: error: {message}"], err


@pytest.mark.slow
def test_inspect_shows_every_document_that_shares_the_id(tmp_path, capsys):
    """Ids are the user's and may collide across files: inspect shows each, by source, never just the first."""
    from pipeline.cli import main

    (tmp_path / "a.jsonl").write_text('{"id": "same", "text": "the first file holds this text about rivers"}\n')
    (tmp_path / "b.jsonl").write_text('{"id": "same", "text": "the second file holds another text about hills"}\n')
    out = tmp_path / "cur"
    curate.run(["--input", str(tmp_path / "*.jsonl"), "--output", str(out), "--no_score"])
    capsys.readouterr()
    assert main(["inspect", "same", "--output", str(out)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("2 documents have the id same")
    sources = [line.split()[1] for line in shown.splitlines() if line.startswith("  source ")]
    assert sources == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]



def test_train_detector_says_how_many_records_it_left_out_and_why(tmp_path):
    """Rows without a label, with another label or language, or without text were left out unsaid; the card's
    `data.skipped` (and the CLI's `records skipped`) count them by why."""
    import gzip
    import json
    from collections import Counter

    from transforms.io.files import distinct
    from transforms.score.train import load

    rows = [{"text": f"text number {i} with a few words", "label": ["human", "ai"][i % 2]} for i in range(6)]
    rows += [{"text": "no label"}, {"text": "x", "label": "maybe"}, {"text": "y", "label": 1},
             {"text": "z", "label": "ai", "language": "fr"}, {"text": "  ", "label": "ai"}]
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    skipped = Counter()
    twice = [str(tmp_path / "d.jsonl.gz"), str(tmp_path / "." / "d.jsonl.gz")]  # one file, read once
    assert len(load(twice, skipped=skipped)) == 6
    assert distinct(twice) == [twice[0]]  # and the model card lists it once
    assert skipped == {"empty text": 1, "label is not human or ai": 3, "not English": 1}


def test_region_tagged_english_is_english_and_a_bom_starts_training_data(tmp_path):
    """`language: en-US` (or `EN`, `en_GB`) was not English: such documents went unscored in curate and such
    training texts were left out as "not English"; a UTF-8 byte-order mark at the start of training data was a
    "not JSON" error on line 1, though curate skips it in JSON Lines."""
    import gzip
    import json
    from collections import Counter

    from transforms.score.language import declared_language
    from transforms.score.train import load

    assert [declared_language(t) for t in ("en-US", "EN", "en_GB", "eng,deu", "de-DE", "")] == [
        "en", "en", "en", "en", "de", None]
    rows = [{"text": f"text number {i}", "label": ["human", "ai"][i % 2], "language": lang}
            for i, lang in enumerate(["en-US", "EN", "en_GB", "eng", "de-DE", None])]
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(
        b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode()))
    skipped = Counter()
    assert len(load([str(tmp_path / "d.jsonl.gz")], skipped=skipped)) == 5
    assert skipped == {"not English": 1}


def test_json_nested_too_deep_costs_only_itself(tmp_path):
    """JSON nested past the parser's depth raised RecursionError where only ValueError was caught: a JSON-LD block
    so nested cost its page every declared signal (a `robots: noai` page was no longer opted out and could reach a
    mix); a model card so nested failed the run with a traceback (exit 1), and an index pointer too."""
    import shutil

    import pytest

    from transforms.io.html import read_page
    from transforms.refresh.index import IndexPathError, read_pointer
    from transforms.score.model import DEFAULT_MODEL_DIR, ModelLoadError, read_card

    deep = "[" * 100_000 + "]" * 100_000
    body = (f'<html><head><meta name="robots" content="noai"><script type="application/ld+json">{deep}</script>'
            f'<script type="application/ld+json">{{"digitalSourceType": "trainedAlgorithmicMedia"}}</script>'
            '</head><body><p>The text of the page.</p></body></html>').encode()
    text, signals = read_page(body, "utf-8", "text/html", [])
    assert text == "The text of the page."
    assert signals.html_observable and signals.robots_noai and signals.declared_ai
    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "model")
    (tmp_path / "model" / "model_card.json").write_text(deep)
    with pytest.raises(ModelLoadError, match="unreadable model_card.json .RecursionError"):
        read_card(str(tmp_path / "model"))
    (tmp_path / "index" / "generations").mkdir(parents=True)
    (tmp_path / "index" / "generations" / "gen-000001.json").write_text(deep)
    with pytest.raises(IndexPathError, match="is not a valid index pointer"):
        read_pointer(str(tmp_path / "index"))


def test_parquet_dates_stored_as_timestamps_or_dates_are_dates(tmp_path):
    # a timestamp or date column was read as the JSON text of its Python value ('"2020-01-01 00:00:00"', quotes
    # included): no date reader took it, so every such document lost its capture date and pre_llm
    import datetime

    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(pa.table({"id": ["ts"], "text": ["a timestamp column"], "capture_date": pa.array(
        [datetime.datetime(2020, 1, 1, 12, tzinfo=datetime.timezone.utc)], pa.timestamp("us", tz="UTC"))}),
        d / "ts.parquet")
    pq.write_table(pa.table({"id": ["date"], "text": ["a date column"],
                             "created": pa.array([datetime.date(2021, 3, 4)], pa.date32())}), d / "date.parquet")
    out = tmp_path / "out"
    summary, _ = curate.run(["--input", str(d / "*.parquet"), "--output", str(out), "--no_score"])
    docs = {doc.id: doc for doc in read_documents(out)}
    assert docs["ts"].capture_date == "2020-01-01T12:00:00Z" and docs["ts"].provenance["pre_llm"]
    assert docs["date"].capture_date == "2021-03-04T00:00:00Z" and docs["date"].provenance["pre_llm"]
    assert summary["capture_date_unparsed"] == 0

"""Reader throughput (records/s, one core) on a generated ~20k-record WARC.gz, with baselines from the same run.

    python benchmarks/read.py [--pages 10000]

Baselines: warcio's ArchiveIterator (and FastWARC's) for WARC record iteration; FastWARC's for one member for the
whole file (`gzip crawl.warc`, which warcio refuses); warcio + the same resiliparse extraction for end-to-end documents;
json.loads (after a one-shot zstd decompression for .jsonl.zst) and pyarrow for JSONL and Parquet.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from apache_beam.io.restriction_trackers import OffsetRestrictionTracker

from pipeline.sample import Page, _member, human_paragraphs, response_records, warcinfo
from transforms.io.files import Shard
from transforms.io.gzip_members import FileWindow, MemberStream
from transforms.io.html import read_page
from transforms.io.http import parse_response
from transforms.io.jsonl import ReadJsonlFn, _LineRanges
from transforms.io.parquet import ReadParquetFn, _RowGroups
from transforms.io.warc import ReadWarcFn, _ByteRanges, iter_records


def make_warc(path: str, pages: int, paras: list[str]) -> int:
    parts = [_member(warcinfo("CC-MAIN-2024-10", "bench.warc.gz", "2024-02-20T00:00:00Z"))]
    for n in range(pages):
        text = "\n\n".join(paras[(n * 3 + k) % len(paras)] for k in range(3))
        page = Page(f"https://bench.example/{n}", f"page {n}", text, "human", "2024-02-20")
        parts += [_member(r) for r in response_records(page, f"2024-02-20T00:{(n // 60) % 60:02d}:{n % 60:02d}Z")]
    with open(path, "wb") as f:
        f.write(b"".join(parts))
    return 1 + 2 * pages


def timed(fn) -> tuple[int, float]:
    t = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t


def run_dofn(fn, provider, shard) -> int:
    fn.setup() if hasattr(fn, "setup") else None
    n = 0
    for r in provider.split(shard, provider.initial_restriction(shard)):
        tracker = OffsetRestrictionTracker(r)
        n += sum(1 for _ in fn.process(shard, tracker))
    return n


def warcio_iter(path):
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f):
            rec.content_stream().read()
            n += 1
    return n


def warcio_docs(path):
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f):
            n += 1
            if rec.rec_type == "response":
                body = rec.content_stream().read()
                ctype = rec.http_headers.get_header("Content-Type") or ""
                read_page(body, None, ctype.split(";")[0], rec.http_headers.headers)  # text and signals
            else:
                rec.content_stream().read()
    return n


def fastwarc_iter(path):
    from fastwarc.warc import ArchiveIterator

    n = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, parse_http=False):
            rec.reader.read()
            n += 1
    return n


def synthcap_iter(path):
    n, pos, size = 0, 0, os.path.getsize(path)
    with open(path, "rb") as f:
        window = FileWindow(f)
        while pos < size:
            member = MemberStream(window, pos)
            for rec in iter_records(member, 16 << 20):
                if rec.headers["warc-type"] == "response":
                    parse_response(rec.block, 16 << 20)
                n += 1
            pos = member.finish()
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=10_000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    warc = os.path.join(tmp, "bench.warc.gz")
    paras = human_paragraphs()
    records = make_warc(warc, args.pages, paras)
    shard = Shard(warc, os.path.getsize(warc), "warc")
    whole = os.path.join(tmp, "whole.warc.gz")  # what `gzip crawl.warc` makes: one member
    with gzip.open(warc) as f:
        plain_warc = f.read()
    with open(whole, "wb") as f:
        f.write(gzip.compress(plain_warc, compresslevel=6, mtime=0))

    rows = [{"id": str(i), "text": " ".join(paras[i % 500 : i % 500 + 3])} for i in range(records)]
    jsonl = os.path.join(tmp, "bench.jsonl")
    with open(jsonl, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(jsonl, "rb") as f:
        zst = os.path.join(tmp, "bench.jsonl.zst")
        with open(zst, "wb") as out:
            out.write(zstandard.ZstdCompressor().compress(f.read()))
    parquet = os.path.join(tmp, "bench.parquet")
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=5000)

    def json_baseline():
        with open(jsonl, "rb") as f:
            return sum(1 for line in f if json.loads(line))

    def zst_baseline():
        with open(zst, "rb") as f:
            data = zstandard.ZstdDecompressor().decompressobj().decompress(f.read())
        return sum(1 for line in data.splitlines() if json.loads(line))

    def parquet_baseline():
        return len(pq.read_table(parquet).to_pylist())

    cases = [
        ("WARC records (iterate + read payload)", "warcio ArchiveIterator", lambda: warcio_iter(warc), [
            ("FastWARC ArchiveIterator", lambda: fastwarc_iter(warc)),
            ("synthcap gzip-member reader", lambda: synthcap_iter(warc)),
        ]),
        ("WARC records, one member for the file", "FastWARC ArchiveIterator", lambda: fastwarc_iter(whole), [
            ("synthcap member stream (record by record)", lambda: synthcap_iter(whole)),
        ]),
        ("WARC -> documents (HTML -> text)", "warcio + resiliparse", lambda: warcio_docs(warc), [
            ("synthcap ReadWarcFn", lambda: run_dofn(ReadWarcFn(16 << 20), _ByteRanges(), shard)),
        ]),
        ("JSONL -> documents", "json.loads loop", json_baseline, [
            ("synthcap ReadJsonlFn", lambda: run_dofn(ReadJsonlFn(16 << 20), _LineRanges(),
                                                      Shard(jsonl, os.path.getsize(jsonl), "jsonl"))),
        ]),
        ("JSONL.zst -> documents", "zstd one-shot + json.loads", zst_baseline, [
            ("synthcap ReadJsonlFn (bounded stream)", lambda: run_dofn(ReadJsonlFn(16 << 20), _LineRanges(),
                                                                       Shard(zst, os.path.getsize(zst), "jsonl"))),
        ]),
        ("Parquet -> documents", "pyarrow to_pylist", parquet_baseline, [
            ("synthcap ReadParquetFn", lambda: run_dofn(ReadParquetFn(16 << 20), _RowGroups(),
                                                        Shard(parquet, os.path.getsize(parquet), "parquet"))),
        ]),
    ]
    out = io.StringIO()
    out.write(f"records per input: {records:,} (WARC.gz {os.path.getsize(warc) / 1e6:.1f} MB)\n\n")
    out.write("| task | reader | records/s | ratio to baseline |\n|---|---|---:|---:|\n")
    for task, base_name, base_fn, contenders in cases:
        n, t = timed(base_fn)
        base_rate = n / t
        out.write(f"| {task} | {base_name} (baseline) | {base_rate:,.0f} | 1.00 |\n")
        for name, fn in contenders:
            n, t = timed(fn)
            out.write(f"| {task} | {name} | {n / t:,.0f} | {n / t / base_rate:.2f} |\n")
    print(out.getvalue())


if __name__ == "__main__":
    main()

"""Builders for crafted shards: good and deliberately broken WARC members, JSONL and Parquet files."""
from __future__ import annotations

import gzip

from pipeline.sample import warc_record

HTML = b"<html><head><title>t</title></head><body><article><p>%s</p></article></body></html>"


def member(record: bytes) -> bytes:
    return gzip.compress(record, mtime=0)


def response(url: str, body: bytes, rid: str, date: str = "2024-03-01T00:00:00Z",
             headers: str = "Content-Type: text/html; charset=utf-8") -> bytes:
    http = f"HTTP/1.1 200 OK\r\n{headers}\r\n\r\n".encode() + body
    return warc_record("response", http, [("WARC-Date", date), ("WARC-Target-URI", url),
                                          ("WARC-Record-ID", f"<urn:uuid:{rid}>")], "application/http; msgtype=response")


def page(n: int, words: str = "readable words for a test page") -> bytes:
    text = f"page {n} " + " ".join([words] * 10)
    return member(response(f"https://crafted.example/{n}", HTML % text.encode(), f"00000000-0000-0000-0000-{n:012d}"))

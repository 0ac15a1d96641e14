"""HTTP response blocks as stored in WARC response records: status, headers, and the decoded payload."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import brotli


class HttpError(ValueError):
    pass


@dataclass
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def mime(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for part in (self.header("content-type") or "").split(";")[1:]:
            k, _, v = part.partition("=")
            if k.strip().lower() == "charset" and v.strip():
                return v.strip().strip("\"'")
        return None


def _dechunk(body: bytes) -> bytes:
    out, i = [], 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            raise HttpError("chunked body without a chunk size line")
        size = int(body[i:j].split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return b"".join(out)
        out.append(body[j + 2 : j + 2 + size])
        i = j + 2 + size + 2


def _decode_content(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(31).decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -15)
    if encoding == "br":
        return brotli.decompress(body)
    return body


def parse_response(block: bytes) -> HttpResponse:
    """Parse a stored HTTP response. Common Crawl stores payloads already decoded (and renames the encoding
    headers to X-Crawler-*); other crawlers (wget) store them as sent, so chunking and compression are undone."""
    end = block.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = block.find(b"\n\n"), 2
    if end < 0:
        raise HttpError("no end of HTTP headers")
    lines = block[:end].decode("latin-1").replace("\r\n", "\n").split("\n")
    status_line = lines[0].split(None, 2)
    if len(status_line) < 2 or not status_line[0].upper().startswith("HTTP/"):
        raise HttpError(f"bad HTTP status line {lines[0][:80]!r}")
    try:
        status = int(status_line[1])
    except ValueError:
        raise HttpError(f"bad HTTP status {status_line[1][:20]!r}") from None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip(), value.strip()))
    resp = HttpResponse(status, tuple(headers), block[end + sep :])
    try:
        if "chunked" in (resp.header("transfer-encoding") or "").lower():
            resp.body = _dechunk(resp.body)
    except ValueError as e:
        raise HttpError(f"cannot de-chunk HTTP payload: {e}") from None
    stored = resp.body
    try:
        for enc in reversed((resp.header("content-encoding") or "").split(",")):
            if enc.strip():
                resp.body = _decode_content(resp.body, enc)
    except (zlib.error, brotli.error):
        # Some archives (ClueWeb09) store the decoded payload but keep the Content-Encoding header.
        resp.body = stored
    return resp

"""HTTP response blocks as stored in WARC response records: status, headers, and the decoded payload.

Every decoder's output is capped at the caller's limit: a small compressed payload cannot expand past it (the
decoders stop one step after the limit, so memory stays near the limit whatever the ratio).
"""
from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass

import brotli
import zstandard


class HttpError(ValueError):
    pass


class PayloadTooLarge(ValueError):
    """The decoded payload would be larger than the limit."""


_STEP = 1 << 20
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")


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
    """The chunks' bytes. A body that ends inside a chunk or before the last (empty) chunk was cut short, as
    crawlers cut long records (WARC-Truncated): what came is kept, as an unchunked body cut short is."""
    out, i = [], 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            if out and not body[i:].strip(b"0123456789abcdefABCDEF; \r"):
                return b"".join(out)
            raise HttpError("chunked body without a chunk size line")
        size_field = body[i:j].split(b";", 1)[0].strip() or b"0"
        if not _CHUNK_SIZE.fullmatch(size_field):
            raise HttpError(f"bad chunk size {size_field[:20]!r}")
        size = int(size_field, 16)
        if size == 0:
            return b"".join(out)
        chunk = body[j + 2 : j + 2 + size]
        out.append(chunk)
        if len(chunk) < size:
            return b"".join(out)
        i = j + 2 + size + 2


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = bytearray(d.decompress(body, limit + 1))
    if len(out) > limit:
        raise PayloadTooLarge(f"decoded payload over {limit} bytes")
    return bytes(out)


def _unbrotli(body: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    out = bytearray(d.process(body, output_buffer_limit=_STEP))
    while len(out) <= limit and not d.is_finished() and not d.can_accept_more_data():
        out += d.process(b"", output_buffer_limit=_STEP)
    if len(out) > limit:
        raise PayloadTooLarge(f"decoded payload over {limit} bytes")
    if not d.is_finished():
        raise brotli.error("brotli stream ends early")
    return bytes(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    """zstd (RFC 8878; browsers ask for it, so browser-driven crawlers store it): read at most limit + 1 bytes, one
    step at a time; the decoder's default window limit (128 MiB) refuses frames that ask for more memory."""
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
    out = bytearray()
    while len(out) <= limit:
        try:
            step = reader.read(min(_STEP, limit + 1 - len(out)))
        except zstandard.ZstdError:
            if not out:  # no zstd at all: the caller keeps the body as stored
                raise
            break  # bytes after the last frame, as zlib leaves a gzip member's trailing bytes
        if not step:
            break
        out += step
    if len(out) > limit:
        raise PayloadTooLarge(f"decoded payload over {limit} bytes")
    return bytes(out)


def _decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, 31, limit)
    if encoding == "deflate":
        try:
            return _inflate(body, 15, limit)
        except zlib.error:
            return _inflate(body, -15, limit)
    if encoding == "br":
        return _unbrotli(body, limit)
    if encoding == "zstd":
        return _unzstd(body, limit)
    return body


def parse_response(block: bytes, limit: int) -> HttpResponse:
    """Parse a stored HTTP response. Common Crawl stores payloads already decoded (and renames the encoding
    headers to X-Crawler-*); other crawlers (wget) store them as sent, so chunking and compression are undone.
    Raises PayloadTooLarge when decoding would produce more than `limit` bytes."""
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
                resp.body = _decode_content(resp.body, enc, limit)
    except (zlib.error, brotli.error, zstandard.ZstdError):
        # Some archives (ClueWeb09) store the decoded payload but keep the Content-Encoding header.
        resp.body = stored
    return resp

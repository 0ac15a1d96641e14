"""Gzip member access by compressed offset: the unit of splitting for WARC.gz and of recovery after corruption.

Common Crawl writes one gzip member per WARC record, so a member start is a safe place to begin reading. A reader
that starts mid-file syncs to the next member that decompresses to `WARC/`; a corrupt region is reported once,
by the reader whose previous member ends where it begins (see `transforms/io/warc.py`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import BinaryIO, Optional

MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 16
_SCAN_BLOCK = 1 << 20
_PROBE = 4096


@dataclass
class Member:
    """One gzip member read from `offset`. `end` is where the next member begins (None when unknown)."""

    offset: int
    data: Optional[bytes]
    end: Optional[int]
    error: Optional[str] = None  # dead-letter reason: gzip_error | truncated
    message: str = ""
    oversize: bool = False  # decompressed past the limit: data is None, the member was skipped whole


class MemberReader:
    """Reads members in file order through one rolling buffer (members are small: re-reading a window per member
    would cost more than the decompression)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self._buf = b""
        self._start = 0  # file offset of self._buf[0]

    def _window(self, offset: int, size: int) -> bytes:
        rel = offset - self._start
        if rel < 0 or rel + size > len(self._buf):
            keep = self._buf[rel:] if 0 <= rel <= len(self._buf) else b""
            self._f.seek(offset + len(keep))
            self._buf = keep + self._f.read(max(size - len(keep), _CHUNK))
            self._start, rel = offset, 0
        return self._buf[rel : rel + size]

    def read(self, offset: int, limit: int) -> Member:
        """Decompress the member at `offset`, keeping at most `limit` bytes of output."""
        d = zlib.decompressobj(31)
        parts: list[bytes] = []
        size = 0
        pos = offset
        oversize = False
        while True:
            chunk = self._window(pos, _CHUNK)
            if not chunk:
                return Member(offset, None, None, "truncated", f"input ends inside the gzip member at {offset}")
            try:
                out = d.decompress(chunk)
            except zlib.error as e:
                return Member(offset, None, None, "gzip_error", str(e))
            size += len(out)
            if size > limit:
                oversize = True
                parts.clear()
            elif out:
                parts.append(out)
            if d.eof:
                pos += len(chunk) - len(d.unused_data)
                break
            pos += len(chunk)
        return Member(offset, None if oversize else b"".join(parts), pos, oversize=oversize)


def read_member(f: BinaryIO, offset: int, limit: int) -> Member:
    """One member, without a reader's buffer (for a single look, e.g. at a file's warcinfo record)."""
    return MemberReader(f).read(offset, limit)


def looks_like_member(buf: bytes, i: int, prefix: bytes) -> bool:
    try:
        head = zlib.decompressobj(31).decompress(buf[i : i + _PROBE], len(prefix))
    except zlib.error:
        return False
    return head.startswith(prefix)


def find_member(f: BinaryIO, start: int, prefix: bytes = b"WARC/") -> Optional[int]:
    """First offset >= start where a gzip member that decompresses to `prefix` begins; None at end of file."""
    pos = start
    while True:
        f.seek(pos)
        buf = f.read(_SCAN_BLOCK + _PROBE)
        if not buf:
            return None
        i = buf.find(MAGIC)
        while i != -1 and i < _SCAN_BLOCK:
            if looks_like_member(buf, i, prefix):
                return pos + i
            i = buf.find(MAGIC, i + 1)
        if len(buf) <= _SCAN_BLOCK:
            return None
        pos += _SCAN_BLOCK


def is_gzip(f: BinaryIO) -> bool:
    f.seek(0)
    return f.read(3) == MAGIC

"""Byte streams for WARC reading: gzip members by compressed offset, and plain files, both with bounded memory.

Common Crawl writes one gzip member per WARC record, so a member start is a safe place to begin reading. A reader
that starts mid-file syncs to the next member that decompresses to `WARC/`; a corrupt region is reported once,
by the reader whose previous member ends where it begins (see `transforms/io/warc.py`). A member may also hold a
whole file (`gzip crawl.warc`): it is decompressed as a stream, so no record costs more memory than its own size.
"""
from __future__ import annotations

import zlib
from typing import BinaryIO, Optional

MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 16
_OUT = 1 << 20  # most decompressed bytes produced per step: a bomb never gets further than one step past a limit
_SCAN_BLOCK = 1 << 20
_PROBE = 4096


class StreamError(Exception):
    """The stored bytes cannot be decoded: `reason` is the dead-letter reason (gzip_error | truncated)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class FileWindow:
    """Compressed bytes by file offset through one rolling buffer (members are small: re-reading a window per
    member would cost more than the decompression)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self._buf = b""
        self._start = 0  # file offset of self._buf[0]

    def read(self, offset: int, size: int) -> bytes:
        rel = offset - self._start
        if rel < 0 or rel + size > len(self._buf):
            keep = self._buf[rel:] if 0 <= rel <= len(self._buf) else b""
            self._f.seek(offset + len(keep))
            self._buf = keep + self._f.read(max(size - len(keep), _CHUNK))
            self._start, rel = offset, 0
        return self._buf[rel : rel + size]


class ByteStream:
    """Forward reading (`peek`, `read`, `skip`, `find_line`) over a source of bytes, holding only what was asked for.

    Positions count bytes of the stream (decompressed bytes for a gzip member). Bytes from `mark` on are kept, so
    going back to them is free; going back further restarts the source (only resynchronisation after a bad
    record that was too large to keep needs it)."""

    def __init__(self):
        self._buf = b""
        self._buf_start = 0
        self.pos = 0
        self.mark: Optional[int] = None
        self._exhausted = False  # the source has given all it has: what the buffer lacks does not exist

    def _produce(self) -> bytes:
        """The next bytes of the source (b"" at its end); may raise StreamError."""
        raise NotImplementedError

    def _restart(self) -> None:
        """Start the source again from position 0."""
        raise NotImplementedError

    def _fill(self, n: int) -> None:
        """Make the buffer hold bytes [pos, pos + n) when the source has them (bytes before pos and mark are let
        go)."""
        keep_from = self.pos if self.mark is None else min(self.pos, self.mark)
        k = min(keep_from - self._buf_start, len(self._buf))
        if k > 0 and 2 * k >= len(self._buf):  # let go once at least half is stale: a copy per call was quadratic
            self._buf = self._buf[k:]
            self._buf_start += k
        while self._buf_start + len(self._buf) < keep_from:  # skipping forward past the buffer (empty here)
            out = self._produce()
            if not out:
                self._exhausted = True
                return
            gap = keep_from - self._buf_start
            if len(out) > gap:
                self._buf = out[gap:]
                self._buf_start = keep_from
            else:
                self._buf_start += len(out)
        while len(self._buf) < self.pos - self._buf_start + n:
            out = self._produce()
            if not out:
                self._exhausted = True
                return
            self._buf += out

    def peek(self, n: int) -> bytes:
        rel = self.pos - self._buf_start
        if rel < 0 or (rel + n > len(self._buf) and not self._exhausted):
            self._fill(n)
            rel = self.pos - self._buf_start
        return self._buf[rel : rel + n]

    def available(self, n: int) -> int:
        """How many of the next n bytes the stream has (up to n), held from here on but not copied."""
        self.peek(0)
        if self.pos - self._buf_start + n > len(self._buf) and not self._exhausted:
            self._fill(n)
        return max(0, min(n, self._buf_start + len(self._buf) - self.pos))

    def read(self, n: int) -> bytes:
        data = self.peek(n)
        self.pos += len(data)
        return data

    def skip(self, n: int) -> int:
        """Advance up to n bytes without holding them; returns how many there were."""
        start = self.pos
        self.pos += n
        self._fill(0)
        self.pos = min(self.pos, self._buf_start + len(self._buf))
        return self.pos - start

    def seek(self, pos: int) -> None:
        if pos < self._buf_start:
            self._restart()
            self._buf, self._buf_start, self.pos, self._exhausted = b"", 0, 0, False
            self.skip(pos)
        else:
            self.pos = pos

    def checkpoint(self) -> tuple:
        """What `restore` needs to come back to the current position without restarting the source."""
        return self._buf, self._buf_start, self.pos, self.mark, self._exhausted, self._source_state()

    def restore(self, checkpoint: tuple) -> None:
        self._buf, self._buf_start, self.pos, self.mark, self._exhausted, state = checkpoint
        self._restore_source(state)

    def _source_state(self):
        raise NotImplementedError

    def _restore_source(self, state) -> None:
        raise NotImplementedError

    def find_line(self, prefix: bytes) -> Optional[int]:
        """Position of the next line (after pos) that starts with `prefix`, where the stream is left; None (and the
        stream at its end) when there is none. Memory stays at one step whatever the distance."""
        needle = b"\n" + prefix
        n = _OUT + len(needle)
        while True:
            self.peek(0)  # fills as peek(n) would, without copying the window
            rel = self.pos - self._buf_start
            if rel + n > len(self._buf) and not self._exhausted:
                self._fill(n)
                rel = self.pos - self._buf_start
            i = self._buf.find(needle, rel, rel + n)
            if i >= 0:
                self.pos += i - rel + 1
                return self.pos
            window = max(0, min(n, len(self._buf) - rel))
            if window < n:
                self.pos += window
                return None
            self.pos += _OUT


class PlainStream(ByteStream):
    """An uncompressed file from offset 0."""

    def __init__(self, window: FileWindow):
        super().__init__()
        self._window = window
        self._in = 0

    def _produce(self) -> bytes:
        chunk = self._window.read(self._in, _CHUNK)
        self._in += len(chunk)
        return chunk

    def _restart(self) -> None:
        self._in = 0

    def _source_state(self):
        return self._in

    def _restore_source(self, state) -> None:
        self._in = state

    def seek(self, pos: int) -> None:
        if pos < self._buf_start:  # a file can jump back without re-reading from its start
            self._in, self._buf, self._buf_start, self.pos, self._exhausted = pos, b"", pos, pos, False
        else:
            self.pos = pos


class MemberStream(ByteStream):
    """The decompressed bytes of the gzip member at compressed `offset`. After the stream's end, `end` is the
    offset where the next member begins. Damage raises StreamError when it is reached."""

    def __init__(self, window: FileWindow, offset: int):
        super().__init__()
        self._window = window
        self.offset = offset
        self._restart()

    def _restart(self) -> None:
        self._d = zlib.decompressobj(31)
        self._in = self.offset
        self._tail = b""
        self.end: Optional[int] = None

    def _source_state(self):
        return self._d.copy(), self._in, self._tail, self.end  # zlib's state: its 32 KiB window and little more

    def _restore_source(self, state) -> None:
        d, self._in, self._tail, self.end = state
        self._d = d.copy()

    def _produce(self) -> bytes:
        while self.end is None:
            if not self._tail:
                chunk = self._window.read(self._in, _CHUNK)
                if not chunk:
                    raise StreamError("truncated", f"input ends inside the gzip member at {self.offset}")
                self._in += len(chunk)
                self._tail = chunk
            try:
                out = self._d.decompress(self._tail, _OUT)
            except zlib.error as e:
                raise StreamError("gzip_error", str(e)) from None
            if self._d.eof:
                self.end = self._in - len(self._d.unused_data)
                self._tail = b""
            else:
                self._tail = self._d.unconsumed_tail
            if out:
                return out
        return b""

    def finish(self) -> int:
        """Decompress to the member's end (checking its CRC) and return where the next member begins."""
        while self.end is None:
            self._produce()
        return self.end


def looks_like_member(buf: bytes, i: int, prefix: bytes) -> bool:
    try:
        head = zlib.decompressobj(31).decompress(buf[i : i + _PROBE], len(prefix))
    except zlib.error:
        return False
    return head.startswith(prefix)


def find_member(f: BinaryIO, start: int, prefix: bytes = b"WARC/", stop: Optional[int] = None) -> Optional[int]:
    """First offset >= start (and < stop) where a gzip member that decompresses to `prefix` begins; None at end of
    file (or stop). Each candidate costs a probe: a range that syncs looks no further than its own end, or every
    range of a file full of gzip magic bytes would probe the rest of the file (quadratic in its size)."""
    pos = start
    while stop is None or pos < stop:
        f.seek(pos)
        buf = f.read(_SCAN_BLOCK + _PROBE)
        if not buf:
            return None
        i = buf.find(MAGIC)
        while i != -1 and i < _SCAN_BLOCK and (stop is None or pos + i < stop):
            if looks_like_member(buf, i, prefix):
                return pos + i
            i = buf.find(MAGIC, i + 1)
        if len(buf) <= _SCAN_BLOCK:
            return None
        pos += _SCAN_BLOCK
    return None


def is_gzip(f: BinaryIO) -> bool:
    f.seek(0)
    return f.read(3) == MAGIC


def zeros_to_end(f: BinaryIO, head: bytes = b"") -> bool:
    """Whether `head` and the rest of `f` are NUL bytes only: the padding (tape blocks, preallocated files) that
    gzip(1) ignores after the last member, which is no damaged record. Reads in bounded blocks."""
    while head.count(0) == len(head):
        head = f.read(_SCAN_BLOCK)
        if not head:
            return True
    return False

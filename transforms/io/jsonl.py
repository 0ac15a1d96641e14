"""JSONL / NDJSON reading (plain, .gz, .zst) with a dead letter per bad line and byte offsets per record.

Plain files split by byte range (a line belongs to the range holding its first byte); compressed files are read
as one unit, and the offsets they report are offsets into the decompressed stream. Decompression and line
splitting hold at most `max_document_bytes` of a line (plus one decoder step): a longer line, or a compressed
bomb, is skipped as it streams and dropped as `too_large`.
"""
from __future__ import annotations

import itertools
import json
import re
import zlib
from typing import BinaryIO, Iterator

import apache_beam as beam
import zstandard

from transforms.accounting import dead_letter, drop
from transforms.document import fallback_id
from transforms.io.files import ByteRanges, Shard
from transforms.io.gzip_members import StreamError, zeros_to_end
from transforms.io.reader import ShardReader
from transforms.io.record import RecordError, check_unicode, emitted, to_document

STAGE = "read_jsonl"
_BLOCK = 1 << 20
_GZIP_MAGIC, _ZSTD_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


class Oversize:
    """A line longer than the limit: only its length was kept."""

    def __init__(self, size: int, bare_cr: bool):
        self.size = size
        self.bare_cr = bare_cr


def _gunzip_blocks(f: BinaryIO) -> Iterator[bytes]:
    """Decompressed blocks (each at most _BLOCK) of a multi-member gzip stream; damage raises StreamError."""
    d, pending, ended = zlib.decompressobj(31), False, False
    while True:
        chunk = f.read(_BLOCK)
        if not chunk:
            if pending and not d.eof:
                raise StreamError("truncated", "compressed stream ends inside a member or frame")
            return
        while chunk:
            if ended and not pending and not chunk[0] and zeros_to_end(f, chunk):  # NUL padding after the last member
                return
            pending = True
            try:
                out = d.decompress(chunk, _BLOCK)
            except zlib.error as e:
                raise StreamError("gzip_error", str(e)) from None
            if out:
                yield out
            if d.eof:
                chunk, d, pending, ended = d.unused_data, zlib.decompressobj(31), False, True
            else:
                chunk = d.unconsumed_tail


class _ZstdFrames:
    """Walks zstd frame and block headers over the compressed bytes as they are read. The bounded decoder
    (python-zstandard's stream reader) ends silently where a file is cut and drops the output of a whole read when
    it meets bytes that start no frame; so it is handed only bytes this walk has confirmed (headers parsed, block
    contents), and damage is raised after the frames before it are decoded."""

    _FRAME, _SKIPPABLE, _HEADER, _BLOCK = range(4)

    def __init__(self):
        self._buf = bytearray()  # bytes not yet confirmed (a header still incomplete)
        self._skip = 0  # bytes to pass over before the next header
        self._state = self._FRAME
        self._checksum = 0
        self._at = 0  # where the header being read starts in the buffer
        self.error: StreamError | None = None

    def feed(self, data: bytes) -> bytes:
        """The bytes that `data` confirms (with any held before it); on damage, those before the damaged header,
        keeping the damage in `error`."""
        if self.error:
            return b""
        self._buf += data
        try:
            end = self._walk(len(self._buf))
        except StreamError as e:
            self.error = e
            end = self._at
        out = bytes(self._buf[:end])
        del self._buf[:end]
        return out

    def _walk(self, n: int) -> int:
        i = 0
        while True:
            k = min(self._skip, n - i)
            i, self._skip = i + k, self._skip - k
            if self._skip:
                return i
            need = (4, 4, 1, 3)[self._state]
            if n - i < need:
                return i
            self._at = i
            field = int.from_bytes(self._buf[i : i + need], "little")
            i += need
            if self._state == self._FRAME:
                if field == 0xFD2FB528:
                    self._state = self._HEADER
                elif 0x184D2A50 <= field <= 0x184D2A5F:
                    self._state = self._SKIPPABLE
                else:
                    raise StreamError("zstd_error", f"not a zstd frame (magic {field:#010x})")
            elif self._state == self._SKIPPABLE:
                self._skip, self._state = field, self._FRAME
            elif self._state == self._HEADER:
                single = (field >> 5) & 1
                self._checksum = 4 if (field >> 2) & 1 else 0
                self._skip = (1 - single) + (0, 1, 2, 4)[field & 3] + (single, 2, 4, 8)[field >> 6]
                self._state = self._BLOCK
            else:
                kind, size = (field >> 1) & 3, field >> 3
                if kind == 3:
                    raise StreamError("zstd_error", "reserved zstd block type")
                self._skip = 1 if kind == 1 else size
                if field & 1:  # the frame's last block
                    self._skip += self._checksum
                    self._state = self._FRAME

    def complete(self) -> bool:
        return self._state == self._FRAME and not self._skip and not self._buf


class _Tee:
    """A file that hands the decoder only the bytes the frame walk has confirmed."""

    def __init__(self, f: BinaryIO, frames: _ZstdFrames):
        self._f, self._frames = f, frames
        self._out = bytearray()

    def read(self, size: int = -1) -> bytes:
        while not self._out and not self._frames.error:
            data = self._f.read(size if size > 0 else _BLOCK)
            if not data:
                break
            self._out += self._frames.feed(data)
        n = len(self._out) if size < 0 else min(size, len(self._out))
        chunk = bytes(self._out[:n])
        del self._out[:n]
        return chunk


def _zstd_blocks(f: BinaryIO) -> Iterator[bytes]:
    """Decompressed blocks (each at most _BLOCK) of a multi-frame zstd stream; damage raises StreamError."""
    frames = _ZstdFrames()
    reader = zstandard.ZstdDecompressor().stream_reader(_Tee(f, frames), read_size=_BLOCK, read_across_frames=True)
    while True:
        try:
            out = reader.read(_BLOCK)
        except zstandard.ZstdError as e:
            raise StreamError("zstd_error", str(e)) from None
        if not out:
            break
        yield out
    if frames.error:
        raise frames.error
    if not frames.complete():
        raise StreamError("truncated", "compressed stream ends inside a member or frame")


def _plain_blocks(f: BinaryIO, start: int) -> Iterator[bytes]:
    f.seek(start)
    while chunk := f.read(_BLOCK):
        yield chunk


def iter_lines(blocks: Iterator[bytes], limit: int, start: int = 0) -> Iterator[tuple[int, bytes | Oversize |
                                                                                      StreamError]]:
    """(offset, line) pairs, holding at most `limit` bytes of a line: a longer one comes as Oversize. A broken
    stream ends with (offset of the first unread line, StreamError)."""
    part, size, bare_cr = bytearray(), 0, False  # the current line so far (dropped once over the limit)
    pos = start
    try:
        for block in blocks:
            i, n = 0, len(block)
            while i < n:
                j = block.find(b"\n", i)
                end = n if j < 0 else j
                piece_len = end - i
                if size + piece_len <= limit:
                    if j >= 0 and not part:
                        line: bytes | Oversize = block[i:j]
                    else:
                        part += block[i:end]
                        line = bytes(part) if j >= 0 else b""
                else:
                    if size <= limit:
                        bare_cr = b"\r" in part or b"\r" in block[i:end]
                        part = bytearray()
                    line = Oversize(size + piece_len, bare_cr)
                size += piece_len
                if j < 0:
                    break
                yield pos, line
                pos += size + 1
                part, size, bare_cr = bytearray(), 0, False
                i = j + 1
    except StreamError as e:
        yield pos, e
        return
    if size:
        yield pos, Oversize(size, bare_cr) if size > limit else bytes(part)


# A `\\uD800`-`\\uDFFF` escape, or the UTF-8-like bytes of one (json.loads lets both through): only such lines
# can hold a lone surrogate, so only they are walked.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # two patterns with a literal prefix scan far faster
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")  # than one alternation
_ARRAY_HINT = "a .json file holding an array is not JSON Lines (write one object per line, e.g. `jq -c '.[]'`)"
_WHITESPACE = b"\xef\xbb\xbf \t\r\n"  # and a UTF-8 byte-order mark


def spread_json(first_line: bytes) -> str | None:
    """"array" or "object" when a file's first non-blank line is a lone `[` or `{`: a pretty-printed .json
    document, which is one dead letter rather than one per line. (A damaged first line of real JSON Lines is
    not mistaken for one, so the lines after it are still read.)"""
    return {b"[": "array", b"{": "object"}.get(first_line.strip(_WHITESPACE))


def wide_encoding(head: bytes) -> str | None:
    """"UTF-16" or "UTF-32" (with the byte order) when a file starts with their byte-order mark, or with the NUL
    bytes they put around ASCII (JSON text holds no raw NUL, so UTF-8 JSON Lines never starts so)."""
    for mark, name in ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe", "UTF-16LE"),
                       (b"\xfe\xff", "UTF-16BE")):
        if head.startswith(mark):
            return f"{name} (byte-order mark {mark.hex(' ')})"
    # without a mark: the first characters are ASCII ({"...), each padded with NULs; a run of NULs (a zeroed
    # region) or binary garbage matches none of these, so such a file is still read line by line
    head = head[:16]
    if len(head) < 16:
        return None
    for width, name in ((4, "UTF-32"), (2, "UTF-16")):
        units = [head[i:i + width] for i in range(0, 16, width)]
        if all(0 < u[0] < 0x80 and not any(u[1:]) for u in units):
            return f"{name}LE (no byte-order mark)"
        if all(0 < u[-1] < 0x80 and not any(u[:-1]) for u in units):
            return f"{name}BE (no byte-order mark)"
    return None


# (magic bytes, what the file is, the extension that reads it): no JSON text starts with any of these bytes
_NOT_TEXT = ((_GZIP_MAGIC, "gzip-compressed", ".jsonl.gz"), (_ZSTD_MAGIC, "zstd-compressed", ".jsonl.zst"),
             (b"BZh", "bzip2-compressed", None), (b"\xfd7zXZ\x00", "xz-compressed", None),
             (b"PK\x03\x04", "a zip archive", None), (b"PAR1", "Parquet", ".parquet"))


def not_text(head: bytes) -> str | None:
    """What a file named as JSON Lines is instead, by its magic bytes (a `.jsonl` that holds gzip was read as
    thousands of `decode_error` lines of binary, each counted as a record read), or None."""
    for magic, what, ext in _NOT_TEXT:
        if head.startswith(magic):
            fix = f"rename it to end in {ext}" if ext else "decompress it"
            return f"the file is {what} (magic bytes {magic.hex(' ')}), not JSON Lines text: {fix}"
    return None


def _not_json_lines(shard: Shard, head: bytes):
    """One dead letter for the whole file when its first bytes say it is no UTF-8 text (UTF-16/32: its lines cannot
    be split on the byte 0x0A, nor read as UTF-8; compressed or binary data), else None."""
    encoding = wide_encoding(head)
    if encoding:
        code = encoding.split(" ")[0]
        why = f"the file is {encoding} text; JSON Lines must be UTF-8: convert it (e.g. `iconv -f {code} -t UTF-8`)"
    else:
        why = not_text(head)
    return dead_letter(shard.path, 0, "decode_error", why, STAGE) if why else None


def _peek(blocks: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The first block of a stream (b"" when it is empty or broken at once) and the stream, whole again."""
    try:
        head = next(blocks)
    except StopIteration:
        return b"", iter(())
    except StreamError as e:
        return b"", _Broken(e)
    return head, itertools.chain([head], blocks)


class _Broken:
    """A stream whose first read failed: raises that failure where `iter_lines` reads it."""

    def __init__(self, error: StreamError):
        self._error = error

    def __iter__(self):
        return self

    def __next__(self):
        raise self._error


def _json_error_message(line: bytes, e: Exception) -> str:
    crs = line.count(b"\r")
    if crs:
        return (f"{e}; the line holds {crs} bare CR line breaks: the file has CR-only line endings (JSON Lines "
                "needs LF)")
    if line.lstrip(_WHITESPACE)[:1] == b"[":
        return f"{e}; found the start of a JSON array: {_ARRAY_HINT}"
    return str(e)


def line_to_output(line: bytes | Oversize, shard: Shard, offset: int):
    if isinstance(line, Oversize):
        cr = "; it holds bare CR line breaks: the file has CR-only line endings (JSON Lines needs LF)" \
            if line.bare_cr else ""
        return drop(fallback_id(shard.path, offset), "too_large", shard.path, offset, f"{line.size} bytes{cr}")
    try:
        obj = json.loads(line)
    except UnicodeDecodeError as e:
        return dead_letter(shard.path, offset, "decode_error", e, STAGE)
    except RecursionError:
        return dead_letter(shard.path, offset, "json_error", "JSON nested too deep to parse", STAGE)
    except ValueError as e:
        return dead_letter(shard.path, offset, "json_error", _json_error_message(line, e), STAGE)
    try:
        if _ESCAPED_SURROGATE.search(line) or _RAW_SURROGATE.search(line):
            check_unicode(obj)
        doc = to_document(obj, shard.path, offset)
    except RecordError as e:
        message = f"{e}; {_ARRAY_HINT}" if isinstance(obj, list) else str(e)
        return dead_letter(shard.path, offset, e.reason, message, STAGE)
    if not doc.text.strip():
        return drop(doc.id, "empty_text", shard.path, offset)
    return emitted(doc)


class _LineRanges(ByteRanges):
    """Plain files split on line boundaries; compressed streams are read whole."""

    def splittable(self, shard: Shard) -> bool:
        return not shard.path.lower().endswith((".gz", ".zst"))


class ReadJsonlFn(ShardReader):
    STAGE = STAGE

    def process(self, shard: Shard, tracker=beam.DoFn.RestrictionParam(_LineRanges())):
        yield from self.read_shard(shard, tracker)

    def read(self, f, shard: Shard, tracker):
        start = tracker.current_restriction().start
        lower = shard.path.lower()
        compressed = lower.endswith((".gz", ".zst"))
        if compressed:
            # Offsets are into the decompressed stream: the range is claimed once, as a whole.
            if not tracker.try_claim(0):
                return
            # the compression is told by the bytes: JSON Lines text named .gz (decompressed in place of its name),
            # or zstd named .gz, was one gzip_error dead letter for the whole file
            f.seek(0)
            magic = f.read(64)
            f.seek(0)
            decoder = (_gunzip_blocks if magic.startswith(_GZIP_MAGIC) else
                       _zstd_blocks if magic.startswith(_ZSTD_MAGIC) else
                       None if magic.lstrip(_WHITESPACE)[:1] == b"{" else
                       _gunzip_blocks if lower.endswith(".gz") else _zstd_blocks)
            head, blocks = _peek(decoder(f) if decoder else _plain_blocks(f, 0))
            first, letter = 0, _not_json_lines(shard, head)
            if letter:
                yield letter
                tracker.try_claim(shard.size + 1)
                return
        else:
            f.seek(0)
            head = f.read(1 << 16)
            letter = _not_json_lines(shard, head)
            if letter:  # every range sees it; the one holding the file's start reports it
                if start == 0 and tracker.try_claim(0):
                    yield letter
                tracker.try_claim(shard.size + 1)
                return
            head = head.lstrip(_WHITESPACE)
            spread = spread_json(head[: head.index(b"\n")]) if b"\n" in head else None
            if spread:
                if start == 0 and tracker.try_claim(0):
                    yield self._spread_file(shard, spread)
                tracker.try_claim(shard.size + 1)
                return
            first = self._line_start(f, start, tracker.current_restriction().stop)
            if first is None:  # no line starts in this range: the line that spans it is its owner's
                tracker.try_claim(shard.size + 1)
                return
            blocks = _plain_blocks(f, first)
        content = False
        for pos, line in iter_lines(blocks, self._limit, first):
            if not compressed and not tracker.try_claim(pos):
                return
            if compressed and not content and isinstance(line, bytes) and line.strip():
                content = True
                spread = spread_json(line)
                if spread:
                    yield self._spread_file(shard, spread)
                    break
            if isinstance(line, StreamError):
                yield dead_letter(shard.path, pos, line.reason, f"{line}; the rest of the file is unreadable",
                                  STAGE)
                break
            if isinstance(line, bytes):
                if not line.strip():
                    continue
                line = line.rstrip(b"\r")
            yield line_to_output(line, shard, pos)
        tracker.try_claim(shard.size + 1)

    @staticmethod
    def _spread_file(shard: Shard, kind: str):
        hint = _ARRAY_HINT if kind == "array" else "JSON Lines needs one object per line (e.g. `jq -c .`)"
        return dead_letter(shard.path, 0, "schema_error", f"found a JSON {kind} spread over lines: {hint}", STAGE)

    @staticmethod
    def _line_start(f: BinaryIO, start: int, stop: int) -> int | None:
        """First line beginning in [start, stop), or None (a range starting mid-line leaves that line to its owner;
        looking past `stop` made every range inside one long line scan to its end: quadratic in the line)."""
        if start == 0:
            return 0
        f.seek(start - 1)
        pos = start - 1
        while pos < stop - 1 and (chunk := f.read(min(1 << 16, stop - 1 - pos))):
            i = chunk.find(b"\n")
            if i >= 0:
                return pos + i + 1
            pos += len(chunk)
        return None

"""JSONL / NDJSON reading (plain, .gz, .zst) with a dead letter per bad line and byte offsets per record.

Plain files split by byte range (a line belongs to the range holding its first byte); compressed files are read
as one unit, and the offsets they report are offsets into the decompressed stream.
"""
from __future__ import annotations

import json
import zlib
from typing import BinaryIO, Iterator

import apache_beam as beam
import zstandard

from transforms.accounting import count, dead_letter, drop
from transforms.document import fallback_id, from_record
from transforms.io.files import ByteRanges, Shard, open_raw

STAGE = "read_jsonl"
_BLOCK = 1 << 20


class StreamError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _decoded_blocks(f: BinaryIO, make, errors: tuple, reason: str) -> Iterator[bytes]:
    """Decompressed blocks of a multi-member gzip or multi-frame zstd stream; damage raises StreamError."""
    d, pending = make(), False
    while True:
        chunk = f.read(_BLOCK)
        if not chunk:
            if pending and not d.eof:
                raise StreamError("truncated", "compressed stream ends inside a member or frame")
            return
        while chunk:
            pending = True
            try:
                yield d.decompress(chunk)
            except errors as e:
                raise StreamError(reason, str(e)) from None
            if not d.eof:
                break
            chunk, d, pending = d.unused_data, make(), False


def _gunzip_blocks(f: BinaryIO) -> Iterator[bytes]:
    return _decoded_blocks(f, lambda: zlib.decompressobj(31), (zlib.error,), "gzip_error")


def _zstd_blocks(f: BinaryIO) -> Iterator[bytes]:
    return _decoded_blocks(f, lambda: zstandard.ZstdDecompressor().decompressobj(), (zstandard.ZstdError,),
                           "zstd_error")


def _plain_blocks(f: BinaryIO, start: int) -> Iterator[bytes]:
    f.seek(start)
    while chunk := f.read(_BLOCK):
        yield chunk


def iter_lines(blocks: Iterator[bytes], start: int = 0) -> Iterator[tuple[int, bytes | StreamError]]:
    """(offset, line) pairs; a broken stream ends with (offset of the first unread byte, StreamError)."""
    buf = b""
    pos = start
    try:
        for block in blocks:
            buf += block
            lines = buf.split(b"\n")
            buf = lines.pop()
            for line in lines:
                yield pos, line
                pos += len(line) + 1
    except StreamError as e:
        yield pos, e
        return
    if buf:
        yield pos, buf


def line_to_output(line: bytes, shard: Shard, offset: int, limit: int):
    if len(line) > limit:
        return drop(fallback_id(shard.path, offset), "too_large", shard.path, offset, f"{len(line)} bytes")
    try:
        obj = json.loads(line)
    except UnicodeDecodeError as e:
        return dead_letter(shard.path, offset, "decode_error", e, STAGE)
    except ValueError as e:
        return dead_letter(shard.path, offset, "json_error", e, STAGE)
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return dead_letter(shard.path, offset, "schema_error", "JSON line is not an object with a string `text`",
                           STAGE)
    doc = from_record(obj, shard.path, offset)
    if not doc.text.strip():
        return drop(doc.id, "empty_text", shard.path, offset)
    return doc


class _LineRanges(ByteRanges):
    """Plain files split on line boundaries; compressed streams are read whole."""

    def splittable(self, shard: Shard) -> bool:
        return not shard.path.lower().endswith((".gz", ".zst"))


class ReadJsonlFn(beam.DoFn):
    def __init__(self, max_document_bytes: int):
        self._limit = max_document_bytes

    def process(self, shard: Shard, tracker=beam.DoFn.RestrictionParam(_LineRanges())):
        start = tracker.current_restriction().start
        lower = shard.path.lower()
        try:
            f = open_raw(shard.path)
        except Exception as e:
            if tracker.try_claim(start):
                count("records_read")
                yield dead_letter(shard.path, 0, "read_error", e, STAGE)
            tracker.try_claim(shard.size + 1)
            return
        with f:
            compressed = lower.endswith((".gz", ".zst"))
            if compressed:
                # Offsets are into the decompressed stream: the range is claimed once, as a whole.
                if not tracker.try_claim(0):
                    return
                blocks, first = (_gunzip_blocks if lower.endswith(".gz") else _zstd_blocks)(f), 0
            else:
                first = self._line_start(f, start)
                blocks = _plain_blocks(f, first)
            for pos, line in iter_lines(blocks, first):
                if not compressed and not tracker.try_claim(pos):
                    return
                if isinstance(line, StreamError):
                    count("records_read")
                    yield dead_letter(shard.path, pos, line.reason, f"{line}; the rest of the file is unreadable",
                                      STAGE)
                    break
                if not line.strip():
                    continue
                count("records_read")
                yield line_to_output(line.rstrip(b"\r"), shard, pos, self._limit)
        tracker.try_claim(shard.size + 1)

    @staticmethod
    def _line_start(f: BinaryIO, start: int) -> int:
        """First line beginning at or after `start` (a range starting mid-line leaves that line to its owner)."""
        if start == 0:
            return 0
        f.seek(start - 1)
        pos = start - 1
        while chunk := f.read(1 << 16):
            i = chunk.find(b"\n")
            if i >= 0:
                return pos + i + 1
            pos += len(chunk)
        return pos

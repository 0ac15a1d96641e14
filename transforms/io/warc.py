"""WARC and WET reading as a splittable DoFn over gzip members, record by record with bounded memory.

Work is split by compressed byte ranges: a record belongs to the range holding the offset of its gzip member, so
every record is read exactly once however the file is split (statically or by the runner's dynamic splitting). A
corrupt region belongs to the range whose last member ends where the region begins. A member is decompressed as a
stream and read record by record, so a file made by `gzip crawl.warc` (one member) keeps every record, but it is
one unit of work. Uncompressed WARC files are read whole (their record boundaries cannot be found without parsing
from the start). Inside a member or a plain file, a record whose Content-Length does not land on the next record
is a dead letter for the bytes up to the next `WARC/` line, where reading resumes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Optional, Union
from urllib.parse import urlsplit

import apache_beam as beam

from transforms.accounting import dead_letter, drop
from transforms.dates import normalise_date, unparsed_key
from transforms.document import Document, fallback_id
from transforms.io.files import ByteRanges, Shard
from transforms.io.gzip_members import (ByteStream, FileWindow, MemberStream, PlainStream, StreamError, find_member,
                                        is_gzip, looks_like_member, zeros_to_end)
from transforms.io.html import ExtractBudgetExceeded, is_text_mime, looks_binary, read_page
from transforms.io.http import HttpError, PayloadTooLarge, parse_response
from transforms.io.reader import ShardReader
from transforms.io.record import emitted

STAGE = "read_warc"
_CRAWL_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
_TEXT_RECORDS = ("response", "conversion")
_LENGTH = re.compile(rb"[0-9]{1,19}")  # ASCII digits only: str.isdigit() accepts "\u00b2", int() does not
MAX_HEADER_BYTES = 1 << 20  # a WARC header longer than this is not a header
_HEADER_STEPS = (4096, 65536, MAX_HEADER_BYTES)


class WarcFormatError(ValueError):
    reason = "warc_header_error"


@dataclass
class WarcRecord:
    start: int  # of the record in its stream (the decompressed member, or the plain file)
    headers: dict[str, str]  # lower-cased names
    length: int  # Content-Length
    block: Optional[bytes]  # None when the block is over the reader's limit (it was skipped, not held)


@dataclass
class BadRegion:
    """Bytes of a stream that hold no readable record: [start, end), end None = to the end of the stream."""

    start: int
    end: Optional[int]
    reason: str
    message: str


def _parse_header(head: bytes) -> tuple[dict[str, str], int]:
    """Headers and Content-Length of a header block (the bytes before its blank line)."""
    lines = head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "").encode("utf-8", "replace")
    if not _LENGTH.fullmatch(length):
        raise WarcFormatError(f"missing or invalid Content-Length {headers.get('content-length', '')[:40]!r}")
    if not headers.get("warc-type"):
        raise WarcFormatError("missing WARC-Type")
    return headers, int(length)


def _skip_blank(stream: ByteStream) -> bool:
    """Moves past CR/LF between records; False at the end of the stream."""
    while True:
        head = stream.peek(64)
        if not head:
            return False
        rest = head.lstrip(b"\r\n")
        stream.pos += len(head) - len(rest)
        if rest:
            return True


def _at_boundary(stream: ByteStream) -> bool:
    """True when the block just read ends where its record should: at the record trailer (CRLF CRLF), or where
    the next record or the stream begins after blank lines (some writers vary the trailer). Bytes after a
    trailer that are not a record are the next bad region's, not this record's."""
    if stream.peek(4) == b"\r\n\r\n" or stream.peek(2) == b"\n\n":
        return True
    return _skip_blank(stream) is False or stream.peek(5) == b"WARC/"


def _line_starts(data: bytes, prefix: bytes = b"WARC/") -> list[int]:
    """Offsets in `data` (after 0) of the lines that start with `prefix`."""
    needle, out, i = b"\n" + prefix, [], data.find(b"\n" + prefix)
    while i >= 0:
        out.append(i + 1)
        i = data.find(needle, i + 1)
    return out


def _doomed_headers(stream: ByteStream, start: int, head: bytes, end: int) -> list[tuple[int, str]]:
    """The `WARC/` lines after `start` whose headers fail as surely as the one at `start` did, each with its
    message, in stream order; the one after the last of them is left to be read as usual. Each such line, tried
    on its own, looked at up to MAX_HEADER_BYTES again: a stretch of short `WARC/` lines cost quadratic time (a
    100 KB file, 21 s; 1 MB, half an hour). Their outcomes are those trying each would give, found in one pass.

    `end` >= 0: the header at `start` ends there (it is bad): a later line before `end` ends there too, so its
    header is the rest of those lines, and it fails when that rest lacks a valid Content-Length or WARC-Type.
    `end` < 0: no end within MAX_HEADER_BYTES: so it is for a later line while the first end after it lies as far."""
    if end >= 0:
        pieces = head[:end].split(b"\n")  # the lines `_parse_header` reads, found on the raw bytes with their offsets
        fields, offsets, at = [], [], 0
        for k, piece in enumerate(pieces):
            offsets.append(at)
            at += len(piece) + 1
            line = (piece[:-1] if k < len(pieces) - 1 and piece.endswith(b"\r") else piece).decode("utf-8", "replace")
            name, colon, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()) if colon else None)
        doomed, last = [], {}  # last: each name's value in the lines after the one at hand (the last one wins)
        for k in range(len(pieces) - 1, 0, -1):
            if pieces[k].startswith(b"WARC/"):
                length, wtype = last.get("content-length", ""), last.get("warc-type")
                if not _LENGTH.fullmatch(length.encode("utf-8", "replace")):
                    doomed.append((start + offsets[k], f"missing or invalid Content-Length {length[:40]!r}"))
                elif not wtype:
                    doomed.append((start + offsets[k], "missing WARC-Type"))
                else:
                    doomed.append(None)  # this one may be a record: stop before it
            if fields[k] is not None:
                last.setdefault(*fields[k])
        doomed.reverse()
        return doomed[:doomed.index(None)] if None in doomed else doomed
    stream.seek(start)
    wide = stream.peek(2 * MAX_HEADER_BYTES)
    ends = [e + n for e, n in ((wide.find(b"\r\n\r\n", MAX_HEADER_BYTES - 4), 4),
                               (wide.find(b"\n\n", MAX_HEADER_BYTES - 4), 2)) if e >= 0]
    first_end = min(ends) if ends else None
    doomed = []
    for at in _line_starts(wide[:MAX_HEADER_BYTES - 4]):
        if (first_end is not None and first_end > at + MAX_HEADER_BYTES) or (
                first_end is None and at + MAX_HEADER_BYTES <= len(wide)):
            doomed.append((start + at, f"no end of WARC header within {MAX_HEADER_BYTES} bytes"))
        else:
            break
    return doomed


def iter_records(stream: ByteStream, limit: int) -> Iterator[Union[WarcRecord, BadRegion]]:
    """Records in stream order; blocks over `limit` are skipped (block None), never held. A record whose header
    or Content-Length is wrong becomes a BadRegion up to the next `WARC/` line, where reading resumes.
    Damage in a compressed source raises StreamError."""
    while _skip_blank(stream):
        start = stream.mark = stream.pos  # the record's bytes stay at hand until the next record
        head, end, sep = b"", -1, 0
        for size in _HEADER_STEPS:
            head = stream.peek(size)
            end, sep = head.find(b"\r\n\r\n"), 4
            lf = head.find(b"\n\n")  # some writers end header lines with LF alone
            if lf >= 0 and (end < 0 or lf < end):
                end, sep = lf, 2
            if end >= 0 or len(head) < size:
                break
        problem = None
        if not head.startswith(b"WARC/"):
            problem = ("warc_header_error", f"record does not start with a WARC version line: {head[:40]!r}")
        elif end < 0 and len(head) < MAX_HEADER_BYTES:
            yield BadRegion(start, None, "truncated", "input ends inside a WARC header")
            return
        elif end < 0:
            problem = ("warc_header_error", f"no end of WARC header within {MAX_HEADER_BYTES} bytes")
        else:
            try:
                headers, length = _parse_header(head[:end])
            except WarcFormatError as e:
                problem = (e.reason, str(e))
        if problem is None:
            body = start + end + sep
            stream.seek(body)
            back = None
            if length <= limit:
                # the boundary first: a block whose length is wrong is not copied (a run of short records that
                # each claimed megabytes copied megabytes each)
                got = stream.available(length)
                if got == length:
                    stream.seek(body + length)
                    if _at_boundary(stream):
                        after = stream.pos
                        stream.seek(body)
                        block = stream.read(length)
                        stream.seek(after)
                        yield WarcRecord(start, headers, length, block)
                        continue
                stream.seek(body)
                block = None
            else:
                # not kept: coming back here, if the length is wrong, resumes from a checkpoint (seeking back
                # restarted a gzip member from its start: per record, so quadratic in the member's size)
                back = stream.checkpoint()
                stream.mark = None
                block, got = None, stream.skip(length)
            if back is not None and got == length and _at_boundary(stream):
                yield WarcRecord(start, headers, length, block)
                continue
            if back is not None:
                stream.restore(back)
            else:
                stream.seek(body)
        else:
            doomed = _doomed_headers(stream, start, head, end) if head.startswith(b"WARC/") else []
            if doomed:
                yield BadRegion(start, doomed[0][0], *problem)
                for (at, message), (nxt, _) in zip(doomed, doomed[1:]):
                    yield BadRegion(at, nxt, "warc_header_error", message)
                stream.mark = None
                stream.seek(doomed[-1][0])  # the last is read as usual: what follows it is not known here
                continue
            stream.seek(start)
        stream.mark = None
        nxt = stream.find_line(b"WARC/")
        if problem is None and nxt is None and got < length:
            problem = ("truncated", f"WARC record declares {length} bytes, {got} present")
        elif problem is None:
            where = f"the next record starts {nxt - body} bytes into the block" if nxt is not None else \
                "the input goes on past the block"
            problem = ("warc_header_error", f"Content-Length {length} does not end at a record boundary: {where}")
        yield BadRegion(start, nxt, *problem)
        if nxt is None:
            return
        stream.seek(nxt)


def _clean_uri(value: Optional[str]) -> Optional[str]:
    return value.strip("<>") if value else None


def crawl_id_from_warcinfo(block: bytes) -> Optional[str]:
    for line in block.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "ispartof" and value.strip():
            return value.strip()
    return None


def crawl_id_from_name(path: str) -> Optional[str]:
    m = _CRAWL_RE.search(path)
    return m.group(0) if m else None


def _domain(url: Optional[str]) -> Optional[str]:
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def _capture_date(value: Optional[str], metadata: dict[str, str]) -> Optional[str]:
    date, unparsed = normalise_date(value)
    if unparsed:
        metadata[unparsed_key("capture_date")] = value[:100]
    return date


def record_to_output(rec: WarcRecord, offset: int, shard: Shard, crawl_id: Optional[str], limit: int):
    """One WARC record -> exactly one of: a Document, a drop, a dead letter."""
    h = rec.headers
    rtype = h["warc-type"].lower()
    rid = _clean_uri(h.get("warc-record-id"))
    doc_id = rid or fallback_id(shard.path, offset)
    if rtype not in _TEXT_RECORDS:
        return drop(doc_id, "record_type_skipped", shard.path, offset, rtype)
    if rec.block is None:
        return drop(doc_id, "too_large", shard.path, offset, f"{rec.length} bytes")
    url = _clean_uri(h.get("warc-target-uri"))
    signals = None
    if rtype == "response":
        try:
            resp = parse_response(rec.block, limit)
        except PayloadTooLarge as e:
            return drop(doc_id, "too_large", shard.path, offset, str(e))
        except HttpError as e:
            return dead_letter(shard.path, offset, "http_error", e, STAGE)
        if not 200 <= resp.status < 300:
            return drop(doc_id, "http_not_ok", shard.path, offset, str(resp.status))
        if not is_text_mime(resp.mime):
            return drop(doc_id, "non_text_content", shard.path, offset, resp.mime)
        if looks_binary(resp.body):
            return drop(doc_id, "binary_content", shard.path, offset, resp.mime)
        try:
            text, signals = read_page(resp.body, resp.charset, resp.mime, resp.headers)
        except ExtractBudgetExceeded as e:
            return drop(doc_id, "html_too_complex", shard.path, offset, str(e))
        except Exception as e:  # resiliparse raises its own parser exceptions on hostile markup
            return dead_letter(shard.path, offset, "extract_error", e, STAGE)
    else:
        if looks_binary(rec.block):
            return drop(doc_id, "binary_content", shard.path, offset, "conversion")
        try:
            text = rec.block.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            return dead_letter(shard.path, offset, "decode_error", e, STAGE)
    if not text:
        return drop(doc_id, "empty_text", shard.path, offset)
    metadata: dict[str, str] = {}
    return emitted(Document(
        id=doc_id,
        text=text,
        source=shard.path,
        offset=offset,
        url=url,
        domain=_domain(url),
        warc_record_id=rid,
        refers_to=_clean_uri(h.get("warc-refers-to")),
        crawl_id=crawl_id,
        capture_date=_capture_date(h.get("warc-date"), metadata),
        language=h.get("warc-identified-content-language"),
        content_digest=h.get("warc-payload-digest") or h.get("warc-block-digest"),
        metadata=metadata,
        provenance=signals,
    ))


class _ByteRanges(ByteRanges):
    """Gzip files split (at member boundaries, see the module doc); uncompressed ones are read whole."""

    def splittable(self, shard: Shard) -> bool:
        return shard.path.lower().endswith(".gz")


class ReadWarcFn(ShardReader):
    """Reads response (WARC) and conversion (WET) records from the byte range it is given."""

    STAGE = STAGE

    def setup(self):
        self._crawl_ids: dict[str, Optional[str]] = {}

    def _crawl_id(self, f, shard: Shard, gz: bool) -> Optional[str]:
        if shard.path not in self._crawl_ids:
            found = None
            window = FileWindow(f)
            try:
                first = next(iter_records(MemberStream(window, 0) if gz else PlainStream(window), 1 << 20), None)
            except StreamError:
                first = None
            if isinstance(first, WarcRecord) and first.block is not None \
                    and first.headers["warc-type"].lower() == "warcinfo":
                found = crawl_id_from_warcinfo(first.block)
            self._crawl_ids[shard.path] = found or crawl_id_from_name(shard.path)
        return self._crawl_ids[shard.path]

    def process(self, shard: Shard, tracker=beam.DoFn.RestrictionParam(_ByteRanges())):
        yield from self.read_shard(shard, tracker)

    def read(self, f, shard: Shard, tracker):
        # by its bytes first: gzip named .warc is read as gzip, and an uncompressed WARC named .warc.gz (a file
        # gunzipped in place of its name) as plain, where it was one gzip_error dead letter for all its records
        gz = is_gzip(f) or (shard.path.lower().endswith(".gz") and self._peek(f, 0)[:5] != b"WARC/")
        crawl_id = self._crawl_id(f, shard, gz)
        if gz:
            yield from self._read_gzip(f, shard, tracker, tracker.current_restriction(), crawl_id)
        else:
            yield from self._read_plain(f, shard, tracker, crawl_id)

    def _emit(self, item, base: int, shard: Shard, crawl_id, member: Optional[int] = None):
        """A record or bad region of a stream whose byte 0 is at file offset `base` (a member's records are
        labelled with the member offset plus their position in the decompressed member)."""
        if isinstance(item, WarcRecord):
            return record_to_output(item, base + item.start, shard, crawl_id, self._limit)
        end = "the end" if item.end is None else item.end
        where = f" of the gzip member at {member} (decompressed)" if member is not None else ""
        return dead_letter(shard.path, base + item.start, item.reason,
                           f"{item.message}; skipped bytes {item.start}..{end}{where}", STAGE)

    def _read_gzip(self, f, shard: Shard, tracker, r, crawl_id):
        pos = 0 if r.start == 0 else find_member(f, r.start, stop=r.stop)  # none in this range: nothing is ours
        window = FileWindow(f)
        past_end = False
        while pos is not None and pos < shard.size:
            if past_end or not tracker.try_claim(pos):
                # Bytes right after this range's last member that do not start a WARC member are this range's
                # (the next range syncs past them): they are read exactly as an unsplit read would read them.
                if looks_like_member(self._peek(f, pos), 0, b"WARC/"):
                    return
                past_end = True
            member = MemberStream(window, pos)
            try:
                for item in iter_records(member, self._limit):
                    yield self._emit(item, pos, shard, crawl_id, pos)
                pos = member.finish()
            except StreamError as e:
                f.seek(pos)
                if zeros_to_end(f):  # NUL padding after the last member: nothing was lost there
                    break
                nxt = find_member(f, pos + 1)
                yield dead_letter(shard.path, pos, e.reason, f"{e}; {self._junk_message(pos, nxt, shard)}", STAGE)
                pos = nxt
        if not past_end:
            tracker.try_claim(shard.size + 1)

    @staticmethod
    def _peek(f, pos: int) -> bytes:
        f.seek(pos)
        return f.read(4096)

    @staticmethod
    def _junk_message(pos: int, nxt: Optional[int], shard: Shard) -> str:
        end = nxt if nxt is not None else shard.size
        return f"skipped bytes {pos}..{end} to the next readable member"

    def _read_plain(self, f, shard: Shard, tracker, crawl_id):
        """Uncompressed WARC: records are parsed in sequence from the start of the file, by the range holding it
        (a file named .gz is split into ranges: the others hold nothing)."""
        if tracker.current_restriction().start > 0 or not tracker.try_claim(0):
            tracker.try_claim(shard.size + 1)
            return
        for item in iter_records(PlainStream(FileWindow(f)), self._limit):
            yield self._emit(item, 0, shard, crawl_id)
        tracker.try_claim(shard.size + 1)

"""WARC and WET reading as a splittable DoFn over gzip members.

Work is split by compressed byte ranges: a record belongs to the range holding the offset of its gzip member, so
every record is read exactly once however the file is split (statically or by the runner's dynamic splitting). A
corrupt region belongs to the range whose last member ends where the region begins. Uncompressed WARC files are
read as one unit (their record boundaries cannot be found without parsing from the start).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Optional
from urllib.parse import urlsplit

import apache_beam as beam

from transforms.accounting import count, dead_letter, drop
from transforms.document import Document, RawRecord, fallback_id
from transforms.io.files import ByteRanges, Shard, open_raw
from transforms.io.gzip_members import MemberReader, looks_like_member, find_member, is_gzip, read_member
from transforms.io.html import decode_html, html_to_text, is_text_mime, looks_binary
from transforms.io.http import HttpError, parse_response

STAGE = "read_warc"
_CRAWL_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
_TEXT_RECORDS = ("response", "conversion")
_ISO_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class WarcFormatError(ValueError):
    reason = "warc_header_error"


class WarcTruncated(ValueError):
    reason = "truncated"


@dataclass
class WarcRecord:
    offset: int  # of the gzip member (or of the record itself in an uncompressed file)
    index: int  # position of the record inside its member
    headers: dict[str, str]  # lower-cased names
    block: bytes


def _parse_header(data: bytes, i: int) -> tuple[dict[str, str], int, int]:
    end = data.find(b"\r\n\r\n", i)
    if end < 0:
        raise WarcTruncated("input ends inside a WARC header") if len(data) - i < 65536 else WarcFormatError(
            "no end of WARC header")
    lines = data[i:end].decode("utf-8", "replace").split("\r\n")
    if not lines[0].startswith("WARC/"):
        raise WarcFormatError(f"record does not start with a WARC version line: {lines[0][:40]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "")
    if not length.isdigit():
        raise WarcFormatError("missing or invalid Content-Length")
    if not headers.get("warc-type"):
        raise WarcFormatError("missing WARC-Type")
    return headers, end + 4, int(length)


def iter_member_records(data: bytes, offset: int) -> Iterator[WarcRecord]:
    """The records in one decompressed member (usually exactly one)."""
    i, n, index = 0, len(data), 0
    while True:
        while i < n and data[i] in b"\r\n":
            i += 1
        if i >= n:
            return
        headers, start, length = _parse_header(data, i)
        if start + length > n:
            raise WarcTruncated(f"WARC record declares {length} bytes, {n - start} present")
        yield WarcRecord(offset, index, headers, data[start : start + length])
        i, index = start + length, index + 1


def _clean_uri(value: Optional[str]) -> Optional[str]:
    return value.strip("<>") if value else None


def normalise_date(value: Optional[str]) -> Optional[str]:
    """WARC dates as YYYY-MM-DDTHH:MM:SSZ (sub-seconds dropped) so they sort as strings."""
    if not value:
        return None
    if _ISO_SECONDS.fullmatch(value):
        return value
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"):
        try:
            dt = datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.strip()


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


def record_to_output(rec: WarcRecord, shard: Shard, crawl_id: Optional[str], limit: int):
    """One WARC record -> exactly one of: a Document, a drop, a dead letter."""
    h = rec.headers
    rtype = h["warc-type"].lower()
    rid = _clean_uri(h.get("warc-record-id"))
    doc_id = rid or fallback_id(shard.path, rec.offset, rec.index)
    if rtype not in _TEXT_RECORDS:
        return drop(doc_id, "record_type_skipped", shard.path, rec.offset, rtype)
    if len(rec.block) > limit:
        return drop(doc_id, "too_large", shard.path, rec.offset, f"{len(rec.block)} bytes")
    url = _clean_uri(h.get("warc-target-uri"))
    raw = None
    if rtype == "response":
        try:
            resp = parse_response(rec.block)
        except HttpError as e:
            return dead_letter(shard.path, rec.offset, "http_error", e, STAGE)
        if not 200 <= resp.status < 300:
            return drop(doc_id, "http_not_ok", shard.path, rec.offset, str(resp.status))
        if not is_text_mime(resp.mime):
            return drop(doc_id, "non_text_content", shard.path, rec.offset, resp.mime)
        if looks_binary(resp.body):
            return drop(doc_id, "binary_content", shard.path, rec.offset, resp.mime)
        try:
            text = html_to_text(decode_html(resp.body, resp.charset), resp.mime)
        except Exception as e:  # resiliparse raises its own parser exceptions on hostile markup
            return dead_letter(shard.path, rec.offset, "extract_error", e, STAGE)
        raw = RawRecord(resp.headers, resp.body)
    else:
        if looks_binary(rec.block):
            return drop(doc_id, "binary_content", shard.path, rec.offset, "conversion")
        try:
            text = rec.block.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            return dead_letter(shard.path, rec.offset, "decode_error", e, STAGE)
    if not text:
        return drop(doc_id, "empty_text", shard.path, rec.offset)
    return Document(
        id=doc_id,
        text=text,
        source=shard.path,
        offset=rec.offset,
        url=url,
        domain=_domain(url),
        warc_record_id=rid,
        refers_to=_clean_uri(h.get("warc-refers-to")),
        crawl_id=crawl_id,
        capture_date=normalise_date(h.get("warc-date")),
        language=h.get("warc-identified-content-language"),
        content_digest=h.get("warc-payload-digest") or h.get("warc-block-digest"),
        raw=raw,
    )


class _ByteRanges(ByteRanges):
    """Gzip files split (at member boundaries, see the module doc); uncompressed ones are read whole."""

    def splittable(self, shard: Shard) -> bool:
        return shard.path.lower().endswith(".gz")


class ReadWarcFn(beam.DoFn):
    """Reads response (WARC) and conversion (WET) records from the byte range it is given."""

    def __init__(self, max_document_bytes: int):
        self._limit = max_document_bytes

    def setup(self):
        self._crawl_ids: dict[str, Optional[str]] = {}

    def _crawl_id(self, f, shard: Shard, gz: bool) -> Optional[str]:
        if shard.path not in self._crawl_ids:
            found = None
            try:
                if gz:
                    m = read_member(f, 0, 1 << 20)
                    recs = iter_member_records(m.data, 0) if m.data else iter(())
                else:
                    f.seek(0)
                    recs = iter_member_records(f.read(1 << 16), 0)
                first = next(recs, None)
                if first is not None and first.headers["warc-type"].lower() == "warcinfo":
                    found = crawl_id_from_warcinfo(first.block)
            except (WarcFormatError, WarcTruncated):
                pass
            self._crawl_ids[shard.path] = found or crawl_id_from_name(shard.path)
        return self._crawl_ids[shard.path]

    def process(self, shard: Shard, tracker=beam.DoFn.RestrictionParam(_ByteRanges())):
        start = tracker.current_restriction().start
        try:
            f = open_raw(shard.path)
        except Exception as e:
            if tracker.try_claim(start):
                count("records_read")
                yield dead_letter(shard.path, 0, "read_error", e, STAGE)
            tracker.try_claim(shard.size + 1)
            return
        with f:
            gz = shard.path.lower().endswith(".gz") or is_gzip(f)
            crawl_id = self._crawl_id(f, shard, gz)
            if gz:
                yield from self._read_gzip(f, shard, tracker, start, crawl_id)
            else:
                yield from self._read_plain(f, shard, tracker, crawl_id)

    def _emit_member(self, data: bytes, offset: int, shard: Shard, crawl_id):
        try:
            for rec in iter_member_records(data, offset):
                count("records_read")
                yield record_to_output(rec, shard, crawl_id, self._limit)
        except (WarcFormatError, WarcTruncated) as e:
            count("records_read")
            yield dead_letter(shard.path, offset, e.reason, e, STAGE)

    def _read_gzip(self, f, shard: Shard, tracker, start: int, crawl_id):
        pos = 0 if start == 0 else find_member(f, start)
        members = MemberReader(f)
        while pos is not None and pos < shard.size:
            if not tracker.try_claim(pos):
                # A corrupt region right after this range's last member is this range's to report: the next
                # range syncs past it.
                if not looks_like_member(self._peek(f, pos), 0, b"WARC/"):
                    nxt = find_member(f, pos + 1)
                    count("records_read")
                    yield dead_letter(shard.path, pos, "gzip_error", self._junk_message(pos, nxt, shard), STAGE)
                return
            m = members.read(pos, self._limit)
            if m.error:
                nxt = find_member(f, pos + 1)
                count("records_read")
                yield dead_letter(shard.path, pos, m.error, f"{m.message}; {self._junk_message(pos, nxt, shard)}",
                                  STAGE)
                pos = nxt
                continue
            if m.oversize:
                count("records_read")
                yield drop(fallback_id(shard.path, pos), "too_large", shard.path, pos, "member over limit")
            else:
                yield from self._emit_member(m.data, pos, shard, crawl_id)
            pos = m.end
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
        """Uncompressed WARC: records are parsed in sequence from the start of the file."""
        if not tracker.try_claim(0):
            return
        pos = 0
        while pos < shard.size:
            f.seek(pos)
            head = f.read(1 << 16)
            if not head.strip(b"\r\n"):
                break
            skip = len(head) - len(head.lstrip(b"\r\n"))
            pos += skip
            try:
                headers, body_start, length = _parse_header(head, skip)
            except (WarcFormatError, WarcTruncated) as e:
                count("records_read")
                yield dead_letter(shard.path, pos, e.reason, e, STAGE)
                break
            body_pos = pos - skip + body_start
            count("records_read")
            if length > self._limit:
                rid = _clean_uri(headers.get("warc-record-id")) or fallback_id(shard.path, pos)
                yield drop(rid, "too_large", shard.path, pos, f"{length} bytes")
            else:
                f.seek(body_pos)
                block = f.read(length)
                if len(block) < length:
                    yield dead_letter(shard.path, pos, "truncated",
                                      f"WARC record declares {length} bytes, {len(block)} present", STAGE)
                    break
                yield record_to_output(WarcRecord(pos, 0, headers, block), shard, crawl_id, self._limit)
            pos = body_pos + length
        tracker.try_claim(shard.size + 1)

"""Capture dates as UTC `YYYY-MM-DDTHH:MM:SSZ`, parsed from the formats crawls and exports carry, or None.

Dates are compared as strings downstream (survivorship, the pre-LLM era), which is only sound for this one form:
anything that cannot be read as a real instant becomes None (and the caller counts why), never a raw string.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_tz
from typing import Optional

PRE_LLM_CUTOFF = "2022-11-30"  # ChatGPT's public release: pages captured before it are taken as human-written
UNDATED = "~"  # sorts after every ISO date: an undated copy is never "seen first"
UNPARSED = "capture_date_unparsed"  # Beam counter and summary key: documents read with an unreadable date
DATE_FIELDS = ("capture_date", "first_seen", "last_seen")


def unparsed_key(field: str) -> str:
    """The Document.metadata key that keeps a date field's unreadable value (truncated to 100 characters)."""
    return f"{field}_unparsed"


def has_unparsed_date(doc) -> bool:
    """A Document whose date was read but not understood: the field is null and the raw value kept. A foreign
    record's own field of that name beside a readable date is only metadata, and is not counted."""
    return any(getattr(doc, name) is None and unparsed_key(name) in doc.metadata for name in DATE_FIELDS)


def seen_date(doc) -> str:
    """When a document's text was first seen: its cluster's `first_seen`, else its own capture date, else
    UNDATED. Survivorship and the refresh index order copies by it (an ISO string, so comparable as text)."""
    return doc.first_seen or doc.capture_date or UNDATED


def last_seen_date(doc) -> Optional[str]:
    """When a document's text was last seen: its cluster's `last_seen`, else its own capture date (None when
    undated: an undated copy never moves it)."""
    return doc.last_seen or doc.capture_date


def later_date(a: Optional[str], b: Optional[str]) -> Optional[str]:
    """The later of two dates, either of which may be None (undated: never the latest)."""
    return a if b is None or (a is not None and a > b) else b


def as_first_seen(date: str) -> Optional[str]:
    """The `first_seen` field for a seen date: None when undated."""
    return None if date == UNDATED else date


def is_pre_llm(date: Optional[str]) -> Optional[bool]:
    """Seen before PRE_LLM_CUTOFF; None when the date is unknown (UNDATED sorts after it: False)."""
    return None if not date else date < PRE_LLM_CUTOFF


_MIN_YEAR, _MAX_YEAR = 1991, 2100  # no web page was captured before 1991
_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,]\d+)?)?)?\s*(Z|UTC|GMT|[+-]\d\d(?::?\d\d)?)?",
    re.IGNORECASE)
_CANONICAL = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")
_COMPACT = re.compile(r"(\d{4})(\d\d)(\d\d)(?:(\d\d)(\d\d)(\d\d)?)?")  # 20240601, 20240601100000 (ARC, CDX)
_SLASHED = re.compile(r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})")  # 15/06/2024, 15.06.2024 (day first unless impossible)
_YEAR_FIRST = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})")
_PARTIAL = re.compile(r"(\d{4})(?:-(\d\d))?")  # 2021, 2022-11: read as their last instant (see _last_instant)


_MAX_OFFSET = timedelta(hours=24)  # zone offsets are under a day (RFC 3339: hours 00-23, minutes 00-59)


def _offset(tz: Optional[str]) -> Optional[timedelta]:
    """The zone offset, or None when it is no real one (`+99:00` would move the date, and the era, by days)."""
    if not tz or tz.upper() in ("Z", "UTC", "GMT"):
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return None if hours > 23 or minutes > 59 else sign * timedelta(hours=hours, minutes=minutes)


def _instant(y, mo, d, h=0, mi=0, s=0, offset=timedelta(0)) -> Optional[datetime]:
    if offset is None or abs(offset) >= _MAX_OFFSET:
        return None
    try:
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=timezone.utc)
    except ValueError:
        return None
    return dt - offset


def _last_instant(y, mo) -> Optional[datetime]:
    """The last second a year or month names. A partial date is only an upper bound on the capture, so the pre-LLM
    era never claims a page it might not own: `2022-11` may be the 30th, and is not before the cut-off."""
    year, month = int(y), int(mo or 12)
    if not (_MIN_YEAR <= year <= _MAX_YEAR and 1 <= month <= 12):
        return None
    following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
    return following - timedelta(seconds=1)


def _parse(value: str) -> Optional[datetime]:
    if m := _CANONICAL.fullmatch(value):  # the common case, already in the output form
        return _instant(*m.groups())
    if m := _ISO.fullmatch(value):
        return _instant(*m.groups()[:6], offset=_offset(m.group(7)))
    if m := _COMPACT.fullmatch(value):
        return _instant(*m.groups())
    if m := _YEAR_FIRST.fullmatch(value):
        return _instant(*m.groups())
    if m := _PARTIAL.fullmatch(value):
        return _last_instant(*m.groups())
    if m := _SLASHED.fullmatch(value):
        a, b, y = (int(g) for g in m.groups())
        if a > 12 >= b or a == b:
            return _instant(y, b, a)
        if b > 12 >= a:
            return _instant(y, a, b)
        return None  # 06/07/2024: day or month first cannot be told apart
    if any(c.isalpha() for c in value):  # RFC 1123 / 850 / asctime: "Sat, 01 Jun 2024 10:00:00 GMT"
        try:
            parts = parsedate_tz(value)
        except (TypeError, ValueError, IndexError):
            return None
        if parts is None or parts[0] < 1000:
            return None
        return _instant(*parts[:6], offset=timedelta(seconds=parts[9] or 0))
    return None


def normalise_date(value) -> tuple[Optional[str], bool]:
    """(date as `YYYY-MM-DDTHH:MM:SSZ` or None, whether a non-empty value could not be read)."""
    if value is None:
        return None, False
    if not isinstance(value, str):
        return None, True
    text = value.strip()
    if not text:
        return None, False
    dt = _parse(text)
    if dt is None or not _MIN_YEAR <= dt.year <= _MAX_YEAR:
        return None, True
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}Z", False

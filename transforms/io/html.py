"""HTML to main text and declared signals with resiliparse, from one parse per page: fast, maintained, and keeps
paragraph breaks for shingling and scoring.

Main-content extraction costs about (elements x their depth): unclosed `<div><span><b><i>` nesting makes a 340 KB
page take 40 s. Before extracting, a linear scan of the tags estimates that work; a page over the budget is not
extracted (the reader drops it as `html_too_complex`). The budget counts work, not time, so the outcome is the
same on every machine.
"""
from __future__ import annotations

import codecs
import re

from typing import Iterable

import numpy as np
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree

from transforms.accounting import count
from transforms.document import Provenance
from transforms.io.signals import page_signals

_TEXT_MIMES = ("text/html", "application/xhtml+xml", "text/plain", "")


def is_text_mime(mime: str) -> bool:
    return mime in _TEXT_MIMES


_CONTROL = bytes([*range(0, 9), *range(14, 32)])


def looks_binary(payload: bytes) -> bool:
    """True for payloads with NUL bytes or over 10% control bytes in their first 4 KiB."""
    head = payload[:4096]
    if b"\x00" in head:
        return True
    ctrl = len(head) - len(head.translate(None, _CONTROL))
    return ctrl * 10 > len(head)


# Python text codecs no web page may declare (the WHATWG Encoding Standard has none of them) that turn bytes into
# lone surrogates, which the HTML parser and every UTF-8 writer refuse: the page was lost to a misleading error.
_SURROGATE_CODECS = frozenset({"utf-7", "unicode-escape", "raw-unicode-escape"})


def _declared(charset: str | None) -> str | None:
    """The declared charset when Python has a text codec of that name that cannot make lone surrogates; else None
    (the encoding is detected, as browsers do for a label they do not know)."""
    if not charset:
        return None
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):  # ValueError: a name with a NUL in it
        return None
    # bytes-to-bytes codecs (rot13, zlib, base64) are no text encoding: what bytes.decode itself checks
    return charset if getattr(info, "_is_text_encoding", True) and info.name not in _SURROGATE_CODECS else None


def decode_html(payload: bytes, charset: str | None) -> str:
    encoding = _declared(charset) or detect_encoding(payload)
    try:
        return bytes_to_str(payload, encoding)
    except LookupError:
        return bytes_to_str(payload, detect_encoding(payload))


MAX_DEPTH = 1024  # element nesting no real page needs (browsers render far less deep)
MAX_WORK = 20_000_000  # sum over elements of their depth: about half a second of extraction
# Elements that never hold children, or whose end tag is optional (the parser closes them by itself).
_FLAT = (
    "area base br col embed hr img input link meta param source track wbr keygen command basefont bgsound frame "
    "p li dt dd tr td th option optgroup thead tbody tfoot colgroup caption rb rt rtc rp html head body "
    "script style").split()
# "<" or "</" of every other start or end tag, in a lower-cased page.
_NESTING_TAG = re.compile(r"(</?)(?!(?:" + "|".join(_FLAT) + r")[\s/>])[a-z]")


class ExtractBudgetExceeded(ValueError):
    """The page's markup is too deep or too large to extract within the per-record work budget."""


def check_budget(html: str) -> None:
    """Raises ExtractBudgetExceeded when the tag nesting estimate is over MAX_DEPTH or MAX_WORK."""
    tags = html.count("<")
    if tags <= MAX_DEPTH and tags * tags // 2 <= MAX_WORK:  # too few tags to nest deep or cost much
        return
    marks = np.frombuffer("".join(_NESTING_TAG.findall(html.lower())).encode(), dtype=np.uint8)
    if not len(marks):
        return
    opens = np.flatnonzero(marks == ord("<"))
    closing = np.zeros(len(opens), dtype=bool)
    inside = opens + 1 < len(marks)
    closing[inside] = marks[opens[inside] + 1] == ord("/")
    level = np.cumsum(np.where(closing, -1, 1))
    depth = level - np.minimum(np.minimum.accumulate(level), 0)  # a stray end tag never goes below zero
    deepest, work = int(depth.max()), int(depth.sum())
    if deepest > MAX_DEPTH or work > MAX_WORK:
        raise ExtractBudgetExceeded(f"markup nesting {deepest} deep, extraction work {work} "
                                    f"(limits {MAX_DEPTH} and {MAX_WORK})")


def read_page(body: bytes, charset: str | None, mime: str, http_headers: Iterable[tuple[str, str]]
              ) -> tuple[str, Provenance]:
    """(main text, page signals) of an HTTP response payload, from a single HTML parse.

    Raises ExtractBudgetExceeded (the caller drops the page) or the parser's own errors (a dead letter). Signals
    that fail on hostile markup leave the page "not observable" and are counted; the text is kept."""
    html = decode_html(body, charset)
    plain = mime == "text/plain"
    if not plain:
        check_budget(html)
    tree = HTMLTree.parse(html)
    try:
        signals = Provenance(html_observable=True, **page_signals(http_headers, html, tree))
    except Exception:  # a signal reader tripping over markup must not cost the page its text
        count("provenance_unparseable_html")
        signals = Provenance(html_observable=False)
    if plain:
        return html.strip(), signals
    return extract_plain_text(tree, preserve_formatting=True, main_content=True).strip(), signals

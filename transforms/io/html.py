"""HTML to main text with resiliparse: fast, maintained, and keeps paragraph breaks for shingling and scoring."""
from __future__ import annotations

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree

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


def decode_html(payload: bytes, charset: str | None) -> str:
    encoding = charset or detect_encoding(payload)
    try:
        return bytes_to_str(payload, encoding)
    except LookupError:
        return bytes_to_str(payload, detect_encoding(payload))


def html_to_text(html: str, mime: str = "text/html") -> str:
    if mime == "text/plain":
        return html.strip()
    return extract_plain_text(HTMLTree.parse(html), preserve_formatting=True, main_content=True).strip()

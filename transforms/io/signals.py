"""Machine-readable declarations a page makes about itself, read from HTTP headers and the HTML tree the reader
parses for text extraction (one parse per page; see `html.read_page`).

Null means "not observable" (WET, JSONL and Parquet records carry no headers or HTML), never "absent". When a
TDM signal appears in both the HTTP header and a <meta> tag and they disagree, the header wins: it is set by the
server for the resource as delivered (TDMRep gives HTTP headers precedence over HTML), and both raw values are
kept. Several <meta> tags of one name: the most restrictive value counts (any 1 reserves).
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Optional

from resiliparse.parse.html import HTMLTree

AI_SOURCE_TYPES = ("trainedalgorithmicmedia", "compositewithtrainedalgorithmicmedia")
# The three XMP forms (attribute, element text, rdf:resource) each start right after the name, and the gap before
# rdf:resource is bounded: a leading \s* shared by all three, with an unbounded gap, made every occurrence of the name
# rescan the rest of the page (a 120 KB page of names took 16 s; 16 MB, days). Now linear in the page.
_XMP_RE = re.compile(r"Iptc4xmpExt:DigitalSourceType(?:\s*=\s*[\"']|\s*>\s*|[^>]{0,200}?rdf:resource\s*=\s*[\"'])"
                     r"\s*([^\"'<\s]+)", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[\s,;]+")

def _tdm_value(raw: Optional[str]) -> Optional[int]:
    """1 = reserved, 0 = not reserved; anything else is unset."""
    if raw is None:
        return None
    value = raw.strip()
    return int(value) if value in ("0", "1") else None


def _strictest(values: Iterable[Optional[int]]) -> Optional[int]:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _robots_tokens(values: Iterable[str]) -> set[str]:
    tokens = set()
    for v in values:
        for part in v.split(","):
            part = part.strip().lower()
            if ":" in part and not part.startswith(("noai", "noimageai")):
                part = part.split(":", 1)[1].strip()  # "otherbot: noai" applies to that bot: still a declaration
            tokens.update(t for t in _TOKEN_RE.split(part) if t)
    return tokens


def _source_types(obj: Any) -> Iterable[str]:
    """Every digitalSourceType value in a JSON-LD block, in document order, walked without recursion (a block
    nested as deep as the JSON parser allows must not raise, or the page would lose every other signal)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in reversed(list(item.items())):
                if k.lower() == "digitalsourcetype":
                    stack.append(("found", v))
                else:
                    stack.append(v)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, tuple):  # a value found under digitalSourceType
            v = item[1]
            yield from (str(x) for x in (v if isinstance(v, list) else [v]))


def _is_ai_type(value: str) -> bool:
    tail = value.rstrip("/").rsplit("/", 1)[-1].lower()
    tail = tail.removesuffix("digitalsource")
    return tail in AI_SOURCE_TYPES


def page_signals(http_headers: Iterable[tuple[str, str]], text: str, tree: Optional[HTMLTree] = None
                 ) -> dict[str, Any]:
    """The declared signals (Provenance field names) of a page's decoded HTML, parsed here unless `tree` is given."""
    headers = [(k.strip().lower(), v) for k, v in http_headers]
    tree = tree if tree is not None else HTMLTree.parse(text)
    head = tree.head if tree.head is not None else tree.document
    metas: dict[str, list[str]] = {}
    for m in head.query_selector_all("meta") if head is not None else []:
        name = (m.getattr("name") or "").strip().lower()
        if name:
            metas.setdefault(name, []).append(m.getattr("content") or "")

    tdm_header = _strictest(_tdm_value(v) for k, v in headers if k == "tdm-reservation")
    tdm_meta = _strictest(_tdm_value(v) for v in metas.get("tdm-reservation", []))
    policy_header = next((v.strip() for k, v in headers if k == "tdm-policy" and v.strip()), None)
    policy_meta = next((v.strip() for v in metas.get("tdm-policy", []) if v.strip()), None)
    robots = _robots_tokens(metas.get("robots", []) + [v for k, v in headers if k == "x-robots-tag"])

    source_types: list[str] = []
    for s in head.query_selector_all("script") if head is not None else []:
        if (s.getattr("type") or "").strip().lower() == "application/ld+json":
            try:
                source_types += list(_source_types(json.loads(s.text)))
            except (ValueError, RecursionError):  # a block nested too deep to parse is skipped like a broken one:
                continue  # raising here cost the page every signal (a `noai` page was no longer opted out)
    source_types += _XMP_RE.findall(text)
    ai_types = [t for t in source_types if _is_ai_type(t)]

    c2pa = False
    for s in head.query_selector_all("script") if head is not None else []:
        c2pa |= (s.getattr("type") or "").strip().lower() == "application/c2pa"
    for link in head.query_selector_all("link") if head is not None else []:
        c2pa |= "c2pa-manifest" in (link.getattr("rel") or "").lower().split()
    generator = next((g.strip() for g in metas.get("generator", []) if g.strip()), None)
    return {
        "tdm_reservation": tdm_header if tdm_header is not None else tdm_meta,
        "tdm_reservation_header": tdm_header,
        "tdm_reservation_meta": tdm_meta,
        "tdm_policy": policy_header or policy_meta,
        "robots_noai": "noai" in robots,
        "robots_noimageai": "noimageai" in robots,
        "digital_source_type": (ai_types or source_types or [None])[0],
        "declared_ai": bool(ai_types),
        "c2pa_manifest": c2pa,
        "generator": generator,
    }

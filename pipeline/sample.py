"""The embedded sample crawl: two Common Crawl-style snapshots built offline, deterministically.

Human text comes from what every CPython ships (the pydoc topics and the standard library's docstrings), AI text
from `sample_data/llm_written.jsonl` (written by a language model for this repository and labelled so). Planted on
purpose: exact re-crawls and near-duplicates of 2022 pages in the 2024 snapshot, declared signals on some pages,
and malformed records in a shard of their own. `sample_manifest.json` lists what was planted.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import html
import importlib
import inspect
import io
import json
import random
import sys
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import resources
from pathlib import Path

from apache_beam.io.filesystems import FileSystems
from pydoc_data.topics import topics

from pipeline.options import UserError
from transforms.dedup.minhash import jaccard
from transforms.io.commit import OutputClaimError, refuse_inside_an_output
from transforms.io.write import write_bytes

SEED = 20221130
_SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip",
                 "venv", "pydoc", "test", "idle", "webbrowser"}
_DOMAINS = [f"{name}.example" for name in (
    "pydocs-mirror", "devnotes", "codebook", "snakepit", "refguide", "stdlib-notes", "learnpy", "py-handbook",
    "manualpages", "tutorialhub", "bytesized", "docs-archive")]
_AI_DOMAINS = ("contentfarm.example", "quickguides.example", "insightful-blog.example")
SNAPSHOTS = (("CC-MAIN-2022-05", date(2022, 1, 16)), ("CC-MAIN-2024-10", date(2024, 2, 20)))
SHARDS_PER_SNAPSHOT = 4


@dataclass
class Page:
    url: str
    title: str
    text: str
    kind: str  # human | ai
    date: str  # YYYY-MM-DD
    head: list[str] = field(default_factory=list)  # extra <head> markup (declared signals)
    http_headers: list[tuple[str, str]] = field(default_factory=list)


def _docstrings() -> list[str]:
    """Docstrings of the standard library's modules, classes, functions and methods, in a fixed order."""
    out = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIP_MODULES:
            continue
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                mod = importlib.import_module(name)
        except Exception:  # platform-specific modules (winreg, msvcrt, ...) are simply absent
            continue
        out.append(inspect.getdoc(mod) or "")
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr)
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            out.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                out += [inspect.getdoc(m) or "" for k, m in sorted(vars(obj).items())
                        if not k.startswith("_") and callable(m)]
    return out


def human_paragraphs() -> list[str]:
    """Distinct paragraphs of 25+ words from the pydoc topics and the stdlib docstrings, in a fixed order."""
    seen, out = set(), []
    for src in [topics[k] for k in sorted(topics)] + _docstrings():
        for para in src.split("\n\n"):
            para = " ".join(para.split())
            if len(para.split()) >= 25 and para not in seen:
                seen.add(para)
                out.append(para)
    return out


def llm_written() -> list[dict]:
    data = resources.files("pipeline").joinpath("sample_data/llm_written.jsonl").read_text()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _shingles(text: str, n: int = 5) -> set:
    w = text.lower().split()
    return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}


def _similarity(a: str, b: str) -> float:
    return jaccard(_shingles(a), _shingles(b))


def near_duplicate(text: str, rng: random.Random) -> str:
    """A light edit (about one word in 150 replaced, a dated footer line): a mirror or a lightly updated copy."""
    words = text.split()
    for _ in range(max(1, len(words) // 150)):
        i = rng.randrange(len(words))
        words[i] = rng.choice(("the", "a", "this", "that", "its", "value", "object"))
    return " ".join(words) + "\n\nLast updated: March 2024."


def _ai_markup(rng: random.Random) -> list[str]:
    return rng.choice([
        ['<meta name="generator" content="AutoWriter AI 3.2">'],
        ['<script type="application/ld+json">{"@context": "https://schema.org", "@type": "Article", '
         '"digitalSourceType": "https://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}'
         '</script>'],
        ['<link rel="c2pa-manifest" href="/manifest.c2pa">'],
        [],
    ])


def build_pages() -> tuple[dict[str, list[Page]], dict]:
    rng = random.Random(SEED)
    paras = human_paragraphs()
    docs = []
    i = 0
    while i < len(paras):
        k = rng.choice((1, 1, 2, 3))
        docs.append("\n\n".join(paras[i : i + k]))
        i += k
    rng.shuffle(docs)
    n_old = len(docs) * 55 // 100
    old_docs, new_docs = docs[:n_old], docs[n_old:]

    def day(start: date, n: int) -> str:
        return (start + timedelta(days=n % 14)).isoformat()

    def human_page(text, n, start):
        domain = _DOMAINS[n % len(_DOMAINS)]
        title = " ".join(text.split()[:6])
        page = Page(f"https://{domain}/page/{n:05d}", title, text, "human", day(start, n))
        if n % 41 == 0:
            page.head.append('<meta name="tdm-reservation" content="1">')
        if n % 53 == 0:
            page.http_headers.append(("X-Robots-Tag", "noai, noimageai"))
        if n % 37 == 0:
            page.head.append('<meta name="generator" content="Sphinx 4.3.2">')
        return page

    crawls: dict[str, list[Page]] = {}
    (old_id, old_start), (new_id, new_start) = SNAPSHOTS
    old_pages = [human_page(t, n, old_start) for n, t in enumerate(old_docs)]
    crawls[old_id] = old_pages
    new_pages = [human_page(t, n_old + n, new_start) for n, t in enumerate(new_docs)]
    planted = {"exact_recrawl": [], "near_duplicate": [], "ai": []}
    for n, src in enumerate(old_pages[: len(old_pages) // 10]):
        copy = Page(src.url, src.title, src.text, "human", day(new_start, n), list(src.head),
                    list(src.http_headers))
        new_pages.append(copy)
        planted["exact_recrawl"].append(src.url)
    long_pages = [p for p in old_pages[len(old_pages) // 10 :] if len(p.text.split()) >= 150]
    for n, src in enumerate(long_pages[: len(old_pages) // 12]):
        text = near_duplicate(src.text, rng)
        if _similarity(text, src.text) < 0.85:
            continue
        mirror = Page(src.url.replace("https://", "https://mirror."), src.title, text, "human", day(new_start, n))
        new_pages.append(mirror)
        planted["near_duplicate"].append([src.url, mirror.url])
    for n, rec in enumerate(llm_written()):
        for copy in range(2):
            domain = _AI_DOMAINS[(n + copy) % len(_AI_DOMAINS)]
            page = Page(f"https://{domain}/{rec['topic']}-{copy}", rec["topic"].replace("-", " ").title(),
                        rec["text"], "ai", day(new_start, n + copy), _ai_markup(rng))
            if copy:
                page.text = near_duplicate(rec["text"], rng)
            new_pages.append(page)
            planted["ai"].append(page.url)
    rng.shuffle(new_pages)
    crawls[new_id] = new_pages
    return crawls, planted


def render_html(page: Page) -> bytes:
    paras = "".join(f"<p>{html.escape(p)}</p>\n" for p in page.text.split("\n\n"))
    head = "\n".join(page.head)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(page.title)}</title>\n{head}</head>\n<body>\n"
        "<nav><a href=\"/\">Home</a> | <a href=\"/docs\">Docs</a> | <a href=\"/about\">About</a></nav>\n"
        f"<main><article><h1>{html.escape(page.title)}</h1>\n{paras}</article></main>\n"
        "<footer>Mirror of public documentation. Contact the webmaster for corrections.</footer>\n"
        "</body></html>\n"
    ).encode()


def _record_id(key: str) -> str:
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, key)}>"


def _digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def warc_record(rtype: str, block: bytes, headers: list[tuple[str, str]], content_type: str) -> bytes:
    head = [("WARC-Type", rtype), *headers, ("Content-Type", content_type), ("Content-Length", str(len(block)))]
    lines = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head) + "\r\n"
    return lines.encode() + block + b"\r\n\r\n"


def _member(record: bytes) -> bytes:
    return gzip.compress(record, compresslevel=6, mtime=0)


def warcinfo(crawl_id: str, filename: str, date: str) -> bytes:
    body = (f"isPartOf: {crawl_id}\r\npublisher: synthcap sample\r\nformat: WARC File Format 1.0\r\n"
            "description: synthetic sample crawl for the synthcap demo\r\n").encode()
    return warc_record("warcinfo", body, [("WARC-Date", date), ("WARC-Filename", filename),
                                          ("WARC-Record-ID", _record_id(filename))], "application/warc-fields")


def response_records(page: Page, date: str) -> list[bytes]:
    payload = render_html(page)
    http = ("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in page.http_headers)
            + f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    rid = _record_id(f"{page.url}@{date}")
    request = (f"GET {page.url.split('/', 3)[-1]} HTTP/1.1\r\nHost: {page.url.split('/')[2]}\r\n"
               "User-Agent: synthcap-sample\r\n\r\n").encode()
    return [
        warc_record("request", request, [("WARC-Date", date), ("WARC-Target-URI", page.url),
                                         ("WARC-Record-ID", _record_id(f"req:{page.url}@{date}"))],
                    "application/http; msgtype=request"),
        warc_record("response", http, [("WARC-Date", date), ("WARC-Target-URI", page.url),
                                       ("WARC-Record-ID", rid), ("WARC-Payload-Digest", _digest(payload))],
                    "application/http; msgtype=response"),
    ]


def conversion_record(page: Page, date: str) -> bytes:
    text = f"{page.title}\n{page.text}".encode()
    return warc_record("conversion", text, [
        ("WARC-Date", date), ("WARC-Target-URI", page.url), ("WARC-Record-ID", _record_id(f"wet:{page.url}@{date}")),
        ("WARC-Refers-To", _record_id(f"{page.url}@{date}")), ("WARC-Block-Digest", _digest(text)),
        ("WARC-Identified-Content-Language", "eng")], "text/plain")


def _timestamp(page: Page, n: int) -> str:
    return f"{page.date}T{(n // 3600) % 24:02d}:{(n // 60) % 60:02d}:{n % 60:02d}Z"


def malformed_shard(crawl_id: str, date: str) -> bytes:
    """One of each failure the readers must survive, between good records."""
    good = Page("https://badshard.example/ok", "ok", "A well formed page that sits between broken records. " * 8,
                "human", date)
    out = [_member(warcinfo(crawl_id, "bad.warc.gz", f"{date}T00:00:00Z"))]
    out += [_member(r) for r in response_records(good, f"{date}T00:00:01Z")]
    bad_crc = bytearray(_member(response_records(Page("https://badshard.example/crc", "crc", "x " * 50, "human",
                                                      date), f"{date}T00:00:02Z")[1]))
    bad_crc[-8] ^= 0xFF
    out.append(bytes(bad_crc))
    no_type = b"WARC/1.0\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000001>\r\n" \
              b"Content-Length: 5\r\n\r\nhello\r\n\r\n"
    out.append(_member(no_type))
    binary = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + bytes(range(256)) * 8
    out.append(_member(warc_record("response", binary, [
        ("WARC-Date", f"{date}T00:00:03Z"), ("WARC-Target-URI", "https://badshard.example/binary"),
        ("WARC-Record-ID", _record_id("binary"))], "application/http; msgtype=response")))
    empty = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body></body></html>"
    out.append(_member(warc_record("response", empty, [
        ("WARC-Date", f"{date}T00:00:04Z"), ("WARC-Target-URI", "https://badshard.example/empty"),
        ("WARC-Record-ID", _record_id("empty"))], "application/http; msgtype=response")))
    bad_utf8 = b"caf\xe9 au lait, encoded in latin-1 inside a WET record that promises UTF-8"
    out.append(_member(warc_record("conversion", bad_utf8, [
        ("WARC-Date", f"{date}T00:00:05Z"), ("WARC-Target-URI", "https://badshard.example/latin1"),
        ("WARC-Record-ID", _record_id("latin1"))], "text/plain")))
    out += [_member(r) for r in response_records(
        Page("https://badshard.example/ok2", "ok2", "Another readable page after the damage. " * 8, "human", date),
        f"{date}T00:00:06Z")]
    truncated = _member(response_records(Page("https://badshard.example/cut", "cut", "cut " * 80, "human", date),
                                         f"{date}T00:00:07Z")[1])
    out.append(truncated[: len(truncated) // 2])
    return b"".join(out)


def write_sample(out_dir: str | Path) -> list[str]:
    """Writes the sample crawl into a local or gs:// folder; returns the shard paths. Same bytes on every run and
    machine."""
    out = str(out_dir).rstrip("/")
    try:  # shards inside a part of a synthcap output would make every reader refuse that output
        refuse_inside_an_output(out)
    except OutputClaimError as e:
        raise UserError(str(e)) from None
    if FileSystems.get_scheme(out) is None:
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file in the way, a read-only or missing parent: the user's to fix
            raise UserError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    crawls, planted = build_pages()
    paths = []
    for k, (crawl_id, _) in enumerate(SNAPSHOTS):
        pages = crawls[crawl_id]
        wet_pages = pages[-len(pages) // 8 :] if k == len(SNAPSHOTS) - 1 else []
        warc_pages = pages[: len(pages) - len(wet_pages)]
        for s in range(SHARDS_PER_SNAPSHOT):
            name = f"{crawl_id}-{s:05d}.warc.gz"
            mine = warc_pages[s::SHARDS_PER_SNAPSHOT]
            parts = [_member(warcinfo(crawl_id, name, f"{mine[0].date}T00:00:00Z"))]
            for n, page in enumerate(mine):
                parts += [_member(r) for r in response_records(page, _timestamp(page, n))]
            paths.append(FileSystems.join(out, name))
            write_bytes(paths[-1], b"".join(parts))
        if wet_pages:
            name = f"{crawl_id}-00000.warc.wet.gz"
            parts = [_member(warcinfo(crawl_id, name, f"{wet_pages[0].date}T00:00:00Z"))]
            parts += [_member(conversion_record(p, _timestamp(p, n))) for n, p in enumerate(wet_pages)]
            paths.append(FileSystems.join(out, name))
            write_bytes(paths[-1], b"".join(parts))
            paths.append(FileSystems.join(out, f"{crawl_id}-99999-malformed.warc.gz"))
            write_bytes(paths[-1], malformed_shard(crawl_id, wet_pages[0].date))
    manifest = {
        "seed": SEED,
        "snapshots": {c: len(p) for c, p in crawls.items()},
        "planted": planted,
        "ai_label_source": "pipeline/sample_data/llm_written.jsonl",
    }
    write_bytes(FileSystems.join(out, "sample_manifest.json"),
                (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return sorted(paths)

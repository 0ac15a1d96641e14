"""Declared signals on crafted pages (present, absent, malformed, mixed case, several tags, header vs meta), the
invisible-character counts, real WARC files, and the provenance of every demo document."""
from __future__ import annotations

import dataclasses
import glob

import pyarrow.parquet as pq
import pytest

from transforms.dates import UNDATED, as_first_seen, is_pre_llm, seen_date
from transforms.document import Document
from transforms.io.signals import page_signals
from transforms.provenance.unicode import c2pa_text_wrapper, has_c2pa_text_wrapper, invisible_counts


def page(head: str = "", body: str = "<p>text</p>") -> str:
    return f"<!DOCTYPE html><html><head><title>t</title>{head}</head><body>{body}</body></html>"


def sig(head="", headers=(), body="<p>text</p>"):
    return page_signals(list(headers), page(head, body))


def test_absent_everything():
    s = sig()
    assert s == {"tdm_reservation": None, "tdm_reservation_header": None, "tdm_reservation_meta": None,
                 "tdm_policy": None, "robots_noai": False, "robots_noimageai": False, "digital_source_type": None,
                 "declared_ai": False, "c2pa_manifest": False, "generator": None}


@pytest.mark.parametrize("content, expected", [("1", 1), ("0", 0), (" 1 ", 1), ("yes", None), ("", None),
                                               ("2", None)])
def test_tdm_meta_values(content, expected):
    assert sig(f'<meta name="tdm-reservation" content="{content}">')["tdm_reservation"] == expected


def test_tdm_mixed_case_several_tags_and_policy():
    s = sig('<META NAME="TDM-Reservation" CONTENT="0"><meta name="tdm-reservation" content="1">'
            '<meta name="TDM-Policy" content="https://example.org/policy.json">')
    assert s["tdm_reservation"] == 1 and s["tdm_reservation_meta"] == 1
    assert s["tdm_policy"] == "https://example.org/policy.json"


def test_tdm_header_wins_over_meta_and_both_are_kept():
    s = sig('<meta name="tdm-reservation" content="1">', headers=[("TDM-Reservation", "0"),
                                                                   ("tdm-policy", "https://a.example/p")])
    assert (s["tdm_reservation"], s["tdm_reservation_header"], s["tdm_reservation_meta"]) == (0, 0, 1)
    assert s["tdm_policy"] == "https://a.example/p"
    assert sig(headers=[("tdm-reservation", "1")])["tdm_reservation"] == 1
    assert sig('<meta name="tdm-reservation" content="1">', headers=[("tdm-reservation", "junk")])[
        "tdm_reservation"] == 1  # a malformed header is unset, so the meta value stands


@pytest.mark.parametrize("head, headers, noai, noimageai", [
    ('<meta name="robots" content="noai, noimageai">', [], True, True),
    ('<meta name="ROBOTS" content="NOAI">', [], True, False),
    ('<meta name="robots" content="noindex, nofollow">', [], False, False),
    ('', [("X-Robots-Tag", "noimageai")], False, True),
    ('', [("x-robots-tag", "otherbot: noai")], True, False),
    ('<meta name="robots" content="index"><meta name="robots" content="noai">', [], True, False),
    ('<meta name="robots" content="noaiplease">', [], False, False),
])
def test_robots_opt_outs(head, headers, noai, noimageai):
    s = sig(head, headers)
    assert (s["robots_noai"], s["robots_noimageai"]) == (noai, noimageai)


@pytest.mark.parametrize("head, body, value, ai", [
    ('<script type="application/ld+json">{"@type": "ImageObject", "digitalSourceType": '
     '"https://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}</script>', "",
     "https://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia", True),
    ('<script type="application/ld+json">[{"a": {"digitalSourceType": '
     '"CompositeWithTrainedAlgorithmicMediaDigitalSource"}}]</script>', "",
     "CompositeWithTrainedAlgorithmicMediaDigitalSource", True),
    ('<script type="application/ld+json">{"digitalSourceType": "TrainedAlgorithmicMediaDigitalSource"}</script>',
     "", "TrainedAlgorithmicMediaDigitalSource", True),
    ('<script type="application/ld+json">{"digitalSourceType": '
     '"http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}</script>', "",
     "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture", False),
    ('<script type="application/ld+json">{not json</script>', "", None, False),
    ("", '<x:xmpmeta><rdf:Description Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/'
         'digitalsourcetype/compositeWithTrainedAlgorithmicMedia"/></x:xmpmeta>',
     "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia", True),
])
def test_iptc_digital_source_type(head, body, value, ai):
    s = sig(head, body=body or "<p>x</p>")
    assert (s["digital_source_type"], s["declared_ai"]) == (value, ai)


def test_c2pa_markup_and_generator():
    assert sig('<script type="application/c2pa">AAAA</script>')["c2pa_manifest"]
    assert sig('<link rel="alternate c2pa-manifest" href="/m.c2pa">')["c2pa_manifest"]
    assert not sig('<link rel="stylesheet" href="/c2pa-manifest.css">')["c2pa_manifest"]
    assert sig('<meta name="Generator" content=" WordPress 6.4 ">')["generator"] == "WordPress 6.4"
    assert sig('<meta name="generator" content="">')["generator"] is None


def test_c2pa_text_wrapper_and_invisible_characters():
    wrapped = "Hello" + c2pa_text_wrapper(b"C2PATXT\x00\x01\x02manifest") + " world"
    assert has_c2pa_text_wrapper(wrapped)
    assert not has_c2pa_text_wrapper("Hello" + c2pa_text_wrapper(b"NOTC2PA\x00xx"))
    assert not has_c2pa_text_wrapper("plain \ufeff text")
    counts = invisible_counts("a\u200bb\u200b\u00adc\u202f\ufe0f" + wrapped)
    assert counts["U+200B"] == 2 and counts["U+00AD"] == 1 and counts["U+202F"] == 1
    assert counts["U+FEFF"] == 1 and counts["variation_selector"] == 1 + len("C2PATXT\x00\x01\x02manifest")
    assert invisible_counts("plain text") == {}


def test_pre_llm_boundary():
    assert is_pre_llm("2022-11-29T23:59:59Z") is True
    assert is_pre_llm("2022-11-30T00:00:00Z") is False
    assert is_pre_llm(None) is None
    assert is_pre_llm(UNDATED) is False  # an undated index record is no pre-LLM origin


def test_seen_date_prefers_the_clusters_first_seen():
    doc = Document("a", "t", "s", 0, capture_date="2024-01-01T00:00:00Z", first_seen="2019-05-01T00:00:00Z")
    assert seen_date(doc) == "2019-05-01T00:00:00Z"
    assert seen_date(Document("a", "t", "s", 0, capture_date="2024-01-01T00:00:00Z")) == "2024-01-01T00:00:00Z"
    undated = seen_date(Document("a", "t", "s", 0))
    assert undated > "2100" and as_first_seen(undated) is None


def test_real_warc_pages_parse(webcrawl_dir):
    """The reader takes each response's signals from the parse that gives its text: the same signals as a parse of
    their own, and no HTML rides on the document."""
    from tests.test_read_real import read_all
    from transforms.io.files import open_raw
    from transforms.io.gzip_members import FileWindow, MemberStream, find_member
    from transforms.io.html import decode_html
    from transforms.io.http import parse_response
    from transforms.io.warc import iter_records

    assert "raw" not in {f.name for f in dataclasses.fields(Document)}
    path = str(webcrawl_dir / "raw/commoncrawl+whirlwind-python__whirlwind.warc.gz")
    first = [d for d in read_all(path) if isinstance(d, Document)][0]
    assert first.provenance.html_observable and first.provenance.generator.startswith("MediaWiki")
    with open_raw(path) as f:
        member, nxt = 0, 0
        while nxt is not None and nxt <= first.offset:  # the gzip member that holds the record
            member, nxt = nxt, find_member(f, nxt + 1)
        rec = next(r for r in iter_records(MemberStream(FileWindow(f), member), 1 << 24)
                   if r.headers["warc-type"] == "response")
    resp = parse_response(rec.block, 1 << 24)
    separate = page_signals(resp.headers, decode_html(resp.body, resp.charset))
    assert {k: first.provenance[k] for k in separate} == separate
    for p in sorted(glob.glob(str(webcrawl_dir / "raw" / "*.warc.gz"))):
        for doc in read_all(p):
            if isinstance(doc, Document) and doc.provenance is not None:
                assert doc.provenance.html_observable is True and doc.provenance.declared_ai is not None


def test_every_demo_document_has_a_complete_provenance_record(tmp_path, sample_crawl):
    from pipeline import curate
    from tests.helpers import read_documents
    from transforms.provenance.schema import LINEAGE

    summary, _ = curate.run(["--input", str(sample_crawl / "*.gz"), "--output", str(tmp_path)])
    docs = {d.id: d for d in read_documents(tmp_path)}
    rows = []
    for f in sorted(glob.glob(str(tmp_path / "provenance" / "*.parquet"))):
        table = pq.read_table(f)
        assert table.schema.equals(LINEAGE)
        rows += table.to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(docs)
    for r in rows:
        for name in ("source", "offset", "warc_record_id", "url", "registered_domain", "crawl_id", "capture_date",
                     "pre_llm", "content_digest", "dup_cluster_id", "dup_cluster_size", "first_seen",
                     "synthcap_version", "run_id", "config_hash", "html_observable"):
            assert r[name] is not None, (r["id"], name)
        if r["html_observable"]:
            assert None not in (r["robots_noai"], r["c2pa_manifest"], r["declared_ai"])
        else:  # WET: no HTML, so HTML signals are unknown, never false
            assert r["robots_noai"] is None and r["declared_ai"] is None
    wet = [r for r in rows if r["source"].endswith(".wet.gz")]
    assert wet and all(not r["html_observable"] for r in wet)
    counts = summary["provenance"]
    assert counts["total"]["documents"] == summary["documents_out"]
    assert counts["by_era"]["pre_llm"]["documents"] + counts["by_era"]["post_llm"]["documents"] == len(rows)
    assert counts["total"]["tdm_reserved"] > 0 and counts["total"]["declared_ai"] > 0


def test_inspect_prints_one_document(tmp_path, sample_crawl, capsys):
    from pipeline import curate
    from pipeline.cli import main
    from tests.helpers import read_documents

    curate.run(["--input", str(sample_crawl / "CC-MAIN-2022-05-00000.warc.gz"), "--output", str(tmp_path)])
    doc = read_documents(tmp_path)[0]
    assert main(["inspect", doc.id, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert doc.id in out and "registered_domain" in out and "pre_llm                  True" in out
    # the scoring fields are the document's: the sidecar held p_ai and ai_model only, so inspect showed every
    # scored document's ai_score, ai_pvalue and ai_reference as null
    assert doc.ai_score is not None and f"ai_score                 {doc.ai_score}\n" in out
    assert f"ai_pvalue                {'—' if doc.ai_pvalue is None else doc.ai_pvalue}\n" in out
    assert f"ai_reference             {doc.ai_reference or '—'}\n" in out
    # argparse's other forms: `--output=OUT` was refused as bad usage, a DOC_ID equal to OUT was dropped
    assert main(["inspect", f"--output={tmp_path}", doc.id]) == 0 and capsys.readouterr().out == out
    assert main(["inspect", str(tmp_path), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"synthcap inspect: error: document {tmp_path} is not in {tmp_path}\n"
    assert main(["inspect", "nope", "--output", str(tmp_path)]) == 2

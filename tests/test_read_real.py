"""Conformance on real crawl files from ../shared/data/webcrawl/raw (Common Crawl 2020/2024, ClueWeb09, wget)."""
from __future__ import annotations

import collections
import json
import os

import pytest
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.pvalue import TaggedOutput

from transforms.dates import normalise_date
from transforms.document import Document
from transforms.io.files import Shard
from transforms.io.warc import ReadWarcFn, _ByteRanges


def read_all(path: str, split_bytes: int = 0) -> list:
    """Runs the reader DoFn over every range of a static split, as a runner would."""
    shard = Shard(path, os.path.getsize(path), "warc", split_bytes)
    fn = ReadWarcFn(16 << 20)
    fn.setup()
    out = []
    for r in _ByteRanges().split(shard, OffsetRange(0, shard.size)):
        tracker = OffsetRestrictionTracker(r)
        out += list(fn.process(shard, tracker))
        tracker.check_done()
    return out


def _key(x):
    return repr(x.value) if isinstance(x, TaggedOutput) else repr((x.id, x.offset, x.text))


@pytest.fixture(scope="module")
def expected(webcrawl_dir):
    rows = [json.loads(line) for line in open(webcrawl_dir / "records.jsonl")]
    by_file = collections.defaultdict(list)
    for r in rows:
        by_file[r["file"]].append(r)
    return by_file


def test_every_record_of_every_file_is_accounted_for(webcrawl_dir, expected):
    for name, rows in expected.items():
        out = read_all(str(webcrawl_dir / name))
        assert len(out) == len(rows), name
        assert not [x for x in out if isinstance(x, TaggedOutput) and x.tag == "dead_letters"], name


def test_documents_match_the_reference_uris_and_dates(webcrawl_dir, expected):
    for name, rows in expected.items():
        out = read_all(str(webcrawl_dir / name))
        docs = [x for x in out if isinstance(x, Document)]
        want = {(r["uri"], normalise_date(r["date"])[0]) for r in rows if r["type"] in ("response", "conversion")}
        assert {(d.url, d.capture_date) for d in docs} <= want, name
        # every text-bearing record is a document or a content drop (redirect, image, empty page), never skipped
        content_drops = [x.value.reason for x in out if isinstance(x, TaggedOutput)
                         and x.value.reason != "record_type_skipped"]
        assert len(docs) + len(content_drops) == len(want), name
        assert set(content_drops) <= {"http_not_ok", "non_text_content", "empty_text", "binary_content"}
        html = [r for r in rows if r["type"] == "response" and "html" in (r["http_content_type"] or "")]
        assert len(docs) >= (1 if html else 0), name
        assert all(d.id and d.id == d.warc_record_id and d.id.startswith("urn:uuid:") for d in docs)


def test_13_3_clueweb_malformed_dates_become_null_with_the_raw_value_kept(webcrawl_dir):
    docs = [d for d in read_all(str(webcrawl_dir / "raw/chatnoir-eu+chatnoir-resiliparse__clueweb-quirk.warc.gz"))
            if isinstance(d, Document)]
    assert docs and all(d.capture_date is None for d in docs)
    assert {d.metadata["capture_date_unparsed"] for d in docs} == {"2008-10-294T05:21:46-0700"}


def test_common_crawl_ids_from_warcinfo(webcrawl_dir):
    cc2020 = read_all(str(webcrawl_dir / "raw/chatnoir-eu+chatnoir-resiliparse__warcfile.warc.gz"))
    assert {d.crawl_id for d in cc2020 if isinstance(d, Document)} == {"CC-MAIN-2020-34"}
    wet = [d for d in read_all(str(webcrawl_dir / "raw/commoncrawl+whirlwind-python__whirlwind.warc.wet.gz"))
           if isinstance(d, Document)]
    assert len(wet) == 1
    d = wet[0]
    assert (d.crawl_id, d.url, d.language) == ("CC-MAIN-2024-22", "https://an.wikipedia.org/wiki/Escopete", "spa")
    assert d.refers_to and d.refers_to.startswith("urn:uuid:") and d.content_digest
    warc = [x for x in read_all(str(webcrawl_dir / "raw/commoncrawl+whirlwind-python__whirlwind.warc.gz"))
            if isinstance(x, Document)]
    assert warc[0].crawl_id == "CC-MAIN-2024-22" and warc[0].capture_date == "2024-05-18T01:58:10Z"
    assert "Escopete" in warc[0].text and warc[0].provenance.html_observable


@pytest.mark.parametrize("split", [pytest.param(7, marks=pytest.mark.slow), 97, 4096, 65536])  # 7: ~40k ranges
def test_any_split_reads_every_record_once(webcrawl_dir, expected, split):
    for name in expected:
        path = str(webcrawl_dir / name)
        assert sorted(map(_key, read_all(path, split))) == sorted(map(_key, read_all(path))), (name, split)

"""curate on the embedded sample: books balance, outputs are byte-identical across workers and file order."""
from __future__ import annotations

import json
import random

import pytest

from pipeline import curate
from tests.helpers import read_documents, tree_bytes


@pytest.fixture(scope="module")
def single(sample_crawl, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    summary, counters = curate.run(["--input", str(sample_crawl / "*.gz"), "--output", str(out), "--overwrite"])
    return out, summary, counters


def test_sample_summary_reconciles_with_counters(single):
    _, s, c = single
    assert s["reconciles"]
    assert s["documents_out"] > 1000
    assert c["records_read"] == s["records_read"] and c["documents_out"] == s["documents_out"]
    assert set(s["dead_letters"]) == {"gzip_error", "truncated", "warc_header_error", "decode_error"}


def test_sample_documents_carry_lineage(single, sample_crawl):
    out, _, _ = single
    docs = read_documents(out)
    manifest = json.loads((sample_crawl / "sample_manifest.json").read_text())
    assert {d.crawl_id for d in docs} == set(manifest["snapshots"])
    assert all(d.capture_date and d.url and d.domain and d.warc_record_id for d in docs)
    assert len({d.id for d in docs}) == len(docs)


def test_multiprocess_run_is_byte_identical(single, sample_crawl, tmp_path):
    out, _, _ = single
    args = ["--input", str(sample_crawl / "*.gz"), "--output", str(tmp_path), "--direct_num_workers=2",
            "--direct_running_mode=multi_processing", "--split_bytes=20000"]
    curate.run(args)
    for part in ("documents", "dropped", "dead_letters"):
        assert tree_bytes(tmp_path, part) == tree_bytes(out, part), part
    assert (tmp_path / "summary.json").read_bytes() == (out / "summary.json").read_bytes()


def test_file_order_and_splitting_do_not_change_outputs(single, sample_crawl, tmp_path):
    out, _, _ = single
    files = sorted(str(p) for p in sample_crawl.glob("*.gz"))
    random.Random(7).shuffle(files)
    curate.run(["--input", *files, "--output", str(tmp_path), "--split_bytes=5000", "--rows_per_shard=400"])
    a = sorted((d.id, d.text) for d in read_documents(tmp_path))
    b = sorted((d.id, d.text) for d in read_documents(out))
    assert a == b
    assert len(list((tmp_path / "documents").glob("*.parquet"))) > 1

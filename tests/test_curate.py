"""curate on the embedded sample: books balance, outputs are byte-identical across workers and file order."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import curate
from tests.helpers import read_documents, tree_bytes
from transforms.io.commit import MARKER, require_complete

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def single(sample_crawl, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    summary, counters = curate.run(["--input", str(sample_crawl / "*.gz"), "--output", str(out), "--overwrite",
                                    "--split_bytes=20000", "--rows_per_shard=300"])
    return out, summary, counters


@pytest.mark.slow
def test_sample_summary_reconciles_with_counters(single):
    _, s, c = single
    assert s["reconciles"]
    assert s["documents_out"] > 1000
    assert c["records_read"] == s["records_read"] and c["documents_out"] == s["documents_out"]
    assert set(s["dead_letters"]) == {"gzip_error", "truncated", "warc_header_error", "decode_error"}


@pytest.mark.slow
def test_sample_documents_carry_lineage(single, sample_crawl):
    out, _, _ = single
    docs = read_documents(out)
    manifest = json.loads((sample_crawl / "sample_manifest.json").read_text())
    assert {d.crawl_id for d in docs} == set(manifest["snapshots"])
    assert all(d.capture_date and d.url and d.domain and d.warc_record_id for d in docs)
    assert len({d.id for d in docs}) == len(docs)


def _committed(out: Path) -> dict[str, bytes]:
    """Every file of a committed output (summary, COMPLETE.json and all parts) except the marker, which names the
    run's claim."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != MARKER}


@pytest.mark.slow
def test_one_and_two_workers_commit_the_same_bytes(single, sample_crawl, tmp_path):
    """Two multiprocessing workers commit the bytes of the single-worker run: every part, the summary and the
    completion record with its hashes."""
    out, _, _ = single
    args = ["--input", str(sample_crawl / "*.gz"), "--output", str(tmp_path), "--direct_num_workers=2",
            "--direct_running_mode=multi_processing", "--split_bytes=20000", "--rows_per_shard=300"]
    curate.run(args)
    for part in ("documents", "dropped", "dead_letters"):
        assert tree_bytes(tmp_path, part) == tree_bytes(out, part), part
    assert (tmp_path / "summary.json").read_bytes() == (out / "summary.json").read_bytes()
    assert _committed(tmp_path) == _committed(out)
    assert len(require_complete(str(tmp_path))["files"]) > 6


@pytest.mark.slow
def test_file_order_and_splitting_do_not_change_outputs(single, sample_crawl, tmp_path):
    out, _, _ = single
    files = sorted(str(p) for p in sample_crawl.glob("*.gz"))
    random.Random(7).shuffle(files)
    curate.run(["--input", *files, "--output", str(tmp_path), "--split_bytes=5000", "--rows_per_shard=300"])
    a = sorted((d.id, d.text) for d in read_documents(tmp_path))
    b = sorted((d.id, d.text) for d in read_documents(out))
    assert a == b
    for part in ("documents", "dropped", "dead_letters"):
        assert tree_bytes(tmp_path, part) == tree_bytes(out, part), part
    assert (tmp_path / "summary.json").read_bytes() == (out / "summary.json").read_bytes()
    assert len(list((tmp_path / "documents").glob("*.parquet"))) > 1


@pytest.mark.slow
def test_planted_duplicates_are_removed_and_the_earliest_copy_survives(single, sample_crawl):
    from tests.helpers import read_jsonl

    out, summary, _ = single
    manifest = json.loads((sample_crawl / "sample_manifest.json").read_text())
    docs = read_documents(out)
    by_url: dict = {}
    for d in docs:
        by_url.setdefault(d.url, []).append(d)
    for url in manifest["planted"]["exact_recrawl"]:
        (kept,) = by_url[url]
        assert kept.capture_date.startswith("2022") and kept.dup_cluster_size >= 2
        assert kept.first_seen == kept.capture_date
    near = manifest["planted"]["near_duplicate"]
    removed = [m for o, m in near if m not in by_url and o in by_url]
    assert len(removed) >= 0.95 * len(near)
    dups = read_jsonl(out, "duplicates")
    assert summary["dropped"]["duplicate_exact"] == sum(d["reason"] == "duplicate_exact" for d in dups)
    assert summary["dropped"]["duplicate_near"] == sum(d["reason"] == "duplicate_near" for d in dups)
    kept_ids = {d.id for d in docs}
    assert all(d["survivor_id"] in kept_ids for d in dups)


def test_residual_over_the_limit_is_one_clear_error(tmp_path, capsys):
    from pipeline.cli import main

    # a chain of overlapping windows: neighbours are near-duplicates, the ends are not
    words = [f"w{i}" for i in range(2000)]
    lines = [json.dumps({"id": f"d{(i * 7919) % 101:03d}", "text": " ".join(words[i * 4 : i * 4 + 300])})
             for i in range(60)]
    (tmp_path / "chain.jsonl").write_text("\n".join(lines) + "\n")
    rc = main(["curate", "--input", str(tmp_path / "chain.jsonl"), "--output", str(tmp_path / "out"),
               "--cc_rounds=0", "--max_residual_edges=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "residual edges" in err and "\n" not in err


@pytest.mark.slow
def test_outputs_do_not_depend_on_the_hash_seed(sample_crawl, tmp_path):
    """Two real `synthcap curate` processes with different PYTHONHASHSEED (the suite itself runs unpinned) and
    different worker counts write the same bytes: nothing iterates a set or dict of str in hash order."""
    files = [str(sample_crawl / n) for n in ("CC-MAIN-2022-05-00000.warc.gz", "CC-MAIN-2024-10-00000.warc.gz",
                                             "CC-MAIN-2024-10-00000.warc.wet.gz",
                                             "CC-MAIN-2024-10-99999-malformed.warc.gz")]
    outs = []
    for seed, workers in (("1", "1"), ("2", "2")):
        out = tmp_path / f"seed{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
            "PYTHONPATH", "")]))
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "curate", "--input", *files, "--output", str(out),
                            f"--direct_num_workers={workers}", "--split_bytes=60000"],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(out)
    a, b = outs
    assert json.loads((a / "summary.json").read_text())["documents_out"] > 100
    for part in ("documents", "provenance", "duplicates", "dropped", "dead_letters"):
        assert tree_bytes(a, part) == tree_bytes(b, part), part
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()


@pytest.mark.slow
def test_inputs_listed_in_another_order_commit_the_same_bytes(tmp_path):
    """`--input b a` is the run `--input a b` is: the run id in every provenance row, the marker's run key and so
    the completion record's hashes were taken from the patterns as listed, so listing the same files in another
    order (or one twice) changed every provenance byte. Two files whose ids repeat, as exports restart them."""
    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": str(i), "created": "2024-02-02",
                                            "text": f"file {name} page {i} " + "with words of its own " * (i + 1)})
                                + "\n" for i in range(6)))
        files.append(str(path))
    out, first = tmp_path / "out", tmp_path / "first"
    committed = []
    for inputs in (files, [files[1], files[0], files[1]]):
        if out.exists():
            out.rename(first)  # the second run writes to the same OUT, which the marker's run key names
        curate.run(["--input", *inputs, "--output", str(out), "--no_score"])
        committed.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert committed[0] == committed[1]
    assert MARKER in committed[0] and len(read_documents(out)) == 12

"""Near dedup end to end: planted copies at known Jaccard, ids that collide across files (exact, near, refresh),
space-less scripts, and the recall-first banding and exact verification it rests on."""
from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import curate, refresh
from pipeline.runner import make_pipeline
from tests.helpers import read_documents, read_jsonl
from transforms.accounting import DOCUMENTS, DROPPED
from transforms.dedup.lsh import PARTITIONS, BandPacks, BucketPairs, candidate_probability, recall_first_params
from transforms.dedup.minhash import MinHasher, jaccard, shingle_set
from transforms.dedup.near import NearDedup
from transforms.document import Document
from transforms.io.write import WriteJsonRecords

VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "tu", "ve", "zo") for b in
         ("n", "r", "s", "t", "m", "x", "l", "d", "g", "p", "ba", "ko", "ri", "su", "te")]
HAN = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def _truth(a: str, b: str, ngram: int = 5) -> float:
    return jaccard(shingle_set(a, ngram), shingle_set(b, ngram))


def _run_near(docs: list[Document], **kwargs) -> tuple[set[str], dict[str, dict]]:
    """(ids kept, {dropped id: duplicate detail}) from the real transform on the in-process runner."""
    tmp = tempfile.mkdtemp()
    with make_pipeline(PipelineOptions([])) as p:
        out = p | beam.Create(docs) | NearDedup(**kwargs)
        out[DROPPED] | "Dropped" >> WriteJsonRecords(tmp, "dropped", lambda d: d.id)
        out[DOCUMENTS] | "Kept" >> WriteJsonRecords(tmp, "kept", lambda d: d.id,
                                                    encode_item=lambda d: json.dumps(d.id))
    dropped = {}
    for r in (json.loads(line) for f in Path(tmp).glob("dropped*.jsonl") for line in f.open()):
        assert r["reason"] == "duplicate_near"
        dropped[r["id"]] = json.loads(r["detail"])
    kept = {json.loads(line) for f in Path(tmp).glob("kept*.jsonl") for line in f.open()}
    return kept, dropped


def _variant(words: list[str], rng: random.Random, rate: float, vocab) -> list[str]:
    out = list(words)
    for i in rng.sample(range(len(out)), int(rate * len(out))):
        out[i] = rng.choice(vocab) + "q"
    return out


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_recall_first_banding_reaches_0999_at_threshold_plus_005(threshold):
    bands, rows = recall_first_params(threshold, 128)
    assert bands * rows <= 128
    assert candidate_probability(threshold + 0.05, bands, rows) >= 0.999
    assert recall_first_params(0.8, 128) == (18, 7)


def test_kernel_shingles_and_exact_jaccard_match_the_python_definition():
    rng = random.Random(5)
    hasher = MinHasher(5, 64, 3)
    for _ in range(200):
        pool = HAN if rng.random() < 0.3 else VOCAB
        words = [rng.choice(pool) for _ in range(rng.randrange(1, 120))]
        a = (" " if pool is VOCAB else "").join(words)
        b = (" " if pool is VOCAB else "").join(_variant(words, rng, rng.random() * 0.3, pool))
        sa, sb = hasher.sketch(a)[1], hasher.sketch(b)[1]
        assert len(sa) == len(shingle_set(a, 5))
        assert jaccard(sa, sb) == pytest.approx(_truth(a, b), abs=1e-12)
    assert jaccard(np.empty(0, np.uint64), np.empty(0, np.uint64)) == 0.0
    assert jaccard(np.array([1, 2, 3], np.uint64), np.array([2, 3, 4], np.uint64)) == 0.5  # 2 shared of 4
    assert jaccard({("a", "b"), ("b", "c")}, {("b", "c"), ("c", "d")}) == pytest.approx(1 / 3)
    assert jaccard(set(), {("a",)}) == 0.0


def test_space_less_scripts_are_shingled_by_character():
    text = "我们今天去公园散步"
    assert shingle_set(text, 5) == {tuple(text[i : i + 5]) for i in range(5)}
    assert shingle_set("東京 tower です", 2) == {("東", "京"), ("京", "tower"), ("tower", "で"), ("で", "す")}


def test_small_buckets_give_every_pair_and_large_ones_stay_linear():
    small = sorted(BucketPairs(100).pairs([3, 1, 2]))
    assert small == [(1, 2), (1, 3), (2, 3)]
    big = list(BucketPairs(10_000).pairs(list(range(1000))))
    assert len(big) < 8 * 1000 and all(a < b for a, b in big)
    assert list(BucketPairs(10).pairs(list(range(11)))) == []


def test_band_packs_rebuild_the_same_buckets_whatever_the_bundles():
    """Pairs from packed band entries equal the pairs of each bucket taken whole, however the documents were split
    into bundles (packs of one partition are merged after the shuffle)."""
    rng = random.Random(11)
    choices = [-7, 3, 1 << 40, -(1 << 62)]  # four partitions, each shared by the four bands
    docs = [(np.array([rng.choice(choices) + b * PARTITIONS for b in range(4)], dtype=np.int64),
             (f"2020-01-{i % 28 + 1:02d}", f"d{i}", "s", i)) for i in range(300)]
    buckets: dict = {}
    for hashes, r in docs:
        for band, h in enumerate(hashes.tolist()):
            buckets.setdefault((band, h), []).append(r)
    truth = sorted(p for members in buckets.values() for p in BucketPairs(100).pairs(members))
    for bundles in (1, 7, 300):
        shuffled: dict = {}
        for n in range(bundles):
            packs = BandPacks()
            for hashes, r in docs[n::bundles]:
                packs.add(hashes, r)
            for part, pack in packs.flush():
                shuffled.setdefault(part, []).append(pack)
        got = sorted(p for kv in shuffled.items() for p in BucketPairs(100).process(kv))
        assert got == truth and truth


@pytest.mark.slow
def test_planted_copies_at_known_jaccard_no_misses_no_wrong_drops():
    """Copies edited to a spread of true Jaccard around the threshold: every pair at J >= t + 0.05 is caught, and
    every dropped document's named edge has a true Jaccard >= t (verified, not estimated)."""
    rng = random.Random(2024)
    t = 0.8
    docs, planted = [], []
    for i in range(150):
        words = [rng.choice(VOCAB) for _ in range(rng.randrange(80, 400))]
        docs.append(Document(id=f"o{i}", text=" ".join(words), source="orig", offset=i, capture_date="2021-01-01"))
        rate = rng.choice((0.004, 0.008, 0.012, 0.016, 0.02, 0.025, 0.03, 0.04, 0.06))
        text = " ".join(_variant(words, rng, rate, VOCAB))
        docs.append(Document(id=f"c{i}", text=text, source="copy", offset=i, capture_date="2024-01-01"))
        planted.append((f"o{i}", f"c{i}", _truth(docs[-2].text, text)))
    texts = {d.id: d.text for d in docs}
    kept, dropped = _run_near(docs, threshold=t)
    assert kept | set(dropped) == set(texts) and not kept & set(dropped)
    high = [(o, c) for o, c, j in planted if j >= t + 0.05]
    assert len(high) >= 60 and sum(j < t for *_, j in planted) >= 20  # the spread straddles the threshold
    missed = [(o, c) for o, c in high if c not in dropped]
    assert missed == []
    for c, detail in dropped.items():
        truth = _truth(texts[c], texts[detail["matched_id"]])
        assert truth >= t and detail["jaccard"] == pytest.approx(truth, abs=1e-12)
        assert detail["survivor_id"] in kept
    for o, c, j in planted:
        if j < t:
            assert c in kept, (c, j)


def test_cjk_near_duplicates_are_found_and_unrelated_cjk_is_kept():
    rng = random.Random(7)
    base = [rng.choice(HAN) for _ in range(400)]
    copy = list(base)
    for i in rng.sample(range(400), 4):
        copy[i] = "の"
    other = [rng.choice(HAN) for _ in range(400)]
    docs = [Document(id="zh", text="".join(base), source="a", offset=0, capture_date="2021-01-01"),
            Document(id="zh-copy", text="".join(copy), source="b", offset=0, capture_date="2023-01-01"),
            Document(id="zh-other", text="".join(other), source="c", offset=0, capture_date="2023-01-01")]
    assert _truth(docs[0].text, docs[1].text) >= 0.9
    kept, dropped = _run_near(docs)
    assert kept == {"zh", "zh-other"}
    assert dropped["zh-copy"]["survivor_id"] == "zh" and dropped["zh-copy"]["jaccard"] >= 0.9


def _words(rng, n=200):
    return [rng.choice(VOCAB) for _ in range(n)]


def _write_jsonl(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))


@pytest.fixture(scope="module")
def colliding(tmp_path_factory):
    """a.jsonl and b.jsonl, ids restarting at "0": b/0 is a near copy of a/0, b/1 is unrelated to a/1, b/2 is an
    exact copy of a/2."""
    rng = random.Random(11)
    root = tmp_path_factory.mktemp("colliding")
    a = [_words(rng) for _ in range(3)]
    near = list(a[0])
    near[50] = "changed"
    _write_jsonl(root / "a.jsonl", [" ".join(w) for w in a])
    _write_jsonl(root / "b.jsonl", [" ".join(near), " ".join(_words(rng)), " ".join(a[2])])
    out = root / "out"
    summary, counters = curate.run(["--input", str(root / "*.jsonl"), "--output", str(out), "--no_score"])
    return root, out, summary, counters


def test_colliding_ids_across_two_jsonl_files_keep_unrelated_documents(colliding):
    root, out, summary, counters = colliding
    kept = {(Path(d.source).name, d.id) for d in read_documents(out)}
    assert kept == {("a.jsonl", "0"), ("a.jsonl", "1"), ("b.jsonl", "1"), ("a.jsonl", "2")}
    dups = {(Path(d["source"]).name, d["id"]): d for d in read_jsonl(out, "duplicates")}
    near, exact = dups[("b.jsonl", "0")], dups[("b.jsonl", "2")]
    assert near["reason"] == "duplicate_near" and Path(near["survivor_source"]).name == "a.jsonl"
    assert near["survivor_id"] == "0" and near["jaccard"] >= 0.95
    assert exact["reason"] == "duplicate_exact" and Path(exact["survivor_source"]).name == "a.jsonl"
    assert summary["id_collisions"] == {"ids": 3, "documents": 6}
    assert counters["id_collision_ids"] == 3 and counters["id_collision_documents"] == 6
    assert summary["reconciles"]


@pytest.mark.slow
def test_colliding_ids_in_a_refresh_never_borrow_each_others_matches(colliding, tmp_path):
    """The index holds a/0..2; the new crawl has c/0 (a near copy of a/0) and d/0 (unrelated), and d/1 (unrelated
    to the indexed a/1 that shares its id)."""
    root, *_ = colliding
    index = tmp_path / "index"
    r1 = refresh.run(["--input", str(root / "a.jsonl"), "--index", str(index), "--output", str(tmp_path / "o1"),
                      "--no_score"])
    assert r1["committed"] and r1["new_documents"] == 3
    a0 = json.loads((root / "a.jsonl").read_text().splitlines()[0])["text"].split()
    a0[100] = "edited"
    rng = random.Random(99)
    new = tmp_path / "new"
    new.mkdir()
    _write_jsonl(new / "c.jsonl", [" ".join(a0)])
    _write_jsonl(new / "d.jsonl", [" ".join(_words(rng)), " ".join(_words(rng))])
    out = tmp_path / "o2"
    r2 = refresh.run(["--input", str(new / "*.jsonl"), "--index", str(index), "--output", str(out), "--no_score"])
    kept = {(Path(d.source).name, d.id) for d in read_documents(out)}
    assert kept == {("d.jsonl", "0"), ("d.jsonl", "1")}
    (dup,) = read_jsonl(out, "duplicates")
    assert (Path(dup["source"]).name, dup["id"], dup["match"]) == ("c.jsonl", "0", "near")
    assert Path(dup["indexed_source"]).name == "a.jsonl" and dup["indexed_id"] == "0" and dup["jaccard"] >= 0.9
    assert r2["summary"]["id_collisions"] == {"ids": 1, "documents": 2}


@pytest.mark.slow
def test_a_reused_file_name_never_makes_two_indexed_records_one(tmp_path):
    """A daily crawl rewrites `daily/part-0.jsonl`, undated, ids restarting: day 1's and day 2's first records share
    (first seen, id, source, offset). The index kept them under one key, so verification met one record's shingles
    (whichever came last) and a near copy of the other passed as new. On day 3, near copies of both are dropped."""
    rng = random.Random(5)
    day1, day2 = _words(rng), _words(rng)
    daily, index = tmp_path / "daily", tmp_path / "index"
    daily.mkdir()
    for day, texts in enumerate([[day1], [day2]], 1):
        _write_jsonl(daily / "part-0.jsonl", [" ".join(t) for t in texts])
        r = refresh.run(["--input", str(daily / "part-0.jsonl"), "--index", str(index),
                         "--output", str(tmp_path / f"o{day}"), "--no_score"])
        assert r["committed"] and r["new_documents"] == 1
    copies = [list(day1), list(day2)]
    for words in copies:
        words[100] = "edited"
    _write_jsonl(daily / "part-0.jsonl", [" ".join(t) for t in copies])
    out = tmp_path / "o3"
    r3 = refresh.run(["--input", str(daily / "part-0.jsonl"), "--index", str(index), "--output", str(out),
                      "--no_score"])
    assert r3["new_documents"] == 0 and read_documents(out) == []
    dups = sorted(read_jsonl(out, "duplicates"), key=lambda d: d["id"])
    assert [(d["id"], d["match"], d["indexed_id"]) for d in dups] == [("0", "near", "0"), ("1", "near", "0")]
    assert all(d["jaccard"] >= 0.9 for d in dups)


@pytest.mark.slow
def test_an_index_segment_written_without_text_hashes_still_matches(tmp_path):
    """Segments written before the text hash was stored have no `text_hash` column: their records keep matching."""
    import hashlib

    import pyarrow.parquet as pq

    words = _words(random.Random(8))
    _write_jsonl(tmp_path / "a.jsonl", [" ".join(words)])
    index = tmp_path / "index"
    refresh.run(["--input", str(tmp_path / "a.jsonl"), "--index", str(index), "--output", str(tmp_path / "o1"),
                 "--no_score"])
    pointers = [index / "CURRENT.json", *sorted((index / "generations").glob("gen-*.json"))]
    pointer = json.loads(pointers[0].read_text())
    for segment, files in pointer["files"].items():
        for entry in files:
            path = index / segment / entry["path"]
            pq.write_table(pq.read_table(path).drop_columns(["text_hash"]), path)  # as an older version wrote it
            entry.update(size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    for path in pointers:
        path.write_text(json.dumps(pointer))
    words[100] = "edited"
    _write_jsonl(tmp_path / "b.jsonl", [" ".join(words)])
    out = tmp_path / "o2"
    r = refresh.run(["--input", str(tmp_path / "b.jsonl"), "--index", str(index), "--output", str(out), "--no_score"])
    assert r["new_documents"] == 0
    (dup,) = read_jsonl(out, "duplicates")
    assert (dup["match"], Path(dup["indexed_source"]).name, dup["indexed_id"]) == ("near", "a.jsonl", "0")


def test_an_index_built_with_other_banding_is_refused_in_one_line(tmp_path, capsys):
    from pipeline.cli import main

    _write_jsonl(tmp_path / "a.jsonl", ["some words to index"])
    index = tmp_path / "index"
    index.mkdir()
    old = {"normalization": "nfkc,casefold,whitespace", "ngram": 5, "num_perm": 128, "bands": 9, "rows": 13,
           "seed": 1, "threshold": 0.8}  # written before recall-first banding and rank-keyed entries
    (index / "CURRENT.json").write_text(json.dumps({"generation": 1, "segments": [], "params": old, "documents": 1}))
    rc = main(["refresh", "--input", str(tmp_path / "a.jsonl"), "--index", str(index), "--output", str(tmp_path / "o"),
               "--no_score"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "other dedup settings" in err
    assert "bands: index has 9, this run 18" in err and "rows: index has 13, this run 7" in err


def test_the_index_records_the_dedup_settings_and_refuses_others_in_one_line(colliding, tmp_path, capsys):
    """A real index records near dedup's own LshParams (the one source); a refresh at another threshold is
    refused before anything is written, naming the index's value and the run's."""
    from pipeline.cli import main
    from pipeline.options import CurateOptions
    from transforms.dedup.lsh import LshParams

    root = colliding[0]
    index = tmp_path / "index"
    index.mkdir()
    assert main(["refresh", "--input", str(root / "a.jsonl"), "--index", str(index), "--output",
                 str(tmp_path / "first"), "--no_score"]) == 0
    recorded = json.loads((index / "CURRENT.json").read_text())["params"]
    lsh = curate.lsh_params(PipelineOptions([]).view_as(CurateOptions))
    assert lsh == LshParams.resolve() == NearDedup().params
    assert {k: recorded[k] for k in ("ngram", "num_perm", "threshold", "bands", "rows", "seed")} == {
        "ngram": 5, "num_perm": 128, "threshold": 0.8, "bands": lsh.bands, "rows": lsh.rows, "seed": 1}
    capsys.readouterr()
    rc = main(["refresh", "--input", str(root / "b.jsonl"), "--index", str(index), "--output",
               str(tmp_path / "second"), "--no_score", "--threshold", "0.7"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "threshold: index has 0.8, this run 0.7" in err
    assert not (tmp_path / "second").exists()
    assert json.loads((index / "CURRENT.json").read_text())["generation"] == 1

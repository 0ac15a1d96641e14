"""The detector: group-aware splits, calibration, RunInference scoring with per-element dead letters, estimators."""
from __future__ import annotations

import glob
import gzip
import json

import numpy as np
import pytest

from tests.conftest import TINY_PARAMS
from transforms.score.calibration import Platt
from transforms.score.normalize import for_scoring
from transforms.score.train import DEFAULT_PARAMS, Example, assign_groups, auroc, load, split, tpr_at_fpr
from transforms.tokens import count_tokens


@pytest.fixture(scope="session")
def small_model(detect_dir, tmp_path_factory):
    """The shipped configuration (dim 64, char n-grams) on a slice of the detection data. Quantising the input
    matrix (one row per word and hash bucket) is most of the cost, so the slice and the bucket count are small:
    300 texts a file (about 46,000 words) and 20,000 buckets cost a third of 800 texts and 50,000 buckets."""
    from transforms.score.train import train_detector

    out = tmp_path_factory.mktemp("model")
    card = train_detector(sorted(glob.glob(str(detect_dir / "*.jsonl.gz"))), str(out), limit_per_file=300,
                          lodo=False, log=lambda m: None,
                          search=[{"wordNgrams": 2, "minn": 3, "maxn": 5, "epoch": 3, "bucket": 20_000}])
    return out, card


def test_groups_never_straddle_splits():
    ex = [Example("shared human prefix", 0, "a", "d", "human", "a:1"),
          Example("shared human prefix and an AI continuation", 1, "a", "d", "gpt", "a:1"),
          Example("repeated human text", 0, "b", "d", "human", ""),
          Example("repeated human text", 0, "c", "d", "human", ""),
          *[Example(f"text {i}", i % 2, "a", "d", "g", f"a:{i + 10}") for i in range(200)]]
    groups = assign_groups(ex)
    assert groups[0] == groups[1] and groups[2] == groups[3]
    parts = split(ex, seed=3)
    where = {id(e): k for k, v in parts.items() for e in v}
    assert where[id(ex[0])] == where[id(ex[1])] and where[id(ex[2])] == where[id(ex[3])]
    assert all(len(v) > 5 for v in parts.values())


def test_limit_per_file_samples_the_whole_file_not_its_first_lines(tmp_path):
    """A labelled set sorted by label (comnets_courses' first 2,000 texts are all AI) must still give both labels:
    `--limit_per_file` once took a file's first lines, so a detector trained with it saw no human text of that set
    and its card had no leave-one-dataset-out figure for it."""
    path = tmp_path / "sorted.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for i in range(600):
            label = "ai" if i < 300 else "human"
            f.write(json.dumps({"id": f"r{i}", "text": f"{label} text number {i}", "label": label,
                                "domain": "d0" if i % 300 < 150 else "d1"}) + "\n")
    sample = load([str(path)], limit_per_file=100, seed=1)
    assert len(sample) == 100 and len({e.text for e in sample}) == 100
    labels = [e.label for e in sample]
    assert 30 <= sum(labels) <= 70  # both labels, near their 50/50 share in the file
    assert {e.domain for e in sample if e.label == 0} == {"d0", "d1"}
    numbers = [int(e.text.rsplit(" ", 1)[1]) for e in sample]
    assert numbers == sorted(numbers)  # in file order
    assert [e.text for e in load([str(path)], limit_per_file=100, seed=1)] == [e.text for e in sample]
    assert [e.text for e in load([str(path)], limit_per_file=100, seed=2)] != [e.text for e in sample]
    assert len(load([str(path)])) == 600 and len(load([str(path)], limit_per_file=1000)) == 600


def test_normalisation_for_scoring():
    assert for_scoring("a\u200bb\ufeff c\nd\u00ade") == "ab c de"
    assert for_scoring("Ηello wоrld") == "Hello world"  # Greek Eta and Cyrillic o folded


def test_metrics_and_platt():
    y = np.array([0] * 100 + [1] * 100)
    s = np.concatenate([np.linspace(0, 0.6, 100), np.linspace(0.4, 1, 100)])
    assert 0.9 < auroc(s, y) < 1.0 and auroc(y, y) == 1.0
    assert tpr_at_fpr(y.astype(float), y, 0.05) == 1.0
    cal = Platt.fit(s, y)
    p = cal(s)
    assert np.all(np.diff(cal(np.linspace(0.01, 0.99, 50))) > 0)  # strictly increasing: ranking kept
    assert abs(p[y == 1].mean() - 0.5) < 0.35 and p[y == 1].mean() > p[y == 0].mean()


def _check_card(out):
    from transforms.score.model import sha256_file

    saved = json.loads((out / "model_card.json").read_text())
    assert saved["sha256"] == sha256_file(str(out / "model.ftz")) and saved["calibration"]["method"] == "platt"
    for key in ("auroc", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr"):
        assert saved["test"]["overall"][key] is not None
    assert saved["test"]["by_generator"] and saved["test"]["by_domain"] and saved["test"]["by_dataset"]
    assert len(saved["validation_histograms"]["human"]) == len(saved["validation_histograms"]["ai"]) > 1
    return saved


def test_tiny_model_card_is_complete(tiny_model):
    out, card = tiny_model
    saved = _check_card(out)
    assert saved["hyperparameters"] == {**DEFAULT_PARAMS, **TINY_PARAMS}
    assert saved["data"]["splits"]["train"]["n"] > 100


@pytest.mark.slow
def test_model_card(small_model):
    out, card = small_model
    assert (out / "model.ftz").stat().st_size < 20_000_000
    saved = _check_card(out)
    assert saved["test"]["overall"]["auroc"] > 0.6


def test_curate_scores_through_runinference_and_dead_letters_failures(tiny_model, tmp_path):
    from pipeline import curate
    from tests.helpers import read_documents, read_jsonl

    model_dir, _ = tiny_model
    lines = [json.dumps({"id": f"d{i}", "text": f"A plain human sentence number {i} about gardens and rain."})
             for i in range(40)]
    lines.append('{"id": "bad", "text": "lone surrogate \\ud800 cannot be encoded"}')
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    summary, counters = curate.run(["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"),
                                    "--detector_model", str(model_dir), "--no_near_dedup"])
    docs = read_documents(tmp_path / "out")
    assert len(docs) == 40 and all(0 <= d.ai_score <= 1 and "@sha256:" in d.ai_model for d in docs)
    # no dates, no --human_reference: no reference, so no p-value, no posterior, and the reason is counted
    assert all(d.ai_pvalue is None and d.ai_reference is None and d.p_ai is None for d in docs)
    assert summary["scoring"] == {"scored": 40, "null": {"no_estimate": 0, "no_reference": 40,
                                                         "unsupported_language": 0}, "reference_later_copy": 0}
    assert counters["score_null_no_reference"] == 40
    tokens = sum(count_tokens(d.text) for d in docs)
    assert summary["ai_share"]["by_crawl"]["unknown"] == {"estimate": None, "reason": "no reference group",
                                                          "documents": 40, "tokens": tokens}
    # the lone surrogate no longer reaches the detector: the reader's text check dead-letters it first
    assert summary["dead_letters"] == {"decode_error": 1} and summary["reconciles"]
    (dl,) = read_jsonl(tmp_path / "out", "dead_letters")
    assert dl["stage"] == "read_jsonl" and dl["reason"] == "decode_error" and dl["source"].endswith("in.jsonl")
    assert counters["scored"] == 40


def test_unreadable_model_is_one_clear_line(tmp_path, capsys, sample_crawl):
    from pipeline.cli import main

    rc = main(["curate", "--input", str(sample_crawl / "*.wet.gz"), "--output", str(tmp_path / "o"),
               "--detector_model", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot load detector" in err and "\n" not in err


def test_a_document_the_detector_cannot_score_is_a_score_error_dead_letter(tiny_model):
    """fastText cannot take a lone surrogate: the batch is rescored one by one, and only that document becomes a
    `score_error` dead letter (readers refuse such text; a Document built in code can still carry it)."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that

    from transforms.accounting import DEAD_LETTERS, DOCUMENTS
    from transforms.document import Document
    from transforms.score.handler import ScoreAILikelihood

    text = "A plain human sentence about gardens, rain and the long walk home after school, number {}."
    docs = [Document(id=f"d{i}", text=text.format(i), source="in", offset=i) for i in range(5)]
    docs.append(Document(id="bad", text=text.format("\ud800"), source="in", offset=5))

    def scored(got):
        assert sorted(d.id for d in got) == [f"d{i}" for i in range(5)] and all(0 <= d.ai_score <= 1 for d in got)

    def dead(got):
        assert [(d.reason, d.offset, d.stage) for d in got] == [("score_error", 5, "score")], got

    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(docs) | ScoreAILikelihood(str(tiny_model[0]), min_batch_size=8)
        assert_that(out[DOCUMENTS], scored, label="Scored")
        assert_that(out[DEAD_LETTERS], dead, label="Dead")

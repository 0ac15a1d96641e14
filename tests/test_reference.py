"""Human-reference scoring: conformal p-values, cross-fitted groups, share estimates, the language gate, and the
detector's integrity checks (issue 10 item 12)."""
from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from transforms.document import Document
from transforms.score.estimate import Cell, TprPrior, combine, estimate_share, point_fpr, posterior
from transforms.score.reference import (MIN_REFERENCE, ReferenceGroup, conformal_pvalue, conformal_threshold,
                                        group_candidates, half_of)


def test_conformal_pvalue_counts_reference_scores_at_least_as_high():
    ref = [0.1, 0.2, 0.2, 0.5, 0.9]
    assert conformal_pvalue(0.2, ref) == (1 + 4) / 6
    assert conformal_pvalue(0.95, ref) == 1 / 6
    assert conformal_pvalue(0.0, ref) == 1.0
    assert conformal_pvalue(0.5, []) == 1.0


def test_conformal_pvalue_is_valid_for_human_documents():
    """Valid marginally over the draw of the reference: P(p <= u) <= u."""
    rng = np.random.default_rng(1)
    p = np.array([conformal_pvalue(s, np.sort(rng.beta(2, 3, 99))) for s in rng.beta(2, 3, 4000)])
    for u in (0.01, 0.05, 0.2):
        assert (p <= u).mean() <= u + 0.01


def test_conformal_threshold_flags_at_most_alpha_of_humans():
    rng = np.random.default_rng(2)
    ref = np.sort(rng.normal(size=300))
    t = conformal_threshold(ref, 0.05)
    assert 0.03 < (rng.normal(size=20000) > t).mean() <= 0.055
    assert conformal_threshold(ref[:10], 0.05) == float("inf")  # too small for the guarantee: nothing flagged


def test_groups_prefer_the_registered_domain_then_the_crawl_then_global():
    doc = Document("1", "t", "s", 0, crawl_id="CC-1", provenance={"registered_domain": "example.com"})
    assert group_candidates(doc) == ["domain:example.com", "source:CC-1", "global"]
    assert group_candidates(Document("1", "t", "s", 0)) == ["source:unknown", "global"]


def test_a_reference_document_is_never_calibrated_against_itself():
    docs = [Document(str(i), "t", "f.jsonl", i) for i in range(400)]
    halves = {0: [], 1: []}
    for i, d in enumerate(docs):
        halves[half_of(d, seed=3)].append((i / 400, d))
    assert 150 < len(halves[0]) < 250
    ref = ReferenceGroup("global", 400, tuple(tuple(sorted(s for s, _ in halves[h])) for h in (0, 1)),
                         tuple(tuple(1 for _ in halves[h]) for h in (0, 1)))
    for h in (0, 1):
        for score, d in halves[h]:
            # the document's own score is in its half only: the half it is compared with does not hold it
            assert score not in ref.other(half_of(d, seed=3))
    # ids that collide across files are still different records, in independent halves
    a, b = Document("x", "t", "a.jsonl", 0), Document("x", "t", "b.jsonl", 0)
    assert {half_of(Document("x", "t", f"{k}.jsonl", 0), 3) for k in range(40)} == {0, 1}
    assert (a.source, a.offset) != (b.source, b.offset)


def _mixture(rng, n, share, ref_n=600):
    """Human scores ~ Beta(2, 5); AI scores ~ Beta(4, 3) (TPR at the 95% human quantile: 0.49)."""
    n_ai = int(round(share * n))
    scores = np.concatenate([rng.beta(4, 3, n_ai), rng.beta(2, 5, n - n_ai)])
    tokens = rng.integers(50, 400, n)
    return scores, tokens, rng.beta(2, 5, ref_n), rng.integers(50, 400, ref_n)


def test_estimate_share_covers_known_token_shares_and_is_never_zero_width():
    rng = np.random.default_rng(5)
    tpr = TprPrior(point=0.5, low=0.4, high=0.6)
    for truth in (0.0, 0.1, 0.3):
        scores, tokens, ref, ref_tokens = _mixture(rng, 3000, truth)
        s = estimate_share(scores, tokens, ref, tpr, seed=1, reference_tokens=ref_tokens)
        true_tokens = tokens[: int(round(truth * 3000))].sum() / tokens.sum()
        assert s["method"] == "reference-acc" and s["documents"] == 3000 and s["tokens"] == int(tokens.sum())
        assert s["ci95"][0] <= s["estimate"] <= s["ci95"][1] and s["ci95"][0] < s["ci95"][1]
        assert s["ci95"][0] - 0.01 <= true_tokens <= s["ci95"][1] + 0.01
        assert abs(s["estimate"] - true_tokens) < 0.06
        assert s["reference"] == {"group": "global", "documents": 600}


def test_a_wider_tpr_prior_gives_a_wider_interval():
    rng = np.random.default_rng(6)
    scores, tokens, ref, ref_tokens = _mixture(rng, 2000, 0.3)
    narrow = estimate_share(scores, tokens, ref, TprPrior(0.55, 0.5, 0.6), reference_tokens=ref_tokens)
    wide = estimate_share(scores, tokens, ref, TprPrior(0.4, 0.15, 0.65), reference_tokens=ref_tokens)
    assert wide["ci95"][1] - wide["ci95"][0] > narrow["ci95"][1] - narrow["ci95"][0]


def test_estimates_are_deterministic_and_null_with_a_reason():
    rng = np.random.default_rng(7)
    scores, tokens, ref, _ = _mixture(rng, 500, 0.1)
    tpr = TprPrior(0.5, 0.3, 0.6)
    assert estimate_share(scores, tokens, ref, tpr, seed=4) == estimate_share(scores, tokens, ref, tpr, seed=4)
    few = estimate_share(scores[:5], tokens[:5], ref, tpr)
    assert few["estimate"] is None and "fewer than" in few["reason"] and few["documents"] == 5
    assert combine([Cell("domain:x").add(10, False)], {}, tpr, 0, "k")["reason"] == "no reference group"


def test_posterior_sums_to_the_estimate_over_a_group():
    share, tpr, fpr = 0.2, 0.6, 0.05
    f = share * tpr + (1 - share) * fpr  # the flagged share that gives this estimate
    mean = f * posterior(True, share, tpr, fpr) + (1 - f) * posterior(False, share, tpr, fpr)
    assert abs(mean - share) < 1e-12
    assert posterior(True, 0.0, tpr, fpr) == 0.0 and posterior(False, 1.0, tpr, fpr) == 1.0


def test_tpr_range_from_the_card_needs_enough_held_out_domains_for_a_floor():
    """The point is the mean held-out TPR. The floor is the worst held-out domain's TPR only when the card holds
    FLOOR_MIN_DATASETS held-out sets: the shipped card holds 10, and a new domain falls below the lowest of 10 with
    probability about 1/11, so it bounds nothing (floor 0: upper end 1)."""
    from transforms.score.estimate import FLOOR_MIN_DATASETS
    from transforms.score.model import DEFAULT_MODEL_DIR, read_card

    card = read_card(DEFAULT_MODEL_DIR)
    prior = TprPrior.from_card(card)
    lodo = card["leave_one_dataset_out"]
    held = {k: m["tpr_at_5pct_fpr"] for k, m in lodo.items() if k != "mean"}
    assert len(held) < FLOOR_MIN_DATASETS
    assert prior.point == pytest.approx(lodo["mean"]["tpr_at_5pct_fpr"])
    assert prior.low == 0.0 and prior.high == 1.0
    many = {f"set{i}": {"tpr_at_5pct_fpr": 0.3 + i / 100} for i in range(FLOOR_MIN_DATASETS)}
    assert TprPrior.from_card({"leave_one_dataset_out": many}).low == pytest.approx(0.3)
    assert TprPrior.from_card({"leave_one_dataset_out": many}, exclude=("set0",)).low == 0.0
    with pytest.raises(ValueError):
        TprPrior.from_card({})
    # in-domain test figures alone bound no out-of-domain TPR: the floor is 0, so the upper end of a share is 1
    in_domain = TprPrior.from_card({"test": card["test"]})
    assert in_domain.low == 0.0 and in_domain.point == pytest.approx(card["test"]["overall"]["tpr_at_5pct_fpr"] / 2)
    rng = np.random.default_rng(0)
    s = estimate_share(rng.normal(0, 1, 300), np.full(300, 50), rng.normal(0, 1, 600), in_domain)
    assert s["ci95"][1] == 1.0


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_an_all_ai_source_is_covered_when_the_floor_is_below_the_false_positive_rate(shift):
    """A card whose worst held-out TPR (the floor) lies below the reference's 5% false-positive rate leaves the
    detector no better than chance at the floor: nothing bounds the share, so the upper end is 1. Seen through the
    CLI: an all-AI source from a domain the detector never saw was reported as [0.000, 0.978]."""
    rng = np.random.default_rng(4)
    human = rng.normal(0, 1, 2000)
    scores = rng.normal(shift, 1, 500)  # every document is AI, written like the humans (shift 0) or a little off
    s = estimate_share(scores, np.full(500, 100), human, TprPrior(0.3, 0.006), seed=3)
    assert s["ci95"][1] == 1.0
    assert s["ci95"][0] <= s["estimate"] <= 1.0


def test_interval_covers_a_weak_detector_whose_tpr_is_at_the_assumed_floor():
    """AI text the detector barely separates (TPR@5% just above the floor): the point estimate is far off, but the
    interval must still reach the truth, because its upper end assumes the floor."""
    rng = np.random.default_rng(11)
    n, truth = 4000, 0.5
    human = rng.normal(0, 1, 6000)
    t95 = np.quantile(human, 0.95)
    ai = rng.normal(0.35, 1, int(truth * n))  # TPR at the human 95th percentile ~ 0.11
    tpr_true = float((ai > t95).mean())
    scores = np.concatenate([ai, rng.normal(0, 1, n - len(ai))])
    s = estimate_share(scores, np.full(n, 100), human, TprPrior(0.4, tpr_true * 0.9), seed=2)
    assert s["estimate"] < 0.3  # the mean TPR is far too optimistic here
    assert s["ci95"][0] <= truth <= s["ci95"][1]
    # the lower end assumes nothing: (f - FPR) / (1 - FPR) up to sampling error
    assert s["ci95"][0] < (np.mean(scores > t95) - 0.05) / 0.95 + 0.02


def test_point_fpr_is_the_held_out_token_flag_rate():
    halves = ((0.1, 0.2, 0.3, 0.9), (0.1, 0.2, 0.3, 0.4))
    ref = ReferenceGroup("g", 8, halves, ((10, 10, 10, 30), (10, 10, 10, 10)))
    # threshold for half 0 comes from half 1 (too small for alpha 0.05: +inf), so nothing is flagged
    assert ref.held_out_fpr()[0] == 0.0 and 0 < point_fpr(ref) < 0.1


def test_language_gate_uses_the_header_then_the_identifier():
    from transforms.score.language import LanguageGate, declared_language

    gate = LanguageGate()
    assert declared_language("eng,deu") == "en" and declared_language("deu") == "deu"
    assert declared_language("") is None
    english = "The quick brown fox jumps over the lazy dog and runs into the forest to hide."
    german = "Der schnelle braune Fuchs springt über den faulen Hund und läuft in den Wald."
    assert gate.supported(english, None) and not gate.supported(german, None)
    assert not gate.supported(english, "deu") and gate.supported(german, "eng")


# -- the detector's integrity (issue 10 item 12) --------------------------------------------------------------

_TRAIN_TINY = """
import random, sys, fasttext
labels, data, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
rng = random.Random(0)
with open(data, "w") as f:
    for i in range(300):
        f.write(labels[i % 2] + " " + " ".join(f"w{rng.randrange(500)}" for _ in range(30)) + "\\n")
fasttext.train_supervised(input=data, epoch=1, dim=8, thread=1, verbose=0, seed=1, lr=0.5, wordNgrams=2,
                          bucket=10_000, loss="softmax").save_model(out)
"""


def _tiny_fasttext(path, labels=("__label__ai", "__label__human")):
    """A real fastText model in well under a second, trained in a fresh interpreter with zero-filled heap blocks:
    fastText 0.9.3 reads memory it never initialised and hits `Encountered NaN` on small models (see conftest)."""
    import os
    import subprocess
    import sys

    import fasttext

    path.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", _TRAIN_TINY, ",".join(labels), str(path / "tiny.txt"),
                    str(path / "tiny.bin")], check=True, env=dict(os.environ, MALLOC_PERTURB_="255"))
    return fasttext.load_model(str(path / "tiny.bin"))


def _model_dir(tmp_path, labels=("__label__ai", "__label__human")):
    from transforms.score.train import write_model

    out = tmp_path / "model"
    model = _tiny_fasttext(tmp_path / "x", labels)
    card = {"name": "tiny", "calibration": {"method": "platt", "a": 1.0, "b": 0.0}, "threshold": 0.9,
            "test": {"overall": {"tpr_at_5pct_fpr": 0.5}}}
    write_model(model, card, str(out))
    return out


def test_write_model_leaves_a_matching_pair_and_no_partial_files(tmp_path):
    from transforms.score.model import Detector, sha256_file

    out = _model_dir(tmp_path)
    card = json.loads((out / "model_card.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["model.ftz", "model_card.json"]
    assert card["sha256"] == sha256_file(str(out / "model.ftz"))
    assert card["labels"] == ["__label__ai", "__label__human"]
    det = Detector.load(str(out))
    assert det.model_id == f"tiny@sha256:{card['sha256']}"
    assert 0 <= det.score(["w1 w2 w3"])[0] <= 1


def _load_error(model_dir) -> str:
    from transforms.score.model import Detector, ModelLoadError

    with pytest.raises(ModelLoadError) as e:
        Detector.load(str(model_dir))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_truncated_model_is_refused_before_fasttext_reads_it(tmp_path):
    out = _model_dir(tmp_path)
    data = (out / "model.ftz").read_bytes()
    (out / "model.ftz").write_bytes(data[: len(data) // 3])
    assert "does not match the card" in _load_error(out)


def test_a_model_with_other_labels_is_refused(tmp_path):
    from transforms.score.model import sha256_file

    out = _model_dir(tmp_path / "a", labels=("__label__pos", "__label__neg"))
    card = json.loads((out / "model_card.json").read_text())
    assert "labels must be" in _load_error(out)  # the card says what the model holds: refused
    card["labels"] = ["__label__ai", "__label__human"]  # a card that lies about the labels
    card["sha256"] = sha256_file(str(out / "model.ftz"))
    (out / "model_card.json").write_text(json.dumps(card))
    assert "model labels" in _load_error(out)


def test_swapped_model_and_broken_cards_are_one_line(tmp_path):
    good = _model_dir(tmp_path / "a")
    other = _model_dir(tmp_path / "b", labels=("__label__human", "__label__ai"))  # other bytes, same labels
    # train-detector killed between its two renames: another (valid) model beside the old card
    shutil.copy(other / "model.ftz", good / "model.ftz")
    assert "does not match the card" in _load_error(good)
    card = good / "model_card.json"
    for text, expect in (("{not json", "unreadable model_card.json"), ("[]", "not a JSON object"),
                         (json.dumps({"sha256": "x"}), "no valid sha256")):
        card.write_text(text)
        assert expect in _load_error(good)
    assert "unreadable model_card.json" in _load_error(tmp_path / "missing")


def test_a_card_whose_metrics_or_split_are_malformed_is_one_line(tmp_path, capsys):
    """Scoring reads the card's TPR figures and a domain-adapted model's reference split: a list or a NaN there
    failed inside the run (AttributeError, exit 1) or made NaN intervals; refused when the model loads."""
    from pipeline.cli import main

    out = _model_dir(tmp_path)
    good = json.loads((out / "model_card.json").read_text())
    (tmp_path / "in.jsonl").write_text('{"id": "1", "text": "hello world"}\n')
    for change, expect in (({"leave_one_dataset_out": [1, 2]}, "no valid leave_one_dataset_out"),
                           ({"leave_one_dataset_out": {k: {"tpr_at_5pct_fpr": float("nan")} for k in "abc"}},
                            "no valid leave_one_dataset_out"),
                           ({"leave_one_dataset_out_unadapted": {"a": {"tpr_at_5pct_fpr": [0.1]}}},
                            "no valid leave_one_dataset_out_unadapted"),
                           ({"test": [1]}, "no valid test"), ({"test": {"overall": {"tpr_at_5pct_fpr": -1}}},
                                                              "no valid test"),
                           ({"reference": [1]}, "no valid reference"), ({"reference": {"split": [1]}},
                                                                       "no valid reference")):
        (out / "model_card.json").write_text(json.dumps({**good, **change}))
        assert expect in _load_error(out)
        rc = main(["curate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o"),
                   "--detector_model", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and expect in err


def test_cli_refuses_a_truncated_model_in_one_line(tmp_path, capsys):
    from pipeline.cli import main

    out = _model_dir(tmp_path)
    data = (out / "model.ftz").read_bytes()
    (out / "model.ftz").write_bytes(data[:100])
    (tmp_path / "in.jsonl").write_text('{"id": "1", "text": "hello world"}\n')
    rc = main(["curate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o"),
               "--detector_model", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "does not match the card" in err and "\n" not in err


def test_model_is_read_through_beam_filesystems(gcs_emulator, tmp_path):
    from apache_beam.io.filesystems import FileSystems

    from transforms.score.model import Detector

    out = _model_dir(tmp_path)
    remote = f"gs://{gcs_emulator}/models/tiny"
    for name in ("model.ftz", "model_card.json"):
        with FileSystems.create(f"{remote}/{name}") as f:
            f.write((out / name).read_bytes())
    local, det = Detector.load(str(out)), Detector.load(remote)
    assert det.model_id == local.model_id
    assert det.score(["w3 w1 w7"])[0] == local.score(["w3 w1 w7"])[0]


def test_missing_human_reference_is_one_line(tmp_path, capsys):
    from pipeline.cli import main

    (tmp_path / "in.jsonl").write_text('{"id": "1", "text": "hello world"}\n')
    rc = main(["curate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o"),
               "--human_reference", str(tmp_path / "nothing" / "*.parquet")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--human_reference: no files match" in err and "\n" not in err


def test_a_parquet_reference_that_is_not_curated_is_one_line(tmp_path, capsys):
    """A .parquet reference is read as curated Documents: one that is not Parquet failed the run (exit 1), one
    of `id, text` rows served nothing and the run went on without a word."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.cli import main

    (tmp_path / "in.jsonl").write_text('{"id": "1", "text": "hello world"}\n')
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not parquet at all")
    pq.write_table(pa.table({"id": ["a"], "text": ["human words"]}), tmp_path / "plain.parquet")
    for name, message in (("junk.parquet", "is not a readable Parquet file (ArrowInvalid)"),
                          ("plain.parquet", "is not curated Parquet (no column source, offset, url, ...)")):
        rc = main(["curate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o"),
                   "--human_reference", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and f"--human_reference: {tmp_path / name} {message}" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_reference_file_no_reader_handles_is_one_line(tmp_path, capsys):
    from pipeline.cli import main

    (tmp_path / "notes.txt").write_text("not a crawl\n")
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    rc = main(["curate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o"),
               "--human_reference", str(tmp_path / "notes.txt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--human_reference:" in err and "unsupported file type .txt" in err and "\n" not in err
    rc = main(["train-detector", "--data", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "m"),
               "--human_reference", str(tmp_path / "in.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is not curated Parquet" in err and "\n" not in err


def test_an_incomplete_curated_folder_is_refused_as_human_reference(tmp_path, capsys):
    """A reference read from a half-written output would calibrate against whatever survived the crash."""
    from pipeline.cli import main

    lines = [json.dumps({"id": str(i), "text": f"page {i} says something about topic {i % 7} at length"})
             for i in range(30)]
    (tmp_path / "old.jsonl").write_text("\n".join(lines) + "\n")
    old = tmp_path / "old"
    assert main(["curate", "--input", str(tmp_path / "old.jsonl"), "--output", str(old), "--no_score"]) == 0
    capsys.readouterr()
    (old / "COMPLETE.json").unlink()  # what a kill -9 before the last step leaves
    reference = str(old / "documents" / "*.parquet")
    rc = main(["curate", "--input", str(tmp_path / "old.jsonl"), "--output", str(tmp_path / "new"),
               "--human_reference", reference])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--human_reference:" in err and "incomplete" in err and "\n" not in err
    assert not (tmp_path / "new" / "COMPLETE.json").exists()
    rc = main(["train-detector", "--data", str(tmp_path / "old.jsonl"), "--out", str(tmp_path / "m"),
               "--human_reference", reference])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--human_reference:" in err and "incomplete" in err and "\n" not in err


# -- end to end ------------------------------------------------------------------------------------------------

def _jsonl_crawl(path, n_ref: int, n_test_human: int, with_ai: bool = True, german: int = 0):
    """Records with `url` and `created`: reference pages dated before 2022-11-30, test pages after, same sites."""
    from pipeline.sample import human_paragraphs, llm_written

    paras = human_paragraphs()
    rng = random.Random(3)
    rng.shuffle(paras)
    rows = []
    for i in range(n_ref):
        rows.append({"id": f"r{i}", "url": f"https://site{i % 3}.example.org/p{i}", "created": "2021-06-01",
                     "text": paras[i]})
    for i in range(n_test_human):
        rows.append({"id": f"t{i}", "url": f"https://site{i % 3}.example.org/n{i}", "created": "2024-03-01",
                     "text": paras[n_ref + i]})
    if with_ai:
        for i, rec in enumerate(llm_written()):
            rows.append({"id": f"a{i}", "url": f"https://site{i % 3}.example.org/a{i}", "created": "2024-03-02",
                         "text": rec["text"]})
    for i in range(german):
        rows.append({"id": f"g{i}", "url": f"https://site0.example.org/de{i}", "created": "2024-03-01",
                     "text": "Die Dokumentation beschreibt, wie man Dateien liest und schreibt, und warum man "
                             f"dabei auf die Kodierung achten muss. Abschnitt {i}."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.mark.slow
def test_a_crawl_served_by_overlapping_groups_counts_each_reference_document_once(tmp_path):
    """A big site has its own group; a small site's pages fall back to the crawl's pooled group, which holds the big
    site's reference pages too. The crawl's estimate rests on the distinct reference documents, not the sum of the
    groups' sizes (which would count the big site's pages twice)."""
    from pipeline import curate
    from pipeline.sample import human_paragraphs
    from tests.helpers import read_documents

    paras = human_paragraphs()
    random.Random(5).shuffle(paras)
    rows = [{"id": f"r{i}", "url": f"https://big.example.org/p{i}", "created": "2021-06-01", "text": paras[i]}
            for i in range(MIN_REFERENCE + 40)]
    rows += [{"id": f"s{i}", "url": f"https://small.example.net/p{i}", "created": "2021-06-01",
              "text": paras[len(rows) + i]} for i in range(30)]
    n = len(rows)
    rows += [{"id": f"t{i}", "url": f"https://{('big.example.org', 'small.example.net')[i % 2]}/n{i}",
              "created": "2024-03-01", "text": paras[n + i]} for i in range(60)]
    (tmp_path / "crawl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary, _ = curate.run(["--input", str(tmp_path / "crawl.jsonl"), "--output", str(tmp_path / "out"),
                             "--no_near_dedup", "--no_exact_dedup"])
    scored = [d for d in read_documents(tmp_path / "out") if d.ai_score is not None]
    groups = summary["ai_share"]["by_reference"]
    assert set(groups) == {"domain:example.org", "source:unknown"}
    assert {d.ai_reference for d in scored if d.id.startswith("s")} == {"source:unknown"}
    distinct = sum(1 for d in scored if d.id[0] in "rs")
    assert groups["source:unknown"]["reference"]["documents"] == distinct
    crawl = summary["ai_share"]["by_crawl"]["unknown"]
    assert crawl["reference"] == {"group": "2 groups", "documents": distinct}
    assert distinct < sum(g["reference"]["documents"] for g in groups.values())


@pytest.mark.slow
def test_curate_with_reference_in_the_run_and_through_human_reference(tmp_path):
    from pipeline import curate
    from tests.helpers import read_documents

    n_ref = MIN_REFERENCE + 40
    _jsonl_crawl(tmp_path / "crawl.jsonl", n_ref, 80, german=2)
    summary, counters = curate.run(["--input", str(tmp_path / "crawl.jsonl"), "--output", str(tmp_path / "one"),
                                    "--no_near_dedup", "--no_exact_dedup"])
    docs = read_documents(tmp_path / "one")
    scored = [d for d in docs if d.ai_score is not None]
    assert all(d.ai_score is None for d in docs if d.id.startswith("g"))
    assert summary["scoring"]["null"]["unsupported_language"] == counters["score_null_unsupported_language"] >= 2
    assert summary["scoring"]["scored"] == len(scored) == counters["scored"]
    assert all(d.ai_reference == "domain:example.org" and 0 < d.ai_pvalue <= 1 and 0 <= d.p_ai <= 1 for d in scored)
    share = summary["ai_share"]["by_crawl"]["unknown"]
    n_scored_ref = sum(1 for d in scored if d.id.startswith("r"))
    assert n_scored_ref > MIN_REFERENCE
    assert share["reference"]["documents"] == n_scored_ref and share["method"] == "reference-acc"
    assert share["ci95"][0] <= share["estimate"] <= share["ci95"][1] and share["ci95"][0] < share["ci95"][1]
    assert set(summary["ai_share"]["by_reference"]) == {"domain:example.org"}
    # the in-run reference's own tokens are counted apart (the mixer rescales the share to the other documents)
    from transforms.tokens import count_tokens
    group = summary["ai_share"]["by_reference"]["domain:example.org"]
    assert group["reference_tokens"] == sum(count_tokens(d.text) for d in scored if d.id.startswith("r")) > 0
    assert group["tokens"] == sum(count_tokens(d.text) for d in scored)
    newer, k = group["outside_reference"], group["tokens"] / (group["tokens"] - group["reference_tokens"])
    assert newer["tokens"] == group["tokens"] - group["reference_tokens"]
    assert newer["ci95"][1] == pytest.approx(min(1.0, group["ci95"][1] * k), abs=2e-6)
    assert newer["estimate"] == pytest.approx(min(1.0, group["estimate"] * k), abs=2e-6)
    # p_ai: the run's own pre-LLM pages are the human reference (0); the newer pages carry the group's AI tokens,
    # at the share of the newer pages, so the token-weighted p_ai over the group stays near the group's estimate
    assert all(d.p_ai == 0.0 for d in scored if d.id.startswith("r"))
    weighted = sum(d.p_ai * count_tokens(d.text) for d in scored) / group["tokens"]
    assert weighted == pytest.approx(group["estimate"], abs=0.05)

    # the same test pages against the reference of an earlier curated run
    (tmp_path / "ref").mkdir()
    (tmp_path / "new").mkdir()
    lines = (tmp_path / "crawl.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "ref" / "old.jsonl").write_text("".join(lines[:n_ref]))
    (tmp_path / "new" / "new.jsonl").write_text("".join(lines[n_ref:]))
    curate.run(["--input", str(tmp_path / "ref" / "old.jsonl"), "--output", str(tmp_path / "old"),
                "--no_near_dedup", "--no_exact_dedup"])
    summary2, counters2 = curate.run(
        ["--input", str(tmp_path / "new" / "new.jsonl"), "--output", str(tmp_path / "two"), "--no_near_dedup",
         "--no_exact_dedup", "--human_reference", str(tmp_path / "old" / "documents" / "*.parquet")])
    assert counters2["reference_read"] == n_ref and summary2["reconciles"]
    share2 = summary2["ai_share"]["by_crawl"]["unknown"]
    assert share2["reference"]["documents"] == n_scored_ref and share2["reference_tokens"] == 0
    two = {d.id: d for d in read_documents(tmp_path / "two")}
    one = {d.id: d for d in docs}
    assert set(two) == {i for i in one if not i.startswith("r")}
    assert all(two[i].ai_score == one[i].ai_score for i in two)

    # the raw reference records themselves (JSONL, not curated): read and tagged like --input
    summary3, counters3 = curate.run(
        ["--input", str(tmp_path / "new" / "new.jsonl"), "--output", str(tmp_path / "three"), "--no_near_dedup",
         "--no_exact_dedup", "--human_reference", str(tmp_path / "ref" / "old.jsonl")])
    assert counters3["reference_read"] == n_ref and summary3["reconciles"]
    share3 = summary3["ai_share"]["by_crawl"]["unknown"]
    assert share3["reference"] == share2["reference"]
    three = {d.id: d for d in read_documents(tmp_path / "three")}
    assert set(three) == set(two) and all(three[i].ai_reference == "domain:example.org" for i in three
                                          if three[i].ai_score is not None)


def test_reference_sample_is_bounded_and_independent_of_order_and_bundling(monkeypatch):
    from transforms.score import reference

    monkeypatch.setattr(reference, "MAX_PER_HALF", 50)
    fn = reference._BoundedSample()
    docs = [Document(str(i), "t", "f", i) for i in range(1000)]
    items = [(half_of(d, 1), reference._hash(1, "sample", d), i / 1000, 10 + i % 5) for i, d in enumerate(docs)]

    def run(order, bundles):
        accs = []
        for b in range(bundles):
            acc = fn.create_accumulator()
            for k in order[b::bundles]:
                acc = fn.add_input(acc, items[k])
            accs.append(acc)
        merged = fn.merge_accumulators(accs)
        merged = fn.add_input(merged, items[0])  # adding after a merge keeps a valid heap
        return fn.extract_output(merged)

    order = list(range(1000))
    a = run(order, 1)
    random.Random(4).shuffle(order)
    b = run(order, 7)
    assert a[1] == b[1] and a[2] == b[2] and all(len(h) == 50 for h in a[1])
    assert a[0] == b[0] == 1001


@pytest.mark.slow
def test_train_detector_with_human_reference_records_the_split(detect_dir, tmp_path, capsys, monkeypatch):
    """The CLI's adaptation path end to end; the split bookkeeping, not the model's quality, is under test, so
    fastText gets the tiny test dimensions (the shipped 64 x 500,000 table took most of a minute to fit)."""
    import pyarrow.parquet as pq

    from pipeline.cli import main
    from pipeline.sample import human_paragraphs
    from tests.conftest import TINY_PARAMS
    from transforms.document import to_table
    from transforms.score import train
    from transforms.score.reference import trained_on

    monkeypatch.setattr(train, "DEFAULT_PARAMS", {**train.DEFAULT_PARAMS, "dim": TINY_PARAMS["dim"],
                                                  "bucket": TINY_PARAMS["bucket"], "epoch": TINY_PARAMS["epoch"]})
    docs = [Document(f"r{i}", t, "old.warc.gz", i * 100) for i, t in enumerate(human_paragraphs()[:120])]
    (tmp_path / "ref").mkdir()
    pq.write_table(to_table(docs), str(tmp_path / "ref" / "part-0.parquet"))
    rc = main(["train-detector", "--data", str(detect_dir / "glimpse.jsonl.gz"), "--limit_per_file", "150",
               "--human_reference", str(tmp_path / "ref" / "*.parquet"), "--reference_weight", "3",
               "--out", str(tmp_path / "model")])
    assert rc == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    ref = card["reference"]
    n_train = sum(trained_on(d, ref["split"]) for d in docs)
    assert ref["weight"] == 3 and ref["train_documents"] == n_train and ref["held_out_documents"] == 120 - n_train
    assert 0 <= ref["in_domain"]["flagged_at_threshold"] <= 1
    # one labelled set: no leave-one-dataset-out figures (at least 3 are needed), so the card bounds no TPR
    assert "leave_one_dataset_out" not in card and TprPrior.from_card(card).low == 0.0
    assert "reference flag rate" in capsys.readouterr().out
    assert main(["train-detector", "--data", str(detect_dir / "glimpse.jsonl.gz"), "--human_reference",
                 str(tmp_path / "none" / "*.parquet"), "--out", str(tmp_path / "m2")]) == 2
    assert "no files match" in capsys.readouterr().err


@pytest.mark.slow
def test_an_adapted_models_floor_comes_from_models_adapted_to_each_held_out_set(detect_dir):
    """An adapted detector learns that its domain's style is human, which can lower its TPR there; its card's
    leave-one-dataset-out figures therefore come from models adapted to each held-out set's own humans (half of its
    groups in training), tested on the other half only."""
    from tests.conftest import TINY_PARAMS
    from transforms.score import train

    files = [detect_dir / f"{n}.jsonl.gz" for n in ("glimpse", "hc3plus", "tweepfake")]
    examples = train.load([str(f) for f in files], 80)
    plain = train.leave_one_dataset_out(examples, TINY_PARAMS, 1, log=lambda m: None)
    lines = []
    adapted = train.leave_one_dataset_out(examples, TINY_PARAMS, 1, log=lines.append, adapt_weight=3)
    for held in ("glimpse", "hc3plus", "tweepfake"):
        target = [e for e in examples if e.dataset == held]
        tested = train.split(target, 1, fractions=(0.5, 0.0))["test"]
        assert plain[held]["n"] == len(target)
        assert adapted[held]["n"] == len(tested) < len(target)
        assert adapted[held]["human"] == sum(1 for e in tested if e.label == 0) > 0
        assert adapted[held]["tpr_at_5pct_fpr"] is not None
    assert all("adapted to its humans" in line for line in lines)
    sets = ("glimpse", "hc3plus", "tweepfake")
    prior = TprPrior.from_card({"leave_one_dataset_out": adapted, "leave_one_dataset_out_unadapted": plain})
    assert prior.point == pytest.approx(np.mean([adapted[h]["tpr_at_5pct_fpr"] for h in sets]))
    # a floor from both protocols, once the card holds enough held-out sets (here: the same three, repeated)
    from transforms.score.estimate import FLOOR_MIN_DATASETS

    def widen(lodo):
        return {f"{h}#{i}": lodo[h] for h in sets for i in range(FLOOR_MIN_DATASETS)}

    prior = TprPrior.from_card({"leave_one_dataset_out": widen(adapted),
                                "leave_one_dataset_out_unadapted": widen(plain)})
    assert prior.low == min(m[h]["tpr_at_5pct_fpr"] for m in (adapted, plain) for h in sets)


@pytest.mark.slow
def test_pre_llm_pages_with_a_later_copy_do_not_calibrate(tmp_path):
    """Dedup keeps the earliest copy, so the 2024 pages that survive are those with no earlier copy. Reference pages
    whose cluster held a 2024 copy (exact or near, also through an exact copy of a near duplicate) are left out of
    the in-run reference, counted once in the summary and in Beam Metrics; a page recrawled before the cutoff
    still calibrates."""
    from pipeline import curate
    from pipeline.sample import human_paragraphs
    from tests.helpers import read_documents

    paras = [p for p in human_paragraphs() if len(p.split()) >= 40]
    random.Random(11).shuffle(paras)
    n_ref = MIN_REFERENCE + 60
    ref = [{"id": f"r{i}", "url": f"https://site.example.org/p{i}", "created": "2021-06-01", "text": paras[i]}
           for i in range(n_ref)]
    words = lambda i: paras[i].split()  # noqa: E731
    later = [{"id": "x0", "url": "https://site.example.org/x0", "created": "2024-05-01", "text": paras[0]},
             {"id": "x1", "url": "https://site.example.org/x1", "created": "2024-05-01",
              "text": " ".join(words(1)[:-1] + ["changed."])},
             {"id": "n2", "url": "https://site.example.org/n2", "created": "2021-09-01",
              "text": " ".join(words(2)[:-1] + ["edited."])},
             {"id": "x2", "url": "https://site.example.org/x2", "created": "2024-05-01",
              "text": " ".join(words(2)[:-1] + ["edited."])},
             {"id": "e3", "url": "https://site.example.org/e3", "created": "2020-01-01", "text": paras[3]}]
    test = [{"id": f"t{i}", "url": f"https://site.example.org/n{i}", "created": "2024-03-01",
             "text": paras[n_ref + i]} for i in range(40)]
    (tmp_path / "crawl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ref + later + test))
    summary, counters = curate.run(["--input", str(tmp_path / "crawl.jsonl"), "--output", str(tmp_path / "out")])
    docs = {d.id: d for d in read_documents(tmp_path / "out")}
    assert not {"x0", "x1", "x2", "n2"} & set(docs)  # every later copy went; r2 absorbed n2, which absorbed x2
    for i in (0, 1, 2):
        assert docs[f"r{i}"].first_seen.startswith("2021") and docs[f"r{i}"].last_seen.startswith("2024")
    assert "r3" not in docs and docs["e3"].first_seen.startswith("2020") and docs["e3"].last_seen.startswith("2021")
    assert docs["r7"].last_seen == docs["r7"].capture_date
    assert summary["scoring"]["reference_later_copy"] == counters["reference_later_copy"] == 3
    pre_llm = sum(1 for d in docs.values() if d.provenance["pre_llm"] and d.ai_score is not None)
    group = summary["ai_share"]["by_reference"]["domain:example.org"]
    assert group["reference"]["documents"] == pre_llm - 3
    assert all(d.ai_reference == "domain:example.org" for d in docs.values() if d.ai_score is not None)


def test_curated_parquet_without_the_newer_columns_still_reads_as_documents(tmp_path):
    """Outputs written before `last_seen` existed keep their scores and provenance when read again."""
    import pyarrow.parquet as pq

    from transforms.document import ADDED_COLUMNS, Provenance, to_table
    from transforms.io.parquet import _as_read

    doc = Document(id="a", text="some words here", source="s", offset=0, capture_date="2021-01-01T00:00:00Z",
                   provenance=Provenance(pre_llm=True), ai_score=0.25, first_seen="2021-01-01T00:00:00Z")
    table = to_table([doc]).drop_columns(list(ADDED_COLUMNS))
    pq.write_table(table, tmp_path / "old.parquet")
    typed, is_typed = _as_read(pq.read_table(tmp_path / "old.parquet"))
    assert is_typed and typed.column("last_seen").null_count == 1
    from transforms.document import from_row
    back = from_row(typed.to_pylist()[0])
    assert back.ai_score == 0.25 and back.provenance["pre_llm"] is True and back.last_seen is None


def test_a_reference_file_reached_by_several_globs_or_names_is_one_file(tmp_path, monkeypatch):
    """`--human_reference 'ref/*.jsonl' ./ref/a.jsonl` read a.jsonl twice: its documents counted twice in the
    reference size, which the p-values' and the mixer's bounds take as independent documents."""
    from transforms.score.reference import match_reference

    (tmp_path / "ref").mkdir()
    for name in ("a", "b"):
        (tmp_path / "ref" / f"{name}.jsonl").write_text(json.dumps({"id": name, "text": f"text {name}"}) + "\n")
    monkeypatch.chdir(tmp_path)
    files = match_reference(["ref/*.jsonl", "./ref/a.jsonl", str(tmp_path / "ref" / "a.jsonl"), "ref/a.jsonl"])
    assert files == ["./ref/a.jsonl", "ref/b.jsonl"]

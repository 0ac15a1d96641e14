"""The detector as a loaded object: a quantised fastText model plus its calibration and threshold.

A model folder (local or any Beam FileSystems path, e.g. gs://) holds `model.ftz` and `model_card.json`
(calibration, threshold, labels, sha256, metrics). The model bytes are checked against the card's sha256 before
fastText sees them (fastText's loader crashes the process on a truncated or foreign file instead of raising), and
its labels against the card after loading. Its identity, recorded on every scored document as `ai_model`, is the
card's name and the model file's sha256.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.io.files import local_copy, read_bytes
from transforms.score.calibration import Platt
from transforms.score.normalize import for_scoring

AI_LABEL = "__label__ai"
HUMAN_LABEL = "__label__human"
LABELS = (AI_LABEL, HUMAN_LABEL)
MODEL_FILE = "model.ftz"
CARD_FILE = "model_card.json"
MAX_CARD_BYTES = 16 << 20  # a card is a few KiB; a device or a huge file is refused, not read
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_model")


class ModelLoadError(RuntimeError):
    """A missing, broken or mismatched model folder; the message is one line."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(model_dir: str) -> dict:
    """The card, with the fields loading relies on checked (one-line ModelLoadError otherwise)."""
    path = FileSystems.join(model_dir, CARD_FILE)
    try:
        card = json.loads(read_bytes(path, MAX_CARD_BYTES).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: JSON nested too deep
        raise ModelLoadError(f"cannot load detector from {model_dir}: unreadable {CARD_FILE} "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    problems = []
    if not isinstance(card, dict):
        raise ModelLoadError(f"cannot load detector from {model_dir}: {CARD_FILE} is not a JSON object")
    sha = card.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        problems.append("no valid sha256")
    cal = card.get("calibration")
    if not (isinstance(cal, dict) and all(isinstance(cal.get(k), (int, float)) and math.isfinite(cal[k])
                                          for k in ("a", "b"))):
        problems.append("no valid calibration {a, b}")
    thr = card.get("threshold")
    if not (isinstance(thr, (int, float)) and 0 <= thr <= 1):
        problems.append("threshold not in [0, 1]")
    labels = card.get("labels")
    if not isinstance(labels, list) or sorted(map(str, labels)) != sorted(LABELS):
        problems.append(f"labels must be {list(LABELS)}")
    problems += _metric_problems(card)
    if problems:
        raise ModelLoadError(f"cannot load detector from {model_dir}: {CARD_FILE} has " + ", ".join(problems))
    return card


def _is_rate(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _metric_problems(card: dict) -> list[str]:
    """The parts of the card that scoring reads besides the calibration: the TPR figures the share intervals
    assume (leave-one-dataset-out, else test) and a domain-adapted model's reference split. A hand-edited card
    with a list or a NaN there failed inside the run."""
    problems = []
    for key in ("leave_one_dataset_out", "leave_one_dataset_out_unadapted"):
        lodo = card.get(key)
        if lodo is not None and not (isinstance(lodo, dict) and all(
                not isinstance(m, dict) or m.get("tpr_at_5pct_fpr") is None or _is_rate(m["tpr_at_5pct_fpr"])
                for m in lodo.values())):
            problems.append(f"no valid {key} {{dataset: {{tpr_at_5pct_fpr: a rate in [0, 1]}}}}")
    test = card.get("test")
    overall = test.get("overall") if isinstance(test, dict) else None
    if test is not None and not (isinstance(test, dict) and (overall is None or (isinstance(overall, dict) and (
            overall.get("tpr_at_5pct_fpr") is None or _is_rate(overall["tpr_at_5pct_fpr"]))))):
        problems.append("no valid test {overall: {tpr_at_5pct_fpr: a rate in [0, 1]}}")
    ref = card.get("reference")
    split = ref.get("split") if isinstance(ref, dict) else None
    if ref is not None and not (isinstance(ref, dict) and (split is None or (
            isinstance(split, dict) and _is_rate(split.get("train_fraction")) and "seed" in split))):
        problems.append("no valid reference {split: {seed, train_fraction in [0, 1]}}")
    return problems


def local_model_copy(model_dir: str, sha256: str) -> str:
    """A local file holding the model bytes whose sha256 is `sha256` (fastText opens local files only; remote
    folders are copied once, keyed by content); ModelLoadError when the bytes are not the ones the card describes."""
    try:
        path = local_copy(FileSystems.join(model_dir, MODEL_FILE))
        digest = sha256_file(path)
    except OSError:
        raise ModelLoadError(f"cannot load detector from {model_dir}: no readable {MODEL_FILE}") from None
    if digest != sha256:
        raise ModelLoadError(f"cannot load detector from {model_dir}: {MODEL_FILE} sha256 {digest[:12]}… does "
                             f"not match the card's {sha256[:12]}… (truncated, replaced or half-written model)")
    return path


@dataclass
class Detector:
    model: object
    calibration: Platt
    threshold: float
    model_id: str
    card: dict

    @classmethod
    def load(cls, model_dir: str) -> "Detector":
        import fasttext

        card = read_card(model_dir)
        path = local_model_copy(model_dir, card["sha256"])
        try:
            fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time warning
            model = fasttext.load_model(path)
        except (OSError, ValueError, RuntimeError, MemoryError) as e:
            raise ModelLoadError(f"cannot load detector from {model_dir}: {type(e).__name__}") from None
        labels = sorted(model.get_labels())
        if labels != sorted(LABELS):
            raise ModelLoadError(f"cannot load detector from {model_dir}: model labels {labels[:4]} are not "
                                 f"{list(LABELS)}")
        name = card.get("name") if isinstance(card.get("name"), str) else os.path.basename(model_dir.rstrip("/"))
        return cls(model, Platt.from_json(card["calibration"]), float(card["threshold"]),
                   f"{name}@sha256:{card['sha256']}", card)

    def raw_scores(self, texts: list[str]) -> np.ndarray:
        """P(ai) before calibration. fastText's predict needs a list (a str raises) without newlines."""
        labels, probs = self.model.predict(texts, k=2)
        return np.array([p[list(ls).index(AI_LABEL)] if AI_LABEL in ls else 1.0 - p[0]
                         for ls, p in zip(labels, probs)])

    def score(self, texts: list[str]) -> np.ndarray:
        return self.calibration(self.raw_scores([for_scoring(t) for t in texts]))

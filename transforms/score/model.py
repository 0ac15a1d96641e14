"""The detector as a loaded object: a quantised fastText model plus its calibration and threshold.

A model folder holds `model.ftz` and `model_card.json` (calibration, threshold, metrics). Its identity is the
folder name and the model file's sha256, recorded on every scored document as `ai_model`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.io.files import local_copy, read_bytes
from transforms.score.calibration import Platt
from transforms.score.normalize import for_scoring

AI_LABEL = "__label__ai"
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_model")


class ModelLoadError(RuntimeError):
    pass


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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

        try:
            card = json.loads(read_bytes(FileSystems.join(model_dir, "model_card.json")))
            path = local_copy(FileSystems.join(model_dir, "model.ftz"))  # fastText opens local files only
            fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time warning
            model = fasttext.load_model(path)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load detector from {model_dir}: {e}") from None
        digest = sha256_file(path)
        return cls(model, Platt.from_json(card["calibration"]), float(card["threshold"]),
                   f"{card.get('name', os.path.basename(model_dir.rstrip('/')))}@sha256:{digest}", card)

    def raw_scores(self, texts: list[str]) -> np.ndarray:
        """P(ai) before calibration. fastText's predict needs a list (a str raises) without newlines."""
        labels, probs = self.model.predict(texts, k=2)
        return np.array([p[list(ls).index(AI_LABEL)] if AI_LABEL in ls else 1.0 - p[0]
                         for ls, p in zip(labels, probs)])

    def score(self, texts: list[str]) -> np.ndarray:
        return self.calibration(self.raw_scores([for_scoring(t) for t in texts]))

"""`EstimateSyntheticFraction`: the true share of AI-written documents (and tokens) in a corpus, with a 95% CI.

Both estimators work from a histogram of calibrated scores, so the corpus is never gathered: a CombinePerKey
builds the histogram, and the estimate is a small computation on it.

- Adjusted classify-and-count (ACC): flagged = share with p_ai >= t; estimate = (flagged - FPR) / (TPR - FPR),
  clipped to [0, 1], with the detector's TPR and FPR at t measured on its validation split. CI by the delta
  method, including the validation uncertainty of TPR and FPR.
- Mixture MLE (threshold-free, in the spirit of Liang et al. 2024): the corpus histogram is modelled as
  pi * f_ai + (1 - pi) * f_human, with both densities taken from validation; pi maximises the likelihood; CI from
  the Fisher information.

Token estimates weight each document by its token count (whitespace-separated words); their CI reuses the
document-level standard error, an approximation stated in the output.
"""
from __future__ import annotations

import math

import apache_beam as beam
import numpy as np

Z95 = 1.959964


def _clip(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def _bin(p: float, bins: int) -> int:
    return min(bins - 1, max(0, int(p * bins)))


def rates_at(card: dict, threshold: float) -> tuple[float, float, int, int]:
    """Validation TPR and FPR of p_ai >= threshold, from the card's histograms (threshold on a bin edge)."""
    h = card["validation_histograms"]
    k = _bin(threshold, len(h["human"]))
    ai, human = np.asarray(h["ai"], float), np.asarray(h["human"], float)
    return ai[k:].sum() / ai.sum(), human[k:].sum() / human.sum(), int(ai.sum()), int(human.sum())


def acc(counts: np.ndarray, card: dict, threshold: float = 0.5) -> dict:
    n = counts.sum()
    k = _bin(threshold, len(counts))
    f = counts[k:].sum() / n if n else 0.0
    tpr, fpr, n_ai, n_h = rates_at(card, threshold)
    gap = max(tpr - fpr, 1e-9)
    est = (f - fpr) / gap
    var = (f * (1 - f) / max(n, 1)) / gap**2
    var += ((f - tpr) / gap**2) ** 2 * fpr * (1 - fpr) / n_h
    var += ((f - fpr) / gap**2) ** 2 * tpr * (1 - tpr) / n_ai
    se = math.sqrt(var)
    return {"estimate": _clip(est), "ci95": [_clip(est - Z95 * se), _clip(est + Z95 * se)], "flagged": float(f),
            "threshold": threshold, "tpr": float(tpr), "fpr": float(fpr)}


def mixture(counts: np.ndarray, card: dict) -> dict:
    h = card["validation_histograms"]
    f_ai = (np.asarray(h["ai"], float) + 0.5) / (np.sum(h["ai"]) + 0.5 * len(h["ai"]))
    f_h = (np.asarray(h["human"], float) + 0.5) / (np.sum(h["human"]) + 0.5 * len(h["human"]))
    grid = np.linspace(0, 1, 2001)
    ll = (counts[None, :] * np.log(grid[:, None] * f_ai[None, :] + (1 - grid[:, None]) * f_h[None, :])).sum(1)
    pi = float(grid[int(np.argmax(ll))])
    mix = pi * f_ai + (1 - pi) * f_h
    info = float(np.sum(counts * (f_ai - f_h) ** 2 / mix**2))
    se = 1 / math.sqrt(info) if info > 0 else 1.0
    return {"estimate": pi, "ci95": [_clip(pi - Z95 * se), _clip(pi + Z95 * se)]}


def estimate(doc_counts: np.ndarray, token_counts: np.ndarray, card: dict, threshold: float = 0.5) -> dict:
    n = float(doc_counts.sum())
    out = {"documents": int(n), "tokens": int(token_counts.sum()),
           "acc": acc(doc_counts, card, threshold), "mixture": mixture(doc_counts, card)}
    if token_counts.sum() > 0:
        scaled = token_counts * (n / token_counts.sum())  # token shares on the document scale, for the CI
        out["acc_tokens"] = acc(scaled, card, threshold)
        out["mixture_tokens"] = mixture(scaled, card)
        out["token_ci_note"] = "token CIs reuse the document-level standard error"
    return out


class _Histogram(beam.CombineFn):
    def __init__(self, bins: int):
        self._bins = bins

    def create_accumulator(self):
        return np.zeros(self._bins), np.zeros(self._bins)

    def add_input(self, acc_, doc):
        k = _bin(doc.p_ai, self._bins)
        acc_[0][k] += 1
        acc_[1][k] += len(doc.text.split())
        return acc_

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), sum(a[1] for a in accs)

    def extract_output(self, acc_):
        return acc_


class EstimateSyntheticFraction(beam.PTransform):
    """Scored documents -> (key, estimate dict) per `key_fn` (default: one estimate for the whole PCollection)."""

    def __init__(self, card: dict, key_fn=None, threshold: float = 0.5):
        super().__init__()
        self._card = card
        self._key_fn = key_fn or (lambda d: "all")
        self._threshold = threshold

    def expand(self, docs):
        card, key_fn, t = self._card, self._key_fn, self._threshold
        bins = len(card["validation_histograms"]["human"])
        return (
            docs
            | "Scored" >> beam.Filter(lambda d: d.p_ai is not None)
            | "Key" >> beam.Map(lambda d: (key_fn(d), d))
            | "Histogram" >> beam.CombinePerKey(_Histogram(bins))
            | "Estimate" >> beam.MapTuple(lambda k, h: (k, estimate(h[0], h[1], card, t)))
        )

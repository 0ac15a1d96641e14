"""The AI share of a corpus's tokens, with a 95% interval that carries every uncertainty we know of.

Reference-adjusted classify-and-count (the most robust estimator measured in the research notes): each document is
flagged when its score exceeds its group's human-reference threshold (fitted on the other half of the reference,
so at most ALPHA of human text is flagged); then

    share = (f - FPR) / (TPR - FPR)

with f the flagged share of tokens, FPR the flag rate of held-out reference documents (measured, per group) and
TPR the detector's true-positive rate at a 5%-FPR threshold. TPR cannot be measured on a crawl (it has no labelled
AI text) and is worse out of domain than on training data, so it is a prior taken from the model card: its point
is the mean leave-one-dataset-out TPR@5%FPR, its range runs from the lower quartile of those held-out sets to the
highest of them or the in-domain test TPR@5%FPR (cards without leave-one-dataset-out figures use the test figure
and half of it). The low end drives the upper bound (what a ceiling needs); the high end only the lower bound.

The 95% interval comes from `DRAWS` posterior draws of the share (seeded by the key): per group, a uniform prior on
the share, a binomial likelihood of the flagged tokens on the effective number of documents, FPR integrated over
its Jeffreys Beta posterior from the held-out reference, TPR over its prior (one set of TPR draws shared by every
group: its error is systematic, not independent). Groups combine draw by draw, token-weighted. The share stays in
[0, 1] by construction and the interval is zero-width only when the data make it so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import apache_beam as beam

import numpy as np
import xxhash
from scipy import stats

from transforms.score.reference import ALPHA, ReferenceGroup
from transforms.tokens import count_tokens

DRAWS = 2000
METHOD = "reference-acc"
MIN_DOCUMENTS = 20


@dataclass(frozen=True)
class TprPrior:
    point: float
    low: float
    high: float

    @classmethod
    def from_card(cls, card: dict, exclude: tuple[str, ...] = ()) -> "TprPrior":
        lodo = card.get("leave_one_dataset_out") or {}
        held = [m.get("tpr_at_5pct_fpr") for k, m in lodo.items()
                if k != "mean" and k not in exclude and isinstance(m, dict)]
        held = [float(v) for v in held if isinstance(v, (int, float))]
        test = ((card.get("test") or {}).get("overall") or {}).get("tpr_at_5pct_fpr")
        test = float(test) if isinstance(test, (int, float)) else None
        if len(held) >= 3:
            high = max(held) if test is None else max(test, max(held))
            return cls(float(np.mean(held)), float(np.quantile(held, 0.25)), high)
        if test is None:
            raise ValueError("the model card has no TPR@5%FPR figure (test or leave-one-dataset-out)")
        return cls(test / 2 + test / 4, test / 2, test)

    def grid(self, points: int) -> np.ndarray:
        """Midpoints of `points` equal slices of [low, high]: the uniform prior, discretised."""
        return self.low + (self.high - self.low) * (np.arange(points) + 0.5) / points


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(xxhash.xxh3_64_intdigest(f"{seed}\x00{key}".encode()))


@dataclass
class Cell:
    """Additive statistics of the documents served by one reference group (within one crawl, or overall)."""

    group: str
    documents: int = 0
    tokens: int = 0
    tokens_sq: int = 0
    flagged_tokens: int = 0

    def add(self, tokens: int, flagged: bool) -> "Cell":
        self.documents += 1
        self.tokens += tokens
        self.tokens_sq += tokens * tokens
        self.flagged_tokens += tokens if flagged else 0
        return self

    def merge(self, other: "Cell") -> "Cell":
        self.documents += other.documents
        self.tokens += other.tokens
        self.tokens_sq += other.tokens_sq
        self.flagged_tokens += other.flagged_tokens
        return self


def point_fpr(ref: ReferenceGroup) -> float:
    """The held-out flag rate of the group's human reference tokens (Jeffreys posterior mean: never exactly 0)."""
    rate, n_eff = ref.held_out_fpr()
    return (rate * n_eff + 0.5) / (n_eff + 1)


_PI = np.linspace(0.0, 1.0, 401)
_FPR_POINTS = 64
_TPR_POINTS = 16


def _cell_draws(cell: Cell, ref: ReferenceGroup, tpr: TprPrior, tpr_index: np.ndarray, seed: int,
                key: str) -> tuple[float, np.ndarray]:
    """(point share, posterior draws of the share) of one cell.

    For each TPR on its grid, the posterior of the share on a grid (uniform prior) given the flagged tokens
    (binomial on the effective number of documents), integrating FPR over its Beta posterior from the held-out
    reference, under the assumption TPR > FPR (FPR values at or above the TPR get no weight). The share stays in
    [0, 1] by construction, so cells add without clipping, and no interval is zero-width unless the data are."""
    f = cell.flagged_tokens / cell.tokens
    n = cell.tokens ** 2 / cell.tokens_sq
    k = f * n
    rate, m = ref.held_out_fpr()
    qs = (np.arange(_FPR_POINTS) + 0.5) / _FPR_POINTS
    fpr = stats.beta.ppf(qs, rate * m + 0.5, (1 - rate) * m + 0.5)
    cdfs = np.empty((_TPR_POINTS, len(_PI)))
    for i, t in enumerate(tpr.grid(_TPR_POINTS)):
        q = fpr[:, None] + _PI[None, :] * (t - fpr[:, None])
        q = np.clip(q, 1e-12, 1 - 1e-12)
        ll = k * np.log(q) + (n - k) * np.log1p(-q)
        ll[fpr >= t, :] = -np.inf
        if np.isneginf(ll).all():
            post = np.ones(len(_PI))  # a blind detector says nothing: the uniform prior stands
        else:
            post = np.exp(ll - ll.max()).sum(axis=0)
        cdf = np.cumsum(post)
        cdfs[i] = cdf / cdf[-1]
    u = _rng(seed, key).uniform(0, 1, DRAWS)
    draws = np.array([_PI[min(len(_PI) - 1, int(np.searchsorted(cdfs[i], x)))] for i, x in zip(tpr_index, u)])
    return _share(f, point_fpr(ref), tpr.point), draws


def _share(f: float, fpr: float, tpr: float) -> float:
    """Adjusted classify-and-count, (f - FPR) / (TPR - FPR) clipped to [0, 1]; 1 when the detector cannot tell
    (TPR <= FPR) and there is an excess of flags (the conservative answer for a ceiling)."""
    if tpr <= fpr:
        return 1.0 if f > fpr else 0.0
    return float(min(1.0, max(0.0, (f - fpr) / (tpr - fpr))))


def null_share(reason: str, documents: int = 0, tokens: int = 0) -> dict:
    return {"estimate": None, "reason": reason, "documents": int(documents), "tokens": int(tokens)}


def share_draws(cells: list[Cell], references: dict, tpr: TprPrior, seed: int, key: str) -> tuple[float, np.ndarray]:
    """(token-weighted point share, DRAWS posterior draws) for the union of `cells`, each served by its own
    reference group; the draws combine the cells draw by draw."""
    tokens = sum(c.tokens for c in cells)
    tpr_index = _rng(seed, "tpr").integers(0, _TPR_POINTS, DRAWS)  # shared by every cell: TPR error is systematic
    point, draws = 0.0, np.zeros(DRAWS)
    for c in sorted(cells, key=lambda c: c.group):
        p, d = _cell_draws(c, references[c.group], tpr, tpr_index, seed, f"{key}\x00{c.group}")
        point += p * c.tokens / tokens
        draws += d * c.tokens / tokens
    return point, draws


def combine(cells: list[Cell], references: dict, tpr: TprPrior, seed: int, key: str,
            reference_group: str | None = None) -> dict:
    """The `ai_share` entry S for the union of `cells`: the token-weighted share and its 95% interval."""
    cells = [c for c in cells if c.tokens > 0 and c.group in references]
    documents, tokens = sum(c.documents for c in cells), sum(c.tokens for c in cells)
    if not cells:
        return null_share("no reference group", documents, tokens)
    if not all(references[c.group].usable for c in cells):
        return null_share(f"reference too small for a {ALPHA:.0%} threshold", documents, tokens)
    if documents < MIN_DOCUMENTS:
        return null_share(f"fewer than {MIN_DOCUMENTS} scored documents", documents, tokens)
    point, draws = share_draws(cells, references, tpr, seed, key)
    lo, hi = (float(x) for x in np.quantile(draws, [0.025, 0.975]))
    lo, hi = min(lo, point), max(hi, point)
    ref_docs = sum(references[c.group].documents for c in cells)
    group = reference_group or (cells[0].group if len(cells) == 1 else f"{len(cells)} groups")
    return {"estimate": round(point, 6), "ci95": [round(lo, 6), round(hi, 6)], "documents": documents,
            "tokens": tokens, "method": METHOD, "reference": {"group": group, "documents": ref_docs}}


def one_group(scores, tokens, reference_scores, seed: int = 0, group: str = "global",
              reference_tokens=None) -> tuple[Cell, ReferenceGroup]:
    """The pipeline's cell and reference group for plain arrays: the reference is split in two halves (alternate
    positions); a document goes to a half by a keyed hash of (seed, its index) and is flagged above the threshold
    fitted on the other half."""
    ref = np.asarray(reference_scores, float)
    ref_tokens = np.ones(len(ref), int) if reference_tokens is None else np.asarray(reference_tokens, int)
    halves, toks = [], []
    for i in (0, 1):
        order = np.argsort(ref[i::2], kind="stable")
        halves.append(tuple(ref[i::2][order].tolist()))
        toks.append(tuple(ref_tokens[i::2][order].tolist()))
    rg = ReferenceGroup(group, len(ref), tuple(halves), tuple(toks))
    cell = Cell(group)
    for i, (s, t) in enumerate(zip(scores, tokens)):
        h = xxhash.xxh3_64_intdigest(f"{seed}\x00{i}".encode()) & 1
        cell.add(int(t), float(s) > rg.threshold_for(h))
    return cell, rg


def estimate_share(scores, tokens, reference_scores, tpr: TprPrior, seed: int = 0, group: str = "global",
                   reference_tokens=None) -> dict:
    """The `ai_share` entry S for one group from plain arrays: `scores` (ai_score) and `tokens` of the documents,
    `reference_scores` (and `reference_tokens`, default 1 each) of human documents of the same group, never the
    same documents. Null with a reason when the reference has fewer than 2 documents or there are fewer than
    MIN_DOCUMENTS documents."""
    if len(reference_scores) < 2:
        return null_share("no reference group", len(scores), int(np.sum(tokens)) if len(tokens) else 0)
    cell, rg = one_group(scores, tokens, reference_scores, seed, group, reference_tokens)
    return combine([cell], {group: rg}, tpr, seed, group, group)


def posterior(flagged: bool, share: float, tpr: float, fpr: float) -> float:
    """P(AI | flagged or not) for a document of a group whose AI share is `share`: with the same share, TPR and FPR
    that give the estimate, the token-weighted mean of this posterior over the group is the estimate itself."""
    if flagged:
        num, den = share * tpr, share * tpr + (1 - share) * fpr
    else:
        num, den = share * (1 - tpr), share * (1 - tpr) + (1 - share) * (1 - fpr)
    return float(num / den) if den > 0 else float(share)


# -- Validation-histogram estimators ------------------------------------------------------------------------------
# `mix` still reports its selection's AI share with these (model card validation densities, no reference):
# adjusted classify-and-count and a two-component mixture, on a histogram of scores built by a CombinePerKey.
# They trust in-domain validation rates, which do not hold on a crawl; curate uses the reference estimate above.

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
        acc_[1][k] += count_tokens(doc.text)
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

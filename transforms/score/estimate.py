"""The AI share of a corpus's tokens, with a 95% interval that holds out of domain.

Reference-adjusted classify-and-count (the most robust estimator measured in the research notes): each document is
flagged when its score exceeds its group's human-reference threshold (fitted on the other half of the reference,
so at most ALPHA of human text is flagged); then

    share = (f - FPR) / (TPR - FPR)

with f the flagged share of tokens, FPR the flag rate of held-out reference documents (measured, per group) and
TPR the detector's true-positive rate at a 5%-FPR threshold. A crawl has no labelled AI text, so TPR cannot be
measured there, and nothing in the data bounds it: text that the detector cannot tell from human can hide in any
amount. The interval is therefore a partial-identification interval over an explicit TPR range:

- lower end: TPR = 1 (no assumption: every AI token flagged), the 2.5% posterior quantile;
- upper end: TPR = the lowest leave-one-dataset-out TPR on the model card (the assumption, stated in the README:
  on your domain the detector is no worse than on the worst held-out domain we measured), the 97.5% quantile;
- point: the mean leave-one-dataset-out TPR.

Each quantile integrates FPR over its Jeffreys Beta posterior from the held-out reference and the flagged tokens'
binomial likelihood on the effective number of documents (flat prior). The parameter is the unconstrained
classify-and-count ratio, on a grid from -1 to 3, and each draw is clipped to [0, 1] afterwards: a share confined to
[0, 1] before the quantile is taken gives an upper end below 1 for a source that is all AI (and a lower end above 0
for one that is all human) however much the data agree with it, so the interval would exclude exactly the truths at
the edges. Groups combine draw by draw, token-weighted, under the same TPR (its error is systematic). The interval
is zero-width only when the data make it so. Measured in `benchmarks/reference.py` (95% coverage on domains the
detector never saw); an interval built on a range of likely TPRs instead covered 0.76 there, because the TPR of
the worst domains lay below it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from transforms.score.reference import ALPHA, ReferenceGroup

DRAWS = 2000
METHOD = "reference-acc"
MIN_DOCUMENTS = 20
LODO_MIN_DATASETS = 3  # held-out figures a card needs for a point TPR; with fewer, nothing bounds the TPR
FLOOR_MIN_DATASETS = 19  # ... and for a TPR floor above 0: a new domain falls below the lowest of n with prob. 1/(n+1)


@dataclass(frozen=True)
class TprPrior:
    """The TPR range the interval assumes: `point` gives the estimate, `low` the upper end of the interval, `high`
    (1 unless a test says otherwise) the lower end."""

    point: float
    low: float
    high: float = 1.0

    @classmethod
    def from_card(cls, card: dict, exclude: tuple[str, ...] = ()) -> "TprPrior":
        """Point: the mean held-out TPR. Floor: the lowest held-out TPR (over the adapted protocol and, for a
        domain-adapted model, the unadapted one too), but only from FLOOR_MIN_DATASETS held-out sets on: with n
        exchangeable domains a new one falls below their minimum with probability 1/(n + 1), and through the CLI
        the 9-set cards' floors (0.067-0.081) lay above the TPR of 3 of the 10 held-out sets (0.044-0.077),
        whose intervals then missed. With fewer sets nothing bounds the TPR (floor 0: upper end 1)."""
        held = _held_out_tprs(card.get("leave_one_dataset_out"), exclude)
        if len(held) >= LODO_MIN_DATASETS:
            unadapted = _held_out_tprs(card.get("leave_one_dataset_out_unadapted"), exclude)
            floor = min(held + unadapted) if len(held) >= FLOOR_MIN_DATASETS else 0.0
            return cls(float(np.mean(held)), floor)
        test = ((card.get("test") or {}).get("overall") or {}).get("tpr_at_5pct_fpr")
        if not isinstance(test, (int, float)):
            raise ValueError("the model card has no TPR@5%FPR figure (test or leave-one-dataset-out)")
        # in-domain figures only: nothing measured bounds the TPR on an unseen domain, so nothing bounds the share
        # from above (floor 0: upper end 1); the point halves the in-domain TPR (out of domain is far worse)
        return cls(float(test) / 2, 0.0)


def _held_out_tprs(lodo, exclude: tuple[str, ...]) -> list[float]:
    held = [m.get("tpr_at_5pct_fpr") for k, m in (lodo or {}).items()
            if k != "mean" and k not in exclude and isinstance(m, dict)]
    return [float(v) for v in held if isinstance(v, (int, float))]


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
    reference_tokens: int = 0  # of `tokens`, those of documents that are themselves reference (pre-LLM, human)

    def add(self, tokens: int, flagged: bool, reference: bool = False) -> "Cell":
        self.documents += 1
        self.tokens += tokens
        self.tokens_sq += tokens * tokens
        self.flagged_tokens += tokens if flagged else 0
        self.reference_tokens += tokens if reference else 0
        return self

    def merge(self, other: "Cell") -> "Cell":
        self.documents += other.documents
        self.tokens += other.tokens
        self.tokens_sq += other.tokens_sq
        self.flagged_tokens += other.flagged_tokens
        self.reference_tokens += other.reference_tokens
        return self


def point_fpr(ref: ReferenceGroup) -> float:
    """The held-out flag rate of the group's human reference tokens (Jeffreys posterior mean: never exactly 0)."""
    rate, n_eff = ref.held_out_fpr()
    return (rate * n_eff + 0.5) / (n_eff + 1)


_PI = np.linspace(-1.0, 3.0, 1601)  # the unconstrained ratio; draws are clipped to [0, 1]
_FPR_POINTS = 64


def _cell_draws(cell: Cell, ref: ReferenceGroup, tpr: float, seed: int, key: str) -> np.ndarray:
    """`DRAWS` posterior draws of one cell's share at a given TPR, each clipped to [0, 1].

    The posterior of the unconstrained ratio on `_PI` (flat prior) given the flagged tokens (binomial on the
    effective number of documents), integrating FPR over its Beta posterior from the held-out reference, under the
    assumption TPR > FPR (FPR values at or above the TPR get no weight). A detector no better than chance at this TPR
    (every FPR value at or above it) cannot bound the share: every draw is 1, as `_share` answers."""
    f = cell.flagged_tokens / cell.tokens
    n = cell.tokens ** 2 / cell.tokens_sq
    k = f * n
    rate, m = ref.held_out_fpr()
    qs = (np.arange(_FPR_POINTS) + 0.5) / _FPR_POINTS
    from scipy import stats  # here, not at import: curate without scoring never pays scipy's start-up

    fpr = stats.beta.ppf(qs, rate * m + 0.5, (1 - rate) * m + 0.5)
    q = fpr[:, None] + _PI[None, :] * (tpr - fpr[:, None])
    outside = (q <= 0) | (q >= 1)
    q = np.clip(q, 1e-12, 1 - 1e-12)
    ll = k * np.log(q) + (n - k) * np.log1p(-q)
    ll[outside] = -np.inf
    ll[fpr >= tpr, :] = -np.inf
    if np.isneginf(ll).all():
        return np.ones(DRAWS)
    post = np.exp(ll - ll.max()).sum(axis=0)
    cdf = np.cumsum(post)
    cdf /= cdf[-1]
    u = _rng(seed, key).uniform(0, 1, DRAWS)
    return np.clip(_PI[np.minimum(len(_PI) - 1, np.searchsorted(cdf, u))], 0.0, 1.0)


def _share(f: float, fpr: float, tpr: float) -> float:
    """Adjusted classify-and-count, (f - FPR) / (TPR - FPR) clipped to [0, 1]; 1 when the detector cannot tell
    (TPR <= FPR) and there is an excess of flags (the conservative answer for a ceiling)."""
    if tpr <= fpr:
        return 1.0 if f > fpr else 0.0
    return float(min(1.0, max(0.0, (f - fpr) / (tpr - fpr))))


def null_share(reason: str, documents: int = 0, tokens: int = 0) -> dict:
    return {"estimate": None, "reason": reason, "documents": int(documents), "tokens": int(tokens)}


def share_draws(cells: list[Cell], references: dict, tpr: TprPrior, seed: int,
                key: str) -> tuple[float, np.ndarray, np.ndarray]:
    """(token-weighted point share, posterior draws at TPR = tpr.high, draws at TPR = tpr.low) for the union of
    `cells`, each served by its own reference group; draws combine cell by cell under one TPR."""
    tokens = sum(c.tokens for c in cells)
    point, at_high, at_low = 0.0, np.zeros(DRAWS), np.zeros(DRAWS)
    for c in sorted(cells, key=lambda c: c.group):
        ref, ckey, w = references[c.group], f"{key}\x00{c.group}", c.tokens / tokens
        point += _share(c.flagged_tokens / c.tokens, point_fpr(ref), tpr.point) * w
        at_high += _cell_draws(c, ref, tpr.high, seed, ckey) * w
        at_low += _cell_draws(c, ref, tpr.low, seed, ckey) * w
    return point, at_high, at_low


def interval(point: float, at_high: np.ndarray, at_low: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """A `level` interval from `share_draws`: its lower end from the draws at the high TPR, its upper end from the
    draws at the low TPR, never excluding the point."""
    lo, hi = float(np.quantile(at_high, (1 - level) / 2)), float(np.quantile(at_low, (1 + level) / 2))
    return min(lo, point), max(hi, point)


def combine(cells: list[Cell], references: dict, tpr: TprPrior, seed: int, key: str,
            reference_group: str | None = None, reference_documents: int | None = None) -> dict:
    """The `ai_share` entry S for the union of `cells`: the token-weighted share and its 95% interval.
    `reference_documents`: the distinct reference documents behind several groups (pools overlap), else the
    groups' sizes are summed."""
    cells = [c for c in cells if c.tokens > 0 and c.group in references]
    documents, tokens = sum(c.documents for c in cells), sum(c.tokens for c in cells)
    if not cells:
        return null_share("no reference group", documents, tokens)
    if not all(references[c.group].usable for c in cells):
        return null_share(f"reference too small for a {ALPHA:.0%} threshold", documents, tokens)
    if documents < MIN_DOCUMENTS:
        return null_share(f"fewer than {MIN_DOCUMENTS} scored documents", documents, tokens)
    point, at_high, at_low = share_draws(cells, references, tpr, seed, key)
    lo, hi = interval(point, at_high, at_low)
    ref_docs = reference_documents or sum(references[c.group].documents for c in cells)
    group = reference_group or (cells[0].group if len(cells) == 1 else f"{len(cells)} groups")
    ref_tokens = sum(c.reference_tokens for c in cells)
    entry = {"estimate": round(point, 6), "ci95": [round(lo, 6), round(hi, 6)], "documents": documents,
             "tokens": tokens, "reference_tokens": ref_tokens, "method": METHOD,
             "reference": {"group": group, "documents": ref_docs}}
    if 0 < ref_tokens < tokens:
        e, l, h = outside_reference((point, lo, hi), tokens, ref_tokens)
        entry["outside_reference"] = {"estimate": round(e, 6), "ci95": [round(l, 6), round(h, 6)],
                                      "tokens": tokens - ref_tokens}
    return entry


def outside_reference(share: tuple, tokens: int, reference_tokens: int) -> tuple:
    """A share of all `tokens` -> the share of the tokens outside the in-run reference, which hold every AI token
    when the reference (pre-LLM pages) is human: x * tokens / (tokens - reference_tokens), clipped to 1; with
    nothing outside the reference, nothing bounds such tokens (upper end 1)."""
    if reference_tokens <= 0:
        return tuple(share)
    if reference_tokens >= tokens:
        return share[0], share[1], 1.0
    scale = tokens / (tokens - reference_tokens)
    return tuple(min(1.0, x * scale) for x in share)


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

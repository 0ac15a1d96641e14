"""The certified ceiling: an upper confidence bound on the true AI token share of a mix, and the per-source cut
that keeps the most human text under it.

For a source cell (source x reference group g) of T_g tokens whose true AI token share has upper bound pi_hi, the
documents with `ai_pvalue >= alpha` hold at least T_g * (1 - pi_hi) * (1 - F_hi(alpha)) human tokens, where
F_hi(alpha) bounds the share of the group's human documents whose conformal p-value falls below alpha. With
p = (1 + #{ref >= s}) / (n + 1), p < alpha iff the score beats the K-th largest of n reference scores,
K = ceil(alpha (n + 1) - 1), and the human mass above that order statistic is Beta(K, n + 1 - K): F_hi is its
upper quantile, Bonferroni-corrected over the alpha grid. So AI tokens kept <= T_pass - sum_g T_g (1 - pi_hi)
(1 - F_hi). Failure probabilities are split by a union bound: half over the groups' share bounds (each ci95's
upper half-width rescaled to its one-sided level, normal approximation), half over their p-value bounds, 95%
overall. Assumptions, stated in the README: a source's documents in group g share the group's AI share; human
token counts do not depend on the p-value; the reference is exchangeable with the group's human documents.

Only tiny tables pass through here (sources x groups x grid levels): the plan is computed in one place, as a side
input, and every verdict (CLI, manifest, report) comes from `verdict`.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

from scipy.stats import beta, norm

from transforms.score.estimate import outside_reference

CONFIDENCE = Fraction(95, 100)
SCALE = 1 << 32  # fixed point of rates: a certified rate r is carried as ceil(r * SCALE)
# alpha grid: 0 (keep every document), then 2^-8 .. 2^-1 in half-octave steps (few levels: each one costs the
# tail bound a Bonferroni share), then a level no p-value reaches: only pre-LLM pages pass it, so a source whose
# newer pages cannot be certified still gives its pre-LLM pages
PVALUE_GRID = (0.0,) + tuple(2.0 ** (-k / 2) for k in range(16, 1, -1))
GRID = PVALUE_GRID + (math.inf,)
PRE_LLM_ONLY = len(GRID) - 1
# Scoring cross-fits: a document's p-value is against the other half of its group's reference, which keeps at
# most this many scores (transforms/score/reference.py MAX_PER_HALF); the tail bound uses that sample size.
MAX_PER_HALF = 2000
DECLARED = "declared_ai"  # pseudo-group of pages that declare AI generation: all their tokens count as AI
UNESTIMATED = "unestimated"  # pseudo-group of documents with no usable estimate (unestimable: treat_as_synthetic)
# pseudo-group of pages captured before ChatGPT's release (provenance.pre_llm): human by the same assumption that
# makes them the human reference (config `pre_llm_is_human`, default true); they pass every p-value cut
PRE_LLM = "pre_llm"


def group_key(folder: str, group: str) -> str:
    return f"{folder}#{group}"


def parse_ai_share(folder: str, summary: dict, pre_llm_is_human: bool = True) -> tuple[dict, dict]:
    """A curated summary's `ai_share.by_reference` -> ({group key: (estimate, lo, hi, n_ref)}, {group key: reason}).

    A group's share is of all its tokens, the in-run reference's (pre-LLM) included. When those documents are
    charged as human (`pre_llm_is_human`), the mixer applies the share to the group's other documents only, which
    hold every AI token: the share is rescaled to them (`estimate.outside_reference`), or else it would be diluted
    by the reference."""
    usable, reasons = {}, {}
    ai_share = (summary.get("ai_share") or {}) if isinstance(summary, dict) else None  # hand-edited: any JSON
    groups = (ai_share.get("by_reference") or {}) if isinstance(ai_share, dict) else None
    if not isinstance(groups, dict):
        return usable, {group_key(folder, "*"): "ai_share.by_reference is not a mapping"}
    for group, s in sorted(groups.items()):
        key = group_key(folder, str(group))
        reason = _invalid_share(s)
        if reason:
            reasons[key] = reason
        else:
            share = (float(s["estimate"]), float(s["ci95"][0]), float(s["ci95"][1]))
            if pre_llm_is_human:
                share = outside_reference(share, s.get("tokens") or 0, s.get("reference_tokens") or 0)
            usable[key] = (*share, int(s["reference"]["documents"]))
    return usable, reasons


def _invalid_share(s) -> Optional[str]:
    if not isinstance(s, dict):
        return "not a mapping"
    if s.get("estimate") is None:
        return str(s.get("reason") or "no estimate")
    try:
        est, lo, hi = float(s["estimate"]), float(s["ci95"][0]), float(s["ci95"][1])
        n = s["reference"]["documents"]
    except (KeyError, TypeError, ValueError, IndexError):
        return "estimate without ci95 / reference.documents"
    if not all(math.isfinite(x) and 0 <= x <= 1 for x in (est, lo, hi)) or not lo <= est <= hi:
        return f"estimate {est} / ci95 [{lo}, {hi}] is not a share interval"
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return f"reference.documents {n!r} is not a positive count"
    ref, tokens = s.get("reference_tokens", 0), s.get("tokens")
    if ref and not (_count(ref) and _count(tokens) and ref <= tokens):
        return f"reference_tokens {ref!r} is not a count of at most tokens {tokens!r}"
    return None


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def share_hi(g: tuple, delta: float) -> float:
    """One-sided upper bound at level 1 - delta from a 95% interval's upper half-width (normal approximation)."""
    est, _, hi, _ = g
    z95 = norm.ppf(0.975)
    return float(min(1.0, hi + max(0.0, norm.ppf(1 - delta) - z95) * (hi - est) / z95))


def share_lo(g: tuple, delta: float) -> float:
    est, lo, _, _ = g
    z95 = norm.ppf(0.975)
    return float(max(0.0, lo - max(0.0, norm.ppf(1 - delta) - z95) * (est - lo) / z95))


def _order(alpha: float, n_ref: int) -> int:
    """K: p < alpha iff the score beats the K-th largest of n_ref reference scores (n_ref + 1, every human
    document, for a cut above 1)."""
    return n_ref + 1 if alpha > 1 else math.ceil(alpha * (n_ref + 1) - 1 - 1e-12)


def _pvalue_tail(alpha: float, n_ref: int, q: float) -> float:
    """The q-quantile of P(p < alpha) for a human document, given a reference of n_ref documents."""
    k = _order(alpha, n_ref)
    if k <= 0:
        return 0.0
    if k > n_ref:
        return 1.0
    return float(beta.ppf(q, k, n_ref + 1 - k))


def pvalue_tail_hi(alpha: float, n_ref: int, delta: float) -> float:
    """Upper bound on P(p < alpha) for a human document, given a reference of n_ref documents."""
    return _pvalue_tail(alpha, n_ref, 1 - delta)


def pvalue_tail_lo(alpha: float, n_ref: int, delta: float) -> float:
    return _pvalue_tail(alpha, n_ref, delta)


def reference_sample(documents: int) -> int:
    """The size of the reference sample a p-value of a group of `documents` reference documents was computed on."""
    return max(1, min(documents // 2, MAX_PER_HALF))


def grid_index(pvalue: Optional[float]) -> int:
    """The largest grid level the p-value reaches; no p-value (or a declared-AI page) reaches level 0 only, so it is
    kept only when nothing is cut."""
    if pvalue is None:
        return 0
    return max(0, bisect.bisect_right(PVALUE_GRID, pvalue) - 1)


@dataclass(frozen=True)
class Bounds:
    """Per group, the share bound and the p-value tail bounds on the grid, at the union-bound levels."""

    hi: dict  # group -> pi_hi
    lo: dict  # group -> pi_lo
    est: dict  # group -> estimate
    tail_hi: dict  # group -> tuple over GRID
    tail_lo: dict
    tail_mid: dict

    @classmethod
    def of(cls, groups: dict) -> "Bounds":
        n = max(1, len(groups))
        delta = float(1 - CONFIDENCE) / 2 / n  # per group, for its share bound and (split over the grid) its tail
        per_level = delta / (len(PVALUE_GRID) - 1) / 2  # two halves, each its own reference sample
        hi, lo, est, t_hi, t_lo, t_mid = {}, {}, {}, {}, {}, {}
        for key, g in sorted(groups.items()):
            hi[key], lo[key], est[key] = share_hi(g, delta), share_lo(g, delta), g[0]
            m = reference_sample(g[3])
            t_hi[key] = tuple(pvalue_tail_hi(a, m, per_level) for a in GRID)
            t_lo[key] = tuple(pvalue_tail_lo(a, m, per_level) for a in GRID)
            t_mid[key] = tuple(min(1.0, max(0.0, _order(a, m) / (m + 1))) for a in GRID)
        for key in (DECLARED, UNESTIMATED):
            hi[key], lo[key], est[key] = 1.0, 1.0, 1.0
            t_hi[key] = t_lo[key] = t_mid[key] = tuple(0.0 for _ in GRID)
        hi[PRE_LLM], lo[PRE_LLM], est[PRE_LLM] = 0.0, 0.0, 0.0
        t_hi[PRE_LLM] = t_lo[PRE_LLM] = t_mid[PRE_LLM] = tuple(0.0 for _ in GRID)
        return cls(hi, lo, est, t_hi, t_lo, t_mid)


def ai_tokens(cells: dict, j: int, share: dict, tail: dict) -> float:
    """AI tokens among a source's documents at grid level >= j, bounded (or estimated) with these share and tail
    values. `cells`: group -> (all tokens, tokens at level >= j for each j)."""
    total = 0.0
    for g, (t_all, t_pass) in cells.items():
        tp = t_pass[j]
        human = t_all * (1 - share[g]) * (1 - tail[g][j])
        total += min(tp, max(0.0, tp - human))
    return total


def cumulative(by_level: dict) -> tuple[list, list]:
    """{grid index: (docs, tokens)} -> (docs at level >= j, tokens at level >= j) for each grid level j."""
    docs, tokens = [0] * len(GRID), [0] * len(GRID)
    for level, (d, t) in by_level.items():
        for j in range(level + 1):
            docs[j] += d
            tokens[j] += t
    return docs, tokens


@dataclass(frozen=True)
class Option:
    """One way to take a source: its pre-LLM pages first (certified human: no AI charge), then, with the units its
    quota has left, its newer pages at or above the cut, each part upsampled by `epochs`. Only the newer part is
    ever scaled down, so a source spends its own pre-LLM slack on its newer pages."""

    level: Optional[int]  # grid index of the cut; None = the source is left out
    fixed_units: int = 0  # pre-LLM units taken (epochs included)
    fixed_tokens: float = 0.0
    units: int = 0  # newer units passing the cut (epochs included)
    scale: Fraction = Fraction(0)  # share of those taken
    var_tokens: float = 0.0  # newer tokens taken
    var_ai: float = 0.0  # certified bound on the AI tokens among them
    epochs: int = 1
    var_est_ai: float = 0.0  # the point estimate of those AI tokens: only to choose where leftover slack goes

    @property
    def tokens(self) -> float:
        return self.fixed_tokens + self.var_tokens

    @property
    def ai(self) -> float:
        return self.var_ai

    @property
    def human(self) -> float:
        return self.tokens - self.var_ai

    @property
    def taken(self) -> Fraction:
        return self.fixed_units + self.scale * self.units

    def scaled(self, f: float) -> "Option":
        fr = Fraction(f).limit_denominator(1 << 30)
        return dataclasses.replace(self, scale=self.scale * fr, var_tokens=self.var_tokens * f, var_ai=self.var_ai * f,
                                   var_est_ai=self.var_est_ai * f)


def newer_cells(cells: dict) -> dict:
    """A source's cells without its pre-LLM pages, which are charged no AI tokens: a source's rate and estimates
    are those of its newer pages."""
    return {g: c for g, c in cells.items() if g != PRE_LLM}


def options(cells: dict, units: list, tokens: list, bounds: Bounds, quota: int, repeats: int,
            pre_units: int = 0) -> list[Option]:
    """Every grid cut of one source, each fitted to its quota, plus leaving the source out. `pre_units`: the units
    of the source's pre-LLM pages (in `cells` under PRE_LLM), which pass every cut."""
    pre_tokens = cells[PRE_LLM][0] if PRE_LLM in cells else 0
    newer = newer_cells(cells)
    n_units, n_tokens = [u - pre_units for u in units], [t - pre_tokens for t in tokens]
    out = [Option(None)]
    for j in range(len(GRID)):
        if not units[j] or not quota:
            continue
        epochs = min(repeats, max(1, -(-quota // units[j])))
        fixed_units = min(pre_units * epochs, quota)
        fixed_f = Fraction(fixed_units, pre_units) if pre_units else Fraction(0)
        left = quota - fixed_units
        scale = min(Fraction(1), Fraction(left, n_units[j] * epochs)) if n_units[j] else Fraction(0)
        f = epochs * float(scale)
        out.append(Option(j, fixed_units, pre_tokens * float(fixed_f), n_units[j] * epochs, scale, n_tokens[j] * f,
                          ai_tokens(newer, j, bounds.hi, bounds.tail_hi) * f, epochs,
                          ai_tokens(newer, j, bounds.est, bounds.tail_mid) * f))
    return out


def _excess(o: Option, ceiling: float) -> float:
    """The certified AI tokens an option takes beyond what the ceiling allows its tokens."""
    return o.ai - ceiling * o.tokens


def choose(options: dict, fixed_excess: float, ceiling: float) -> tuple[dict, dict]:
    """Greedy over sources: start from each source's most-human cut; while the certified excess (AI bound minus
    ceiling x tokens) is positive, take the move that loses the fewest human tokens per unit of excess removed:
    a stricter cut, leaving a source out, or (the last step) taking a smaller share of one source's newer pages."""
    def excess(o):
        return _excess(o, ceiling)

    def var_excess(o):
        return o.var_ai - ceiling * o.var_tokens

    cur = {s: max(opts, key=lambda o: (o.human, -excess(o), -(o.level or 0))) for s, opts in options.items()}
    total = fixed_excess + sum(excess(o) for o in cur.values())
    while total > 1e-9:
        best = None
        for s in sorted(options):
            c = cur[s]
            for o in options[s]:
                gain = excess(c) - excess(o)
                if gain <= 1e-12:
                    continue
                ratio = (c.human - o.human) / gain
                if best is None or ratio < best[0] - 1e-12:
                    best = (ratio, s, o)
        if best is None:
            break
        _, s, o = best
        c = cur[s]
        gain = excess(c) - excess(o)
        if gain > total and var_excess(c) > total:
            # scaling the current cut's newer pages down removes exactly `total`: keep it if it loses less
            f = 1 - total / var_excess(c)
            if (c.human - c.fixed_tokens) * (1 - f) <= c.human - o.human:
                cur[s] = c.scaled(f)
                break
        cur[s] = o
        total = fixed_excess + sum(excess(x) for x in cur.values())
    if total < -1e-9:
        _spend_slack(cur, options, total, ceiling)
    # the ceiling limited a source when it takes fewer units than the uncut source would for its quota alone
    limited = {}
    for s, opts in options.items():
        uncut = next((o for o in opts if o.level == 0), None)
        limited[s] = uncut is not None and cur[s].taken < uncut.taken
    return cur, limited


def _spend_slack(cur: dict, options: dict, total: float, ceiling: float) -> None:
    """Certified human tokens are all the greedy counts, so a source whose newer pages cannot be bounded keeps none
    of them (pre-LLM pages only, or left out) even when the rest of the mix leaves slack. That slack buys such
    pages charged at their bound: per source in name order, the cut whose newer pages the point estimates call
    the most human for the tokens the slack buys. Slack still left then buys, in the same order, pages with no
    estimated human tokens (unestimable pages under `unestimable: treat_as_synthetic`, charged as AI whole, or a
    source estimated wholly AI): the ceiling allows them, and they were otherwise dropped as over_ceiling under a
    ceiling that did not bind. Selection charges them exactly and stops where the slack ends."""
    def excess(o):
        return _excess(o, ceiling)

    for some_human in (True, False):
        for s in sorted(options):
            if cur[s].units:
                continue
            others = total - excess(cur[s])
            best = None
            for o in options[s]:
                if o.level is None or not o.var_tokens:
                    continue
                room = ceiling * o.fixed_tokens - others  # what the rest and o's own pre-LLM pages leave its newer ones
                per_token = o.var_ai / o.var_tokens - ceiling
                f = min(1.0, room / (per_token * o.var_tokens)) if per_token > 0 else 1.0
                if f <= 0:
                    continue
                taken = o.scaled(f) if f < 1 else o
                human = taken.var_tokens - taken.var_est_ai
                if best is None or human > best[0] + 1e-9:
                    best = (human, taken)
            if (best is not None and (best[0] > 0 if some_human else best[1].scale * best[1].units >= 1)
                    and others + excess(best[1]) <= 1e-9):
                cur[s] = best[1]
                total = others + excess(best[1])


def fixed_rate(ai: float, tokens: float) -> int:
    """A certified rate in fixed point, rounded up (never optimistic)."""
    if tokens <= 0:
        return 0
    return min(SCALE, math.ceil(ai / tokens * SCALE))


def verdict(share: Fraction, ceiling: Fraction, failures: list[str], certified: bool, tokens: int,
            shortfall: str) -> tuple[bool, str]:
    """The one verdict (CLI line, manifest `within_ceiling`, report): within iff the certified bound (or, opt-in,
    the rule count) is <= the ceiling, no `unestimable: fail` policy tripped and something was selected (an empty
    mix certifies nothing a user could train on: it fails, naming its `shortfall`)."""
    what = "certified 95% upper bound on the true AI token share" if certified else \
        "opt-in rule count of the synthetic token share (not a bound on the true share)"
    if failures:
        return False, f"NOT CERTIFIED: {failures[0]}"
    if not tokens:
        return False, (f"NOTHING SELECTED: the mix is empty (shortfall {shortfall}); no source offered a document "
                       f"the ceiling admits (see each source's shortfall and drops)")
    if share <= ceiling:
        return True, f"within the ceiling: {what} {float(share):.4f} <= {float(ceiling):.4f}"
    return False, f"CEILING NOT MET: {what} {float(share):.4f} > {float(ceiling):.4f}"

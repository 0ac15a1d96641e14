"""Budgets from supply totals (tiny: one row per source and stream), and the prefix boundary of a histogram.

Quotas: the target minus the anchors, shared by weight (or fixed `tokens`). Within a source the quota is split
between under and over documents in proportion to supply (a uniform sample), then over budgets are scaled down
so their expected excess fits the expected slack, and the freed room is refilled with under documents where
supply allows. The budgets only plan: exactness comes from `select.py`, which takes over documents against the
slack actually realised.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from transforms.mix.classify import ANCHOR, OVER, UNDER
from transforms.mix.config import MixConfig


@dataclass(frozen=True)
class Supply:
    units: int = 0
    count: int = 0
    excess: Fraction = Fraction(0)


@dataclass(frozen=True)
class Plan:
    quota: dict  # source -> units wanted (non-anchor sources)
    budget: dict  # (source, stream) -> units budget (epochs included)
    epochs: dict  # source -> copies allowed (1 = no upsampling)


def make_plan(cfg: MixConfig, supply: dict) -> Plan:
    """`supply`: (source, stream) -> Supply of epoch 0."""
    anchors = sum((s.units for (src, st), s in supply.items() if st == ANCHOR), 0)
    rest = max(0, cfg.target - anchors)
    mixed = [s for s in cfg.sources if not s.anchor]
    fixed = {s.name: s.tokens for s in mixed if s.tokens is not None}
    weighted = [s for s in mixed if s.weight is not None]
    total_w = sum((s.weight for s in weighted), Fraction(0))
    left = max(0, rest - sum(fixed.values()))
    quota = dict(fixed)
    for s in weighted:
        quota[s.name] = int(left * s.weight / total_w) if total_w else 0
    slack = -sum((s.excess for (src, st), s in supply.items() if st == ANCHOR), Fraction(0))
    budget, epochs, over_excess = {}, {}, Fraction(0)
    per_unit = {}
    for s in mixed:
        u, o = supply.get((s.name, UNDER), Supply()), supply.get((s.name, OVER), Supply())
        have = u.units + o.units
        q = quota[s.name]
        epochs[s.name] = min(s.max_repeats, max(1, -(-q // have))) if have else 1
        cap_u, cap_o = u.units * epochs[s.name], o.units * epochs[s.name]
        b_o = min(cap_o, int(Fraction(q * o.units, have))) if have else 0
        b_u = min(cap_u, q - b_o)
        b_o = min(cap_o, q - b_u)
        budget[(s.name, UNDER)], budget[(s.name, OVER)] = b_u, b_o
        per_unit[s.name] = (-u.excess / u.units if u.units else Fraction(0),
                            o.excess / o.units if o.units else Fraction(0))
        slack += b_u * per_unit[s.name][0]
        over_excess += b_o * per_unit[s.name][1]
    if over_excess > max(slack, 0):
        f = max(slack, Fraction(0)) / over_excess
        for s in mixed:
            u = supply.get((s.name, UNDER), Supply())
            old = budget[(s.name, OVER)]
            budget[(s.name, OVER)] = int(old * f)
            freed = old - budget[(s.name, OVER)]
            budget[(s.name, UNDER)] = min(u.units * epochs[s.name], budget[(s.name, UNDER)] + freed)
    return Plan(quota, budget, epochs)


def boundary(hist: dict, units: int, excess: Fraction | None = None) -> tuple[int, int, Fraction | None]:
    """Walks buckets in order: returns (boundary bucket, units left for it, excess left for it). Buckets below
    it are kept whole, buckets above it are dropped; the boundary bucket alone is sorted."""
    for b in sorted(hist):
        u, e = hist[b]
        if u > units or (excess is not None and e > excess):
            return b, units, excess
        units -= u
        if excess is not None:
            excess -= e
    return 1 << 62, units, excess

"""Budgets from supply totals (tiny tables: sources x streams, or sources x groups x grid levels), and the boundary
of a priority histogram.

Quotas: the target minus the anchors, shared by weight (or fixed `tokens`). The certified plan (default) picks
each source's p-value cut and share with `certify.choose`; every document it keeps then carries its source's
certified AI rate, so the exact slack selection of `select.py` holds the certified bound on the realised rows.
The rule plan (opt-in `threshold` / `expected`) splits each quota between under and over documents in proportion
to supply and scales over budgets down to the expected slack. Budgets only plan: exactness comes from
`select.py`, which takes over documents against the slack actually realised.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from transforms.mix import certify
from transforms.mix.classify import ANCHOR, OVER, UNDER, stream_of
from transforms.mix.config import MixConfig


@dataclass(frozen=True)
class Supply:
    units: int = 0
    count: int = 0
    excess: int = 0
    tokens: int = 0

    def __add__(self, o: "Supply") -> "Supply":
        return Supply(self.units + o.units, self.count + o.count, self.excess + o.excess, self.tokens + o.tokens)


@dataclass(frozen=True)
class Plan:
    quota: dict  # source -> units wanted (non-anchor sources)
    budget: dict  # (source, stream) -> units budget (epochs included)
    epochs: dict  # source -> copies allowed (1 = no upsampling)
    limited: frozenset  # sources whose cut or budget the ceiling set (their cuts are over_ceiling, else over_quota)
    level: dict = field(default_factory=dict)  # certified: source -> grid index of the p-value cut, None = left out
    rate: dict = field(default_factory=dict)  # certified: source -> fixed-point certified AI rate of what it keeps
    estimate: dict = field(default_factory=dict)  # certified: source -> (low, estimate, bound) AI rate at its cut


def quotas(cfg: MixConfig, anchor_units: int) -> dict:
    rest = max(0, cfg.target - anchor_units)
    mixed = [s for s in cfg.sources if not s.anchor]
    fixed = {s.name: s.tokens for s in mixed if s.tokens is not None}
    weighted = [s for s in mixed if s.weight is not None]
    total_w = sum((s.weight for s in weighted), Fraction(0))
    left = max(0, rest - sum(fixed.values()))
    quota = dict(fixed)
    if not total_w:
        return {**quota, **{s.name: 0 for s in weighted}}
    # Largest remainders: each share's floor, then the units the floors leave go to the largest fractions (ties in
    # config order), so the quotas add up to what is left. Floors alone lost up to one unit per weighted source
    # (three equal weights of 100 documents: 33 each, 99 in all), a shortfall no report showed.
    shares = [left * s.weight / total_w for s in weighted]
    floors = [int(x) for x in shares]
    order = sorted(range(len(weighted)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in order[: left - sum(floors)]:
        floors[i] += 1
    quota.update((s.name, q) for s, q in zip(weighted, floors))
    return quota


def make_certified_plan(cfg: MixConfig, bounds: certify.Bounds, supply: dict) -> Plan:
    """`supply`: (source, group, grid level) -> Supply."""
    ceiling = float(cfg.ceiling)
    per_source: dict = {}
    for (src, group, level), s in sorted(supply.items()):  # sorted: float sums in one order on every runner
        per_source.setdefault(src, {}).setdefault(group, {})[level] = s

    def tables(src):
        """(cells, units and tokens at each level, the pre-LLM pages' units)."""
        groups = per_source.get(src, {})
        cells, units, tokens, pre_units = {}, [0] * len(certify.GRID), [0] * len(certify.GRID), 0
        for g, by_level in groups.items():
            docs_g, tok_g = certify.cumulative({lv: (s.count, s.tokens) for lv, s in by_level.items()})
            unit_g = tok_g if cfg.unit == "tokens" else docs_g
            cells[g] = (tok_g[0], tok_g)
            units = [a + b for a, b in zip(units, unit_g)]
            tokens = [a + b for a, b in zip(tokens, tok_g)]
            if g == certify.PRE_LLM:
                pre_units = unit_g[0]
        return cells, units, tokens, pre_units

    level, rate, estimate, budget, epochs = {}, {}, {}, {}, {}
    fixed_excess, anchor_units = 0.0, 0
    for s in cfg.sources:
        if not s.anchor:
            continue
        cells, units, tokens, _ = tables(s.name)
        ai = certify.ai_tokens(cells, 0, bounds.hi, bounds.tail_hi)
        fixed_excess += ai - ceiling * tokens[0]
        anchor_units += units[0]
        newer = certify.newer_cells(cells)
        level[s.name], rate[s.name], epochs[s.name] = 0, certify.fixed_rate(ai, info_tokens(newer, 0)), 1
        estimate[s.name] = _rates(newer, 0, bounds)
    quota = quotas(cfg, anchor_units)
    options, info = {}, {}
    for s in cfg.sources:
        if s.anchor:
            continue
        cells, units, tokens, pre_units = tables(s.name)
        info[s.name] = certify.newer_cells(cells)
        options[s.name] = certify.options(cells, units, tokens, bounds, quota[s.name], s.max_repeats, pre_units)
    chosen, limited = certify.choose(options, fixed_excess, ceiling)
    for name, o in chosen.items():
        level[name], epochs[name] = o.level, o.epochs
        if o.level is None:
            rate[name], estimate[name] = 0, (0.0, 0.0, 0.0)
            budget[(name, UNDER)] = budget[(name, OVER)] = 0
            continue
        full = certify.ai_tokens(info[name], o.level, bounds.hi, bounds.tail_hi)
        rate[name] = certify.fixed_rate(full, info_tokens(info[name], o.level))
        estimate[name] = _rates(info[name], o.level, bounds)
        newer = int(o.scale * o.units)
        if stream_of(rate[name], cfg.ceiling) == UNDER:
            budget[(name, UNDER)], budget[(name, OVER)] = o.fixed_units + newer, 0
        else:
            budget[(name, UNDER)], budget[(name, OVER)] = o.fixed_units, newer
    return Plan(quota, budget, epochs, frozenset(n for n, v in limited.items() if v), level, rate, estimate)


def charge(plan: Plan, source: str, group: str) -> int:
    """The fixed-point AI rate a kept document is charged: none for a pre-LLM page, else its source's rate."""
    return 0 if group == certify.PRE_LLM else plan.rate[source]


def info_tokens(cells: dict, j: int) -> int:
    return sum(t_pass[j] for _, t_pass in cells.values())


def _rates(cells: dict, j: int, bounds: certify.Bounds) -> tuple[float, float, float]:
    tokens = info_tokens(cells, j)
    if not tokens:
        return 0.0, 0.0, 0.0
    return tuple(certify.ai_tokens(cells, j, share, tail) / tokens for share, tail in (
        (bounds.lo, bounds.tail_lo), (bounds.est, bounds.tail_mid), (bounds.hi, bounds.tail_hi)))


def make_plan(cfg: MixConfig, supply: dict) -> Plan:
    """The opt-in rule plan. `supply`: (source, stream) -> Supply of epoch 0; excess in `classify.excess_of` units."""
    anchors = sum((s.units for (src, st), s in supply.items() if st == ANCHOR), 0)
    quota = quotas(cfg, anchors)
    mixed = [s for s in cfg.sources if not s.anchor]
    slack = Fraction(-sum((s.excess for (src, st), s in supply.items() if st == ANCHOR), 0))
    budget, epochs, over_excess = {}, {}, Fraction(0)
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
        slack += b_u * (Fraction(-u.excess, u.units) if u.units else 0)
        over_excess += b_o * (Fraction(o.excess, o.units) if o.units else 0)
    limited = set()
    if over_excess > max(slack, 0):
        f = max(slack, Fraction(0)) / over_excess
        for s in mixed:
            u = supply.get((s.name, UNDER), Supply())
            old = budget[(s.name, OVER)]
            budget[(s.name, OVER)] = int(old * f)
            if budget[(s.name, OVER)] < old:
                limited.add(s.name)
            freed = old - budget[(s.name, OVER)]
            budget[(s.name, UNDER)] = min(u.units * epochs[s.name], budget[(s.name, UNDER)] + freed)
    return Plan(quota, budget, epochs, frozenset(limited))


def boundary(hist: dict, units: int, excess: int | None = None) -> tuple[int, int, int | None]:
    """Walks buckets in order: returns (boundary bucket, units left for it, excess left for it). Buckets below
    it are kept whole; from the boundary bucket on, documents are taken one by one in priority order."""
    for b in sorted(hist):
        u, e = hist[b]
        if u > units or (excess is not None and e > excess):
            return b, units, excess
        units -= u
        if excess is not None:
            excess -= e
    return 1 << 62, units, excess

"""`MixWithCeiling`: exact selection without a worker holding a source.

1. Every document becomes an Item (classify.py); excluded ones are dropped with their reason.
2. Supply totals per (source, stream) -> a plan of unit budgets (plan.py), a side input.
3. A 2^12-bucket histogram of priority top bits per (source, stream, epoch) -> for each stream the boundary
   bucket: buckets below are kept whole, buckets above dropped, and only the boundary bucket is sorted
   (GroupByKey on that one bucket) to take an exact prefix.
4. Under streams first. Their realised excess, plus the anchors', is the exact slack (a Fraction); it is shared
   among sources in proportion to their planned over budgets, and over streams take the longest priority prefix
   that fits both their unit budget and their slack. So sum(excess) <= 0 on the output: the ceiling holds exactly.
Upsampling (max_repeats) adds epochs: copy k of a document follows every copy k-1 of its stream.
"""
from __future__ import annotations

from fractions import Fraction

import apache_beam as beam

from transforms.accounting import DOCUMENTS, DROPPED, drop
from transforms.mix.classify import ANCHOR, OVER, UNDER, Item, exclusion, make_item
from transforms.mix.config import MixConfig
from transforms.mix.plan import Supply, boundary, make_plan
from transforms.tokens import count_tokens

SELECTED = "selected"


class _Classify(beam.DoFn):
    def __init__(self, cfg: MixConfig):
        self._cfg = cfg

    def process(self, kv):
        source, doc = kv
        spec = next(s for s in self._cfg.sources if s.name == source)
        tokens = count_tokens(doc.text)
        reason = exclusion(doc, self._cfg.exclude, tokens)
        if reason:
            yield drop(doc.id, reason, doc.source, doc.offset, source)
            return
        yield make_item(doc, source, spec.anchor, self._cfg, tokens)


class _SumSupply(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, acc, item: Item):
        k = (item.source, item.stream)
        s = acc.get(k, Supply())
        acc[k] = Supply(s.units + item.units, s.count + 1, s.excess + item.excess)
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for k, s in a.items():
                t = out.get(k, Supply())
                out[k] = Supply(t.units + s.units, t.count + s.count, t.excess + s.excess)
        return out

    def extract_output(self, acc):
        return acc


class _Histogram(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, acc, item: Item):
        u, e = acc.get(item.bucket, (0, Fraction(0)))
        acc[item.bucket] = (u + item.units, e + item.excess)
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for b, (u, e) in a.items():
                u0, e0 = out.get(b, (0, Fraction(0)))
                out[b] = (u0 + u, e0 + e)
        return out

    def extract_output(self, acc):
        return acc


def _epochs(item: Item, plan):
    """The item and its upsampled copies, as far as the plan allows (anchors are never repeated)."""
    n = 1 if item.stream == ANCHOR else plan.epochs.get(item.source, 1)
    for k in range(n):
        yield Item(item.source, item.stream, k, item.priority, item.units, item.tokens, item.synthetic,
                   item.excess, item.doc)


def _route(item: Item, bounds):
    """keep / drop / boundary by the stream's boundary bucket."""
    b, _, _ = bounds[(item.source, item.stream)]
    if item.bucket < b:
        yield beam.pvalue.TaggedOutput(SELECTED, item)
    elif item.bucket == b:
        yield ((item.source, item.stream), item)
    elif item.epoch == 0:
        yield drop(item.doc.id, "over_ceiling", item.doc.source, item.doc.offset, item.source)


def _prefix(kv, bounds):
    key, items = kv
    _, units, excess = bounds[key]
    for item in sorted(items, key=lambda i: i.order):
        fits = item.units <= units and (excess is None or item.excess <= excess)
        if fits:
            units -= item.units
            if excess is not None:
                excess -= item.excess
            yield beam.pvalue.TaggedOutput(SELECTED, item)
        else:
            units = -1  # a prefix: nothing after the first item that does not fit
            if item.epoch == 0:
                yield drop(item.doc.id, "over_ceiling", item.doc.source, item.doc.offset, item.source)


def _select(items, label: str, bounds_side):
    routed = items | f"Route{label}" >> beam.FlatMap(_route, bounds_side).with_outputs(SELECTED, DROPPED,
                                                                                      main="boundary")
    cut = (
        routed["boundary"]
        | f"Group{label}" >> beam.GroupByKey()
        | f"Prefix{label}" >> beam.FlatMap(_prefix, bounds_side).with_outputs(SELECTED, DROPPED, main="none")
    )
    selected = (routed[SELECTED], cut[SELECTED]) | f"Selected{label}" >> beam.Flatten()
    dropped = (routed[DROPPED], cut[DROPPED]) | f"Dropped{label}" >> beam.Flatten()
    return selected, dropped


class MixWithCeiling(beam.PTransform):
    """(source name, Document) pairs -> {"selected": Item (one per output row, repeats included), "dropped",
    "plan"}. Anchors are selected whole; the ceiling holds exactly on the selected rows."""

    def __init__(self, cfg: MixConfig):
        super().__init__()
        self._cfg = cfg

    def expand(self, pairs):
        cfg = self._cfg
        classified = pairs | "Classify" >> beam.ParDo(_Classify(cfg)).with_outputs(DROPPED, main="items")
        items = classified["items"]
        supply = items | "Supply" >> beam.CombineGlobally(_SumSupply())
        plan = supply | "Plan" >> beam.Map(lambda s: make_plan(cfg, s))
        plan_side = beam.pvalue.AsSingleton(plan)
        anchors = items | "Anchors" >> beam.Filter(lambda i: i.stream == ANCHOR)
        copies = (items | "Mixable" >> beam.Filter(lambda i: i.stream != ANCHOR)
                  | "Epochs" >> beam.FlatMap(_epochs, plan_side))
        under = copies | "Under" >> beam.Filter(lambda i: i.stream == UNDER)
        over = copies | "Over" >> beam.Filter(lambda i: i.stream == OVER)

        def hist(pc, label):
            return (pc | f"Key{label}" >> beam.Map(lambda i: ((i.source, i.stream), i))
                    | f"Hist{label}" >> beam.CombinePerKey(_Histogram()))

        def under_bounds(hists, plan):
            return {k: boundary(h, plan.budget.get(k, 0)) for k, h in hists.items()}

        u_bounds = beam.pvalue.AsSingleton(
            hist(under, "Under") | "UnderHists" >> beam.combiners.ToDict()
            | "UnderBounds" >> beam.Map(under_bounds, plan_side))
        u_selected, u_dropped = _select(under, "Under", u_bounds)

        slack = (
            (anchors, u_selected) | "SlackItems" >> beam.Flatten()
            | "Excess" >> beam.Map(lambda i: i.excess)
            | "SumExcess" >> beam.CombineGlobally(lambda xs: sum(xs, Fraction(0)))
            | "Slack" >> beam.Map(lambda total: -total)
        )

        def over_bounds(hists, plan, slack_total):
            wanted = {k: plan.budget.get(k, 0) for k in hists}
            total = sum(wanted.values())
            share = {k: max(slack_total, Fraction(0)) * wanted[k] / total if total else Fraction(0)
                     for k in hists}  # the exact slack, shared in proportion to planned over budgets
            return {k: boundary(h, wanted[k], share[k]) for k, h in hists.items()}

        o_bounds = beam.pvalue.AsSingleton(
            hist(over, "Over") | "OverHists" >> beam.combiners.ToDict()
            | "OverBounds" >> beam.Map(over_bounds, plan_side, beam.pvalue.AsSingleton(slack)))
        o_selected, o_dropped = _select(over, "Over", o_bounds)

        selected = (anchors, u_selected, o_selected) | "AllSelected" >> beam.Flatten()
        dropped = (classified[DROPPED], u_dropped, o_dropped) | "AllDropped" >> beam.Flatten()
        return {SELECTED: selected, DROPPED: dropped, "plan": plan}

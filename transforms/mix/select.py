"""`MixWithCeiling`: exact, certified selection without a worker holding a source.

1. Every document of every input part (source, curated folder) becomes an Item where it is read (read.py,
   classify.py); invalid scores are dead letters, excluded and unestimable documents named drops. Items travel in
   Batches and drops in DropBatches (drops.py): each step below takes a batch, so Beam's per-element cost is paid
   per batch, not per document.
2. Supply totals -> the plan (plan.py), a side input: per source the p-value cut, its certified AI rate and a
   unit budget (certified), or under/over budgets (rule counts). Documents below their source's cut are dropped.
3. A 2^12-bucket histogram of priority top bits per (source, stream) -> the boundary bucket: buckets below are
   kept whole; from the boundary on, documents are taken one by one in priority order, skipping any that does
   not fit and going on (`ROUNDS` rounds, each sorting one bucket per stream), so no shortfall is left while a
   fitting document remains within reach.
4. Under streams first. Their realised excess, plus the anchors', is the exact slack (an integer); it is shared
   among sources in proportion to their planned over budgets, and over streams take what fits both their unit
   budget and their slack. So sum(excess) <= 0 on the output: the certified bound (or the rule count) holds
   exactly on the rows written.
Upsampling (max_repeats) adds epochs: copy k of a document follows every copy k-1 of its stream.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Tuple

import apache_beam as beam

from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED
from transforms.mix import certify
from transforms.mix.classify import ANCHOR, OVER, UNDER, Batch, Item, excess_of, stream_of
from transforms.mix.drops import DropBatch, DropRecord, Ledger, batch_of
from transforms.mix.config import MixConfig
from transforms.mix.plan import boundary, charge, make_certified_plan, make_plan
from transforms.mix.read import ITEMS, TOTALS, totals_fns

KeyedItem = Tuple[Tuple[str, str], Item]
SELECTED = "selected"
ROUNDS = 3
MIXER_DROP_REASONS = frozenset({"excluded_opt_out", "excluded_filter", "unestimable", "over_ceiling", "over_quota"})


class _Histograms(beam.CombineFn):
    """Batches of items -> {(source, stream): {bucket: (units, excess)}}."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, batch: Batch):
        for item in batch:
            h = acc.setdefault(_key(item), {})
            u, e = h.get(item.bucket, (0, 0))
            h[item.bucket] = (u + item.units, e + item.excess)
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for k, hist in a.items():
                h = out.setdefault(k, {})
                for b, (u, e) in hist.items():
                    u0, e0 = h.get(b, (0, 0))
                    h[b] = (u0 + u, e0 + e)
        return out

    def extract_output(self, acc):
        return acc


class _Merged(beam.CombineFn):
    """Merges accumulators of `fn` made elsewhere (one per bundle, by `read._Gather`) and extracts `fn`'s output."""

    def __init__(self, fn: beam.CombineFn):
        self._fn = fn

    def create_accumulator(self):
        return self._fn.create_accumulator()

    def add_input(self, acc, partial):
        return self._fn.merge_accumulators([acc, partial])

    def merge_accumulators(self, accs):
        return self._fn.merge_accumulators(accs)

    def extract_output(self, acc):
        return self._fn.extract_output(acc)


def _streams(batch: Batch, plan, cfg: MixConfig):
    """One step from classified items to their streams: certified, documents below their source's p-value cut are
    dropped and the rest charged the source's certified rate; anchors go on whole (the main output), the others
    with their upsampled copies (`epochs`, as far as the plan allows) to the `under` or `over` stream. Every item
    of every source passes here, so the batch is walked in one loop (no generator or tagged output per item)."""
    certified, ceiling = cfg.rule == "certified", cfg.ceiling
    out = {ANCHOR: Batch(), UNDER: Batch(), OVER: Batch()}
    drops = Ledger()
    for item in batch:
        if certified:
            level = plan.level.get(item.source)
            if level is None or item.level < level:
                reason = "over_ceiling" if item.source in plan.limited else "over_quota"
                drops.drop(_record(item, reason))
                continue
            rate = charge(plan, item.source, item.group)
            item = _charged(item, item.stream or stream_of(rate, ceiling), rate, excess_of(item.tokens, rate, ceiling))
        stream = out[item.stream]
        stream.append(item)
        if item.stream != ANCHOR:
            stream.extend(item._replace(epoch=k) for k in range(1, plan.epochs.get(item.source, 1)))
    if out[ANCHOR]:
        yield out[ANCHOR]
    yield from _outputs(drops, under=out[UNDER], over=out[OVER])


def _charged(item: Item, stream: str, rate: int, excess: int) -> Item:
    """`item._replace(stream=stream, rate=rate, excess=excess)`, built directly (a third of the time)."""
    return Item(item[0], stream, *item[2:6], rate, excess, *item[8:])


def _greedy_batch(kv, bounds, plan):
    """`_greedy`'s outputs for a boundary bucket: its main outputs (what its stream has left) one by one, the
    selected items as one Batch, the drops as one DropBatch."""
    selected, drops = Batch(), Ledger()
    for o in _greedy(kv, bounds, plan):
        if type(o) is not beam.pvalue.TaggedOutput:
            yield o
        elif o.tag == DROPPED:
            drops.drop(o.value)
        else:
            selected.append(o.value)
    yield from _outputs(drops, selected=selected)


def _drop(item: Item, reason: str) -> beam.pvalue.TaggedOutput:
    """An item not selected, for `_greedy_batch`'s Ledger (which counts it)."""
    return beam.pvalue.TaggedOutput(DROPPED, _record(item, reason))


def _record(item: Item, reason: str) -> DropRecord:
    return DropRecord(item.id, reason, item.src, item.offset, item.source)


def _outputs(drops: Ledger, **batches):
    """A batch step's outputs: each non-empty Batch under its tag, then the drops as one DropBatch."""
    for tag, batch in batches.items():
        if batch:
            yield beam.pvalue.TaggedOutput(tag, batch)
    if drops:
        yield beam.pvalue.TaggedOutput(DROPPED, drops.batch())


def _reason(item: Item, plan, excess_fits: bool) -> str:
    return "over_ceiling" if not excess_fits or item.source in plan.limited else "over_quota"


def _key(item: Item):
    return item.source, item.stream


def _route(batch: Batch, bounds, plan):
    """keep / boundary / tail by the stream's boundary bucket (-1: every candidate is walked); the boundary's items
    go on one by one, keyed by stream, to be grouped. A tail document that does not fit what is left for the
    boundary bucket cannot fit later (what is left only shrinks: taken documents have units >= 0 and, in `over`
    streams, excess > 0), so it is dropped here, with the reason `_fits_left` would give, whenever that reason is
    already known."""
    selected, tail, drops = Batch(), Batch(), Ledger()
    for item in batch:
        key = _key(item)
        b, units, excess = bounds[key]
        bucket = item.bucket
        if b == -1 or bucket == b:
            yield key, item
        elif bucket < b:
            selected.append(item)
        elif excess is not None and item.excess > excess:
            if item.epoch == 0:
                drops.drop(_record(item, "over_ceiling"))
        elif item.units > units and (excess is None or item.source in plan.limited):
            if item.epoch == 0:
                drops.drop(_record(item, _reason(item, plan, True)))
        else:
            tail.append(item)
    yield from _outputs(drops, selected=selected, tail=tail)


def _greedy(kv, bounds, plan):
    """The boundary bucket in priority order: take each document that fits, skip the others and go on."""
    key, items = kv
    _, units, excess = bounds[key]
    for item in sorted(items, key=lambda i: i.order):
        fits_e = excess is None or item.excess <= excess
        if item.units <= units and fits_e:
            units -= item.units
            if excess is not None:
                excess -= item.excess
            yield beam.pvalue.TaggedOutput(SELECTED, item)
        elif item.epoch == 0:
            yield _drop(item, _reason(item, plan, fits_e))
    yield key, (units, excess)


def _fits_left(batch: Batch, left, plan):
    """The tail documents that fit what their stream has left go on to the next round; the others are dropped."""
    kept, drops = Batch(), Ledger()
    for item in batch:
        units, excess = left.get(_key(item), (0, 0))
        fits_e = excess is None or item.excess <= excess
        if item.units <= units and fits_e:
            kept.append(item)
        elif item.epoch == 0:
            drops.drop(_record(item, _reason(item, plan, fits_e)))
    if kept:
        yield kept
    yield from _outputs(drops)


def _select(items, label: str, limits_side, plan_side):
    """Takes, per (source, stream), the longest priority-ordered set that fits its limits: {key: (units, excess or
    None)}. Each round keeps the buckets below the boundary whole and walks the boundary bucket; what lies beyond
    goes to the next round only if it still fits what is left. The last round walks every remaining candidate
    (by then only documents smaller than the leftover, typically a handful). Returns (selected, dropped) as lists
    of PCollections, for the caller's one Flatten each (every Flatten copies its input on some runners). Tagged
    outputs are typed, so Batches and DropBatches cross stage boundaries with their own coders rather than
    pickled."""
    selected, dropped = [], []
    candidates = items
    for r in range(ROUNDS):
        tag = f"{label}{r}"
        if r < ROUNDS - 1:
            hists = candidates | f"Hist{tag}" >> beam.CombineGlobally(_Histograms())
            bounds = beam.pvalue.AsSingleton(hists | f"Bounds{tag}" >> beam.Map(
                lambda h, lim: {k: boundary(v, *lim.get(k, (0, 0))) for k, v in h.items()}, limits_side))
        else:
            bounds = beam.pvalue.AsSingleton(_one(candidates, tag) | f"Bounds{tag}" >> beam.Map(
                lambda _, lim: {k: (-1, *v) for k, v in lim.items()}, limits_side))
        routed = candidates | f"Route{tag}" >> beam.FlatMap(
            _route, bounds, plan_side).with_output_types(
            KeyedItem, selected=Batch, tail=Batch, dropped=DropBatch).with_outputs(SELECTED, "tail", DROPPED,
                                                                                   main="boundary")
        cut = (routed["boundary"] | f"Group{tag}" >> beam.GroupByKey()
               | f"Greedy{tag}" >> beam.FlatMap(_greedy_batch, bounds, plan_side).with_output_types(
                   Any, selected=Batch, dropped=DropBatch).with_outputs(
                   SELECTED, DROPPED, main="left"))
        selected += [routed[SELECTED], cut[SELECTED]]
        dropped += [routed[DROPPED], cut[DROPPED]]
        if r == ROUNDS - 1:
            break
        limits_side = beam.pvalue.AsSingleton(cut["left"] | f"Left{tag}" >> beam.combiners.ToList()
                                              | f"LeftDict{tag}" >> beam.Map(dict))
        nxt = routed["tail"] | f"Fits{tag}" >> beam.FlatMap(
            _fits_left, limits_side, plan_side).with_output_types(
            Batch, dropped=DropBatch).with_outputs(DROPPED, main="next")
        dropped.append(nxt[DROPPED])
        candidates = nxt["next"]
    return selected, dropped


def _one(pcoll, tag: str):
    """A one-element PCollection in pcoll's pipeline (to hang a side-input computation on)."""
    return pcoll.pipeline | f"One{tag}" >> beam.Create([None])


class MixWithCeiling(beam.PTransform):
    """A tuple of classified input parts (`read.ReadClassified`'s or `read.ClassifyDocuments`' dicts: each part is
    classified where it is read, so no stage holds documents waiting for a Flatten) -> {"selected": Item (one per
    output row, repeats included), "dropped" (`drops.DropBatch`es of the mixer's drops and of the `Dropped` passed
    in `dropped`, in one Flatten), "dead_letters", "plan", "offered" (`report.SourceStats` of every item that
    passed exclusions, one dict), "documents" (`rows.waiting` documents of the parts not read again, for
    `rows.JoinRows`)}. Anchors are selected whole; the ceiling (certified bound, or the opt-in rule count) holds
    exactly on the selected rows. `groups`: reference group key -> (estimate, ci95 low, ci95 high, reference
    documents), from the curated folders' summaries (`certify.parse_ai_share`)."""

    def __init__(self, cfg: MixConfig, groups: dict | None = None, dropped: tuple = ()):
        super().__init__()
        self._cfg = cfg
        self._groups = dict(groups or {})
        self._earlier_drops = tuple(dropped)

    def expand(self, per_part):
        cfg = self._cfg
        bounds = certify.Bounds.of(self._groups)
        part_items = [c[ITEMS] for c in per_part]
        # supply and offered statistics, folded per bundle where each part is classified: the items cross one
        # Flatten, on their way to the plan's cut
        totals = ([c[TOTALS] for c in per_part] | "BundleTotals" >> beam.Flatten()
                  | "Offered" >> beam.CombineGlobally(_Merged(beam.combiners.SingleInputTupleCombineFn(
                      *totals_fns(cfg)))))
        offered = totals | "OfferedStats" >> beam.Map(lambda t: t[0])
        if cfg.rule == "certified":
            plan = totals | "Plan" >> beam.Map(lambda t: make_certified_plan(cfg, bounds, t[1]))
        else:
            plan = totals | "Plan" >> beam.Map(lambda t: make_plan(cfg, t[1]))
        plan_side = beam.pvalue.AsSingleton(plan)
        streams = (part_items | "Classified" >> beam.Flatten()
                   | "Streams" >> beam.FlatMap(_streams, plan_side, cfg).with_output_types(
                       Batch, under=Batch, over=Batch, dropped=DropBatch).with_outputs(UNDER, OVER, DROPPED,
                                                                                        main=ANCHOR))
        anchors = streams[ANCHOR]

        u_limits = beam.pvalue.AsSingleton(plan | "UnderLimits" >> beam.Map(
            lambda p: {k: (b, None) for k, b in p.budget.items() if k[1] == UNDER}))
        u_selected, u_dropped = _select(streams[UNDER], "Under", u_limits, plan_side)

        slack = (
            [sel | f"Excess[{i}]" >> beam.Map(lambda b: sum(i.excess for i in b))
             for i, sel in enumerate((anchors, *u_selected))]
            | "SlackItems" >> beam.Flatten()
            | "SumExcess" >> beam.CombineGlobally(sum)
            | "Slack" >> beam.Map(lambda total: -total)
        )

        def over_limits(plan, slack_total):
            wanted = {k: b for k, b in plan.budget.items() if k[1] == OVER}
            total = sum(wanted.values())
            room = max(slack_total, 0)
            return {k: (w, int(Fraction(room * w, total)) if total else 0) for k, w in wanted.items()}

        o_limits = beam.pvalue.AsSingleton(plan | "OverLimits" >> beam.Map(over_limits,
                                                                          beam.pvalue.AsSingleton(slack)))
        o_selected, o_dropped = _select(streams[OVER], "Over", o_limits, plan_side)

        selected = ((anchors, *u_selected, *o_selected) | "AllSelected" >> beam.Flatten()
                    | "Unbatch" >> beam.FlatMap(lambda batch: batch).with_output_types(Item))
        earlier = [d | f"Earlier[{i}]" >> beam.Map(batch_of).with_output_types(DropBatch)
                   for i, d in enumerate(self._earlier_drops)]
        dropped = ([*earlier, *[c[DROPPED] for c in per_part], streams[DROPPED], *u_dropped, *o_dropped]
                   | "AllDropped" >> beam.Flatten().with_output_types(DropBatch))
        waiting_docs = ([c[DOCUMENTS] for c in per_part if DOCUMENTS in c]
                        or [part_items[0].pipeline | "NoneWaiting" >> beam.Create([])]) | "Waiting" >> beam.Flatten()
        dead = [c[DEAD_LETTERS] for c in per_part] | "DeadLetters" >> beam.Flatten()
        return {SELECTED: selected, DOCUMENTS: waiting_docs, DROPPED: dropped, DEAD_LETTERS: dead, "plan": plan,
                "offered": offered}

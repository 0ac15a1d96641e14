"""`ScoreAgainstReference`: detector scores, calibrated against a human reference, and AI-share estimates.

    documents ─ ScoreAILikelihood ─► ai_score, ai_model            (language gate; unsupported → null)
        pre_llm documents (no later copy) + --human_reference ─ BuildReference ─► per-group reference (side input)
    scored ─ Assign ─► ai_reference, ai_pvalue, flag at the group's cross-fitted threshold
        flags ─ cells per (crawl, group) ─► ai_share.by_reference, ai_share.by_crawl
    assigned ─ Posterior ─► p_ai (0 for pre-LLM pages; else given the share of the group's newer pages, else
                                  of its crawl's)

Every null carries a counted reason (`score_null_<reason>` counters and `scoring.null` in the summary):
`unsupported_language` (no ai_score), `no_reference` (no group has enough reference documents: ai_pvalue,
ai_reference and p_ai null), `no_estimate` (neither the group nor the crawl has an estimable share: p_ai null).
"""
from __future__ import annotations

import apache_beam as beam

from transforms.accounting import DEAD_LETTERS, DOCUMENTS, Tally, count
from transforms.document import Document, replace
from transforms.score.estimate import Cell, TprPrior, combine, null_share, point_fpr, posterior
from transforms.score.handler import ScoreAILikelihood
from transforms.score.reference import (BuildReference, calibrates, conformal_pvalue, group_candidates, half_of,
                                        has_later_copy, is_reference, serving_group, trained_on)
from transforms.tokens import count_tokens

NULL_REASONS = {
    "unsupported_language": "language the detector was not trained for: no ai_score",
    "no_reference": "no reference group with enough human documents: no ai_pvalue, ai_reference, p_ai",
    "no_estimate": "neither the group's nor the crawl's AI share is estimable: no p_ai",
}
_ASSIGNED = "assigned"


def crawl_of(doc: Document) -> str:
    return doc.crawl_id or "unknown"


class _Assign(beam.DoFn):
    def __init__(self, seed: int):
        self._seed = seed

    def process(self, doc: Document, references: dict):
        if doc.ai_score is None:
            yield doc
            return
        ref = serving_group(doc, references)
        if ref is None:
            count("score_null_no_reference")
            yield doc
            return
        half = half_of(doc, self._seed)
        flagged = doc.ai_score > ref.threshold_for(half)
        out = replace(doc, ai_pvalue=conformal_pvalue(doc.ai_score, ref.other(half)), ai_reference=ref.group)
        yield beam.pvalue.TaggedOutput(_ASSIGNED, (out, flagged, count_tokens(doc.text)))


def _status(doc: Document) -> str:
    if doc.ai_score is None:
        return "unsupported_language"
    return "no_reference" if doc.ai_reference is None else "assigned"


def _crawl_share(crawl: str, parts: dict, references: dict, tpr: TprPrior, seed: int,
                 union: dict) -> tuple[str, dict]:
    cells = list(parts["cells"])
    statuses = dict(parts["statuses"][0]) if parts["statuses"] else {}
    if cells:
        return crawl, combine(cells, references, tpr, seed, f"crawl:{crawl}", reference_documents=union.get(crawl))
    n, tokens = sum(v[0] for v in statuses.values()), sum(v[1] for v in statuses.values())
    reason = "unsupported language" if statuses.get("unsupported_language", (0,))[0] == n else "no reference group"
    return crawl, null_share(reason, n, tokens)


class ScoreAgainstReference(beam.PTransform):
    """Documents -> {"documents", "dead_letters", "ai_share", "scoring"}; `reference` is an optional PCollection
    of human documents from an earlier run (unscored: they are scored here with the same model)."""

    def __init__(self, model_dir: str, card: dict, seed: int, reference=None):
        super().__init__()
        self._model_dir, self._seed, self._reference = model_dir, seed, reference
        self._tpr = TprPrior.from_card(card)
        self._trained_on = (card.get("reference") or {}).get("split")

    def expand(self, docs):
        seed, tpr = self._seed, self._tpr
        scored = docs | "Score" >> ScoreAILikelihood(self._model_dir)
        refs = [scored[DOCUMENTS] | "InRunReference" >> beam.Filter(calibrates)]
        if self._reference is not None:
            refs.append((self._reference | "ScoreReference" >> ScoreAILikelihood(self._model_dir, reference=True))
                        [DOCUMENTS])
        split = self._trained_on
        reference_docs = (refs | "AllReference" >> beam.Flatten()
                          | "NotTrainedOn" >> beam.Filter(lambda d: not trained_on(d, split)))
        references = beam.pvalue.AsDict(reference_docs | "BuildReference" >> BuildReference(seed))
        assigned = scored[DOCUMENTS] | "Assign" >> beam.ParDo(_Assign(seed), references).with_outputs(
            _ASSIGNED, main="unassigned")
        cells = (assigned[_ASSIGNED]
                 | "CellKey" >> beam.MapTuple(lambda d, f, t: ((crawl_of(d), d.ai_reference),
                                                              Cell(d.ai_reference).add(t, f, is_reference(d))))
                 | "Cells" >> beam.CombinePerKey(_MergeCells()))
        by_reference = (
            cells
            | "ByGroup" >> beam.MapTuple(lambda k, c: (k[1], c))
            | "MergeGroup" >> beam.CombinePerKey(_MergeCells())
            | "GroupShare" >> beam.Map(lambda kv, refs: (kv[0], combine([kv[1]], refs, tpr, seed, kv[0], kv[0])),
                                       references)
        )
        statuses = (
            (assigned["unassigned"], assigned[_ASSIGNED] | "Docs" >> beam.MapTuple(lambda d, f, t: d))
            | "AllScored" >> beam.Flatten()
            | "StatusKey" >> beam.Map(lambda d: (crawl_of(d), (_status(d), count_tokens(d.text))))
            | "Statuses" >> beam.CombinePerKey(_StatusCounts())
        )
        serving = beam.pvalue.AsSingleton(cells | "ServingKeys" >> beam.Keys()
                                          | "Serving" >> beam.combiners.ToList() | "ServingSets" >> beam.Map(_serving))
        union = beam.pvalue.AsDict(reference_docs
                                   | "ReferenceOf" >> beam.FlatMap(_crawls_referenced, serving)
                                   | "ReferenceUnion" >> beam.combiners.Count.PerElement())
        by_crawl = (
            {"cells": cells | "CrawlKey" >> beam.MapTuple(lambda k, c: (k[0], c)), "statuses": statuses}
            | "PerCrawl" >> beam.CoGroupByKey()
            | "CrawlShare" >> beam.Map(lambda kv, refs, u: _crawl_share(kv[0], kv[1], refs, tpr, seed, u),
                                       references, union)
        )
        group_shares = beam.pvalue.AsDict(by_reference)
        crawl_shares = beam.pvalue.AsDict(by_crawl)
        with_p = assigned[_ASSIGNED] | "Posterior" >> beam.ParDo(_Posterior(tpr), references, group_shares,
                                                                 crawl_shares)
        documents = (assigned["unassigned"], with_p) | "Documents" >> beam.Flatten()
        ref_dict = by_reference | "RefDict" >> beam.combiners.ToDict()
        crawl_dict = by_crawl | "CrawlDict" >> beam.combiners.ToDict()
        share = (
            docs.pipeline | "OneShare" >> beam.Create([None])
            | "ShareDict" >> beam.Map(lambda _, r, c: {"by_reference": dict(sorted(r.items())),
                                                       "by_crawl": dict(sorted(c.items()))},
                                      beam.pvalue.AsSingleton(ref_dict), beam.pvalue.AsSingleton(crawl_dict))
        )
        later = (scored[DOCUMENTS] | "LaterCopies" >> beam.FlatMap(_later_copy)
                 | "CountLater" >> beam.combiners.Count.Globally())
        scoring = (
            documents
            | "NullReason" >> beam.Map(_null_reason)
            | "ScoringTally" >> Tally(lambda r: r)
            | "ScoringDict" >> beam.Map(lambda t, later_copy: {
                "scored": sum(n for k, n in t.items() if k != "unsupported_language"),
                "null": {k: t.get(k, 0) for k in NULL_REASONS},
                "reference_later_copy": later_copy}, beam.pvalue.AsSingleton(later))
        )
        return {DOCUMENTS: documents, DEAD_LETTERS: scored[DEAD_LETTERS], "ai_share": share, "scoring": scoring}


def _serving(keys: list) -> dict:
    """(crawl, group) keys of the cells -> {group: crawls it served}."""
    out: dict = {}
    for crawl, group in keys:
        out.setdefault(group, set()).add(crawl)
    return out


def _crawls_referenced(doc: Document, serving: dict):
    """The crawls whose estimate this reference document took part in (once each): a document belongs to every
    group it is a candidate for (domain, source pool, global), so summing the serving groups' sizes would count it
    once per group."""
    if doc.ai_score is None:
        return []
    return sorted({c for g in group_candidates(doc) for c in serving.get(g, ())})


def _later_copy(doc: Document):
    """A pre-LLM page left out of the in-run reference because its cluster held a later copy (counted)."""
    if doc.ai_score is not None and is_reference(doc) and has_later_copy(doc):
        count("reference_later_copy")
        yield 1


def _null_reason(doc: Document) -> str:
    if doc.ai_score is None:
        return "unsupported_language"
    if doc.ai_reference is None:
        return "no_reference"
    return "no_estimate" if doc.p_ai is None else "ok"


class _MergeCells(beam.CombineFn):
    """Sums Cells (additive statistics), never mutating its inputs."""

    def create_accumulator(self):
        return None

    def add_input(self, acc, cell):
        return Cell(cell.group).merge(cell) if acc is None else acc.merge(cell)

    def merge_accumulators(self, accs):
        out = None
        for a in accs:
            if a is not None:
                out = Cell(a.group).merge(a) if out is None else out.merge(a)
        return out

    def extract_output(self, acc):
        return acc


class _StatusCounts(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, acc, item):
        k, tokens = item
        n, t = acc.get(k, (0, 0))
        acc[k] = (n + 1, t + tokens)
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for k, (n, t) in a.items():
                n0, t0 = out.get(k, (0, 0))
                out[k] = (n0 + n, t0 + t)
        return out

    def extract_output(self, acc):
        return sorted(acc.items())


def _newer_share(entry: dict | None) -> float | None:
    """The estimated share of the documents that are not this run's own pre-LLM reference: those hold every AI token
    of the group when the reference is human, which is what made it the reference."""
    entry = entry or {}
    return (entry.get("outside_reference") or entry).get("estimate")


class _Posterior(beam.DoFn):
    """p_ai: 0 for the run's own pre-LLM pages (human by the premise that makes them the reference); for the others,
    P(AI | flagged or not) at the share of the non-reference documents of their group (else of their crawl)."""

    def __init__(self, tpr: TprPrior):
        self._tpr = tpr

    def process(self, item, references: dict, group_shares: dict, crawl_shares: dict):
        doc, flagged, _ = item
        if is_reference(doc):
            yield replace(doc, p_ai=0.0)
            return
        share = _newer_share(group_shares.get(doc.ai_reference))
        if share is None:
            share = _newer_share(crawl_shares.get(crawl_of(doc)))
        if share is None:
            count("score_null_no_estimate")
            yield doc
            return
        ref = references[doc.ai_reference]
        yield replace(doc, p_ai=posterior(flagged, share, self._tpr.point, point_fpr(ref)))

"""Counts of declared signals per crawl and before/after ChatGPT's release, for `summary.json`."""
from __future__ import annotations

import apache_beam as beam

from transforms.document import Document, Provenance


_DECLARED = ("robots_noai", "robots_noimageai", "declared_ai", "c2pa_manifest", "c2pa_text_wrapper")
_NONE = Provenance()


def signal_flags(doc: Document) -> list[str]:
    p = doc.provenance or _NONE
    flags = ["documents"]
    if not p.html_observable:
        flags.append("html_not_observable")
    if p.tdm_reservation == 1:
        flags.append("tdm_reserved")
    if p.tdm_reservation == 0:
        flags.append("tdm_not_reserved")
    flags += [name for name in _DECLARED if getattr(p, name)]
    if p.generator:
        flags.append("generator_declared")
    if p.invisible_total:
        flags.append("invisible_chars")
    return flags


def era(doc: Document) -> str:
    pre = (doc.provenance or _NONE).pre_llm
    return "unknown" if pre is None else ("pre_llm" if pre else "post_llm")


class SignalCounts(beam.CombineFn):
    """Per group (total, crawl, era), how many documents carry each flag of `signal_flags`; every document
    carries "documents", so the total counts the documents too (`documents_counted`)."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, doc: Document):
        flags = signal_flags(doc)  # once per document, counted in each of its three groups
        for group in ("total", f"crawl:{doc.crawl_id or 'unknown'}", f"era:{era(doc)}"):
            counts = acc.setdefault(group, {})
            for flag in flags:
                counts[flag] = counts.get(flag, 0) + 1
        return acc

    def merge_accumulators(self, accs):
        out: dict = {}
        for acc in accs:
            for group, counts in acc.items():
                target = out.setdefault(group, {})
                for k, n in counts.items():
                    target[k] = target.get(k, 0) + n
        return out

    def extract_output(self, acc):
        def pick(prefix):
            return {k[len(prefix):]: dict(sorted(v.items())) for k, v in sorted(acc.items()) if k.startswith(prefix)}

        return {"total": dict(sorted(acc.get("total", {}).items())), "by_crawl": pick("crawl:"),
                "by_era": pick("era:")}


def documents_counted(signals: dict) -> int:
    """The number of documents a `SignalCounts` output has seen."""
    return signals["total"].get("documents", 0)

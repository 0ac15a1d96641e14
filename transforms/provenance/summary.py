"""Counts of declared signals per crawl and before/after ChatGPT's release, for `summary.json`."""
from __future__ import annotations

import apache_beam as beam

from transforms.document import Document


def signal_flags(doc: Document) -> list[str]:
    p = doc.provenance or {}
    flags = ["documents"]
    if not p.get("html_observable"):
        flags.append("html_not_observable")
    if p.get("tdm_reservation") == 1:
        flags.append("tdm_reserved")
    if p.get("tdm_reservation") == 0:
        flags.append("tdm_not_reserved")
    for name in ("robots_noai", "robots_noimageai", "declared_ai", "c2pa_manifest", "c2pa_text_wrapper"):
        if p.get(name):
            flags.append(name)
    if p.get("generator"):
        flags.append("generator_declared")
    if p.get("invisible_total"):
        flags.append("invisible_chars")
    return flags


def era(doc: Document) -> str:
    pre = (doc.provenance or {}).get("pre_llm")
    return "unknown" if pre is None else ("pre_llm" if pre else "post_llm")


class SignalCounts(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, acc, doc: Document):
        for group in ("total", f"crawl:{doc.crawl_id or 'unknown'}", f"era:{era(doc)}"):
            counts = acc.setdefault(group, {})
            for flag in signal_flags(doc):
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

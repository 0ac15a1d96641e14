"""Documents on the wire: the registered DocumentCoder against pickling (Beam's fallback for an unregistered class),
per document and on the shuffle-heavy stages, in the same run.

    python benchmarks/coder.py [--docs 5000] [--repeats 3]

Documents look like scored ones (about 2,000 characters of real text, a full provenance record, scores,
metadata); one in five is an exact copy of another and one in five a near copy, so dedup has work to do.

1. Per document: bytes on the wire and encode+decode microseconds, FastPrimitivesCoder (pickle fallback, what
   every shuffle used before) against DocumentCoder.
2. Stages on the in-process FnApiRunner (one worker, as `synthcap` runs locally), documents created in memory:
   dedup = ExactDedup + NearDedup, mix = MixWithCeiling (threshold rule, half the supply). The two coders are
   registered in turn (pickle, coder, pickle, coder, ...) and the median wall time of `--repeats` runs is
   reported with the ratio pickle / coder. Near dedup's CoGroupByKey joins still pickle (Beam gives a union of
   value types a generic coder), so the dedup ratio understates what a shuffle of documents alone gains.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from dedup_speed import corpus  # the same 2,000-character texts as the dedup benchmark
from transforms.accounting import DOCUMENTS
from transforms.dedup.exact import ExactDedup
from transforms.dedup.near import NearDedup
from transforms.document import Document, DocumentCoder, Provenance
from transforms.mix.config import parse
from transforms.mix.read import ClassifyDocuments
from transforms.mix.select import SELECTED, MixWithCeiling
from transforms.tokens import count_tokens


def documents(n: int) -> list[Document]:
    body = corpus(n)
    docs = []
    for i in range(n):
        text = body[i - 1] if i % 5 == 1 else body[i]  # exact copy of the previous one
        if i % 5 == 3:
            text = body[i - 1][:1900] + " one more closing sentence here."  # near copy
        p = (i * 7919 % 1000) / 1000
        docs.append(Document(
            id=f"urn:uuid:{i:08d}", text=text, source=f"gs://crawl/CC-MAIN-2024-10/segment-{i % 7}.warc.gz",
            offset=i * 4099, url=f"https://site{i % 97}.example/page/{i}", domain=f"site{i % 97}.example",
            warc_record_id=f"urn:uuid:{i:08d}", crawl_id="CC-MAIN-2024-10", capture_date="2024-02-20T00:00:00Z",
            language="eng", content_digest=f"sha1:{i:032d}", ai_score=p, ai_pvalue=1 - p, ai_reference="global",
            p_ai=p, ai_model="default@1", metadata={"warc_filename": f"segment-{i % 7}.warc.gz"},
            provenance=Provenance(registered_domain=f"site{i % 97}.example", pre_llm=False, html_observable=True,
                                  robots_noai=False, robots_noimageai=False, declared_ai=False,
                                  c2pa_manifest=False, c2pa_text_wrapper=False, invisible_chars={},
                                  invisible_total=0)))
    return docs


def per_document(docs: list[Document], repeats: int) -> list[tuple]:
    """(coder, bytes/doc, best encode+decode µs/doc over `repeats` interleaved passes)."""
    coders = (("pickle (FastPrimitivesCoder)", FastPrimitivesCoder()), ("DocumentCoder", DocumentCoder()))
    best = {name: float("inf") for name, _ in coders}
    sizes = {}
    for _ in range(repeats):
        for name, coder in coders:
            t = time.perf_counter()
            encoded = [coder.encode(d) for d in docs]
            back = [coder.decode(b) for b in encoded]
            best[name] = min(best[name], (time.perf_counter() - t) / len(docs) * 1e6)
            assert back == docs
            sizes[name] = statistics.mean(map(len, encoded))
    return [(name, sizes[name], best[name]) for name, _ in coders]


def dedup_stage(p, docs):
    exact = p | beam.Create(docs).with_output_types(Document) | ExactDedup()
    near = exact[DOCUMENTS] | NearDedup()
    return near[DOCUMENTS]


def mix_stage(p, docs):
    supply = sum(count_tokens(d.text) for d in docs)
    cfg = parse({"seed": 1, "target_tokens": supply // 2, "max_synthetic_fraction": "0.3",
                 "synthetic": {"rule": "threshold", "threshold": 0.5},
                 "sources": [{"name": "web", "inputs": ["unused/*.parquet"], "weight": 1}]})
    part = (p | beam.Create(docs).with_output_types(Document)
            | ClassifyDocuments(cfg, frozenset(), "web", "", read_again=False))
    return ((part,) | MixWithCeiling(cfg))[SELECTED]


def _count(n: int) -> None:
    Metrics.counter("bench", "outputs").inc(n)


def timed_stage(build, docs, coder) -> tuple[float, int]:
    """Wall seconds of building and running the stage with `coder` registered for Document, and its output count."""
    beam.coders.registry.register_coder(Document, coder)
    t = time.perf_counter()
    p = beam.Pipeline(runner=FnApiRunner())
    _ = build(p, docs) | beam.combiners.Count.Globally() | beam.Map(_count)
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - t
    counters = result.metrics().query(MetricsFilter().with_name("outputs"))["counters"]
    return seconds, sum(c.committed for c in counters)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    docs = documents(args.docs)

    print(f"## per document ({args.docs} documents, mean {statistics.mean(len(d.text) for d in docs):.0f} chars)")
    print("| coder | bytes/doc | encode+decode µs/doc (best) |\n|---|---:|---:|")
    rows = per_document(docs, args.repeats)
    for name, size, us in rows:
        print(f"| {name} | {size:,.0f} | {us:.1f} |")
    print(f"ratio pickle/coder: bytes {rows[0][1] / rows[1][1]:.2f}x, time {rows[0][2] / rows[1][2]:.2f}x\n")

    print(f"## stages, FnApiRunner, median of {args.repeats} interleaved runs")
    print("| stage | pickle s | coder s | pickle / coder | outputs |\n|---|---:|---:|---:|---:|")
    for name, build in (("dedup (exact + near)", dedup_stage), ("mix (MixWithCeiling)", mix_stage)):
        times = {"pickle": [], "coder": []}
        outs = set()
        for _ in range(args.repeats):
            for label, coder in (("pickle", FastPrimitivesCoder), ("coder", DocumentCoder)):
                seconds, n = timed_stage(build, docs, coder)
                times[label].append(seconds)
                outs.add(n)
        assert len(outs) == 1, outs  # both coders give the same result
        a, b = statistics.median(times["pickle"]), statistics.median(times["coder"])
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {outs.pop()} |")
    beam.coders.registry.register_coder(Document, DocumentCoder)


if __name__ == "__main__":
    main()

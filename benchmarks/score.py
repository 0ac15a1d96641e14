"""Scoring throughput, one core: RunInference (DirectRunner) against raw fastText predict on a list, same run.

    python benchmarks/score.py [--docs 50000] [--model DIR]

The RunInference figure is the scoring stage's marginal cost: the same pipeline without the stage (Create the
documents, count them) is timed too and subtracted, since feeding in-memory documents through beam.Create is
most of a DirectRunner pipeline's time and is no part of scoring. The end-to-end figure is shown as well.
"""
from __future__ import annotations

import argparse
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.runner import make_pipeline
from pipeline.sample import human_paragraphs
from transforms.document import Document
from transforms.score.handler import ScoreAILikelihood
from transforms.score.model import DEFAULT_MODEL_DIR, Detector
from transforms.score.normalize import for_scoring


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--model", default=DEFAULT_MODEL_DIR)
    args = ap.parse_args()
    paras = human_paragraphs()
    texts = [" ".join(paras[(i * 7 + k) % len(paras)] for k in range(3))[:2000] for i in range(args.docs)]
    det = Detector.load(args.model)
    prepared = [for_scoring(t) for t in texts]
    t = time.perf_counter()
    det.model.predict(prepared, k=2)
    raw = len(texts) / (time.perf_counter() - t)
    t = time.perf_counter()
    det.score(texts)
    full = len(texts) / (time.perf_counter() - t)
    docs = [Document(id=f"d{i}", text=x, source="bench", offset=i) for i, x in enumerate(texts)]

    def pipeline(score: bool) -> float:
        t = time.perf_counter()
        with make_pipeline(PipelineOptions(["--direct_num_workers=1"])) as p:
            pc = p | beam.Create(docs, reshuffle=False)
            if score:
                pc = (pc | ScoreAILikelihood(args.model))["documents"]
            pc | beam.combiners.Count.Globally()
        return time.perf_counter() - t

    floor, whole = pipeline(False), pipeline(True)
    ri = len(texts) / (whole - floor)
    end_to_end = len(texts) / whole
    print(f"{len(texts):,} documents of ~2,000 characters, one core\n")
    print("| path | docs/s | share of raw predict |\n|---|---:|---:|")
    print(f"| fastText predict on a list, pre-normalised text (baseline) | {raw:,.0f} | 1.00 |")
    print(f"| Detector.score: normalise + predict + calibrate | {full:,.0f} | {full / raw:.2f} |")
    print(f"| ScoreAILikelihood stage (RunInference, DirectRunner), marginal cost | {ri:,.0f} | {ri / raw:.2f} |")
    print(f"| the same pipeline end to end, beam.Create of in-memory documents included | {end_to_end:,.0f} | "
          f"{end_to_end / raw:.2f} |")


if __name__ == "__main__":
    main()

"""Corpus-level estimators on mixtures of held-out labelled documents at known AI fractions.

    python benchmarks/estimate.py [--model DIR] [--n 2000] [--reps 100]

Held-out documents: the test split of ../shared/data/detect (the same group-aware split, seed from the model
card), scored by the model. For each true fraction, `--reps` mixtures of `--n` documents are drawn (seeded); the
table gives each estimator's mean absolute error and how often its 95% CI covers the truth.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

from transforms.score.estimate import acc, mixture
from transforms.score.model import DEFAULT_MODEL_DIR, Detector
from transforms.score.train import load, split

DETECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "detect")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL_DIR)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=100)
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(DETECT, "*.jsonl.gz")))
    if not files:
        sys.exit(f"needs {DETECT}")
    det = Detector.load(args.model)
    test = split(load(files), det.card["seed"])["test"]
    p = det.score([e.text for e in test])
    y = np.array([e.label for e in test])
    human, ai = p[y == 0], p[y == 1]
    bins = len(det.card["validation_histograms"]["human"])
    edges = np.linspace(0, 1, bins + 1)
    rng = np.random.default_rng(7)
    print(f"held-out test documents: {len(human):,} human, {len(ai):,} AI; mixtures of {args.n:,}, "
          f"{args.reps} per fraction\n")
    print("| true fraction | ACC mean abs error | ACC CI coverage | mixture mean abs error | mixture CI coverage |")
    print("|---:|---:|---:|---:|---:|")
    for truth in (0.0, 0.05, 0.1, 0.3, 0.5):
        errs = {"acc": [], "mix": []}
        cover = {"acc": [], "mix": []}
        for _ in range(args.reps):
            k = int(round(truth * args.n))
            s = np.concatenate([rng.choice(ai, k), rng.choice(human, args.n - k)])
            counts = np.histogram(s, edges)[0].astype(float)
            for name, est in (("acc", acc(counts, det.card)), ("mix", mixture(counts, det.card))):
                errs[name].append(abs(est["estimate"] - truth))
                cover[name].append(est["ci95"][0] <= truth <= est["ci95"][1])
        print(f"| {truth:.2f} | {np.mean(errs['acc']):.4f} | {np.mean(cover['acc']):.2f} | "
              f"{np.mean(errs['mix']):.4f} | {np.mean(cover['mix']):.2f} |")


if __name__ == "__main__":
    main()

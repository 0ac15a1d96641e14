"""Does near dedup leave the in-run reference exchangeable with the newer human pages it calibrates?

    SYNTHCAP_SHARED=../shared python benchmarks/reference_dedup.py [--sets glimpse,fastdetectgpt | all]
        [--work /tmp/ood_cli3] [--reps 400] [--max_humans 3000] [--seed 7]

Leave-one-dataset-out: each held-out set's English human texts (each text once, grouped by `pair_id`) are scored
by `synthcap train-detector` trained on the other sets (cached under `--work` as in `benchmarks/ood_cli.py`), and
grouped into near-duplicate clusters with the pipeline's own MinHash banding and exact Jaccard >= 0.8 (the
`curate` defaults). Then, `--reps` times, a keyed random half of the pair groups becomes the pre-LLM reference and
the rest the newer pages, and dedup is applied as `curate` applies it: the earliest copy survives, so a cluster
with a reference member keeps a reference page, and a cluster of newer pages only keeps one of them. Reported:
the share of surviving newer human pages above the conformal 5% threshold fitted on
- every surviving reference page (the rule before this change, the baseline in the same run), and
- only reference pages whose cluster held no newer page (`reference.calibrates`, what `curate` now does).
The conformal threshold promises at most 5% on average over splits when the two are exchangeable. Nothing is
timed; the detector is cached or trained once per set.
"""
from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ood_cli import DATA, load_set, train_model  # noqa: E402
from transforms.dedup.lsh import LshParams, band_hashes  # noqa: E402
from transforms.dedup.minhash import MinHasher, jaccard  # noqa: E402
from transforms.score.model import Detector  # noqa: E402
from transforms.score.reference import ALPHA, conformal_threshold  # noqa: E402


def clusters(texts: list[str]) -> list[list[int]]:
    """Connected components of verified near-duplicate pairs, as `NearDedup` finds them."""
    p = LshParams.resolve()
    hasher = MinHasher(p.ngram, p.num_perm, p.seed)
    sketches = [hasher.sketch(t) for t in texts]
    buckets = defaultdict(list)
    for i, (sig, _) in enumerate(sketches):
        hashes = band_hashes(sig, p.bands, p.rows)
        for b, h in enumerate([] if hashes is None else hashes.tolist()):
            buckets[(b, h)].append(i)
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for members in buckets.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                i, j = members[a], members[b]
                if find(i) != find(j) and jaccard(sketches[i][1], sketches[j][1]) >= p.threshold:
                    parent[find(i)] = find(j)
    out = defaultdict(list)
    for i in range(len(texts)):
        out[find(i)].append(i)
    return sorted(out.values())


def flag_rates(groups: list[str], scores: list[float], comps: list[list[int]], reps: int, seed: int) -> dict:
    rng = random.Random(seed)
    names = sorted(set(groups))
    total = defaultdict(float)
    for _ in range(reps):
        side = {g: rng.random() < 0.5 for g in names}
        every, no_later, newer = [], [], []
        for members in comps:
            ref = [i for i in members if side[groups[i]]]
            new = [i for i in members if not side[groups[i]]]
            if ref:
                kept = scores[rng.choice(ref)]
                every.append(kept)
                if not new:
                    no_later.append(kept)
            else:
                newer.append(scores[rng.choice(new)])
        for name, ref in (("every", every), ("no_later", no_later)):
            cut = conformal_threshold(sorted(ref), ALPHA)
            total[name] += sum(s > cut for s in newer) / len(newer)
            total[name + "_n"] += len(ref)
        total["newer_n"] += len(newer)
    return {k: v / reps for k, v in total.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="glimpse,fastdetectgpt")
    ap.add_argument("--work", default="/tmp/ood_cli3")
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--max_humans", type=int, default=3000)
    ap.add_argument("--limit_per_file", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    names = sorted(p.name[: -len(".jsonl.gz")] for p in DATA.glob("*.jsonl.gz")) if a.sets == "all" \
        else a.sets.split(",")
    work = Path(a.work)
    print("| held-out set | humans | clusters (> 1 member) | surviving newer pages | reference: every survivor "
          "(baseline) | flagged | reference: no later copy | flagged |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        humans, _ = load_set(name, 1, a.max_humans)
        if len(humans) < 100:
            print(f"| {name} | {len(humans)} | too few humans | | | | | |")
            continue
        detector = Detector.load(str(train_model(name, work, a.limit_per_file, 1)))
        texts = [t for _, t in humans]
        scores = detector.score(texts).tolist()
        comps = clusters(texts)
        r = flag_rates([g for g, _ in humans], scores, comps, a.reps, a.seed)
        multi = sum(len(c) > 1 for c in comps)
        print(f"| {name} | {len(texts)} | {len(comps)} ({multi}) | {r['newer_n']:.0f} | {r['every_n']:.0f} | "
              f"{r['every']:.4f} | {r['no_later_n']:.0f} | {r['no_later']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

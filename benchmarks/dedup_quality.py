"""Near-dedup quality on real human text with planted near-duplicates, synthcap beside datasketch's MinHashLSH.

    python benchmarks/dedup_quality.py [--sources 6000] [--threshold 0.8]

Corpus: every distinct human text of 50+ words in ../shared/data/detect (about 22.7k), plus one variant of each
of `--sources` of them at a known edit: word substitutions (2/5/10/20%), insertions, deletions, boilerplate
added, paragraphs (or sentences) reordered. Truth: exact Jaccard on the same word 5-gram shingles, for every
planted pair and every pair either system reports. Both systems use the same n-gram, num_perm, threshold, bands
and rows; synthcap runs its real Beam transform (NearDedup) on the DirectRunner.

Pair metrics count every pair inside a predicted cluster (transitive chains included); "drop precision" is the
share of dropped documents whose true Jaccard with the document they were dropped for reaches the threshold.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import re
import sys
import tempfile
from collections import Counter, defaultdict
from math import comb
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from datasketch import MinHash, MinHashLSH

from pipeline.runner import make_pipeline
from transforms.accounting import DROPPED
from transforms.dedup.lsh import optimal_param
from transforms.dedup.minhash import MinHasher, jaccard_estimate, shingle_set
from transforms.dedup.near import NearDedup
from transforms.document import Document
from transforms.io.write import WriteJsonRecords

DETECT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "detect"
BOILERPLATE = ("Share this article on social media. Subscribe to our newsletter for weekly updates. "
               "Cookie policy: we use cookies to improve your experience.")


def human_texts() -> list[str]:
    seen, out = set(), []
    for f in sorted(DETECT.glob("*.jsonl.gz")):
        for line in gzip.open(f, "rt"):
            r = json.loads(line)
            if r["label"] == "human" and len(r["text"].split()) >= 50 and r["text"] not in seen:
                seen.add(r["text"])
                out.append(r["text"])
    return out


def edit(text: str, kind: str, rng: random.Random) -> str:
    words = text.split()
    if kind.startswith("substitute"):
        rate = float(kind.split("-")[1])
        for i in rng.sample(range(len(words)), max(1, int(rate * len(words)))):
            words[i] = rng.choice(("the", "data", "system", "new", "report", "people"))
        return " ".join(words)
    if kind == "insert":
        for _ in range(max(1, len(words) // 20)):
            words.insert(rng.randrange(len(words)), rng.choice(("really", "also", "indeed", "however")))
        return " ".join(words)
    if kind == "delete":
        for _ in range(max(1, len(words) // 20)):
            del words[rng.randrange(len(words))]
        return " ".join(words)
    if kind == "boilerplate":
        return text + "\n\n" + BOILERPLATE
    parts = [p for p in text.split("\n\n") if p.strip()]
    if len(parts) < 2:
        parts = re.split(r"(?<=[.!?])\s+", text)
    rng.shuffle(parts)
    return "\n\n".join(parts)


KINDS = ("substitute-0.02", "substitute-0.05", "substitute-0.1", "substitute-0.2", "insert", "delete", "boilerplate",
         "reorder")


def synthcap_clusters(docs: dict[str, str], args, bands, rows) -> dict[str, str]:
    """doc id -> survivor id, from the real NearDedup transform."""
    tmp = tempfile.mkdtemp()
    with make_pipeline(PipelineOptions([])) as p:
        out = (p | beam.Create([Document(id=k, text=v, source="bench", offset=0) for k, v in docs.items()])
               | NearDedup(ngram=5, num_perm=args.num_perm, threshold=args.threshold, bands=bands, rows=rows,
                           seed=args.seed))
        out[DROPPED] | WriteJsonRecords(tmp, "dropped", lambda d: d.id)
    found = {}
    for f in Path(tmp).glob("*.jsonl"):
        for line in f.open():
            r = json.loads(line)
            found[r["id"]] = r["detail"]
    return found


def datasketch_clusters(docs: dict[str, str], args, bands, rows) -> tuple[dict[str, str], dict[str, MinHash]]:
    """doc id -> survivor id, and each document's MinHash (reused for the estimate-error comparison)."""
    lsh = MinHashLSH(threshold=args.threshold, num_perm=args.num_perm, params=(bands, rows))
    sigs = {}
    for k, text in docs.items():
        m = MinHash(args.num_perm, seed=args.seed)
        m.update_batch([" ".join(s).encode() for s in shingle_set(text, 5)])
        sigs[k] = m
        lsh.insert(k, m)
    parent: dict[str, str] = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for k, m in sigs.items():
        for other in lsh.query(m):
            if other != k and m.jaccard(sigs[other]) >= args.threshold:
                a, b = find(k), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {k: find(k) for k in sigs if find(k) != k}, sigs


def pairs_of(assign: dict[str, str]) -> set[tuple[str, str]]:
    clusters = defaultdict(set)
    for k, root in assign.items():
        clusters[root].update((k, root))
    return {tuple(sorted(p)) for members in clusters.values() for p in itertools.combinations(sorted(members), 2)}


def ari(truth: dict[str, str], pred: dict[str, str], items: list[str]) -> float:
    t = [truth.get(i, i) for i in items]
    p = [pred.get(i, i) for i in items]
    n = len(items)
    index = sum(comb(c, 2) for c in Counter(zip(t, p)).values())
    a = sum(comb(c, 2) for c in Counter(t).values())
    b = sum(comb(c, 2) for c in Counter(p).values())
    expected = a * b / comb(n, 2)
    top = (a + b) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=6000)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num_perm", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not DETECT.exists():
        sys.exit(f"needs {DETECT}")
    rng = random.Random(args.seed)
    texts = human_texts()
    docs = {f"h{i:06d}": t for i, t in enumerate(texts)}
    planted = []
    for j, i in enumerate(rng.sample(range(len(texts)), args.sources)):
        kind = KINDS[j % len(KINDS)]
        vid = f"v{j:06d}"
        docs[vid] = edit(texts[i], kind, rng)
        planted.append((f"h{i:06d}", vid, kind))
    bands, rows = optimal_param(args.threshold, args.num_perm)
    shingles: dict[str, set] = {}

    def jac(a, b):
        for k in (a, b):
            if k not in shingles:
                shingles[k] = shingle_set(docs[k], 5)
        x, y = shingles[a], shingles[b]
        return len(x & y) / len(x | y) if x | y else 0.0

    theirs, their_sigs = datasketch_clusters(docs, args, bands, rows)
    results = {"synthcap NearDedup (Beam)": synthcap_clusters(docs, args, bands, rows),
               "datasketch MinHashLSH": theirs}
    candidates = {tuple(sorted(p[:2])) for p in planted}
    for assign in results.values():
        candidates |= pairs_of(assign)
    truth_j = {p: jac(*p) for p in candidates}
    positives = {p for p, j in truth_j.items() if j >= args.threshold}
    high = {p for p in positives if truth_j[p] >= args.threshold + 0.1}
    parent: dict[str, str] = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in sorted(positives):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    truth = {k: find(k) for k in parent}
    items = sorted(docs)
    print(f"documents: {len(docs):,} ({len(texts):,} human + {len(planted):,} variants); threshold "
          f"{args.threshold}, num_perm {args.num_perm}, bands x rows {bands} x {rows}; true pairs "
          f"{len(positives):,} (J >= {args.threshold + 0.1:.1f}: {len(high):,})\n")
    print("| system | pairs in clusters | precision | recall | recall (J >= t+0.1) | F1 | cluster ARI | "
          "drop precision |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, assign in results.items():
        pred = pairs_of(assign)
        tp = len(pred & positives)
        precision = tp / len(pred) if pred else 1.0
        recall = tp / len(positives) if positives else 1.0
        recall_hi = len(pred & high) / len(high) if high else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        drops = [jac(k, root) >= args.threshold for k, root in assign.items()]
        print(f"| {name} | {len(pred):,} | {precision:.4f} | {recall:.4f} | {recall_hi:.4f} | {f1:.4f} | "
              f"{ari(truth, assign, items):.4f} | {sum(drops) / max(1, len(drops)):.4f} |")
    hasher = MinHasher(5, args.num_perm, args.seed)
    err_ours, err_theirs = [], []
    for a, b, _ in planted:
        truth_ab = truth_j[tuple(sorted((a, b)))]
        err_ours.append(abs(jaccard_estimate(hasher.signature(docs[a]), hasher.signature(docs[b])) - truth_ab))
        err_theirs.append(abs(their_sigs[a].jaccard(their_sigs[b]) - truth_ab))
    print(f"\nJaccard estimate, mean absolute error on the {len(planted):,} planted pairs ({args.num_perm} "
          f"permutations): synthcap {sum(err_ours) / len(err_ours):.4f}, datasketch MinHash "
          f"{sum(err_theirs) / len(err_theirs):.4f}")
    by_kind = defaultdict(list)
    for a, b, kind in planted:
        by_kind[kind].append(truth_j[tuple(sorted((a, b)))])
    print("\nplanted edits, mean true Jaccard: " + ", ".join(
        f"{k} {sum(v) / len(v):.2f}" for k, v in sorted(by_kind.items())))


if __name__ == "__main__":
    main()

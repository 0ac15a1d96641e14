"""Near-dedup quality: synthcap beside datasketch's MinHashLSH on two labelled sets.

    python benchmarks/dedup_quality.py [--sources 6000] [--threshold 0.8]

1. Planted: every distinct human text of 50+ words in ../shared/data/detect (about 22.7k), plus one variant of
   each of `--sources` of them at a known edit: word substitutions (2/5/10/20%), insertions, deletions,
   boilerplate added, paragraphs (or sentences) reordered. Truth: exact Jaccard on the same word 5-gram shingles
   for every planted pair and every pair either system reports; true clusters are the components of pairs at
   J >= threshold.
2. Licenses (public, human-labelled, rebuilt from what is installed here): the license file of every Python
   distribution installed beside synthcap that ships exactly one, labelled with the license its authors declare
   in the package metadata (License-Expression, else the trove classifier; ambiguous "BSD License" and compound
   expressions are left out). True clusters: same declared license. The label is broader than "J >= threshold"
   (two MIT licenses with long, different copyright blocks are the same license and not near-duplicates), so
   recall here is bounded by the data, for both systems alike.

synthcap runs its real Beam transform (NearDedup: recall-first banding, exact verification) on the in-process
runner; datasketch runs MinHashLSH with the bands x rows it picks for the threshold and keeps a pair when the
MinHash estimate reaches the threshold (its documented usage). Pair metrics count every pair inside a predicted
cluster (transitive chains included) against the pairs of the true clusters; a further column gives the share of
in-cluster pairs that are themselves at J >= threshold. "Wrong drops" are dropped documents whose best true
Jaccard with any other member of their predicted cluster is below the threshold.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
import re
import sys
import sysconfig
import tempfile
from collections import Counter, defaultdict
from math import comb
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from datasketch import MinHash, MinHashLSH

from pipeline.runner import make_pipeline
from transforms.accounting import DROPPED
from datasketch.lsh import _optimal_param

from transforms.dedup.lsh import recall_first_params
from transforms.dedup.minhash import MinHasher, jaccard, jaccard_estimate, shingle_set
from transforms.dedup.near import NearDedup
from transforms.document import Document
from transforms.io.write import WriteJsonRecords

SHARED = Path(os.environ.get("SYNTHCAP_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DETECT = SHARED / "data" / "detect"
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
            found[r["id"]] = json.loads(r["detail"])["survivor_id"]
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


SPDX = {"Apache Software License": "Apache-2.0", "MIT License": "MIT", "ISC License (ISCL)": "ISC",
        "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0", "Python Software Foundation License": "PSF-2.0"}


def license_corpus() -> tuple[dict[str, str], dict[str, str]]:
    """(doc id -> license text, doc id -> declared license) from the installed distributions' metadata."""
    site = Path(sysconfig.get_paths()["purelib"])
    docs, labels = {}, {}
    for info in sorted(site.glob("*.dist-info")):
        meta = (info / "METADATA").read_text(errors="replace") if (info / "METADATA").exists() else ""
        expr = re.search(r"^License-Expression: *(\S+) *$", meta, re.M)
        classifiers = re.findall(r"^Classifier: License :: OSI Approved :: (.+?) *$", meta, re.M)
        label = expr.group(1) if expr else SPDX.get(classifiers[0]) if len(set(classifiers)) == 1 else None
        files = [f for d in (info, info / "licenses") for f in sorted(d.glob("*"))
                 if f.is_file() and re.match(r"(licen[cs]e|copying)", f.name, re.I)]
        if label and len(files) == 1:
            text = files[0].read_text(errors="replace")
            if len(text.split()) >= 20:
                docs[info.name] = text
                labels[info.name] = label
    return docs, labels


def planted_corpus(args) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    rng = random.Random(args.seed)
    texts = human_texts()
    docs = {f"h{i:06d}": t for i, t in enumerate(texts)}
    planted = []
    for j, i in enumerate(rng.sample(range(len(texts)), args.sources)):
        kind = KINDS[j % len(KINDS)]
        vid = f"v{j:06d}"
        docs[vid] = edit(texts[i], kind, rng)
        planted.append((f"h{i:06d}", vid, kind))
    return docs, planted


def union(pairs) -> dict[str, str]:
    parent: dict[str, str] = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in sorted(pairs):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {k: find(k) for k in parent if find(k) != k}


def table(name, results, truth, docs, jac, threshold, high=None):
    """Pair metrics against the true clusters' pairs (a cluster is a connected component on both sides), plus the
    share of in-cluster pairs that are themselves at J >= threshold (the rest are joined through a chain)."""
    items = sorted(docs)
    positives = pairs_of(truth)
    print(f"| {name}: system | pairs in clusters | pair precision | pair recall | "
          f"{'recall, pairs at J >= t+0.05 | ' if high is not None else ''}F1 | cluster ARI | "
          "in-cluster pairs at J >= t | wrong drops |")
    print("|---|---:|---:|---:|" + ("---:|" if high is not None else "") + "---:|---:|---:|---:|")
    for system, assign in results.items():
        pred = pairs_of(assign)
        tp = len(pred & positives)
        precision = tp / len(pred) if pred else 1.0
        recall = tp / len(positives) if positives else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        direct = sum(jac(*p) >= threshold for p in pred) / len(pred) if pred else 1.0
        members = defaultdict(set)
        for k, root in assign.items():
            members[root].update((k, root))
        wrong = sum(max(jac(k, o) for o in members[root] if o != k) < threshold for k, root in assign.items())
        hi = ""
        if high is not None:
            hi = f"{len(pred & high) / len(high) if high else 1.0:.4f} ({len(high - pred)} missed) | "
        print(f"| {system} | {len(pred):,} | {precision:.4f} | {recall:.4f} | {hi}{f1:.4f} | "
              f"{ari(truth, assign, items):.4f} | {direct:.4f} | {wrong} of {len(assign):,} |")


PUBLISHED = ("text-dedup's published MinHash figures, on their own sets (not rerun here: the sets are not "
             "obtainable offline): pinecone CORE precision 0.959, recall 0.942; NEWS-COPY ARI 0.729.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=6000)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num_perm", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not DETECT.exists():
        sys.exit(f"needs {DETECT}")
    bands, rows = recall_first_params(args.threshold, args.num_perm)
    their_bands, their_rows = _optimal_param(args.threshold, args.num_perm, 0.5, 0.5)
    ours_name = f"synthcap NearDedup, {bands} x {rows}, exact verification (Beam)"
    theirs_name = f"datasketch MinHashLSH, {their_bands} x {their_rows}, estimate >= t"

    for label in ("planted", "licenses"):
        if label == "planted":
            (docs, planted), labels = planted_corpus(args), None
        else:
            (docs, labels), planted = license_corpus(), []
        shingles: dict[str, set] = {}

        def jac(a, b):
            for k in (a, b):
                if k not in shingles:
                    shingles[k] = shingle_set(docs[k], 5)
            return jaccard(shingles[a], shingles[b])

        theirs, their_sigs = datasketch_clusters(docs, args, their_bands, their_rows)
        results = {ours_name: synthcap_clusters(docs, args, bands, rows), theirs_name: theirs}
        if labels is None:
            candidates = {tuple(sorted(p[:2])) for p in planted}
            for assign in results.values():
                candidates |= pairs_of(assign)
            truth_j = {p: jac(*p) for p in candidates}
            positives = {p for p, j in truth_j.items() if j >= args.threshold}
            high = {p for p in positives if truth_j[p] >= args.threshold + 0.05}
            truth = union(positives)
            print(f"\n{label}: {len(docs):,} documents ({len(docs) - len(planted):,} human + {len(planted):,} "
                  f"variants); threshold {args.threshold}, num_perm {args.num_perm}; pairs at J >= t "
                  f"{len(positives):,} (in true clusters {len(pairs_of(truth)):,}; "
                  f"at J >= {args.threshold + 0.05:.2f}: {len(high):,})\n")
            table(label, results, truth, docs, jac, args.threshold, high)
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
            print("planted edits, mean true Jaccard: " + ", ".join(
                f"{k} {sum(v) / len(v):.2f}" for k, v in sorted(by_kind.items())))
        else:
            by_label = defaultdict(list)
            for k in sorted(docs):
                by_label[labels[k]].append(k)
            truth = {k: ks[0] for ks in by_label.values() for k in ks if k != ks[0]}
            print(f"\n{label}: {len(docs):,} license files, {len(by_label)} declared licenses "
                  f"({', '.join(f'{lab} {len(ks)}' for lab, ks in sorted(by_label.items()))}); true pairs "
                  f"{len(pairs_of(truth)):,}\n")
            table(label, results, truth, docs, jac, args.threshold)
            print(f"\n{PUBLISHED}")


if __name__ == "__main__":
    main()

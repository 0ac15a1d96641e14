"""Dedup speed, one core, with same-run baselines.

    python benchmarks/dedup_speed.py [--docs 30000] [--datatrove-python PATH] [--baseline-repo PATH]

1. MinHash signatures/s: synthcap's kernel against datasketch's per-document path (MinHash.update_batch over the
   same word 5-gram shingles), 128 permutations, ~2,000-character documents.
2. End to end on the DirectRunner: `synthcap curate` (read JSONL, exact + near dedup, write Parquet) as a
   subprocess; wall time, docs/s and peak RSS. Beside it, as the peer anchor, datatrove's 4-stage MinHash pipeline
   (signature, buckets, cluster, filter; local executor, 1 task) on the same JSONL with the same n-gram, bands and
   rows. datatrove is in the `peers` extra and runs in this interpreter when installed; --datatrove-python runs
   it from another virtualenv instead (e.g. `python3.11 -m venv /tmp/dt && /tmp/dt/bin/pip install
   'datatrove[processing]~=0.10.1' spacy orjson regex`). `--baseline-repo` times another synthcap checkout (e.g.
   the commit before a change) on the same data, to show what the change costs or saves end to end. The load
   average is printed before and after: ratios are same-run, absolute figures depend on the host.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from datasketch import MinHash

from transforms.dedup.lsh import recall_first_params
from transforms.dedup.minhash import MinHasher, shingle_set

ROOT = Path(__file__).resolve().parents[1]
DETECT = Path(os.environ.get("SYNTHCAP_SHARED", ROOT.parent / "shared")) / "data" / "detect"


def corpus(n: int) -> list[str]:
    texts = []
    if DETECT.exists():
        for f in sorted(DETECT.glob("*.jsonl.gz")):
            texts += [json.loads(line)["text"] for line in gzip.open(f, "rt")]
    else:
        from pipeline.sample import human_paragraphs

        texts = human_paragraphs()
    joined = " ".join(texts)
    starts = [(i * 1999) % (len(joined) - 2000) for i in range(n)]
    return [joined[s : s + 2000] for s in starts]


def run_measured(cmd: list[str], env=None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, the child and the children it waited for) and peak RSS (MiB).
    On a shared host the CPU seconds are the steadier figure: wall time also counts waiting for a core."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    before = os.times()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    after = os.times()
    if status != 0:
        sys.exit(f"{cmd[:3]} failed: {proc.stderr.read().decode()[-2000:]}")
    children = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, children, usage.ru_maxrss / 1024


ROUNDS = 5

DATATROVE = textwrap.dedent("""
    import sys
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    src, work, bands, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cfg = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows, seed=1,
                        hash_config=HashConfig(precision=64, hash_fc="sha1"))
    run = lambda steps, name, tasks=1: LocalPipelineExecutor(steps, tasks=tasks, workers=1, start_method="fork",
                                                             logging_dir=f"{work}/logs/{name}").run()
    run([JsonlReader(src), MinhashDedupSignature(output_folder=f"{work}/sigs", config=cfg)], "sig")
    run([MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=cfg)], "buckets",
        bands)  # one task per band, as datatrove requires; still one worker
    run([MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/ids", config=cfg)], "cluster")
    run([JsonlReader(src), MinhashDedupFilter(input_folder=f"{work}/ids"), JsonlWriter(f"{work}/out")], "filter")
""")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=30_000)
    ap.add_argument("--datatrove-python")
    ap.add_argument("--baseline-repo", help="another synthcap checkout to time on the same data")
    args = ap.parse_args()
    if not args.datatrove_python and importlib.util.find_spec("datatrove"):
        args.datatrove_python = sys.executable
    docs = corpus(args.docs)
    print("load average (1, 5, 15 min) at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + "\n")

    hasher = MinHasher(5, 128, 1)
    hasher.signature("warm up the compiled kernel")
    sample = docs[: max(1, len(docs) // 10)]
    ours_runs, theirs_runs = [], []
    for _ in range(ROUNDS):  # interleaved rounds, medians: a shared machine's noise hits both sides alike
        t = time.perf_counter()
        for d in docs:
            hasher.signature(d)
        ours_runs.append(len(docs) / (time.perf_counter() - t))
        t = time.perf_counter()
        for d in sample:
            m = MinHash(num_perm=128, seed=1)
            m.update_batch([" ".join(s).encode() for s in shingle_set(d, 5)])
        theirs_runs.append(len(sample) / (time.perf_counter() - t))
    ours, theirs = statistics.median(ours_runs), statistics.median(theirs_runs)
    print(f"| MinHash signatures, 128 perms, 2,000-char docs, 1 core, median of {ROUNDS} rounds | docs/s | ratio |")
    print("|---|---:|---:|")
    print(f"| datasketch MinHash.update_batch (baseline) | {theirs:,.0f} | 1.00 |")
    print(f"| synthcap MinHasher (numba kernel) | {ours:,.0f} | {ours / theirs:.1f} |\n")

    tmp = Path(tempfile.mkdtemp())
    src = tmp / "in"
    src.mkdir()
    with open(src / "docs.jsonl", "w") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": f"d{i:07d}", "text": d}) + "\n")
        for i, d in enumerate(docs[: len(docs) // 10]):  # exact and near copies to remove
            f.write(json.dumps({"id": f"x{i:07d}", "text": d if i % 2 else d + " (copy)"}) + "\n")
    total = len(docs) + len(docs) // 10
    bands, rows = recall_first_params(0.8, 128)
    rows_out = []

    def curate(repo: Path, out: str):
        env = {**os.environ, "PYTHONPATH": str(repo)}
        return run_measured([sys.executable, "-m", "pipeline.cli", "curate", "--input", str(src / "docs.jsonl"),
                             "--output", str(tmp / out), "--direct_num_workers=1", "--no_score"], env=env)

    rows_out.append((f"synthcap curate (read, provenance, exact + near dedup {bands} x {rows} with exact "
                     "verification, write), DirectRunner", *curate(ROOT, "synthcap")))
    if args.baseline_repo:
        rows_out.append((f"synthcap curate at {args.baseline_repo} (same data)",
                         *curate(Path(args.baseline_repo).resolve(), "baseline")))
    if args.datatrove_python:
        rows_out.append(("datatrove MinHash, 4 stages, local executor",
                         *run_measured([args.datatrove_python, "-c", DATATROVE, str(src), str(tmp / "dt"),
                                        str(bands), str(rows)])))
    print(f"| end to end on {total:,} documents, 1 core, bands x rows {bands} x {rows} | seconds | CPU seconds | "
          "docs/s | peak RSS MiB | docs/s ratio | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    _, base_wall, base_cpu, _ = rows_out[-1]
    for name, wall, cpu, rss in rows_out:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {total / wall:,.0f} | {rss:,.0f} | {base_wall / wall:.2f} | "
              f"{base_cpu / cpu:.2f} |")
    if not args.datatrove_python:
        print("\n(datatrove not run: pass --datatrove-python)")
    print("\nload average (1, 5, 15 min) at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()

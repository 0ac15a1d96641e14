"""What the atomic commit costs: `CommitOutputs` (move each staged file into place, hash it where it lies, write
COMPLETE.json last) against a same-run baseline pipeline that only reads every staged file once.

    python benchmarks/commit.py [--files 16] [--mib 8] [--repeats 3]

Both run on the in-process FnApiRunner over the same freshly staged files (re-staged before every run); the
table gives MiB/s and the commit's time as a ratio of the baseline's.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.runner import make_pipeline
from transforms.io.commit import CommitOutputs, claim_output, staging_dir
from apache_beam.options.pipeline_options import PipelineOptions


def _stage(staging: str, files: int, size: int) -> list[str]:
    os.makedirs(os.path.join(staging, "documents"), exist_ok=True)
    paths = []
    for i in range(files):
        path = os.path.join(staging, "documents", f"documents-{i:05d}-of-{files:05d}.parquet")
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        paths.append(path)
    return paths


def _read_all(path: str) -> int:
    with FileSystems.open(path) as f:
        return sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))


def _timed(build) -> float:
    p = make_pipeline(PipelineOptions([]))
    build(p)
    start = time.perf_counter()
    p.run().wait_until_finish()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--mib", type=int, default=8, help="MiB per file")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    size = args.mib << 20
    total = args.files * size / (1 << 20)
    root = tempfile.mkdtemp(prefix="synthcap-commit-bench-")
    best = {"baseline: read every file once": float("inf"),
            "CommitOutputs: move + sha256 + COMPLETE.json": float("inf")}
    try:
        for _ in range(args.repeats):
            out = os.path.join(root, "out")
            shutil.rmtree(out, ignore_errors=True)
            claim_output(out, "bench", "run-bench", "bench", False, ("documents",))
            staging = staging_dir(out, "bench")
            paths = _stage(staging, args.files, size)
            t = _timed(lambda p: p | beam.Create(paths) | beam.Reshuffle() | beam.Map(_read_all)
                       | beam.CombineGlobally(sum))
            best["baseline: read every file once"] = min(best["baseline: read every file once"], t)
            t = _timed(lambda p: p | beam.Create(paths) | CommitOutputs(out, staging, "bench"))
            best["CommitOutputs: move + sha256 + COMPLETE.json"] = min(
                best["CommitOutputs: move + sha256 + COMPLETE.json"], t)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = best["baseline: read every file once"]
    print(f"{args.files} files x {args.mib} MiB = {total:.0f} MiB, best of {args.repeats}\n")
    print("| pipeline | seconds | MiB/s | vs baseline |\n|---|---|---|---|")
    for name, t in best.items():
        print(f"| {name} | {t:.2f} | {total / t:.0f} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()

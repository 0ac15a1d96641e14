"""A mix of many documents on the DirectRunner: docs/s and peak memory.

    python benchmarks/mix.py [--docs 1000000]

Two generated curated folders (an anchor of 10% and a web source, p_ai and ai_pvalue spread over [0, 1], with a
summary.json carrying `ai_share` estimates) of short documents as Parquet; `synthcap mix` runs as a subprocess
under the default certified rule, a 1/10 ceiling and a document target of half the supply. The baseline measured
in the same run is reading the same Parquet into Documents and counting them (the floor any mixer pays on this
runner).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from transforms.document import SCHEMA


def write_source(root: Path, n: int, prefix: str, p_of, share: float) -> None:
    path = root / "documents"
    path.mkdir(parents=True)
    step = 100_000
    for part in range(0, n, step):
        ids = [f"{prefix}{i:08d}" for i in range(part, min(n, part + step))]
        table = pa.table({
            "id": ids, "text": [f"document {i} " + "word " * (20 + int(i[-3:]) % 60) for i in ids],
            "source": [f"{prefix}.parquet"] * len(ids), "offset": list(range(part, part + len(ids))),
            **{name: [None] * len(ids) for name in SCHEMA.names if name not in (
                "id", "text", "source", "offset", "p_ai", "ai_score", "ai_pvalue", "ai_reference", "metadata")},
            "p_ai": [p_of(int(i[-8:])) for i in ids], "ai_score": [p_of(int(i[-8:])) for i in ids],
            "ai_pvalue": [1 - p_of(int(i[-8:])) * 0.999 for i in ids], "ai_reference": ["global"] * len(ids),
            "metadata": [[] for _ in ids],
        }, schema=SCHEMA)
        pq.write_table(table, path / f"part-{part // step:04d}.parquet")
    est = {"estimate": share, "ci95": [share - 0.01, share + 0.01], "documents": n, "tokens": 0, "method": "synthetic",
           "reference": {"group": "global", "documents": 2000}}
    (root / "summary.json").write_text(json.dumps({"ai_share": {"by_reference": {"global": est}, "by_crawl": {}}}))


def measured(cmd) -> tuple[float, float]:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        sys.exit(proc.stderr.read().decode()[-3000:])
    return time.perf_counter() - t, usage.ru_maxrss / 1024


BASELINE = """
import sys, apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pipeline.runner import make_pipeline
from transforms.io.read import ReadCrawl
with make_pipeline(PipelineOptions(["--direct_num_workers=1"])) as p:
    (p | ReadCrawl([sys.argv[1], sys.argv[2]]))["documents"] | beam.combiners.Count.Globally()
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:  # 121 MB of generated inputs and outputs at 1M documents
        run(Path(folder), args)


def run(tmp: Path, args) -> None:
    n_anchor = args.docs // 10
    write_source(tmp / "anchor", n_anchor, "a", lambda i: 0.02, 0.02)
    write_source(tmp / "web", args.docs - n_anchor, "w", lambda i: (i * 7919 % 1000) / 1000, 0.3)
    config = {"seed": 1, "target_documents": args.docs // 2, "max_synthetic_fraction": "1/10",
              "sources": [{"name": "anchor", "curated": [str(tmp / "anchor")], "anchor": True},
                          {"name": "web", "curated": [str(tmp / "web")], "weight": 1}]}
    (tmp / "mix.yaml").write_text(yaml.safe_dump(config))
    base_t, base_rss = measured([sys.executable, "-c", BASELINE, str(tmp / "anchor" / "documents" / "*.parquet"),
                                 str(tmp / "web" / "documents" / "*.parquet")])
    mix_t, mix_rss = measured([sys.executable, "-m", "pipeline.cli", "mix", "--config", str(tmp / "mix.yaml"),
                               "--output", str(tmp / "out"), "--direct_num_workers=1"])
    print(f"{args.docs:,} documents, DirectRunner, one worker\n")
    print("| run | seconds | docs/s | peak RSS MiB | docs/s ratio |\n|---|---:|---:|---:|---:|")
    print(f"| read + count (baseline) | {base_t:.1f} | {args.docs / base_t:,.0f} | {base_rss:,.0f} | 1.00 |")
    print(f"| synthcap mix, certified (classify, plan, select, write Parquet + Dolma, manifest, report) | "
          f"{mix_t:.1f} | "
          f"{args.docs / mix_t:,.0f} | {mix_rss:,.0f} | {base_t / mix_t:.2f} |")


if __name__ == "__main__":
    main()

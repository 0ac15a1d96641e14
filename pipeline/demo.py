"""`synthcap demo`: the embedded default — build the sample crawl, curate it on the DirectRunner, say where."""
from __future__ import annotations

import os

from pipeline import curate, sample


def run(output: str) -> None:
    crawl = os.path.join(output, "sample_crawl")
    sample.write_sample(crawl)
    curated = os.path.join(output, "curated")
    summary, _ = curate.run(["--input", os.path.join(crawl, "*.warc.gz"), os.path.join(crawl, "*.wet.gz"),
                          "--output", curated, "--overwrite"])
    print(f"sample crawl:  {crawl}")
    print(f"curated:       {curated}/documents/*.parquet ({summary['documents_out']} documents)")
    print(f"summary:       {curated}/summary.json (read {summary['records_read']}, "
          f"dropped {sum(summary['dropped'].values())}, dead letters {sum(summary['dead_letters'].values())})")
    print(f"provenance:    {curated}/provenance/*.parquet  (synthcap inspect DOC_ID --output {curated})")
    for crawl, est in sorted(summary.get("synthetic_estimate", {}).items()):
        m, a = est["mixture"], est["acc"]
        print(f"AI share {crawl}: mixture {m['estimate']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}], "
              f"adjusted count {a['estimate']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] "
              f"({est['documents']} documents)")

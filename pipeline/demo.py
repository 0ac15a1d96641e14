"""`synthcap demo`: the embedded default — build the sample crawl, curate each snapshot on the DirectRunner, mix
them under a synthetic ceiling, refresh an index with the older crawl then the newer, and say where it all is."""
from __future__ import annotations

import os
import shutil

import yaml

from pipeline import curate, mix, refresh, sample
from pipeline.options import UserError
from transforms.refresh.index import IndexPathError, check_index_path

MIX = {
    "seed": 7,
    "target_tokens": 120_000,
    "max_synthetic_fraction": "1/10",
    "unestimable": "drop",
    "exclude": {"opt_out": True, "min_tokens": 20},
}


def run(output: str) -> None:
    index = os.path.join(output, "index")
    try:
        check_index_path(index, "")
    except IndexPathError:  # the demo replaces OUT/index (it deleted whatever was there)
        raise UserError(f"{index} exists and is not the refresh index of an earlier demo, which the demo replaces: "
                        f"give another --output") from None
    crawl = os.path.join(output, "sample_crawl")
    sample.write_sample(crawl)
    sources = []
    for crawl_id, _ in sample.SNAPSHOTS:
        curated = os.path.join(output, "curated", crawl_id)
        # the older snapshot (captured before ChatGPT) is the newer one's human reference
        reference = ["--human_reference", os.path.join(sources[0], "documents", "*.parquet")] if sources else []
        summary, _ = curate.run(["--input", os.path.join(crawl, f"{crawl_id}-*.gz"), "--output", curated,
                                 "--overwrite", *reference])
        print(f"curated {crawl_id}: {curated}/documents/*.parquet ({summary['documents_out']} of "
              f"{summary['records_read']} records; dropped {sum(summary['dropped'].values())}, dead letters "
              f"{sum(summary['dead_letters'].values())}; summary {curated}/summary.json)")
        for key, s in sorted(summary.get("ai_share", {}).get("by_crawl", {}).items()):
            if s["estimate"] is None:
                print(f"  AI share of tokens ({key}): not estimable ({s['reason']})")
            else:
                print(f"  AI share of tokens ({key}): {s['estimate']:.3f}, 95% interval [{s['ci95'][0]:.3f}, "
                      f"{s['ci95'][1]:.3f}] against {s['reference']['documents']} human reference documents")
        sources.append(curated)
    config = dict(MIX, sources=[
        {"name": "human-anchor-2022", "curated": [sources[0]], "anchor": True},
        {"name": "web-2024", "curated": [sources[1]], "weight": 1, "max_repeats": 2},
    ])
    config_path = os.path.join(output, "mix.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    mixed = os.path.join(output, "mix")
    m = mix.run(["--config", config_path, "--output", mixed, "--overwrite"])
    r = m["output"]
    print(f"mix:           {mixed}/train/*.parquet and *.jsonl.gz ({r['documents']} documents, {r['tokens']} "
          f"tokens; shortfall {sum(s['shortfall'] for s in m['sources'])} tokens)")
    print(f"verdict:       {m['verdict']['line']}")
    print(f"manifest:      {mixed}/manifest.json")
    print(f"report:        {mixed}/report.html")
    print(f"provenance:    synthcap inspect DOC_ID --output {sources[1]}")
    if os.path.exists(index):
        shutil.rmtree(index)
    for crawl_id, _ in sample.SNAPSHOTS:
        r = refresh.run(["--input", os.path.join(crawl, f"{crawl_id}-*.gz"), "--index", index,
                         "--output", os.path.join(output, "refreshed", crawl_id), "--overwrite"])
        print(f"refresh {crawl_id}: {r['new_documents']} new, "
              f"{r['summary']['dropped'].get('duplicate_indexed', 0)} already indexed "
              f"(listed in {output}/refreshed/{crawl_id}/duplicates/); index {index} at generation {r['generation']}")

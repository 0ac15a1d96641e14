"""`synthcap inspect DOC_ID --output OUT`: one document's full provenance, readably."""
from __future__ import annotations

import io

import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.options import UserError
from transforms.io.commit import CommittedFileChanged, IncompleteOutputError, read_committed, require_complete

_SECTIONS = (
    ("Lineage", ("source", "offset", "warc_record_id", "refers_to", "url", "registered_domain", "crawl_id",
                 "capture_date", "pre_llm", "content_digest")),
    ("Deduplication", ("dup_cluster_id", "dup_cluster_size", "first_seen", "last_seen")),
    ("AI likelihood", ("ai_score", "ai_pvalue", "ai_reference", "p_ai", "ai_model")),
    ("Declared by the page", ("html_observable", "tdm_reservation", "tdm_reservation_header",
                              "tdm_reservation_meta", "tdm_policy", "robots_noai", "robots_noimageai",
                              "digital_source_type", "declared_ai", "c2pa_manifest", "c2pa_text_wrapper",
                              "generator", "invisible_chars", "invisible_total")),
    ("Run", ("synthcap_version", "run_id", "config_hash")),
)


def find(doc_id: str, output: str) -> list[dict]:
    """Every document with this id, by (source, offset): ids are the user's and may collide across files."""
    try:
        record = require_complete(output)
    except IncompleteOutputError as e:
        raise UserError(str(e)) from None
    pattern = FileSystems.join(output, "provenance", "*.parquet")
    try:
        files = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception:
        files = []
    if not files:
        raise UserError(f"no provenance under {output} (expected {pattern})")
    root = output.rstrip("/")
    rows = []
    for path in sorted(files):
        try:  # each file read whole anyway: its sha256 is checked against the completion record on the way
            table = pq.read_table(io.BytesIO(read_committed(root, path[len(root) + 1:], record)))
        except CommittedFileChanged as e:
            raise UserError(str(e)) from None
        rows += table.filter(pc.equal(table["id"], doc_id)).to_pylist()
    return sorted(rows, key=lambda r: (r["source"], r["offset"]))


def render(row: dict) -> str:
    lines = [f"document {row['id']}"]
    for title, names in _SECTIONS:
        lines.append(f"\n{title}")
        for name in names:
            value = row.get(name)
            if name == "invisible_chars":
                value = ", ".join(f"{k}×{n}" for k, n in (value or [])) or "none"
            if value is None and title == "Declared by the page":
                shown = "— (unset)" if row.get("html_observable") else "— (not observable: no headers or HTML)"
            else:
                shown = "—" if value is None else value
            lines.append(f"  {name:<24} {shown}")
    return "\n".join(lines)


def run(doc_id: str, output: str) -> None:
    """The CLI's parsed DOC_ID and --output (in any form argparse takes: `--output=OUT` too)."""
    rows = find(doc_id, output)
    if not rows:
        raise UserError(f"document {doc_id} is not in {output}")
    if len(rows) > 1:
        print(f"{len(rows)} documents have the id {doc_id} (ids may repeat across input files); each follows\n")
    print("\n\n".join(render(row) for row in rows))

"""Arrow schema of the provenance sidecar: lineage, run identity and the document's `Provenance` fields."""
from __future__ import annotations

import pyarrow as pa

from transforms.document import PROVENANCE

LINEAGE = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string()),
    pa.field("offset", pa.int64()),
    pa.field("warc_record_id", pa.string()),
    pa.field("refers_to", pa.string()),
    pa.field("url", pa.string()),
    pa.field("crawl_id", pa.string()),
    pa.field("capture_date", pa.string()),
    pa.field("content_digest", pa.string()),
    pa.field("dup_cluster_id", pa.string()),
    pa.field("dup_cluster_size", pa.int64()),
    pa.field("first_seen", pa.string()),
    pa.field("last_seen", pa.string()),
    pa.field("ai_score", pa.float64()),
    pa.field("ai_pvalue", pa.float64()),
    pa.field("ai_reference", pa.string()),
    pa.field("p_ai", pa.float64()),
    pa.field("ai_model", pa.string()),
    pa.field("synthcap_version", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("config_hash", pa.string()),
    *[PROVENANCE.field(i) for i in range(PROVENANCE.num_fields)],
])

"""Arrow types of the provenance a document carries (`Document.provenance`) and of the sidecar lineage table."""
from __future__ import annotations

import pyarrow as pa

SIGNALS = pa.struct([
    pa.field("registered_domain", pa.string()),
    pa.field("pre_llm", pa.bool_()),
    pa.field("html_observable", pa.bool_()),
    pa.field("tdm_reservation", pa.int8()),
    pa.field("tdm_reservation_header", pa.int8()),
    pa.field("tdm_reservation_meta", pa.int8()),
    pa.field("tdm_policy", pa.string()),
    pa.field("robots_noai", pa.bool_()),
    pa.field("robots_noimageai", pa.bool_()),
    pa.field("digital_source_type", pa.string()),
    pa.field("declared_ai", pa.bool_()),
    pa.field("c2pa_manifest", pa.bool_()),
    pa.field("c2pa_text_wrapper", pa.bool_()),
    pa.field("generator", pa.string()),
    pa.field("invisible_chars", pa.map_(pa.string(), pa.int32())),
    pa.field("invisible_total", pa.int32()),
])

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
    pa.field("p_ai", pa.float64()),
    pa.field("ai_model", pa.string()),
    pa.field("synthcap_version", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("config_hash", pa.string()),
    *[SIGNALS.field(i) for i in range(SIGNALS.num_fields)],
])

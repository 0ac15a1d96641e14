import json

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.document import (SCHEMA, Document, dolma_line, fallback_id, from_dolma, from_record, from_table,
                                 to_table)


def _doc(**kw):
    base = dict(id="urn:uuid:1", text="héllo\nwörld", source="gs://b/x.warc.gz", offset=123, url="https://a.example/x",
                domain="a.example", warc_record_id="urn:uuid:1", refers_to=None, crawl_id="CC-MAIN-2024-10",
                capture_date="2024-02-20T00:00:01Z", language="eng", content_digest="sha1:ABC",
                metadata={"k": "v", "z": "1"})
    base.update(kw)
    return Document(**base)


def test_parquet_round_trip_is_lossless(tmp_path):
    docs = [_doc(), _doc(id="b", url=None, domain=None, metadata={})]
    pq.write_table(to_table(docs), tmp_path / "d.parquet")
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.schema.equals(SCHEMA)
    assert from_table(table) == docs


def test_dolma_round_trip_is_lossless_and_follows_the_convention():
    doc = _doc()
    obj = json.loads(dolma_line(doc))
    assert {"id", "text", "source", "added", "created", "metadata"} <= set(obj)
    assert obj["created"] == doc.capture_date
    assert from_dolma(obj) == doc
    assert from_record(obj, "other.jsonl", 0) == doc  # our own lines read back through the JSONL reader path


def test_foreign_records_keep_their_id_and_extra_fields():
    doc = from_record({"text": "t", "id": 7, "url": "u", "score": 0.5, "tags": ["a"]}, "f.jsonl", 10)
    assert doc.id == "7" and doc.url == "u" and doc.offset == 10
    assert doc.metadata == {"score": "0.5", "tags": '["a"]'}
    anon = from_record({"text": "t"}, "f.jsonl", 10)
    assert anon.id == fallback_id("f.jsonl", 10) == from_record({"text": "u"}, "f.jsonl", 10).id


def test_schema_types():
    assert SCHEMA.field("offset").type == pa.int64()
    assert SCHEMA.field("metadata").type == pa.map_(pa.string(), pa.string())

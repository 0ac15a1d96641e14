import json
import math
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.document import (COLUMNS, SCHEMA, Document, DocumentCoder, Provenance, dolma_line, fallback_id,
                                 from_dolma, from_record, from_table, to_table)


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
    # the record's own `source` (Dolma's "c4"), `offset` and stage-field values are its own, kept under their names;
    # the Document's source and offset say where this run read it
    dolma = from_record({"text": "t", "source": "c4", "offset": 3, "p_ai": 0.9}, "f.jsonl", 10)
    assert (dolma.source, dolma.offset, dolma.p_ai) == ("f.jsonl", 10, None)
    assert dolma.metadata == {"source": "c4", "offset": "3", "p_ai": "0.9"}
    anon = from_record({"text": "t"}, "f.jsonl", 10)
    assert anon.id == fallback_id("f.jsonl", 10) == from_record({"text": "u"}, "f.jsonl", 10).id


def test_schema_types():
    assert SCHEMA.field("offset").type == pa.int64()
    assert SCHEMA.field("metadata").type == pa.map_(pa.string(), pa.string())


def _crafted() -> list[Document]:
    """Every field set, every optional field None, unicode off the BMP and lone surrogates, ints past 64 bits."""
    full = _doc(dup_cluster_id="c", dup_cluster_size=(1 << 70) + 1, first_seen="2019-01-01T00:00:00Z",
                provenance=Provenance(registered_domain="a.example", pre_llm=True, html_observable=True,
                                      tdm_reservation=1, tdm_reservation_header=1, tdm_reservation_meta=0,
                                      tdm_policy="https://a.example/p", robots_noai=False, robots_noimageai=True,
                                      digital_source_type="trainedAlgorithmicMedia", declared_ai=True,
                                      c2pa_manifest=False, c2pa_text_wrapper=False, generator="Gen 1.0",
                                      invisible_chars={"U+200B": 3, "U+FEFF": 1}, invisible_total=4),
                ai_score=0.1 + 0.2, ai_pvalue=5e-324, ai_reference="crawl:CC", p_ai=-0.0, ai_model="m@1",
                text="𝔘𝔫𝔦 \u200b\ufeff 中文 \ud800 end", metadata={"ζ": "\U0001F600", "a": ""})
    bare = Document("", "", "", 0)
    partial = Document("p", "t", "s", -(1 << 80), provenance={"pre_llm": None, "invisible_chars": {}},
                       ai_score=float("inf"))
    return [full, bare, partial]


def test_coder_round_trips_crafted_documents():
    coder = DocumentCoder()
    for doc in _crafted():
        back = coder.decode(coder.encode(doc))
        assert back == doc and type(back.provenance) is type(doc.provenance)
        assert [type(getattr(back, f)) for f in COLUMNS] == [type(getattr(doc, f)) for f in COLUMNS]
    nan = coder.decode(coder.encode(Document("n", "t", "s", 0, p_ai=float("nan"))))
    assert math.isnan(nan.p_ai)


def test_coder_is_deterministic_and_smaller_than_pickle():
    coder = DocumentCoder()
    a = _crafted()[0]
    b = Document(**{**{f: getattr(a, f) for f in COLUMNS}, "metadata": dict(reversed(list(a.metadata.items())))})
    assert coder.is_deterministic() and coder.encode(a) == coder.encode(b)  # metadata order does not matter
    assert len(coder.encode(a)) < len(pickle.dumps(a, protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(ValueError, match="format byte"):
        coder.decode(b"\x09" + coder.encode(a)[1:])


def test_numpy_scores_encode_as_python_numbers():
    doc = Document("x", "t", "s", np.int64(3), ai_score=np.float32(0.25))
    back = DocumentCoder().decode(DocumentCoder().encode(doc))
    assert (back.offset, back.ai_score) == (3, 0.25) and type(back.ai_score) is float


def test_every_pcollection_of_documents_uses_the_coder(tmp_path):
    """The registry gives DocumentCoder for Document, and the public transforms declare Document element types,
    so their shuffles (exact dedup's group, the writers' shard groups) encode documents with it."""
    import apache_beam as beam
    from apache_beam.coders import typecoders

    from transforms import ExactDedup, NearDedup, ReadCrawl, TagProvenance, WriteDocuments
    from transforms.accounting import DOCUMENTS

    assert isinstance(typecoders.registry.get_coder(Document), DocumentCoder)
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "hello"}) + "\n")
    p = beam.Pipeline()
    read = p | ReadCrawl([str(path)])
    tagged = read[DOCUMENTS] | TagProvenance()
    exact = tagged | ExactDedup()
    near = exact[DOCUMENTS] | NearDedup()
    near[DOCUMENTS] | WriteDocuments(str(tmp_path / "out"))
    docs = [read[DOCUMENTS], tagged, exact[DOCUMENTS], near[DOCUMENTS]]
    assert all(isinstance(typecoders.registry.get_coder(pc.element_type), DocumentCoder) for pc in docs)
    components = p.to_runner_api().components

    def coder_names(coder_id: str) -> list[str]:
        c = components.coders[coder_id]
        own = ["DocumentCoder"] if b"DocumentCoder" in c.spec.payload else [c.spec.urn]
        return own + [n for sub in c.component_coder_ids for n in coder_names(sub)]

    shuffled = {t.unique_name: coder_names(components.pcollections[o].coder_id)
                for t in components.transforms.values() for o in t.outputs.values()
                if t.unique_name.endswith(("ExactDedup/Key", "WriteDocuments/Write/Assign"))}
    exact = next(names for name, names in shuffled.items() if name.endswith("ExactDedup/Key"))
    assert len(shuffled) == 2 and exact[0] == "beam:coder:kv:v1" and exact[-1] == "DocumentCoder", shuffled
    # the writer shuffles each document as DocumentCoder bytes beside its sort key, encoded where it is made
    written = next(names for name, names in shuffled.items() if name.endswith("WriteDocuments/Write/Assign"))
    assert "DocumentCoder" not in written and "beam:coder:pickled_python:v1" not in written, written


def test_provenance_is_typed_and_reads_like_a_mapping():
    doc = Document("a", "t", "s", 0, provenance={"pre_llm": True, "invisible_chars": [("U+200B", 2)]})
    p = doc.provenance
    assert isinstance(p, Provenance) and p.pre_llm is True and p["invisible_chars"] == {"U+200B": 2}
    assert p.get("declared_ai") is None and {**p}["pre_llm"] is True and len(dict(p)) == len(SCHEMA.field(
        "provenance").type)
    with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
        Provenance.of({"colour": "red"})
    with pytest.raises(KeyError):
        p["colour"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_curated_row_with_a_non_finite_score_is_a_schema_error(bad):
    from transforms.document import to_row
    from transforms.io.record import RecordError, to_document

    row = {**to_row(_doc(ai_score=0.5, p_ai=0.5)), "ai_score": bad}
    with pytest.raises(RecordError, match="`ai_score` is .*expected a finite number"):
        to_document(row, "f.parquet", 0, typed=True)
    assert to_document({**row, "ai_score": 0.25}, "f.parquet", 0, typed=True).ai_score == 0.25


def test_writers_order_records_whose_keys_tie_the_same_whatever_their_arrival(tmp_path):
    """Ids repeat across files, and one document can be dropped by two mix sources: the sidecar's rows (sorted by
    id alone) and a drop file's lines whose keys tie were written in the order they arrived, which differs between
    runners and workers. Fed in two orders, every writer writes the same bytes."""
    import apache_beam as beam

    from tests.helpers import tree_bytes
    from transforms.accounting import Dropped
    from transforms.io.write import WriteDocuments, WriteJsonRecords
    from transforms.provenance.lineage import RunInfo, WriteProvenance

    docs = [Document(str(i % 3), f"text {i}", f"file-{i % 2}.jsonl", i, provenance=Provenance()) for i in range(12)]
    drops = [Dropped("d", "over_ceiling", "f.jsonl", 7, detail) for detail in ("web", "both", "anchor")]
    run = RunInfo.from_config({})
    written = []
    for n, order in enumerate((docs, docs[::-1])):
        out = tmp_path / str(n)
        with beam.Pipeline() as p:
            d = p | "Docs" >> beam.Create(order)
            d | WriteProvenance(str(out / "provenance"), run)
            d | WriteDocuments(str(out / "documents"))
            (p | "Drops" >> beam.Create(drops if n == 0 else drops[::-1])
             | WriteJsonRecords(str(out / "dropped"), "dropped", lambda r: f"{r.reason}\x00{r.id}"))
        written.append({part: tree_bytes(out, part) for part in ("provenance", "documents", "dropped")})
    assert written[0] == written[1] and all(written[0].values())
    rows = pq.read_table(next((tmp_path / "0" / "provenance").glob("*.parquet"))).to_pylist()
    assert [(r["id"], r["source"], r["offset"]) for r in rows] == sorted((d.id, d.source, d.offset) for d in docs)

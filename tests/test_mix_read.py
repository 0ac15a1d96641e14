"""The mixer's first read classifies Parquet rows from their columns (`transforms/mix/read.py`); every record must
end where reading it as a Document and classifying that would put it: the same Items, drops, dead letters and
counters, row for row, for the rows the columnar path takes and for those it leaves to the reader."""
from __future__ import annotations

import math
import pickle

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter

from tests.helpers import utf8_unchecked
from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED
from transforms.document import Document, to_table
from transforms.io.files import match_shards
from transforms.io.read import ReadCrawl
from transforms.mix import certify
from transforms.mix.config import parse
from transforms.mix.read import ITEMS, READ, TOTALS, ClassifyDocuments, ReadClassified, totals_fns

LIMIT = 400  # --max_document_bytes: row 5's text is over it
FOLDER = "/curated/web"
USABLE = frozenset({certify.group_key(FOLDER, "global")})


def _doc(i, text=None, **fields) -> Document:
    prov = {"declared_ai": False, "tdm_reservation": None, "robots_noai": False, "registered_domain": "a.example"}
    prov.update(fields.pop("provenance", {}))
    base = dict(id=f"r{i:02d}", text=text if text is not None else f"row {i} " + "word " * (5 + i),
                source="crawl.warc.gz", offset=100 + i, p_ai=(i % 10) / 10, ai_score=0.5, ai_pvalue=(i % 7) / 7,
                ai_reference="global", language="en", domain="a.example", provenance=prov)
    base.update(fields)
    return Document(**base)


def _docs() -> list[Document]:
    """One row per way a record can end, plus plain ones."""
    return [
        _doc(0), _doc(1), _doc(2, p_ai=1.5),  # invalid_score (the mixer's dead letter)
        _doc(3, text="   \n "),  # empty_text
        _doc(4, text="long " * 100),  # too_large
        _doc(5, provenance={"tdm_reservation": 1}),  # excluded_opt_out
        _doc(6, language="de"),  # excluded_filter
        _doc(7, ai_reference="elsewhere"),  # unestimable
        _doc(8, provenance={"declared_ai": True}), _doc(9, provenance={"pre_llm": True}),
        _doc(10, capture_date="someday"), _doc(11, capture_date="2024-03-01T00:00:00Z", first_seen="2024-02-30"),
        _doc(12, metadata={"capture_date_unparsed": "soon", "k": "v"}),
        _doc(13, ai_pvalue=None, capture_date="2024-01-02T00:00:00Z", metadata={"capture_date_unparsed": "x"}),
        _doc(14, p_ai=None), _doc(15, text="naïve café — “quoted” 42_x.", url="u"),
        _doc(16, p_ai=math.nan),  # the reader's schema_error: a non-finite score in a typed row
        _doc(17, ai_score=math.inf),
        _doc(18), _doc(19),
    ]


def _write(tmp_path) -> list[str]:
    table = to_table(_docs())
    prov = table.column("provenance").combine_chunks()
    nulled = pa.StructArray.from_arrays(prov.flatten(), fields=list(prov.type),
                                        mask=pa.array([i == 18 for i in range(table.num_rows)]))
    table = table.set_column(table.schema.get_field_index("provenance"), "provenance", nulled)
    ids = table.column("id").to_pylist()
    ids[19] = None  # a null id: the reader's schema_error
    table = table.set_column(0, pa.field("id", pa.string()), pa.array(ids, pa.string()))
    texts = table.column("text").to_pylist()
    texts[1] = None  # a null text: read as "", an empty_text drop
    table = table.set_column(1, pa.field("text", pa.string()), pa.array(texts, pa.string()))
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=8)
    # invalid UTF-8 in one row's url: that file's row group is read record by record
    bad = to_table([_doc(20), _doc(21, p_ai=1.5), _doc(22)])
    bad = bad.set_column(bad.schema.get_field_index("url"), "url", utf8_unchecked([b"ok", b"ok", b"bad \xff url"]))
    pq.write_table(bad, tmp_path / "part-1.parquet")
    # a foreign table (not the Document schema): every row becomes a Document
    pq.write_table(pa.table({"id": ["f0", "f1", "f2"], "text": ["foreign words here", " ", "more foreign words"],
                             "lang": ["en", "en", "fr"]}), tmp_path / "part-2.parquet")
    return [str(tmp_path / "*.parquet")]


def _run(build, where) -> tuple[dict, dict]:
    """Runs the outputs `build(p)` makes; their elements (pickled to files under `where`) and the counters."""
    p = beam.Pipeline()
    outs = build(p)
    for name, pcoll in outs.items():
        _ = (pcoll | f"List[{name}]" >> beam.combiners.ToList()
             | f"Keep[{name}]" >> beam.Map(lambda v, name=name: (where / name).write_bytes(pickle.dumps(v))))
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter())["counters"]}
    return {name: pickle.loads((where / name).read_bytes()) for name in outs}, counters


def _outcomes(found: dict, cfg) -> dict:
    return {
        "items": sorted(i for batch in found["items"] for i in batch),
        "mix_drops": sorted(r for batch in found["mix_dropped"] for r in batch.records),
        "mix_dead": sorted((d.source, d.offset, d.reason, d.message) for d in found["mix_dead"]),
        "read_drops": sorted((d.id, d.reason, d.source, d.offset, d.detail) for d in found["read_dropped"]),
        "read_dead": sorted((d.source, d.offset, d.reason, d.message) for d in found["read_dead"]),
        "read": sum(found["read"]),
        "offered": _merged_totals(found["totals"], cfg),
    }


def _merged_totals(totals: list, cfg) -> tuple:
    stats, supply = totals_fns(cfg)
    return (stats.merge_accumulators([t[0] for t in totals]),
            supply.extract_output(supply.merge_accumulators([t[1] for t in totals])))


@pytest.mark.parametrize("synthetic", [{"rule": "certified"}, {"rule": "threshold", "threshold": 0.5}])
def test_columnar_first_read_ends_every_record_where_documents_would(tmp_path, synthetic):
    cfg = parse({"seed": 3, "target_tokens": 1000, "max_synthetic_fraction": "0.1", "synthetic": synthetic,
                 "exclude": {"languages": ["de"]},
                 "sources": [{"name": "web", "inputs": ["x/*.parquet"], "weight": 1}]})
    shards = match_shards(_write(tmp_path))

    def columnar(p):
        read, part = p | ReadClassified(shards, cfg, USABLE, "web", FOLDER, max_document_bytes=LIMIT)
        return {"items": part[ITEMS], "mix_dropped": part[DROPPED], "mix_dead": part[DEAD_LETTERS],
                "read_dropped": read[DROPPED], "read_dead": read[DEAD_LETTERS], "read": read[READ],
                "totals": part[TOTALS]}

    def documents(p):
        read = p | ReadCrawl(shards=shards, max_document_bytes=LIMIT)
        part = read[DOCUMENTS] | ClassifyDocuments(cfg, USABLE, "web", FOLDER, True)
        return {"items": part[ITEMS], "mix_dropped": part[DROPPED], "mix_dead": part[DEAD_LETTERS],
                "read_dropped": read[DROPPED], "read_dead": read[DEAD_LETTERS],
                "read": read[DOCUMENTS] | beam.Map(lambda _: 1), "totals": part[TOTALS]}

    (tmp_path / "got").mkdir()
    (tmp_path / "want").mkdir()
    got, got_counters = _run(columnar, tmp_path / "got")
    want, want_counters = _run(documents, tmp_path / "want")
    got, want = _outcomes(got, cfg), _outcomes(want, cfg)
    assert got == want
    assert got_counters == want_counters
    # every way of ending is exercised, on both paths
    assert {r[1] for r in want["mix_drops"]} >= {"excluded_opt_out", "excluded_filter"} | (
        {"unestimable"} if synthetic["rule"] == "certified" else set())
    assert {r[1] for r in want["read_drops"]} == {"empty_text", "too_large"}
    assert [x[2] for x in want["mix_dead"]] == ["invalid_score"] * 2
    assert {x[2] for x in want["read_dead"]} == {"schema_error"} and len(want["read_dead"]) == 4
    assert want_counters["capture_date_unparsed"] == 3  # rows 10, 11, 12; row 13's date is readable
    n = len(_docs()) + 6
    assert want_counters["records_read"] == n
    assert n == want["read"] + len(want["read_drops"]) + len(want["read_dead"])
    assert want["read"] == len(want["items"]) + len(want["mix_drops"]) + len(want["mix_dead"])


def test_the_columnar_path_takes_the_plain_rows_and_leaves_the_others_to_the_reader(tmp_path):
    """Which rows `ReadParquetFn._plain` takes without a Document: in a Document-schema table, all but those with
    a null required field, a non-finite score, an empty or too-large text; none of a table holding a value Python
    cannot take (invalid UTF-8), nor of a foreign table."""
    from transforms.io.parquet import ReadParquetFn, _as_read

    _write(tmp_path)
    fn = ReadParquetFn(LIMIT)

    def plain(name, group):
        table, typed = _as_read(pq.ParquetFile(tmp_path / name).read_row_group(group))
        out = fn._plain(table, typed, ("id", "provenance.declared_ai"))
        return None if out is None else (out[0], out[1][0], out[1][1])

    assert plain("part-0.parquet", 0) == ([0, 2, 5, 6, 7], ["r00", "r02", "r05", "r06", "r07"], [False] * 5)
    assert plain("part-0.parquet", 1)[0] == list(range(8))
    assert plain("part-0.parquet", 1)[2] == [True] + [False] * 7  # row 8 declares AI
    assert plain("part-0.parquet", 2) == ([2], ["r18"], [None])  # row 18 has no provenance at all
    assert plain("part-1.parquet", 0) is None
    assert plain("part-2.parquet", 0) is None

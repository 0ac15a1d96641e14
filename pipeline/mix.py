"""`synthcap mix --config mix.yaml --output OUT`: a training set under an exact synthetic ceiling.

Writes OUT/train/*.parquet and OUT/train/*.jsonl.gz (Dolma), OUT/manifest.json, OUT/report.html, plus the
accounting every run writes (OUT/dropped/, OUT/dead_letters/, OUT/summary.json).
"""
from __future__ import annotations

import gzip
import hashlib
import json
from fractions import Fraction

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import CommonOptions, MixOptions, UserError
from pipeline.runner import make_pipeline, prepare_output
from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED, Summarize, reconcile
from transforms.document import dolma_line, replace
from transforms.io.commit import IncompleteOutputError, complete_outputs
from transforms.io.files import InputError, match_shards
from transforms.io.read import ReadCrawl
from transforms.io.write import WriteDocuments, WriteJsonRecords, WriteSharded, write_bytes, write_json
from transforms.mix.classify import Item
from transforms.mix.config import ConfigError, MixConfig, load
from transforms.mix.report import SourceStats, render
from transforms.mix.select import SELECTED, MixWithCeiling
from transforms.score.estimate import EstimateSyntheticFraction
from transforms.score.model import DEFAULT_MODEL_DIR, Detector, ModelLoadError

OUTPUT_PARTS = ("train", "dropped", "dead_letters", "summary.json", "manifest.json", "report.html", "_stats")


def _row(item):
    meta = {**item.doc.metadata, "mix_source": item.source, "mix_epoch": str(item.epoch)}
    return replace(item.doc, metadata=meta)


def _row_key(doc) -> str:
    return f"{doc.metadata['mix_source']}\x00{doc.id}\x00{int(doc.metadata['mix_epoch']):06d}"


def _dolma_gz(docs) -> bytes:
    return gzip.compress("".join(dolma_line(d) + "\n" for d in docs).encode("utf-8", "backslashreplace"), mtime=0)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with FileSystems.open(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(x):
    if isinstance(x, Fraction):
        return str(x)
    raise TypeError(type(x).__name__)


def build(p, cfg: MixConfig, output: str, card: dict | None, rows_per_shard: int):
    pairs, reads = [], []
    for s in cfg.sources:
        try:
            shards = match_shards(list(s.inputs))
            complete_outputs(shards)
        except (InputError, IncompleteOutputError) as e:
            raise UserError(f"source {s.name}: {e}") from None
        read = p | f"Read[{s.name}]" >> ReadCrawl(shards=shards)
        reads.append(read)
        pairs.append(read[DOCUMENTS] | f"Tag[{s.name}]" >> beam.Map(lambda d, n=s.name: (n, d)))
    read_all = {tag: [r[tag] for r in reads] | f"All[{tag}]" >> beam.Flatten()
                for tag in (DOCUMENTS, DROPPED, DEAD_LETTERS)}
    mixed = (pairs | "Sources" >> beam.Flatten()) | "Mix" >> MixWithCeiling(cfg)
    rows = mixed[SELECTED] | "Rows" >> beam.Map(_row)
    train = FileSystems.join(output, "train")
    rows | "WriteParquet" >> WriteDocuments(train, rows_per_shard, name="train")
    rows | "WriteDolma" >> WriteSharded(FileSystems.join(train, "train"), ".jsonl.gz", _row_key, _dolma_gz,
                                        rows_per_shard)
    dropped = (read_all[DROPPED], mixed[DROPPED]) | "Dropped" >> beam.Flatten()
    dropped | "WriteDropped" >> WriteJsonRecords(FileSystems.join(output, "dropped"), "dropped",
                                                 lambda d: f"{d.reason}\x00{d.id}\x00{d.source}\x00{d.offset:020d}")
    read_all[DEAD_LETTERS] | "WriteDead" >> WriteJsonRecords(
        FileSystems.join(output, "dead_letters"), "dead_letters", lambda d: f"{d.source}\x00{d.offset:020d}")
    firsts = mixed[SELECTED] | "FirstCopies" >> beam.Filter(lambda i: i.epoch == 0)
    extra = {
        "selected": mixed[SELECTED] | "SelectedStats" >> beam.CombineGlobally(SourceStats()),
        "offered": (pairs | "OfferedAll" >> beam.Flatten() | "AsItems" >> beam.Map(_offered_item)
                    | "OfferedStats" >> beam.CombineGlobally(SourceStats())),
        "plan": mixed["plan"],
    }
    if card is not None:
        extra["estimate"] = (rows | "Estimate" >> EstimateSyntheticFraction(card)
                             | "EstimateDict" >> beam.combiners.ToDict())
    stats_path = FileSystems.join(output, "_stats.json")
    names = sorted(extra)
    (p | "StatsOne" >> beam.Create([None])
     | "Stats" >> beam.Map(lambda _, *v: write_bytes(stats_path, json.dumps(
         _plain(dict(zip(names, v))), default=_json_default, sort_keys=True).encode()),
         *[beam.pvalue.AsSingleton(extra[n]) for n in names]))
    summary_path = FileSystems.join(output, "summary.json")
    (p | "Summary" >> Summarize(read_all, firsts, dropped, read_all[DEAD_LETTERS])
     | "WriteSummary" >> beam.Map(lambda s: write_json(summary_path, s)))


def _offered_item(pair):
    source, doc = pair
    return Item(source, "offered", 0, 0, 0, 0, Fraction(0), Fraction(0), doc)


def _plain(obj):
    """Plans and stats as JSON-friendly values (tuple keys joined, dataclasses as dicts)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(obj):
        return _plain(asdict(obj))
    if isinstance(obj, dict):
        return {("/".join(map(str, k)) if isinstance(k, tuple) else str(k)): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def manifest(cfg: MixConfig, output: str, stats: dict, summary: dict, inputs: list[str]) -> dict:
    sel, off = stats["selected"], stats["offered"]
    dropped_by_source: dict = {}
    for f in FileSystems.match([FileSystems.join(output, "dropped", "*.jsonl")])[0].metadata_list:
        with FileSystems.open(f.path) as fh:
            for line in fh:
                d = json.loads(line)
                if d["reason"].startswith("excluded_"):
                    bucket = dropped_by_source.setdefault(d["detail"], {})
                    bucket[d["reason"]] = bucket.get(d["reason"], 0) + 1
    quota = stats["plan"]["quota"]
    sources, tot_tokens, tot_syn, tot_docs, tot_rows = [], 0, Fraction(0), 0, 0
    for s in cfg.sources:
        got = sel.get(s.name) or {"documents": 0, "rows": 0, "tokens": 0, "synthetic_tokens": "0", "units": 0,
                                  "p_ai_hist": [0] * 20}
        offered = off.get(s.name) or {"documents": 0, "p_ai_hist": [0] * 20}
        syn = Fraction(got["synthetic_tokens"])
        tot_tokens, tot_syn = tot_tokens + got["tokens"], tot_syn + syn
        tot_docs, tot_rows = tot_docs + got["documents"], tot_rows + got["rows"]
        sources.append({
            "name": s.name, "anchor": s.anchor, "inputs": list(s.inputs),
            "offered": {"documents": offered["documents"], "p_ai_hist": offered["p_ai_hist"]},
            "excluded": dict(sorted(dropped_by_source.get(s.name, {}).items())),
            "selected": {"documents": got["documents"], "rows": got["rows"], "tokens": got["tokens"],
                         "units": got["units"], "synthetic_tokens": str(syn), "p_ai_hist": got["p_ai_hist"]},
            "quota": None if s.anchor else quota.get(s.name, 0),
            "shortfall": 0 if s.anchor else max(0, quota.get(s.name, 0) - got["units"]),
        })
    fraction = tot_syn / tot_tokens if tot_tokens else Fraction(0)
    outputs = sorted(m.path for m in FileSystems.match([FileSystems.join(output, "train", "*")])[0].metadata_list)
    return {
        "config": _plain(cfg.raw), "seed": cfg.seed, "unit": cfg.unit, "target": cfg.target,
        "max_synthetic_fraction": str(cfg.ceiling), "synthetic_rule": cfg.rule,
        "tokenizer": "words and punctuation marks (\\w+|[^\\w\\s])",
        "sources": sources,
        "realised": {"documents": tot_docs, "rows": tot_rows, "tokens": tot_tokens,
                     "synthetic_tokens": str(tot_syn), "synthetic_fraction": str(fraction),
                     "synthetic_fraction_float": float(fraction), "within_ceiling": fraction <= cfg.ceiling},
        "estimated_true_synthetic_fraction": stats.get("estimate"),
        "accounting": summary,
        "sha256": {"inputs": {p: _sha256(p) for p in inputs}, "outputs": {p: _sha256(p) for p in outputs}},
    }


def run(argv: list[str]) -> dict:
    options = PipelineOptions(argv)
    opts = options.view_as(MixOptions)
    common = options.view_as(CommonOptions)
    if not opts.config:
        raise UserError("--config is required (a mix YAML file)")
    try:
        cfg = load(opts.config)
    except ConfigError as e:
        raise UserError(f"{opts.config}: {e}") from None
    output = prepare_output(common.output, common.overwrite, OUTPUT_PARTS)
    try:
        card = Detector.load(common.detector_model or DEFAULT_MODEL_DIR).card
    except ModelLoadError as e:
        raise UserError(str(e)) from None
    p = make_pipeline(options)
    build(p, cfg, output, card, common.rows_per_shard)
    result = p.run()
    result.wait_until_finish()
    with FileSystems.open(FileSystems.join(output, "summary.json")) as f:
        summary = json.load(f)
    if reconcile(summary):
        raise RuntimeError("mix summary does not reconcile: " + "; ".join(reconcile(summary)))
    stats_path = FileSystems.join(output, "_stats.json")
    with FileSystems.open(stats_path) as f:
        stats = json.load(f)
    FileSystems.delete([stats_path])
    inputs = sorted({sh.path for s in cfg.sources for sh in match_shards(list(s.inputs))})
    m = manifest(cfg, output, stats, summary, inputs)
    write_json(FileSystems.join(output, "manifest.json"), m)
    write_bytes(FileSystems.join(output, "report.html"), render(m).encode())
    return m

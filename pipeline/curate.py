"""`synthcap curate`: read crawl shards, account for every record, write curated Parquet and a summary."""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import CurateOptions, UserError
from pipeline.runner import make_pipeline, prepare_output
from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED, NAMESPACE, Summarize, reconcile
from transforms.io.files import InputError
from transforms.io.read import ReadCrawl
from transforms.io.write import WriteDocuments, WriteJsonRecords, write_json

OUTPUT_PARTS = ("documents", "dropped", "dead_letters", "summary.json")


def build(p, opts: CurateOptions, output: str) -> None:
    try:
        read = p | "Read" >> ReadCrawl(opts.input, max_document_bytes=opts.max_document_bytes,
                                       split_bytes=opts.split_bytes)
    except InputError as e:
        raise UserError(str(e)) from None
    documents = read[DOCUMENTS]
    dropped = read[DROPPED]
    dead = read[DEAD_LETTERS]
    documents | "WriteDocs" >> WriteDocuments(FileSystems.join(output, "documents"), opts.rows_per_shard)
    dropped | "WriteDropped" >> WriteJsonRecords(FileSystems.join(output, "dropped"), "dropped",
                                                 lambda d: f"{d.reason}\x00{d.id}\x00{d.source}\x00{d.offset:020d}")
    dead | "WriteDead" >> WriteJsonRecords(FileSystems.join(output, "dead_letters"), "dead_letters",
                                           lambda d: f"{d.source}\x00{d.offset:020d}\x00{d.reason}")
    summary_path = FileSystems.join(output, "summary.json")
    (p | "Summary" >> Summarize(read, documents, dropped, dead)
     | "WriteSummary" >> beam.Map(lambda s: write_json(summary_path, s)))


def counters(result) -> dict[str, int]:
    """The synthcap/* Beam counters of a finished run, summed over steps."""
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + value
    return dict(sorted(out.items()))


def run(argv: list[str]) -> tuple[dict, dict[str, int]]:
    """Runs curate; returns the summary and the Beam counters (which must carry the same numbers)."""
    options = PipelineOptions(argv)
    opts = options.view_as(CurateOptions)
    if not opts.input:
        raise UserError("--input is required (one or more shard paths or globs)")
    output = prepare_output(opts.output, opts.overwrite, OUTPUT_PARTS)
    p = make_pipeline(options)
    build(p, opts, output)
    result = p.run()
    result.wait_until_finish()
    with FileSystems.open(FileSystems.join(output, "summary.json")) as f:
        summary = json.load(f)
    problems = reconcile(summary)
    if problems:
        raise RuntimeError("summary does not reconcile: " + "; ".join(problems))
    return summary, counters(result)

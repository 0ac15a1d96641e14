"""`synthcap curate`: read crawl shards, account for every record, write curated Parquet and a summary."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import CURATE_KEYS, CommonOptions, CurateOptions, UserError
from pipeline.runner import make_pipeline, prepare_output
from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED, NAMESPACE, Summarize, reconcile
from transforms.dates import UNPARSED, has_unparsed_date
from transforms.dedup.exact import ExactDedup
from transforms.dedup.lsh import LshParams
from transforms.dedup.near import NearDedup
from transforms.dedup.normalize import Normalization
from transforms.dedup.rank import IdCollisions
from transforms.io.commit import (CommitOutputs, IncompleteOutputError, file_entry, inside,
                                  output_root, require_complete, run_key, staging_dir)
from transforms.io.files import InputError, match_shards
from transforms.io.read import ReadCrawl
from transforms.io.write import WriteDocuments, WriteJsonRecords, write_json
from transforms.provenance.lineage import RunInfo, WriteProvenance
from transforms.refresh.index import IndexParams
from transforms.refresh.match import MatchIndex, WriteSegment
from transforms.score.model import DEFAULT_MODEL_DIR, Detector, ModelLoadError
from transforms.score.reference import ReadReference, match_reference
from transforms.score.stage import ScoreAgainstReference
from transforms.provenance.summary import SignalCounts
from transforms.provenance.tag import TagProvenance

OUTPUT_PARTS = ("documents", "provenance", "dropped", "duplicates", "dead_letters", "summary.json")


def run_info(opts: CurateOptions, common: CommonOptions) -> RunInfo:
    """Run identity from every synthcap option except where outputs go."""
    config = {k: v for k, v in opts.get_all_options(retain_unknown_options=False).items()
              if k in CURATE_KEYS and k != "run_id"}
    return RunInfo.from_config(config, opts.run_id)


def duplicate_json(d) -> str:
    return json.dumps({"id": d.id, "reason": d.reason, "source": d.source, "offset": d.offset,
                       **json.loads(d.detail)}, sort_keys=True)


class NotCommitted(RuntimeError):
    """The pipeline finished but did not mark OUT complete (a refresh whose index commit lost a race)."""


@dataclass(frozen=True)
class IndexStage:
    """For `refresh`: match against these committed index files, write survivors to a new segment, and
    `commit(summary)` the new index generation as part of the output commit (before COMPLETE.json; it returns
    False when another refresh committed that generation first)."""

    exact_files: list
    band_files: list
    shingle_files: list
    segment_dir: str
    params: IndexParams
    commit: Callable[[dict], bool]


def lsh_params(opts: CurateOptions) -> LshParams:
    """Near dedup's MinHash and banding settings from the options: what NearDedup runs with and what a refresh
    index records (one source for both)."""
    try:
        return LshParams.resolve(opts.ngram, opts.num_perm, opts.threshold, opts.bands, opts.rows, opts.seed)
    except ValueError as e:
        raise UserError(str(e)) from None


def _reference_files(patterns: list[str]) -> list[str]:
    try:
        return match_reference(patterns)
    except ValueError as e:
        raise UserError(str(e)) from None


def input_shards(patterns: list[str], output: str) -> tuple[list, dict]:
    """Matched shards minus the files of synthcap output folders (skipped by their marker, counted); refuses
    any input inside OUT, which the run is about to replace."""
    try:
        shards = match_shards(patterns)
    except InputError as e:
        raise UserError(str(e)) from None
    inner = next((s.path for s in shards if inside(s.path, output)), None)
    if inner:
        raise UserError(f"input {inner} is inside the output folder {output}: refusing to read what this run "
                        f"replaces")
    cache: dict = {}
    roots = {s.path: output_root(s.path, cache) for s in shards}
    kept = [s for s in shards if roots[s.path] is None]
    skipped = sorted({r for r in roots.values() if r})
    if shards and not kept:
        raise UserError(f"every file matched lies in a synthcap output folder ({skipped[0]}), which curate skips: "
                        f"give the crawl shards")
    info = {"files": len(shards) - len(kept), "folders": skipped} if skipped else {}
    return kept, info


def build(p, opts: CurateOptions, common: CommonOptions, output: str, staging: str, key: str,
          index: IndexStage | None = None) -> None:
    """The whole curate graph, ending with the atomic commit of OUT (and, for refresh, of the index)."""
    shards, skipped = input_shards(opts.input, output)
    read = p | "Read" >> ReadCrawl(shards=shards, max_document_bytes=opts.max_document_bytes,
                                   split_bytes=opts.split_bytes)
    documents = read[DOCUMENTS] | "Provenance" >> TagProvenance()
    drops = [read[DROPPED]]
    dead = read[DEAD_LETTERS]
    extra = {"id_collisions": documents | "IdCollisions" >> IdCollisions()}
    if not opts.no_exact_dedup:
        try:
            norm = Normalization.parse(opts.exact_normalization)
        except ValueError as e:
            raise UserError(f"--exact_normalization: {e}") from None
        exact = documents | "ExactDedup" >> ExactDedup(norm)
        documents = exact[DOCUMENTS]
        drops.append(exact[DROPPED])
    if not opts.no_near_dedup:
        near_dedup = NearDedup(**asdict(lsh_params(opts)), max_bucket_size=opts.max_bucket_size,
                               rounds=opts.cc_rounds, max_residual_edges=opts.max_residual_edges)
        near = documents | "NearDedup" >> near_dedup
        documents = near[DOCUMENTS]
        drops.append(near[DROPPED])
    segment = []
    if index is not None:
        matched = documents | "MatchIndex" >> MatchIndex(index.exact_files, index.band_files, index.shingle_files,
                                                         index.params, opts.max_bucket_size)
        documents = matched[DOCUMENTS]
        segment.append(documents | "WriteSegment" >> WriteSegment(index.segment_dir, index.params))
        drops.append(matched[DROPPED])
    dead_parts = [dead]
    if not opts.no_score:
        model_dir = common.detector_model or DEFAULT_MODEL_DIR
        try:
            card = Detector.load(model_dir).card
        except ModelLoadError as e:
            raise UserError(str(e)) from None
        reference = None
        if opts.human_reference:
            reference = p | "HumanReference" >> ReadReference(_reference_files(opts.human_reference))
        try:
            stage = ScoreAgainstReference(model_dir, card, opts.seed, reference)
        except ValueError as e:
            raise UserError(f"--detector_model {model_dir}: {e}") from None
        scored = documents | "Score" >> stage
        documents = scored[DOCUMENTS]
        dead_parts.append(scored[DEAD_LETTERS])
        extra["ai_share"] = scored["ai_share"]
        extra["scoring"] = scored["scoring"]
    dead = dead_parts | "AllDead" >> beam.Flatten()
    dropped = drops | "AllDropped" >> beam.Flatten()
    def staged(part: str) -> str:
        return FileSystems.join(staging, part)

    written = [
        (dropped
         | "Duplicates" >> beam.Filter(lambda d: d.reason.startswith("duplicate_"))
         | "WriteDuplicates" >> WriteJsonRecords(staged("duplicates"), "duplicates",
                                                 lambda d: f"{d.id}\x00{d.source}\x00{d.offset:020d}",
                                                 encode_item=duplicate_json)),
        documents | "WriteDocs" >> WriteDocuments(staged("documents"), common.rows_per_shard),
        documents | "WriteProvenance" >> WriteProvenance(staged("provenance"), run_info(opts, common),
                                                          common.rows_per_shard),
        dropped | "WriteDropped" >> WriteJsonRecords(
            staged("dropped"), "dropped", lambda d: f"{d.reason}\x00{d.id}\x00{d.source}\x00{d.offset:020d}"),
        dead | "WriteDead" >> WriteJsonRecords(staged("dead_letters"), "dead_letters",
                                               lambda d: f"{d.source}\x00{d.offset:020d}\x00{d.reason}"),
    ]
    extra[UNPARSED] = (read[DOCUMENTS] | "UnparsedDates" >> beam.Filter(lambda d: has_unparsed_date(d.metadata))
                       | "CountUnparsedDates" >> beam.combiners.Count.Globally())
    signals = documents | "SignalCounts" >> beam.CombineGlobally(SignalCounts())
    extra["provenance"] = signals
    if skipped:
        extra["skipped_synthcap_outputs"] = p | "Skipped" >> beam.Create([skipped])
    summary = p | "Summary" >> Summarize(read, documents, dropped, dead, extra=extra)
    writers = segment + written | "AllWritten" >> beam.Flatten()
    summary_path = staged("summary.json")

    def write_summary(s, _written):
        write_json(summary_path, s)  # only once every writer has finished (the side input)
        return summary_path

    summary_written = summary | "WriteSummary" >> beam.Map(write_summary, beam.pvalue.AsList(writers))
    finalize = None
    if index is not None:
        segment_entries = (segment[0]
                           | "HashSegment" >> beam.Map(lambda path: file_entry(path, path.rsplit("/", 1)[-1]))
                           | "SegmentFiles" >> beam.combiners.ToList()
                           | "SortSegment" >> beam.Map(lambda fs: sorted(fs, key=lambda f: f["path"])))
        written_index = p | "IndexOne" >> beam.Create([None]) | "IndexWritten" >> beam.Map(
            lambda _, s, f: {"summary": s, "segment_files": f},
            beam.pvalue.AsSingleton(summary), beam.pvalue.AsSingleton(segment_entries))
        finalize = (index.commit, written_index)
    (written + [summary_written] | "Staged" >> beam.Flatten()
     | "Commit" >> CommitOutputs(output, staging, key, finalize))


def counters(result) -> dict[str, int]:
    """The synthcap/* Beam counters of a finished run, summed over steps."""
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + value
    return dict(sorted(out.items()))


def run(argv: list[str], verb: str = "curate", index_for=None) -> tuple[dict, dict[str, int]]:
    """Runs curate; returns the summary and the Beam counters (which must carry the same numbers).
    Everything is validated and the graph built before OUT is claimed (or cleared with --overwrite).
    `index_for(opts, key)`, given by `refresh`, returns the IndexStage to match, extend and commit."""
    options = PipelineOptions(argv)
    opts = options.view_as(CurateOptions)
    common = options.view_as(CommonOptions)
    if not opts.input:
        raise UserError("--input is required (one or more shard paths or globs)")
    if not common.output:
        raise UserError("--output is required")
    output = common.output.rstrip("/")
    info = run_info(opts, common)
    key = run_key(verb, {"config": info.config_hash, "input": list(opts.input), "output": output})
    p = make_pipeline(options)
    build(p, opts, common, output, staging_dir(output, key), key, index_for(opts, key) if index_for else None)
    prepare_output(output, common.overwrite, OUTPUT_PARTS, verb=verb, run_id=info.run_id, key=key)
    try:
        result = p.run()  # the in-process runner runs the whole pipeline here
        result.wait_until_finish()
    except Exception as e:
        if "residual edges" in str(e):
            message = str(e).split("ResidualTooLarge: ")[-1].splitlines()[0]
            raise UserError(message.split(" [while running")[0]) from None
        raise
    try:
        require_complete(output)
    except IncompleteOutputError as e:
        raise NotCommitted(str(e)) from None
    with FileSystems.open(FileSystems.join(output, "summary.json")) as f:
        summary = json.load(f)
    problems = reconcile(summary)
    if problems:
        raise RuntimeError("summary does not reconcile: " + "; ".join(problems))
    return summary, counters(result)

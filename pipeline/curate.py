"""`synthcap curate`: read crawl shards, account for every record, write curated Parquet and a summary."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import CURATE_KEYS, CommonOptions, CurateOptions, UserError
from pipeline.runner import make_pipeline, prepare_output
from transforms.accounting import (DEAD_LETTERS, DOCUMENTS, DROPPED, NAMESPACE, Summarize, Tally, by_reason,
                                  is_duplicate, require_reconciled)
from transforms.dates import UNPARSED, has_unparsed_date
from transforms.dedup.exact import ExactDedup
from transforms.dedup.lsh import LshParams
from transforms.dedup.near import NearDedup
from transforms.dedup.normalize import Normalization
from transforms.dedup.rank import IdCollisions
from transforms.io.commit import (CommitOutputs, IncompleteOutputError, VerifyCommitted, committed_entries, inside,
                                  output_root, outside_output, require_complete, run_key, staging_dir)
from transforms.io.files import InputError, Shard, match_shards
from transforms.io.read import ReadCrawl
from transforms.io.write import WriteDocuments, WriteJsonRecords, write_json
from transforms.provenance.lineage import RunInfo, WriteProvenance
from transforms.score.model import DEFAULT_MODEL_DIR, Detector, ModelLoadError
from transforms.score.reference import ReadReference, is_curated, match_reference
from transforms.score.stage import ScoreAgainstReference
from transforms.provenance.summary import SignalCounts, documents_counted
from transforms.provenance.tag import TagProvenance

OUTPUT_PARTS = ("documents", "provenance", "dropped", "duplicates", "dead_letters", "summary.json")


def _patterns(values) -> list[str] | None:
    """A list of input patterns as the run's identity takes it: a set (each file is read once, whatever the order
    or repetition of the patterns that reach it), so `--input b a` is the same run as `--input a b`."""
    return None if values is None else sorted(set(values))


def run_info(opts: CurateOptions, common: CommonOptions) -> RunInfo:
    """Run identity from every synthcap option except where outputs go."""
    config = {k: v for k, v in opts.get_all_options(retain_unknown_options=False).items()
              if k in CURATE_KEYS and k != "run_id"}
    for name in ("input", "human_reference"):
        if isinstance(config.get(name), list):
            config[name] = _patterns(config[name])
    return RunInfo.from_config(config, opts.run_id)


def duplicate_json(d) -> str:
    return json.dumps({"id": d.id, "reason": d.reason, "source": d.source, "offset": d.offset,
                       **json.loads(d.detail)}, sort_keys=True)


def _total(tally: dict, reasons=lambda reason: True) -> int:
    """How many records a tally by reason counts under the `reasons` that pass."""
    return sum(n for reason, n in tally.items() if reasons(reason))


class NotCommitted(RuntimeError):
    """The pipeline finished but did not mark OUT complete (a refresh whose index commit lost a race)."""


@dataclass(frozen=True)
class Run:
    """A validated curate-shaped run: its options, OUT and the run key that names its staging folder."""

    options: PipelineOptions
    opts: CurateOptions
    common: CommonOptions
    output: str
    info: RunInfo
    key: str

    @property
    def staging(self) -> str:
        return staging_dir(self.output, self.key)


@dataclass
class Graph:
    """The PCollections of a curate graph up to the point where `refresh` adds its index match: the documents
    that survived dedup, every drop and dead letter so far, and the summary's extra sections."""

    read: Any
    documents: Any
    drops: list
    dead: Any
    extra: dict
    skipped: dict


def lsh_params(opts: CurateOptions) -> LshParams:
    """Near dedup's MinHash and banding settings from the options: what NearDedup runs with and what a refresh
    index records (one source for both)."""
    try:
        return LshParams.resolve(opts.ngram, opts.num_perm, opts.threshold, opts.bands, opts.rows, opts.seed)
    except ValueError as e:
        raise UserError(str(e)) from None


def _committed(paths: list[str]) -> list[tuple[str, int, str]]:
    try:
        return committed_entries([Shard(p, 0, "") for p in paths])
    except IncompleteOutputError as e:
        raise UserError(str(e)) from None


def _reference_files(patterns: list[str], output: str) -> list[str]:
    """The --human_reference files; one inside OUT is refused (the claim would delete it before the run reads it:
    `--human_reference 'OUT/documents/*.parquet' --output OUT --overwrite` lost the earlier run, then failed)."""
    try:
        files = match_reference(patterns)
    except ValueError as e:
        raise UserError(str(e)) from None
    inner = next((f for f in files if inside(f, output)), None)
    if inner:
        raise UserError(f"--human_reference: {inner} is inside the output folder {output}: refusing to read what "
                        f"this run replaces")
    return files


def input_shards(patterns: list[str], output: str, index: str | None = None) -> tuple[list, dict]:
    """Matched shards minus the files of synthcap output folders (skipped by their marker, counted) and of OUT
    (which the run replaces; refused when every input lies there), refuses any input inside a refresh's --index,
    which it adds to."""
    try:
        shards = match_shards(patterns)
    except InputError as e:
        raise UserError(str(e)) from None
    if any(inside(s.path, output) for s in shards):  # judged per pattern: one naming only OUT's files is refused
        try:
            for pattern in patterns:
                outside_output(match_shards([pattern]), output)
        except InputError as e:
            raise UserError(str(e)) from None
        shards = [s for s in shards if not inside(s.path, output)]
    inner = next((s.path for s in shards if index and inside(s.path, index)), None)
    if inner:  # its segments have no text: each file was a schema_error dead letter, and the run went on
        raise UserError(f"input {inner} is inside the refresh index {index}: give the crawl shards")
    cache: dict = {}
    roots = {s.path: output_root(s.path, cache) for s in shards}
    kept = [s for s in shards if roots[s.path] is None]
    skipped = sorted({r for r in roots.values() if r})
    if shards and not kept:
        raise UserError(f"every file matched lies in a synthcap output folder ({skipped[0]}), which curate skips: "
                        f"give the crawl shards")
    info = {"files": len(shards) - len(kept), "folders": skipped} if skipped else {}
    return kept, info


def dedup_graph(p, run: Run, index: str | None = None) -> Graph:
    """read -> provenance -> exact dedup -> near dedup, on pipeline `p` (`index`: a refresh's, never read)."""
    opts = run.opts
    shards, skipped = input_shards(opts.input, run.output, index)
    read = p | "Read" >> ReadCrawl(shards=shards, max_document_bytes=opts.max_document_bytes,
                                   split_bytes=opts.split_bytes)
    documents = read[DOCUMENTS] | "Provenance" >> TagProvenance()
    drops = [read[DROPPED]]
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
    return Graph(read, documents, drops, read[DEAD_LETTERS], extra, skipped)


def write_graph(p, run: Run, g: Graph, written_before: tuple = (), committed: list = ()) -> tuple[list, Any]:
    """score -> write -> summary, into the staging folder. `written_before`: more PCollections of written paths
    that the summary waits for; `committed`: (path, size, sha256) of files read from complete synthcap outputs,
    hashed while the run goes (VerifyCommitted) before the summary is staged, so a changed file stops the commit.
    Returns (the staged paths to commit, the summary)."""
    opts, common = run.opts, run.common
    committed = list(committed)
    documents, drops, extra = g.documents, list(g.drops), dict(g.extra)
    dead_parts = [g.dead]
    if not opts.no_score:
        model_dir = opts.detector_model or DEFAULT_MODEL_DIR
        try:
            card = Detector.load(model_dir).card
        except ModelLoadError as e:
            raise UserError(str(e)) from None
        reference = None
        if opts.human_reference:
            files = _reference_files(opts.human_reference, run.output)
            committed += _committed([f for f in files if is_curated(f)])
            reference = p | "HumanReference" >> ReadReference(files)
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
        return FileSystems.join(run.staging, part)

    # Each output is counted once, and the summary and the output's writer share the count: the documents'
    # count is read off their signal counts, the drops' and dead letters' off their tallies by reason.
    signals = documents | "SignalCounts" >> beam.CombineGlobally(SignalCounts())
    n_documents = signals | "CountDocuments" >> beam.Map(documents_counted)
    dropped_by_reason = dropped | "DroppedByReason" >> Tally(by_reason)
    dead_by_reason = dead | "DeadByReason" >> Tally(by_reason)
    written = [
        (dropped
         | "Duplicates" >> beam.Filter(lambda d: is_duplicate(d.reason))
         | "WriteDuplicates" >> WriteJsonRecords(
             staged("duplicates"), "duplicates", lambda d: f"{d.id}\x00{d.source}\x00{d.offset:020d}",
             encode_item=duplicate_json,
             count=dropped_by_reason | "CountDuplicates" >> beam.Map(_total, is_duplicate))),
        documents | "WriteDocs" >> WriteDocuments(staged("documents"), common.rows_per_shard, count=n_documents),
        documents | "WriteProvenance" >> WriteProvenance(staged("provenance"), run.info, common.rows_per_shard,
                                                          count=n_documents),
        dropped | "WriteDropped" >> WriteJsonRecords(
            staged("dropped"), "dropped", lambda d: f"{d.reason}\x00{d.id}\x00{d.source}\x00{d.offset:020d}",
            count=dropped_by_reason | "CountDropped" >> beam.Map(_total)),
        dead | "WriteDead" >> WriteJsonRecords(
            staged("dead_letters"), "dead_letters", lambda d: f"{d.source}\x00{d.offset:020d}\x00{d.reason}",
            count=dead_by_reason | "CountDead" >> beam.Map(_total)),
    ]
    extra[UNPARSED] = (g.read[DOCUMENTS] | "UnparsedDates" >> beam.Filter(has_unparsed_date)
                       | "CountUnparsedDates" >> beam.combiners.Count.Globally())
    extra["provenance"] = signals
    if g.skipped:
        extra["skipped_synthcap_outputs"] = p | "Skipped" >> beam.Create([g.skipped])
    extra.update(documents_out=n_documents, dropped=dropped_by_reason, dead_letters=dead_by_reason)
    summary = p | "Summary" >> Summarize(g.read, documents, dropped, dead, extra=extra)
    writers = [*written_before, *written] | "AllWritten" >> beam.Flatten()
    summary_path = staged("summary.json")
    verified = p | "VerifyCommitted" >> VerifyCommitted(sorted(set(committed)))

    def write_summary(s, _written, _verified):
        require_reconciled(s)
        write_json(summary_path, s)  # only once every writer has finished and the inputs checked (side inputs)
        return summary_path

    summary_written = summary | "WriteSummary" >> beam.Map(write_summary, beam.pvalue.AsList(writers),
                                                           beam.pvalue.AsList(verified))
    return written + [summary_written], summary


def commit_graph(run: Run, staged: list, finalize: tuple | None = None) -> None:
    """The atomic commit of OUT once everything is staged; `finalize` = (function, its input PCollection) runs
    just before OUT's completion record (refresh commits its index generation there; transforms/io/commit.py)."""
    staged | "Staged" >> beam.Flatten() | "Commit" >> CommitOutputs(run.output, run.staging, run.key, finalize)


def build(p, run: Run) -> None:
    """The whole curate graph, ending with the atomic commit of OUT."""
    staged, _ = write_graph(p, run, dedup_graph(p, run))
    commit_graph(run, staged)


def counters(result) -> dict[str, int]:
    """The synthcap/* Beam counters of a finished run, summed over steps."""
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + value
    return dict(sorted(out.items()))


def plan(argv: list[str], verb: str = "curate") -> Run:
    """Parses and checks the options of a curate-shaped run (curate, refresh); claims nothing."""
    options = PipelineOptions(argv)
    opts = options.view_as(CurateOptions)
    common = options.view_as(CommonOptions)
    if not opts.input:
        raise UserError("--input is required (one or more shard paths or globs)")
    if not common.output:
        raise UserError("--output is required")
    output = common.output.rstrip("/")
    info = run_info(opts, common)
    key = run_key(verb, {"config": info.config_hash, "input": _patterns(opts.input), "output": output})
    return Run(options, opts, common, output, info, key)


def execute(p, run: Run, verb: str = "curate") -> tuple[dict, dict[str, int]]:
    """Claims OUT (or clears it with --overwrite) once the graph is built, runs it, and returns the committed
    summary and the Beam counters (which must carry the same numbers). NotCommitted when the graph finished
    without marking OUT complete."""
    prepare_output(run.output, run.common.overwrite, OUTPUT_PARTS, verb=verb, run_id=run.info.run_id, key=run.key)
    try:
        result = p.run()  # the in-process runner runs the whole pipeline here
        result.wait_until_finish()
    except Exception as e:
        if "residual edges" in str(e):
            message = str(e).split("ResidualTooLarge: ")[-1].splitlines()[0]
            raise UserError(message.split(" [while running")[0]) from None
        raise
    try:
        require_complete(run.output)
    except IncompleteOutputError as e:
        raise NotCommitted(str(e)) from None
    with FileSystems.open(FileSystems.join(run.output, "summary.json")) as f:
        summary = json.load(f)
    return summary, counters(result)


def run(argv: list[str]) -> tuple[dict, dict[str, int]]:
    """Runs curate; returns the summary and the Beam counters. Everything is validated and the graph built
    before OUT is claimed."""
    r = plan(argv)
    p = make_pipeline(r.options)
    build(p, r)
    return execute(p, r)

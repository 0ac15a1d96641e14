"""`synthcap refresh --input NEW_SHARDS --index INDEX --output OUT`: curate a new crawl against everything indexed.

New documents that match the index (exactly or nearly) are dropped as `duplicate_indexed`, naming the indexed
document and its first_seen; the survivors are written as usual and indexed in a new segment. The new generation
is committed by the graph itself, as the last step before OUT's completion record (transforms/refresh/index.py).
Nothing new → no new generation (a rerun is idempotent).
"""
from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import curate
from pipeline.options import CommonOptions, CurateOptions, RefreshOptions, UserError
from pipeline.runner import make_pipeline
from transforms.accounting import DOCUMENTS, DROPPED
from transforms.io.commit import file_entry
from transforms.refresh.index import (IndexCommit, IndexParams, IndexPathError, check_index_path, check_segments,
                                      read_pointer, segment_files, segment_name)
from transforms.refresh.match import MatchIndex, WriteSegment


def params_of(opts: CurateOptions) -> IndexParams:
    return IndexParams(opts.exact_normalization, curate.lsh_params(opts))


def _base(pointer: dict | None, key: str) -> dict:
    """The generation this run builds on: the committed one, or the one before it when the committed one is this
    very run's (a rerun after a crash between its index commit and its output's completion record)."""
    if pointer is None:
        return {"generation": 0, "segments": [], "documents": 0}
    mine = segment_name(pointer["generation"], key)
    if pointer.get("run_key") == key and pointer["segments"][-1:] == [mine]:
        files = {k: v for k, v in pointer.get("files", {}).items() if k != mine}
        return {"generation": pointer["generation"] - 1, "segments": pointer["segments"][:-1],
                "documents": pointer["documents"] - pointer["new_documents"], "files": files}
    return pointer


def _index_commit_input(p, summary, segment):
    """{"summary", "segment_files"} for the index commit: the run's summary and its segment's files hashed."""
    entries = (segment
               | "HashSegment" >> beam.Map(lambda path: file_entry(path, path.rsplit("/", 1)[-1]))
               | "SegmentFiles" >> beam.combiners.ToList()
               | "SortSegment" >> beam.Map(lambda fs: sorted(fs, key=lambda f: f["path"])))
    return p | "IndexOne" >> beam.Create([None]) | "IndexWritten" >> beam.Map(
        lambda _, s, f: {"summary": s, "segment_files": f},
        beam.pvalue.AsSingleton(summary), beam.pvalue.AsSingleton(entries))


def run(argv: list[str]) -> dict:
    """One graph: curate's read and dedup, the index match, curate's scoring and writing, the new segment, and
    the commit of OUT with the index generation committed just before OUT's completion record."""
    options = PipelineOptions(argv)
    index = (options.view_as(RefreshOptions).index or "").rstrip("/")
    if not index:
        raise UserError("--index is required (a local folder or gs:// prefix)")
    opts = options.view_as(CurateOptions)
    if opts.no_exact_dedup or opts.no_near_dedup:
        raise UserError("refresh needs both dedup stages: drop --no_exact_dedup / --no_near_dedup")
    output = (options.view_as(CommonOptions).output or "").rstrip("/")
    params = params_of(opts)
    try:
        check_index_path(index, output)
        pointer, gcs_generation = read_pointer(index)
        if pointer is not None:
            check_segments(index, pointer)
    except IndexPathError as e:
        raise UserError(str(e)) from None
    if pointer is not None:
        problems = params.mismatch(pointer["params"])
        if problems:
            raise UserError(f"index {index} was built with other dedup settings ({'; '.join(problems)})")
    run_ = curate.plan(argv, verb="refresh")
    base = _base(pointer, run_.key)
    generation = base["generation"] + 1
    segments = base["segments"]
    files = {kind: segment_files(index, segments, kind, base) for kind in ("exact", "bands", "shingles")}
    missing = [s for s in segments if not segment_files(index, [s], "exact", base)]
    if missing:
        raise UserError(f"index {index} lists {missing[0]}, which holds no files: the index is damaged")
    segment = segment_name(generation, run_.key)
    commit = IndexCommit(index, base, segment, generation, params.as_dict(), run_.key, output, gcs_generation)

    p = make_pipeline(run_.options)
    g = curate.dedup_graph(p, run_, index)
    indexed = sorted((FileSystems.join(index, seg, f["path"]), f["size"], f["sha256"])
                     for seg, listed in base.get("files", {}).items() if seg in segments for f in listed
                     if isinstance(f.get("sha256"), str))
    matched = g.documents | "MatchIndex" >> MatchIndex(files["exact"], files["bands"], files["shingles"], params,
                                                       opts.max_bucket_size, {e[0]: e[1:] for e in indexed})
    g = replace(g, documents=matched[DOCUMENTS], drops=[*g.drops, matched[DROPPED]])
    written_segment = g.documents | "WriteSegment" >> WriteSegment(FileSystems.join(index, segment), params)
    staged, summary = curate.write_graph(p, run_, g, written_before=(written_segment,), committed=indexed)
    curate.commit_graph(run_, staged, (commit, _index_commit_input(p, summary, written_segment)))
    try:
        summary, _ = curate.execute(p, run_, verb="refresh")
    except curate.NotCommitted:
        head, _ = read_pointer(index)
        if head is None or head["generation"] < generation or head.get("run_key") == run_.key:
            raise
        raise UserError(f"another refresh committed generation {generation} of {index} first; this "
                        f"run's segment was removed, its output {output} left incomplete, and the index is as that "
                        f"run left it: rerun to refresh against it") from None
    head, _ = read_pointer(index)
    committed = head is not None and head.get("run_key") == run_.key and head["generation"] == generation
    return {"summary": summary, "generation": generation if committed else base["generation"],
            "committed": committed, "new_documents": summary["documents_out"]}

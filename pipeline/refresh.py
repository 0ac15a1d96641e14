"""`synthcap refresh --input NEW_SHARDS --index INDEX --output OUT`: curate a new crawl against everything indexed.

New documents that match the index (exactly or nearly) are dropped as `duplicate_indexed`, naming the indexed
document and its first_seen; the survivors are written as usual and indexed in a new segment, which the pointer
lists once the run has finished. Nothing new → no new generation (a rerun is idempotent).
"""
from __future__ import annotations

import uuid

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import curate
from pipeline.options import CurateOptions, RefreshOptions, UserError
from transforms.dedup.lsh import recall_first_params
from transforms.refresh.index import (CommitConflict, IndexParams, commit, delete_segment, read_pointer,
                                      segment_files)


def params_of(opts: CurateOptions) -> IndexParams:
    bands, rows = (opts.bands, opts.rows) if opts.bands else recall_first_params(opts.threshold, opts.num_perm)
    return IndexParams(opts.exact_normalization, opts.ngram, opts.num_perm, bands, rows, opts.seed, opts.threshold)


def run(argv: list[str]) -> dict:
    options = PipelineOptions(argv)
    index = (options.view_as(RefreshOptions).index or "").rstrip("/")
    if not index:
        raise UserError("--index is required (a local folder or gs:// prefix)")
    opts = options.view_as(CurateOptions)
    if opts.no_exact_dedup or opts.no_near_dedup:
        raise UserError("refresh needs both dedup stages: drop --no_exact_dedup / --no_near_dedup")
    params = params_of(opts)
    pointer, gcs_generation = read_pointer(index)
    if pointer is not None:
        problems = params.mismatch(pointer["params"])
        if problems:
            raise UserError(f"index {index} was built with other dedup settings ({problems[0]})")
    generation = (pointer or {}).get("generation", 0) + 1
    segments = list((pointer or {}).get("segments", []))
    segment = f"segments/seg-{generation:06d}-{uuid.uuid4().hex[:12]}"  # unique per attempt: racers never share

    def index_for(_opts):
        return curate.IndexStage(segment_files(index, segments, "exact"), segment_files(index, segments, "bands"),
                                 segment_files(index, segments, "shingles"),
                                 FileSystems.join(index, segment), params)

    try:
        summary, _ = curate.run(argv, index_for=index_for)
    except BaseException:
        delete_segment(index, segment)
        raise
    new = summary["documents_out"]
    result = {"summary": summary, "generation": generation - 1, "committed": False, "new_documents": new}
    if new == 0:
        delete_segment(index, segment)
        return result
    new_pointer = {"generation": generation, "segments": segments + [segment], "params": params.__dict__,
                   "documents": (pointer or {}).get("documents", 0) + new}
    try:
        commit(index, new_pointer, gcs_generation)
    except CommitConflict:
        delete_segment(index, segment)
        raise UserError(f"another refresh committed generation {generation} of {index} first; this run's "
                        f"segment was removed and the index is as that run left it: rerun to refresh against it") \
            from None
    result.update(generation=generation, committed=True)
    return result

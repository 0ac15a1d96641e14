"""`synthcap refresh --input NEW_SHARDS --index INDEX --output OUT`: curate a new crawl against everything indexed.

New documents that match the index (exactly or nearly) are dropped as `duplicate_indexed`, naming the indexed
document and its first_seen; the survivors are written as usual and indexed in a new segment. The new generation
is committed by the graph itself, as the last step before OUT's completion record (transforms/refresh/index.py).
Nothing new → no new generation (a rerun is idempotent).
"""
from __future__ import annotations

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import curate
from pipeline.options import CommonOptions, CurateOptions, RefreshOptions, UserError
from transforms.refresh.index import (IndexCommit, IndexParams, IndexPathError, check_index_path, check_segments,
                                      read_pointer, segment_files, segment_name)


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


def run(argv: list[str]) -> dict:
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
            raise UserError(f"index {index} was built with other dedup settings ({problems[0]})")
    state: dict = {}

    def index_for(_opts, key):
        base = _base(pointer, key)
        generation = base["generation"] + 1
        segments = base["segments"]
        exact, bands = segment_files(index, segments, "exact", base), segment_files(index, segments, "bands", base)
        shingles = segment_files(index, segments, "shingles", base)
        missing = [s for s in segments if not segment_files(index, [s], "exact", base)]
        if missing:
            raise UserError(f"index {index} lists {missing[0]}, which holds no files: the index is damaged")
        segment = segment_name(generation, key)
        state.update(key=key, generation=generation, base=base)
        return curate.IndexStage(exact, bands, shingles, FileSystems.join(index, segment), params,
                                 IndexCommit(index, base, segment, generation, params.as_dict(), key, output,
                                             gcs_generation))

    try:
        summary, _ = curate.run(argv, verb="refresh", index_for=index_for)
    except curate.NotCommitted:
        head, _ = read_pointer(index)
        if head is None or head["generation"] < state["generation"] or head.get("run_key") == state["key"]:
            raise
        raise UserError(f"another refresh committed generation {state['generation']} of {index} first; this "
                        f"run's segment was removed, its output {output} left incomplete, and the index is as that "
                        f"run left it: rerun to refresh against it") from None
    head, _ = read_pointer(index)
    committed = head is not None and head.get("run_key") == state["key"] and head["generation"] == state["generation"]
    return {"summary": summary, "generation": state["generation"] if committed else state["base"]["generation"],
            "committed": committed, "new_documents": summary["documents_out"]}

"""The refresh index: immutable segments plus one small pointer per generation, committed last and atomically.

Layout under INDEX (a local folder or gs://bucket/prefix):

    CURRENT.json                      {"generation": N, "segments": [...], "params": {...}, "documents": ...,
                                       "new_documents": n, "run_key": <owner>, "output": <owner's OUT>,
                                       "files": {segment: [{"path", "size", "sha256"}, ...]}}
    generations/gen-NNNNNN.json       (local only) the pointer of generation N, created whole or not at all
    segments/seg-NNNNNN-<run key>/exact-*.parquet     normalised-text hash -> record (its rank, `dedup/rank.py`)
    segments/seg-NNNNNN-<run key>/bands-*.parquet     (band, band hash) -> record
    segments/seg-NNNNNN-<run key>/shingles-*.parquet  record -> its distinct 64-bit shingle hashes

A refresh writes its segment, then claims generation N with the complete pointer in one atomic step, so a claim
is never "taken but not yet written" and cannot wedge the index: on gs:// `CURRENT.json` is written with
`if_generation_match` (the object generation read at start); locally the pointer is written to a temporary file
and hard-linked to `generations/gen-N.json` (link fails if the name exists), and `CURRENT.json` is a copy
refreshed by rename for people and older tools. A pointer names its owner (run key and output folder): a rerun
of the same refresh after a crash recognises its own generation and finishes instead of matching against itself.
A run that dies before its claim leaves the previous generation intact; its segment is an orphan (a segment of
generation <= the committed one that the pointer does not list can never be committed), removed by the first
commit of a later generation (a same-generation segment may still be a live racer's).
The loser of a race deletes its segment and fails before its output is marked complete.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass

from apache_beam.io.filesystems import FileSystems

from transforms.dedup.lsh import LshParams
from transforms.io.files import read_bytes

POINTER = "CURRENT.json"
MAX_POINTER_BYTES = 256 << 20  # a pointer lists its segments' files: a few KiB per generation
GENERATIONS = "generations"
SEGMENTS = "segments"
_INDEX_ENTRIES = {POINTER, GENERATIONS, SEGMENTS, "claims"}  # claims/: left by older versions, ignored
_SEGMENT = re.compile(r"seg-(\d{6,})-")  # 6 digits, more past generation 999,999
_GENERATION = re.compile(r"gen-(\d{6,})\.json$")


class IndexPathError(ValueError):
    """--index names something that is not a refresh index (a file, a folder of other data): one line."""


class CommitConflict(RuntimeError):
    """Another refresh committed this generation first."""


@dataclass(frozen=True)
class IndexParams:
    """Everything that must be equal for index keys to be comparable across refreshes: the exact-dedup
    normalisation and near dedup's own `LshParams` (one source for both stages). The pointer stores them flat."""

    normalization: str
    lsh: LshParams
    # 2: records keyed by (first_seen, id, source, offset, text_hash; older segments lack the hash), shingles stored
    # for exact verification
    layout: int = 2

    def as_dict(self) -> dict:
        return {"normalization": self.normalization, **asdict(self.lsh), "layout": self.layout}

    def mismatch(self, other: dict) -> list[str]:
        """`name: index has X, this run Y` for every setting that differs from the index's."""
        return [f"{k}: index has {other.get(k)!r}, this run {v!r}" for k, v in self.as_dict().items()
                if other.get(k) != v]


def _gcs_bucket_and_name(path: str):
    from google.cloud import storage

    bucket, _, name = path[len("gs://"):].partition("/")
    return storage.Client().bucket(bucket), name


def segment_name(generation: int, key: str) -> str:
    return f"{SEGMENTS}/seg-{generation:06d}-{key}"


def _list_top(index: str) -> list[str] | None:
    """Names directly under INDEX (None when INDEX is a file, or a device, FIFO or socket, which the run would
    otherwise only find to be no folder once it tried to write a segment there)."""
    if index.startswith("gs://"):
        bucket, prefix = _gcs_bucket_and_name(index)
        if prefix and bucket.get_blob(prefix) is not None:
            return None
        names = {b.name[len(prefix) + 1:].split("/")[0] for b in bucket.list_blobs(prefix=prefix + "/")}
        return sorted(n for n in names if n)
    if os.path.exists(index) and not os.path.isdir(index):
        return None
    return sorted(os.listdir(index)) if os.path.isdir(index) else []


def check_index_path(index: str, output: str) -> None:
    """Refuses an --index that is a file, holds anything but index entries, or overlaps --output."""
    from transforms.io.commit import MARKER, inside

    if output and (inside(index, output) or inside(output, index)):
        raise IndexPathError(f"--index {index} and --output {output} overlap: give them separate folders")
    try:
        names = _list_top(index)
    except Exception as e:
        raise IndexPathError(f"cannot list --index {index}: {e}") from None
    if names is None:
        kind = "a special file" if os.path.exists(index) and not os.path.isfile(index) else "a file"  # gs://: a file
        raise IndexPathError(f"--index {index} is {kind}, not an index folder")
    if MARKER in names:
        raise IndexPathError(f"--index {index} is a synthcap output folder, not a refresh index")
    other = [n for n in names if n not in _INDEX_ENTRIES]
    if other:
        raise IndexPathError(f"--index {index} holds non-index content ({other[0]}): give an empty folder or an "
                             f"existing index")
    if "://" not in index:  # a file where a folder of the index belongs failed the run writing into it (exit 1)
        for name in (GENERATIONS, SEGMENTS):
            path = os.path.join(index, name)
            if name in names and not os.path.isdir(path):
                kind = "a file" if os.path.isfile(path) else "a special file or a broken link"
                raise IndexPathError(f"index {index} is damaged: {name} is {kind}, not a folder")


def _file_entries(files) -> bool:
    return isinstance(files, list) and all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("size"), int)
        and not isinstance(f["size"], bool) for f in files)


def _valid(pointer, where: str) -> dict:
    """The pointer's shape, as every reader of it relies on (a hand-edited or foreign file failed the run with a
    TypeError or KeyError, or committed a generation below 1)."""
    ok = (isinstance(pointer, dict) and isinstance(pointer.get("generation"), int)
          and not isinstance(pointer["generation"], bool) and pointer["generation"] >= 1
          and isinstance(pointer.get("segments"), list) and all(isinstance(seg, str) for seg in pointer["segments"])
          and isinstance(pointer.get("params"), dict)
          and isinstance(pointer.get("documents", 0), int) and not isinstance(pointer.get("documents"), bool)
          and isinstance(pointer.get("files", {}), dict)
          and all(isinstance(seg, str) and _file_entries(files) for seg, files in pointer.get("files", {}).items()))
    if not ok:
        raise IndexPathError(f"{where} is not a valid index pointer")
    return pointer


def read_pointer(index: str) -> tuple[dict | None, int]:
    """(pointer of the latest generation or None, the GCS generation of the pointer object: 0 when absent;
    always 0 locally). Raises IndexPathError for a pointer that is not one."""
    path = FileSystems.join(index, POINTER)
    if index.startswith("gs://"):
        bucket, name = _gcs_bucket_and_name(path)
        blob = bucket.get_blob(name)
        if blob is None:
            return None, 0
        generation = int(blob.generation)  # before the download, which refreshes properties from its headers
        data = blob.download_as_bytes(if_generation_match=generation)
    else:
        gens = _local_generations(index)
        if gens:
            path = os.path.join(index, GENERATIONS, f"gen-{max(gens):06d}.json")
        elif not os.path.exists(path):  # an index made before generations/ existed keeps only CURRENT.json
            return None, 0
        try:  # a named pipe would block; the pointer is a small JSON file
            data = read_bytes(path, MAX_POINTER_BYTES)
        except OSError as e:
            raise IndexPathError(f"index {index} is damaged: {e}") from None
        generation = 0
    try:
        pointer = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep, no pointer either
        pointer = None
    return _valid(pointer, path), generation


def _local_generations(index: str) -> list[int]:
    folder = os.path.join(index, GENERATIONS)
    if not os.path.isdir(folder):
        return []
    return [int(m.group(1)) for m in map(_GENERATION.match, os.listdir(folder)) if m]


def _same_commit(a: dict | None, b: dict) -> bool:
    return a is not None and all(a.get(k) == b[k] for k in ("generation", "segments", "run_key"))


def commit(index: str, pointer: dict, expected_generation: int) -> None:
    """Claims and writes generation `pointer["generation"]` in one atomic step, or raises CommitConflict.
    Committing the very pointer that is already there (a rerun finishing its own commit) succeeds."""
    data = (json.dumps(pointer, indent=2, sort_keys=True) + "\n").encode()
    path = FileSystems.join(index, POINTER)
    if index.startswith("gs://"):
        from google.api_core.exceptions import PreconditionFailed

        try:
            bucket, name = _gcs_bucket_and_name(path)
            bucket.blob(name).upload_from_string(data, if_generation_match=expected_generation,
                                                 content_type="application/json")
        except PreconditionFailed:
            if _same_commit(read_pointer(index)[0], pointer):
                return
            raise CommitConflict(f"generation {pointer['generation']}") from None
        return
    folder = os.path.join(index, GENERATIONS)
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, f"gen-{pointer['generation']:06d}.json")
    tmp = os.path.join(folder, f".tmp-gen-{pointer['generation']:06d}-{pointer['run_key']}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, final)
    except FileExistsError:
        with open(final, "rb") as f:
            if not _same_commit(json.loads(f.read()), pointer):
                raise CommitConflict(f"generation {pointer['generation']}") from None
    finally:
        os.unlink(tmp)
    _mirror_current(index)


def _mirror_current(index: str) -> None:
    """CURRENT.json := the latest generation's pointer (a convenience copy; generations/ is the truth)."""
    latest = max(_local_generations(index))
    with open(os.path.join(index, GENERATIONS, f"gen-{latest:06d}.json"), "rb") as f:
        data = f.read()
    tmp = os.path.join(index, f"{POINTER}.tmp-{latest:06d}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(index, POINTER))


def clean_orphans(index: str) -> list[str]:
    """Deletes the segments and pointer temporaries that can never be committed any more: those of a generation
    below the committed one that its pointer does not list (a dead or beaten run's). A segment of the committed
    generation itself is left for the next commit: it may belong to a racer still finishing, which deletes it
    when it learns it lost. Returns them."""
    pointer, _ = read_pointer(index)
    if pointer is None:
        return []
    head, listed = pointer["generation"], set(pointer["segments"])
    if index.startswith("gs://"):
        bucket, prefix = _gcs_bucket_and_name(FileSystems.join(index, SEGMENTS) + "/")
        names = {b.name[len(prefix):].split("/")[0] for b in bucket.list_blobs(prefix=prefix)}
    else:
        folder = os.path.join(index, SEGMENTS)
        names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    orphans = []
    for name in sorted(names):
        m = _SEGMENT.match(name)
        seg = f"{SEGMENTS}/{name}"
        if m and int(m.group(1)) < head and seg not in listed:
            delete_segment(index, seg)
            orphans.append(seg)
    folder = os.path.join(index, GENERATIONS)
    if "://" not in index and os.path.isdir(folder):
        for name in os.listdir(folder):
            m = re.match(r"\.tmp-gen-(\d{6,})-", name)
            if m and int(m.group(1)) < head:
                os.unlink(os.path.join(folder, name))
    return orphans


@dataclass(frozen=True)
class IndexCommit:
    """The refresh's last step before its output is marked complete: commit generation `generation` listing
    `segment` (when the run found new documents), then remove orphans. Runs on a worker, so it holds only
    picklable values."""

    index: str
    base: dict
    segment: str
    generation: int
    params: dict
    run_key: str
    output: str
    expected_gcs_generation: int

    def pointer(self, new_documents: int, files: list[dict]) -> dict:
        listed = {**self.base.get("files", {}), self.segment: files}
        return {"generation": self.generation, "segments": list(self.base.get("segments", [])) + [self.segment],
                "params": self.params, "documents": self.base.get("documents", 0) + new_documents,
                "new_documents": new_documents, "run_key": self.run_key, "output": self.output, "files": listed}

    def __call__(self, written: dict) -> bool:
        """`written`: this run's summary and its segment's files (relative path, size, sha256). True when the
        output may be marked complete; False when another refresh took the generation."""
        new = written["summary"]["documents_out"]
        if new:
            try:
                commit(self.index, self.pointer(new, written["segment_files"]), self.expected_gcs_generation)
            except CommitConflict:
                delete_segment(self.index, self.segment)
                return False
        else:
            delete_segment(self.index, self.segment)
        clean_orphans(self.index)
        return True


def check_segments(index: str, pointer: dict) -> None:
    """Refuses an index whose listed segment files (as the pointer records them) are missing or resized."""
    for seg, files in sorted(pointer.get("files", {}).items()):
        found = {m.path: m.size_in_bytes for m in FileSystems.match([FileSystems.join(index, seg, "*")])[0]
                 .metadata_list}
        for f in files:
            size = found.get(FileSystems.join(index, seg, f["path"]))
            if size != f["size"]:
                state = "is missing" if size is None else f"has {size} bytes, the pointer says {f['size']}"
                raise IndexPathError(f"index {index} is damaged: {seg}/{f['path']} {state}")


def segment_files(index: str, segments: list[str], kind: str, pointer: dict | None = None) -> list[str]:
    """The files of `kind` of these segments: as the pointer lists them, else (older pointers) by glob."""
    listed = (pointer or {}).get("files", {})
    files = []
    for seg in segments:
        if seg in listed:
            files += sorted(FileSystems.join(index, seg, f["path"]) for f in listed[seg]
                            if f["path"].startswith(f"{kind}-"))
            continue
        pattern = FileSystems.join(index, seg, f"{kind}-*.parquet")
        files += sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    return files


def delete_segment(index: str, segment: str) -> None:
    """Removes an uncommitted segment: a folder locally, every object under its prefix on object stores."""
    path = FileSystems.join(index, segment)
    if path.startswith("gs://"):
        from google.api_core.exceptions import NotFound

        bucket, prefix = _gcs_bucket_and_name(path + "/")
        for blob in bucket.list_blobs(prefix=prefix):
            try:
                blob.delete()
            except NotFound:  # removed meanwhile by another run's cleanup: the same end state
                pass
    elif "://" not in path:
        if FileSystems.exists(path):
            FileSystems.delete([path])
    else:
        objects = [m.path for m in FileSystems.match([path + "/**"])[0].metadata_list]
        if objects:
            FileSystems.delete(objects)

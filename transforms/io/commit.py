"""The output contract: a folder is a synthcap output by its marker, and complete only by its completion record.

    OUT/.synthcap-output   written when a run first claims OUT: {"synthcap_output": 1, "verb", "run_id", "run_key"}
    OUT/.tmp-<run key>/    where the writers of that run write (a name from the run's configuration, no clock)
    OUT/COMPLETE.json      written last, by the graph itself: every output file with path, size and sha256

`CommitOutputs` is the last stage of a pipeline: once every writer has finished (a side input of all written
paths), each staged file is moved into place and hashed where it lies (distributed, one file per element), an
optional `finalize` step runs (the refresh index commit), the staging folder is removed and `COMPLETE.json` is
written. A run killed at any point leaves no `COMPLETE.json`, so `require_complete` refuses the folder; a rerun
of the same configuration clears the partial run and writes the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Callable

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.io.files import InputError, canonical, read_bytes

MARKER = ".synthcap-output"
COMPLETE = "COMPLETE.json"
STAGING = ".tmp-"


class IncompleteOutputError(Exception):
    """A folder that is not a complete synthcap output (no marker, no completion record, or files that differ)."""


class CommittedFileChanged(Exception):
    """A file of a complete output whose bytes are not those its completion record lists (changed after the
    commit): a user error, reported in one line."""


class OutputClaimError(Exception):
    """OUT cannot be claimed for this run (someone else's data, or another run's output without --overwrite)."""


def run_key(verb: str, config: dict) -> str:
    """Names a run by its verb and configuration (inputs and output included): equal runs share a key."""
    blob = json.dumps({"verb": verb, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def staging_dir(output: str, key: str) -> str:
    return FileSystems.join(output, STAGING + key)


def _is_local(path: str) -> bool:
    return "://" not in path


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:
        return False


MAX_RECORD_BYTES = 256 << 20  # a completion record lists ~150 bytes per file: over a million files


def _read_json(path: str):
    """A marker or completion record; a named pipe or device in its place is refused, not opened (it could block
    or never end), and more than MAX_RECORD_BYTES is never read."""
    return json.loads(read_bytes(path, MAX_RECORD_BYTES).decode("utf-8"))


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def _write_local_whole(path: str, data: bytes, exclusive: bool) -> None:
    """Puts `data` at a local `path` all at once: written to a file beside the output folder, then renamed over
    `path` (or, `exclusive`, hard-linked to it, which fails with FileExistsError when `path` exists). A process
    killed mid-way leaves the old marker or none, never a cut one: a cut marker would make the folder look like
    no synthcap output, which no rerun (not even --overwrite) may touch."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(folder)}{MARKER}.", dir=os.path.dirname(folder) or ".")
    except OSError:  # the folder's parent is not writable: write in place, as an object store would
        with open(path, "xb" if exclusive else "wb") as f:
            f.write(data)
        return
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:  # a filesystem without hard links: create in place
                with open(path, "xb") as f:
                    f.write(data)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def list_files(folder: str) -> list[tuple[str, int]]:
    """Every file under `folder` (recursively) as (path, size)."""
    try:
        found = FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list
    except Exception:
        return []
    return sorted((m.path, m.size_in_bytes) for m in found)


def _non_empty(folder: str) -> bool:
    """Whether anything lies in `folder`, without walking it (it may be someone's home)."""
    if _is_local(folder):
        return os.path.isdir(folder) and bool(os.listdir(folder))
    try:
        return bool(FileSystems.match([FileSystems.join(folder, "**")], limits=[1])[0].metadata_list)
    except Exception:
        return False


def read_marker(folder: str) -> dict | None:
    """The marker of a synthcap output folder, or None when `folder` holds none (or an unreadable one)."""
    path = FileSystems.join(folder, MARKER)
    if not _exists(path):
        return None
    try:
        marker = _read_json(path)
    except Exception:
        return None
    return marker if isinstance(marker, dict) and marker.get("synthcap_output") == 1 else None


def is_output(folder: str) -> bool:
    """Whether `folder` is a synthcap output: it holds the marker, or a completion record (a folder copied without
    its hidden files, `cp -r OUT/* COPY/`, lost the marker but is still an output, which `require_complete` refuses;
    read as foreign Parquet, its documents would be mixed twice, unchecked, beside the original's)."""
    if read_marker(folder) is not None:
        return True
    path = FileSystems.join(folder, COMPLETE)
    if not _exists(path):
        return False
    try:  # a crawl folder may hold a file of that name for reasons of its own: only a completion record counts
        record = _read_json(path)
    except Exception:
        return False
    return isinstance(record, dict) and isinstance(record.get("files"), list)


def _relative(folder: str, path: str) -> str:
    return path[len(folder.rstrip("/")) + 1:]


def require_complete(folder: str) -> dict:
    """The completion record of a synthcap output folder; raises IncompleteOutputError (one line) unless the
    marker and `COMPLETE.json` are valid, every listed file is there with its size, and no file is unlisted
    beside them (a shard left by another run)."""
    folder = folder.rstrip("/")
    if read_marker(folder) is None:
        if _exists(FileSystems.join(folder, COMPLETE)):
            raise IncompleteOutputError(f"{folder} is not a synthcap output as it stands: it holds a {COMPLETE} but no "
                                        f"valid {MARKER} marker (copied without its hidden files?); copy the whole "
                                        f"folder (cp -a) or rerun the verb")
        raise IncompleteOutputError(f"{folder} is not a synthcap output (no valid {MARKER} marker)")
    path = FileSystems.join(folder, COMPLETE)
    if not _exists(path):
        raise IncompleteOutputError(f"{folder} is an incomplete synthcap output (no {COMPLETE}: the run did not "
                                    f"finish); rerun it")
    try:
        record = _read_json(path)
        files = record["files"]
        listed = {f["path"]: int(f["size"]) for f in files}
        if not all(isinstance(f["sha256"], str) and len(f["sha256"]) == 64 for f in files):
            raise ValueError("sha256")
    except Exception as e:
        raise IncompleteOutputError(f"{path} is not a valid completion record ({type(e).__name__}: {e})") from None
    on_disk = {_relative(folder, p): size for p, size in list_files(folder)}
    for rel, size in sorted(listed.items()):
        if rel not in on_disk:
            raise IncompleteOutputError(f"{folder} is incomplete: {rel} is listed in {COMPLETE} but missing")
        if on_disk[rel] != size:
            raise IncompleteOutputError(f"{folder} is incomplete: {rel} has {on_disk[rel]} bytes, {COMPLETE} "
                                        f"says {size}")
    parts = {rel.split("/")[0] for rel in listed if "/" in rel}
    for rel in sorted(on_disk):
        if rel.split("/")[0] in parts and rel not in listed:
            raise IncompleteOutputError(f"{folder} holds {rel}, which {COMPLETE} does not list (another run's "
                                        f"file?)")
    return record


def output_root(path: str, cache: dict | None = None) -> str | None:
    """The synthcap output folder holding `path` (the nearest ancestor that `is_output`), or None."""
    cache = {} if cache is None else cache
    folder = path.rstrip("/").rsplit("/", 1)[0] if "/" in path else ""
    seen = []
    root = None
    while folder and folder not in ("gs:/", "gs:"):
        if folder in cache:
            root = cache[folder]
            break
        seen.append(folder)
        if is_output(folder):
            root = folder
            break
        parent = folder.rsplit("/", 1)[0] if "/" in folder else ""
        if parent == folder or (folder.startswith("gs://") and parent.count("/") < 2):
            break
        folder = parent
    for f in seen:
        cache[f] = root
    return root


def complete_outputs(shards) -> dict[str, dict]:
    """For inputs read from synthcap outputs: the completion record of every output folder they lie in;
    raises IncompleteOutputError for the first folder that is not complete. Other inputs pass."""
    cache: dict = {}
    roots = sorted({r for r in (output_root(s.path, cache) for s in shards) if r})
    return {root: require_complete(root) for root in roots}


def committed_entries(shards) -> list[tuple[str, int, str]]:
    """(path, size, sha256) as their completion record lists them, for the inputs that lie in synthcap outputs
    (each folder checked by `require_complete` first); what `VerifyCommitted` checks while the run reads them."""
    cache: dict = {}
    records = complete_outputs(shards)
    entries = []
    for s in shards:
        root = output_root(s.path, cache)
        if root is None:
            continue
        listed = {f["path"]: f for f in records[root]["files"]}
        entry = listed.get(_relative(root, s.path))
        if entry is None:
            raise IncompleteOutputError(f"{s.path} lies in {root} but its {COMPLETE} does not list it")
        entries.append((s.path, int(entry["size"]), entry["sha256"]))
    return sorted(set(entries))


def verify_entry(path: str, size: int, sha256: str) -> int:
    """Raises CommittedFileChanged unless the bytes at `path` are those committed; returns 1."""
    found = file_entry(path, path)
    if found["size"] != size or found["sha256"] != sha256:
        raise CommittedFileChanged(f"{path} was changed after its output was committed (sha256 "
                                   f"{found['sha256'][:12]}…, {found['size']} bytes; the completion record says "
                                   f"{sha256[:12]}…, {size} bytes): rerun the verb that wrote it")
    return 1


class VerifyCommitted(beam.PTransform):
    """(path, size, sha256) entries -> a singleton count, once every file's bytes were hashed and match; a file
    changed after its commit fails the run with CommittedFileChanged. One file per element, so the hashing is
    spread like the reading (sha256 runs at ~0.9 GB/s a core, a small share of what decoding the same bytes
    costs); make the result a side input of a step the commit waits for (the summary's staging), so nothing is
    committed before the check passed."""

    def __init__(self, entries: list[tuple[str, int, str]]):
        super().__init__()
        self._entries = list(entries)

    def expand(self, pbegin):
        return (pbegin | "Entries" >> beam.Create(self._entries)
                | "Spread" >> beam.Reshuffle()
                | "Hash" >> beam.MapTuple(verify_entry)
                | "Verified" >> beam.CombineGlobally(sum))


def read_committed(folder: str, rel: str, record: dict) -> bytes:
    """The bytes of `rel` in a complete output whose completion record is `record`, checked against its sha256
    (CommittedFileChanged otherwise): for files a reader reads whole anyway (a summary, a provenance shard)."""
    listed = {f["path"]: f for f in record["files"]}
    path = FileSystems.join(folder, rel)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read()
    entry = listed.get(rel)
    if entry is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CommittedFileChanged(f"{path} was changed after its output was committed (its sha256 is not the one "
                                   f"{COMPLETE} lists): rerun the verb that wrote it")
    return data


def inside(path: str, folder: str) -> bool:
    """True when `path` lies in `folder` (symlinks and relative paths resolved locally)."""
    p, f = canonical(path), canonical(folder)
    return p == f or p.startswith(f.rstrip("/") + "/")


def outside_output(shards: list, output: str) -> list:
    """The shards of one input pattern that lie outside OUT. A pattern whose every match lies in OUT is refused
    (InputError): the claim would delete what it names before the run reads it. A wider glob's matches in OUT
    (`--input 'data/**' --output data/out`, run again after a crash) are what this run replaces: left out,
    uncounted, so the rerun reads what the first run read."""
    inner = [s.path for s in shards if inside(s.path, output)]
    if inner and len(inner) == len(shards):
        raise InputError(f"input {inner[0]} is inside the output folder {output}: refusing to read what this run "
                         f"replaces")
    return [s for s in shards if not inside(s.path, output)]


def claim_output(output: str, verb: str, run_id: str, key: str, overwrite: bool, parts: tuple[str, ...],
                 resumable: bool = True) -> None:
    """Claims OUT for this run, or raises OutputClaimError without touching anything.

    A new or empty folder is claimed with an exclusive marker (a second run racing for it refuses). A folder
    with a marker is replaced with --overwrite, or without it when it holds an unfinished run of this same
    configuration (a rerun after a crash) and the verb is `resumable`. Only the named `parts`, `COMPLETE.json`
    and staging folders are ever deleted; a non-empty folder without a marker is never touched.
    """
    if _is_local(output) and os.path.exists(output) and not os.path.isdir(output):
        raise OutputClaimError(f"output folder {output} is a file, not a folder")  # or a device: /dev/null
    refuse_inside_an_output(output)
    marker = read_marker(output)
    if marker is None:
        if _non_empty(output):
            raise OutputClaimError(f"output folder {output} is not empty and is not a synthcap output (no {MARKER}); "
                                   f"refusing to write into it, even with --overwrite")
    else:
        theirs = marker.get("verb")
        if theirs != verb and {theirs, verb} != {"curate", "refresh"}:  # other parts: ours would not replace them
            raise OutputClaimError(f"output folder {output} holds a synthcap {theirs} output; {verb} will not replace "
                                   f"it: give another folder")
        complete = _exists(FileSystems.join(output, COMPLETE))
        ours = resumable and marker.get("run_key") == key and marker.get("verb") == verb
        if not overwrite and (complete or not ours):
            state = "a complete" if complete else "another run's unfinished"
            raise OutputClaimError(f"output folder {output} holds {state} synthcap {marker.get('verb')} output; "
                                   f"pass --overwrite to replace it")
        _clear(output, parts, list_files(output))
    content = _json_bytes({"synthcap_output": 1, "verb": verb, "run_id": run_id, "run_key": key})
    path = FileSystems.join(output, MARKER)
    try:
        if marker is None:
            _create_exclusive(path, content)
        elif _is_local(path):
            _write_local_whole(path, content, exclusive=False)
        else:
            _write(path, content)  # an object store replaces an object whole
    except FileExistsError:
        raise OutputClaimError(f"output folder {output} was claimed by another run just now; pass --overwrite to "
                               f"replace it") from None


def refuse_inside_an_output(output: str) -> None:
    """OUT may lie in a synthcap output folder beside its parts (`cur/sub`), never inside one of them
    (`cur/documents/x`: a file its completion record does not list, so every reader would refuse that folder from
    then on), nor anywhere inside an unfinished one, whose parts are not known until it commits."""
    path, cache = canonical(output), {}
    root = output_root(path, cache)
    while root:
        top = _relative(root, path).split("/")[0]
        try:
            record = _read_json(FileSystems.join(root, COMPLETE))
            parts = {f["path"].split("/")[0] for f in record["files"]}
        except Exception:
            raise OutputClaimError(f"output folder {output} lies inside {root}, an unfinished synthcap output: "
                                   f"give a folder outside it") from None
        if top in parts or top in (MARKER, COMPLETE) or top.startswith(STAGING):
            raise OutputClaimError(f"output folder {output} lies inside {root}/{top}, a part of the synthcap output "
                                   f"{root}, which its readers would then refuse: give a folder outside it")
        root = output_root(root, cache)


def _create_exclusive(path: str, data: bytes) -> None:
    if _is_local(path):
        _write_local_whole(path, data, exclusive=True)
        return
    if path.startswith("gs://"):
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import storage

        bucket, _, name = path[len("gs://"):].partition("/")
        try:
            storage.Client().bucket(bucket).blob(name).upload_from_string(data, if_generation_match=0)
        except PreconditionFailed:
            raise FileExistsError(path) from None
        return
    _write(path, data)


def _clear(output: str, parts: tuple[str, ...], existing: list[tuple[str, int]]) -> None:
    """Deletes COMPLETE.json first (so a crash mid-way never leaves a complete-looking folder), then our parts."""
    top = {}
    for path, _ in existing:
        top.setdefault(_relative(output, path).split("/")[0], []).append(path)
    doomed = [n for n in top if n in parts or n.startswith(STAGING)]
    if COMPLETE in top:
        FileSystems.delete(top[COMPLETE])
    for name in sorted(doomed):
        if _is_local(output):
            FileSystems.delete([FileSystems.join(output, name)])
        else:
            FileSystems.delete(top[name])  # every object under that name


def file_entry(path: str, rel: str) -> dict:
    """Path, size and sha256 of the bytes on disk (read back, never the bytes meant to be written)."""
    h, size = hashlib.sha256(), 0
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return {"path": rel, "size": size, "sha256": h.hexdigest()}


def _check_claim(output: str, key: str) -> None:
    marker = read_marker(output)
    if marker is None or marker.get("run_key") != key:
        raise RuntimeError(f"output folder {output} was claimed by another run while this one ran; not committing")


class _MoveAndHash(beam.DoFn):
    """Moves one staged file to its place in OUT and hashes it there."""

    def __init__(self, output: str, staging: str):
        self._out, self._staging = output, staging

    def process(self, path: str, _ready: int):
        rel = _relative(self._staging, path)
        final = FileSystems.join(self._out, rel)
        if _exists(path) or not _exists(final):  # a retried bundle finds the file already moved
            if _is_local(final):
                os.makedirs(os.path.dirname(final), exist_ok=True)
            if _exists(final):
                FileSystems.delete([final])
            FileSystems.rename([path], [final])
        yield file_entry(final, rel)


def _remove(folder: str) -> None:
    """Deletes a folder locally, or every object under its prefix on object stores (which have no folders)."""
    if _is_local(folder):
        if os.path.isdir(folder):
            FileSystems.delete([folder])
        return
    leftovers = [p for p, _ in list_files(folder)]
    if leftovers:
        FileSystems.delete(leftovers)


def _sorted_entries(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda e: e["path"])


class CommitOutputs(beam.PTransform):
    """Staged paths -> files moved into OUT and `OUT/COMPLETE.json` written last (returns its path).

    `finalize`, when given, is `(fn, singleton PCollection)`: `fn(value)` runs after every file is in place and
    before the completion record (the refresh index commit); unless it returns True, the folder stays incomplete.
    """

    def __init__(self, output: str, staging: str, key: str, finalize: tuple[Callable, object] | None = None):
        super().__init__()
        self._out, self._staging, self._key, self._finalize = output, staging, key, finalize

    def expand(self, paths):
        output, staging, key = self._out, self._staging, self._key
        n_files = paths | "CountStaged" >> beam.combiners.Count.Globally()

        def barrier(n):
            _check_claim(output, key)
            return n

        ready = n_files | "CheckClaim" >> beam.Map(barrier)
        entries = (
            paths
            | "Spread" >> beam.Reshuffle()
            | "MoveAndHash" >> beam.ParDo(_MoveAndHash(output, staging), beam.pvalue.AsSingleton(ready))
            | "AllEntries" >> beam.combiners.ToList()
            | "Sort" >> beam.Map(_sorted_entries)
        )
        finalize = self._finalize

        def complete(files: list[dict], *side):
            if len(files) != len({f["path"] for f in files}):
                raise RuntimeError("two writers staged the same path")
            _check_claim(output, key)
            if finalize is not None and not finalize[0](side[0]):
                return None  # the finalizer declined (a refresh that lost its race): OUT stays incomplete
            _remove(staging)
            path = FileSystems.join(output, COMPLETE)
            _write(path, _json_bytes({"synthcap_output": 1, "files": files}))
            return path

        sides = [beam.pvalue.AsSingleton(finalize[1])] if finalize is not None else []
        return entries | "WriteComplete" >> beam.Map(complete, *sides)

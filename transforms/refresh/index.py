"""The refresh index: immutable segments plus one small pointer, committed last and atomically.

Layout under INDEX (a local folder or gs://bucket/prefix):

    CURRENT.json                      {"generation": N, "segments": [...], "params": {...}, "documents": ...}
    segments/seg-NNNNNN-<token>/exact-*.parquet     normalised-text hash -> record (first_seen, id, source, offset)
    segments/seg-NNNNNN-<token>/bands-*.parquet     (band, band hash) -> record
    segments/seg-NNNNNN-<token>/shingles-*.parquet  record -> its distinct 64-bit shingle hashes

A refresh writes a new segment, then commits a pointer that lists it. A run that dies before the commit leaves
the previous pointer (and so the previous generation) intact; its half-written segment is never listed. Two
refreshes racing for the same generation cannot both commit: on gs:// the pointer is written with
`if_generation_match` (the GCS generation read at start), locally the generation is claimed with an exclusive
create and the pointer replaced with an atomic rename. The loser deletes its segment.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from apache_beam.io.filesystems import FileSystems

POINTER = "CURRENT.json"


class CommitConflict(RuntimeError):
    pass


@dataclass(frozen=True)
class IndexParams:
    """Everything that must be equal for index keys to be comparable across refreshes."""

    normalization: str
    ngram: int
    num_perm: int
    bands: int
    rows: int
    seed: int
    threshold: float
    layout: int = 2  # 2: records keyed by (first_seen, id, source, offset), shingles stored for exact verification

    def mismatch(self, other: dict) -> list[str]:
        mine = asdict(self)
        return [f"{k}: index has {other.get(k)!r}, this run {v!r}" for k, v in mine.items() if other.get(k) != v]


def _gcs_bucket_and_name(path: str):
    from google.cloud import storage

    bucket, _, name = path[len("gs://"):].partition("/")
    return storage.Client().bucket(bucket), name


def read_pointer(index: str) -> tuple[dict | None, int]:
    """(pointer or None, the GCS generation of the pointer object: 0 when absent; always 0 locally)."""
    path = FileSystems.join(index, POINTER)
    if index.startswith("gs://"):
        bucket, name = _gcs_bucket_and_name(path)
        blob = bucket.get_blob(name)
        if blob is None:
            return None, 0
        generation = int(blob.generation)  # before the download, which refreshes properties from its headers
        return json.loads(blob.download_as_bytes(if_generation_match=generation)), generation
    if not os.path.exists(path):
        return None, 0
    with open(path) as f:
        return json.load(f), 0


def commit(index: str, pointer: dict, expected_generation: int) -> None:
    data = (json.dumps(pointer, indent=2, sort_keys=True) + "\n").encode()
    path = FileSystems.join(index, POINTER)
    if index.startswith("gs://"):
        from google.api_core.exceptions import PreconditionFailed

        try:
            bucket, name = _gcs_bucket_and_name(path)
            bucket.blob(name).upload_from_string(data, if_generation_match=expected_generation,
                                                 content_type="application/json")
        except PreconditionFailed:
            raise CommitConflict(f"generation {pointer['generation']}") from None
        return
    claims = os.path.join(index, "claims")
    os.makedirs(claims, exist_ok=True)
    try:
        fd = os.open(os.path.join(claims, f"gen-{pointer['generation']:06d}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise CommitConflict(f"generation {pointer['generation']}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp = f"{path}.tmp-{pointer['generation']:06d}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def segment_files(index: str, segments: list[str], kind: str) -> list[str]:
    files = []
    for seg in segments:
        pattern = FileSystems.join(index, seg, f"{kind}-*.parquet")
        files += sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    return files


def delete_segment(index: str, segment: str) -> None:
    """Removes an uncommitted segment: a folder locally, every object under its prefix on object stores."""
    path = FileSystems.join(index, segment)
    if path.startswith("gs://"):
        bucket, prefix = _gcs_bucket_and_name(path + "/")
        for blob in bucket.list_blobs(prefix=prefix):
            blob.delete()
    elif "://" not in path:
        if FileSystems.exists(path):
            FileSystems.delete([path])
    else:
        objects = [m.path for m in FileSystems.match([path + "/**"])[0].metadata_list]
        if objects:
            FileSystems.delete(objects)

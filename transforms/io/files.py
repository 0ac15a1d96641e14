"""File access through Beam's FileSystems, so local paths, globs and gs:// behave the same on every runner."""
from __future__ import annotations

import errno
import glob
import hashlib
import os
import stat
import tempfile
import warnings
from typing import Iterable, NamedTuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.io.filesystems import FileSystems

WARC = "warc"
JSONL = "jsonl"
PARQUET = "parquet"
NON_DOCUMENT = "non_document"  # crawl files without documents: recognised, counted and skipped whole
UNSUPPORTED = "unsupported"  # matched by a glob, but no reader handles the extension: counted and skipped whole

# Checked in order: WAT names end like WARC ones, so they come first.
_SUFFIXES = (
    (NON_DOCUMENT, (".wat", ".wat.gz", ".cdx", ".cdx.gz", ".cdxj", ".cdxj.gz")),
    (WARC, (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet", ".warc.wet.gz", ".arc.warc.gz")),
    (JSONL, (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst", ".ndjson", ".ndjson.gz")),
    (PARQUET, (".parquet",)),
)
SUPPORTED = ", ".join(sfx for fmt, sfxs in _SUFFIXES if fmt != NON_DOCUMENT for sfx in sfxs)
_COMPRESSION = (".gz", ".zst", ".bz2", ".xz", ".zip")


class Shard(NamedTuple):
    """A matched input file: the element that readers split (into ranges of `split_bytes`; 0 = whole)."""

    path: str
    size: int
    format: str
    split_bytes: int = 0


class InputError(ValueError):
    """A user-caused input problem (nothing matched, unknown format): reported as one line."""


def detect_format(path: str) -> str | None:
    lower = path.lower()
    for fmt, suffixes in _SUFFIXES:
        if lower.endswith(suffixes):
            return fmt
    return None


def extension(path: str) -> str:
    """The file's extension as a user would name it: `.txt`, `.tar.gz`; `(none)` without one."""
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    parts = name.split(".")[1:] if not name.startswith(".") else name[1:].split(".")[1:]
    if not parts:
        return "(none)"
    keep = 2 if len(parts) >= 2 and f".{parts[-1]}" in _COMPRESSION else 1
    return "." + ".".join(parts[-keep:])


def canonical(path: str) -> str:
    """The stored file or folder a path names: local paths resolved (`./`, `..`, `//`, symlinks), others as given
    without a trailing slash. One file reached under two names is one input."""
    return os.path.realpath(path) if "://" not in path else path.rstrip("/")


def distinct(paths: Iterable[str]) -> list[str]:
    """Each stored file once, named by the smallest of its names, sorted: read twice, a file's records would
    count twice."""
    names: dict[str, str] = {}
    for path in paths:
        key = canonical(path)
        names[key] = min(names.get(key, path), path)
    return sorted(names.values())


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def match(pattern: str) -> list:
    """FileSystems.match of one pattern. Beam's local file system matches nothing for a glob with no folder part
    (`*.jsonl`), which a user means relative to the working directory: it is matched as `./*.jsonl` and the
    paths are given back as the user would write them."""
    results = FileSystems.match([pattern])[0].metadata_list
    if not results and _is_glob(pattern) and "/" not in pattern and "://" not in pattern:
        results = FileSystems.match(["./" + pattern])[0].metadata_list
        for m in results:
            m.path = m.path[2:] if m.path.startswith("./") else m.path
    if not results and "[" in pattern:  # a file whose name holds brackets, given as it is (`a[1].jsonl`)
        with warnings.catch_warnings():  # Beam's glob translation warns about the escape `[[]`
            warnings.simplefilter("ignore", FutureWarning)
            results = FileSystems.match([glob.escape(pattern)])[0].metadata_list
    for m in results:
        try:
            m.path.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in a local name: no output (JSON, Parquet) can record it
            raise InputError(f"{os.fsencode(m.path)!r}: the file name is not valid UTF-8, and every output names "
                             f"the file it read; rename it") from None
        problem = not_regular(m.path)
        if problem and not problem.endswith("a folder, not a regular file"):
            raise InputError(f"{problem} (reading it could block or never end); synthcap reads regular files")
    if "://" not in pattern:
        _refuse_broken_links(pattern)
    return results


def _refuse_broken_links(pattern: str) -> None:
    """Beam's local match leaves out a symlink whose target is missing or that loops: a crawl shard the run would
    skip unsaid. One a reader would take (by its name) is an InputError; the others are no shards anyway."""
    for path in sorted(glob.iglob(pattern, recursive=True)):
        if not (detect_format(path) and os.path.islink(path)):
            continue
        try:
            os.stat(path)
        except OSError as e:
            why = ("a symlink loop" if e.errno == errno.ELOOP else
                   f"a symbolic link to a missing file ({os.readlink(path)})")
            raise InputError(f"{path} is {why}; synthcap reads regular files") from None


def match_shards(patterns: list[str]) -> list[Shard]:
    """Expand globs into shards, sorted and without repeats; raises InputError naming the first bad pattern.

    Files a glob matches that no reader handles become UNSUPPORTED shards (each counted as one dropped record,
    so the summary reports them); an explicit path of such a file, or a glob matching only such files, is an
    InputError that lists the supported extensions. A file matched under several names (`d/a.jsonl`,
    `./d/a.jsonl`, a symlink) is one shard, named by the smallest of them, so it is read once."""
    found: dict[str, Shard] = {}  # canonical path -> shard
    for pattern in patterns:
        try:
            results = match(pattern)
        except InputError:
            raise
        except Exception as e:  # Beam raises BeamIOError for unreachable schemes and buckets
            raise InputError(f"cannot list {pattern}: {e}") from None
        known = [m for m in results if detect_format(m.path)]
        if not known:
            if "://" not in pattern and not _is_glob(pattern) and os.path.isdir(pattern):
                raise InputError(f"{pattern} is a folder: give {os.path.join(pattern, '')} for the files in it, or "
                                 f"{os.path.join(pattern, '**')} for its whole tree")
            if results and not _is_glob(pattern):
                raise InputError(f"{pattern}: unsupported file type {extension(pattern)}; supported extensions: "
                                 f"{SUPPORTED}")
            exts = sorted({extension(m.path) for m in results})
            skipped = f" ({len(results)} files with unsupported extensions {', '.join(exts)})" if results else ""
            raise InputError(f"no crawl shards match {pattern}{skipped}; supported extensions: {SUPPORTED}")
        for m in results:
            key = canonical(m.path)
            if key not in found or m.path < found[key].path:
                found[key] = Shard(m.path, m.size_in_bytes, detect_format(m.path) or UNSUPPORTED)
    return sorted(found.values(), key=lambda shard: shard.path)


def open_raw(path: str):
    """A seekable binary stream over the stored bytes (no transparent decompression)."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class ByteRanges(RestrictionProvider):
    """Byte ranges of a shard, split into ranges of `shard.split_bytes` where `splittable(shard)` says so."""

    def splittable(self, shard: Shard) -> bool:
        return False

    def initial_restriction(self, shard: Shard):
        return OffsetRange(0, max(shard.size, 1))

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def split(self, shard: Shard, restriction):
        if shard.split_bytes and self.splittable(shard):
            yield from restriction.split(shard.split_bytes)
        else:
            yield restriction

    def restriction_size(self, shard: Shard, restriction):
        return restriction.size()


def _unreadable(path: str, e: Exception) -> OSError:
    """One clear OSError for a file that could not be read: 'no such file' when it is missing."""
    if isinstance(e, FileNotFoundError) or not FileSystems.exists(path):
        return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    return e if isinstance(e, OSError) else OSError(f"cannot read {path}: {str(e).splitlines()[0]}")


def not_regular(path: str) -> str | None:
    """Why a local `path` cannot be read as a file, or None: opening a named pipe blocks until someone writes,
    a device may never end, a folder or a symlink loop has no bytes. Objects of other schemes are files."""
    if FileSystems.get_scheme(path) is not None:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"{path} is a symlink loop" if e.errno == errno.ELOOP else None  # missing: the open says so
    if stat.S_ISREG(mode):
        return None
    kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "a special file")
    return f"{path} is {kind}, not a regular file"


def read_bytes(path: str, limit: int | None = None) -> bytes:
    """The stored bytes of one file, local or on any registered scheme (gs://, ...); OSError when unreadable, not a
    regular file, or (given `limit`) larger than `limit` bytes, which are all that is ever read."""
    problem = not_regular(path)
    if problem:
        raise OSError(problem)
    try:
        with open_raw(path) as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except Exception as e:  # gcsio and other filesystems raise their own types for a missing object
        raise _unreadable(path, e) from None
    if limit is not None and len(data) > limit:
        raise OSError(f"{path} is larger than {limit:,} bytes")
    return data


def local_copy(path: str) -> str:
    """A local file with `path`'s bytes, for libraries that only open local files (fastText). Local paths are
    returned as they are; others are copied once per content into the temp folder, keyed by their sha256."""
    if FileSystems.get_scheme(path) is None:
        problem = not_regular(path)
        if problem:
            raise OSError(problem)
        return path
    cache = os.path.join(tempfile.gettempdir(), "synthcap-files")
    os.makedirs(cache, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=cache, suffix=".partial")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open_raw(path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except Exception as e:
        os.remove(partial)
        raise _unreadable(path, e) from None
    final = os.path.join(cache, f"{h.hexdigest()}-{os.path.basename(path.rstrip('/'))}")
    os.replace(partial, final)  # same content, same name: concurrent copies replace each other harmlessly
    return final

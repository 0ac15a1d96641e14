"""Helpers for tests: run curate in-process and read its outputs back."""
from __future__ import annotations

import array
import glob
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.document import from_table


def read_documents(out: str | Path):
    files = sorted(glob.glob(str(Path(out) / "documents" / "*.parquet")))
    docs = []
    for f in files:
        docs += from_table(pq.read_table(f))
    return docs


def read_jsonl(out: str | Path, part: str) -> list[dict]:
    rows = []
    for f in sorted(glob.glob(str(Path(out) / part / "*.jsonl"))):
        rows += [json.loads(line) for line in open(f)]
    return rows


def summary(out: str | Path) -> dict:
    return json.loads((Path(out) / "summary.json").read_text())


def tree_bytes(out: str | Path, part: str) -> dict[str, bytes]:
    root = Path(out) / part
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def utf8_unchecked(values: list[bytes]) -> pa.Array:
    """A string array over raw bytes, as a foreign writer can leave it (Arrow does not check UTF-8 here)."""
    ends = array.array("i", [0])
    for v in values:
        ends.append(ends[-1] + len(v))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(ends.tobytes()),
                                                            pa.py_buffer(b"".join(values))])

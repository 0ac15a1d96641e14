"""The provenance sidecar: one row per curated document, keyed by id, with lineage, signals and run identity."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from transforms.document import Document, Provenance
from transforms.io.write import WriteSharded, parquet_bytes
from transforms.provenance.schema import LINEAGE


def synthcap_version() -> str:
    try:
        return version("synthcap")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class RunInfo:
    """Identity of a run, derived from its configuration (never from the clock), so reruns are identical."""

    run_id: str
    config_hash: str
    synthcap_version: str

    @classmethod
    def from_config(cls, config: dict, run_id: str | None = None) -> "RunInfo":
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
        return cls(run_id or f"run-{digest[:12]}", digest, synthcap_version())


def lineage_row(doc: Document, run: RunInfo) -> dict:
    row = {name: getattr(doc, name, None) for name in LINEAGE.names if hasattr(doc, name)}
    row.update(Provenance.of(doc.provenance or {}).to_row())
    row.update(synthcap_version=run.synthcap_version, run_id=run.run_id, config_hash=run.config_hash)
    return row


class WriteProvenance(WriteSharded):
    """`<dir>/provenance-SSSSS-of-NNNNN.parquet`, rows sorted by document id."""

    def __init__(self, directory: str, run: RunInfo, rows_per_shard: int = 100_000):
        def encode(docs: list[Document]) -> bytes:
            return parquet_bytes(pa.Table.from_pylist([lineage_row(d, run) for d in docs], schema=LINEAGE))

        super().__init__(FileSystems.join(directory, "provenance"), ".parquet", lambda d: d.id, encode,
                         rows_per_shard, element_type=Document)

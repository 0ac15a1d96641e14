"""The provenance sidecar: one row per curated document, keyed by id, with lineage, signals and run identity."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.document import Document, Provenance, columns_table
from transforms.io.write import WriteSharded, parquet_bytes, record_key
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


_DOC_FIELDS = tuple(f.name for f in dataclasses.fields(Document))
_LINEAGE_DOC = tuple(name for name in LINEAGE.names if name in _DOC_FIELDS)
_lineage_values = operator.attrgetter(*_LINEAGE_DOC)
_NO_PROVENANCE = Provenance()


def lineage_row(doc: Document, run: RunInfo) -> dict:
    row = dict(zip(_LINEAGE_DOC, _lineage_values(doc)))
    row.update(Provenance.of(doc.provenance or _NO_PROVENANCE).to_row())
    row.update(synthcap_version=run.synthcap_version, run_id=run.run_id, config_hash=run.config_hash)
    return row


_ID, _SOURCE, _OFFSET = (LINEAGE.names.index(name) for name in ("id", "source", "offset"))


def _row_key(row: tuple) -> str:
    """A row's place in the sidecar: its document's (`record_key`: id, then source and offset, as the documents
    are sorted), so rows of documents that share an id have one order."""
    return record_key(row[_ID], row[_SOURCE], row[_OFFSET])


class WriteProvenance(beam.PTransform):
    """`<dir>/provenance-SSSSS-of-NNNNN.parquet`, rows sorted by document id, then source and offset. Each
    document's row is made where the document is, so the shuffle to the shards carries rows (no text). `count`:
    the number of documents, when the caller has it (see WriteSharded)."""

    def __init__(self, directory: str, run: RunInfo, rows_per_shard: int = 100_000, count=None):
        super().__init__()
        self._directory, self._run, self._rows, self._count = directory, run, rows_per_shard, count

    def expand(self, docs):
        run, names = self._run, LINEAGE.names

        def row(doc: Document) -> tuple:
            values = lineage_row(doc, run)
            return tuple(values[name] for name in names)

        def encode(rows: list[tuple]) -> bytes:
            return parquet_bytes(columns_table(rows, LINEAGE))

        return (docs
                | "Rows" >> beam.Map(row)
                | "Write" >> WriteSharded(FileSystems.join(self._directory, "provenance"), ".parquet",
                                          _row_key, encode, self._rows, count=self._count))

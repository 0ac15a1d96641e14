"""The rows of a mix: the selected keys joined back to their documents, and the two training-set writers.

Selection (select.py) moves only small keys; the documents wait once, each one bytes object (its identity and
the packed document), for the selection, and only the selected ones go on into the join's shuffle. The join
groups by a coarse bucket (the top bits of the document's priority hash) rather than by document: the in-process
runner holds a group's values decoded, and one object per document, without a key and a list of its own, is
about a third less memory. Within a bucket the join matches on
the full identity (id, where read, offset), so two records sharing an id never meet. Each selected copy becomes a
`Row` that still carries the packed document: the writers unpack it only when they encode a shard, so no stage
holds Document objects for the whole mix.
"""
from __future__ import annotations

import gzip
import marshal
from typing import NamedTuple, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.accounting import count
from transforms.document import Document, DocumentCoder, dolma_line, replace, to_table
from transforms.io.write import WriteSharded, parquet_bytes
from transforms.mix.classify import Item, PlainTupleCoder

_CODER = DocumentCoder()


def pack(doc: Document) -> bytes:
    """A document as compact bytes (the registered Document coder's), for the join's shuffle."""
    return _CODER.encode(doc)


def unpack(blob: bytes) -> Document:
    return _CODER.decode(blob)


def doc_key(doc: Document) -> tuple[str, str, int]:
    """The record's identity, as `Item.key`."""
    return doc.id, doc.source, doc.offset


JOIN_BITS = 12


def join_bucket(priority: int) -> int:
    """The join's group of a document (from `classify.priority`, a 64-bit keyed hash): 2^12 groups."""
    return priority >> (64 - JOIN_BITS)


def waiting(doc: Document, priority: int) -> tuple[int, bytes]:
    """A document as it waits for the selection: (priority, one bytes object holding its identity and packed
    form)."""
    return priority, marshal.dumps((doc.id, doc.source, doc.offset, pack(doc)), 2)


class Row(NamedTuple):
    """One output row: the Parquet writer's sort key, the Dolma writer's, and the packed document with the
    source and copy (epoch) it was selected as."""

    parquet_key: str
    dolma_key: str
    source: str
    epoch: int
    packed: bytes

    def document(self) -> Document:
        doc = unpack(self.packed)
        return replace(doc, metadata={**doc.metadata, "mix_source": self.source, "mix_epoch": str(self.epoch)})


beam.coders.registry.register_coder(Row, PlainTupleCoder)


def _keys(key: tuple[str, str, int], source: str, epoch: int) -> tuple[str, str]:
    doc_id, src, offset = key
    return (f"{doc_id}\x00{src}\x00{offset:020d}",
            f"{source}\x00{doc_id}\x00{src}\x00{offset:020d}\x00{epoch:06d}")


def _join(kv):
    """One bucket: waiting documents (bytes) and selected copies ((key, source, epoch)). A file matched twice
    gives the same record twice: identical bytes, so any copy serves."""
    _, values = kv
    blobs, copies = [], []
    for v in values:
        if isinstance(v, bytes):
            blobs.append(v)
        else:
            copies.append(v)
    if not copies:
        return
    wanted = {key for key, _, _ in copies}
    packed = {}
    for blob in blobs:
        doc_id, src, offset, p = marshal.loads(blob)
        if (doc_id, src, offset) in wanted:
            packed[(doc_id, src, offset)] = p
    for key, source, epoch in sorted(copies):
        yield Row(*_keys(key, source, epoch), source, epoch, packed[key])


def _copy_key(item: Item):
    return join_bucket(item.priority), (item.key, item.source, item.epoch)


def selected_only(waiting_doc: tuple[int, bytes], priorities: frozenset):
    """A waiting document goes on to the join, keyed by its bucket, only if a selected document has its priority.
    The join matches on the full identity, so a record whose 64-bit priority equals a selected one's (another
    record) passes here and is still never taken for it."""
    priority, blob = waiting_doc
    if priority in priorities:
        yield join_bucket(priority), blob


class JoinRows(beam.PTransform):
    """(selected Items, then one or more PCollections of `waiting` documents) -> Row, one per selected copy.

    Only selected documents enter the join: each PCollection of waiting documents is first filtered by a side
    input holding the priority (a 64-bit keyed hash) of every selected document, so the unselected majority never
    reaches the Flatten and the group, and a waiting document is held once (where it waits for the selection)
    rather than three times (the Flatten's buffer, the group's table, its output). The side input is bounded by
    the mix, not the corpus: one int per output document, ~80 bytes decoded (measured), ~1 GiB per worker at 13M
    output documents. Within the join, a file matched twice still meets its own copies, as before."""

    def expand(self, pcolls):
        selected, *documents = pcolls
        copies = selected | "CopyKeys" >> beam.Map(_copy_key)
        wanted = beam.pvalue.AsSingleton(
            selected | "SelectedPriority" >> beam.Map(lambda i: i.priority)
            | "SelectedPriorities" >> beam.CombineGlobally(beam.combiners.ToSetCombineFn())
            | "Frozen" >> beam.Map(frozenset))
        kept = [docs | f"OnlySelected[{i}]" >> beam.FlatMap(selected_only, wanted).with_output_types(Tuple[int, bytes])
                for i, docs in enumerate(documents)]
        return ((copies, *kept) | "JoinInputs" >> beam.Flatten()
                | "JoinGroup" >> beam.GroupByKey() | "Join" >> beam.FlatMap(_join).with_output_types(Row))


def _parquet(rows: list[Row]) -> bytes:
    """Copies of one document share the Parquet key: the Dolma key (which ends with the copy) breaks the tie."""
    count("documents_out", sum(1 for r in rows if r.epoch == 0))  # documents, as the summary counts them
    count("rows_out", len(rows))  # with their upsampled copies
    return parquet_bytes(to_table([r.document() for r in sorted(rows, key=lambda r: (r.parquet_key, r.dolma_key))]))


def _dolma_gz(rows: list[Row]) -> bytes:
    docs = [r.document() for r in rows]  # sorted by the Dolma key, which is unique
    return gzip.compress("".join(dolma_line(d) + "\n" for d in docs).encode("utf-8", "backslashreplace"), mtime=0)


class WriteRows(beam.PTransform):
    """Rows -> `<dir>/train-SSSSS-of-NNNNN.parquet` (Document schema) and `.jsonl.gz` (Dolma); the written paths."""

    def __init__(self, directory: str, rows_per_shard: int):
        super().__init__()
        self._prefix, self._rows = FileSystems.join(directory, "train"), rows_per_shard

    def expand(self, rows):
        parquet = rows | "WriteParquet" >> WriteSharded(self._prefix, ".parquet", lambda r: r.parquet_key, _parquet,
                                                        self._rows)
        dolma = rows | "WriteDolma" >> WriteSharded(self._prefix, ".jsonl.gz", lambda r: r.dolma_key, _dolma_gz,
                                                    self._rows)
        return (parquet, dolma) | "Paths" >> beam.Flatten()

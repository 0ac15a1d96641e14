"""Deterministic sharded writers: the same elements give byte-identical files on any runner and worker count.

Elements are assigned to shards by a hash of their sort key; the shard count comes from the element count (a
side input) and `rows_per_shard`; each shard is sorted by key and written under a fixed name. Elements whose keys
tie (ids repeat across files; one document can be dropped by two mix sources) are ordered by their `repr`, never
by the order they arrived in, which depends on the runner and its workers. One shard is the unit a worker holds,
so `rows_per_shard` bounds worker memory, not the corpus size.
"""
from __future__ import annotations

import io
import itertools
import json
import math
import operator
from typing import Any, Callable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.accounting import count
from transforms.document import Document, DocumentCoder, to_table


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=10_000)
    return sink.getvalue()


def write_bytes(path: str, data: bytes) -> None:
    """Writes exactly these bytes (FileSystems.create would otherwise gzip again any path ending in .gz)."""
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def record_key(doc_id: str, source: str, offset: int) -> str:
    """A record's sort key in the outputs: by id, then the file and offset it was read at (ids may repeat)."""
    return f"{doc_id}\x00{source}\x00{offset:020d}"


def total_order(keyed: list[tuple[str, Any]]) -> list:
    """The elements of (key, element) pairs sorted by key, elements with equal keys by their `repr`: the same
    list whatever order the pairs arrived in. The `repr`s are taken only where keys tie."""
    keyed.sort(key=operator.itemgetter(0))
    out = []
    for _, run in itertools.groupby(keyed, key=operator.itemgetter(0)):
        elements = [e for _, e in run]
        if len(elements) > 1:
            elements.sort(key=repr)
        out += elements
    return out


def _shard_of(key: str, n: int) -> int:
    return xxhash.xxh64_intdigest(key.encode()) % n


class WriteSharded(beam.PTransform):
    """Writes a PCollection as `<prefix>-SSSSS-of-NNNNN<suffix>` files, sorted by `key_fn` within each shard.

    `encode` turns a sorted list of elements into file bytes. Returns the written paths. `count`: a singleton
    PCollection holding the number of elements, when the caller counts them already (one count can serve
    several writers of the same documents); counted here otherwise. `batched`: each element of the PCollection
    is a list of elements, assigned to shards list by list (the same files as the elements one by one, without
    a shuffle element per record; the keys are computed again where a shard is sorted, not shuffled).
    """

    def __init__(self, prefix: str, suffix: str, key_fn: Callable[[Any], str], encode: Callable[[list], bytes],
                 rows_per_shard: int = 100_000, write_empty: bool = True, element_type: Any = Any, count=None,
                 batched: bool = False):
        super().__init__()
        self._batched = batched
        self._type = element_type  # the elements' coder on the shuffle to their shard
        self._prefix, self._suffix = prefix, suffix
        self._key_fn, self._encode = key_fn, encode
        self._rows = rows_per_shard
        self._write_empty = write_empty
        self._count = count

    def expand(self, pcoll):
        rows, key_fn, encode = self._rows, self._key_fn, self._encode
        prefix, suffix, want_empty = self._prefix, self._suffix, self._write_empty

        def path_of(i: int, n: int) -> str:
            return f"{prefix}-{i:05d}-of-{n:05d}{suffix}"

        batched = self._batched
        if self._count is not None:
            counted = self._count
        elif batched:
            counted = pcoll | "Sizes" >> beam.Map(len) | "Count" >> beam.CombineGlobally(sum)
        else:
            counted = pcoll | "Count" >> beam.combiners.Count.Globally()
        n_shards = counted | "Shards" >> beam.Map(lambda c: max(1, math.ceil(c / rows)))

        def assign(e, n):
            k = key_fn(e)
            return _shard_of(k, n), (k, e)

        def assign_batch(batch, n):
            shards = {}
            for e in batch:
                shards.setdefault(_shard_of(key_fn(e), n), []).append(e)
            yield from shards.items()

        def write(kv, n):
            i, items = kv
            if batched:
                elements = total_order([(key_fn(e), e) for e in itertools.chain.from_iterable(items)])
            else:
                elements = total_order(list(items))
            path = path_of(i, n)
            write_bytes(path, encode(elements))
            return path

        def write_empty(c):
            if c == 0 and want_empty:
                path = path_of(0, 1)
                write_bytes(path, encode([]))
                yield path

        n_side = beam.pvalue.AsSingleton(n_shards)
        if batched:
            assigned = pcoll | "Assign" >> beam.FlatMap(assign_batch, n_side).with_output_types(tuple[int, list])
        else:
            assigned = pcoll | "Assign" >> beam.Map(assign, n_side).with_output_types(
                tuple[int, tuple[str, self._type]])
        written = (
            assigned
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.Map(write, n_side)
        )
        empty = counted | "WriteEmpty" >> beam.FlatMap(write_empty)
        return (written, empty) | "Paths" >> beam.Flatten()


_CODER = DocumentCoder()


def _encode_documents(packed: list[tuple[str, bytes]]) -> bytes:
    count("documents_out", len(packed))
    return parquet_bytes(to_table([_CODER.decode(data) for _, data in packed]))


def _to_json(item) -> str:
    return item.to_json()


def _doc_key(d: Document) -> str:
    return record_key(d.id, d.source, d.offset)


def _pack(d: Document) -> tuple[str, bytes]:
    return _doc_key(d), _CODER.encode(d)


class WriteDocuments(beam.PTransform):
    """Documents as Parquet in the Document schema: `<dir>/documents-SSSSS-of-NNNNN.parquet`. Each document is
    encoded once (`DocumentCoder` bytes beside its sort key) where it is made, so the step that assigns shards,
    which waits for the count, moves bytes without decoding and re-encoding them. `count`: as for WriteSharded,
    the number of documents."""

    def __init__(self, directory: str, rows_per_shard: int = 100_000, name: str = "documents", count=None):
        super().__init__()
        self._write = WriteSharded(FileSystems.join(directory, name), ".parquet", operator.itemgetter(0),
                                   _encode_documents, rows_per_shard, element_type=tuple[str, bytes], count=count)

    def expand(self, docs):
        return (docs
                | "Pack" >> beam.Map(_pack).with_output_types(tuple[str, bytes])
                | "Write" >> self._write)


class WriteJsonRecords(WriteSharded):
    """Records as sorted JSON lines (by default through their `to_json()`: drops, dead letters)."""

    def __init__(self, directory: str, name: str, key_fn: Callable[[Any], str], rows_per_shard: int = 500_000,
                 encode_item: Callable[[Any], str] = _to_json, count=None, batched: bool = False):
        def encode(items: list) -> bytes:
            return "".join(encode_item(i) + "\n" for i in items).encode("utf-8", "backslashreplace")

        super().__init__(FileSystems.join(directory, name), ".jsonl", key_fn, encode, rows_per_shard, count=count,
                         batched=batched)


def write_json(path: str, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())

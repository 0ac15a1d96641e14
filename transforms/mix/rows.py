"""The rows of a mix: the selected keys joined back to their documents, and the two training-set writers.

Selection (select.py) moves only small keys; no document waits for it. Once it is made, the inputs are read again
(`io.read.ReadAgain`): only the rows of a selected record (a side input of 64-bit `identity_hash`es, one per
selected document) become Documents, and only those enter the join. Files that cannot be read again (line and
record formats) send their documents to wait instead, packed, filtered by the same side input. The join groups
by a coarse bucket of the identity hash rather than by document (the in-process runner holds a group's values
decoded; one bytes object per document is about a third less memory than a keyed list) and matches on the full
identity (id, where read, offset), so two records sharing an id never meet. The second read must find what the
first classified: each selected copy carries its `classify.fingerprint`, the document read again is classified
again, and a copy whose document is missing or different fails the run (`InputChanged`): the selection, and the
certified bound, were made on the first read's text. (The fingerprint, which holds a hash of the text, also keeps
two records of one identity, one crawl in two curated folders or two files of Dolma lines that name the same
source and offset, from being taken for each other.) Each selected copy becomes a `Row` that still carries the
packed document: the writers unpack it only when they encode a shard, so no stage holds Document objects for
the whole mix.
"""
from __future__ import annotations

import gzip
import marshal
from typing import NamedTuple, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.accounting import count
from transforms.document import Document, DocumentCoder, dolma_line, identity_hash, replace, to_table
from transforms.io.read import ReadAgain, can_read_again
from transforms.io.write import WriteSharded, parquet_bytes
from transforms.mix.classify import Item, PlainTupleCoder, classify, fingerprint
from transforms.mix.config import MixConfig

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


def join_bucket(loc: int) -> int:
    """The join's group of a document (from its `identity_hash`): 2^12 groups."""
    return loc >> (64 - JOIN_BITS)


def waiting(doc: Document, item) -> tuple[int, bytes]:
    """A document on its way to the join: (its identity hash, one bytes object holding its identity, the
    fingerprint of its classification (`classify.fingerprint`, None if it has no Item) and its packed form)."""
    fp = fingerprint(item) if type(item) is Item else None
    blob = marshal.dumps((doc.id, doc.source, doc.offset, fp, pack(doc)), 2)
    return identity_hash(doc.id, doc.source, doc.offset), blob


class InputChanged(RuntimeError):
    """A selected record is missing from the second read of its file, or is not what the first read classified:
    the file changed during the mix. Raised by the join, so nothing is committed."""


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
    """One bucket: documents (bytes, see `waiting`) and selected copies ((key, source, epoch, fingerprint)). A
    copy takes a document with its identity and fingerprint; of several (a file matched twice, one crawl curated
    twice), the smallest bytes, so the choice never depends on arrival order."""
    _, values = kv
    blobs, copies = [], []
    for v in values:
        if isinstance(v, bytes):
            blobs.append(v)
        else:
            copies.append(v)
    if not copies:
        return
    wanted = {copy[0] for copy in copies}
    found = {}
    for blob in blobs:
        doc_id, src, offset, fp, p = marshal.loads(blob)
        if (doc_id, src, offset) in wanted:
            fps = found.setdefault((doc_id, src, offset), {})
            fps[fp] = min(fps.get(fp, p), p)
    for key, source, epoch, fp in sorted(copies, key=lambda c: c[:3]):
        packed = found.get(key, {}).get(tuple(fp))
        if packed is None:
            doc_id, src, offset = key
            what = "is missing from" if key not in found else "is not the same document in"
            raise InputChanged(f"document {doc_id!r} ({src} offset {offset}), selected for source {source!r} in the "
                               f"first read of its inputs, {what} the second read: an input changed during the mix. "
                               f"Nothing was committed; run the mix again once its inputs no longer change")
        yield Row(*_keys(key, source, epoch), source, epoch, packed)


def _copy_key(item: Item):
    return join_bucket(identity_hash(*item.key)), (item.key, item.source, item.epoch, fingerprint(item))


def selected_only(waiting_doc: tuple[int, bytes], wanted: frozenset):
    """A document goes on to the join, keyed by its bucket, only if a selected document has its identity hash. The
    join matches on the full identity, so a record whose hash equals a selected one's passes here and is still
    never taken for it."""
    loc, blob = waiting_doc
    if loc in wanted:
        yield join_bucket(loc), blob


class _ReadAgainClassified(beam.DoFn):
    """A document read again -> (its join bucket, its `waiting` bytes), classified as in the first read."""

    def __init__(self, cfg: MixConfig, usable: frozenset, source: str, folder: str):
        self._cfg, self._usable, self._source, self._folder = cfg, usable, source, folder

    def setup(self):
        self._anchor = next(s.anchor for s in self._cfg.sources if s.name == self._source)

    def process(self, doc: Document):
        loc, blob = waiting(doc, classify(doc, self._source, self._folder, self._cfg, self._usable, self._anchor))
        yield join_bucket(loc), blob


class JoinRows(beam.PTransform):
    """(selected Items, `waiting` documents of files that cannot be read again) -> Row, one per selected copy.

    `parts`: (source name, curated folder or "", shards) of every input, as the first read had them; the Parquet
    ones are read again (`ReadAgain`) once the selection is made, for the selected rows only. The side input of
    selected identity hashes is bounded by the mix, not the corpus: one int per output document (~80 bytes
    decoded, ~1 GiB per worker at 13M output documents). Only selected documents enter the join's Flatten and
    group; no document waits in the runner while selection runs."""

    def __init__(self, cfg: MixConfig, usable: frozenset, parts: list):
        super().__init__()
        self._cfg, self._usable, self._parts = cfg, frozenset(usable), list(parts)

    def expand(self, pcolls):
        selected, waiting_docs = pcolls
        copies = selected | "CopyKeys" >> beam.Map(_copy_key)
        wanted = beam.pvalue.AsSingleton(
            selected | "SelectedLocation" >> beam.Map(lambda i: identity_hash(*i.key))
            | "SelectedLocations" >> beam.CombineGlobally(beam.combiners.ToSetCombineFn())
            | "Frozen" >> beam.Map(frozenset))
        kept = [waiting_docs | "OnlySelected" >> beam.FlatMap(selected_only, wanted).with_output_types(
            Tuple[int, bytes])]
        for i, (source, folder, shards) in enumerate(self._parts):
            again = [s for s in shards if can_read_again(s.path)]
            if again:
                kept.append(selected.pipeline | f"ReadAgain[{i}]" >> ReadAgain(again, wanted)
                            | f"Classified[{i}]" >> beam.ParDo(_ReadAgainClassified(
                                self._cfg, self._usable, source, folder)).with_output_types(Tuple[int, bytes]))
        return ((copies, *kept) | "JoinInputs" >> beam.Flatten()
                | "JoinGroup" >> beam.GroupByKey() | "Join" >> beam.FlatMap(_join).with_output_types(Row))


def _parquet(rows: list[Row]) -> bytes:
    """Copies of one document share the Parquet key: the Dolma key (which ends with the copy) breaks the tie, and
    the document's bytes break a tie of records of two files that share their identity (id, source, offset)."""
    count("documents_out", sum(1 for r in rows if r.epoch == 0))  # documents, as the summary counts them
    count("rows_out", len(rows))  # with their upsampled copies
    return parquet_bytes(to_table([r.document() for r in sorted(rows, key=lambda r: (r.parquet_key, r.dolma_key,
                                                                                       r.packed))]))


def _dolma_gz(rows: list[Row]) -> bytes:
    docs = [r.document() for r in sorted(rows, key=lambda r: (r.dolma_key, r.packed))]  # see _parquet
    return gzip.compress("".join(dolma_line(d) + "\n" for d in docs).encode("utf-8", "backslashreplace"), mtime=0)


class WriteRows(beam.PTransform):
    """Rows -> `<dir>/train-SSSSS-of-NNNNN.parquet` (Document schema) and `.jsonl.gz` (Dolma); the written paths."""

    def __init__(self, directory: str, rows_per_shard: int):
        super().__init__()
        self._prefix, self._rows = FileSystems.join(directory, "train"), rows_per_shard

    def expand(self, rows):
        # typed, so each row crosses the shuffle to its shard as a plain tuple (`PlainTupleCoder`), not pickled
        parquet = rows | "WriteParquet" >> WriteSharded(self._prefix, ".parquet", lambda r: r.parquet_key, _parquet,
                                                        self._rows, element_type=Row)
        dolma = rows | "WriteDolma" >> WriteSharded(self._prefix, ".jsonl.gz", lambda r: r.dolma_key, _dolma_gz,
                                                    self._rows, element_type=Row)
        return (parquet, dolma) | "Paths" >> beam.Flatten()

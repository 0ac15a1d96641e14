"""A mix's input parts, each read and classified in one step: Items (in Batches), the mixer's drops (in
DropBatches), its dead letters and, once per bundle, the bundle's totals (`totals_fns`).

Parquet parts (`ReadClassified`): the reader decides what is read, dropped or dead-lettered, record for record as
`ReadCrawl` decides it, but the rows it emits as they are (`ReadParquetFn._plain`: in a curated folder, all of them)
are classified from the columns classification reads, and no Document is built for them: building Documents that
selection never looks at again was most of a mix's first read (the selected rows are read again, rows.py). The
table's other rows, and every document of other formats (`ClassifyDocuments`), are classified as Documents. Both go
through `classify.classify_rows`, the one definition.
"""
from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED, DeadLetter, Dropped, dead_letter
from transforms.document import Document
from transforms.io.files import Shard
from transforms.io.parquet import ReadParquetFn
from transforms.io.read import DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_SPLIT_BYTES
from transforms.mix.classify import BATCH, FIELDS, PROVENANCE_FIELDS, Batch, Item, classify_rows, fields_of
from transforms.mix.config import MixConfig
from transforms.mix.drops import DropBatch, DropRecord, Ledger
from transforms.mix.plan import Supply
from transforms.mix.report import SourceStats
from transforms.mix.rows import waiting
from transforms.tokens import count_tokens

ITEMS, TOTALS, READ = "items", "totals", "read"
_COLUMNS = FIELDS + tuple(f"provenance.{name}" for name in PROVENANCE_FIELDS)
_ID, _TEXT, _SOURCE, _OFFSET = (FIELDS.index(name) for name in ("id", "text", "source", "offset"))


class _SumSupply(beam.CombineFn):
    def __init__(self, key_fn):
        self._key = key_fn

    def create_accumulator(self):
        return {}

    def add_input(self, acc, item: Item):
        s = acc.get(self._key(item))
        if s is None:
            acc[self._key(item)] = [item.units, 1, item.excess, item.tokens]
        else:
            s[0] += item.units
            s[1] += 1
            s[2] += item.excess
            s[3] += item.tokens
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for k, s in a.items():
                t = out.get(k)
                out[k] = list(s) if t is None else [x + y for x, y in zip(t, s)]
        return out

    def extract_output(self, acc):
        return {k: Supply(*s) for k, s in acc.items()}


def totals_fns(cfg: MixConfig) -> tuple[beam.CombineFn, beam.CombineFn]:
    """Items -> offered `SourceStats` and supply {key: Supply}: the plan's input. The supply key is (source, group,
    grid level) when certified, (source, stream) under a rule."""
    key = (lambda i: (i.source, i.group, i.level)) if cfg.rule == "certified" else (lambda i: (i.source, i.stream))
    return SourceStats(), _SumSupply(key)


class _Gather:
    """A classifying step's bundle: Items in Batches, the mixer's drops in a Ledger (DropBatches), and the bundle's
    accumulators of `totals_fns`, folded here item by item rather than by a combiner's steps per document.
    `_DROPPED` and `_DEAD` are the tags of the mixer's drops and dead letters."""

    _DROPPED, _DEAD = DROPPED, DEAD_LETTERS

    def _setup_gather(self, cfg: MixConfig, usable: frozenset, source: str, folder: str):
        self._cfg, self._usable, self._source, self._folder = cfg, usable, source, folder

    def setup(self):
        self._anchor = next(s.anchor for s in self._cfg.sources if s.name == self._source)
        self._stats, self._supply = totals_fns(self._cfg)

    def start_bundle(self):
        self._totals = (self._stats.create_accumulator(), self._supply.create_accumulator())
        self._items, self._drops = Batch(), Ledger()

    def _classified(self, rows, tokens) -> list:
        return classify_rows(rows, tokens, self._source, self._folder, self._cfg, self._usable, self._anchor)

    def _gather(self, outcomes, ids, sources, offsets):
        """Each document's outcome (`classify_rows`) to its place; yields the Batches and DropBatches that fill up,
        and the dead letters."""
        stats, supply = self._stats, self._supply
        for out, doc_id, src, offset in zip(outcomes, ids, sources, offsets):
            if type(out) is Item:
                stats.add_input(self._totals[0], out)
                supply.add_input(self._totals[1], out)
                self._items.append(out)
                if len(self._items) >= BATCH:
                    yield self._items
                    self._items = Batch()
            elif out[0] == "drop":
                self._drops.drop(DropRecord(doc_id, out[1], src, offset, self._source))
                if len(self._drops) >= BATCH:
                    yield beam.pvalue.TaggedOutput(self._DROPPED, self._drops.batch())
            else:
                out = dead_letter(src, offset, out[0], out[1], "mix")
                yield beam.pvalue.TaggedOutput(self._DEAD, out.value)

    def finish_bundle(self):
        if self._items:
            yield GlobalWindows.windowed_value(self._items)
        if self._drops:
            yield beam.pvalue.TaggedOutput(self._DROPPED, GlobalWindows.windowed_value(self._drops.batch()))
        yield beam.pvalue.TaggedOutput(TOTALS, GlobalWindows.windowed_value(self._totals))


class _ClassifyFn(_Gather, beam.DoFn):
    """A part's Documents -> their Items, drops and dead letters. A document of a file that is not read again after
    the selection also goes on, packed, to wait for it (rows.py)."""

    def __init__(self, cfg: MixConfig, usable: frozenset, source: str, folder: str, read_again: bool):
        self._setup_gather(cfg, usable, source, folder)
        self._again = read_again

    def process(self, doc: Document):
        out = self._classified([fields_of(doc)], [count_tokens(doc.text)])
        yield from self._gather(out, (doc.id,), (doc.source,), (doc.offset,))
        if not self._again and type(out[0]) is Item:
            yield beam.pvalue.TaggedOutput(DOCUMENTS, waiting(doc, out[0]))


class ClassifyDocuments(beam.PTransform):
    """A part's Documents -> {"items": Batches, "dropped": DropBatches, "dead_letters", "totals": one per bundle,
    "documents": the `rows.waiting` documents, when the part is not read again after the selection}."""

    def __init__(self, cfg: MixConfig, usable: frozenset, source: str, folder: str, read_again: bool):
        super().__init__()
        self._args = (cfg, usable, source, folder, read_again)

    def expand(self, docs):
        out = docs | "Classify" >> beam.ParDo(_ClassifyFn(*self._args)).with_output_types(
            Batch, dropped=DropBatch, dead_letters=DeadLetter, documents=Any, totals=Any).with_outputs(
            DROPPED, DEAD_LETTERS, DOCUMENTS, TOTALS, main=ITEMS)
        return {tag: out[tag] for tag in (ITEMS, DROPPED, DEAD_LETTERS, TOTALS, DOCUMENTS)}


_MIX_DROPPED, _MIX_DEAD = "mix_dropped", "mix_dead_letters"


class _ReadClassifiedFn(_Gather, ReadParquetFn):
    """`ReadParquetFn` whose kept records are classified where they are read. Its reader's drops and dead letters
    come out as the reader makes them (each one record read); the documents it keeps are counted per row group on
    the `read` output, and the mixer's drops and dead letters have tags of their own."""

    _DROPPED, _DEAD = _MIX_DROPPED, _MIX_DEAD

    def __init__(self, max_document_bytes: int, cfg: MixConfig, usable: frozenset, source: str, folder: str):
        ReadParquetFn.__init__(self, max_document_bytes)
        self._setup_gather(cfg, usable, source, folder)

    def records(self, output) -> int:
        if type(output) is not beam.pvalue.TaggedOutput:
            return 0  # a Batch of Items: documents counted on `read`
        if output.tag == READ:
            return output.value
        return 1 if output.tag in (DROPPED, DEAD_LETTERS) else 0

    def _records(self, table, typed, group, first_row, shard, rows=None):
        plain = None if rows is not None else self._plain(table, typed, _COLUMNS)
        if plain is None:
            yield from self._documents(super()._records(table, typed, group, first_row, shard, rows))
            return
        kept, columns = plain
        outcomes = self._classified(zip(*columns), map(count_tokens, columns[_TEXT]))
        yield from self._gather(outcomes, columns[_ID], columns[_SOURCE], columns[_OFFSET])
        yield beam.pvalue.TaggedOutput(READ, len(kept))
        if len(kept) < table.num_rows:
            rest = sorted(set(range(table.num_rows)).difference(kept))
            yield from self._documents(super()._records(table, typed, group, first_row, shard, rest))

    def _documents(self, outputs):
        """The reader's outputs record by record: its drops and dead letters as they are, its Documents classified."""
        docs = []
        for out in outputs:
            if type(out) is beam.pvalue.TaggedOutput:
                yield out
            else:
                docs.append(out)
        if docs:
            yield from self._gather(self._classified(map(fields_of, docs), [count_tokens(d.text) for d in docs]),
                                    [d.id for d in docs], [d.source for d in docs], [d.offset for d in docs])
            yield beam.pvalue.TaggedOutput(READ, len(docs))


class ReadClassified(beam.PTransform):
    """Parquet shards of one mix part -> (what was read: {"dropped": the reader's Dropped, "dead_letters": its
    DeadLetters, "read": documents kept, counted in parts}, the part classified: {"items", "dropped", "dead_letters",
    "totals"} as `ClassifyDocuments` gives them). Split by row group as `ReadCrawl` splits Parquet."""

    def __init__(self, shards: list[Shard], cfg: MixConfig, usable: frozenset, source: str, folder: str,
                 max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES, split_bytes: int = DEFAULT_SPLIT_BYTES):
        super().__init__()
        self._shards = [s._replace(split_bytes=split_bytes) for s in shards]
        self._fn = _ReadClassifiedFn(max_document_bytes, cfg, usable, source, folder)

    def expand(self, pbegin):
        out = (pbegin | "Shards" >> beam.Create(self._shards) | "Spread" >> beam.Reshuffle()
               | "Read" >> beam.ParDo(self._fn).with_output_types(Batch, dropped=Dropped, dead_letters=DeadLetter,
                                                                  read=int, mix_dropped=DropBatch,
                                                                  mix_dead_letters=DeadLetter, totals=Any)
               .with_outputs(DROPPED, DEAD_LETTERS, READ, _MIX_DROPPED, _MIX_DEAD, TOTALS, main=ITEMS))
        read = {DROPPED: out[DROPPED], DEAD_LETTERS: out[DEAD_LETTERS], READ: out[READ]}
        return read, {ITEMS: out[ITEMS], DROPPED: out[_MIX_DROPPED], DEAD_LETTERS: out[_MIX_DEAD],
                      TOTALS: out[TOTALS]}

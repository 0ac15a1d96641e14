"""The human reference: documents known to be human, grouped so that each scored document is calibrated against
human text from its own site, and the conformal p-value that calibration gives.

A reference document is a scored document dated before ChatGPT's release (`provenance.pre_llm`) in the same run
whose duplicate cluster held no later copy (`calibrates`), or any document of an earlier curated run passed as
`--human_reference`. Groups, most specific first:
`domain:<registered domain>`, `source:<crawl id>` (pooled per crawl), `global`. A document is served by the first
of its groups that holds at least `MIN_REFERENCE` reference documents; with none, it has no reference.

Cross-fit: a keyed hash of (seed, record) puts every record (reference or not) in half 0 or 1, and a record is
only ever compared with the other half of its group, so a reference document never calibrates itself. Each half
keeps at most `MAX_PER_HALF` scores (the smallest keyed hashes, so the sample is the same whatever the order or
the worker count): the side input stays bounded whatever the crawl size.
"""
from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass

import apache_beam as beam
import xxhash

from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED, count
from transforms.dates import is_pre_llm
from transforms.document import Document
from transforms.tokens import count_tokens

MIN_REFERENCE = 200
MAX_PER_HALF = 2000
ALPHA = 0.05  # the flag threshold keeps at most this share of a group's human documents


def record_key(doc: Document) -> str:
    """Unique per record even when ids collide across files."""
    return f"{doc.id}\x00{doc.source}\x00{doc.offset}"


def _hash(seed: int, salt: str, doc: Document) -> int:
    return xxhash.xxh3_64_intdigest(f"{seed}\x00{salt}\x00{record_key(doc)}".encode())


def half_of(doc: Document, seed: int) -> int:
    return _hash(seed, "half", doc) & 1


def trained_on(record, split: dict | None) -> bool:
    """Whether a domain-adapted detector (its card's `reference.split`) trained on this record: such records never
    serve as reference. `record` is a Document or its (id, source, offset)."""
    if not split:
        return False
    key = record_key(record) if isinstance(record, Document) else "\x00".join(str(x) for x in record)
    u = xxhash.xxh3_64_intdigest(f"{split['seed']}\x00train\x00{key}".encode()) / 2**64
    return u < float(split["train_fraction"])


def is_reference(doc: Document) -> bool:
    """Dated before 2022-11-30 in this run (pre-LLM): human to a very good approximation."""
    return (doc.provenance or {}).get("pre_llm") is True


def has_later_copy(doc: Document) -> bool:
    """Its duplicate cluster held a copy captured on or after the cutoff (dedup kept this earlier one)."""
    return is_pre_llm(doc.last_seen) is False


def calibrates(doc: Document) -> bool:
    """A pre-LLM page of this run that may calibrate: not one with a later copy. Dedup keeps the earliest copy, so
    the newer pages that survive are those with no earlier copy; a reference of pages with no later copy is drawn
    the same way, and the p-values stay valid for them (a reference rich in pages whose new copies were removed,
    texts that recur, would not be)."""
    return is_reference(doc) and not has_later_copy(doc)


def group_candidates(doc: Document) -> list[str]:
    domain = (doc.provenance or {}).get("registered_domain") or doc.domain
    out = [f"domain:{domain}"] if domain else []
    return out + [f"source:{doc.crawl_id or 'unknown'}", "global"]


def conformal_pvalue(score: float, ref_sorted) -> float:
    """(1 + #{reference scores >= score}) / (n + 1): under the hypothesis that the document is drawn like the human
    reference, P(p <= u) <= u. `ref_sorted` is ascending."""
    n = len(ref_sorted)
    return (1 + n - bisect.bisect_left(ref_sorted, score)) / (n + 1)


def conformal_threshold(ref_sorted, alpha: float = ALPHA) -> float:
    """The ceil((n + 1)(1 - alpha))-th smallest reference score: a new human document exceeds it with probability
    at most alpha. +inf (nothing flagged) when the reference is too small for that guarantee."""
    k = math.ceil((len(ref_sorted) + 1) * (1 - alpha))
    return float(ref_sorted[k - 1]) if 0 < k <= len(ref_sorted) else math.inf


@dataclass(frozen=True)
class ReferenceGroup:
    """One group's reference: per half, the (capped) ascending scores and the token counts of the same documents;
    the group's full size; cross-fitted flag thresholds and their held-out false-positive rate."""

    group: str
    documents: int
    halves: tuple[tuple[float, ...], tuple[float, ...]]
    tokens: tuple[tuple[int, ...], tuple[int, ...]]

    def other(self, half: int) -> tuple[float, ...]:
        return self.halves[1 - half]

    def threshold_for(self, half: int) -> float:
        """The threshold that documents of `half` are flagged above: fitted on the other half."""
        return conformal_threshold(self.other(half))

    @property
    def usable(self) -> bool:
        """Both halves are large enough for a finite ALPHA threshold (a group that can flag nothing would make
        every share look like 0)."""
        return all(math.isfinite(conformal_threshold(h)) for h in self.halves)

    def held_out_fpr(self) -> tuple[float, float]:
        """(share of reference tokens flagged at the threshold fitted on the other half, effective number of
        documents): the false-positive rate in the ceiling's unit, tokens, as the estimate needs it."""
        flagged = total = squares = 0
        for i, (scores, tokens) in enumerate(zip(self.halves, self.tokens)):
            cut = bisect.bisect_right(scores, self.threshold_for(i))
            flagged += sum(tokens[cut:])
            total += sum(tokens)
            squares += sum(t * t for t in tokens)
        if total == 0:
            return 0.0, 0.0
        return flagged / total, total * total / squares


class _BoundedSample(beam.CombineFn):
    """Per half: the count and the MAX_PER_HALF (hash, score, tokens) items with the smallest hashes."""

    def create_accumulator(self):
        return [0, 0], [[], []]

    def add_input(self, acc, item):
        half, rank, score, tokens = item
        acc[0][half] += 1
        heap = acc[1][half]
        entry = (-rank, -score, tokens)
        if len(heap) < MAX_PER_HALF:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)
        return acc

    def merge_accumulators(self, accs):
        counts, heaps = [0, 0], [[], []]
        for c, h in accs:
            for i in (0, 1):
                counts[i] += c[i]
                heaps[i].extend(h[i])
        for h in heaps:  # keep the MAX_PER_HALF largest entries (smallest hashes) as a valid min-heap
            h[:] = heapq.nlargest(MAX_PER_HALF, h)
            heapq.heapify(h)
        return counts, heaps

    def extract_output(self, acc):
        counts, heaps = acc
        halves = [sorted((-s, t) for _, s, t in h) for h in heaps]
        return (sum(counts), tuple(tuple(s for s, _ in h) for h in halves),
                tuple(tuple(t for _, t in h) for h in halves))


class BuildReference(beam.PTransform):
    """Scored reference documents -> (group, ReferenceGroup) for every group with at least MIN_REFERENCE
    documents; meant as an AsDict side input."""

    def __init__(self, seed: int):
        super().__init__()
        self._seed = seed

    def expand(self, docs):
        seed = self._seed

        def keyed(doc: Document):
            item = (half_of(doc, seed), _hash(seed, "sample", doc), doc.ai_score, count_tokens(doc.text))
            return [(g, item) for g in group_candidates(doc)]

        return (
            docs
            | "Scored" >> beam.Filter(lambda d: d.ai_score is not None)
            | "ByGroup" >> beam.FlatMap(keyed)
            | "Sample" >> beam.CombinePerKey(_BoundedSample())
            | "LargeEnough" >> beam.Filter(lambda kv: kv[1][0] >= MIN_REFERENCE)
            | "ToGroup" >> beam.MapTuple(lambda g, s: (g, ReferenceGroup(g, *s)))
        )


def serving_group(doc: Document, references: dict) -> ReferenceGroup | None:
    for g in group_candidates(doc):
        ref = references.get(g)
        if ref is not None:
            return ref
    return None


class _ToDocument(beam.DoFn):
    def process(self, row: dict):
        from transforms.document import from_row

        try:
            doc = from_row(row)
        except Exception:
            count("reference_unreadable")
            return
        if not isinstance(doc.text, str) or not doc.text.strip():
            count("reference_unreadable")
            return
        count("reference_read")
        yield doc


def is_curated(path: str) -> bool:
    """A reference file read as the Documents of an earlier curated run (else: raw crawl records)."""
    return path.lower().endswith(".parquet")


def match_reference(patterns: list[str]) -> list[str]:
    """The files of --human_reference globs (local or gs://): each glob must match, and only finished synthcap
    outputs may serve (a half-written one would calibrate against whatever survived the crash). ValueError
    (one line) otherwise. A file that several globs or names reach is one file (named by the smallest name): read
    twice, its documents would count twice in the reference size that p-values and the mixer's bounds rely on."""
    from transforms.io.commit import IncompleteOutputError, complete_outputs
    from transforms.io.files import InputError, distinct, match

    files = []
    for pattern in patterns:
        try:
            matched = match(pattern)
        except InputError as e:
            raise ValueError(f"--human_reference: {e}") from None
        except Exception:
            matched = []
        if not matched:
            raise ValueError(f"--human_reference: no files match {pattern}")
        try:
            complete_outputs(matched)
        except IncompleteOutputError as e:
            raise ValueError(f"--human_reference: {e}") from None
        files += [m.path for m in matched]
    files = distinct(files)
    for path in [f for f in files if is_curated(f)]:
        _require_curated_parquet(path)
    raw = [f for f in files if not is_curated(f)]
    if raw:
        from transforms.io.files import InputError, match_shards

        try:
            match_shards(raw)
        except InputError as e:
            raise ValueError(f"--human_reference: {e}") from None
    return files


def _require_curated_parquet(path: str) -> None:
    """A .parquet reference is read as curated Documents: one that is not Parquet failed the run, and one with
    other columns (`id, text` alone) had every row counted unreadable, so the run went on without its reference."""
    import pyarrow.parquet as pq

    from transforms.document import REQUIRED_COLUMNS
    from transforms.io.files import open_raw

    try:
        with open_raw(path) as f:
            names = set(pq.ParquetFile(f).schema_arrow.names)
    except Exception as e:  # Arrow's and every filesystem's errors
        _require_unchanged(path)
        raise ValueError(f"--human_reference: {path} is not a readable Parquet file ({type(e).__name__})") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise ValueError(f"--human_reference: {path} is not curated Parquet (no column {', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''}); give the documents/*.parquet of a synthcap curate "
                         f"output, or raw crawl files (.jsonl, .warc.gz, ...)")


def _require_unchanged(path: str) -> None:
    """A committed file that no longer parses was most likely changed after the commit: say so, not "unreadable"."""
    from transforms.io.commit import CommittedFileChanged, IncompleteOutputError, committed_entries, verify_entry
    from transforms.io.files import Shard

    try:
        for entry in committed_entries([Shard(path, 0, "")]):
            verify_entry(*entry)
    except IncompleteOutputError:  # not listed by its output: the caller's "unreadable" stands
        return
    except CommittedFileChanged as e:
        raise ValueError(f"--human_reference: {e}") from None


class ReadReference(beam.PTransform):
    """Human reference files (local or gs://) -> their Documents. Curated Parquet of an earlier run is read as the
    Documents it holds (its record keys decide the cross-fit halves and which half a domain-adapted detector
    trained on); any other crawl format (JSONL, WARC, WET, ...) goes through the same readers and provenance
    tagging as `--input`. Reference records are not records of this run: they are counted (`reference_read`,
    `reference_unreadable`), never dropped or dead-lettered here."""

    def __init__(self, files: list[str]):
        super().__init__()
        self._files = files

    def expand(self, pbegin):
        from apache_beam.io.parquetio import ReadAllFromParquet

        from transforms.io.files import match_shards
        from transforms.io.read import ReadCrawl
        from transforms.provenance.tag import TagProvenance

        curated = [f for f in self._files if is_curated(f)]
        raw = [f for f in self._files if not is_curated(f)]
        parts = []
        if curated:
            parts.append(pbegin
                         | "Files" >> beam.Create(curated)
                         | "Read" >> ReadAllFromParquet()
                         | "ToDocument" >> beam.ParDo(_ToDocument()))
        if raw:
            read = pbegin | "ReadRaw" >> ReadCrawl(shards=match_shards(raw))
            _ = ((read[DROPPED], read[DEAD_LETTERS]) | "RawLost" >> beam.Flatten()
                 | "CountLost" >> beam.Map(lambda _: count("reference_unreadable")))
            parts.append(read[DOCUMENTS] | "TagRaw" >> TagProvenance() | "Counted" >> beam.ParDo(_Counted()))
        return parts | "AllReference" >> beam.Flatten()


class _Counted(beam.DoFn):
    def process(self, doc: Document):
        count("reference_read")
        yield doc

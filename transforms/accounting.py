"""Where every record ends: drop reasons, dead letters, Beam counters and the reconciling summary.

A record read ends in exactly one of: the documents output, a named drop reason, or a dead letter. The vocabulary
below is closed: counters, `summary.json` and the README all use these names.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

NAMESPACE = "synthcap"
_json_str = json.encoder.encode_basestring  # a JSON string as json.dumps(..., ensure_ascii=False) writes it

# Records deliberately not kept, and why.
DROP_REASONS = {
    "record_type_skipped": "WARC record that carries no page text (warcinfo, request, metadata, revisit, resource)",
    "http_not_ok": "HTTP response whose status is not 2xx (redirects, errors)",
    "non_text_content": "HTTP payload whose Content-Type is not HTML or plain text",
    "binary_content": "payload that claims to be text but is binary (NUL or control bytes)",
    "empty_text": "no text left after extraction and whitespace stripping",
    "too_large": "record, decoded payload or text over --max_document_bytes",
    "html_too_complex": "HTML nested too deep or too large to extract within the per-record work budget",
    "non_document_file": "crawl file that holds no documents (WAT metadata, CDX index), skipped whole",
    "unsupported_file": "file matched by an input glob whose extension no reader handles, skipped whole",
    "duplicate_exact": "same normalised text as an earlier-captured document",
    "duplicate_near": "MinHash-LSH near-duplicate of an earlier-captured document",
    "duplicate_indexed": "duplicate of a document in the refresh index",
    "excluded_opt_out": "page reserves text-and-data mining or declares noai",
    "excluded_filter": "excluded by the mix config (language, domain, length)",
    "over_ceiling": "not selected: cut by the mixer to hold the (certified) synthetic ceiling",
    "over_quota": "not selected: its source's quota was already met without it",
    "unestimable": "mix source group with no usable AI-share estimate, under the `unestimable: drop` policy",
}

# Records that could not be read, decoded or parsed.
DEAD_LETTER_REASONS = {
    "gzip_error": "corrupt gzip member (bad CRC, invalid deflate data)",
    "zstd_error": "corrupt zstd frame",
    "truncated": "input ends inside a gzip member or WARC record",
    "warc_header_error": "missing or invalid WARC header",
    "http_error": "HTTP response block that cannot be parsed or decoded",
    "decode_error": "text that is not valid UTF-8 where UTF-8 is required",
    "json_error": "malformed JSON line",
    "schema_error": "record or file without the required fields (e.g. Parquet without a string `text` column)",
    "read_error": "file that cannot be opened or read",
    "over_read_budget": "Parquet row group whose pages would decompress or decode to more than the read budget "
                        "(--max_document_bytes per row, at most 1 GiB): a decompression bomb is never read",
    "extract_error": "HTML text extraction failed",
    "score_error": "the detector failed on this document",
    "invalid_score": "a score entering the mixer that is NaN, infinite or outside [0, 1]",
}

DROPPED = "dropped"
DEAD_LETTERS = "dead_letters"
DOCUMENTS = "documents"


def is_duplicate(reason: str) -> bool:
    """The drop reasons of documents dropped as copies of another (what `duplicates/` lists)."""
    return reason.startswith("duplicate_")


def by_reason(record) -> str:
    return record.reason


@dataclass(frozen=True)
class Dropped:
    id: str
    reason: str
    source: str
    offset: int
    detail: str = ""

    def __post_init__(self):
        if self.reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {self.reason!r}")

    def to_json(self) -> str:
        return drop_json(self.id, self.reason, self.source, self.offset, self.detail)


def drop_json(doc_id: str, reason: str, source: str, offset: int, detail: str = "") -> str:
    """A drop's JSON line: `json.dumps` of its fields (sorted keys, not ASCII-escaped), formatted directly when every
    field has its declared type: a mix writes a line per document it does not select, and this is several times
    faster (tests/test_accounting.py: the same strings)."""
    if type(offset) is not int or not all(type(x) is str for x in (doc_id, reason, source, detail)):
        return json.dumps({"id": doc_id, "reason": reason, "source": source, "offset": offset, "detail": detail},
                          ensure_ascii=False, sort_keys=True)
    return (f'{{"detail": {_json_str(detail)}, "id": {_json_str(doc_id)}, "offset": {offset}, '
            f'"reason": {_json_str(reason)}, "source": {_json_str(source)}}}')


class DroppedCoder(beam.coders.Coder):
    """A drop on the wire as a plain tuple of its fields. Beam would otherwise pickle each one, class and all, at
    every stage boundary, and a mix drops about half of what it reads."""

    def __init__(self):
        self._values = beam.coders.FastPrimitivesCoder()

    def encode(self, d: Dropped) -> bytes:
        return self._values.encode((d.id, d.reason, d.source, d.offset, d.detail))

    def decode(self, encoded: bytes) -> Dropped:
        return Dropped(*self._values.decode(encoded))

    def is_deterministic(self) -> bool:
        return True  # strings and ints only

    def to_type_hint(self):
        return Dropped


beam.coders.registry.register_coder(Dropped, DroppedCoder)


@dataclass(frozen=True)
class DeadLetter:
    source: str
    offset: int
    reason: str
    error_type: str
    message: str
    stage: str

    def __post_init__(self):
        if self.reason not in DEAD_LETTER_REASONS:
            raise ValueError(f"unknown dead-letter reason {self.reason!r}")

    @classmethod
    def of(cls, source: str, offset: int, reason: str, exc: BaseException | str, stage: str) -> "DeadLetter":
        if isinstance(exc, BaseException):
            return cls(source, offset, reason, type(exc).__name__, str(exc)[:500], stage)
        return cls(source, offset, reason, reason, exc[:500], stage)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


_counters: dict[str, object] = {}
_live: dict[str, int] = {}


def count(name: str, n: int = 1) -> None:
    """Increment the Beam counter synthcap/<name>; counter objects are cached per process."""
    c = _counters.get(name)
    if c is None:
        c = _counters[name] = Metrics.counter(NAMESPACE, name)
    c.inc(n)
    _live[name] = _live.get(name, 0) + n


def live_counts() -> dict[str, int]:
    """This process's increments so far. The in-process runner publishes Beam metrics only when the pipeline ends,
    so the CLI's progress line reads these while it runs (approximate: threads may race; never an output)."""
    return dict(_live)


def drop(doc_id: str, reason: str, source: str, offset: int, detail: str = "") -> beam.pvalue.TaggedOutput:
    count(f"dropped_{reason}")
    return beam.pvalue.TaggedOutput(DROPPED, Dropped(doc_id, reason, source, offset, detail))


def dead_letter(source: str, offset: int, reason: str, exc, stage: str) -> beam.pvalue.TaggedOutput:
    count(f"dead_letter_{reason}")
    return beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(source, offset, reason, exc, stage))


class CountByKey(beam.CombineFn):
    """Sums (key, n) pairs into one sorted dict; a tiny accumulator, safe to combine anywhere."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, kv):
        k, n = kv
        acc[k] = acc.get(k, 0) + n
        return acc

    def merge_accumulators(self, accs: Iterable[dict]):
        out: dict = {}
        for a in accs:
            for k, n in a.items():
                out[k] = out.get(k, 0) + n
        return out

    def extract_output(self, acc):
        return dict(sorted(acc.items()))


class Tally(beam.PTransform):
    """Counts a PCollection under `key_fn(element)` into one dict (a singleton PCollection)."""

    def __init__(self, key_fn):
        super().__init__()
        self._key_fn = key_fn

    def expand(self, pcoll):
        key_fn = self._key_fn
        return pcoll | "Key" >> beam.Map(lambda e: (key_fn(e), 1)) | "Sum" >> beam.CombineGlobally(CountByKey())


def reconcile(summary: dict) -> list[str]:
    """The accounting identity; returns the problems (empty when the books balance)."""
    read = summary["records_read"]
    out = summary["documents_out"]
    dropped = sum(summary["dropped"].values())
    dead = sum(summary["dead_letters"].values())
    if read != out + dropped + dead:
        return [f"records_read {read} != documents_out {out} + dropped {dropped} + dead_letters {dead}"]
    return []


class RecordsLost(RuntimeError):
    """The books do not balance: a record reached no output, drop or dead letter. Raised by the graph's step
    that stages the summary, so the output is never marked complete (no launcher has to notice)."""


def require_reconciled(summary: dict) -> None:
    problems = reconcile(summary)
    if problems:
        raise RecordsLost("summary does not reconcile, the output is left uncommitted: " + "; ".join(problems))


class Summarize(beam.PTransform):
    """Folds the run's ledgers into one summary dict (a singleton PCollection).

    `read` holds the reader's three outputs (what was read); `documents`, `dropped` and `dead_letters` are the
    run's final outputs. `read_counted`: singleton PCollections of records read counted where they are read (a
    reader's documents, by a `Count` lifted into the read's stage), instead of passing them in `read`. `extra`
    maps summary keys to singleton PCollections computed by other stages; a caller that counts the outputs
    already (for its writers) passes its counts there as "documents_out" (a number), "dropped" and
    "dead_letters" (`Tally` by reason), and they are not counted again. What was read is always counted from the
    reader's outputs (here or in `read_counted`), never taken from a later stage: it is the side the outputs
    must reconcile with.
    """

    def __init__(self, read: dict, documents, dropped, dead_letters, extra: dict | None = None,
                 read_counted: tuple = ()):
        super().__init__()
        self._read, self._docs, self._dropped, self._dead = read, documents, dropped, dead_letters
        self._extra = extra or {}
        self._read_counted = tuple(read_counted)

    def expand(self, pbegin):
        # counted as 1s: a Flatten of mixed element types is materialised with a generic coder (pickled records)
        read_parts = [self._read[k] | f"Ones{k}" >> beam.Map(lambda _: 1)
                      for k in (DOCUMENTS, DROPPED, DEAD_LETTERS) if k in self._read]
        read = read_parts | "AllRead" >> beam.Flatten() | "CountRead" >> beam.combiners.Count.Globally()
        if self._read_counted:
            read = ((read, *self._read_counted) | "ReadParts" >> beam.Flatten()
                    | "SumRead" >> beam.CombineGlobally(sum))
        sides = {"records_read": read, **self._extra}
        if "documents_out" not in sides:
            sides["documents_out"] = self._docs | "CountOut" >> beam.combiners.Count.Globally()
        if "dropped" not in sides:
            sides["dropped"] = self._dropped | "ByReason" >> Tally(by_reason)
        if "dead_letters" not in sides:
            sides["dead_letters"] = self._dead | "DeadByReason" >> Tally(by_reason)
        names = sorted(sides)

        def build(_, *values):
            summary = dict(zip(names, values))
            summary["reconciles"] = not reconcile(summary)
            return summary

        return pbegin | "One" >> beam.Create([None]) | "Build" >> beam.Map(
            build, *[beam.pvalue.AsSingleton(sides[n]) for n in names])

"""`synthcap mix --config mix.yaml --output OUT`: a training set under a certified ceiling on the true AI share.

Writes OUT/train/*.parquet and OUT/train/*.jsonl.gz (Dolma), plus the accounting every run writes (OUT/dropped/,
OUT/dead_letters/, OUT/summary.json) and, as the graph's last step once every writer has finished,
OUT/manifest.json and OUT/report.html. The verdict (`manifest["verdict"]`) is the one the CLI prints.
"""
from __future__ import annotations

import json
from fractions import Fraction

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import CommonOptions, MixOptions, UserError
from pipeline.runner import make_pipeline, prepare_output
from transforms.accounting import DEAD_LETTERS, DOCUMENTS, DROPPED, Summarize, require_reconciled
from transforms.io.commit import (CommitOutputs, CommittedFileChanged, IncompleteOutputError, committed_entries,
                                  file_entry, is_output, outside_output, read_committed, read_marker,
                                  require_complete, run_key, staging_dir, verify_entry)
from transforms.io.files import InputError, canonical, match_shards, read_bytes
from transforms.io.parquet import has_rows
from transforms.io.read import ReadCrawl, can_read_again
from transforms.io.write import WriteJsonRecords, write_bytes, write_json
from transforms.mix import certify
from transforms.mix.config import ConfigError, MixConfig, load
from transforms.mix.drops import DropCounts, by_reason, drop_key, drop_line
from transforms.mix.read import READ, ClassifyDocuments, ReadClassified
from transforms.mix.report import SourceStats, empty_stats, render
from transforms.mix.rows import JoinRows, WriteRows
from transforms.mix.select import MIXER_DROP_REASONS, SELECTED, MixWithCeiling

OUTPUT_PARTS = ("train", "dropped", "dead_letters", "summary.json", "manifest.json", "report.html")
TOKEN_DEFINITION = "synthcap tokens: words and punctuation marks (\\w+|[^\\w\\s]), transforms/tokens.py"


class HashFiles(beam.PTransform):
    """Paths -> {path: sha256 of the bytes stored}, one file per element, spread over the workers. A path in
    `committed` ({path: (size, sha256)}, from its completion record) must hash to what was committed, else the run
    fails with CommittedFileChanged before anything is committed: the check costs no read of its own."""

    def __init__(self, committed: dict | None = None):
        super().__init__()
        self._committed = committed or {}

    def expand(self, paths):
        committed = self._committed

        def digest(path):
            if path in committed:
                verify_entry(path, *committed[path])
                return path, committed[path][1]
            return path, file_entry(path, "")["sha256"]

        return (paths | "Spread" >> beam.Reshuffle()
                | "Hash" >> beam.Map(digest)
                | "Dict" >> beam.combiners.ToDict())


MAX_SUMMARY_BYTES = 256 << 20  # a curated summary is a few KiB; a device or a huge file is refused, not read


def read_estimates(cfg: MixConfig) -> tuple[dict, dict]:
    """Every curated folder's `ai_share.by_reference` -> (usable groups, {group: why unusable})."""
    usable, reasons = {}, {}
    for s in cfg.sources:
        for folder in s.curated:
            path = FileSystems.join(folder, "summary.json")
            try:  # a synthcap output's summary is read checked against its completion record
                summary = json.loads(read_committed(folder, "summary.json", require_complete(folder))
                                     if is_output(folder) else read_bytes(path, MAX_SUMMARY_BYTES))
            except (IncompleteOutputError, CommittedFileChanged) as e:
                raise UserError(f"source {s.name}: {e}") from None
            except Exception as e:  # any scheme's not-found / read error, or bad JSON: one line
                raise UserError(f"source {s.name}: cannot read {path} ({type(e).__name__}); `curated` takes "
                                f"synthcap curate output folders") from None
            u, r = certify.parse_ai_share(folder, summary, cfg.pre_llm_is_human)
            usable.update(u)
            reasons.update(r)
    return usable, reasons


def build(p, cfg: MixConfig, output: str, staging: str, key: str, rows_per_shard: int, groups: dict,
          unusable: dict, inputs: dict, committed: dict):
    """`inputs`: source name -> [(folder or "", matched shards)]; `committed`: {path: (size, sha256)} of the inputs
    that lie in synthcap outputs (both from `match_inputs`). Every file is written under `staging` and moved into
    OUT by the commit, which writes OUT/COMPLETE.json last."""
    usable = frozenset(groups)
    classified, reads, read_docs, parts = [], [], [], []
    for s in cfg.sources:
        for i, (folder, shards) in enumerate(inputs[s.name]):
            # Parquet is read and classified in one step, and read again after the selection; the documents of
            # other files wait for it
            again = [sh for sh in shards if can_read_again(sh.path)]
            if again:
                read, part = p | f"Read[{s.name}][{i}]" >> ReadClassified(again, cfg, usable, s.name, folder)
                read_docs.append(read[READ] | f"CountRead[{len(reads)}]" >> beam.CombineGlobally(sum))
                reads.append(read)
                classified.append(part)
                parts.append((s.name, folder, again))
            waiting = [sh for sh in shards if not can_read_again(sh.path)]
            if waiting:
                read = p | f"Read[{s.name}][{i}][waiting]" >> ReadCrawl(shards=waiting)
                # each read's documents are counted where they are read (no document crosses a Flatten)
                read_docs.append(read[DOCUMENTS] | f"CountRead[{len(reads)}]" >> beam.combiners.Count.Globally())
                reads.append(read)
                classified.append(read[DOCUMENTS] | f"Classify[{s.name}][{i}]" >> ClassifyDocuments(
                    cfg, usable, s.name, folder, False))
    read_all = {tag: [r[tag] for r in reads] | f"All[{tag}]" >> beam.Flatten() for tag in (DROPPED, DEAD_LETTERS)}
    # the reader's drops join the mixer's one Flatten of drops (each Flatten copies what crosses it)
    mixed = tuple(classified) | "Mix" >> MixWithCeiling(cfg, groups, dropped=[r[DROPPED] for r in reads])
    train = FileSystems.join(staging, "train")
    # the selected documents, read again once the selection is made (none waits for it)
    rows = (mixed[SELECTED], mixed[DOCUMENTS]) | "Rows" >> JoinRows(cfg, usable, parts)
    train_files = rows | "WriteTrain" >> WriteRows(train, rows_per_shard)
    dead = (read_all[DEAD_LETTERS], mixed[DEAD_LETTERS]) | "Dead" >> beam.Flatten()
    # drops come in batches with their counts: one tally serves the summary, the manifest and the writer's shard
    # count, and the writer assigns shards batch by batch
    drop_counts = mixed[DROPPED] | "DropCounts" >> DropCounts()
    w_drop = (mixed[DROPPED] | "DropRecords" >> beam.Map(lambda b: b.records).with_output_types(list)
              | "WriteDropped" >> WriteJsonRecords(
                  FileSystems.join(staging, "dropped"), "dropped", drop_key, encode_item=drop_line, batched=True,
                  count=drop_counts | "DropTotal" >> beam.Map(lambda c: sum(c.values()))))
    w_dead = dead | "WriteDead" >> WriteJsonRecords(
        FileSystems.join(staging, "dead_letters"), "dead_letters",
        lambda d: f"{d.source}\x00{d.offset:020d}\x00{d.message}")
    firsts = mixed[SELECTED] | "FirstCopies" >> beam.Filter(lambda i: i.epoch == 0)
    summary = p | "Summary" >> Summarize(read_all, firsts, None, dead, extra={
        "dropped": drop_counts | "DropsByReason" >> beam.Map(by_reason)}, read_counted=read_docs)
    sides = {
        "summary": summary,
        "selected": mixed[SELECTED] | "SelectedStats" >> beam.CombineGlobally(SourceStats()),
        "offered": mixed["offered"],
        "plan": mixed["plan"],
        # (mix source, reason); the reader's drops (their detail is no source) count under ""
        "drops": drop_counts | "DropsBySource" >> beam.Map(by_source),
    }
    shard_paths = sorted({sh.path for parts in inputs.values() for _, shards in parts for sh in shards})
    sides["input_sha256"] = p | "InputPaths" >> beam.Create(shard_paths) | "HashInputs" >> HashFiles(committed)
    sides["train_sha256"] = train_files | "HashTrain" >> HashFiles()
    written = ((train_files, w_drop, w_dead) | "Written" >> beam.Flatten()
               | "Outputs" >> beam.combiners.ToList())
    names = sorted(sides)

    def finish(written_paths, *values):
        """Once every writer has finished (and the inputs and training files are hashed): summary, manifest and
        report, staged like the rest."""
        v = dict(zip(names, values))
        require_reconciled(v["summary"])
        m = manifest(cfg, v, groups, unusable, staging, output)
        paths = [FileSystems.join(staging, name) for name in ("summary.json", "manifest.json", "report.html")]
        write_json(paths[0], v["summary"])
        write_json(paths[1], m)
        write_bytes(paths[2], render(m).encode())
        return written_paths + paths

    (written
     | "Manifest" >> beam.FlatMap(finish, *[beam.pvalue.AsSingleton(sides[n]) for n in names])
     | "Commit" >> CommitOutputs(output, staging, key))


def by_source(counts: dict) -> dict:
    """{(detail, reason): n} -> {(mix source, reason): n}: the mixer's drops carry their source as detail, the
    reader's count under ""."""
    out = {}
    for (detail, reason), n in counts.items():
        k = (detail if reason in MIXER_DROP_REASONS else "", reason)
        out[k] = out.get(k, 0) + n
    return dict(sorted(out.items()))


def _source_entry(cfg: MixConfig, s, v: dict) -> dict:
    plan, sel, off = v["plan"], v["selected"].get(s.name), v["offered"].get(s.name)
    sel, off = sel or empty_stats(), off or empty_stats()
    dropped = {reason: n for (src, reason), n in sorted(v["drops"].items()) if src == s.name}
    ai_tokens = Fraction(sel["charged"], certify.SCALE)
    entry = {
        "name": s.name, "anchor": s.anchor, "inputs": list(s.inputs), "curated": list(s.curated),
        "offered": {"documents": off["documents"], "tokens": off["tokens"], "p_ai_hist": off["p_ai_hist"],
                    "pvalue_hist": off["pvalue_hist"]},
        "excluded": {k: n for k, n in dropped.items() if k.startswith("excluded_")},
        "dropped": dropped,
        "selected": {"documents": sel["documents"], "rows": sel["rows"], "tokens": sel["tokens"],
                     "units": sel["units"], "ai_tokens": float(ai_tokens), "p_ai_hist": sel["p_ai_hist"],
                     "pvalue_hist": sel["pvalue_hist"]},
        "quota": None if s.anchor else plan.quota.get(s.name, 0),
        "shortfall": 0 if s.anchor else max(0, plan.quota.get(s.name, 0) - sel["units"]),
        "selection": {"limited_by": None if s.anchor else (
            "ceiling" if s.name in plan.limited else
            "quota" if sel["units"] >= plan.quota.get(s.name, 0) else "supply")},
        "certified": {},
    }
    if cfg.rule == "certified":
        level = plan.level.get(s.name)
        lo, est, hi = plan.estimate.get(s.name, (0.0, 0.0, 0.0))
        rate, tokens = plan.rate.get(s.name, 0), sel["tokens"]
        # pre-LLM pages are charged nothing and the newer ones the rate: the charge tells how many tokens are newer
        newer = Fraction(sel["charged"], rate) if rate else Fraction(0)
        w = float(newer / tokens) if tokens else 0.0
        entry["selection"].update({
            "left_out": level is None, "pre_llm_only": level == certify.PRE_LLM_ONLY,
            "pvalue_cut": None if level is None or level == certify.PRE_LLM_ONLY else certify.GRID[level],
            "certified_ai_rate": rate / certify.SCALE, "newer_tokens": int(newer)})
        entry["certified"] = {
            "ai_tokens_bound": float(ai_tokens), "ai_share_bound": float(ai_tokens / tokens) if tokens else None,
            "ai_share_estimate": est * w if tokens else None,
            "ai_share_interval": [lo * w, hi * w] if tokens else None}
    else:
        entry["rule_count"] = {"synthetic_tokens": str(ai_tokens),
                               "synthetic_fraction": float(ai_tokens / sel["tokens"]) if sel["tokens"] else None}
    return entry


def manifest(cfg: MixConfig, v: dict, groups: dict, unusable: dict, staging: str, out_dir: str) -> dict:
    """`v` holds the graph's results; the training files were hashed where they lie in `staging` and are named
    where the commit moves them (the same bytes)."""
    sources = [_source_entry(cfg, s, v) for s in cfg.sources]
    tokens = sum(s["selected"]["tokens"] for s in sources)
    charged = sum(v["selected"].get(s.name, {}).get("charged", 0) for s in cfg.sources)
    share = Fraction(charged, certify.SCALE * tokens) if tokens else Fraction(0)
    failures = []
    n_unest = sum(s["dropped"].get("unestimable", 0) for s in sources)
    if cfg.rule == "certified" and cfg.unestimable == "fail" and n_unest:
        failures.append(f"{n_unest:,} documents have no usable AI-share estimate (unestimable: fail)")
    shortfall = sum(s["shortfall"] for s in sources)
    ok, line = certify.verdict(share, cfg.ceiling, failures, cfg.rule == "certified", tokens,
                               f"{shortfall:,} of the target {cfg.target:,} {cfg.unit}")
    sel_docs = sum(s["selected"]["documents"] for s in sources)
    output = {"documents": sel_docs, "rows": sum(s["selected"]["rows"] for s in sources), "tokens": tokens,
              "shortfall": shortfall}
    if cfg.rule == "certified":
        def total(i):
            return (sum(s["selected"]["tokens"] * (s["certified"].get("ai_share_interval") or [0, 0])[i]
                        for s in sources) / tokens) if tokens else None
        est = (sum(s["selected"]["tokens"] * (s["certified"].get("ai_share_estimate") or 0) for s in sources)
               / tokens) if tokens else None
        output.update({"ai_share_bound": float(share), "ai_share_bound_exact": str(share),
                       "ai_share_estimate": est, "ai_share_interval": [total(0), total(1)],
                       "confidence": float(certify.CONFIDENCE),
                       "p_ai_fraction": float(Fraction(sum(v["selected"].get(s.name, {}).get("p_ai_charged", 0)
                                                            for s in cfg.sources), certify.SCALE * tokens))
                       if tokens else None})
    else:
        output.update({"rule_fraction": float(share), "rule_fraction_exact": str(share),
                       "synthetic_tokens": str(Fraction(charged, certify.SCALE))})
    return {
        "verdict": {"within_ceiling": ok, "line": line}, "within_ceiling": ok,
        "max_synthetic_fraction": str(cfg.ceiling), "ceiling": float(cfg.ceiling),
        "synthetic_rule": cfg.rule, "threshold": cfg.threshold if cfg.rule == "threshold" else None,
        "unestimable": cfg.unestimable if cfg.rule == "certified" else None,
        "token_definition": TOKEN_DEFINITION, "output": output,
        "config": _plain(cfg.raw), "seed": cfg.seed, "unit": cfg.unit, "target": cfg.target,
        "sources": sources,
        "reference_groups": {"usable": {k: {"estimate": g[0], "ci95": [g[1], g[2]], "reference_documents": g[3]}
                                        for k, g in sorted(groups.items())},
                             "unusable": dict(sorted(unusable.items()))},
        "accounting": v["summary"],
        "sha256": {"inputs": dict(sorted(v["input_sha256"].items())),
                   "outputs": {FileSystems.join(out_dir, p[len(staging):].lstrip("/")): h
                               for p, h in sorted(v["train_sha256"].items())}},
    }


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(x) for k, x in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    return obj


def match_inputs(cfg: MixConfig, output: str | None = None) -> tuple[dict, dict]:
    """(source -> [(curated folder or "", shards)], {path: (size, sha256)} of the inputs that lie in synthcap
    outputs, as their completion records list them). A file reached twice (by two sources, or two inputs of one)
    is refused: its documents would be read, and could be mixed, twice. So is a copy of a file: two synthcap files
    whose completion records list the same sha256 hold the same documents (unless they hold none). An input
    pattern whose files all lie inside `output` is refused (the claim would delete them before the run reads
    them); a wider glob's matches there are left out, as curate leaves them out."""
    out, owner, copies, committed = {}, {}, {}, {}
    # only a mix output is replaced by a mix (the claim refuses any other folder that holds something)
    output = output if output and (read_marker(output) or {}).get("verb") == "mix" else None
    for s in cfg.sources:
        folders = s.curated or ("",) * len(s.inputs)
        out[s.name] = []
        for folder, pattern in zip(folders, s.inputs):
            try:
                if folder and is_output(folder):  # an incomplete folder says so, not that its glob is empty
                    require_complete(folder)
                shards = match_shards([pattern])
            except InputError as e:
                why = (f"{folder} holds no documents/*.parquet; `curated` takes synthcap curate output folders"
                       if folder else e)
                raise UserError(f"source {s.name}: {why}") from None
            except IncompleteOutputError as e:
                raise UserError(f"source {s.name}: {e}") from None
            try:
                shards = outside_output(shards, output) if output else shards  # the claim deletes OUT's files
                entries = committed_entries(shards)
            except (InputError, IncompleteOutputError) as e:
                raise UserError(f"source {s.name}: {e}") from None
            for sh in shards:
                key = canonical(sh.path)  # `d/x.parquet` and `d/../d/x.parquet` are one file
                if key in owner:
                    where = "another of its inputs" if owner[key] == s.name else f"source {owner[key]}"
                    raise UserError(f"source {s.name}: {sh.path} is also an input of {where}; a document may enter "
                                    f"a mix once, through one source")
                owner[key] = s.name
            for path, size, sha in entries:
                committed[path] = (size, sha)
                first = copies.setdefault(sha, (s.name, path))
                if first[1] != path and has_rows(path):  # one file under two names was refused above
                    where = "another of its inputs" if first[0] == s.name else f"source {first[0]}"
                    raise UserError(f"source {s.name}: {path} has the same bytes as {first[1]} ({where}); a "
                                    f"document may enter a mix once, through one source")
            out[s.name].append((folder, shards))
    return out, committed


def run(argv: list[str]) -> dict:
    options = PipelineOptions(argv)
    opts = options.view_as(MixOptions)
    common = options.view_as(CommonOptions)
    if not opts.config:
        raise UserError("--config is required (a mix YAML file)")
    try:
        cfg = load(opts.config)
    except ConfigError as e:
        raise UserError(f"{opts.config}: {e}") from None
    if not common.output:
        raise UserError("--output is required")
    output = common.output.rstrip("/")
    inputs, committed = match_inputs(cfg, output)
    groups, unusable = read_estimates(cfg) if cfg.rule == "certified" else ({}, {})
    if cfg.unestimable == "fail" and unusable:
        key, why = next(iter(sorted(unusable.items())))
        raise UserError(f"reference group {key} has no usable AI-share estimate ({why}); unestimable: fail")
    key = run_key("mix", {"config": cfg.raw, "output": output, "rows_per_shard": common.rows_per_shard})
    p = make_pipeline(options)
    build(p, cfg, output, staging_dir(output, key), key, common.rows_per_shard, groups, unusable, inputs,
          committed)
    prepare_output(output, common.overwrite, OUTPUT_PARTS, verb="mix", key=key)
    p.run().wait_until_finish()
    try:
        require_complete(output)
    except IncompleteOutputError as e:
        raise RuntimeError(f"the mix finished without committing its output: {e}") from None
    with FileSystems.open(FileSystems.join(output, "manifest.json")) as f:
        m = json.load(f)
    return m

"""The out-of-domain check, end to end through the `synthcap` CLI: what a user sees on domains the detector never saw.

    SYNTHCAP_SHARED=../shared python benchmarks/ood_cli.py [--sets comnets_courses,raidar,tweepfake | all]
        [--limit_per_file 2000] [--max_humans 2000] [--seed 1] [--ceilings 1/20,1/10] [--work DIR]

Leave-one-dataset-out over `../shared/data/detect`: for each held-out set H, `synthcap train-detector` on the other
sets (LODO on: the card's figures feed the share interval), cached under `--work` by (files, limit, seed). H's
English human/AI texts, deduplicated by exact text and split by `pair_id` (or text) with a keyed hash, become a
JSONL crawl whose records carry only `id`, `url`, `created` and `text` (the labels stay in a side map): half of
the humans are the reference, dated 2021; the rest and AI texts make three sources at true AI document shares
0.05, 0.3 and 0.8, dated 2024. Every record sits on one of four sites of H: one large enough to get its own
`domain:` reference group, three small ones served by the pooled group.

Run A curates the reference and the three sources in one run (the reference is the run's own pre-LLM pages); run B
curates the reference alone, then each source with `--human_reference 'REF/documents/*.parquet'`. For every share
estimate in every `summary.json` (`by_reference` groups and `by_crawl`) the truth is computed from the labels over
exactly the documents it covers; the share compared is `outside_reference` when the estimate covers pre-LLM pages
(those are human by construction). Checked per run: the document fields (ai_score / ai_pvalue in [0, 1],
`ai_reference` names a group of the summary, p_ai in [0, 1] or null and the nulls equal the summary's counted
reasons), the summary's accounting (records read = kept + dropped + dead letters; kept = rows written; an
estimate's documents and tokens = the documents it covers). Then `synthcap mix` at each ceiling with the default
certified rule, once over run B's three folders and once over run A's folder: the TRUE AI token share of
`train/` from the labels, the human-token yield (kept human tokens / offered human tokens, pre-LLM pages included
when the source holds them), and whether the exit status, the printed summary's verdict and `manifest.json`'s
`within_ceiling` agree. Exits 1 when an interval misses the truth, a mix's true share exceeds ceiling + 0.01, an
invariant fails or a verdict disagrees (a mix over the ceiling that says so is honest, but still counted). The
baseline in the same run is the truth itself (label counts); nothing is timed beyond the run's wall time, printed
with the host load for the record. Nothing is downloaded: every step runs on local files.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq
import xxhash
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transforms.dates import is_pre_llm  # noqa: E402
from transforms.tokens import count_tokens  # noqa: E402

SHARES = (0.05, 0.3, 0.8)
DEFAULT_SETS = "comnets_courses,raidar,tweepfake"
SHARED = Path(os.environ.get("SYNTHCAP_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data" / "detect"
BIG_SITE_SHARE = 0.7  # of every file's records on H's large site: >= 200 reference documents from 286 humans up
PVALUE_CUT = 0.05


def _h(seed: int, key: str) -> int:
    return xxhash.xxh64_intdigest(f"{seed}\x00{key}".encode())


def synthcap(args: list[str], log: Path) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, this checkout's code first on the path; stdout/stderr kept in `log`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("CI", None)
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    log.write_text(f"$ synthcap {' '.join(args)}\n--- exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n"
                   f"{r.stderr}")
    return r


def must(r: subprocess.CompletedProcess, what: str) -> None:
    if r.returncode != 0:
        raise SystemExit(f"{what}: synthcap exited {r.returncode}: {r.stderr.strip()[-400:]}")


# --- detector ---------------------------------------------------------------------------------------------------

def train_model(held: str, work: Path, limit: int, seed: int) -> Path:
    """`synthcap train-detector` on every set but `held`, cached by (files, limit, seed)."""
    files = sorted(p.name for p in DATA.glob("*.jsonl.gz") if p.name != f"{held}.jsonl.gz")
    # "sample": train-detector's --limit_per_file takes a keyed-hash sample of each file (it took the first lines)
    key = hashlib.sha256(json.dumps({"files": files, "limit_per_file": limit, "seed": seed, "sample": "keyed"},
                                    sort_keys=True).encode()).hexdigest()[:12]
    out = work / "models" / f"without-{held}-{key}"
    if (out / "model_card.json").exists() and (out / "model.ftz").exists():
        print(f"[{held}] detector cached: {out}", flush=True)
        return out
    print(f"[{held}] training the detector without {held} ({len(files)} sets, {limit} records each) ...", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    must(synthcap(["train-detector", "--data", *[str(DATA / f) for f in files], "--out", str(out),
                   "--limit_per_file", str(limit), "--seed", str(seed)], work / f"train-{held}.log"),
         f"train-detector without {held}")
    return out


# --- the crawl --------------------------------------------------------------------------------------------------

def load_set(name: str, seed: int, max_humans: int) -> tuple[list, list]:
    """English human / AI texts of a set, each text once (first label in file order wins; a text seen with both
    labels is left out), as (group, text) with group = pair_id when present, else the text's hash."""
    seen, both, rows = {}, set(), []
    with gzip.open(DATA / f"{name}.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            text = (r.get("text") or "").strip()
            if r.get("label") not in ("human", "ai") or (r.get("language") or "en") != "en" or not text:
                continue
            key = hashlib.sha1(text.encode()).hexdigest()
            if key in seen:
                if seen[key] != r["label"]:
                    both.add(key)
                continue
            seen[key] = r["label"]
            group = f"pair:{r['pair_id']}" if r.get("pair_id") is not None else f"text:{key}"
            rows.append((key, group, r["label"], text))
    rows = [r for r in rows if r[0] not in both]
    humans = sorted(((g, t) for k, g, lab, t in rows if lab == "human"), key=lambda x: _h(seed, x[1]))
    ais = sorted(((g, t) for k, g, lab, t in rows if lab == "ai"), key=lambda x: _h(seed, x[1]))
    return humans[:max_humans], ais


def build_crawl(name: str, crawl: Path, seed: int, max_humans: int) -> dict:
    """Writes ref-2021.jsonl and src-aiNN-2024.jsonl under `crawl` and labels.json (id -> label); returns the plan."""
    humans, ais = load_set(name, seed, max_humans)
    # a pair_id never straddles the reference and the test side: a group's side is a keyed hash of the group
    ref_side = lambda g: _h(seed + 1, g) & 1  # noqa: E731
    ref = [t for g, t in humans if ref_side(g)]
    test_h = [(g, t) for g, t in humans if not ref_side(g)]
    # AI texts of the test side only; one paired with a test human goes to that human's source, the others fill
    source = {g: _h(seed + 2, g) % len(SHARES) for g, _ in test_h}
    parts = [[t for g, t in test_h if source[g] == i] for i in range(len(SHARES))]
    tied = [[t for g, t in ais if not ref_side(g) and source.get(g) == i] for i in range(len(SHARES))]
    free = [t for g, t in ais if not ref_side(g) and g not in source]
    sources = []
    for i, (share, hum) in enumerate(zip(SHARES, parts)):
        want = round(len(hum) * share / (1 - share))
        mine = tied[i][:want]
        take = min(want - len(mine), len(free))
        mine, free = mine + free[:take], free[take:]
        if len(mine) < want:  # too few AI texts: fewer humans, same share
            hum = hum[:int(len(mine) * (1 - share) / share)]
        sources.append((share, hum, mine))
    sites = [f"www.{name.replace('_', '-')}-forum.org", f"blog.{name.replace('_', '')}-notes.net",
             f"{name.replace('_', '')}.example-press.com", f"archive.{name.replace('_', '')}-club.info"]
    labels, crawl_files = {}, []
    crawl.mkdir(parents=True, exist_ok=True)

    def write(fname: str, texts: list, year: int) -> Path:
        recs = []
        for text, label in texts:
            rid = f"{name}-{hashlib.sha1(f'{year}{text}'.encode()).hexdigest()[:16]}"
            u = _h(seed + 3, rid) % 1000
            site = sites[0] if u < BIG_SITE_SHARE * 1000 else sites[1 + u % 3]
            recs.append({"id": rid, "url": f"https://{site}/p/{rid[-10:]}", "created": f"{year}-06-15T12:00:00Z",
                         "text": text})
            labels[rid] = label
        recs.sort(key=lambda r: _h(seed + 4, r["id"]))
        path = crawl / fname
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
        crawl_files.append(path)
        return path

    ref_path = write("ref-2021.jsonl", [(t, "human") for t in ref], 2021)
    src_paths = []
    for share, hum, mine in sources:
        src_paths.append(write(f"src-ai{round(share * 100):02d}-2024.jsonl",
                               [(t, "human") for t in hum] + [(t, "ai") for t in mine], 2024))
    (crawl / "labels.json").write_text(json.dumps(labels, sort_keys=True))
    return {"ref": ref_path, "sources": src_paths, "labels": labels, "sites": sites,
            "counts": {"reference": len(ref), **{p.stem: (len(h), len(a)) for p, (_, h, a) in zip(src_paths, sources)}}}


# --- curate and what its outputs say ----------------------------------------------------------------------------

def curate(inputs: list[str], out: Path, model: Path, log: Path, reference: str | None = None) -> dict:
    """`synthcap curate`, reused when the folder is complete (a rerun of the benchmark)."""
    if not (out / "COMPLETE.json").exists():
        args = ["curate", "--input", *inputs, "--output", str(out), "--detector_model", str(model), "--overwrite"]
        if reference:
            args += ["--human_reference", reference]
        must(synthcap(args, log), f"curate {out.name}")
    return json.loads((out / "summary.json").read_text())


def read_docs(folder: Path) -> list[dict]:
    cols = ["id", "text", "source", "crawl_id", "last_seen", "provenance", "ai_score", "ai_pvalue", "ai_reference",
            "p_ai"]
    rows = []
    for f in sorted((folder / "documents").glob("*.parquet")):
        rows += pq.read_table(f, columns=cols).to_pylist()
    for d in rows:
        d["tokens"] = count_tokens(d["text"])
        d["pre_llm"] = bool((d.get("provenance") or {}).get("pre_llm"))
        d["domain"] = (d.get("provenance") or {}).get("registered_domain")
    return rows


def reference_size(ref_docs: list[dict], groups: set) -> int:
    """Distinct scored reference documents that are candidates of any of `groups` (reference.group_candidates)."""
    def member(d, g):
        return (g == "global" or (g.startswith("domain:") and d["domain"] == g[len("domain:"):])
                or (g.startswith("source:") and (d["crawl_id"] or "unknown") == g[len("source:"):]))
    return sum(any(member(d, g) for g in groups) for d in ref_docs if d["ai_score"] is not None)


def _in01(x) -> bool:
    return x is None or (isinstance(x, float) and 0.0 <= x <= 1.0)


def invariants(summary: dict, docs: list[dict], ref_docs: list[dict]) -> list[str]:
    """What a user may rely on in a curate output; each broken promise as a line. `ref_docs`: the human reference
    the run had (its own pre-LLM documents and those of `--human_reference`)."""
    bad = []
    dropped, dead = sum(summary.get("dropped", {}).values()), sum(summary.get("dead_letters", {}).values())
    if not summary.get("reconciles") or summary["records_read"] != summary["documents_out"] + dropped + dead:
        bad.append(f"records read {summary['records_read']} != kept {summary['documents_out']} + dropped {dropped} "
                   f"+ dead letters {dead} (reconciles: {summary.get('reconciles')})")
    if summary["documents_out"] != len(docs):
        bad.append(f"summary documents_out {summary['documents_out']} != {len(docs)} rows in documents/")
    shares = summary.get("ai_share") or {}
    groups = shares.get("by_reference") or {}
    for field in ("ai_score", "ai_pvalue", "p_ai"):
        n = sum(not _in01(d[field]) for d in docs)
        if n:
            bad.append(f"{n} documents with {field} outside [0, 1]")
    n = sum(d["ai_reference"] is not None and d["ai_reference"] not in groups for d in docs)
    if n:
        bad.append(f"{n} documents whose ai_reference names no group of the summary")
    scoring = summary.get("scoring") or {}
    null = scoring.get("null") or {}
    counted = (sum(d["p_ai"] is None for d in docs), sum(d["ai_score"] is not None for d in docs),
               sum(d["ai_score"] is None for d in docs))
    if counted != (sum(null.values()), scoring.get("scored"), null.get("unsupported_language")):
        bad.append(f"documents: p_ai null / ai_score set / ai_score null {counted}; the summary counts "
                   f"{sum(null.values())} nulls, {scoring.get('scored')} scored, "
                   f"{null.get('unsupported_language')} unsupported_language")
    n = sum(d["ai_pvalue"] is not None and d["ai_reference"] is None for d in docs)
    if n:
        bad.append(f"{n} documents with an ai_pvalue but no ai_reference")
    for kind, entries in (("by_reference", groups), ("by_crawl", shares.get("by_crawl") or {})):
        for key, s in entries.items():
            cov = covered(docs, kind, key, s.get("estimate") is None)
            if s.get("documents") != len(cov) or s.get("tokens") != sum(d["tokens"] for d in cov):
                bad.append(f"{kind} {key}: summary says {s.get('documents')} documents / {s.get('tokens')} tokens, "
                           f"the documents say {len(cov)} / {sum(d['tokens'] for d in cov)}")
            if s.get("estimate") is not None and s.get("reference_tokens", 0) != sum(
                    d["tokens"] for d in cov if d["pre_llm"]):
                bad.append(f"{kind} {key}: reference_tokens {s.get('reference_tokens')} != pre-LLM tokens "
                           f"{sum(d['tokens'] for d in cov if d['pre_llm'])}")
            if s.get("estimate") is not None:
                n = reference_size(ref_docs, {d["ai_reference"] for d in cov})
                if s["reference"]["documents"] != n:
                    bad.append(f"{kind} {key}: reference.documents {s['reference']['documents']} != {n} distinct "
                               f"reference documents in the groups that served it")
    return bad


def covered(docs: list[dict], kind: str, key: str, null: bool = False) -> list[dict]:
    """The documents an estimate is about: a group's are those it served, a crawl's its documents with a group
    (all of them when its estimate is null: the summary counts what could not be estimated)."""
    if kind == "by_reference":
        return [d for d in docs if d["ai_reference"] == key]
    return [d for d in docs if (null or d["ai_reference"] is not None) and (d["crawl_id"] or "unknown") == key]


def estimate_rows(summary: dict, docs: list[dict], labels: dict) -> list[dict]:
    """Every estimate of a summary against the truth of the 2024 pages it covers."""
    out = []
    shares = summary.get("ai_share") or {}
    for kind in ("by_reference", "by_crawl"):
        for key, s in sorted((shares.get(kind) or {}).items()):
            new = [d for d in covered(docs, kind, key, s.get("estimate") is None) if not d["pre_llm"]]
            if not new:  # a reference snapshot's own estimate: no 2024 page to compare with
                continue
            tok = sum(d["tokens"] for d in new)
            truth = sum(d["tokens"] for d in new if labels[d["id"]] == "ai") / tok if tok else None
            row = {"kind": kind, "key": key, "documents": len(new), "tokens": tok, "truth": truth,
                   "estimate": None, "ci95": None, "covers": None, "which": "", "reason": s.get("reason")}
            if s.get("estimate") is not None:
                e = s.get("outside_reference") if isinstance(s.get("outside_reference"), dict) else s
                row.update(estimate=e["estimate"], ci95=e["ci95"], which="outside_reference" if e is not s else "",
                           covers=truth is not None and e["ci95"][0] - 1e-6 <= truth <= e["ci95"][1] + 1e-6)
            out.append(row)
    return out


def flag_rates(docs: list[dict], labels: dict) -> dict:
    """At ai_pvalue <= 0.05, over the 2024 pages with a p-value: human flag rate and AI TPR."""
    out = {}
    for lab in ("human", "ai"):
        pv = [d["ai_pvalue"] for d in docs if not d["pre_llm"] and labels[d["id"]] == lab]
        have = [p for p in pv if p is not None]
        out[lab] = (sum(p <= PVALUE_CUT for p in have) / len(have) if have else None, len(have), len(pv))
    new = [d for d in docs if not d["pre_llm"]]
    tok = sum(d["tokens"] for d in new)
    out["truth"] = sum(d["tokens"] for d in new if labels[d["id"]] == "ai") / tok if tok else None
    out["groups"] = sorted({d["ai_reference"] for d in new if d["ai_reference"]})
    return out


# --- mix --------------------------------------------------------------------------------------------------------

def mix(folders: list[Path], ceiling: str, out: Path, seed: int, log: Path) -> dict:
    cfg = {"seed": seed, "target_tokens": 10 ** 9, "max_synthetic_fraction": ceiling,
           "sources": [{"name": f.name, "curated": [str(f)], "weight": 1} for f in folders]}
    out.parent.mkdir(parents=True, exist_ok=True)
    config, saved = out.parent / f"{out.name}.yaml", out.parent / f"{out.name}.result.json"
    text = yaml.safe_dump(cfg)
    if (saved.exists() and (out / "COMPLETE.json").exists() and config.read_text() == text
            and saved.stat().st_mtime >= max((f / "COMPLETE.json").stat().st_mtime for f in folders)):
        r = json.loads(saved.read_text())  # a rerun: the same mix of the same folders, as the CLI left it
    else:
        config.write_text(text)
        p = synthcap(["mix", "--config", str(config), "--output", str(out), "--overwrite", "--json"], log)
        if p.returncode not in (0, 3):
            raise SystemExit(f"mix {out.name}: synthcap exited {p.returncode}: {p.stderr.strip()[-400:]}")
        r = {"exit": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
        saved.write_text(json.dumps(r))
    printed = json.loads(r["stdout"])
    manifest = json.loads((out / "manifest.json").read_text())
    rows = []
    for f in sorted((out / "train").glob("*.parquet")):
        rows += pq.read_table(f, columns=["id", "text"]).to_pylist()
    return {"exit": r["exit"], "stderr": r["stderr"].strip(), "printed": printed, "manifest": manifest, "rows": rows}


def mix_row(res: dict, ceiling: str, labels: dict, offered_human: int) -> dict:
    ai = human = 0
    kept_human = {}
    for d in res["rows"]:  # every row counts toward the share (a repeated document is repeated text)
        t = count_tokens(d["text"])
        if labels[d["id"]] == "ai":
            ai += t
        else:
            human += t
            kept_human[d["id"]] = t
    kept_human = sum(kept_human.values())
    m, p = res["manifest"], res["printed"]["mix"]
    ok = m["within_ceiling"]
    agree = (m["verdict"]["within_ceiling"] == ok and p["within_ceiling"] == ok and p["verdict"] == m["verdict"]["line"]
             and (res["exit"] == 0) == ok and (ok or m["verdict"]["line"] in res["stderr"]))
    share = ai / (ai + human) if ai + human else 0.0
    bound = m["output"].get("ai_share_bound")
    return {"ceiling": ceiling, "true_share": share, "bound": bound, "within": ok,
            "bound_covers": bound is None or share <= bound + 1e-9,
            "exceeds": share > float(Fraction(ceiling)) + 0.01, "yield": kept_human / max(offered_human, 1),
            "documents": m["output"]["documents"], "tokens": m["output"]["tokens"], "exit": res["exit"],
            "agree": agree, "verdict": m["verdict"]["line"],
            "cuts": ", ".join(_cut(s) for s in m["sources"])}


def _cut(s: dict) -> str:
    sel = s.get("selection") or {}
    if sel.get("left_out"):
        return "out"
    if sel.get("pre_llm_only"):
        return "pre-LLM only"
    return f"p>={sel['pvalue_cut']:.3g}" if sel.get("pvalue_cut") is not None else "?"


# --- the check --------------------------------------------------------------------------------------------------

def run_set(name: str, args, work: Path) -> dict:
    model = train_model(name, work, args.limit_per_file, args.seed)
    base = work / name / model.name / f"h{args.max_humans}-s{args.seed}"
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    plan = build_crawl(name, base / "crawl", args.seed, args.max_humans)
    labels = plan["labels"]
    print(f"[{name}] crawl: {plan['counts']}", flush=True)
    src = [str(p) for p in plan["sources"]]
    tags = [p.stem.split("-")[1] for p in plan["sources"]]  # ai05, ai30, ai80
    res = {"name": name, "counts": plan["counts"], "estimates": [], "flags": [], "invariants": [], "mixes": []}
    lodo = json.loads((model / "model_card.json").read_text()).get("leave_one_dataset_out") or {}
    tprs = {k: m["tpr_at_5pct_fpr"] for k, m in lodo.items() if k != "mean" and m.get("tpr_at_5pct_fpr") is not None}
    res["floor"] = min(tprs.items(), key=lambda kv: kv[1]) if tprs else None  # the interval's upper end assumes it

    def check(run: str, folder: Path, summary: dict, by_source: bool, ref_docs: list | None = None) -> list[dict]:
        docs = read_docs(folder)
        # the run's own pre-LLM pages calibrate unless their duplicate cluster held a 2024 copy
        own = [d for d in docs if d["pre_llm"] and is_pre_llm(d["last_seen"]) is not False]
        for line in invariants(summary, docs, own + (ref_docs or [])):
            res["invariants"].append(f"{name} run {run} {folder.name}: {line}")
        for r in estimate_rows(summary, docs, labels):
            res["estimates"].append({"run": run, "folder": folder.name, **r})
        groups = {}
        for d in docs:
            groups.setdefault(Path(d["source"]).stem if by_source else folder.name, []).append(d)
        for key, ds in sorted(groups.items()):
            if all(d["pre_llm"] for d in ds):
                continue
            res["flags"].append({"run": run, "source": key, **flag_rates(ds, labels)})
        return docs

    print(f"[{name}] run A: curate the reference and the three sources in one run", flush=True)
    a_dir = base / "A"
    a_docs = check("A", a_dir, curate([str(plan["ref"]), *src], a_dir, model, logs / "curate-A.log"), True)
    print(f"[{name}] run B: curate the reference, then each source with --human_reference", flush=True)
    ref_dir = base / "B-ref2021"
    ref_docs = check("B", ref_dir, curate([str(plan["ref"])], ref_dir, model, logs / "curate-B-ref.log"), False)
    b_dirs, b_docs = [], []
    for tag, path in zip(tags, src):
        d = base / f"B-{tag}"
        summary = curate([path], d, model, logs / f"curate-B-{tag}.log",
                         reference=str(ref_dir / "documents" / "*.parquet"))
        b_docs += check("B", d, summary, False, ref_docs)
        b_dirs.append(d)
    for run, folders, docs in (("B: 3 sources", b_dirs, b_docs), ("A: 1 source", [a_dir], a_docs)):
        offered = sum(d["tokens"] for d in docs if labels[d["id"]] == "human")
        for ceiling in args.ceilings.split(","):
            tag = f"mix-{run[0]}-{ceiling.replace('/', 'in')}"
            print(f"[{name}] {tag}", flush=True)
            r = mix(folders, ceiling, base / "mixes" / tag, args.seed, logs / f"{tag}.log")
            res["mixes"].append({"mix": run, **mix_row(r, ceiling, labels, offered)})
    return res


def _f(x, nd=3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def report(results: list[dict]) -> int:
    est = [(r["name"], e) for r in results for e in r["estimates"]]
    print("\n### Detectors (train-detector without the held-out set) and the crawls\n")
    print("| held-out set | reference docs | 2024 human / AI docs per source (ai05, ai30, ai80) | card's lowest "
          "LODO TPR@5%FPR (the interval's TPR floor) | AI flagged at p <= 0.05 on the held-out set (run B) |")
    print("|---|---:|---|---|---:|")
    for r in results:
        c = r["counts"]
        srcs = ", ".join(f"{v[0]}/{v[1]}" for k, v in c.items() if k != "reference")
        fl = [f["ai"] for f in r["flags"] if f["run"] == "B" and f["ai"][0] is not None]
        seen = sum(x[0] * x[1] for x in fl) / max(sum(x[1] for x in fl), 1) if fl else None
        floor = f"{r['floor'][1]:.3f} ({r['floor'][0]})" if r["floor"] else "—"
        print(f"| {r['name']} | {c['reference']:,} | {srcs} | {floor} | {_f(seen)} |")
    print("\n### Share estimates against the truth of the 2024 pages they cover\n")
    print("| held-out set | run | folder | estimate | 2024 docs | TRUE AI token share | estimate [ci95] | covers |")
    print("|---|---|---|---|---:|---:|---|---|")
    for name, e in est:
        shown = (f"{e['estimate']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]"
                 f"{' (outside_reference)' if e['which'] else ''}" if e["estimate"] is not None
                 else f"null ({e['reason']})")
        cov = "—" if e["covers"] is None else "yes" if e["covers"] else "**NO**"
        print(f"| {name} | {e['run']} | {e['folder']} | {e['kind']} {e['key']} | {e['documents']:,} | "
              f"{_f(e['truth'])} | {shown} | {cov} |")
    print("\n### Flags at ai_pvalue <= 0.05 on the 2024 pages (scored / all)\n")
    print("| held-out set | run | source | TRUE AI token share | served by | test humans flagged | AI flagged (TPR) |")
    print("|---|---|---|---:|---|---:|---:|")
    for r in results:
        for f in r["flags"]:
            h, a = f["human"], f["ai"]
            print(f"| {r['name']} | {f['run']} | {f['source']} | {_f(f['truth'])} | {', '.join(f['groups'])} | "
                  f"{_f(h[0])} ({h[1]:,}/{h[2]:,}) | "
                  f"{_f(a[0])} ({a[1]:,}/{a[2]:,}) |")
    print("\n### Mixes (`synthcap mix`, certified rule, target 10^9 tokens)\n")
    print("| held-out set | sources | ceiling | TRUE AI token share | certified bound | bound covers | "
          "<= ceiling + 0.01 | human-token yield | docs | exit | verdict agrees | cut per source |")
    print("|---|---|---|---:|---:|---|---|---:|---:|---:|---|---|")
    mixes = [(r["name"], m) for r in results for m in r["mixes"]]
    for name, m in mixes:
        print(f"| {name} | {m['mix']} | {m['ceiling']} | {m['true_share']:.4f} | {_f(m['bound'], 4)} | "
              f"{'yes' if m['bound_covers'] else '**NO**'} | {'**NO**' if m['exceeds'] else 'yes'} | "
              f"{m['yield']:.3f} | {m['documents']:,} | {m['exit']} | {'yes' if m['agree'] else '**NO**'} | "
              f"{m['cuts']} |")
    print("\n### Per held-out set\n")
    print("| held-out set | TPR floor on the card | AI flagged at p <= 0.05 | intervals covering the truth (null) | "
          "mixes <= ceiling + 0.01 | human-token yield, B / A mixes | invariants | verdicts agree |")
    print("|---|---:|---:|---|---|---|---|---|")
    for r in results:
        fl = [f["ai"] for f in r["flags"] if f["run"] == "B" and f["ai"][0] is not None]
        seen = sum(x[0] * x[1] for x in fl) / max(sum(x[1] for x in fl), 1) if fl else None
        judged = [e for e in r["estimates"] if e["covers"] is not None]
        yb = [m["yield"] for m in r["mixes"] if m["mix"].startswith("B")]
        ya = [m["yield"] for m in r["mixes"] if m["mix"].startswith("A")]
        print(f"| {r['name']} | {_f(r['floor'][1] if r['floor'] else None)} | {_f(seen)} | "
              f"{sum(e['covers'] for e in judged)}/{len(judged)} ({sum(e['estimate'] is None for e in r['estimates'])})"
              f" | {sum(not m['exceeds'] for m in r['mixes'])}/{len(r['mixes'])} | "
              f"{sum(yb) / max(len(yb), 1):.3f} / {sum(ya) / max(len(ya), 1):.3f} | "
              f"{'hold' if not r['invariants'] else str(len(r['invariants'])) + ' broken'} | "
              f"{sum(m['agree'] for m in r['mixes'])}/{len(r['mixes'])} |")
    bad_inv = [line for r in results for line in r["invariants"]]
    judged = [e for _, e in est if e["covers"] is not None]
    missed = [f"{n} {e['run']} {e['folder']} {e['key']}" for n, e in est if e["covers"] is False]
    nulls = sum(e["estimate"] is None for _, e in est)
    lying = [m for _, m in mixes if m["exceeds"] and m["within"]]
    over = [m for _, m in mixes if m["exceeds"]]
    disagree = [m for _, m in mixes if not m["agree"]]
    uncovered = [m for _, m in mixes if not m["bound_covers"]]
    print()
    print(f"- intervals: {len(judged) - len(missed)}/{len(judged)} cover the true share of the 2024 pages "
          f"({nulls} estimates null){'; MISSED: ' + '; '.join(missed) if missed else ''}")
    print(f"- document fields and summaries: {'all invariants hold' if not bad_inv else 'BROKEN: ' + '; '.join(bad_inv)}")
    print(f"- mixes: {len(mixes) - len(over)}/{len(mixes)} with a true AI share <= ceiling + 0.01 "
          f"({len(lying)} of those over it claimed within_ceiling); certified bound covered the truth in "
          f"{len(mixes) - len(uncovered)}/{len(mixes)}; mean human-token yield "
          f"{sum(m['yield'] for _, m in mixes) / max(len(mixes), 1):.3f}")
    print(f"- verdicts: exit status, printed summary and manifest.json agree in {len(mixes) - len(disagree)}/"
          f"{len(mixes)} mixes")
    return 1 if missed or bad_inv or over or disagree or uncovered else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=DEFAULT_SETS, help="held-out sets, comma-separated, or 'all'")
    ap.add_argument("--limit_per_file", type=int, default=2000, help="train-detector --limit_per_file")
    ap.add_argument("--max_humans", type=int, default=2000, help="human texts of a held-out set to use (keyed hash)")
    ap.add_argument("--ceilings", default="1/20,1/10")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "synthcap_ood_cli"),
                    help="models (cached), crawls, curated folders and mixes")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (set SYNTHCAP_SHARED to the shared data folder)")
        return 0
    names = (sorted(p.name[:-len(".jsonl.gz")] for p in DATA.glob("*.jsonl.gz")) if args.sets == "all"
             else args.sets.split(","))
    missing = [n for n in names if not (DATA / f"{n}.jsonl.gz").exists()]
    if missing:
        print(f"ood_cli: error: --sets: no {DATA / (missing[0] + '.jsonl.gz')}", file=sys.stderr)
        return 2
    work = Path(args.work)
    start = time.monotonic()
    results = [run_set(n, args, work) for n in names]
    print(f"\n{' '.join(sys.argv)}  (host load average at the end: {os.getloadavg()[0]:.2f}; "
          f"{time.monotonic() - start:.0f} s)")
    return report(results)


if __name__ == "__main__":
    sys.exit(main())

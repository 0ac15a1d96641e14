"""What a verb tells its user when it ends: one dict per run (what `--json` prints) and its aligned text.

The dict is built from the run's own summary (the numbers in OUT/summary.json and the manifest), never recounted,
so the screen, the JSON and the files agree.
"""
from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems


def accounting(summary: dict) -> dict:
    """Records read, kept, dropped by reason, dead letters by reason (each reason list largest first)."""
    def by_count(d):
        return dict(sorted((d or {}).items(), key=lambda kv: (-kv[1], kv[0])))

    return {"records_read": summary["records_read"], "kept": summary["documents_out"],
            "dropped": by_count(summary.get("dropped")), "dead_letters": by_count(summary.get("dead_letters")),
            "reconciles": summary.get("reconciles")}


def ai_share(summary: dict) -> dict | None:
    """The AI token share per reference group and per crawl (`ai_share`), when the run scored documents."""
    return summary.get("ai_share") or None


def _outputs(output: str, parts: dict[str, str]) -> dict[str, str]:
    return {name: FileSystems.join(output, rel) for name, rel in parts.items()}


CURATE_OUTPUTS = {"documents": "documents/", "provenance": "provenance/", "duplicates": "duplicates/",
                  "dropped": "dropped/", "dead_letters": "dead_letters/", "summary": "summary.json"}


def curate(summary: dict, output: str, verb: str = "curate") -> dict:
    out = {"verb": verb, **accounting(summary)}
    share = ai_share(summary)
    if share:
        out["ai_share"] = share
    out["output"] = output
    out["outputs"] = _outputs(output, CURATE_OUTPUTS)
    return out


def refresh(result: dict, output: str, index: str) -> dict:
    out = curate(result["summary"], output, "refresh")
    out["index"] = {"path": index, "generation": result["generation"], "committed": result["committed"],
                    "already_indexed": result["summary"].get("dropped", {}).get("duplicate_indexed", 0),
                    "new_documents": result["new_documents"]}
    return out


def mix(manifest: dict, output: str) -> dict:
    out = {"verb": "mix", **accounting(manifest["accounting"])}
    o = manifest["output"]
    out["mix"] = {"documents": o["documents"], "rows": o["rows"], "tokens": o["tokens"],
                  "target": manifest["target"], "unit": manifest["unit"], "shortfall": o["shortfall"],
                  "rule": manifest["synthetic_rule"], "ceiling": manifest["max_synthetic_fraction"],
                  "within_ceiling": manifest["verdict"]["within_ceiling"], "verdict": manifest["verdict"]["line"]}
    if o.get("ai_share_estimate") is not None:
        out["ai_share"] = {"by_output": {"all": {"estimate": o["ai_share_estimate"], "ci95": o["ai_share_interval"],
                                                 "documents": o["documents"], "tokens": o["tokens"],
                                                 "method": "certified mix"}}}
    out["output"] = output
    out["outputs"] = _outputs(output, {"train": "train/", "manifest": "manifest.json", "report": "report.html",
                                       "dropped": "dropped/", "dead_letters": "dead_letters/",
                                       "summary": "summary.json"})
    return out


def failure(run: dict) -> str | None:
    """The one line that makes a finished run a failure (a mix whose ceiling verdict is not met), else None."""
    m = run.get("mix")
    return m["verdict"] if m and not m["within_ceiling"] else None


# --- text -------------------------------------------------------------------------------------------------------

def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else str(x)


def _share_line(s: dict) -> str:
    if s.get("estimate") is None:
        return f"not estimated ({s.get('reason', 'no reason given')}; {_n(s.get('documents', 0))} documents)"
    lo, hi = s["ci95"]
    ref = s.get("reference") or {}
    against = f", against {ref['group']} ({_n(ref['documents'])} docs)" if ref.get("group") else ""
    out = s.get("outside_reference")
    newer = (f"; {out['estimate']:.3f} [{out['ci95'][0]:.3f}, {out['ci95'][1]:.3f}] of the "
             f"{_n(out['tokens'])} tokens outside the pre-LLM reference") if isinstance(out, dict) else ""
    return (f"{s['estimate']:.3f} [{lo:.3f}, {hi:.3f}] of {_n(s.get('tokens', 0))} tokens in "
            f"{_n(s.get('documents', 0))} docs ({s.get('method', '?')}{against}){newer}")


def _rows(run: dict) -> list[tuple[int, str, str]]:
    rows = [(0, "records read", _n(run["records_read"])), (0, "kept", _n(run["kept"])),
            (0, "dropped", _n(sum(run["dropped"].values())))]
    rows += [(1, reason, _n(n)) for reason, n in run["dropped"].items()]
    rows.append((0, "dead letters", _n(sum(run["dead_letters"].values()))))
    rows += [(1, reason, _n(n)) for reason, n in run["dead_letters"].items()]
    if "index" in run:
        ix = run["index"]
        state = (f"committed generation {ix['generation']}" if ix["committed"]
                 else f"unchanged at generation {ix['generation']} (nothing new)")
        rows += [(0, "already indexed", _n(ix["already_indexed"])), (0, "index", f"{ix['path']}: {state}")]
    if "mix" in run:
        m = run["mix"]
        rows += [(0, "mix", f"{_n(m['documents'])} documents, {_n(m['rows'])} rows, {_n(m['tokens'])} tokens"),
                 (0, "shortfall", f"{_n(m['shortfall'])} of the target {_n(m['target'])} {m['unit']}"),
                 (0, "verdict", m["verdict"])]
    if "ai_share" in run:
        rows.append((0, "AI share (tokens, 95% CI)", ""))
        for kind, groups in run["ai_share"].items():
            rows += [(1, f"{kind.removeprefix('by_')} {key}", _share_line(s)) for key, s in sorted(groups.items())]
    rows.append((0, "output", run["output"]))
    rows += [(1, name, path) for name, path in run["outputs"].items()]
    return rows


def render(run: dict, seconds: float | None = None) -> str:
    """Aligned text: a headline, then label / value rows (sub-rows indented under their total). With `seconds`
    (wall time, shown on screen only: the JSON stays the same for the same inputs), the rate too."""
    if "records_read" not in run:
        return _render_plain(run)
    rows = _rows(run)
    if seconds:
        rate = run["records_read"] / seconds
        rows.insert(1, (0, "time", f"{seconds:,.1f} s ({rate:,.0f} records/s)"))
    width = max(len("  " * indent + label) for indent, label, _ in rows)
    numbers = max((len(v) for _, _, v in rows if v.replace(",", "").isdigit()), default=0)
    rows = [(i, label, v.rjust(numbers) if v.replace(",", "").isdigit() else v) for i, label, v in rows]
    head = (f"synthcap {run['verb']}: kept {_n(run['kept'])} of {_n(run['records_read'])} records"
            + ("" if run.get("reconciles", True) else " (THE COUNTS DO NOT RECONCILE)"))
    return "\n".join([head] + [f"  {('  ' * i + label).ljust(width)}  {value}".rstrip() for i, label, value in rows])


def _render_plain(run: dict) -> str:
    """Verbs without record accounting (sample, train-detector): headline and flat label / value rows."""
    rows = [(k, v) for k, v in run.items() if k not in ("verb", "headline")]
    width = max((len(k) for k, _ in rows), default=0)
    lines = [f"synthcap {run['verb']}: {run['headline']}"]
    for k, v in rows:
        shown = f"{v:.3f}" if isinstance(v, float) else _n(v)
        lines.append(f"  {k.replace('_', ' ').ljust(width)}  {shown}")
    return "\n".join(lines)


def as_json(run: dict) -> str:
    return json.dumps(run, indent=2, sort_keys=False)


# --- while a run goes -------------------------------------------------------------------------------------------

def progress_line(verb: str, seconds: float, counts: dict[str, int] | None, running: float | None = None) -> str:
    """The one status line a terminal shows while a verb runs: records read and their rate since the pipeline
    started `running` seconds ago, files done, elapsed time. `counts` is None while the graph is built or when the
    runner reports nothing live (worker processes): then only the time."""
    elapsed = f"{seconds:,.0f} s"
    if counts is None:
        return f"synthcap {verb}: running, {elapsed}"
    records, files = counts.get("records_read", 0), counts.get("files_read", 0)
    span = seconds if running is None else running
    rate = records / span if span > 0 else 0.0
    return (f"synthcap {verb}: {_n(records)} records read ({rate:,.0f}/s), {_n(files)} "
            f"file{'' if files == 1 else 's'} done, {elapsed}")

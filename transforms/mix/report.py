"""Per-source statistics of a mix (a CombineFn), and the HTML report a person reads at a glance.

The report is one self-contained HTML file with inline SVG (no scripts, nothing fetched). It leads with the one
verdict (the same line the CLI prints and the manifest's `within_ceiling`): the certified 95% upper bound on the
true AI token share of the output against the ceiling, per source and in total; then the opt-in rule count, the
selection applied per source, shortfall and drops by reason; then charts with axes and counts: tokens per source
(certified AI bound vs human) against the ceiling, and each source's p-value (or p_ai) histogram, offered and
selected, with the cut marked.
"""
from __future__ import annotations

import html
import math

import apache_beam as beam

from transforms.mix.classify import Item

P_BINS = 20
PV_DECADES = 4  # p-value histogram: [0, 1e-4) then quarter decades up to 1
PV_BINS = 1 + 4 * PV_DECADES


def pvalue_bin(p: float | None) -> int | None:
    if p is None:
        return None
    if p < 10 ** -PV_DECADES:
        return 0
    return 1 + min(PV_BINS - 2, int((math.log10(max(p, 1e-300)) + PV_DECADES) * 4))


def empty_stats() -> dict:
    return {"documents": 0, "rows": 0, "tokens": 0, "units": 0, "charged": 0, "p_ai_charged": 0,
            "p_ai_hist": [0] * P_BINS,
            "pvalue_hist": [0] * PV_BINS}


class SourceStats(beam.CombineFn):
    """Items -> per-source totals; epoch-0 items count as documents, later epochs only as rows. `charged` is the
    sum of tokens x rate (fixed point): the certified AI-token bound, or the rule's synthetic tokens."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, item: Item):
        s = acc.get(item.source)
        if s is None:
            s = acc[item.source] = empty_stats()
        s["rows"] += 1
        s["documents"] += item.epoch == 0
        s["tokens"] += item.tokens
        s["units"] += item.units
        s["charged"] += item.tokens * item.rate
        p = item.p_ai
        s["p_ai_charged"] += item.expected
        if p is not None and item.epoch == 0:
            s["p_ai_hist"][min(P_BINS - 1, int(p * P_BINS))] += 1
        b = pvalue_bin(item.pvalue)
        if b is not None and item.epoch == 0:
            s["pvalue_hist"][b] += 1
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for src, s in a.items():
                t = out.setdefault(src, empty_stats())
                for k in ("documents", "rows", "tokens", "units", "charged", "p_ai_charged"):
                    t[k] += s[k]
                for k in ("p_ai_hist", "pvalue_hist"):
                    t[k] = [x + y for x, y in zip(t[k], s[k])]
        return out

    def extract_output(self, acc):
        return acc


def _esc(x) -> str:
    return html.escape(str(x))


def _bar_chart(sources: list[dict], ceiling: float, certified: bool) -> str:
    """Per source a bar of selected tokens split into AI (certified bound, or rule count) and the rest, on a token
    axis, with the ceiling's position in each bar marked. Names sit above their bars (never clipped)."""
    width, left, right, row = 760, 10, 210, 52
    plot = width - left - right
    scale = max([s["selected"]["tokens"] for s in sources] + [1])
    height = 40 + row * len(sources) + 50
    ai_label = "certified AI bound" if certified else "synthetic by the rule"
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="tokens per source">']
    for i, s in enumerate(sources):
        y = 20 + i * row
        tot = s["selected"]["tokens"]
        ai = min(tot, s["selected"]["ai_tokens"])
        w_tot = plot * tot / scale
        w_ai = w_tot * (ai / tot if tot else 0)
        name = s["name"] if len(s["name"]) <= 80 else s["name"][:79] + "…"  # in full in the table above
        parts.append(f'<text x="{left}" y="{y + 12}" font-size="13"><title>{_esc(s["name"])}</title>'
                     f'{_esc(name)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 18}" width="{w_tot - w_ai:.1f}" height="20" fill="#3b7dd8">'
                     f'<title>human {tot - ai:,.0f} tokens</title></rect>')
        parts.append(f'<rect x="{left + w_tot - w_ai:.1f}" y="{y + 18}" width="{w_ai:.1f}" height="20" '
                     f'fill="#e4572e"><title>{ai_label} {ai:,.0f} tokens</title></rect>')
        parts.append(f'<text x="{left + w_tot + 6:.1f}" y="{y + 33}" font-size="11">{tot:,} tokens, '
                     f'{ai:,.0f} AI</text>')
        if tot:
            x = left + w_tot * (1 - ceiling)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 15}" y2="{y + 41}" stroke="#111" '
                         f'stroke-width="2" stroke-dasharray="4 2"/>')
    axis_y = 30 + row * len(sources)
    parts.append(f'<line x1="{left}" x2="{left + plot}" y1="{axis_y}" y2="{axis_y}" stroke="#333"/>')
    for k in range(5):
        x = left + plot * k / 4
        anchor = "start" if k == 0 else ("end" if k == 4 else "middle")
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 5}" stroke="#333"/>'
                     f'<text x="{x:.1f}" y="{axis_y + 18}" font-size="11" text-anchor="{anchor}">'
                     f'{scale * k / 4:,.0f}</text>')
    parts.append(f'<text x="{left}" y="{axis_y + 38}" font-size="12">tokens selected. Blue: human, red: '
                 f'{ai_label}; dashed: the ceiling\'s share of each bar</text>')
    return "".join(parts) + "</svg>"


def _histogram(counts: list[int], colour: str, label: str, ticks: list[tuple[int, str]], cut: float | None) -> str:
    """Bars with a count axis (0 and max) and labelled bin edges; `cut` is the cut's position in bins."""
    w, h, left, bottom = 330, 100, 44, 34
    top = max(counts + [1])
    bw = (w - left - 8) / len(counts)
    parts = [f'<svg width="{w}" height="{h + bottom}" viewBox="0 0 {w} {h + bottom}" role="img" '
             f'aria-label="{_esc(label)}">']
    for i, c in enumerate(counts):
        bh = (h - 10) * c / top
        parts.append(f'<rect x="{left + i * bw:.1f}" y="{h - bh:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                     f'height="{bh:.1f}" fill="{colour}"><title>{c:,} documents</title></rect>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="10" y2="{h}" stroke="#333"/>'
                 f'<line x1="{left}" x2="{w - 8}" y1="{h}" y2="{h}" stroke="#333"/>'
                 f'<text x="{left - 4}" y="16" font-size="10" text-anchor="end">{top:,}</text>'
                 f'<text x="{left - 4}" y="{h}" font-size="10" text-anchor="end">0</text>')
    for pos, text in ticks:
        x = left + pos * bw
        anchor = "start" if pos == 0 else ("end" if pos == len(counts) else "middle")
        parts.append(f'<text x="{x:.1f}" y="{h + 13}" font-size="10" text-anchor="{anchor}">{_esc(text)}</text>')
    if cut is not None:
        x = left + cut * bw
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="6" y2="{h}" stroke="#a00" stroke-width="2"/>')
    parts.append(f'<text x="{left}" y="{h + 28}" font-size="10">documents per bin</text>')
    return (f'<figure>{"".join(parts)}</svg><figcaption>{_esc(label)}</figcaption></figure>')


def _pv_cut(alpha: float | None) -> float | None:
    if alpha is None or alpha <= 0:
        return None
    if alpha < 10 ** -PV_DECADES:
        return 1.0
    return 1 + (math.log10(alpha) + PV_DECADES) * 4


PV_TICKS = [(0, "0"), (1, "1e-4"), (5, "1e-3"), (9, "0.01"), (13, "0.1"), (17, "1")]
P_TICKS = [(0, "0"), (5, "0.25"), (10, "0.5"), (15, "0.75"), (20, "1")]


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def render(m: dict) -> str:
    sources = m["sources"]
    certified = m["synthetic_rule"] == "certified"
    ceiling = float(m["ceiling"])
    v = m["verdict"]
    out = m["output"]
    if certified:
        head = (f"<p>Certified 95% upper bound on the true AI token share of the output: "
                f"<b>{_fmt(out['ai_share_bound'])}</b>, estimate {_fmt(out['ai_share_estimate'])} "
                f"(interval [{_fmt(out['ai_share_interval'][0])}, {_fmt(out['ai_share_interval'][1])}]), "
                f"against a ceiling of <b>{ceiling:.4f}</b> ({_esc(m['max_synthetic_fraction'])}).</p>")
    else:
        head = (f"<p>Opt-in rule count ({_esc(m['synthetic_rule'])} rule; a count of the detector's opinion, not an "
                f"estimate of the true AI share): synthetic fraction <b>{_fmt(out['rule_fraction'])}</b> against a "
                f"ceiling of <b>{ceiling:.4f}</b>.</p>")
    rows = []
    for s in sources:
        sel, c = s["selected"], s["certified"]
        cut = s["selection"].get("pvalue_cut")
        cut_text = ("left out" if s["selection"].get("left_out") else "pre-LLM pages only"
                    if s["selection"].get("pre_llm_only") else
                    ("none" if not cut else f"p ≥ {cut:.4g}")) if certified else "—"
        drops = ", ".join(f"{k}: {n:,}" for k, n in s["dropped"].items()) or "—"
        rows.append(
            f"<tr><td>{_esc(s['name'])}</td><td>{'anchor' if s['anchor'] else ''}</td>"
            f"<td>{s['offered']['documents']:,}</td><td>{sel['documents']:,}</td><td>{sel['rows']:,}</td>"
            f"<td>{sel['tokens']:,}</td><td>{_fmt(c.get('ai_share_bound'))}</td><td>{_fmt(c.get('ai_share_estimate'))}"
            f"</td><td>{cut_text}</td><td>{_esc(s['selection'].get('limited_by') or '—')}</td>"
            f"<td>{s['shortfall']:,}</td><td>{_esc(drops)}</td></tr>")
    hists = []
    for s in sources:
        if certified:
            cut = None if s["selection"].get("left_out") else (
                PV_TICKS[-1][0] if s["selection"].get("pre_llm_only") else _pv_cut(s["selection"].get("pvalue_cut")))
            pair = (_histogram(s["offered"]["pvalue_hist"], "#999", f"{s['name']}: ai_pvalue offered (log scale)",
                               PV_TICKS, cut),
                    _histogram(s["selected"]["pvalue_hist"], "#3b7dd8", f"{s['name']}: ai_pvalue selected",
                               PV_TICKS, cut))
        else:
            cut = m["threshold"] * P_BINS if m["synthetic_rule"] == "threshold" else None
            pair = (_histogram(s["offered"]["p_ai_hist"], "#999", f"{s['name']}: p_ai offered", P_TICKS, cut),
                    _histogram(s["selected"]["p_ai_hist"], "#3b7dd8", f"{s['name']}: p_ai selected", P_TICKS, cut))
        hists.append(f"<div class='pair'>{''.join(pair)}</div>")
    dropped = ", ".join(f"{k}: {n:,}" for k, n in sorted(m["accounting"]["dropped"].items())) or "none"
    rule_line = (f"<p>For reference only, the posterior count Σ p_ai × tokens gives {_fmt(out.get('p_ai_fraction'))}"
                 f" (the detector's opinion; the verdict uses the certified bound).</p>" if certified else "")
    cut_note = ("red line: the p-value cut (documents left of it were dropped)" if certified else
                "red line: the threshold")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>synthcap mix report</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}} th{{white-space:normal}}
td:first-child,td:last-child{{text-align:left;white-space:normal;overflow-wrap:anywhere;max-width:300px}}
.ok{{color:#176317}} .bad{{color:#a00}}
.pair{{display:inline-block;margin-right:24px;vertical-align:top}} figure{{margin:4px}}
figcaption{{font-size:12px;max-width:330px;overflow-wrap:anywhere}}</style>
</head><body>
<h1>Mix report</h1>
<p id="verdict" class="{'ok' if v['within_ceiling'] else 'bad'}"><b>{_esc(v['line'])}</b></p>
{head}
<p>{out['documents']:,} documents, {out['rows']:,} rows, {out['tokens']:,} tokens ({_esc(m['token_definition'])});
target {m['target']:,} {m['unit']}; shortfall {out['shortfall']:,} {m['unit']}.</p>
{rule_line}
<h2>Sources</h2><table><tr><th>source</th><th></th><th>offered docs</th><th>selected docs</th><th>rows</th>
<th>tokens</th><th>AI share bound</th><th>AI share estimate</th><th>cut</th><th>limited by</th>
<th>shortfall ({m['unit']})</th><th>drops</th></tr>{''.join(rows)}</table>
<p>Drops by reason (whole run): {_esc(dropped)}.</p>
<h2>Tokens per source</h2>{_bar_chart(sources, ceiling, certified)}
<h2>Scores, offered and selected</h2><p>{cut_note}.</p>{''.join(hists)}
</body></html>
"""

"""Per-source statistics of a mix (a CombineFn), and the HTML report a person reads at a glance.

The report is one self-contained HTML file with inline SVG (no scripts, nothing fetched): tokens per source,
human and synthetic, against the ceiling; p_ai histograms of what was offered and what was selected; exclusions;
shortfall against quota.
"""
from __future__ import annotations

import html
from fractions import Fraction

import apache_beam as beam

from transforms.mix.classify import Item

P_BINS = 20


def _empty() -> dict:
    return {"documents": 0, "rows": 0, "tokens": 0, "synthetic_tokens": Fraction(0), "units": 0,
            "p_ai_hist": [0] * P_BINS}


class SourceStats(beam.CombineFn):
    """(source, Item) -> per-source totals; epoch-0 rows count as documents, later epochs only as rows."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, item: Item):
        s = acc.setdefault(item.source, _empty())
        s["rows"] += 1
        s["documents"] += item.epoch == 0
        s["tokens"] += item.tokens
        s["units"] += item.units
        s["synthetic_tokens"] += item.synthetic
        p = item.doc.p_ai
        if p is not None:
            s["p_ai_hist"][min(P_BINS - 1, int(p * P_BINS))] += 1
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for src, s in a.items():
                t = out.setdefault(src, _empty())
                for k in ("documents", "rows", "tokens", "units", "synthetic_tokens"):
                    t[k] += s[k]
                t["p_ai_hist"] = [x + y for x, y in zip(t["p_ai_hist"], s["p_ai_hist"])]
        return out

    def extract_output(self, acc):
        return acc


def _bar_chart(sources: list[dict], ceiling: float) -> str:
    width, row, left = 720, 34, 170
    scale = max([s["selected"]["tokens"] for s in sources] + [1])
    parts = [f'<svg width="{width}" height="{row * len(sources) + 40}" role="img" '
             f'aria-label="human and synthetic tokens per source">']
    for i, s in enumerate(sources):
        y = 10 + i * row
        tot = s["selected"]["tokens"]
        syn = float(Fraction(s["selected"]["synthetic_tokens"]))
        w_tot = (width - left - 20) * tot / scale
        w_syn = w_tot * (syn / tot if tot else 0)
        parts.append(f'<text x="0" y="{y + 17}" font-size="13">{html.escape(s["name"])}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w_tot - w_syn:.1f}" height="22" fill="#3b7dd8">'
                     f'<title>human {tot - syn:,.0f} tokens</title></rect>')
        parts.append(f'<rect x="{left + w_tot - w_syn:.1f}" y="{y}" width="{w_syn:.1f}" height="22" '
                     f'fill="#e4572e"><title>synthetic {syn:,.0f} tokens</title></rect>')
        if tot:
            x = left + w_tot * (1 - ceiling)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 3}" y2="{y + 25}" stroke="#111" '
                         f'stroke-width="2" stroke-dasharray="4 2"/>')
    parts.append(f'<text x="{left}" y="{row * len(sources) + 32}" font-size="12">blue: human tokens, red: '
                 f'synthetic tokens (by the rule); dashed line: where the ceiling would sit within the bar</text>')
    return "".join(parts) + "</svg>"


def _histogram(counts: list[int], colour: str, label: str) -> str:
    w, h = 300, 90
    top = max(counts + [1])
    bw = w / len(counts)
    bars = "".join(f'<rect x="{i * bw:.1f}" y="{h - h * c / top:.1f}" width="{bw - 1:.1f}" '
                   f'height="{h * c / top:.1f}" fill="{colour}"><title>{c}</title></rect>'
                   for i, c in enumerate(counts))
    return (f'<figure><svg width="{w}" height="{h + 16}" role="img" aria-label="{html.escape(label)}">{bars}'
            f'<text x="0" y="{h + 14}" font-size="11">p_ai 0</text><text x="{w - 30}" y="{h + 14}" '
            f'font-size="11">1</text></svg><figcaption>{html.escape(label)}</figcaption></figure>')


def render(manifest: dict) -> str:
    sources = manifest["sources"]
    ceiling = float(Fraction(manifest["max_synthetic_fraction"]))
    realised = manifest["realised"]
    est = manifest.get("estimated_true_synthetic_fraction") or {}
    rows = "".join(
        f"<tr><td>{html.escape(s['name'])}</td><td>{'anchor' if s['anchor'] else ''}</td>"
        f"<td>{s['offered']['documents']:,}</td><td>{s['selected']['documents']:,}</td>"
        f"<td>{s['selected']['rows']:,}</td><td>{s['selected']['tokens']:,}</td>"
        f"<td>{float(Fraction(s['selected']['synthetic_tokens'])):,.1f}</td>"
        f"<td>{', '.join(f'{k}: {v:,}' for k, v in s['excluded'].items()) or '—'}</td>"
        f"<td>{s['shortfall']:,}</td></tr>" for s in sources)
    hists = "".join(
        f"<div class='pair'><h3>{html.escape(s['name'])}</h3>"
        f"{_histogram(s['offered']['p_ai_hist'], '#999', 'offered')}"
        f"{_histogram(s['selected']['p_ai_hist'], '#3b7dd8', 'selected')}</div>" for s in sources)
    mix_est = est.get("all", {}).get("mixture", {})
    est_line = (f"estimated true AI share of the output (mixture model): {mix_est['estimate']:.3f} "
                f"[{mix_est['ci95'][0]:.3f}, {mix_est['ci95'][1]:.3f}]" if mix_est else "")
    ok = Fraction(realised["synthetic_fraction"]) <= Fraction(manifest["max_synthetic_fraction"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>synthcap mix report</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1000px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
.ok{{color:#176317}} .bad{{color:#a00}} .pair{{display:inline-block;margin-right:24px}} figure{{margin:4px}}</style>
</head><body>
<h1>Mix report</h1>
<p id="verdict" class="{'ok' if ok else 'bad'}">Realised synthetic fraction
<b>{float(Fraction(realised['synthetic_fraction'])):.4f}</b> ({realised['synthetic_fraction']} exactly, by the
{html.escape(manifest['synthetic_rule'])} rule, in tokens) against a ceiling of <b>{ceiling:.4f}</b>
({manifest['max_synthetic_fraction']}): {'within the ceiling' if ok else 'CEILING BROKEN'}.</p>
<p>{realised['documents']:,} documents, {realised['rows']:,} rows, {realised['tokens']:,} tokens; target
{manifest['target']:,} {manifest['unit']}. {html.escape(est_line)}</p>
<h2>Tokens per source</h2>{_bar_chart(sources, ceiling)}
<h2>Sources</h2><table><tr><th>source</th><th></th><th>offered docs</th><th>selected docs</th><th>rows</th>
<th>tokens</th><th>synthetic tokens</th><th>excluded</th><th>shortfall ({manifest['unit']})</th></tr>{rows}</table>
<h2>p_ai, offered and selected</h2>{hists}
</body></html>
"""

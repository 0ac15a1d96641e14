"""Does the certified ceiling hold on the truth? Leave-one-dataset-out over ../shared/data/detect.

    python benchmarks/true_ceiling.py [--per_label 3000] [--sets a,b] [--ceilings 1/20,1/10]

For each held-out set: English `human`/`ai` texts only (at most `--per_label` of each, by a keyed hash); half of
its humans (keyed hash) become the human reference, the rest are shared between three sources whose AI document
shares are 0.05, 0.3 and 0.8. Scores come from the shipped detector (`transforms/score/model.py`), p-values from
`conformal_pvalue` cross-fitted as the pipeline does (a document is compared with the other half of the reference)
and each source's `ai_share` from `estimate_share` with the TPR prior of the card's leave-one-dataset-out figures,
the held-out set excluded. Each source becomes a curated folder (documents + summary.json); `synthcap mix` runs
with the default certified rule at each ceiling. Reported per set and ceiling, from the labels: the TRUE AI token
share of the output, the human-token yield (human tokens kept / human tokens offered), the certified bound and
whether it covered the truth. The baseline in the same run is the opt-in `threshold` rule at the card's
threshold (what the mixer did before certification), run at the first ceiling. A diagnostic column per set runs
the same certified mixer with oracle share estimates (each source's true AI token share with a binomial 95%
interval on its document count): it separates what the mixer's cut-and-bound loses from what the estimates cost.

`--reference_in_sources` runs the default workflow instead, where the reference is the crawl's own pre-LLM pages:
the reference humans are split between the three sources as pages dated 2021 (`provenance.pre_llm`), offered to
the mix like any page, each with its p-value against the other reference half; each source's `ai_share` is then
over all its documents, with `reference_tokens` naming the pre-LLM share of them (as `curate` writes it). The
human-token yield counts them as offered human tokens.

Note: the shipped detector was trained on every set's training split, so its scores on a held-out set are
in-domain for it; the estimate's TPR prior excludes the held-out set.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import xxhash
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import mix  # noqa: E402
from transforms.document import Document, Provenance, from_table, to_table  # noqa: E402
from transforms.io.write import parquet_bytes  # noqa: E402
from transforms.score.estimate import TprPrior, estimate_share  # noqa: E402
from transforms.score.model import DEFAULT_MODEL_DIR, Detector  # noqa: E402
from transforms.score.reference import conformal_pvalue  # noqa: E402
from transforms.tokens import count_tokens  # noqa: E402

SHARES = (0.05, 0.3, 0.8)
DATA = Path(os.environ.get("SYNTHCAP_SHARED", ROOT.parent / "shared")) / "data" / "detect"


def _h(seed: int, key: str) -> int:
    return xxhash.xxh64_intdigest(f"{seed}\x00{key}".encode())


def load(path: Path, per_label: int, seed: int) -> dict:
    out = {"human": [], "ai": []}
    with gzip.open(path, "rt") as f:
        for line in f:
            r = json.loads(line)
            if r.get("label") in out and (r.get("language") or "en") == "en" and r.get("text", "").strip():
                out[r["label"]].append((r["id"], r["text"]))
    return {k: sorted(v, key=lambda x: _h(seed, x[0]))[:per_label] for k, v in out.items()}


def build_sources(data: dict, seed: int) -> tuple[list, list]:
    humans, ais = data["human"], data["ai"]
    ref = [t for t in humans if _h(seed + 1, t[0]) & 1]
    pool = [t for t in humans if not _h(seed + 1, t[0]) & 1]
    parts = [pool[i::len(SHARES)] for i in range(len(SHARES))]
    ai_left, sources = list(ais), []
    for share, hum in zip(SHARES, parts):
        want_ai = round(len(hum) * share / (1 - share))
        ai_here = ai_left[:want_ai]
        ai_left = ai_left[want_ai:]
        if len(ai_here) < want_ai:  # too few AI texts: fewer humans, same share
            hum = hum[:int(len(ai_here) * (1 - share) / share)]
        sources.append([(i, t, "human") for i, t in hum] + [(i, t, "ai") for i, t in ai_here])
    return ref, sources


def oracle_share(docs: list, tokens: list, n_ref: int) -> dict:
    ai = sum(t for (_, _, lab), t in zip(docs, tokens) if lab == "ai")
    share = ai / sum(tokens)
    half = 1.96 * (share * (1 - share) / len(docs)) ** 0.5 + 1 / len(docs)
    return {"estimate": share, "ci95": [max(0.0, share - half), min(1.0, share + half)], "documents": len(docs),
            "tokens": sum(tokens), "method": "oracle", "reference": {"group": "global", "documents": n_ref}}


def write_curated(folder: Path, name: str, docs: list, scores: np.ndarray, ref_scores: np.ndarray,
                  ref_tokens: np.ndarray, tpr: TprPrior | None, seed: int, pre_llm: tuple = ()) -> None:
    """A curated folder; its `ai_share` from `estimate_share`, or the oracle's when `tpr` is None. `pre_llm`:
    (reference positions, texts) of the reference pages this source also holds, as pre-LLM pages."""
    halves = [sorted(ref_scores[0::2].tolist()), sorted(ref_scores[1::2].tolist())]
    rows, tokens = [], []
    for k, ((doc_id, text, _), s) in enumerate(zip(docs, scores)):
        other = halves[1 - (_h(seed, doc_id) & 1)]
        rows.append(Document(id=doc_id, text=text, source=f"{name}.jsonl", offset=k, ai_score=float(s),
                             ai_pvalue=conformal_pvalue(float(s), other), ai_reference="global", p_ai=float(s)))
        tokens.append(count_tokens(text))
    if tpr is None:
        share = oracle_share(docs, tokens, len(ref_scores))
    else:
        share = estimate_share(scores, tokens, ref_scores, tpr, seed=seed, group="global",
                               reference_tokens=ref_tokens)
    if pre_llm:
        # the reference pages join the source (each compared with the other reference half, as curate does) and
        # the share covers them too: diluted by their tokens, which `reference_tokens` names
        positions, texts = pre_llm
        pre_tokens = 0
        for j, (pos, (doc_id, text)) in enumerate(zip(positions, texts)):
            rows.append(Document(id=doc_id, text=text, source=f"{name}.jsonl", offset=len(docs) + j,
                                 capture_date="2021-06-01T00:00:00Z", provenance=Provenance(pre_llm=True),
                                 ai_score=float(ref_scores[pos]),
                                 ai_pvalue=conformal_pvalue(float(ref_scores[pos]), halves[1 - pos % 2]),
                                 ai_reference="global", p_ai=float(ref_scores[pos])))
            pre_tokens += int(ref_tokens[pos])
        new = sum(tokens)
        f = new / (new + pre_tokens)
        share = {**share, "estimate": share["estimate"] * f, "ci95": [x * f for x in share["ci95"]],
                 "documents": share["documents"] + len(texts), "tokens": new + pre_tokens,
                 "reference_tokens": pre_tokens}
    (folder / "documents").mkdir(parents=True)
    (folder / "documents" / "documents-00000-of-00001.parquet").write_bytes(parquet_bytes(to_table(rows)))
    (folder / "summary.json").write_text(json.dumps({"ai_share": {"by_reference": {"global": share},
                                                                  "by_crawl": {}}}))


def run_mix(tmp: Path, folders: list[Path], ceiling: str, synthetic: dict | None) -> tuple[dict, list]:
    cfg = {"seed": 1, "target_tokens": 10 ** 9, "max_synthetic_fraction": ceiling,
           "sources": [{"name": f.name, "curated": [str(f)], "weight": 1} for f in folders]}
    if synthetic:
        cfg["synthetic"] = synthetic
    out = tmp / f"out-{ceiling.replace('/', '_')}-{(synthetic or {}).get('rule', 'certified')}"
    (tmp / "mix.yaml").write_text(yaml.safe_dump(cfg))
    m = mix.run(["--config", str(tmp / "mix.yaml"), "--output", str(out), "--overwrite"])
    rows = []
    for f in sorted((out / "train").glob("*.parquet")):
        rows += from_table(pq.read_table(f))
    return m, rows


def truth(rows: list, labels: dict) -> tuple[int, int]:
    ai = sum(count_tokens(d.text) for d in rows if labels[d.id] == "ai")
    return ai, sum(count_tokens(d.text) for d in rows) - ai


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per_label", type=int, default=3000)
    ap.add_argument("--sets", default="")
    ap.add_argument("--ceilings", default="1/20,1/10")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reference_in_sources", action="store_true",
                    help="the reference is the sources' own pre-LLM pages (the default curate workflow)")
    args = ap.parse_args()
    detector = Detector.load(DEFAULT_MODEL_DIR)
    names = args.sets.split(",") if args.sets else sorted(p.name[:-9] for p in DATA.glob("*.jsonl.gz"))
    ceilings = args.ceilings.split(",")
    table, results = [], []
    for name in names:
        data = load(DATA / f"{name}.jsonl.gz", args.per_label, args.seed)
        ref, sources = build_sources(data, args.seed)
        if len(ref) < 20 or not any(sources):
            table.append(f"| {name} | — | too few English human/AI texts | | | | | |")
            continue
        tpr = TprPrior.from_card(detector.card, exclude=(name,))
        ref_scores = detector.score([t for _, t in ref])
        ref_tokens = np.array([count_tokens(t) for _, t in ref])
        tmp = Path(tempfile.mkdtemp(prefix=f"true_ceiling_{name}_"))
        folders, oracles, labels, offered_human = [], [], {}, 0
        for k, (share, docs) in enumerate(zip(SHARES, sources)):
            folder = tmp / f"{name}-ai{int(share * 100):02d}"
            scores = detector.score([t for _, t, _ in docs])
            pre = ()
            if args.reference_in_sources:
                positions = list(range(k, len(ref), len(SHARES)))
                pre = (positions, [ref[i] for i in positions])
                labels.update({ref[i][0]: "human" for i in positions})
                offered_human += sum(int(ref_tokens[i]) for i in positions)
            write_curated(folder, folder.name, docs, scores, ref_scores, ref_tokens, tpr, args.seed, pre)
            write_curated(tmp / "oracle" / folder.name, folder.name, docs, scores, ref_scores, ref_tokens, None,
                          args.seed, pre)
            folders.append(folder)
            oracles.append(tmp / "oracle" / folder.name)
            labels.update({i: lab for i, _, lab in docs})
            offered_human += sum(count_tokens(t) for _, t, lab in docs if lab == "human")
        for ceiling in ceilings:
            c = float(Fraction(ceiling))
            m, rows = run_mix(tmp, folders, ceiling, None)
            ai, human = truth(rows, labels)
            share = ai / (ai + human) if ai + human else 0.0
            bound = m["output"]["ai_share_bound"]
            if ceiling == ceilings[0]:  # the rule keeps nearly everything at the card's threshold, whatever the ceiling
                b_m, b_rows = run_mix(tmp, folders, ceiling, {"rule": "threshold", "threshold": detector.threshold})
                b_ai, b_human = truth(b_rows, labels)
                b_share = b_ai / (b_ai + b_human) if b_ai + b_human else 0.0
            o_m, o_rows = run_mix(tmp / "oracle", oracles, ceiling, None)
            o_ai, o_human = truth(o_rows, labels)
            o_share = o_ai / (o_ai + o_human) if o_ai + o_human else 0.0
            yld = human / max(offered_human, 1)
            results.append((name, ceiling, share, yld, bound, share <= bound, share <= c + 0.01,
                            o_share, o_human / max(offered_human, 1), o_share <= c + 0.01))
            table.append(f"| {name} | {ceiling} | {share:.4f} | {yld:.3f} | {bound:.4f} | "
                         f"{'yes' if share <= bound else 'NO'} | {_ests(folders)} | {o_share:.4f} / "
                         f"{o_human / max(offered_human, 1):.3f} | {b_share:.4f} / "
                         f"{b_human / max(offered_human, 1):.3f} |")
            print(table[-1], flush=True)
    print("\n| held-out set | ceiling | TRUE AI token share | human-token yield | certified bound | bound covers "
          "truth | estimates [ci95] ai05 / ai30 / ai80 | oracle estimates: true share / yield | baseline threshold "
          "rule: true share / yield |")
    print("|---|---|---:|---:|---:|---|---|---|---|")
    print("\n".join(table))
    if results:
        within = sum(r[6] for r in results)
        print(f"\n{within}/{len(results)} mixes with a true AI share <= ceiling + 0.01; bound covered the truth in "
              f"{sum(r[5] for r in results)}/{len(results)}; mean human-token yield "
              f"{np.mean([r[3] for r in results]):.3f}. With oracle estimates: {sum(r[9] for r in results)}/"
              f"{len(results)} within ceiling + 0.01, mean yield {np.mean([r[8] for r in results]):.3f}")


def _ests(folders: list[Path]) -> str:
    out = []
    for f in folders:
        s = json.loads((f / "summary.json").read_text())["ai_share"]["by_reference"]["global"]
        out.append("null" if s.get("estimate") is None else f"{s['estimate']:.2f} [{s['ci95'][0]:.2f}, "
                   f"{s['ci95'][1]:.2f}]")
    return " / ".join(out)


if __name__ == "__main__":
    main()

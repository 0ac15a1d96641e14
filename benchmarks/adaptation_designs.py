"""Two designs for scoring a domain from the package and its reference alone, measured leave-one-dataset-out
against the detector they would extend (none of them is shipped: see RESULTS.md).

    SYNTHCAP_SHARED=../shared python benchmarks/adaptation_designs.py [--limit_per_file 600] [--threads 2]

For each held-out set H, the same protocol as `benchmarks/reference.py` (a detector trained on every other set; H's
humans split into A: 40% adaptation, B: 30% reference, C: 30% test; every flag threshold is B's conformal 95th
percentile), rows per design, columns TPR of H's AI texts and flag rate of C at that threshold:

- `detector` (the baseline, measured in the same run): the leave-H-out detector calibrated on B.
- `adapted (--data)`: the same training data plus A as human examples x10 (what `train-detector --human_reference`
  does today; it needs labelled AI text from the user).
- `compression +`: the detector's logit plus a reference-dictionary compression score (zlib size per byte of the
  document with 32 KB of A's text as preset dictionary, minus the same with 32 KB of AI text of the permissively
  licensed sets as dictionary: ZipPy-style, the research notes' direction), each standardised on B, summed.
- `package-only`: a fastText model trained on A's humans against AI continuations of the permissively licensed sets
  (fastdetectgpt, glimpse: MIT; seqxgpt: Apache-2.0; each without its human prefix, H left out), calibrated on
  the other half of A and held-out continuations: what a package could carry without `--data`.
- `ensemble`: the detector's logit plus half the package-only model's logit, standardised on B, summed.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reference as R  # noqa: E402  (benchmarks/reference.py: the protocol and its splits)

from transforms.score.calibration import Platt  # noqa: E402
from transforms.score.reference import conformal_threshold  # noqa: E402
from transforms.score.train import Example, fit, load, raw_scores  # noqa: E402

PERMISSIVE = ("fastdetectgpt", "glimpse", "seqxgpt")
DICT_BYTES = 32768


def continuations(path: str) -> list[tuple[str, str]]:
    """(set, AI text without the human prefix it continues) of one labelled file: seqxgpt records the prefix
    length; fastdetectgpt and glimpse share it with their paired human text (cut at the last space before the
    common prefix ends)."""
    rows = [json.loads(line) for line in gzip.open(path)]
    name = os.path.basename(path).split(".")[0]
    humans = collections.defaultdict(list)
    for r in rows:
        if r["label"] == "human":
            humans[r.get("pair_id")].append(r["text"])
    out = []
    for r in rows:
        if r["label"] != "ai" or (r.get("language") or "en") not in ("en", "eng"):
            continue
        text = r["text"]
        if r.get("human_prefix_chars"):
            text = text[int(r["human_prefix_chars"]):]
        else:
            cut = max((len(os.path.commonprefix([text, h])) for h in humans.get(r.get("pair_id"), [])), default=0)
            if cut:
                space = text.rfind(" ", 0, cut)
                text = text[space + 1 if space > 0 else cut:]
        if len(text.split()) >= 20:
            out.append((name, text.strip()))
    return out


def dictionary(texts: list[str]) -> bytes:
    out, n = [], 0
    for t in texts:
        out.append(t.encode())
        n += len(out[-1]) + 1
        if n >= DICT_BYTES:
            break
    return b"\n".join(out)[-DICT_BYTES:]


def compressed_per_byte(zdict: bytes, text: str) -> float:
    c = zlib.compressobj(9, zdict=zdict)
    b = text.encode()
    return len(c.compress(b) + c.flush()) / max(1, len(b))


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def flags(ai, ref, test) -> tuple[float, float]:
    t = conformal_threshold(np.sort(ref))
    return float((ai > t).mean()), float((test > t).mean())


def zsum(parts, weights):
    """Each (ai, ref, test) score triple standardised on its reference, summed with weights."""
    out = [np.zeros(len(x)) for x in parts[0]]
    for (a, b, c), w in zip(parts, weights):
        mu, sd = b.mean(), b.std() or 1.0
        for i, x in enumerate((a, b, c)):
            out[i] = out[i] + w * (x - mu) / sd
    return out


def run_set(held, examples, pool, args) -> dict:
    scored = R.score_set(held, examples, args)
    humans = [e for e in examples if e.dataset == held and e.label == 0]
    ai = [e for e in examples if e.dataset == held and e.label == 1]
    ai_texts = {e.text for e in ai}
    part = {k: [] for k in "ABC"}
    for e in humans:
        if e.text in ai_texts:
            continue
        u = R._u(args.seed, "split\x00" + e.text)
        part["A" if u < 0.4 else "B" if u < 0.7 else "C"].append(e)
    rows = {}
    det = [logit(x) for x in scored["shipped+ref"]["scores"]]  # (AI, B, C)
    rows["detector"] = flags(*det)
    rows["adapted (--data)"] = flags(*[logit(x) for x in scored["adapted"]["scores"]])

    ai_pool = sorted((t for s, t in pool if s != held), key=lambda t: R._u(args.seed + 4, t))
    human_dict = dictionary([e.text for e in sorted(part["A"], key=lambda e: R._u(args.seed + 2, e.text))])
    ai_dict = dictionary(ai_pool)

    def comp(es):
        return np.array([compressed_per_byte(human_dict, e.text) - compressed_per_byte(ai_dict, e.text) for e in es])

    rows["compression +"] = flags(*zsum([det, (comp(ai), comp(part["B"]), comp(part["C"]))], (1.0, 1.0)))

    ai_pool = ai_pool[:args.continuations]
    a_train = [e for e in part["A"] if R._u(args.seed + 6, e.text) < 0.5]
    a_cal = [e for e in part["A"] if R._u(args.seed + 6, e.text) >= 0.5]
    cut = int(len(ai_pool) * 0.9)
    model = fit([Example(t, 1, "package", "", "", "") for t in ai_pool[:cut]]
                + [Example(e.text, 0, "reference", "", "", "") for e in a_train], R.PARAMS, args.seed,
                threads=args.threads)
    cal = Platt.fit(raw_scores(model, [e.text for e in a_cal] + ai_pool[cut:]), [0] * len(a_cal) + [1] * (len(ai_pool) - cut))
    pkg = [logit(cal(raw_scores(model, [e.text for e in es]))) for es in (ai, part["B"], part["C"])]
    rows["package-only"] = flags(*pkg)
    rows["ensemble"] = flags(*zsum([det, pkg], (1.0, 0.5)))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit_per_file", type=int, default=600, help="texts per set and label")
    ap.add_argument("--continuations", type=int, default=4000, help="AI continuations the package-only model trains on")
    ap.add_argument("--weight", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sets", default="")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(R.DETECT, "*.jsonl.gz")))
    if not files:
        raise SystemExit(f"no labelled sets in {R.DETECT} (set SYNTHCAP_SHARED to the shared folder)")
    examples = R.balanced(load(files), args.limit_per_file, args.seed)
    pool = [c for f in files if os.path.basename(f).split(".")[0] in PERMISSIVE for c in continuations(f)]
    sets = args.sets.split(",") if args.sets else sorted({e.dataset for e in examples})
    results = {}
    for held in sets:
        results[held] = run_set(held, examples, pool, args)
        print(held, {k: tuple(round(x, 3) for x in v) for k, v in results[held].items()}, flush=True)
    designs = list(next(iter(results.values())))
    print(f"\n{args.limit_per_file} texts per set and label; {len(pool)} AI continuations in the pool\n")
    print("| held-out set | " + " | ".join(f"{d}: TPR / flags" for d in designs) + " |")
    print("|---|" + "---|" * len(designs))
    for held, rows in results.items():
        print(f"| {held} | " + " | ".join(f"{rows[d][0]:.3f} / {rows[d][1]:.3f}" for d in designs) + " |")
    means = {d: (np.mean([r[d][0] for r in results.values()]), max(r[d][1] for r in results.values())) for d in designs}
    print("| **mean TPR / max flags** | " + " | ".join(f"**{m[0]:.3f}** / {m[1]:.3f}" for m in means.values()) + " |")
    print("| ratio of mean TPR to the detector's | " + " | ".join(
        f"{m[0] / means['detector'][0]:.2f}" for m in means.values()) + " |")


if __name__ == "__main__":
    main()

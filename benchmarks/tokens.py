"""`count_tokens` against the regex it replaces (`len(TOKEN.findall(text))`, and the `finditer` count it was),
same run, same texts: µs per text, best of 5 interleaved repeats.

    SYNTHCAP_SHARED=../shared python benchmarks/tokens.py

Texts: benchmarks/mix.py's generated documents, and the labelled texts of ../shared/data/detect (first 2,000 of
each set) when present.
"""
from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

from transforms.tokens import TOKEN, count_tokens


def finditer_count(text: str) -> int:
    return sum(1 for _ in TOKEN.finditer(text))


def findall_count(text: str) -> int:
    return len(TOKEN.findall(text))


def corpora() -> dict:
    out = {"benchmarks/mix.py documents": [f"document w{i:08d} " + "word " * (20 + i % 60) for i in range(5000)]}
    detect = Path(os.environ.get("SYNTHCAP_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data/detect"
    texts = []
    for path in sorted(detect.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for _, line in zip(range(2000), f)]
    if texts:
        out[f"labelled texts ({len(texts):,}, data/detect)"] = texts
    return out


def main():
    fns = {"regex finditer (before)": finditer_count, "regex findall": findall_count, "count_tokens": count_tokens}
    print("| texts | " + " | ".join(f"{n} µs/text" for n in fns) + " | speed-up vs before |")
    print("|---|" + "---:|" * (len(fns) + 1))
    for name, texts in corpora().items():
        assert all(count_tokens(t) == findall_count(t) for t in texts)
        best = {n: float("inf") for n in fns}
        for _ in range(5):
            for n, fn in fns.items():
                t = time.perf_counter()
                for text in texts:
                    fn(text)
                best[n] = min(best[n], (time.perf_counter() - t) / len(texts) * 1e6)
        first = best["regex finditer (before)"]
        print(f"| {name} | " + " | ".join(f"{best[n]:.1f}" for n in fns) + f" | {first / best['count_tokens']:.1f}x |")


if __name__ == "__main__":
    main()

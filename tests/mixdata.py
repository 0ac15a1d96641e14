"""Curated folders built in code for mixer tests: documents with conformal p-values against a human reference
drawn from the same score distribution, and a summary.json carrying `ai_share` as the scoring stage writes it."""
from __future__ import annotations

import json
import random
from bisect import bisect_left
from pathlib import Path

from transforms.document import Document, to_table
from transforms.io.write import parquet_bytes
from transforms.tokens import count_tokens


def conformal_pvalue(score: float, ref_sorted: list[float]) -> float:
    ge = len(ref_sorted) - bisect_left(ref_sorted, score)
    return (1 + ge) / (len(ref_sorted) + 1)


def make_docs(name: str, n: int, ai_share: float, separation: float, seed: int, ref: list[float],
              min_words: int = 20, max_words: int = 120, group: str = "global") -> list[Document]:
    """Human scores ~ U(0,1); AI scores ~ U(0,1) ** (1 / separation) (separation 1: indistinguishable)."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        ai = rng.random() < ai_share
        s = rng.random() ** (1 / separation) if ai else rng.random()
        words = rng.randint(min_words, max_words)
        text = " ".join(["ai" if ai else "human"] * words)
        docs.append(Document(id=f"{name}-{i:05d}", text=text, source=f"{name}.warc.gz", offset=i, ai_score=s,
                             ai_pvalue=conformal_pvalue(s, ref), ai_reference=group, p_ai=min(1.0, s),
                             provenance={"declared_ai": False, "tdm_reservation": None, "robots_noai": False}))
    return docs


def is_ai(doc: Document) -> bool:
    return doc.text.startswith("ai")


def true_share(docs: list[Document]) -> float:
    tokens = sum(count_tokens(d.text) for d in docs)
    return sum(count_tokens(d.text) for d in docs if is_ai(d)) / tokens if tokens else 0.0


def write_curated(root: Path, docs: list[Document], n_ref: int, half_width: float = 0.03, group: str = "global",
                  estimate: float | None = None) -> Path:
    """A curated folder whose summary's estimate is the true token share (or `estimate`) with +- half_width."""
    (root / "documents").mkdir(parents=True)
    (root / "documents" / "documents-00000-of-00001.parquet").write_bytes(parquet_bytes(to_table(docs)))
    share = true_share(docs) if estimate is None else estimate
    s = {"estimate": share, "ci95": [max(0.0, share - half_width), min(1.0, share + half_width)],
         "documents": len(docs), "tokens": sum(count_tokens(d.text) for d in docs), "method": "test",
         "reference": {"group": group, "documents": n_ref}}
    (root / "summary.json").write_text(json.dumps({"ai_share": {"by_reference": {group: s}, "by_crawl": {}}}))
    return root


def reference(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.random() for _ in range(n))

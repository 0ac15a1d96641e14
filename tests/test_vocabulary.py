"""The closed vocabulary is exercised by name: every drop and dead-letter reason is produced by a test that names
it, and a test that enumerates the vocabulary fails when a reason has none (a new reason needs its test)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from transforms.accounting import DEAD_LETTER_REASONS, DROP_REASONS
from transforms.document import Document, from_table, replace, to_table
from transforms.io.write import parquet_bytes
from transforms.mix.config import Exclude
from transforms.tokens import count_tokens

TESTS = Path(__file__).resolve().parent


def _doc(i: int, words: int = 30, p_ai: float = 0.0, language: str | None = "en", domain: str = "a.example"):
    return Document(id=f"d{i:03d}", text=" ".join([f"word{i}"] * words), source="web.parquet", offset=i, p_ai=p_ai,
                    language=language, domain=domain,
                    provenance={"declared_ai": False, "tdm_reservation": None, "robots_noai": False,
                                "registered_domain": domain})


def test_excluded_filter_for_language_domain_and_length():
    from transforms.mix.classify import FIELDS, exclusion, fields_of

    def excluded(doc, ex, tokens):
        values = dict(zip(FIELDS + ("registered_domain", "tdm_reservation", "robots_noai"), fields_of(doc)))
        return exclusion(ex, tokens, values["language"], values["domain"], values["registered_domain"],
                         values["tdm_reservation"], values["robots_noai"])

    ex = Exclude(opt_out=True, languages=("de",), domains=("spam.example",), min_tokens=10)
    assert excluded(_doc(1, language="de"), ex, 30) == "excluded_filter"
    assert excluded(_doc(2, domain="spam.example"), ex, 30) == "excluded_filter"
    assert excluded(_doc(3, words=3), ex, 3) == "excluded_filter"
    assert excluded(_doc(4), ex, 30) is None
    plain = _doc(5)
    opted_out = replace(plain, provenance={**plain.provenance, "tdm_reservation": 1})
    assert excluded(opted_out, ex, 30) == "excluded_opt_out"


@pytest.mark.slow
def test_a_mix_names_excluded_filter_and_over_ceiling_in_its_files(tmp_path):
    """A real mix: German and short documents are filtered out, and the AI-heavy half is cut to hold a 10% ceiling;
    each reason is recounted from the written dropped/ files and matched against the manifest."""
    from pipeline import mix
    from tests.helpers import read_jsonl

    docs = ([_doc(i, p_ai=0.9 if i % 2 else 0.05) for i in range(60)]
            + [_doc(100 + i, language="de") for i in range(5)] + [_doc(200 + i, words=3) for i in range(4)])
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "part-0.parquet").write_bytes(parquet_bytes(to_table(docs)))
    cfg = {"seed": 1, "target_tokens": 100_000, "max_synthetic_fraction": "0.1",
           "synthetic": {"rule": "threshold", "threshold": 0.5},
           "exclude": {"languages": ["de"], "min_tokens": 10},
           "sources": [{"name": "web", "inputs": [str(tmp_path / "web" / "*.parquet")], "weight": 1}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    m = mix.run(["--config", str(tmp_path / "mix.yaml"), "--output", str(tmp_path / "out")])
    dropped = read_jsonl(tmp_path / "out", "dropped")
    by_reason: dict[str, set] = {}
    for row in dropped:
        by_reason.setdefault(row["reason"], set()).add(row["id"])
    assert by_reason["excluded_filter"] == {f"d{100 + i:03d}" for i in range(5)} | {f"d{200 + i:03d}" for i in range(4)}
    cut = by_reason["over_ceiling"]
    assert cut and all(int(i[1:]) % 2 for i in cut)  # only AI-flagged documents are cut for the ceiling
    assert m["accounting"]["dropped"]["excluded_filter"] == 9
    assert m["accounting"]["dropped"]["over_ceiling"] == len(cut)
    rows = []
    for f in sorted((tmp_path / "out" / "train").glob("*.parquet")):
        rows += from_table(pq.read_table(f))
    synthetic = sum(count_tokens(d.text) for d in rows if d.p_ai >= 0.5)
    assert rows and synthetic * 10 <= sum(count_tokens(d.text) for d in rows)
    assert not {d.id for d in rows} & set().union(*by_reason.values())


def _test_strings(path: Path) -> set[str]:
    """String constants inside test functions (and their nested helpers) of one test module."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") \
                and node.name != "test_every_reason_in_the_vocabulary_is_produced_by_a_test_that_names_it":
            found |= {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return found


def test_every_reason_in_the_vocabulary_is_produced_by_a_test_that_names_it():
    strings = set().union(*(_test_strings(p) for p in sorted(TESTS.glob("test_*.py"))))
    text = "\n".join(strings)
    missing = [r for r in [*DROP_REASONS, *DEAD_LETTER_REASONS]
               if not re.search(rf"(?<![A-Za-z0-9]){re.escape(r)}(?![A-Za-z0-9])", text)]
    assert not missing, f"no test names these closed-vocabulary reasons: {missing}"
    assert set(DROP_REASONS).isdisjoint(DEAD_LETTER_REASONS)  # a reason names one fate

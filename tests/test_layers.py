"""Imports follow the data flow: no module imports from a stage that runs after it, and the base model imports no
stage. Read from the source with `ast` (nothing is imported), so a lazy import inside a function counts too."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE = ("transforms.document", "transforms.dates", "transforms.tokens", "transforms.accounting")
# The data flow, lowest first: a module may import from its own layer and the ones before it.
LAYERS = ("base", "io", "provenance", "dedup", "refresh", "score", "mix", "api", "pipeline")


def layer(module: str) -> str | None:
    """The layer of a synthcap module, None for anything else (the standard library, Beam, ...)."""
    parts = module.split(".")
    if parts[0] == "pipeline":
        return "pipeline"
    if parts[0] != "transforms":
        return None
    if module == "transforms":
        return "api"  # transforms/__init__.py re-exports the public API of every stage
    if module in BASE:
        return "base"
    if parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS or BASE")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative ones resolved; `from a import b` also yields `a.b`
    (b may be a submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def target_layer(module: str) -> str | None:
    """The layer of an imported name: `transforms.io.write.WriteSharded` is in io, `transforms.Document` in api."""
    parts = module.split(".")
    if parts[0] not in ("transforms", "pipeline") or len(parts) == 1:
        return layer(parts[0]) if parts[0] in ("transforms", "pipeline") else None
    if ".".join(parts[:2]) in BASE or parts[0] == "pipeline":
        return layer(".".join(parts[:2]))
    return layer(".".join(parts[:2])) if parts[1] in LAYERS else "api"


SOURCES = sorted([*(ROOT / "transforms").rglob("*.py"), *(ROOT / "pipeline").rglob("*.py")])


def violations(path: Path) -> list[str]:
    mine = layer(module_name(path))
    out = []
    for line, imported in imports(path):
        theirs = target_layer(imported)
        if theirs is None or imported == "transforms" and mine == "api":
            continue
        if LAYERS.index(theirs) > LAYERS.index(mine):
            out.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {imported} ({theirs})")
    return out


def test_sources_found():
    names = {module_name(p) for p in SOURCES}
    assert {"transforms.document", "transforms.io.read", "transforms.mix.select", "pipeline.curate"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_runs_back_up(path):
    assert violations(path) == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a base module importing a stage and a stage importing pipeline are both refused."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "transforms" / "dedup").mkdir(parents=True)
    base = tmp_path / "transforms" / "document.py"
    base.write_text("from transforms.provenance.schema import SIGNALS\nimport json\n")
    stage = tmp_path / "transforms" / "dedup" / "exact.py"
    stage.write_text("from ..document import Document\nfrom pipeline.options import UserError\n"
                     "from transforms.score import model\n")
    assert violations(base) == [
        "transforms/document.py:1 (base) imports transforms.provenance.schema (provenance)",
        "transforms/document.py:1 (base) imports transforms.provenance.schema.SIGNALS (provenance)"]
    assert [v.split(" imports ")[1] for v in violations(stage)] == [
        "pipeline.options (pipeline)", "pipeline.options.UserError (pipeline)", "transforms.score (score)",
        "transforms.score.model (score)"]

"""deploy/: the template metadata matches the CLI, and the template's entry point runs on the DirectRunner."""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.options import VERBS

ROOT = Path(__file__).resolve().parents[1]


def cli_help() -> dict[str, str]:
    """Every flag of the template's verbs (the pipeline verbs, without the CLI-only --json) and its help text."""
    helps = {}
    for verb in VERBS.values():
        for cls in verb.pipeline_options if verb.pipeline else ():
            parser = argparse.ArgumentParser()
            cls._add_argparse_args(parser)
            helps.update({a.dest: a.help for a in parser._actions if a.dest != "help"})
    return helps


def test_metadata_lists_every_cli_option_and_nothing_else():
    meta = json.loads((ROOT / "deploy" / "metadata.json").read_text())
    names = [p["name"] for p in meta["parameters"]]
    assert len(names) == len(set(names))
    helps = cli_help()
    assert set(names) == set(helps) | {"verb"}
    assert all(p["helpText"] and p["label"] for p in meta["parameters"])
    assert all(p["helpText"].startswith(helps[p["name"]]) for p in meta["parameters"] if p["name"] != "verb")
    verbs = next(p for p in meta["parameters"] if p["name"] == "verb")["regexes"][0]
    assert verbs == f"^({'|'.join(sorted(v for v in VERBS if VERBS[v].pipeline))})$"


def test_requirements_pin_every_runtime_dependency():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {d.split("~=")[0].split("[")[0].lower() for d in deps}
    pinned = {line.split("==")[0].split("[")[0].lower() for line in (ROOT / "deploy" / "requirements.txt").read_text()
              .splitlines() if "==" in line}
    assert wanted <= pinned


def test_scheduled_launches_use_only_template_parameters():
    meta = {p["name"] for p in json.loads((ROOT / "deploy" / "metadata.json").read_text())["parameters"]}
    tree = ast.parse((ROOT / "deploy" / "airflow_dag.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") ==
             "DataflowStartFlexTemplateOperator"]
    assert len(calls) == 1
    params = next(d for d in ast.walk(calls[0]) if isinstance(d, ast.Dict)
                  and any(isinstance(k, ast.Constant) and k.value == "verb" for k in d.keys))
    assert {k.value for k in params.keys} <= meta | {"sdk_container_image"}
    assert '"verb": "refresh"' in (ROOT / "deploy" / "scheduler.sh").read_text()


@pytest.mark.slow
def test_template_entry_point_runs_locally(sample_crawl, tmp_path):
    shards = ",".join(str(p) for p in sorted(sample_crawl.glob("CC-MAIN-2022-05-0000[01].warc.gz")))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "pipeline" / "flex_main.py"), "--verb=curate",
                        f"--input={shards}", f"--output={out}", "--overwrite=false", "--no_near_dedup=true",
                        "--runner=DirectRunner"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconciles"] and summary["documents_out"] > 100
    assert "duplicate_near" not in summary["dropped"]
    bad = subprocess.run([sys.executable, str(ROOT / "pipeline" / "flex_main.py"), "--verb=refreshh"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--verb must be one of" in bad.stderr


def test_deploy_readme_quotes_throughput_only_from_results():
    """Every figure in the deploy README's throughput table is one that benchmarks/RESULTS.md reports."""
    import re

    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    table = [line for line in (ROOT / "deploy" / "README.md").read_text().splitlines()
             if line.startswith("  | ") and "docs/s" in line]
    assert len(table) >= 4
    for line in table:
        cells = line.split("|")[2:5]
        figures = [f for cell in cells for f in re.findall(r"\d[\d,]*\.?\d*", cell.split(" docs/s")[0][-12:])]
        assert figures, line
        for figure in figures:
            assert re.search(rf"(?<![\d.,]){re.escape(figure)}(?![\d,])", results), (figure, line)

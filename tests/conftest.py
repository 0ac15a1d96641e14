"""Shared fixtures: the ../shared data (skipped with a reason when absent), the sample crawl, a GCS emulator."""
from __future__ import annotations

import ast
import functools
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHCAP_SHARED", ROOT.parent / "shared"))


def _fixture_scope(node: ast.FunctionDef) -> str | None:
    """'module' for `@pytest.fixture(scope="module")`, 'function' for another fixture, None for a plain function."""
    for dec in node.decorator_list:
        call = dec if isinstance(dec, ast.Call) else None
        target = call.func if call else dec
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            scope = next((k.value for k in (call.keywords if call else []) if k.arg == "scope"), None)
            return scope.value if isinstance(scope, ast.Constant) and scope.value == "module" else "function"
    return None


@functools.cache
def _shared_runs(module: Path) -> dict[str, str]:
    """Test function name -> the shared run it asserts on: a module-scoped fixture of its module (reached directly
    or through the module's other fixtures) or the session's tiny model."""
    funcs = [n for n in ast.parse(module.read_text()).body if isinstance(n, ast.FunctionDef)]
    needs = {f.name: [a.arg for a in f.args.args] for f in funcs}
    runs = {f.name: {f.name} for f in funcs if _fixture_scope(f) == "module"}
    runs["tiny_model"] = {"tiny_model"}
    fixtures = {f.name for f in funcs if _fixture_scope(f)}
    for _ in fixtures:  # propagate through fixtures that use a shared run
        for name in fixtures:
            runs[name] = runs.get(name, set()).union(*(runs.get(a, set()) for a in needs[name]))
    out = {}
    for f in funcs:
        if f.name.startswith("test") and not _fixture_scope(f):
            shared = set().union(*(runs.get(a, set()) for a in needs[f.name]))
            if shared:
                out[f.name] = min(shared)
    return out


def _work_unit(nodeid: str) -> str:
    """What one xdist worker takes at once: all tests asserting on one shared run (so the run happens once), or a
    single test."""
    module, _, name = nodeid.partition("::")
    path = ROOT / module
    run = _shared_runs(path).get(name.split("[", 1)[0]) if path.is_file() else None
    return f"{module}::{run}" if run else nodeid


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` (pyproject.toml), refined: the tests sharing a run (a module-scoped fixture, or the tiny
    model) go to one worker, so the run happens once; every other test is its own unit, handed out in collection
    order (slow ones first)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return SharedRunScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Slow tests first, the units holding the most slow tests leading (a shared run and the tests on it), so no
    long unit starts last while the other worker idles."""
    slow = {}
    for item in items:
        if item.get_closest_marker("slow"):
            unit = _work_unit(item.nodeid)
            slow[unit] = slow.get(unit, 0) + 1
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, -slow.get(_work_unit(item.nodeid), 0),
                                 _work_unit(item.nodeid)))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests need the shared data folder beside the repo (CI has it)")
    return path


@pytest.fixture(scope="session")
def webcrawl_dir() -> Path:
    return _need(SHARED / "data" / "webcrawl")


@pytest.fixture(scope="session")
def detect_dir() -> Path:
    return _need(SHARED / "data" / "detect")


# fastText 0.9.3 reads heap memory it never initialised: a small model trained in a process whose heap has been
# used (a second training, or after scipy.optimize or py3langid loaded) meets garbage and stops with "Encountered
# NaN". MALLOC_PERTURB_=255 makes glibc hand out zero-filled blocks, so the training below sees what a fresh heap
# would hold. (Large models get fresh mmap'd pages, which is why the shipped configuration never hit it.)
_TRAIN_TINY = """
import json, sys
from transforms.score.train import train_detector
train_detector([sys.argv[1]], sys.argv[2], lodo=False, log=lambda m: None, search=[json.loads(sys.argv[3])])
"""
TINY_PARAMS = {"dim": 8, "bucket": 10_000, "epoch": 3, "wordNgrams": 2, "minn": 0, "maxn": 0}


def short_texts(detect: Path, per_label: int = 15, words: int = 25) -> list[dict]:
    """The first `words` words of `per_label` human and `per_label` AI English texts from each labelled file."""
    rows = []
    for path in sorted(detect.glob("*.jsonl.gz")):
        taken = {"human": 0, "ai": 0}
        with gzip.open(path, "rt") as f:
            for line in f:
                if min(taken.values()) >= per_label:
                    break
                r = json.loads(line)
                label = r.get("label")
                if label not in taken or taken[label] >= per_label or (r.get("language") or "en") != "en":
                    continue
                text = " ".join((r.get("text") or "").split()[:words])
                if text:
                    taken[label] += 1
                    rows.append({**r, "text": text})
    return rows


@pytest.fixture(scope="session")
def tiny_model(detect_dir, tmp_path_factory) -> tuple[Path, dict]:
    """A real detector (model.ftz + card from `train_detector`) trained in seconds on a few hundred short texts
    with a small dim and bucket count, in a fresh interpreter: for every test that needs *a* model."""
    root = tmp_path_factory.mktemp("tiny_model")
    data = root / "short.jsonl.gz"
    with gzip.open(data, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in short_texts(detect_dir))
    env = dict(os.environ, MALLOC_PERTURB_="255",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", _TRAIN_TINY, str(data), str(root / "model"), json.dumps(TINY_PARAMS)],
                   check=True, env=env, cwd=ROOT)
    return root / "model", json.loads((root / "model" / "model_card.json").read_text())


@pytest.fixture(scope="session")
def sample_crawl(tmp_path_factory) -> Path:
    from pipeline.sample import write_sample

    out = tmp_path_factory.mktemp("sample_crawl")
    write_sample(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """A real GCS emulator (gcp-storage-emulator) on 127.0.0.1; Beam's gcsio and google-cloud-storage reach it
    through STORAGE_EMULATOR_HOST. Credential lookup is short-circuited to anonymous (it would retry ~25 s)."""
    from apache_beam.internal.gcp import auth
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="synthcap-test")
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    old_env = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    auth._Credentials._credentials_init = True
    auth._Credentials._credentials = None
    yield "synthcap-test"
    server.stop()
    if old_env is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old_env
    auth._Credentials._credentials_init = False

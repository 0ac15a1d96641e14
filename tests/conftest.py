"""Shared fixtures: the ../shared data (skipped with a reason when absent), the sample crawl, a GCS emulator."""
from __future__ import annotations

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


def _shares_a_run(module: Path) -> bool:
    """A module whose tests assert on one pipeline run (a module-scoped fixture) or on the session's tiny model."""
    text = module.read_text()
    return '@pytest.fixture(scope="module")' in text or "tiny_model" in text


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` (pyproject.toml), refined: a module whose tests share a run goes to one worker, so the
    run happens once; every other test is its own unit, handed out in collection order (slow ones first)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    shared = {f"tests/{p.name}" for p in Path(__file__).parent.glob("test_*.py") if _shares_a_run(p)}

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in shared else nodeid

    return SharedRunScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Slow tests first, those of the modules with the most slow tests leading, so no long test or module starts
    last while the other worker idles."""
    slow = {}
    for item in items:
        if item.get_closest_marker("slow"):
            slow[item.module.__name__] = slow.get(item.module.__name__, 0) + 1
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, -slow.get(item.module.__name__, 0),
                                 item.module.__name__))


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

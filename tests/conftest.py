"""Shared fixtures: the ../shared data (skipped with a reason when absent), the sample crawl, a GCS emulator."""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHCAP_SHARED", ROOT.parent / "shared"))


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

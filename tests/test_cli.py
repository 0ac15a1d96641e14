"""User errors are one clear line and exit status 2, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("args, message", [
    (["curate", "--input", "/nonexistent/*.warc.gz", "--output", "OUT"], "no crawl shards match"),
    (["curate", "--output", "OUT"], "--input is required"),
    (["curate", "--input", "x", "--output", "OUT", "--bogus_flag", "1"], "unknown flag(s) for curate: --bogus_flag"),
])
def test_user_errors_are_one_line(args, message, tmp_path, capsys):
    args = [a.replace("OUT", str(tmp_path / "o")) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_unwritable_and_nonempty_outputs(tmp_path, sample_crawl, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["curate", "--input", str(sample_crawl / "*.wet.gz"), "--output", str(blocker / "out")]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    assert main(["curate", "--input", str(sample_crawl / "*.wet.gz"), "--output", str(full)]) == 2
    assert "is not empty and is not a synthcap output" in capsys.readouterr().err


def test_bad_flag_value_exits_cleanly():
    r = _cli("curate", "--input", "x", "--output", "y", "--max_document_bytes", "lots")
    assert r.returncode == 2 and "Traceback" not in r.stderr

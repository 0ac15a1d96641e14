"""Bootstrap for the two quick-start commands; needs only Python 3.10+ and pip.

    python3 tasks.py demo   # venv + install + sample crawl + curate (+ mix) on the DirectRunner
    python3 tasks.py test   # venv + install + the test suite (python3 tasks.py test -m "not slow": fast tier)

It exists so a fresh machine needs neither make nor a pre-installed package.
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(*cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def ensure_env():
    """Create .venv and install the project with its test extras, once per pyproject change."""
    if not PY.exists():
        _run(sys.executable, "-m", "venv", VENV)
    stamp = VENV / ".synthcap-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != want:
        _run(PY, "-m", "pip", "install", "-q", "--upgrade", "pip")
        _run(PY, "-m", "pip", "install", "-q", "-e", ".[test,bench]")
        stamp.write_text(want)


def demo(out="out/demo"):
    ensure_env()
    _run(PY, "-m", "pipeline.cli", "demo", "--output", out)
    print(f"synthcap is installed in {VENV / 'bin'}: `source .venv/bin/activate` puts it on your PATH")


def test(*args):
    ensure_env()
    workers = [] if any(a == "-n" or a.startswith("-n") and a[2:].isdigit() for a in args) else ["-n", "2"]
    rc = subprocess.run([str(PY), "-m", "pytest", "-p", "no:cacheprovider", *workers, *args], cwd=ROOT).returncode
    sys.exit(rc)


if __name__ == "__main__":
    verbs = {"demo": demo, "test": test, "env": ensure_env}
    if len(sys.argv) < 2 or sys.argv[1] not in verbs:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(verbs)}}} [args]")
    verbs[sys.argv[1]](*sys.argv[2:])

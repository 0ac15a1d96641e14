"""The README's flag tables, generated from the verbs' parsers: `python -m pipeline.flag_tables` rewrites them
in README.md between `<!-- flags: VERB -->` and `<!-- /flags -->` (a test checks they are current)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from pipeline.options import VERBS, flag_rows

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(<!-- flags: (?P<verb>[\w-]+) -->\n).*?(<!-- /flags -->)", re.S)


def table(verb: str) -> str:
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    for flag, default, meaning in flag_rows(VERBS[verb]):
        cell = "" if default == "" else f"`{default}`" if default not in ("required", "off") else default
        rows.append(f"| `{flag}` | {cell} | {meaning.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def regenerate(text: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + table(m.group("verb")) + m.group(3), text)


def verbs_in(text: str) -> list[str]:
    return [m.group("verb") for m in _BLOCK.finditer(text)]


if __name__ == "__main__":
    README.write_text(regenerate(README.read_text()))
    sys.exit(0)

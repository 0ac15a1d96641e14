"""Drops' JSON lines: the directly formatted line is the one `json.dumps` writes."""
from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from transforms.accounting import DROP_REASONS, Dropped

TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=30)  # surrogates and controls included


def _dumps(d: Dropped) -> str:
    return json.dumps(vars(d), ensure_ascii=False, sort_keys=True)


@given(TEXT, st.sampled_from(sorted(DROP_REASONS)), TEXT, st.integers(min_value=-(1 << 70), max_value=1 << 70),
       TEXT)
def test_drop_line_is_json_dumps(doc_id, reason, source, offset, detail):
    d = Dropped(doc_id, reason, source, offset, detail)
    assert d.to_json() == _dumps(d)
    assert json.loads(d.to_json()) == vars(d)


def test_drop_line_of_unusual_values_is_still_json_dumps():
    """Fields of other types than declared (a bool offset, a subclassed string) take json.dumps itself."""
    class Name(str):
        pass

    for d in (Dropped("a\"\\\n\u2028\ud800é", "over_quota", "s", True, ""),
              Dropped(Name("x"), "over_ceiling", "s", 3)):
        assert d.to_json() == _dumps(d)

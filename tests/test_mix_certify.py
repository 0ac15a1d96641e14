"""The certified mixer: the bound covers the truth on synthetic score distributions, one verdict everywhere, drop
reasons that tell the truth, invalid scores and unestimable groups, the skip-and-continue boundary, hashes on disk."""
from __future__ import annotations

import hashlib
import html
from fractions import Fraction
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import read_jsonl
from tests.mixdata import make_docs, reference, true_share, write_curated
from transforms.document import Document, from_table, to_table
from transforms.io.write import parquet_bytes
from transforms.mix import certify
from transforms.tokens import count_tokens


def _mix(tmp: Path, cfg: dict, extra=()) -> tuple[dict, list[Document]]:
    from pipeline import mix

    path = tmp / "mix.yaml"
    path.write_text(yaml.safe_dump(cfg))
    m = mix.run(["--config", str(path), "--output", str(tmp / "out"), "--overwrite", *extra])
    rows = []
    for f in sorted((tmp / "out" / "train").glob("*.parquet")):
        rows += from_table(pq.read_table(f))
    return m, rows


def test_pvalue_tail_bound_is_the_beta_quantile_and_covers_simulated_references():
    assert certify.pvalue_tail_hi(1 / 1000, 100, 0.01) == 0.0  # p < alpha impossible below 1 / (n + 1)
    rng = random.Random(5)
    n, alpha, misses = 200, 0.05, 0
    for _ in range(300):
        ref = sorted(rng.random() for _ in range(n))
        k = math.ceil(alpha * (n + 1) - 1)
        mass = 1 - ref[n - k]  # human mass above the k-th largest reference score = P(p < alpha)
        misses += mass > certify.pvalue_tail_hi(alpha, n, 0.05)
    assert misses <= 30  # ~5% of 300 expected; far more would mean the bound is not a 95% bound


def test_choose_cuts_the_ai_heavy_source_and_keeps_the_human_one():
    ref = 500
    bounds = certify.Bounds.of({"f#g": (0.05, 0.02, 0.08, ref), "f#h": (0.8, 0.75, 0.85, ref)})
    human = {"f#g": (1000, [1000] * len(certify.PVALUE_GRID) + [0])}
    heavy = {"f#h": (1000, [max(0, int(1000 * (1 - a * 3))) for a in certify.PVALUE_GRID] + [0])}
    opts = {s: certify.options(cells, [c[1] for c in cells.values()][0], [c[1] for c in cells.values()][0],
                               bounds, 10_000, 1) for s, cells in (("human", human), ("heavy", heavy))}
    chosen, limited = certify.choose(opts, 0.0, 0.1)
    assert chosen["human"].level == 0 and not limited["human"]
    total_ai = sum(o.ai for o in chosen.values())
    total = sum(o.tokens for o in chosen.values())
    assert total_ai <= 0.1 * total + 1e-6


def test_slack_goes_to_partly_human_pages_first_then_to_pages_charged_as_ai_whole():
    """The slack a human source leaves buys the newer pages of sources the greedy left out: first those the point
    estimates call partly human, then, with what is left, pages with no estimated human tokens (unestimable pages
    under treat_as_synthetic). Those were never bought: a treat_as_synthetic source was dropped whole as
    over_ceiling under a ceiling that did not bind."""
    bounds = certify.Bounds.of({"f#h": (0.0, 0.0, 0.0, 500), "f#p": (0.5, 0.1, 1.0, 500)})

    def opts(group: str):
        cells = {group: (1000, [1000] * len(certify.PVALUE_GRID) + [0])}
        units = [1000] * len(certify.PVALUE_GRID) + [0]
        return certify.options(cells, units, units, bounds, 1000, 1)

    # "a" comes first by name: were zero-human pages bought in the same pass, they would take b's slack
    chosen, _ = certify.choose({"a": opts(certify.UNESTIMATED), "b": opts("f#p"), "h": opts("f#h")}, 0.0, 0.1)
    assert chosen["h"].var_tokens == 1000 and chosen["b"].var_tokens > 0 and not chosen["a"].var_tokens
    chosen, _ = certify.choose({"a": opts(certify.UNESTIMATED), "h": opts("f#h")}, 0.0, 0.1)
    assert chosen["a"].var_tokens > 0 and chosen["a"].var_ai == chosen["a"].var_tokens
    assert sum(o.ai for o in chosen.values()) <= 0.1 * sum(o.tokens for o in chosen.values()) + 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("shares, separation, ceiling, seed", [([1.0, 0.3, 0.0], 3.0, "1/10", 567),
                                                              ([0.8, 0.05, 0.05, 0.0], 1.0, "1/20", 499)])
def test_certified_bound_covers_the_true_share_on_synthetic_scores(tmp_path_factory, shares, separation, ceiling,
                                                                    seed):
    """Where the truth is known: the certified bound is at most the ceiling, the verdict is yes, and the true AI
    token share of the rows written stays within the ceiling (+0.01 for sampling noise on a few hundred docs).
    Two whole pipelines (a wholly-AI source; scores that cannot tell AI from human), each with a human source
    (alone, the AI ones certify nothing: an empty mix, which is no success); the property over many populations
    is `test_plan_certifies_the_truth_on_synthetic_populations`, on the plan itself."""
    tmp = tmp_path_factory.mktemp("cert")
    n_ref = 400
    ref = reference(n_ref, seed)
    sources = []
    for i, share in enumerate(shares):
        docs = make_docs(f"s{i}", 300, share, separation, seed * 7 + i, ref)
        folder = write_curated(tmp / f"c{i}", docs, n_ref, half_width=0.03)
        sources.append({"name": f"s{i}", "curated": [str(folder)], "weight": 1})
    cfg = {"seed": seed, "target_tokens": 10 ** 6, "max_synthetic_fraction": ceiling, "sources": sources}
    m, rows = _mix(tmp, cfg)
    c = float(eval(ceiling))
    assert rows and m["verdict"]["within_ceiling"] and m["output"]["ai_share_bound"] <= c
    assert true_share(rows) <= c + 0.01, (true_share(rows), m["output"])
    assert m["accounting"]["reconciles"]
    for s in m["sources"]:  # the certified bound of each source covers its true share in the rows written
        got = [d for d in rows if d.metadata["mix_source"] == s["name"]]
        if got:
            assert true_share(got) <= s["certified"]["ai_share_bound"] + 0.05


@pytest.mark.slow
def test_one_verdict_cli_manifest_report_and_nonzero_exit_when_not_met(tmp_path):
    ref = reference(300, 2)
    ai_anchor = write_curated(tmp_path / "anchor", make_docs("a", 200, 0.9, 2.0, 1, ref), 300)
    cfg = {"seed": 1, "target_tokens": 5000, "max_synthetic_fraction": "1/10",
           "sources": [{"name": "anchor", "curated": [str(ai_anchor)], "anchor": True}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "mix", "--config", str(tmp_path / "mix.yaml"),
                           "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines() if line.startswith("synthcap")]
    assert len(err) == 1 and "CEILING NOT MET" in err[0]
    m = json.loads((out / "manifest.json").read_text())
    assert m["within_ceiling"] is False and m["verdict"]["line"] in err[0]
    report = (out / "report.html").read_text()
    assert html.escape(m["verdict"]["line"]) in report and 'class="bad"' in report


@pytest.mark.slow
def test_drop_reasons_over_quota_when_the_quota_is_met_and_over_ceiling_only_for_cuts(tmp_path):
    ref = reference(400, 3)
    human = write_curated(tmp_path / "h", make_docs("h", 300, 0.0, 20.0, 4, ref), 400, half_width=0.01)
    heavy = write_curated(tmp_path / "x", make_docs("x", 300, 0.8, 20.0, 5, ref), 400, half_width=0.03)
    cfg = {"seed": 2, "target_tokens": 8000, "max_synthetic_fraction": "1/10",
           "sources": [{"name": "h", "curated": [str(human)], "weight": 1},
                       {"name": "x", "curated": [str(heavy)], "weight": 1}]}
    m, rows = _mix(tmp_path, cfg)
    by = {s["name"]: s for s in m["sources"]}
    assert by["h"]["shortfall"] < 20 and set(by["h"]["dropped"]) == {"over_quota"}  # documents hold >= 20 tokens
    assert "over_ceiling" in by["x"]["dropped"]
    drops = read_jsonl(tmp_path / "out", "dropped")
    assert {d["reason"] for d in drops if d["detail"] == "h"} == {"over_quota"}
    assert m["accounting"]["dropped"].get("over_quota") == by["h"]["dropped"]["over_quota"] + \
        by["x"]["dropped"].get("over_quota", 0)


@pytest.mark.slow
def test_boundary_skips_what_does_not_fit_and_keeps_going(tmp_path):
    """One source, a token target: the mix stops short only when no unselected document would still fit."""
    rng = random.Random(9)
    ref = reference(300, 9)
    docs = make_docs("v", 120, 0.0, 5.0, 9, ref, min_words=1, max_words=1)
    docs = [Document(**{**d.__dict__, "text": " ".join(["human"] * rng.choice([5, 40, 90, 400, 2400]))})
            for d in docs]
    folder = write_curated(tmp_path / "v", docs, 300, half_width=0.005, estimate=0.0)
    cfg = {"seed": 4, "target_tokens": 20000, "max_synthetic_fraction": "1/2", "unestimable": "drop",
           "sources": [{"name": "v", "curated": [str(folder)], "weight": 1}]}
    m, rows = _mix(tmp_path, cfg)
    short = m["sources"][0]["shortfall"]
    chosen = {d.id for d in rows}
    left = [count_tokens(d.text) for d in docs if d.id not in chosen]
    assert m["output"]["tokens"] <= 20000
    assert not left or min(left) > short, (short, sorted(left)[:5])


def test_invalid_scores_are_dead_letters_and_never_counted(tmp_path):
    ref = reference(200, 1)
    docs = make_docs("b", 50, 0.0, 5.0, 1, ref)
    docs[0].p_ai, docs[1].ai_pvalue, docs[2].ai_score = float("nan"), -0.049, 1.5
    folder = write_curated(tmp_path / "b", docs, 200)
    cfg = {"seed": 1, "target_tokens": 10 ** 6, "max_synthetic_fraction": "1/10",
           "sources": [{"name": "b", "curated": [str(folder)], "weight": 1}]}
    m, rows = _mix(tmp_path, cfg)
    dead = read_jsonl(tmp_path / "out", "dead_letters")
    # a NaN is not a float value at all: the reader's type check refuses it; out-of-range values are the mixer's
    reasons = {d["offset"]: d["reason"] for d in dead}
    assert reasons[1] == reasons[2] == "invalid_score" and reasons[0] == "schema_error" and len(dead) == 3
    assert not {"b-00000", "b-00001", "b-00002"} & {d.id for d in rows}
    assert m["accounting"]["reconciles"] and m["accounting"]["dead_letters"] == {"invalid_score": 2,
                                                                                 "schema_error": 1}


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["drop", "treat_as_synthetic"])
def test_unestimable_groups_follow_the_policy(tmp_path, policy):
    ref = reference(200, 1)
    good = write_curated(tmp_path / "g", make_docs("g", 100, 0.0, 5.0, 1, ref), 200)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "part.parquet").write_bytes(parquet_bytes(to_table(make_docs("r", 40, 0.0, 5.0, 2, ref))))
    cfg = {"seed": 1, "target_tokens": 10 ** 6, "max_synthetic_fraction": "1/10", "unestimable": policy,
           "sources": [{"name": "g", "curated": [str(good)], "weight": 1},
                       {"name": "r", "inputs": [str(raw / "*.parquet")], "weight": 1}]}
    m, rows = _mix(tmp_path, cfg)
    r = next(s for s in m["sources"] if s["name"] == "r")
    assert m["verdict"]["within_ceiling"]
    if policy == "drop":
        assert r["dropped"] == {"unestimable": 40} and r["selected"]["documents"] == 0
    else:  # charged as wholly AI: as much as the human slack of g allows (none was taken: the slack bought only
        # pages its point estimates called partly human, and these are charged as AI whole)
        assert r["selected"]["documents"] > 0 and r["dropped"] == {"over_ceiling": 40 - r["selected"]["documents"]}
        assert r["selected"]["ai_tokens"] == r["selected"]["tokens"]
        assert m["output"]["ai_share_bound"] <= 0.1


def test_unestimable_fail_refuses_in_one_line(tmp_path):
    ref = reference(100, 1)
    folder = write_curated(tmp_path / "g", make_docs("g", 20, 0.0, 5.0, 1, ref), 100)
    summary = json.loads((folder / "summary.json").read_text())
    summary["ai_share"]["by_reference"]["global"] = {"estimate": None, "reason": "too_few_documents",
                                                     "documents": 20, "tokens": 900}
    (folder / "summary.json").write_text(json.dumps(summary))
    cfg = {"seed": 1, "target_tokens": 1000, "max_synthetic_fraction": "1/10", "unestimable": "fail",
           "sources": [{"name": "g", "curated": [str(folder)], "weight": 1}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "mix", "--config", str(tmp_path / "mix.yaml"),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2 and "too_few_documents" in proc.stderr and "unestimable: fail" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_manifest_sha256_is_the_bytes_on_disk(tmp_path):
    ref = reference(100, 1)
    folder = write_curated(tmp_path / "g", make_docs("g", 30, 0.0, 5.0, 1, ref), 100)
    cfg = {"seed": 1, "target_tokens": 10 ** 6, "max_synthetic_fraction": "1/10",
           "sources": [{"name": "g", "curated": [str(folder)], "weight": 1}]}
    m, _ = _mix(tmp_path, cfg)
    outs = m["sha256"]["outputs"]
    assert any(p.endswith(".jsonl.gz") for p in outs) and any(p.endswith(".parquet") for p in outs)
    for path, digest in {**outs, **m["sha256"]["inputs"]}.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest, path


def test_a_file_reached_twice_is_refused(tmp_path):
    from pipeline import mix
    from pipeline.options import UserError

    ref = reference(100, 1)
    folder = write_curated(tmp_path / "g", make_docs("g", 10, 0.0, 5.0, 1, ref), 100)
    cfg = {"seed": 1, "target_tokens": 1000, "max_synthetic_fraction": "1/10",
           "sources": [{"name": "a", "curated": [str(folder)], "weight": 1},
                       {"name": "b", "inputs": [str(folder / "documents" / "*")], "weight": 1}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match="also an input of source a"):
        mix.run(["--config", str(tmp_path / "mix.yaml"), "--output", str(tmp_path / "out")])
    docs = folder / "documents"
    cfg["sources"] = [{"name": "a", "inputs": [str(docs / "*"), str(docs / "*.parquet")], "weight": 1}]
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match="also an input of another of its inputs"):
        mix.run(["--config", str(tmp_path / "mix.yaml"), "--output", str(tmp_path / "out")])


@settings(max_examples=12, deadline=None, derandomize=True)
@given(shares=st.lists(st.sampled_from([0.0, 0.02, 0.1, 0.3, 0.8, 1.0]), min_size=1, max_size=4),
       separation=st.sampled_from([1.0, 2.0, 5.0, 50.0]), ceiling=st.sampled_from(["1/20", "1/10", "1/4"]),
       n_docs=st.sampled_from([300, 1200]), seed=st.integers(0, 10_000))
def test_plan_certifies_the_truth_on_synthetic_populations(shares, separation, ceiling, n_docs, seed):
    """The plan alone (no pipeline), where the truth is known: every source's estimate is its true token share
    with a binomial interval; the chosen cuts fit the ceiling in the certified bound, and the true AI share of
    what passes each cut stays under the certified rate (up to sampling noise)."""
    from transforms.mix.config import parse
    from transforms.mix.plan import Supply, make_certified_plan

    n_ref = 1000
    ref = reference(n_ref, seed)
    cfg = parse({"seed": 1, "target_tokens": 10 ** 9, "max_synthetic_fraction": ceiling,
                 "sources": [{"name": f"s{i}", "curated": [f"c{i}"], "weight": 1} for i in range(len(shares))]})
    supply, groups, docs_of = {}, {}, {}
    for i, share in enumerate(shares):
        docs = make_docs(f"s{i}", n_docs, share, separation, seed * 31 + i, ref[::2])  # cross-fitted half
        docs_of[f"s{i}"] = docs
        t = true_share(docs)
        half = 1.96 * (t * (1 - t) / n_docs) ** 0.5 + 1 / n_docs
        groups[certify.group_key(f"c{i}", "global")] = (t, max(0.0, t - half), min(1.0, t + half), n_ref)
        for d in docs:
            key = (f"s{i}", certify.group_key(f"c{i}", "global"), certify.grid_index(d.ai_pvalue))
            n = count_tokens(d.text)
            supply[key] = supply.get(key, Supply()) + Supply(n, 1, 0, n)
    plan = make_certified_plan(cfg, certify.Bounds.of(groups), supply)
    kept_tokens = kept_bound = 0.0
    for name, docs in docs_of.items():
        level = plan.level[name]
        if level is None:
            continue
        passed = [d for d in docs if certify.grid_index(d.ai_pvalue) >= level]
        tokens = sum(count_tokens(d.text) for d in passed)
        share = plan.budget[(name, "under")] + plan.budget[(name, "over")]
        kept_tokens += share
        kept_bound += share * plan.rate[name] / certify.SCALE
        assert true_share(passed) <= plan.rate[name] / certify.SCALE + 0.03, (name, level)
        assert share <= tokens
    assert kept_bound <= float(Fraction(ceiling)) * kept_tokens * 1.02 + 1


@pytest.mark.slow
def test_pre_llm_pages_count_as_human_unless_configured_otherwise(tmp_path):
    """Pre-LLM pages are the human reference itself: a source of them certifies even when its own share estimate
    is wide (it was estimated against itself); `pre_llm_is_human: false` charges them like any other page."""
    ref = reference(300, 5)
    docs = make_docs("old", 120, 0.0, 1.0, 5, ref)
    for d in docs:
        d.provenance = {**d.provenance, "pre_llm": True}
    folder = write_curated(tmp_path / "old", docs, 300, half_width=0.5, estimate=0.0)
    cfg = {"seed": 2, "target_tokens": 10 ** 6, "max_synthetic_fraction": "1/10",
           "sources": [{"name": "old", "curated": [str(folder)], "weight": 1}]}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    m, rows = _mix(tmp_path / "a", cfg)
    assert m["within_ceiling"] and len(rows) == len(docs)
    assert m["output"]["ai_share_bound"] == 0.0
    m, rows = _mix(tmp_path / "b", {**cfg, "pre_llm_is_human": False})
    assert len(rows) < len(docs) and m["output"]["tokens"] < sum(count_tokens(d.text) for d in docs)


# --- planner and selection, called directly (no pipeline) -------------------------------------------------------

def _item(source: str, i: int, units: int, excess: int = 0, stream: str = "under", epoch: int = 0, level: int = 0):
    from transforms.mix.classify import Item

    return Item(source, stream, epoch, i, units, units, 0, excess, f"{source}-{i}", f"{source}.parquet", i, None,
                None, 0, "", level)


def _walk(items, units, excess, limited=frozenset()):
    """Runs `_greedy` on one boundary bucket: (taken ids, {id: drop reason}, what is left)."""
    from apache_beam.pvalue import TaggedOutput

    from transforms.mix.plan import Plan
    from transforms.mix.select import _greedy

    plan = Plan({}, {}, {}, frozenset(limited))
    taken, drops, left = [], {}, None
    for out in _greedy((("web", "over"), items), {("web", "over"): (0, units, excess)}, plan):
        if isinstance(out, TaggedOutput) and out.tag == "selected":
            taken.append(out.value.id)
        elif isinstance(out, TaggedOutput):
            drops[out.value.id] = out.value.reason
        else:
            left = out[1]
    return taken, drops, left


def test_boundary_bucket_takes_the_longest_priority_ordered_set_that_fits():
    """Units 5, 9, 3, 2 in priority order against 10 left: 9 is skipped and the walk goes on to fill 10 exactly."""
    items = [_item("web", i, u) for i, u in enumerate([5, 9, 3, 2])]
    taken, drops, left = _walk(list(reversed(items)), 10, None)  # arrival order is not priority order
    assert taken == ["web-0", "web-2", "web-3"]
    assert drops == {"web-1": "over_quota"} and left == (0, None)


def test_boundary_finds_the_bucket_where_the_budget_runs_out():
    from transforms.mix.plan import boundary

    hist = {0: (4, 1), 1: (5, 2), 2: (3, 3)}
    assert boundary(hist, 10) == (2, 1, None)  # buckets 0 and 1 whole (9 units), 1 unit left for bucket 2
    assert boundary(hist, 12) == (1 << 62, 0, None)  # everything fits: no boundary
    assert boundary(hist, 12, excess=2) == (1, 8, 1)  # the excess budget runs out first, in bucket 1


def test_a_quota_cut_is_over_quota_and_an_excess_cut_is_over_ceiling():
    """Same walk, two budgets: a document refused for units is `over_quota`; for excess, `over_ceiling`; and a
    source the plan says the ceiling limited names every cut `over_ceiling`."""
    items = [_item("web", 0, 4, excess=5), _item("web", 1, 4, excess=1), _item("web", 2, 4, excess=1)]
    taken, drops, _ = _walk(items, 8, 10)
    assert taken == ["web-0", "web-1"] and drops == {"web-2": "over_quota"}
    taken, drops, _ = _walk(items, 100, 3)
    assert taken == ["web-1", "web-2"] and drops == {"web-0": "over_ceiling"}
    _, drops, _ = _walk(items, 8, 10, limited={"web"})
    assert drops == {"web-2": "over_ceiling"}


def test_certified_cut_names_quota_and_ceiling_cuts_apart():
    from transforms.mix.certify import SCALE
    from transforms.mix.config import parse
    from transforms.mix.plan import Plan
    from transforms.mix.select import _streams

    cfg = parse({"seed": 1, "target_tokens": 100, "max_synthetic_fraction": "1/10",
                 "sources": [{"name": "web", "inputs": ["x"], "weight": 1}]})
    low = _item("web", 0, 10, stream="", level=1)
    plan = Plan({"web": 100}, {}, {"web": 1}, frozenset(), level={"web": 3}, rate={"web": 0})
    assert [(o.tag, o.value.records[0][1]) for o in _streams([low], plan, cfg)] == [("dropped", "over_quota")]
    limited = Plan({"web": 100}, {}, {"web": 1}, frozenset({"web"}), level={"web": 3}, rate={"web": 0})
    assert [(o.tag, o.value.records[0][1]) for o in _streams([low], limited, cfg)] == [("dropped", "over_ceiling")]
    (kept,) = _streams([low._replace(level=5)], plan, cfg)
    assert kept.tag == "under" and len(kept.value) == 1
    assert kept.value[0] == low._replace(level=5, stream="under", rate=0, excess=-10 * SCALE)


def _rule_cfg(target: int):
    from transforms.mix.config import parse

    return parse({"seed": 1, "target_tokens": target, "max_synthetic_fraction": "1/10",
                  "synthetic": {"rule": "threshold", "threshold": 0.5},
                  "sources": [{"name": "human", "inputs": ["h"], "anchor": True},
                              {"name": "web", "inputs": ["w"], "weight": 1}]})


def test_rule_plan_takes_over_documents_when_the_anchors_leave_slack():
    """1,000 human anchor tokens leave room for 1000 x 0.1 / 0.9 = 111 synthetic tokens: the plan budgets over
    (synthetic) web documents up to that slack instead of refusing them, and says the ceiling limited it."""
    from transforms.mix.classify import ANCHOR, OVER, UNDER
    from transforms.mix.classify import excess_of
    from transforms.mix.plan import Supply, make_plan

    cfg = _rule_cfg(1500)
    one = 1 << 32  # a rate of 1 in fixed point
    supply = {("human", ANCHOR): Supply(1000, 50, excess_of(1000, 0, cfg.ceiling), 1000),
              ("web", UNDER): Supply(0, 0, 0, 0),
              ("web", OVER): Supply(500, 25, excess_of(500, one, cfg.ceiling), 500)}
    plan = make_plan(cfg, supply)
    assert plan.budget[("web", OVER)] == 111  # floor(1000 * (1/10) / (9/10)): the most synthetic tokens that fit
    assert "web" in plan.limited  # quota 500, cut by the ceiling
    without_anchor = make_plan(cfg, {k: v for k, v in supply.items() if k[0] == "web"})
    assert without_anchor.budget[("web", OVER)] == 0


def test_certified_plan_keeps_the_ai_heavy_source_uncut_when_the_ceiling_has_room():
    """An anchor of certified-human text (pre-LLM) leaves room under 1/10: the web source's documents are all
    taken (cut level 0, AI-heavy ones included) rather than filtered, and nothing is limited by the ceiling."""
    from transforms.mix.config import parse
    from transforms.mix.plan import Supply, make_certified_plan

    cfg = parse({"seed": 1, "target_tokens": 11_600, "max_synthetic_fraction": "1/10",
                 "sources": [{"name": "old", "inputs": ["o"], "anchor": True},
                             {"name": "web", "inputs": ["w"], "weight": 1}]})
    groups = {"f#global": (0.5, 0.45, 0.55, 2000)}
    bounds = certify.Bounds.of(groups)
    supply = {("old", certify.PRE_LLM, certify.PRE_LLM_ONLY): Supply(10_000, 100, 0, 10_000)}
    supply.update({("web", "f#global", lv): Supply(100, 1, 0, 100) for lv in range(len(certify.PVALUE_GRID))})
    plan = make_certified_plan(cfg, bounds, supply)
    # the quota (1,600) needs every web document: 1,600 tokens at most ~55% AI fit the anchor's room of 1,000, so
    # the source (certified rate above the ceiling: an `over` stream) is budgeted whole against that slack
    assert plan.level["web"] == 0 and not plan.limited and plan.budget[("web", "over")] == 1_600
    assert plan.rate["web"] > (1 << 32) // 10
    tight = parse({**cfg.raw, "target_tokens": 20_000, "sources": cfg.raw["sources"]})
    heavy = {k: v for k, v in supply.items() if k[0] == "web"}
    heavy.update({("web", "f#global", lv): Supply(1000, 10, 0, 1000) for lv in range(len(certify.PVALUE_GRID))})
    plan = make_certified_plan(tight, bounds, {**supply, **heavy})
    assert "web" in plan.limited and plan.level["web"] != 0  # 16,000 tokens ~55% AI: no room, the ceiling cuts


def test_a_share_diluted_by_the_in_run_reference_is_rescaled_to_the_other_documents():
    """A group's share counts its pre-LLM reference documents too; charged as human in the mix, they hold no AI
    token, so the share the mixer applies to the other documents is tokens / (tokens - reference_tokens) larger."""
    from transforms.mix.certify import parse_ai_share

    s = {"estimate": 0.1, "ci95": [0.05, 0.2], "documents": 100, "tokens": 1000,
         "reference": {"group": "g", "documents": 300}}

    def parsed(extra, pre_llm_is_human=True):
        return parse_ai_share("F", {"ai_share": {"by_reference": {"g": {**s, **extra}}}}, pre_llm_is_human)

    assert parsed({})[0] == {"F#g": (0.1, 0.05, 0.2, 300)}
    assert parsed({"reference_tokens": 500})[0] == {"F#g": (0.2, 0.1, 0.4, 300)}
    assert parsed({"reference_tokens": 900})[0]["F#g"][2] == 1.0  # clipped to a share
    assert parsed({"reference_tokens": 1000})[0]["F#g"][2] == 1.0  # nothing outside the reference: no bound
    assert parsed({"reference_tokens": 500}, pre_llm_is_human=False)[0] == {"F#g": (0.1, 0.05, 0.2, 300)}
    for bad in (-5, 2000, True, "7"):
        usable, reasons = parsed({"reference_tokens": bad})
        assert usable == {} and "reference_tokens" in reasons["F#g"]


def test_a_summary_that_is_not_a_mapping_makes_its_folder_unusable_not_a_crash():
    """`COMPLETE.json` checks sizes, so a same-size hand edit of summary.json reaches the mixer: JSON that is not
    an object (or an `ai_share` that is not) failed the mix with an AttributeError (exit 1)."""
    from transforms.mix.certify import parse_ai_share

    for summary in ([1, 2], "text", 5, {"ai_share": [1]}, {"ai_share": {"by_reference": [1]}}):
        assert parse_ai_share("F", summary) == ({}, {"F#*": "ai_share.by_reference is not a mapping"})
    assert parse_ai_share("F", {}) == ({}, {})  # an unscored curate run: no groups, nothing wrong


def test_a_source_whose_new_pages_cannot_be_certified_gives_its_pre_llm_pages_and_spends_their_slack():
    """Pre-LLM pages pass a level no p-value reaches: a source mixing them with pages the detector cannot bound
    keeps every pre-LLM page (charged nothing, the `under` stream) and spends the slack they leave on its newer
    pages charged as 100% AI (the `over` stream): 5,000 x 1/10 / (1 - 1/10) = 555 tokens."""
    from transforms.mix.config import parse
    from transforms.mix.plan import Supply, make_certified_plan

    cfg = parse({"seed": 1, "target_tokens": 20_000, "max_synthetic_fraction": "1/10",
                 "sources": [{"name": "web", "inputs": ["w"], "weight": 1}]})
    bounds = certify.Bounds.of({"f#g": (0.3, 0.0, 1.0, 300)})  # the upper end says nothing
    supply = {("web", certify.PRE_LLM, certify.PRE_LLM_ONLY): Supply(5_000, 50, 0, 5_000)}
    supply.update({("web", "f#g", lv): Supply(1000, 10, 0, 1000) for lv in range(len(certify.PVALUE_GRID))})
    plan = make_certified_plan(cfg, bounds, supply)
    assert plan.rate["web"] == certify.SCALE and "web" in plan.limited
    assert plan.budget[("web", "under")] == 5_000 and plan.budget[("web", "over")] == 555
    assert 0 < plan.level["web"] < certify.PRE_LLM_ONLY  # the strictest cut that still fills the slack
    assert certify.grid_index(1.0) < certify.PRE_LLM_ONLY  # no p-value reaches it
    # with no pre-LLM pages and nothing else in the mix there is no slack: the source is left out
    newer_only = {k: v for k, v in supply.items() if k[1] != certify.PRE_LLM}
    plan = make_certified_plan(cfg, bounds, newer_only)
    assert plan.level["web"] is None and plan.budget[("web", "over")] == 0


def test_grid_index_is_the_largest_level_the_pvalue_reaches():
    """At, just below and just above every grid value, and in between: the level is the last one <= the p-value."""
    import math

    from transforms.mix import certify

    grid = certify.PVALUE_GRID
    for i, g in enumerate(grid):
        for p in (g, math.nextafter(g, 2.0), (g + (grid[i + 1] if i + 1 < len(grid) else 1.0)) / 2):
            assert certify.grid_index(p) == i, p
        if i:
            assert certify.grid_index(math.nextafter(g, -1.0)) == i - 1
    assert certify.grid_index(1.0) == len(grid) - 1 and certify.grid_index(None) == 0

"""The mixer: config validation, the exact ceiling on random supplies, anchors, repeats, shortfall, determinism,
and the report in a real headless browser."""
from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import math
import re
import shutil
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import tree_bytes
from transforms.document import Document, from_table, to_table
from transforms.io.write import parquet_bytes
from transforms.mix.certify import SCALE
from transforms.mix.config import ConfigError, load, parse
from transforms.tokens import count_tokens

RULE = {"rule": "threshold", "threshold": 0.5}
BASE = {"seed": 1, "target_tokens": 1000, "max_synthetic_fraction": "0.1",
        "sources": [{"name": "a", "inputs": ["x/*.parquet"], "weight": 1}]}


def _with(**changes):
    cfg = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if key.startswith("source_"):
            cfg["sources"][0][key[7:]] = value
        elif value is None:
            cfg.pop(key)
        else:
            cfg[key] = value
    return cfg


@pytest.mark.parametrize("cfg, message", [
    ("not a mapping", "must be a mapping"),
    (_with(colour="red"), "colour: unknown key"),
    (_with(target_tokens=None), "give exactly one"),
    # a missing seed was "seed: expected an integer >= 0, got None", as if the user had written null
    (_with(seed=None), "seed: required (an integer >= 0)"),
    (_with(target_documents=5), "give exactly one"),
    (_with(target_tokens=0), "target_tokens: expected an integer >= 1"),
    (_with(max_synthetic_fraction=None), "max_synthetic_fraction: required"),
    (_with(max_synthetic_fraction="ten percent"), "max_synthetic_fraction: 'ten percent' is not a decimal"),
    (_with(max_synthetic_fraction="3/2"), "between 0 and 1"),
    (_with(max_synthetic_fraction=[1]), "max_synthetic_fraction: expected a number"),
    # Fraction("1e-999999999") computes 10**999999999 (minutes of CPU, gigabytes): refused before it is parsed
    (_with(max_synthetic_fraction="1e-999999999"), "max_synthetic_fraction: '1e-999999999' is too long or too fine"),
    (_with(source_weight="1/" + "9" * 5000), "sources[0].weight: '1/999999999999999999'... (5,002 characters) is too"),
    (_with(synthetic={"rule": "vibes"}),
     "synthetic.rule: 'vibes' is not allowed; allowed: certified, threshold, expected"),
    (_with(synthetic={"rule": "certified", "threshold": 0.5}), "synthetic.threshold: only with rule: threshold"),
    (_with(unestimable="ignore"), "unestimable: 'ignore' is not allowed; allowed: drop, treat_as_synthetic, fail"),
    ({**_with(synthetic={"rule": "expected"}), "unestimable": "drop"}, "unestimable: only with synthetic.rule"),
    (_with(source_curated=["c"]), "sources[0].inputs / curated: give exactly one"),
    ({**BASE, "sources": [BASE["sources"][0], {**BASE["sources"][0], "name": "b"}]},
     "sources[1].inputs: 'x/*.parquet' is already an input of source 'a'"),
    (_with(synthetic={"rule": "threshold", "threshold": 2}), "synthetic.threshold: expected a number in [0, 1]"),
    (_with(synthetic={"rule": "expected", "threshold": 0.5}), "synthetic.threshold: only with rule: threshold"),
    (_with(exclude={"opt_out": "yes"}), "exclude.opt_out: expected true or false"),
    (_with(exclude={"languages": "en", "colour": 1}), "exclude.colour: unknown key"),
    (_with(exclude={"min_tokens": -1}), "exclude.min_tokens: expected an integer >= 0"),
    (_with(sources=[]), "sources: expected a non-empty list"),
    (_with(source_name=""), "sources[0].name: required"),
    (_with(source_inputs=[]), "sources[0].inputs: required"),
    (_with(source_weight=-1), "sources[0].weight: must be positive"),
    (_with(source_tokens=5), "sources[0].weight / tokens: give exactly one"),
    (_with(source_anchor="yes"), "sources[0].anchor: expected true or false"),
    (_with(source_anchor=True), "sources[0].anchor: an anchor source is included whole"),
    (_with(source_max_repeats=0), "sources[0].max_repeats: expected an integer >= 1"),
    (_with(source_max_repeats=10**21), "sources[0].max_repeats: at most 1,000, got 1,000,000,000,000,000,000,000"),
    (_with(source_extra=1), "sources[0].extra: unknown key"),
    # YAML keys need not be strings; they were sorted with the others (TypeError, exit 1)
    ({**BASE, 1: "x", "zzz": "y"}, "zzz: unknown key"),
    ({**BASE, None: "x"}, "null: unknown key"),
    (_with(exclude={1: 2, "colour": 3}), "exclude.colour: unknown key"),
    (_with(synthetic={1: 2, "colour": 3}), "synthetic.colour: unknown key"),
    ({**BASE, "sources": [{**BASE["sources"][0], 7: 1, "extra": 2}]}, "sources[0].extra: unknown key"),
    ({**BASE, "sources": BASE["sources"] * 2}, "sources[1].name: 'a' is used twice"),
    ({**_with(target_tokens=None, target_documents=9), "sources": [{"name": "a", "inputs": ["x"], "tokens": 5}]},
     "sources[0].tokens: a token budget needs target_tokens"),
])
def test_config_errors_name_the_key(cfg, message):
    with pytest.raises(ConfigError) as e:
        parse(cfg)
    assert message in str(e.value)


def test_one_file_under_two_names_is_refused_as_two_sources(tmp_path):
    """`d/x.parquet`, `d/../d/x.parquet` and a symlink are one file: its documents would enter the mix twice."""
    from pipeline.mix import match_inputs
    from pipeline.options import UserError

    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["t"]}), tmp_path / "d" / "x.parquet")
    (tmp_path / "link").symlink_to(tmp_path / "d")
    for alias in (tmp_path / "d" / ".." / "d" / "x.parquet", tmp_path / "link" / "x.parquet"):
        cfg = parse({**BASE, "sources": [{"name": "a", "inputs": [str(tmp_path / "d" / "*.parquet")], "weight": 1},
                                         {"name": "b", "inputs": [str(alias)], "weight": 1}]})
        with pytest.raises(UserError, match="is also an input of source a"):
            match_inputs(cfg)


@pytest.mark.slow
def test_a_copy_of_a_curated_folder_is_refused_as_a_second_source(tmp_path):
    """A copied curated folder holds the same documents under another path: its completion record lists the same
    sha256, so mixing both would count every document twice. Two runs that kept nothing are not copies."""
    from pipeline import curate
    from pipeline.mix import match_inputs
    from pipeline.options import UserError

    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} " + "words " * i})
                                               + "\n" for i in range(1, 6)))
    curate.run(["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "cur"), "--no_score"])
    shutil.copytree(tmp_path / "cur", tmp_path / "copy")
    cfg = parse({**BASE, "sources": [{"name": "a", "curated": [str(tmp_path / "cur")], "weight": 1},
                                     {"name": "b", "curated": [str(tmp_path / "copy")], "weight": 1}]})
    with pytest.raises(UserError, match=r"source b: .*copy/documents/.*\.parquet has the same bytes as .*cur/"
                                         r"documents/.*\.parquet \(source a\)"):
        match_inputs(cfg)

    for name in ("e1", "e2"):  # an empty input: each run writes the same schema-only shard
        (tmp_path / f"{name}.jsonl").write_text("")
        curate.run(["--input", str(tmp_path / f"{name}.jsonl"), "--output", str(tmp_path / name), "--no_score"])
    cfg = parse({**BASE, "sources": [{"name": "a", "curated": [str(tmp_path / "e1")], "weight": 1},
                                     {"name": "b", "curated": [str(tmp_path / "e2")], "weight": 1}]})
    assert set(match_inputs(cfg)[0]) == {"a", "b"}


def test_a_curated_folder_copied_without_its_marker_is_refused_not_read_as_foreign_parquet(tmp_path):
    """`cp -r cur/* copy/` leaves the hidden marker behind but copies COMPLETE.json: the copy was read as plain
    Parquet, unchecked, and mixed beside the original (every document twice). A folder holding a completion record
    is a synthcap output, marker or not: mix, curate and every reader refuse or skip it as one."""
    from pipeline.curate import input_shards
    from pipeline.mix import match_inputs, read_estimates
    from pipeline.options import UserError

    copy = tmp_path / "copy"
    (copy / "documents").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a"], "text": ["t"]}), copy / "documents" / "documents-00000-of-00001.parquet")
    (copy / "summary.json").write_text("{}")
    (copy / "COMPLETE.json").write_text('{"files": []}')
    why = (f"{copy} is not a synthcap output as it stands: it holds a COMPLETE.json but no valid .synthcap-output "
           "marker (copied without its hidden files?)")
    for source in ({"curated": [str(copy)]}, {"inputs": [str(copy / "documents" / "*.parquet")]}):
        cfg = parse({**BASE, "sources": [{"name": "a", "weight": 1, **source}]})
        with pytest.raises(UserError, match=re.escape(f"source a: {why}")):
            match_inputs(cfg)
    with pytest.raises(UserError, match=re.escape(why)):
        read_estimates(parse({**BASE, "sources": [{"name": "a", "weight": 1, "curated": [str(copy)]}]}))
    # curate skips it like any synthcap output a glob covers
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    kept, skipped = input_shards([str(tmp_path / "**")], str(tmp_path / "out"))
    assert [s.path for s in kept] == [str(tmp_path / "in.jsonl")] and skipped["folders"] == [str(copy)]
    # a crawl folder's own file of that name is no completion record: its files are read
    (tmp_path / "crawl").mkdir()
    (tmp_path / "crawl" / "COMPLETE.json").write_text('{"status": "all shards uploaded"}')
    (tmp_path / "crawl" / "c.jsonl").write_text('{"text": "x"}\n')
    kept, _ = input_shards([str(tmp_path / "crawl" / "*.jsonl")], str(tmp_path / "out"))
    assert [s.path for s in kept] == [str(tmp_path / "crawl" / "c.jsonl")]


def test_a_mix_input_inside_its_own_output_is_refused_before_the_claim_deletes_it(tmp_path):
    """`inputs: [OUT/train/*.parquet]` with `--output OUT --overwrite`: the claim deleted the earlier mix, then the
    run failed reading the files it had deleted (exit 1, the earlier output lost). Now refused before anything is
    touched; a wider glob (`data/**` over `data/out`) leaves OUT's files out, as curate does."""
    from pipeline.mix import match_inputs, run
    from pipeline.options import UserError
    from transforms.io.commit import COMPLETE, MARKER

    out = tmp_path / "data" / "out"
    (out / "train").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a"], "text": ["t"]}), out / "train" / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"id": ["b"], "text": ["u"]}), tmp_path / "data" / "x.parquet")
    data = (out / "train" / "train-00000-of-00001.parquet").read_bytes()
    (out / MARKER).write_text(json.dumps({"synthcap_output": 1, "verb": "mix", "run_id": "r", "run_key": "k"}))
    entry = {"path": "train/train-00000-of-00001.parquet", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (out / COMPLETE).write_text(json.dumps({"files": [entry]}))
    before = tree_bytes(out, ".")
    cfg = {**BASE, "synthetic": RULE, "sources": [{"name": "a", "inputs": [str(out / "train" / "*.parquet")],
                                                   "weight": 1}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match=f"source a: input {out}/train/train-00000-of-00001.parquet is inside the "
                                        f"output folder {out}: refusing to read what this run replaces"):
        run(["--config", str(tmp_path / "mix.yaml"), "--output", str(out), "--overwrite"])
    assert tree_bytes(out, ".") == before
    wide = parse({**cfg, "sources": [{"name": "a", "inputs": [str(tmp_path / "data" / "**")], "weight": 1}]})
    inputs, _ = match_inputs(wide, str(out))
    assert [sh.path for _, shards in inputs["a"] for sh in shards] == [str(tmp_path / "data" / "x.parquet")]


def test_ceiling_is_exact_from_strings():
    assert parse(_with(max_synthetic_fraction="1/20")).ceiling == Fraction(1, 20)
    assert parse(_with(max_synthetic_fraction="0.1")).ceiling == Fraction(1, 10)  # not the float 0.1


def _doc(source: str, i: int, words: int, p_ai: float, declared: bool = False, opt_out: bool = False) -> Document:
    return Document(id=f"{source}-{i:04d}", text=" ".join(["word"] * words), source=f"{source}.parquet", offset=i,
                    p_ai=p_ai, provenance={"declared_ai": declared, "tdm_reservation": 1 if opt_out else None,
                                           "robots_noai": False})


def _write_source(root: Path, name: str, docs: list[Document]) -> str:
    d = root / name
    d.mkdir(parents=True)
    (d / "part-0.parquet").write_bytes(parquet_bytes(to_table(docs)))
    return str(d / "*.parquet")


def _run_mix(tmp: Path, cfg: dict, extra=()) -> tuple[dict, list[Document]]:
    from pipeline import mix

    path = tmp / "mix.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp / "out"
    m = mix.run(["--config", str(path), "--output", str(out), "--overwrite", *extra])
    import pyarrow.parquet as pq

    rows = []
    for f in sorted((out / "train").glob("*.parquet")):
        rows += from_table(pq.read_table(f))
    return m, rows


def _realised(rows: list[Document], cfg: dict) -> tuple[Fraction, int]:
    """Recomputes the rule's synthetic fraction from the written rows alone, in exact arithmetic (the expected
    rule charges p_ai rounded up to 2^-32)."""
    rule = cfg["synthetic"]["rule"]
    t = cfg.get("synthetic", {}).get("threshold", 0.5)
    syn, total = Fraction(0), 0
    for d in rows:
        n = count_tokens(d.text)
        total += n
        if (d.provenance or {}).get("declared_ai") or d.p_ai is None:
            syn += n
        elif rule == "threshold":
            syn += n if d.p_ai >= t else 0
        else:
            syn += Fraction(math.ceil(d.p_ai * SCALE), SCALE) * n
    return (syn / total if total else Fraction(0)), total


supply = st.lists(st.tuples(st.integers(1, 60), st.floats(0, 1), st.booleans()), min_size=1, max_size=40)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(anchor=supply, web=supply, ceiling=st.sampled_from(["0", "1/10", "0.25", "1/3", "1"]),
       rule=st.sampled_from(["threshold", "expected"]), target=st.integers(50, 3000), repeats=st.integers(1, 3),
       seed=st.integers(0, 5))
def test_ceiling_never_exceeded_anchors_whole_repeats_capped(tmp_path_factory, anchor, web, ceiling, rule, target,
                                                             repeats, seed):
    tmp = tmp_path_factory.mktemp("prop")
    a_docs = [_doc("anchor", i, w, 0.0 if not d else 0.2, False) for i, (w, _, d) in enumerate(anchor)]
    w_docs = [_doc("web", i, w, p, declared=d and p > 0.9) for i, (w, p, d) in enumerate(web)]
    cfg = {"seed": seed, "target_tokens": target, "max_synthetic_fraction": ceiling,
           "synthetic": {"rule": rule} if rule == "expected" else {"rule": "threshold", "threshold": 0.5},
           "sources": [{"name": "anchor", "inputs": [_write_source(tmp, "anchor", a_docs)], "anchor": True},
                       {"name": "web", "inputs": [_write_source(tmp, "web", w_docs)], "weight": 1,
                        "max_repeats": repeats}]}
    m, rows = _run_mix(tmp, cfg)
    fraction, tokens = _realised(rows, cfg)
    anchor_excess = sum((_realised([d], cfg)[0] - Fraction(ceiling)) * count_tokens(d.text) for d in a_docs)
    if anchor_excess <= 0:  # anchors alone can only break the ceiling if they hold synthetic text themselves
        assert fraction <= Fraction(ceiling), (fraction, ceiling)
        assert m["within_ceiling"] and m["verdict"]["within_ceiling"]
    assert Fraction(m["output"]["rule_fraction_exact"]) == fraction and m["output"]["tokens"] == tokens
    assert m["within_ceiling"] == (fraction <= Fraction(ceiling))
    ids = Counter(d.id for d in rows)
    assert all(ids[d.id] == 1 for d in a_docs)  # every anchor document, once
    assert all(n <= repeats for i, n in ids.items() if i.startswith("web"))
    # recounted from the written rows and the config: the quota is the target less the (whole) anchor
    web_tokens = sum(count_tokens(d.text) for d in rows if d.metadata["mix_source"] == "web")
    anchor_tokens = sum(count_tokens(d.text) for d in a_docs)
    web_src = next(s for s in m["sources"] if s["name"] == "web")
    assert web_src["selected"]["units"] == web_tokens
    assert web_src["shortfall"] == max(0, max(0, target - anchor_tokens) - web_tokens)
    assert m["accounting"]["reconciles"]


@pytest.mark.slow
def test_targets_met_when_supply_allows_and_shortfall_reported_when_not(tmp_path):
    human = [_doc("web", i, 20, 0.01) for i in range(200)]
    cfg = {"seed": 3, "target_tokens": 1000, "max_synthetic_fraction": "0.1", "synthetic": RULE,
           "sources": [{"name": "web", "inputs": [_write_source(tmp_path, "web", human)], "weight": 1}]}
    m, rows = _run_mix(tmp_path, cfg)
    assert m["output"]["tokens"] == 1000 and m["sources"][0]["shortfall"] == 0
    synthetic = [_doc("syn", i, 20, 0.99) for i in range(200)]
    cfg["sources"] = [{"name": "syn", "inputs": [_write_source(tmp_path, "syn", synthetic)], "weight": 1}]
    m, rows = _run_mix(tmp_path, cfg)
    assert rows == [] and m["sources"][0]["shortfall"] == 1000  # shrinks rather than break the ceiling
    # an empty mix is no success: the manifest, the report and the CLI say so with one verdict
    assert m["output"]["shortfall"] == 1000 and not m["within_ceiling"]
    assert m["verdict"]["line"].startswith("NOTHING SELECTED: the mix is empty (shortfall 1,000 of the target")
    assert html.escape(m["verdict"]["line"]) in (tmp_path / "out" / "report.html").read_text()


def test_weighted_quotas_add_up_to_the_target(tmp_path):
    # three equal weights of 100 documents were floored to 33 each: 99 written, shortfall 0 reported
    cfg = {"seed": 3, "target_documents": 100, "max_synthetic_fraction": "1", "synthetic": RULE, "sources": [
        {"name": n, "inputs": [_write_source(tmp_path, n, [_doc(n, i, 5, 0.01) for i in range(60)])], "weight": 1}
        for n in ("a", "b", "c")]}
    m, rows = _run_mix(tmp_path, cfg)
    assert len(rows) == m["output"]["documents"] == 100 and m["output"]["shortfall"] == 0
    assert sorted(s["quota"] for s in m["sources"]) == [33, 33, 34]


@pytest.mark.slow
def test_an_empty_mix_exits_3_with_the_verdict_and_its_shortfall(tmp_path):
    synthetic = [_doc("syn", i, 20, 0.99) for i in range(50)]
    cfg = {"seed": 3, "target_tokens": 1000, "max_synthetic_fraction": "0.1", "synthetic": RULE,
           "sources": [{"name": "syn", "inputs": [_write_source(tmp_path, "syn", synthetic)], "weight": 1}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "mix", "--config", str(tmp_path / "mix.yaml"),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("synthcap mix: NOTHING SELECTED: the mix is empty (shortfall 1,000")
    assert "shortfall" in proc.stdout and "1,000 of the target 1,000 tokens" in proc.stdout
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["verdict"]["line"] in err[0]


@pytest.mark.slow
def test_same_seed_same_bytes_across_workers_and_another_seed_another_sample(tmp_path):
    docs = [_doc("web", i, 10 + i % 17, (i * 37 % 100) / 100) for i in range(300)]
    src = _write_source(tmp_path, "web", docs)
    cfg = {"seed": 11, "target_documents": 120, "max_synthetic_fraction": "1/4", "synthetic": RULE,
           "sources": [{"name": "web", "inputs": [src], "weight": 1}]}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, rows_a = _run_mix(tmp_path / "a", cfg)
    _run_mix(tmp_path / "b", cfg, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert tree_bytes(tmp_path / "a" / "out", "train") == tree_bytes(tmp_path / "b" / "out", "train")
    (tmp_path / "c").mkdir()
    _, rows_c = _run_mix(tmp_path / "c", dict(cfg, seed=12))
    assert {d.id for d in rows_a} != {d.id for d in rows_c}


@pytest.mark.slow
def test_opt_out_is_excluded_and_counted(tmp_path):
    docs = [_doc("web", i, 30, 0.0, opt_out=i % 4 == 0) for i in range(40)]
    cfg = {"seed": 1, "target_tokens": 10_000, "max_synthetic_fraction": "0.1", "synthetic": RULE,
           "sources": [{"name": "web", "inputs": [_write_source(tmp_path, "web", docs)], "weight": 1}]}
    m, rows = _run_mix(tmp_path, cfg)
    assert m["sources"][0]["excluded"] == {"excluded_opt_out": 10}
    assert not any(d.provenance["tdm_reservation"] == 1 for d in rows)


OVERFLOW_PROBE = """<script>
window.addEventListener('load', () => {
  const bad = [];
  for (const svg of document.querySelectorAll('svg')) {
    const box = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll('text')) {
      const r = t.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        bad.push('svg text: ' + t.textContent);
    }
  }
  for (const el of document.querySelectorAll('body, p, td, th, h1, h2, figcaption, figure, div'))
    if (el.scrollWidth > el.clientWidth + 1) bad.push(el.tagName + ': ' + el.textContent.slice(0, 60));
  document.body.setAttribute('data-overflow', JSON.stringify(bad));
});
</script>"""


@pytest.mark.slow
def test_report_renders_in_headless_chromium_with_no_clipped_text(tmp_path):
    """The report in a real browser: one verdict, axes and counts, the cut marked; a probe script (added to a copy,
    the report itself has none) checks that no text leaves its box."""
    from tests.mixdata import make_docs, reference, write_curated

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed (CI installs it: .ci/run)")
    ref = reference(300, 1)
    long_name = "a-source-with-a-rather-long-descriptive-name-" * 3
    cfg = {"seed": 1, "target_tokens": 20_000, "max_synthetic_fraction": "0.1", "sources": [
        {"name": "human", "curated": [str(write_curated(tmp_path / "h", make_docs("h", 120, 0.05, 8, 1, ref), 300))],
         "weight": 1},
        {"name": long_name, "curated": [str(write_curated(tmp_path / "x", make_docs("x", 120, 0.6, 8, 2, ref), 300))],
         "weight": 1}]}
    m, _ = _run_mix(tmp_path, cfg)
    report = tmp_path / "out" / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", OVERFLOW_PROBE + "</body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1200,900"]
    dom = subprocess.run([*flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-500:]
    assert 'id="verdict"' in dom.stdout and html.escape(m["verdict"]["line"]) in dom.stdout
    assert "certified 95% upper bound" in dom.stdout and "<table>" in dom.stdout
    assert dom.stdout.count("<svg") == 1 + 2 * 2  # tokens per source, then offered/selected per source
    assert 'stroke="#a00"' in dom.stdout  # the cut, marked on the cut source's histograms
    assert "documents per bin" in dom.stdout and "1e-4" in dom.stdout  # count and p-value axes
    found = re.search(r'data-overflow="([^"]*)"', dom.stdout)
    assert found and json.loads(html.unescape(found.group(1))) == []
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000


BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize("text, message", [
    (BOMB, "more than 100,000 values once YAML aliases are expanded"),
    ("seed: 1\nmax_synthetic_fraction: '1/100'\nmax_synthetic_fraction: 1\n",
     "line 3: duplicate key 'max_synthetic_fraction'"),
    ("a: &a [*a]\n", "refers to itself"),
    ("seed: [unclosed\n", "is not valid YAML"),
    # scalars YAML resolves but cannot build raise ValueError, not YAMLError
    ("seed: 2024-13-45\n", "holds a value that cannot be read: month must be in 1..12"),
    ("seed: " + "9" * 4400 + "\n", "holds a value that cannot be read: Exceeds the limit (4300 digits)"),
])
def test_yaml_bombs_and_duplicate_keys_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "mix.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(str(path))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_yaml_bomb_via_cli_is_one_line_exit_2(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text(BOMB)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "mix", "--config", str(path), "--output",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "alias" in proc.stderr


def test_config_is_read_through_filesystems_from_gs(gcs_emulator, tmp_path):
    from transforms.io.write import write_bytes

    url = f"gs://{gcs_emulator}/configs/mix.yaml"
    write_bytes(url, yaml.safe_dump(BASE).encode())
    assert load(url) == parse(BASE)
    with pytest.raises(ConfigError, match="cannot read gs://"):
        load(f"gs://{gcs_emulator}/configs/missing.yaml")


def test_rows_join_each_selected_copy_to_its_document():
    """The join behind the training files (called directly): one row per selected copy, in copy order, the
    document intact (provenance, metadata) plus its mix source and epoch; an unselected document yields none, and
    a record sharing the identity hash (another offset) passes the filter but is never taken for it."""
    from transforms.document import identity_hash
    from transforms.mix.classify import fingerprint
    from transforms.mix.rows import _copy_key, _join, join_bucket, selected_only, waiting

    cfg = parse({**BASE, "synthetic": RULE})
    doc = Document(id="x", text="some words here", source="a.parquet", offset=7, p_ai=0.25,
                   provenance={"declared_ai": False, "tdm_reservation": None, "robots_noai": False},
                   metadata={"k": "v"})
    twin = dataclasses.replace(doc, text="other words", offset=8)
    item = _classified(doc, cfg)
    h = identity_hash(*item.key)
    (bucket, blob), = selected_only(waiting(doc, item), frozenset({h}))
    assert list(selected_only(waiting(doc, item), frozenset({h + 1}))) == []
    _, twin_blob = waiting(twin, _classified(twin, cfg))
    assert bucket == join_bucket(h) == _copy_key(item)[0]
    copy0, copy1 = (_copy_key(item._replace(epoch=e, source="web"))[1] for e in (0, 1))
    assert copy0[3] == fingerprint(item)
    rows = list(_join((bucket, [copy1, twin_blob, blob, copy0])))
    assert [(r.source, r.epoch) for r in rows] == [("web", 0), ("web", 1)]
    out = rows[1].document()
    assert out.metadata == {"k": "v", "mix_source": "web", "mix_epoch": "1"}
    assert dataclasses.replace(out, metadata=doc.metadata) == doc
    assert rows[0].parquet_key == rows[1].parquet_key and rows[0].dolma_key < rows[1].dolma_key
    assert list(_join((bucket, [blob]))) == []


def _classified(doc: Document, cfg):
    from transforms.mix.classify import Item, classify

    item = classify(doc, "a", "", cfg, frozenset(), False)
    assert type(item) is Item
    return item


def test_join_fails_the_run_when_the_second_read_lacks_or_changed_a_selected_document():
    """A selected copy whose document did not come back, or came back with another classification (its file
    changed between the reads), stops the join with a line naming the document: no row is made from text the
    selection did not see."""
    from transforms.mix.rows import InputChanged, _copy_key, _join, waiting

    cfg = parse({**BASE, "synthetic": RULE})
    doc = _doc("web", 1, 12, 0.2)
    item = _classified(doc, cfg)
    bucket, copy = _copy_key(item)
    with pytest.raises(InputChanged, match=r"document 'web-0001' \(web.parquet offset 1\).*is missing from the "
                                           r"second read"):
        list(_join((bucket, [copy])))
    rescored = dataclasses.replace(doc, p_ai=0.9)
    _, blob = waiting(rescored, _classified(rescored, cfg))
    with pytest.raises(InputChanged, match="is not the same document in the second read"):
        list(_join((bucket, [copy, blob])))
    longer = dataclasses.replace(doc, text=doc.text + " more")
    _, blob = waiting(longer, _classified(longer, cfg))
    with pytest.raises(InputChanged, match="is not the same document in"):
        list(_join((bucket, [copy, blob])))


def test_a_file_rewritten_between_the_reads_fails_the_mix_with_a_line_naming_the_document(tmp_path):
    """The second read over a real file: unchanged, every selected document comes back intact, once per copy;
    rewritten after the selection (a selected row rescored), the pipeline fails on that document, so no output is
    made from text the selection did not see."""
    from typing import Tuple

    from transforms.io.files import match_shards
    from transforms.mix.classify import Item
    from transforms.mix.rows import JoinRows

    docs = [_doc("web", i, 6 + i, i / 10) for i in range(6)]
    pattern = _write_source(tmp_path, "web", docs)
    cfg = parse({**BASE, "synthetic": RULE})
    shards = match_shards([pattern])
    items = [_classified(d, cfg) for d in docs[:3]] + [_classified(docs[0], cfg)._replace(epoch=1)]

    def join():
        p = beam.Pipeline()
        selected = p | "Items" >> beam.Create(items).with_output_types(Item)
        none = p | "NoneWaiting" >> beam.Create([]).with_output_types(Tuple[int, bytes])
        _ = ((selected, none) | JoinRows(cfg, frozenset(), [("a", "", shards)])
             | beam.Map(lambda r: (r.epoch, r.document())) | beam.combiners.ToList()
             | beam.Map(lambda rows: (tmp_path / "rows.json").write_text(json.dumps(sorted(
                 [e, d.id, d.text, d.p_ai, d.metadata["mix_source"]] for e, d in rows)))))
        p.run().wait_until_finish()
        return json.loads((tmp_path / "rows.json").read_text())

    assert join() == sorted([[i.epoch, i.id, docs[int(i.id[-4:])].text, docs[int(i.id[-4:])].p_ai, "a"]
                             for i in items])
    Path(pattern.replace("*", "part-0")).write_bytes(parquet_bytes(to_table(
        [dataclasses.replace(d, p_ai=0.95) if d.offset == 2 else d for d in docs])))
    with pytest.raises(Exception, match=r"document 'web-0002' \(web.parquet offset 2\), selected for source 'a'"
                                        r".* is not the same document in the second read"):
        join()


def test_read_again_gives_the_first_reads_documents_for_the_wanted_identities_and_counts_nothing(tmp_path):
    """`ReadAgain` over a curated-style Parquet file (Document schema, rows carrying their own source and offset)
    and a foreign one (no id column: ids and offsets come from the file): exactly the documents `ReadCrawl`
    made, for the wanted identity hashes only; a bad row, a too-large one and an empty one stay out, and nothing
    is counted (the first read's counters are the summary's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.document import identity_hash
    from transforms.io.files import match_shards
    from transforms.io.read import ReadAgain, ReadCrawl

    docs = [_doc("crawl", i, 5 + i, i / 10) for i in range(8)]
    (tmp_path / "curated.parquet").write_bytes(parquet_bytes(to_table(docs)))
    pq.write_table(pa.table({"text": ["alpha beta", "", "gamma " * 40, "delta", None], "lang": ["en"] * 5}),
                   tmp_path / "foreign.parquet", row_group_size=2)
    shards = match_shards([str(tmp_path / "*.parquet")])
    first = beam.Pipeline()
    read = first | ReadCrawl(shards=shards, max_document_bytes=100)
    _ = read["documents"] | beam.combiners.ToList() | beam.Map(lambda ds: (tmp_path / "first.json").write_text(
        json.dumps([[d.id, d.source, d.offset, d.text, d.p_ai] for d in ds])))
    first.run().wait_until_finish()
    made = [tuple(x) for x in json.loads((tmp_path / "first.json").read_text())]
    assert len(made) == 8 + 2  # the foreign file's empty, too large and null-text rows are not documents
    wanted = [m for m in made if m[2] % 2 == 1 or m[0].startswith("sc:")]
    hashes = frozenset(identity_hash(m[0], m[1], m[2]) for m in wanted) | {identity_hash("nobody", "x", 0)}
    second = beam.Pipeline()
    again = second | ReadAgain(shards, beam.pvalue.AsSingleton(second | beam.Create([hashes])),
                               max_document_bytes=100)
    assert_that(again | beam.Map(lambda d: (d.id, d.source, d.offset, d.text, d.p_ai)), equal_to(wanted))
    result = second.run()
    result.wait_until_finish()
    assert not result.metrics().query(MetricsFilter().with_namespace("synthcap"))["counters"]


def test_jsonl_inputs_wait_for_the_selection_and_parquet_inputs_are_read_again(tmp_path):
    """A JSONL source (cannot be read again: its documents wait for the selection, packed) and a Parquet source
    (read again) in one mix: every selected document is written once per copy, intact, and nothing is lost."""
    from transforms.document import dolma_line

    web = [_doc("web", i, 10 + i % 7, (i % 10) / 10) for i in range(60)]
    human = [_doc("human", i, 8 + i % 5, 0.0) for i in range(30)]
    (tmp_path / "human").mkdir()
    (tmp_path / "human" / "part-0.jsonl").write_text("".join(dolma_line(d) + "\n" for d in human))
    cfg = {"seed": 3, "target_tokens": 600, "max_synthetic_fraction": "0.2", "synthetic": RULE,
           "sources": [{"name": "human", "inputs": [str(tmp_path / "human" / "*.jsonl")], "anchor": True},
                       {"name": "web", "inputs": [_write_source(tmp_path, "web", web)], "weight": 1,
                        "max_repeats": 2}]}
    m, rows = _run_mix(tmp_path, cfg)
    assert m["accounting"]["reconciles"] and m["within_ceiling"]
    by_id = {d.id: d for d in web}
    assert {d.id for d in rows if d.metadata["mix_source"] == "human"} == {d.id for d in human}
    for d in rows:
        if d.metadata["mix_source"] == "web":
            assert dataclasses.replace(d, metadata={}) == by_id[d.id]
    assert Counter(d.metadata["mix_source"] for d in rows)["web"] == m["sources"][1]["selected"]["rows"] > 0
    assert m["output"]["documents"] + sum(m["accounting"]["dropped"].values()) == 90


def test_drops_cross_stages_as_tuples_and_keep_their_json():
    """A drop's coder (half a mix's documents end as drops) round-trips it exactly, and its JSON line is the
    dataclass's fields, sorted."""
    from dataclasses import asdict

    from transforms.accounting import Dropped, DroppedCoder

    d = Dropped("id-é", "over_quota", "s3://x/a.parquet", 2 ** 40, "web")
    coder = beam.coders.registry.get_coder(Dropped)
    assert isinstance(coder, DroppedCoder) and coder.decode(coder.encode(d)) == d
    assert d.to_json() == json.dumps(asdict(d), ensure_ascii=False, sort_keys=True)


def test_written_rows_count_documents_once_and_rows_with_their_copies(tmp_path):
    """Beam Metrics carry the summary's numbers: `documents_out` counts a document once however many epochs of it
    were written; `rows_out` counts every row."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    from transforms.document import Document
    from transforms.mix.rows import Row, WriteRows, _keys, doc_key, pack

    docs = [Document(id=f"d{i}", text=f"text number {i}", source="s.jsonl", offset=i) for i in range(3)]
    rows = [Row(*_keys(doc_key(d), "web", e), "web", e, pack(d)) for d in docs for e in range(2 if d.id == "d0"
                                                                                          else 1)]
    p = beam.Pipeline()
    _ = p | beam.Create(rows) | WriteRows(str(tmp_path), 100)
    result = p.run()
    result.wait_until_finish()
    counters = {r.key.metric.name: r.committed for r in result.metrics().query(MetricsFilter())["counters"]}
    assert counters["documents_out"] == 3 and counters["rows_out"] == 4

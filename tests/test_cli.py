"""The front door: every verb's --help only prints; every user error is one line on stderr and exit 2; a failure
at run time is one line naming a log with the traceback, exit 1; the run summary and --json tell the same numbers
as summary.json; the README's flag tables are the parsers'."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import run_summary
from pipeline.cli import main
from pipeline.flag_tables import README, regenerate, verbs_in
from pipeline.options import (VERBS, count, document_bytes, fraction, normalization, own_actions, permutations,
                              positive_int, rounds, run_id, seed, split_size)
from tests.helpers import tree_bytes

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

# Runs several CLI invocations in one fresh interpreter (imports cost seconds each), capturing each one's streams.
_BATCH = """
import contextlib, io, json, sys
from pipeline.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    results.append({"rc": rc, "out": out.getvalue(), "err": err.getvalue()})
sys.stdout.write(json.dumps(results))
"""


def _batch(calls: list[list[str]], cwd) -> list[dict]:
    r = subprocess.run([sys.executable, "-c", _BATCH, json.dumps(calls)], capture_output=True, text=True, cwd=cwd,
                       env=ENV)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-3000:]
    return json.loads(r.stdout)


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV)


def _one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and "usage:" not in err and "Discarding" not in err
    return err.strip()


_BAD = {fraction: ["1.5", "0", "abc"], positive_int: ["0", "-3", "abc"], count: ["-1", "x"],
        seed: ["1.5", "-5", "2147483648"], permutations: ["0", "4097", "x"], rounds: ["-1", "65", "x"],
        split_size: ["1", "4095", "x"], document_bytes: ["0", "1073741825", "x"],
        normalization: ["nfkc,upper", "", "none,nfkc"], run_id: ["two\nlines", "", "tab\there"]}


def _bad_value_calls() -> list[tuple[list[str], str]]:
    calls = []
    for verb, spec in VERBS.items():
        for action in own_actions(spec):
            for value in _BAD.get(action.type, []):
                calls.append(([verb, action.option_strings[0], value], action.option_strings[0]))
    return calls


_HELP = [["--help"], ["--version"]] + [[verb, "--help"] for verb in VERBS] + [["demo", "-h"], ["sample", "-h"]]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """--help of every verb and a bad value for every validated flag, run in one fresh interpreter in an empty
    folder; returns the results and what the folder holds afterwards."""
    cwd = tmp_path_factory.mktemp("empty_cwd")
    calls = _HELP + [c for c, _ in _bad_value_calls()]
    results = _batch(calls, cwd)
    return results[:len(_HELP)], results[len(_HELP):], list(cwd.iterdir())


def test_help_of_every_verb_only_prints(batch):
    results, _, written = batch
    assert written == []  # sample --help and demo --help used to write and run
    assert all(r["rc"] == 0 and r["err"] == "" for r in results), results
    assert all(verb in results[0]["out"] for verb in VERBS)
    assert results[1]["out"].startswith("synthcap 0.")
    for verb, r in zip(VERBS, results[2:]):
        text = r["out"]
        assert text.startswith(f"usage: synthcap {verb}") and VERBS[verb].example in text
        for action in own_actions(VERBS[verb]):
            assert (action.option_strings[0] if action.option_strings else action.metavar) in text, (verb, action)
        if VERBS[verb].pipeline:
            assert "--runner" in text  # Beam's flags are mentioned, not listed one by one
            assert "--temp_location " not in text


def test_every_validated_flag_rejects_a_bad_value_in_one_line(batch):
    _, results, written = batch
    calls = _bad_value_calls()
    assert {flag for _, flag in calls} >= {"--threshold", "--num_perm", "--max_document_bytes", "--split_bytes",
                                           "--rows_per_shard", "--cc_rounds", "--seed", "--exact_normalization",
                                           "--limit_per_file", "--run_id"}
    for (args, flag), r in zip(calls, results):
        line = _one_line(r["err"])
        assert r["rc"] == 2 and r["out"] == "", args
        assert line.startswith(f"synthcap {args[0]}: error: {flag}: ")
        assert repr(args[2]) in line or "['upper']" in line
        assert "_fraction" not in line and "positive_int" not in line and "invalid" not in line, line
    assert written == []


@pytest.mark.parametrize("args, message", [
    (["curat"], "synthcap: error: unknown verb curat; did you mean curate?"),
    (["train_detector"], "did you mean train-detector?"),
    ([], "synthcap: error: no verb given"),
    (["--verbose"], "unknown option --verbose"),
    (["curate", "--input", "x", "--output", "o", "--outptu", "y"], "unknown flag --outptu; did you mean --output?"),
    (["sample", "--outptu", "x"], "unknown flag --outptu; did you mean --output?"),
    (["curate", "--input", "x", "--output", "o", "--runer", "DirectRunner"], "did you mean --runner?"),
    (["mix", "--config", "m.yaml", "--output", "o", "--seed", "3"], "--seed is a flag of curate, refresh and "
                                                                     "train-detector, not of mix"),
    (["mix", "--config", "m.yaml", "--output", "o", "--no_score"], "--no_score is a flag of curate and refresh"),
    # the mixer reads the scores curate wrote: a model given to it was silently ignored
    (["mix", "--config", "m.yaml", "--output", "o", "--detector_model=m"],
     "--detector_model is a flag of curate and refresh, not of mix"),
    (["curate", "--input", "x", "--output", "o", "--config", "m.yaml"], "--config is a flag of mix, not of curate"),
    (["curate", "--input", "x", "--output", "o", "--index=i"], "--index is a flag of refresh, not of curate"),
    (["curate", "--output", "o"], "synthcap curate: error: --input is required"),
    (["refresh", "--input", "x", "--output", "o"], "--index is required"),
    (["mix", "--output", "o"], "--config is required"),
    (["inspect", "--output", "o"], "DOC_ID"),
    (["inspect", "a", "b", "--output", "o"], "unexpected argument 'b'"),
    (["curate", "--input", "x", "--output", "o", "--direct_running_mode", "bogus"], "--direct_running_mode: "),
    (["curate", "--input", "x", "--output", "o", "--json=yes"], "--json: ignored explicit argument"),
    (["curate", "--input", "x", "--output", "o", "--runner", "NoSuchRunner"], "unknown --runner NoSuchRunner"),
    (["mix", "--config", "m.yaml", "--output", "o", "--runner=no.such.Runner"], "unknown --runner no.such.Runner"),
    (["curate", "--input", "x", "--output", "o", "--runner=collections.OrderedDict"], "is not a Beam pipeline runner"),
    # flags that serve scoring only, with scoring switched off: silently ignored before
    (["curate", "--input", "x", "--output", "o", "--no_score", "--human_reference", "r.parquet"],
     "synthcap curate: error: --human_reference is for scoring, which --no_score switches off: drop one of them"),
    (["refresh", "--input", "x", "--index", "i", "--output", "o", "--detector_model=m", "--no_score"],
     "synthcap refresh: error: --detector_model is for scoring, which --no_score switches off"),
])
def test_user_errors_are_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in _one_line(captured.err) and captured.out == ""


def test_arguments_that_are_not_utf8_are_one_line(tmp_path):
    """Undecodable bytes in argv arrive as lone surrogates: an --output of them failed the run in a writer
    (UnicodeEncodeError, exit 1), a --run_id of them was blamed on the output folder."""
    for flag in ("--output=o\udcff", "--run_id=r\udcff"):
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "curate", "--input", "x.jsonl", "--output", "o",
                            os.fsencode(flag)], capture_output=True, text=True, cwd=tmp_path, env=ENV)
        assert r.returncode == 2 and r.stdout == ""
        assert _one_line(r.stderr).endswith("\\xff' is not valid UTF-8; synthcap records its flags and paths in "
                                            "UTF-8 outputs")
    assert list(tmp_path.iterdir()) == []


def test_the_real_entry_point_prints_one_line(tmp_path):
    r = _cli("curate", "--input", "x", "--output", "o", "--threshold", "1.5", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert _one_line(r.stderr) == "synthcap curate: error: --threshold: expected a number in (0, 1], got '1.5'"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_closed_pipe_is_not_an_error(tmp_path):
    """`synthcap inspect ... | head`: the reader leaves before we write; no traceback, no failure line, exit 0."""
    (tmp_path / "a.jsonl").write_text('{"id": "a", "text": "one short document"}\n')
    assert main(["curate", "--input", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "out"), "--no_score"]) == 0
    p = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "inspect", "a", "--output", str(tmp_path / "out")],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    p.stdout.close()
    err = p.stderr.read()
    p.stderr.close()
    assert p.wait() == 0 and err == b""


def test_user_errors_found_while_building(tmp_path, capsys):
    cases = [(["curate", "--input", "/nonexistent/*.warc.gz", "--output", str(tmp_path / "o")],
              "no crawl shards match"),
             (["mix", "--config", str(tmp_path / "missing.yaml"), "--output", str(tmp_path / "m")],
              "cannot read"),
             (["train-detector", "--data", str(tmp_path / "none.jsonl.gz"), "--out", str(tmp_path / "d")],
              "--data: no such file")]
    for args, message in cases:
        assert main(args) == 2
        assert message in _one_line(capsys.readouterr().err)


def test_unwritable_and_nonempty_outputs(tmp_path, sample_crawl, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["curate", "--input", str(sample_crawl / "*.wet.gz"), "--output", str(blocker / "out")]) == 2
    assert "cannot write to output folder" in _one_line(capsys.readouterr().err)
    for not_a_folder in (blocker, "/dev/null"):  # /dev/null was "claimed by another run just now"
        assert main(["curate", "--input", str(sample_crawl / "*.wet.gz"), "--output", str(not_a_folder)]) == 2
        assert _one_line(capsys.readouterr().err).endswith(f"output folder {not_a_folder} is a file, not a folder")
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    assert main(["curate", "--input", str(sample_crawl / "*.wet.gz"), "--output", str(full)]) == 2
    assert "is not empty and is not a synthcap output" in _one_line(capsys.readouterr().err)


def test_train_detector_data_that_is_not_labelled_jsonl_gz_is_a_user_error(tmp_path, capsys):
    """A folder, plain JSON Lines, bytes that are not gzip or a line that is not an object failed with a
    traceback (exit 1)."""
    import gzip

    (tmp_path / "plain.jsonl").write_text('{"text": "t", "label": "ai"}\n')
    (tmp_path / "junk.jsonl.gz").write_bytes(b"not gzip")
    (tmp_path / "array.jsonl.gz").write_bytes(gzip.compress(b'{"text": "t", "label": "ai"}\n[1, 2]\n'))
    for data, message in ((tmp_path, "is not readable JSON Lines in gzip (IsADirectoryError"),
                          (tmp_path / "plain.jsonl", "is not readable JSON Lines in gzip (BadGzipFile"),
                          (tmp_path / "junk.jsonl.gz", "is not readable JSON Lines in gzip (BadGzipFile"),
                          (tmp_path / "array.jsonl.gz", "line 2: expected a JSON object with a string `text`")):
        assert main(["train-detector", "--data", str(data), "--out", str(tmp_path / "m")]) == 2
        assert _one_line(capsys.readouterr().err).startswith(f"synthcap train-detector: error: --data: {data} {message}")
    assert not (tmp_path / "m").exists()


def test_outputs_inside_a_part_of_a_synthcap_output_and_train_detector_outs_it_cannot_use(tmp_path, capsys):
    """--out naming a file failed with a FileExistsError traceback (exit 1) once training was done; --out inside a
    part of a curated folder wrote model.ftz there, after which every reader refused the folder. Both are one line,
    exit 2, before anything is read or trained (the data here would not even train)."""
    import json as json_

    (tmp_path / "data.jsonl.gz").write_bytes(b"not even gzip")
    (tmp_path / "file").write_text("x")
    cur = tmp_path / "cur"
    (cur / "documents").mkdir(parents=True)
    (cur / ".synthcap-output").write_text(json_.dumps({"synthcap_output": 1, "verb": "curate"}))
    (cur / "COMPLETE.json").write_text(json_.dumps({"files": [{"path": "documents/a.parquet", "size": 0,
                                                               "sha256": "0" * 64}]}))
    for out, message in ((tmp_path / "file", f"--out {tmp_path}/file is a file, not a folder"),
                         (tmp_path / "file" / "m", f"--out {tmp_path}/file/m: {tmp_path}/file is not a folder this "
                                                   "user can write"),
                         (cur / "documents", f"--out: {cur}/documents lies inside {cur}/documents, a part of the "
                                             f"synthcap output {cur}")):
        assert main(["train-detector", "--data", str(tmp_path / "data.jsonl.gz"), "--out", str(out)]) == 2
        assert _one_line(capsys.readouterr().err).startswith(f"synthcap train-detector: error: {message}")
    assert sorted(p.name for p in (cur / "documents").iterdir()) == []
    for verb in ("sample", "demo"):  # they wrote their shards there, with the same effect
        assert main([verb, "--output", str(cur / "documents" / "s")]) == 2
        assert _one_line(capsys.readouterr().err).startswith(
            f"synthcap {verb}: error: output folder {cur}/documents/s")
    assert sorted(p.name for p in (cur / "documents").iterdir()) == []


def test_a_user_error_naming_a_value_with_a_newline_is_still_one_line(tmp_path, capsys):
    """A YAML key, a source name or a path holding a newline (or a NUL) was printed raw: a user error over two
    lines. Control characters are shown escaped."""
    import yaml

    base = {"seed": 1, "target_tokens": 10, "max_synthetic_fraction": "0.1"}
    for cfg, message in (({**base, "a\nb": 1}, "a\\nb: unknown key"),
                         ({**base, "\x00": 1}, "\\x00: unknown key"),
                         ({**base, "sources": [{"name": "a\u2028b", "curated": [str(tmp_path / "none")], "weight": 1}]},
                          "source a\\u2028b: "),
                         ({**base, "sources": [{"name": "a", "curated": [str(tmp_path / "x\ny")], "weight": 1}]},
                          f"source a: {tmp_path}/x\\ny holds no documents")):
        (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["mix", "--config", str(tmp_path / "mix.yaml"), "--output", str(tmp_path / "m")]) == 2
        assert message in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("flag, args", [
    ("--output", ["sample", "--output", ""]), ("--output", ["demo", "--output="]),
    ("--input", ["curate", "--input", "x", "", "--output", "o"]),
    ("--index", ["refresh", "--input", "x", "--index", "", "--output", "o"]),
    ("--config", ["mix", "--config", "", "--output", "o"]), ("--output", ["inspect", "d", "--output", ""]),
    ("--out", ["train-detector", "--data", "d", "--out", ""])])
def test_an_empty_path_is_a_user_error_not_the_working_directory(flag, args, tmp_path, capsys, monkeypatch):
    """`--output "$OUT"` with OUT unset: sample and demo wrote their shards (and the demo every output) into the
    working directory; other verbs said the flag was missing, or that '' matched no crawl shard."""
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert _one_line(capsys.readouterr().err) == (f"synthcap {args[0]}: error: {flag}: got an empty value (an unset "
                                                  f"shell variable?); give a path or name")
    assert list(tmp_path.iterdir()) == []


def test_sample_and_demo_outputs_they_cannot_use_are_user_errors(tmp_path, capsys):
    """They failed with a FileExistsError / NotADirectoryError traceback (exit 1); and the demo replaces
    OUT/index, which deleted whatever a user kept there."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for verb, message in (("sample", f"cannot write to output folder {blocker}: File exists"),
                          ("demo", f"cannot write to output folder {blocker}/sample_crawl: Not a directory")):
        assert main([verb, "--output", str(blocker)]) == 2
        assert _one_line(capsys.readouterr().err) == f"synthcap {verb}: error: {message}"
    (tmp_path / "mine" / "index").mkdir(parents=True)
    (tmp_path / "mine" / "index" / "thesis.txt").write_text("precious")
    assert main(["demo", "--output", str(tmp_path / "mine")]) == 2
    assert "is not the refresh index of an earlier demo" in _one_line(capsys.readouterr().err)
    assert (tmp_path / "mine" / "index" / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["index"]


def test_a_failure_at_run_time_is_one_line_and_a_log(tmp_path, capsys, monkeypatch):
    import transforms.io.jsonl

    def broken(*_):  # a fault no input can cause (every bad record is a dead letter): a bug, or a failing disk
        raise RuntimeError("injected reader fault")

    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "hello there"}\n')
    monkeypatch.setattr(transforms.io.jsonl, "to_document", broken)  # the in-process runner runs this process's code
    rc = main(["curate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o"), "--no_score"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 1 and line.startswith("synthcap curate: failed: RuntimeError: injected reader fault")
    log = line.rsplit("(traceback in ", 1)[1].rstrip(")")
    text = Path(log).read_text()
    assert "Traceback (most recent call last)" in text and "injected reader fault" in text
    os.remove(log)


def test_bad_beam_flag_values_are_user_errors(capsys):
    """Beam takes a negative worker count and fails inside the run (an IndexError deep in the runner)."""
    for args in (["--direct_num_workers=-3"], ["--direct_running_mode=multi_processing", "--direct_num_workers=-1"]):
        assert main(["curate", "--input", "x", "--output", "o", *args]) == 2
        assert _one_line(capsys.readouterr().err) == \
            f"synthcap curate: error: --direct_num_workers: expected a whole number >= 0 (0: one per CPU), got " \
            f"'{args[-1].split('=')[1]}'"


def _jsonl_crawl(path: Path) -> None:
    words = "the quick brown fox jumps over the lazy dog while the cat watches from the warm window sill".split()
    lines = [json.dumps({"id": f"d{i}", "text": " ".join(words[i:] + words[:i]) + f" number {i}"}) for i in range(8)]
    lines += [lines[0].replace('"d0"', '"copy"'), "{not json", json.dumps({"id": "e", "text": ""})]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_summary_text_and_json_tell_the_summary_json_numbers(tmp_path, capsys):
    _jsonl_crawl(tmp_path / "crawl.jsonl")
    out = tmp_path / "out"
    assert main(["curate", "--input", str(tmp_path / "crawl.jsonl"), "--output", str(out), "--json",
                 "--direct_num_workers=1", "--direct_running_mode=in_memory"]) == 0  # Beam flags pass through
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((out / "summary.json").read_text())
    assert printed["records_read"] == summary["records_read"] == 11
    assert printed["kept"] == summary["documents_out"]
    assert printed["dropped"] == summary["dropped"] and printed["dead_letters"] == summary["dead_letters"]
    assert printed["dropped"]["duplicate_exact"] == 1 and printed["dead_letters"]["json_error"] == 1
    assert printed["outputs"]["summary"] == str(out / "summary.json")
    share = next(iter(printed["ai_share"]["by_crawl"].values()))
    # undated JSONL has no pre-LLM reference: the share is null with its reason, on screen as in summary.json
    assert share == next(iter(summary["ai_share"]["by_crawl"].values()))
    assert share["documents"] == summary["documents_out"] and share["estimate"] is None and share["reason"]

    text = run_summary.render(printed)
    lines = text.splitlines()
    assert lines[0] == f"synthcap curate: kept {printed['kept']} of 11 records"
    starts = {len(line) - len(line.lstrip()) for line in lines[1:]}
    assert starts == {2, 4}  # totals, and their reasons indented under them
    rows = [re.match(r"^\s+(\S.*?)\s{2,}(\S.*)$", line) for line in lines[1:]]
    values = {}
    for m in filter(None, rows):
        values.setdefault(m.group(1), m.group(2))
    assert values["records read"] == "11" and values["dead letters"] == "1" and values["json_error"] == "1"
    assert values["dropped"] == str(sum(summary["dropped"].values())) and values["output"] == str(out)
    assert f"not estimated ({share['reason']}; {share['documents']} documents)" in text


def test_summary_text_for_refresh_and_mix_and_unestimable_shares():
    base = {"records_read": 10, "documents_out": 6, "dropped": {"duplicate_indexed": 3}, "dead_letters": {"x": 1},
            "reconciles": True,
            "ai_share": {"by_reference": {"domain:a.example": {"estimate": None, "reason": "too few documents",
                                                               "documents": 4, "tokens": 40}}}}
    text = run_summary.render(run_summary.refresh({"summary": base, "generation": 2, "committed": True,
                                                   "new_documents": 6}, "o", "idx"))
    assert "already indexed" in text and "idx: committed generation 2" in text
    assert "reference domain:a.example" in text and "not estimated (too few documents; 4 documents)" in text
    line = "CEILING NOT MET: certified 95% upper bound on the true AI token share 0.1500 > 0.1000"
    manifest = {"accounting": base, "max_synthetic_fraction": "1/10", "synthetic_rule": "certified",
                "verdict": {"within_ceiling": False, "line": line}, "target": 2000, "unit": "tokens",
                "output": {"documents": 5, "rows": 7, "tokens": 1234, "ai_share_estimate": 0.04,
                           "ai_share_interval": [0.01, 0.15], "shortfall": 766}}
    run = run_summary.mix(manifest, "m")
    text = run_summary.render(run)
    assert "5 documents, 7 rows, 1,234 tokens" in text and line in text
    assert "766 of the target 2,000 tokens" in text
    assert "output all" in text and "0.040 [0.010, 0.150] of 1,234 tokens in 5 docs (certified mix)" in text
    assert run_summary.failure(run) == line
    manifest["verdict"] = {"within_ceiling": True, "line": "within the ceiling: ..."}
    assert run_summary.failure(run_summary.mix(manifest, "m")) is None


def test_readme_flag_tables_are_the_parsers():
    text = README.read_text()
    assert sorted(verbs_in(text)) == sorted(VERBS), "every verb needs a <!-- flags: VERB --> table in README.md"
    assert regenerate(text) == text, "README flag tables are stale: run python -m pipeline.flag_tables"


def test_progress_line_says_records_rate_files_and_time():
    line = run_summary.progress_line("curate", 4.0, {"records_read": 12_345, "files_read": 3, "other": 9})
    assert line == "synthcap curate: 12,345 records read (3,086/s), 3 files done, 4 s"
    assert run_summary.progress_line("mix", 1.0, {"files_read": 1}) == \
        "synthcap mix: 0 records read (0/s), 1 file done, 1 s"
    # the rate counts from when the pipeline started running, not from when the command started
    assert run_summary.progress_line("curate", 30.0, {"records_read": 1000}, running=10.0) == \
        "synthcap curate: 1,000 records read (100/s), 0 files done, 30 s"
    assert run_summary.progress_line("refresh", 61.4, None) == "synthcap refresh: running, 61 s"  # no live counts


class _Stream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_only_on_a_terminal_outside_ci():
    from pipeline.cli import shows_progress

    assert shows_progress(_Stream(True), {}, "curate") and shows_progress(_Stream(True), {"CI": ""}, "mix")
    assert not shows_progress(_Stream(False), {}, "curate")  # a pipe or a file: quiet
    assert not shows_progress(_Stream(True), {"CI": "true"}, "curate")  # CI: quiet even with a terminal
    assert not shows_progress(_Stream(True), {}, "demo")  # prints as it goes


def _curate_on_a_terminal(args: list[str], env: dict) -> tuple[int, str]:
    """Runs the real CLI with stderr on a pseudo-terminal; returns its exit status and what the terminal got."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "curate", *args], stdout=subprocess.DEVNULL,
                            stderr=slave, cwd=ROOT, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b"".join(chunks).decode()


@pytest.mark.slow
def test_live_progress_on_a_terminal_is_quiet_in_ci_and_changes_no_output(tmp_path):
    _jsonl_crawl(tmp_path / "a.jsonl")
    _jsonl_crawl(tmp_path / "b.jsonl")
    base = {k: v for k, v in ENV.items() if k != "CI"}
    # the status line and the outputs it must not change; scoring adds nothing to either
    rc, shown = _curate_on_a_terminal(["--input", str(tmp_path / "*.jsonl"), "--output", str(tmp_path / "tty"),
                                       "--no_score"], base)
    assert rc == 0, shown
    lines = re.findall(r"\r\x1b\[K(synthcap curate: [^\r]*)", shown)
    assert lines, shown
    summary = json.loads((tmp_path / "tty" / "summary.json").read_text())
    for line in lines:
        m = re.fullmatch(r"synthcap curate: (?:running, [\d,]+ s|([\d,]+) records read \([\d,]+/s\), ([\d,]+) "
                         r"files? done, [\d,]+ s)", line)
        assert m, line
        if m.group(1):  # live counts never run ahead of the final books
            assert int(m.group(1).replace(",", "")) <= summary["records_read"] and int(m.group(2)) <= 2
    rc, shown_ci = _curate_on_a_terminal(["--input", str(tmp_path / "*.jsonl"), "--output", str(tmp_path / "ci"),
                                          "--no_score"], dict(base, CI="1"))
    assert rc == 0 and "\x1b[K" not in shown_ci and "records read (" not in shown_ci
    for part in ("documents", "dropped", "dead_letters", "duplicates"):
        assert tree_bytes(tmp_path / "tty", part) == tree_bytes(tmp_path / "ci", part), part
    assert (tmp_path / "tty" / "summary.json").read_bytes() == (tmp_path / "ci" / "summary.json").read_bytes()


@pytest.mark.slow
def test_in_process_live_counts_end_at_the_beam_counters(tmp_path):
    from pipeline import curate
    from pipeline.runner import LIVE

    _jsonl_crawl(tmp_path / "a.jsonl")
    (tmp_path / "notes.txt").write_text("not a crawl file")  # an unsupported file is a file done too
    _, counters = curate.run(["--input", str(tmp_path / "*"), "--output", str(tmp_path / "out")])
    live = LIVE.read()
    assert live["records_read"] == counters["records_read"] == 12
    assert live["files_read"] == counters["files_read"] == 2

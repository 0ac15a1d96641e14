"""Issue 10 items 2, 3 and 6: output claims, --overwrite safety, the atomic commit and its completion record."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import curate
from pipeline.cli import main
from transforms.io.commit import COMPLETE, MARKER, IncompleteOutputError, require_complete

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--no_score", "--no_near_dedup"]


def _crawl(folder: Path, n: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"d{i}", "text": f"document number {i} says something {i * 7919 % 97} " * 5})
             for i in range(n)]
    lines.append(lines[3])  # one exact duplicate
    lines.append("{not json")  # one dead letter
    path = folder / "crawl.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _tree(out: Path) -> dict[str, bytes]:
    """Every file of an output folder except its marker (which names the folder's claim)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != MARKER}


def _fails(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One complete curate run on a small JSONL crawl."""
    root = tmp_path_factory.mktemp("done")
    crawl = _crawl(root / "crawl")
    out = root / "out"
    summary, _ = curate.run(["--input", str(crawl), "--output", str(out), *FAST])
    return crawl, out, summary


def test_10_3_marker_is_written_on_creation(done):
    _, out, _ = done
    marker = json.loads((out / MARKER).read_text())
    assert marker["synthcap_output"] == 1 and marker["verb"] == "curate"
    assert marker["run_id"].startswith("run-") and marker["run_key"]


def test_10_6_complete_lists_every_file_with_the_sha256_of_its_bytes(done):
    _, out, summary = done
    record = require_complete(str(out))
    on_disk = {p for p in _tree(out) if p != COMPLETE}
    assert {f["path"] for f in record["files"]} == on_disk
    for f in record["files"]:
        data = (out / f["path"]).read_bytes()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
    sha256sum = subprocess.run(["sha256sum", str(out / "summary.json")], capture_output=True, text=True).stdout
    assert sha256sum.split()[0] == next(f["sha256"] for f in record["files"] if f["path"] == "summary.json")
    # the summary is what is on disk: recount the rows of every written file
    rows = sum(pq.read_metadata(p).num_rows for p in (out / "documents").glob("*.parquet"))
    dropped = sum(1 for p in (out / "dropped").glob("*.jsonl") for _ in open(p))
    dead = sum(1 for p in (out / "dead_letters").glob("*.jsonl") for _ in open(p))
    assert (rows, dropped, dead) == (summary["documents_out"], sum(summary["dropped"].values()),
                                     sum(summary["dead_letters"].values()))
    assert not [p for p in os.listdir(out) if p.startswith(".tmp-")]  # the staging area is gone


def test_10_2_overwrite_validates_everything_before_deleting(done, tmp_path, capsys):
    crawl, out, _ = done
    before = _tree(out)
    bad = [
        ["--input", str(tmp_path / "nothing-*.jsonl")],  # a mistyped input
        ["--input", str(crawl), "--exact_normalization", "bogus"],  # a bad flag value
        ["--input", str(crawl), "--detector_model", str(tmp_path / "no-model")],  # a model that is not there
    ]
    for args in bad:
        _fails(["curate", *args, "--output", str(out), "--overwrite", "--no_near_dedup"], capsys)
        assert _tree(out) == before, args
    require_complete(str(out))


def test_10_2_an_input_inside_the_output_is_never_deleted(done, capsys):
    _, out, _ = done
    before = _tree(out)
    err = _fails(["curate", "--input", str(out / "dropped" / "*.jsonl"), "--output", str(out), "--overwrite",
                  *FAST], capsys)
    assert "inside the output folder" in err
    err = _fails(["curate", "--input", str(out / ".." / "out" / "**"), "--output", str(out), "--overwrite",
                  *FAST], capsys)
    assert "inside the output folder" in err
    assert _tree(out) == before


def test_10_3_overwrite_refuses_a_folder_without_the_marker(done, tmp_path, capsys):
    crawl, _, _ = done
    home = tmp_path / "home"
    (home / "documents").mkdir(parents=True)
    (home / "documents" / "thesis.parquet").write_bytes(b"my work")
    (home / "summary.json").write_text("{}")
    err = _fails(["curate", "--input", str(crawl), "--output", str(home), "--overwrite", *FAST], capsys)
    assert "is not a synthcap output" in err
    assert (home / "documents" / "thesis.parquet").read_bytes() == b"my work"
    assert (home / "summary.json").read_text() == "{}"
    assert not (home / MARKER).exists()


@pytest.mark.slow
def test_10_3_overwrite_deletes_only_synthcap_parts(done, tmp_path):
    crawl, out, _ = done
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "notes.txt").write_text("keep me")
    (copy / "documents" / "stray.parquet").write_bytes(b"left by someone")
    with pytest.raises(IncompleteOutputError, match="does not list"):
        require_complete(str(copy))  # a shard no run listed is never read as part of the output
    curate.run(["--input", str(crawl), "--output", str(copy), "--overwrite", *FAST])
    assert (copy / "notes.txt").read_text() == "keep me"
    assert not (copy / "documents" / "stray.parquet").exists()
    assert {k: v for k, v in _tree(copy).items() if k != "notes.txt"} == _tree(out)


def test_10_6_a_second_run_into_a_used_output_refuses(done, capsys):
    crawl, out, _ = done
    before = _tree(out)
    err = _fails(["curate", "--input", str(crawl), "--output", str(out), *FAST], capsys)
    assert "holds a complete synthcap curate output; pass --overwrite" in err
    config = out.parent / "mix.yaml"
    config.write_text(json.dumps({
        "seed": 1, "target_documents": 5, "max_synthetic_fraction": "1/10",
        "sources": [{"name": "web", "inputs": [str(out / "documents" / "*.parquet")], "weight": 1}]}))
    err = _fails(["mix", "--config", str(config), "--output", str(out), "--overwrite"], capsys)
    assert "holds a synthcap curate output; mix will not replace it" in err
    assert _tree(out) == before


def _damaged(out: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(out, copy)
    return copy


def test_10_6_require_complete_refuses_partial_folders(done, tmp_path):
    _, out, _ = done
    require_complete(str(out))
    cases = {}
    c = _damaged(out, tmp_path, "no-complete")
    (c / COMPLETE).unlink()
    cases[c] = "no COMPLETE.json"
    c = _damaged(out, tmp_path, "no-marker")
    (c / MARKER).unlink()
    cases[c] = "not a synthcap output"
    c = _damaged(out, tmp_path, "missing-file")
    next((c / "documents").glob("*.parquet")).unlink()
    cases[c] = "missing"
    c = _damaged(out, tmp_path, "truncated")
    shard = next((c / "dropped").glob("*.jsonl"))
    shard.write_bytes(shard.read_bytes()[:-10])
    cases[c] = "bytes"
    c = _damaged(out, tmp_path, "garbled")
    (c / COMPLETE).write_text('{"files": [{"path": 3}]')
    cases[c] = "not a valid completion record"
    c = _damaged(out, tmp_path, "bad-marker")
    (c / MARKER).write_text("[]")
    cases[c] = "not a synthcap output"
    for folder, message in cases.items():
        with pytest.raises(IncompleteOutputError, match=message) as e:
            require_complete(str(folder))
        assert "\n" not in str(e.value)


def test_10_6_inspect_and_mix_refuse_an_incomplete_output(done, tmp_path, capsys):
    _, out, _ = done
    partial = _damaged(out, tmp_path, "partial")
    (partial / COMPLETE).unlink()
    doc_id = pq.read_table(next((out / "provenance").glob("*.parquet")))["id"][0].as_py()
    assert main(["inspect", doc_id, "--output", str(out)]) == 0
    capsys.readouterr()
    err = _fails(["inspect", doc_id, "--output", str(partial)], capsys)
    assert "incomplete synthcap output" in err
    config = tmp_path / "mix.yaml"
    config.write_text(json.dumps({
        "seed": 1, "target_documents": 5, "max_synthetic_fraction": "1/10",
        "sources": [{"name": "web", "inputs": [str(partial / "documents" / "*.parquet")], "weight": 1}]}))
    err = _fails(["mix", "--config", str(config), "--output", str(tmp_path / "mixed")], capsys)
    assert "incomplete synthcap output" in err and "source web" in err


@pytest.mark.slow
def test_10_6_rerun_after_a_crash_during_the_commit_is_byte_identical(done, tmp_path):
    """The state a kill leaves between moving files into place and writing COMPLETE.json: some files moved,
    some still staged, no completion record. The same command (no --overwrite) replaces it."""
    crawl, out, _ = done
    target = tmp_path / "out"
    curate.run(["--input", str(crawl), "--output", str(target), *FAST])
    (target / COMPLETE).unlink()
    key = json.loads((target / MARKER).read_text())["run_key"]
    staged = target / f".tmp-{key}" / "documents"
    staged.mkdir(parents=True)
    for p in (target / "documents").glob("*.parquet"):
        p.rename(staged / p.name)
    (target / "summary.json").unlink()
    with pytest.raises(IncompleteOutputError):
        require_complete(str(target))
    curate.run(["--input", str(crawl), "--output", str(target), *FAST])
    assert _tree(target) == _tree(out)


@pytest.mark.slow
def test_15_an_input_glob_over_an_output_folder_skips_it(done, tmp_path):
    crawl, out, _ = done
    root = tmp_path / "data"
    shutil.copytree(crawl.parent, root / "crawl")
    shutil.copytree(out, root / "previous")
    summary, _ = curate.run(["--input", str(root / "**"), "--output", str(tmp_path / "again"), *FAST])
    files = sum(1 for p in (root / "previous").rglob("*") if p.is_file())  # its marker included
    assert summary["skipped_synthcap_outputs"] == {"files": files, "folders": [str(root / "previous")]}
    assert summary["records_read"] == json.loads((out / "summary.json").read_text())["records_read"]


def _curate_cli(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "curate", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture(scope="module")
def kill_reference(sample_crawl, tmp_path_factory):
    """An uninterrupted run of the command the kill tests interrupt."""
    args = ["--input", str(sample_crawl / "CC-MAIN-2024-10-0000[01].warc.gz"), "--rows_per_shard=50", "--no_score",
            "--direct_num_workers=2", "--direct_running_mode=multi_processing"]  # the commit is tested, not scoring
    reference = tmp_path_factory.mktemp("kill_reference")
    curate.run([*args, "--output", str(reference)])
    return args, reference


@pytest.mark.slow
@pytest.mark.parametrize("when", ["claimed", "staged", "committing"])
def test_10_6_kill_then_rerun_is_byte_identical(kill_reference, tmp_path, when, capsys):
    """A real curate subprocess killed with SIGKILL once its output folder is claimed / once writers have staged
    files / once files are being moved into place; readers refuse the folder; the same command then gives the
    bytes of an uninterrupted run."""
    args, reference = kill_reference
    out = tmp_path / "out"
    seen = {"claimed": lambda: (out / MARKER).exists(),
            "staged": lambda: any(".tmp-" in str(p) for p in _files_under(out)),
            "committing": lambda: any((out / "documents").glob("*.parquet"))}[when]
    proc = _curate_cli(*args, "--output", str(out))
    deadline = time.time() + 300
    while time.time() < deadline and not seen() and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup runs
    proc.wait()
    if (out / COMPLETE).exists():
        pytest.skip(f"the run finished before it could be killed at '{when}'")
    with pytest.raises(IncompleteOutputError):
        require_complete(str(out))
    assert main(["inspect", "x", "--output", str(out)]) == 2
    assert "incomplete" in capsys.readouterr().err
    curate.run([*args, "--output", str(out)])
    assert _tree(out) == _tree(reference)


@pytest.mark.slow
def test_10_6_two_runs_into_one_new_output_do_not_mix(sample_crawl, tmp_path):
    shards = str(sample_crawl / "CC-MAIN-2024-10-0000[01].warc.gz")
    out = tmp_path / "out"
    runs = [_curate_cli("--input", shards, "--output", str(out), "--seed", str(seed), "--rows_per_shard=50",
                        "--no_score") for seed in (1, 2)]  # the seed reaches near dedup; scoring adds nothing here
    results = [(p.wait(), *p.communicate()) for p in runs]
    assert sorted(r[0] for r in results) == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    assert "pass --overwrite" in loser[2] and "Traceback" not in loser[2]
    winner_seed = 1 + [r[0] for r in results].index(0)
    reference = tmp_path / "reference"
    curate.run(["--input", shards, "--output", str(reference), "--seed", str(winner_seed), "--rows_per_shard=50",
                "--no_score"])
    require_complete(str(out))
    assert _tree(out) == _tree(reference)


def test_a_run_that_loses_a_record_is_never_marked_complete(tmp_path, capsys):
    """The graph's own summary step refuses to stage books that do not balance, so the commit never runs: here a
    stage that silently loses one document is spliced into the real curate graph."""
    import apache_beam as beam

    from pipeline.runner import make_pipeline

    crawl, out = _crawl(tmp_path / "crawl"), tmp_path / "out"
    run = curate.plan(["--input", str(crawl), "--output", str(out), *FAST])
    p = make_pipeline(run.options)
    g = curate.dedup_graph(p, run)
    g.documents = g.documents | "LoseOne" >> beam.Filter(lambda d: d.id != "d7")
    staged, _ = curate.write_graph(p, run, g)
    curate.commit_graph(run, staged)
    with pytest.raises(Exception, match="summary does not reconcile") as raised:
        curate.execute(p, run)
    assert not (out / COMPLETE).exists() and not (out / "documents").exists()
    with pytest.raises(IncompleteOutputError):
        require_complete(str(out))
    # what the user reads: the cause, in one line, from the worker's traceback text
    from pipeline.cli import failure_line

    line = failure_line(raised.value, ["--direct_running_mode=multi_threading"])
    assert line.startswith("RecordsLost: summary does not reconcile, the output is left uncommitted: records_read 42 "
                           "!= documents_out 39 + dropped 1 + dead_letters 1")
    assert "\n" not in line and "while running" not in line and "use --direct_running_mode=multi_processing" in line


def test_a_local_marker_appears_whole_and_only_once(tmp_path):
    """The claim's marker is linked into place from a finished file beside the folder (never written in place, so a
    kill cannot leave a cut marker that makes the folder look foreign); a second exclusive claim fails; replacing
    it is a rename; nothing is left beside the folder."""
    from transforms.io.commit import _create_exclusive, _write_local_whole

    path = tmp_path / "out" / MARKER
    _create_exclusive(str(path), b'{"synthcap_output": 1}\n')
    assert path.read_bytes() == b'{"synthcap_output": 1}\n'
    with pytest.raises(FileExistsError):
        _create_exclusive(str(path), b"{}")
    _write_local_whole(str(path), b'{"synthcap_output": 1, "verb": "mix"}\n', exclusive=False)
    assert json.loads(path.read_text())["verb"] == "mix"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [MARKER]


def test_an_output_inside_a_part_of_another_output_is_refused_before_it_is_claimed(tmp_path):
    """`--output cur/documents/x` wrote a run into a part of a complete output: a file its completion record does
    not list, so every reader refused `cur` from then on. Beside the parts (`cur/sub`) is fine; inside an
    unfinished output, whose parts are not known yet, is not."""
    from transforms.io.commit import OutputClaimError, claim_output

    cur = tmp_path / "cur"
    (cur / "documents").mkdir(parents=True)
    (cur / "documents" / "a.parquet").write_bytes(b"x")
    (cur / MARKER).write_text(json.dumps({"synthcap_output": 1, "verb": "curate", "run_id": "r", "run_key": "k"}))
    (cur / COMPLETE).write_text(json.dumps({"files": [{"path": "documents/a.parquet", "size": 1,
                                                        "sha256": hashlib.sha256(b"x").hexdigest()}]}))
    require_complete(str(cur))
    for inner, part in ((cur / "documents" / "x", "documents"), (cur / "documents" / "x" / "y", "documents"),
                        (cur / ".tmp-0123" / "x", ".tmp-0123"), (cur / COMPLETE / "x", COMPLETE)):
        with pytest.raises(OutputClaimError, match=f"lies inside {cur / part}, a part of the synthcap output {cur}"):
            claim_output(str(inner), "curate", "r", "k2", False, ("documents",))
        assert not inner.exists()
    claim_output(str(cur / "sub"), "curate", "r", "k2", False, ("documents",))
    require_complete(str(cur))
    (cur / COMPLETE).unlink()  # unfinished: its parts are not known
    with pytest.raises(OutputClaimError, match=f"lies inside {cur}, an unfinished synthcap output"):
        claim_output(str(tmp_path / "cur" / "other"), "curate", "r", "k3", False, ("documents",))


def test_a_glob_over_the_output_folder_is_not_refused_on_the_rerun(tmp_path):
    """`--input 'data/**' --output data/out` ran once, then the same command (a rerun after a crash, or with
    --overwrite) was refused: the glob now matched the files the first run wrote into OUT. They are what the run
    replaces: left out, not counted as skipped; an input list that lies wholly inside OUT is still refused."""
    from pipeline.curate import input_shards
    from pipeline.options import UserError

    data = tmp_path / "data"
    (data / "out" / "documents").mkdir(parents=True)
    (data / "crawl.jsonl").write_text('{"text": "x"}\n')
    (data / "out" / MARKER).write_text(json.dumps({"synthcap_output": 1, "verb": "curate", "run_id": "r",
                                                   "run_key": "k"}))
    (data / "out" / "documents" / "documents-00000-of-00001.parquet").write_bytes(b"PAR1")
    kept, skipped = input_shards([str(data / "**")], str(data / "out"))
    assert [s.path for s in kept] == [str(data / "crawl.jsonl")] and skipped == {}
    with pytest.raises(UserError, match="is inside the output folder"):
        input_shards([str(data / "out" / "**")], str(data / "out"))
    # judged per pattern: one that names only OUT's files is refused beside another that names the crawl
    with pytest.raises(UserError, match="documents-00000-of-00001.parquet is inside the output folder"):
        input_shards([str(data / "out" / "documents" / "*.parquet"), str(data / "*.jsonl")], str(data / "out"))


@pytest.mark.slow
def test_a_crashed_run_whose_glob_covers_its_output_reruns_to_the_same_bytes(tmp_path, capsys):
    data = tmp_path / "data"
    _crawl(data)
    args = ["curate", "--input", str(data / "**"), "--output", str(data / "out"), *FAST]
    assert main(args) == 0
    first = _tree(data / "out")
    (data / "out" / COMPLETE).unlink()  # killed before its commit finished
    assert main(args) == 0, capsys.readouterr().err
    assert _tree(data / "out") == first
    assert main([*args, "--overwrite"]) == 0, capsys.readouterr().err
    assert _tree(data / "out") == first


def test_a_human_reference_inside_the_output_is_refused_before_the_claim(tmp_path):
    """`--human_reference 'OUT/documents/*.parquet' --output OUT --overwrite` deleted the earlier run at the claim,
    then failed reading the reference it had deleted (exit 1). Refused while building, before the claim."""
    from pipeline.curate import _reference_files
    from pipeline.options import UserError

    from transforms.document import Document, to_table

    (tmp_path / "out" / "documents").mkdir(parents=True)
    pq.write_table(to_table([Document(id="a", text="t", source="s", offset=0)]),
                   tmp_path / "out" / "documents" / "d.parquet")
    with pytest.raises(UserError, match=f"--human_reference: {tmp_path}/out/documents/d.parquet is inside the "
                                        f"output folder {tmp_path}/out"):
        _reference_files([str(tmp_path / "out" / "documents" / "*.parquet")], str(tmp_path / "out"))
    assert _reference_files([str(tmp_path / "out" / "documents" / "*.parquet")], str(tmp_path / "other")) == [
        str(tmp_path / "out" / "documents" / "d.parquet")]

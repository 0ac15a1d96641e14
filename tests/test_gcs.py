"""gs:// through Beam's own filesystem layer against a real GCS emulator on 127.0.0.1."""
from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline import curate
from tests.helpers import read_documents
from transforms.document import from_table
from transforms.io.commit import require_complete
from transforms.io.write import write_bytes


# one WARC, one WET and the damaged shard: every reader path and a dead letter, at a fifth of the sample's size
SHARDS = ("CC-MAIN-2024-10-00000.warc.gz", "CC-MAIN-2024-10-00000.warc.wet.gz",
          "CC-MAIN-2024-10-99999-malformed.warc.gz")


def test_curate_reads_and_writes_gs(gcs_emulator, sample_crawl, tmp_path):
    bucket = f"gs://{gcs_emulator}"
    (tmp_path / "crawl").mkdir()
    for name in SHARDS:
        data = (sample_crawl / name).read_bytes()
        write_bytes(f"{bucket}/crawl/{name}", data)
        (tmp_path / "crawl" / name).write_bytes(data)
    # scoring reads nothing from gs:// here (test_flex_gcs covers a model there): left out, as it costs the most
    summary, _ = curate.run(["--input", f"{bucket}/crawl/*.gz", "--output", f"{bucket}/out", "--split_bytes=30000",
                             "--no_score"])
    local = tmp_path / "local"
    local_summary, _ = curate.run(["--input", str(tmp_path / "crawl" / "*.gz"), "--output", str(local), "--no_score"])
    assert summary["reconciles"] and summary["dead_letters"] and summary["documents_out"] > 100
    assert summary == local_summary

    remote = []
    for m in FileSystems.match([f"{bucket}/out/documents/*.parquet"])[0].metadata_list:
        with FileSystems.open(m.path) as f:
            remote += from_table(pq.read_table(f))
    assert sorted((d.id, d.text) for d in remote) == sorted((d.id, d.text) for d in read_documents(local))
    assert all(d.source.startswith(f"{bucket}/crawl/") for d in remote)
    with FileSystems.open(f"{bucket}/out/summary.json") as f:
        assert json.load(f)["records_read"] == summary["records_read"]
    remote_record, local_record = require_complete(f"{bucket}/out"), require_complete(str(local))
    assert [f["path"] for f in remote_record["files"]] == [f["path"] for f in local_record["files"]]
    for f in remote_record["files"]:  # the sha256 of the stored object's bytes
        with FileSystems.open(f"{bucket}/out/{f['path']}", compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == f["sha256"], f["path"]
    assert not FileSystems.match([f"{bucket}/out/.tmp-*/**"])[0].metadata_list

"""A Flex-Template-style run with everything on gs://: crawl shards, detector model, mix config and outputs,
through the template's entry point against the GCS emulator."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.io.filesystems import FileSystems

from pipeline import flex_main
from transforms.document import from_table
from transforms.io.files import local_copy, read_bytes
from transforms.io.write import write_bytes
from transforms.mix.config import ConfigError, load
from transforms.score.model import DEFAULT_MODEL_DIR, Detector, ModelLoadError


def _json(path: str) -> dict:
    return json.loads(read_bytes(path))


def test_read_helpers_on_gs(gcs_emulator, tmp_path):
    bucket = f"gs://{gcs_emulator}/helpers"
    data = bytes(range(256)) * 5000
    write_bytes(f"{bucket}/blob.bin.gz", data)  # .gz must not be decompressed: the bytes as stored
    assert read_bytes(f"{bucket}/blob.bin.gz") == data
    copy = local_copy(f"{bucket}/blob.bin.gz")
    assert Path(copy).read_bytes() == data and hashlib.sha256(data).hexdigest() in copy
    assert local_copy(f"{bucket}/blob.bin.gz") == copy
    local = tmp_path / "x.bin"
    local.write_bytes(b"x")
    assert local_copy(str(local)) == str(local)
    with pytest.raises(OSError):
        read_bytes(f"{bucket}/missing.yaml")
    with pytest.raises(OSError):
        local_copy(f"{bucket}/missing.ftz")
    with pytest.raises(ModelLoadError, match=f"cannot load detector from {bucket}/nomodel"):
        Detector.load(f"{bucket}/nomodel")
    with pytest.raises(ConfigError, match=f"cannot read {bucket}/missing.yaml"):
        load(f"{bucket}/missing.yaml")


@pytest.mark.slow
def test_flex_template_curate_then_mix_all_on_gs(gcs_emulator, sample_crawl, capsys, caplog):
    caplog.set_level("ERROR", logger="gcp_storage_emulator")  # its per-response warnings would fill the run's log
    bucket = f"gs://{gcs_emulator}/flex"
    for p in sorted(sample_crawl.glob("CC-MAIN-2022-05-0000[01].warc.gz")):
        write_bytes(f"{bucket}/crawl/{p.name}", p.read_bytes())
    card = json.loads((Path(DEFAULT_MODEL_DIR) / "model_card.json").read_text())
    card["name"] = "detector-on-gs"  # so the documents show which copy scored them
    write_bytes(f"{bucket}/model/model_card.json", json.dumps(card).encode())
    model = (Path(DEFAULT_MODEL_DIR) / "model.ftz").read_bytes()
    write_bytes(f"{bucket}/model/model.ftz", model)

    rc = flex_main.run(["--verb=curate", f"--input={bucket}/crawl/*.warc.gz", f"--output={bucket}/curated",
                        f"--detector_model={bucket}/model", "--no_near_dedup=true", "--overwrite=false",
                        "--runner=DirectRunner", "--json=true"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    summary = _json(f"{bucket}/curated/summary.json")
    assert summary["reconciles"] and summary["documents_out"] > 100
    assert printed["kept"] == summary["documents_out"] and printed["records_read"] == summary["records_read"]
    docs = []
    for m in FileSystems.match([f"{bucket}/curated/documents/*.parquet"])[0].metadata_list:
        docs += from_table(pq.read_table(FileSystems.open(m.path)))
    assert len(docs) == summary["documents_out"]
    assert {d.ai_model for d in docs} == {f"detector-on-gs@sha256:{hashlib.sha256(model).hexdigest()}"}

    config = {"seed": 7, "target_tokens": 20_000, "max_synthetic_fraction": "1/2",
              "synthetic": {"rule": "threshold", "threshold": 0.95},
              "sources": [{"name": "web-2022", "inputs": [f"{bucket}/curated/documents/*.parquet"], "weight": 1}]}
    write_bytes(f"{bucket}/mix.yaml", yaml.safe_dump(config).encode())
    rc = flex_main.run(["--verb=mix", f"--config={bucket}/mix.yaml", f"--output={bucket}/mix",
                        "--runner=DirectRunner"])
    assert rc == 0
    text = capsys.readouterr().out
    manifest = _json(f"{bucket}/mix/manifest.json")
    assert manifest["output"]["documents"] > 0 and manifest["sources"][0]["inputs"] == config["sources"][0]["inputs"]
    assert f"{manifest['output']['documents']:,} documents" in text and f"{bucket}/mix/manifest.json" in text
    assert FileSystems.match([f"{bucket}/mix/train/*.parquet"])[0].metadata_list


def test_sample_writes_to_gs(gcs_emulator, sample_crawl, capsys, caplog):
    from pipeline.cli import main

    caplog.set_level("ERROR", logger="gcp_storage_emulator")
    out = f"gs://{gcs_emulator}/sample"
    assert main(["sample", "--output", out, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    local = sorted(p for p in sample_crawl.iterdir())
    assert printed["shards"] == len(local) - 1  # the manifest is not a shard
    for p in local:
        assert read_bytes(f"{out}/{p.name}") == p.read_bytes(), p.name

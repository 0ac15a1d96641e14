"""Runner selection and output-folder checks shared by the CLI verbs."""
from __future__ import annotations

import logging
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.options import UserError


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A Pipeline on the requested runner. The default DirectRunner of Beam 2.77 first tries to download the
    Prism runner; we pin the in-process FnApiRunner instead, which honours --direct_num_workers and
    --direct_running_mode and needs no network."""
    name = options.view_as(StandardOptions).runner
    if name in (None, "DirectRunner", "FnApiRunner"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        logging.getLogger("apache_beam.runners.portability.fn_api_runner").setLevel(logging.WARNING)
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


def prepare_output(output: str | None, overwrite: bool, subdirs: tuple[str, ...]) -> str:
    """Checks that OUT is writable and holds no earlier run (unless --overwrite, which clears ours)."""
    if not output:
        raise UserError("--output is required")
    output = output.rstrip("/")
    try:
        existing = [m.path for m in FileSystems.match([FileSystems.join(output, "*")])[0].metadata_list]
    except Exception:
        existing = []
    if existing and not overwrite:
        raise UserError(f"output folder {output} is not empty; pass --overwrite to replace it")
    for sub in subdirs:
        path = FileSystems.join(output, sub)
        if FileSystems.exists(path):
            FileSystems.delete([path])
    probe = FileSystems.join(output, ".synthcap-write-probe")
    try:
        if "://" not in output and not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        with FileSystems.create(probe) as f:
            f.write(b"")
        FileSystems.delete([probe])
    except Exception as e:
        raise UserError(f"cannot write to output folder {output}: {e}") from None
    return output

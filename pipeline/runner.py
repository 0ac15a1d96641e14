"""Runner selection and output-folder checks shared by the CLI verbs."""
from __future__ import annotations

import logging
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.options import UserError
from transforms.io.commit import OutputClaimError, claim_output, run_key


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


def prepare_output(output: str | None, overwrite: bool, parts: tuple[str, ...], verb: str = "mix",
                   run_id: str | None = None, key: str | None = None) -> str:
    """Claims OUT for this run (see transforms/io/commit.py): call it only once everything else is validated,
    because with --overwrite it deletes the previous run's `parts` (and never anything else). With a `key`
    (a run that commits atomically), a rerun of the same configuration may replace its own unfinished output."""
    if not output:
        raise UserError("--output is required")
    output = output.rstrip("/")
    resumable = key is not None
    key = key or run_key(verb, {"output": output})
    try:
        claim_output(output, verb, run_id or f"run-{key}", key, overwrite, parts, resumable)
    except OutputClaimError as e:
        raise UserError(str(e)) from None
    except Exception as e:
        raise UserError(f"cannot write to output folder {output}: {e}") from None
    return output

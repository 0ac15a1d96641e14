"""Runner selection and output-folder checks shared by the CLI verbs."""
from __future__ import annotations

import contextlib
import gc
import logging
import time

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.worker import statesampler

from pipeline.options import UserError
from transforms.accounting import NAMESPACE, live_counts
from transforms.io.commit import OutputClaimError, claim_output, run_key


class LiveCounts:
    """Where a progress line reads the run's counters while it goes: the pipeline result's metrics on a remote
    runner (Dataflow answers `metrics()` while the job runs), this process's own tally for the in-process runner
    (its Beam metrics appear only at the end), nothing when the in-process runner uses worker processes."""

    def __init__(self):
        self.result, self.in_process, self._base, self.started = None, False, {}, None

    def start(self, in_process: bool) -> None:
        """A pipeline is built: forget the previous run's result and count from here."""
        self.result, self.in_process, self._base, self.started = None, in_process, live_counts(), None

    def read(self) -> dict[str, int] | None:
        """The run's counters so far, or None before it runs or when nothing can be read live."""
        if self.started is None:
            return None
        if self.result is not None:
            out: dict[str, int] = {}
            for c in self.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
                value = c.committed if c.committed is not None else c.attempted
                out[c.key.metric.name] = out.get(c.key.metric.name, 0) + (value or 0)
            return out
        if self.in_process:
            return {k: v - self._base.get(k, 0) for k, v in live_counts().items()}
        return None


LIVE = LiveCounts()


class _Views(PipelineOptions):
    """Options that make each view once: Beam asks for a view at every transform it applies and every type check
    (~1,700 per curate graph), and each new view builds an argparse parser (~0.75 ms). Views share one option
    store, so a cached view reads and writes the same values a new one would."""

    def view_as(self, cls):
        views = self.__dict__.setdefault("_views", {})
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]

    @classmethod
    def of(cls, options: PipelineOptions) -> "_Views":
        views = object.__new__(cls)
        views.__dict__.update({k: v for k, v in options.__dict__.items() if k != "_views"})
        return views

    def __getstate__(self):
        return {k: v for k, v in super().__getstate__().items() if k != "_views"}


@contextlib.contextmanager
def _rarer_collections():
    """The in-process runner makes millions of short-lived objects (elements, decoded records, coder streams),
    nearly all freed by reference counting: at the default thresholds the cyclic collector ran ~1,600 times in a
    22,000-document curate and re-scanned the heap each time (~7% of the run's CPU). For the run, what exists
    already (modules, the graph) is frozen out of its scans and collections are rarer; both are restored after.
    A remote runner's `run` only submits, so there it changes nothing."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


SAMPLING_PERIOD_MS = 5


class _ShortPeriodSampler(statesampler.StateSampler):
    """Beam's per-bundle state sampler with a 5 ms period instead of 200 ms. Its thread sleeps one period at a
    time and a bundle ends only once that thread wakes and joins, so every bundle longer than a second idled
    ~100 ms at its end (1.2 s of a 22,000-document curate's wall time on 81 bundles, the process doing nothing);
    at 5 ms a bundle waits ≤ 5 ms, and the thread's 200 wake-ups per second cost nothing measurable. The sampler
    only feeds Beam's execution-time counters (msecs per step), which synthcap does not read."""

    def __init__(self, prefix, counter_factory, sampling_period_ms=SAMPLING_PERIOD_MS):
        super().__init__(prefix, counter_factory, sampling_period_ms)


@contextlib.contextmanager
def _short_sampling():
    """For an in-process run, bundles make `_ShortPeriodSampler`s (the in-process worker builds each bundle's
    sampler from `statesampler.StateSampler`); restored after. Worker processes and remote runners keep
    Beam's own."""
    beam_sampler = statesampler.StateSampler
    statesampler.StateSampler = _ShortPeriodSampler
    try:
        yield
    finally:
        statesampler.StateSampler = beam_sampler


class _Pipeline(beam.Pipeline):
    """A Pipeline whose running result is handed to LIVE, so a remote job's counters can be polled while
    `wait_until_finish` blocks; its options cache their views (`_Views`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._options = _Views.of(self._options)

    def run(self, test_runner_api="AUTO"):
        LIVE.started = time.monotonic()
        with _rarer_collections(), _short_sampling():
            result = super().run(test_runner_api)
        if not LIVE.in_process:
            LIVE.result = result
        return result


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A Pipeline on the requested runner. The default DirectRunner of Beam 2.77 first tries to download the
    Prism runner; we pin the in-process FnApiRunner instead, which honours --direct_num_workers and
    --direct_running_mode and needs no network."""
    name = options.view_as(StandardOptions).runner
    if name in (None, "DirectRunner", "FnApiRunner"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        logging.getLogger("apache_beam.runners.portability.fn_api_runner").setLevel(logging.WARNING)
        LIVE.start(in_process=options.view_as(DirectOptions).direct_running_mode != "multi_processing")
        return _Pipeline(runner=FnApiRunner(), options=options)
    LIVE.start(in_process=False)
    return _Pipeline(options=options)


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

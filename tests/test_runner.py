"""The in-process runner's settings: what a run changes in Beam lasts exactly as long as the run."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.worker import statesampler
from apache_beam.testing.util import assert_that, equal_to

from pipeline.runner import SAMPLING_PERIOD_MS, _ShortPeriodSampler, make_pipeline


def _sampler_period(_):
    tracker = statesampler.get_current_tracker()
    return type(tracker).__name__, tracker.sampling_period_ms


def test_in_process_bundles_sample_at_a_short_period_and_beam_is_restored_after():
    beam_sampler = statesampler.StateSampler
    with make_pipeline(PipelineOptions([])) as p:
        seen = p | beam.Create([1, 2, 3]) | beam.Map(_sampler_period) | beam.Distinct()
        assert_that(seen, equal_to([(_ShortPeriodSampler.__name__, SAMPLING_PERIOD_MS)]))
    assert statesampler.StateSampler is beam_sampler

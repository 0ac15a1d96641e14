"""The runnable product: CLI verbs, PipelineOptions and wiring of the `transforms` plugin."""

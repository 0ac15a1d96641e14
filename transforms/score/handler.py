"""`ScoreAILikelihood`: Beam RunInference with a fastText ModelHandler, behind a language gate.

Documents in a language the detector was not trained for are not scored (`ai_score` null, counted as
`score_null_unsupported_language`); the others get `ai_score` and `ai_model`.
One model per worker process (RunInference's shared-model mechanism), batched. In RunInference one bad element
fails its whole batch, so the handler never raises per element: a batch that fails is rescored one by one, and an
element that still fails comes out as a ScoreFailure, which becomes a `score_error` dead letter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from transforms.accounting import DEAD_LETTERS, DOCUMENTS, count, dead_letter
from transforms.document import Document, replace
from transforms.score.language import LanguageGate
from transforms.score.model import DEFAULT_MODEL_DIR, Detector

STAGE = "score"


@dataclass(frozen=True)
class ScoreFailure:
    error_type: str
    message: str


class FastTextModelHandler(ModelHandler[Document, Any, Detector]):
    def __init__(self, model_dir: str = DEFAULT_MODEL_DIR, min_batch_size: int = 256, max_batch_size: int = 4096):
        self._model_dir = model_dir
        self._batch = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}

    def load_model(self) -> Detector:
        return Detector.load(self._model_dir)

    def batch_elements_kwargs(self):
        return self._batch

    def run_inference(self, batch: Sequence[Document], model: Detector,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        try:
            scores = model.score([d.text for d in batch])
            return [PredictionResult(d, (float(s), model.model_id)) for d, s in zip(batch, scores)]
        except Exception:
            return [self._one(d, model) for d in batch]

    @staticmethod
    def _one(doc: Document, model: Detector) -> PredictionResult:
        try:
            return PredictionResult(doc, (float(model.score([doc.text])[0]), model.model_id))
        except Exception as e:
            return PredictionResult(doc, ScoreFailure(type(e).__name__, str(e)[:500]))

    def get_num_bytes(self, batch: Sequence[Document]) -> int:
        return sum(len(d.text) for d in batch)


class _Attach(beam.DoFn):
    def __init__(self, prefix: str):
        self._prefix = prefix

    def process(self, result: PredictionResult):
        doc, out = result.example, result.inference
        if isinstance(out, ScoreFailure):
            if self._prefix:  # a reference document is not a record of this run: counted, never a dead letter
                count(f"{self._prefix}score_error")
                return
            yield dead_letter(doc.source, doc.offset, "score_error", f"{out.error_type}: {out.message}", STAGE)
            return
        count(f"{self._prefix}scored")
        yield replace(doc, ai_score=out[0], ai_model=out[1])


UNSUPPORTED = "unsupported"


class _Gate(beam.DoFn):
    def __init__(self, prefix: str):
        self._prefix = prefix

    def setup(self):
        self._gate = LanguageGate()

    def process(self, doc: Document):
        if self._gate.supported(doc.text, doc.language):
            yield doc
        else:
            count(f"{self._prefix}score_null_unsupported_language")
            yield beam.pvalue.TaggedOutput(UNSUPPORTED, doc)


class ScoreAILikelihood(beam.PTransform):
    """Adds `ai_score` (the detector's calibrated score: P(AI) on its own validation data, not on your crawl) and
    `ai_model` (name@sha256) to each document the detector supports; returns {"documents", "dead_letters"}.
    `reference=True` scores human-reference documents of another run: their counters are prefixed `reference_`
    and their failures are counted, not dead-lettered (they are not records of this run)."""

    def __init__(self, model_dir: str = DEFAULT_MODEL_DIR, min_batch_size: int = 256, max_batch_size: int = 4096,
                 reference: bool = False):
        super().__init__()
        self._handler = FastTextModelHandler(model_dir, min_batch_size, max_batch_size)
        self._prefix = "reference_" if reference else ""

    def expand(self, docs):
        gated = docs | "LanguageGate" >> beam.ParDo(_Gate(self._prefix)).with_outputs(UNSUPPORTED, main=DOCUMENTS)
        out = (
            gated[DOCUMENTS]
            | "RunInference" >> RunInference(self._handler)
            | "Attach" >> beam.ParDo(_Attach(self._prefix)).with_outputs(DEAD_LETTERS, main=DOCUMENTS)
        )
        documents = (out[DOCUMENTS], gated[UNSUPPORTED]) | "WithUnscored" >> beam.Flatten()
        return {DOCUMENTS: documents, DEAD_LETTERS: out[DEAD_LETTERS]}

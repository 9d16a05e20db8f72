"""The model step of `dass tag`: a batch of equal-length features -> one table row per input.

The numbers are those of `dass classify` and `dass timeline`: the same step, `inference.classify.analyse_batch`,
computes them from one forward per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..inference.classify import StepEmbeddings, analyse_batch
from ..inference.features import RecordingFeatures
from ..inference.timeline import segments
from .features import DecodedInput
from .inputs import TagInput

__all__ = ["Predicted", "Predictor", "error_row"]


@dataclass
class Predicted:
    """What one batch gave: its table rows, and (id, per-step embeddings) of each input when asked for."""

    rows: list[dict]
    steps: list[tuple[str, StepEmbeddings]]


@dataclass
class Predictor:
    """What to compute for each clip.

    Attributes:
        model: a `DassForAudioClassification` in eval mode, on the device the batches go to.
        top_k: labels per row, the best first.
        clip_pooling: `--clip-pooling` (auto, mean, max), resolved per clip length as `dass classify` does.
        segments: also the (start, end, label, score) runs at or above `threshold` of `dass timeline`.
        smoothing: the timeline's moving average in steps (odd; 1 = none).
        median_filter_s: the timeline's median filter in seconds, after the moving average (0 = none).
        embeddings: also the clip embedding (`DassModel`'s `pooler_output`, float32) as a list of hidden_size floats.
        step_embeddings: also the embedding of every 0.32 s step (`Predicted.steps`, for `step_table`).
    """

    model: object
    top_k: int = 5
    clip_pooling: str = "auto"
    segments: bool = False
    threshold: float = 0.5
    smoothing: int = 1
    batch_size: int = 8
    median_filter_s: float = 0.0
    embeddings: bool = False
    step_embeddings: bool = False

    def predict(self, batch: list[DecodedInput], inputs: list[TagInput]) -> Predicted:
        """Rows of a batch of inputs whose `input_values` all have the same frame count: one forward gives the
        labels and, with `segments`, the timeline (`inference.classify.analyse_batch`, as `dass classify` and
        `dass timeline` compute them), and the embeddings asked for."""
        recordings = [RecordingFeatures(item.input_values, item.audio_frames, item.duration_s) for item in batch]
        analyses = analyse_batch(
            self.model, recordings, top_k=self.top_k, clip_pooling=self.clip_pooling, timeline=self.segments,
            smoothing=self.smoothing, median_filter_s=self.median_filter_s, embeddings=self.embeddings,
            step_embeddings=self.step_embeddings,
        )  # fmt: skip
        rows, steps = [], []
        for item, analysis in zip(batch, analyses):
            source = inputs[item.position]
            row = {
                "id": source.id,
                "path": source.path,
                "duration_s": item.duration_s,
                "sample_rate": item.sample_rate,
                "labels": [entry["label"] for entry in analysis.labels],
                "scores": [entry["score"] for entry in analysis.labels],
                "clip_pooling": analysis.clip_pooling,
                "error": None,
            }
            if self.segments:
                row["segments"] = [segment.as_row() for segment in segments(analysis.timeline, self.threshold)]
            if self.embeddings:
                row["embedding"] = analysis.embedding.tolist()  # float32 values, exact as Python floats
            if self.step_embeddings:
                steps.append((source.id, analysis.step_embeddings))
            rows.append(row)
        return Predicted(rows, steps)


def error_row(item: DecodedInput, source: TagInput, segments: bool, embeddings: bool = False) -> dict:
    """The row of an input that could not be tagged: its id, path and error, no labels (nor embedding)."""
    row = {
        "id": source.id,
        "path": source.path,
        "duration_s": item.duration_s,
        "sample_rate": item.sample_rate,
        "labels": None,
        "scores": None,
        "clip_pooling": None,
        "error": item.error,
    }
    if segments:
        row["segments"] = None
    if embeddings:
        row["embedding"] = None
    return row

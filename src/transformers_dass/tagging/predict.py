"""The model step of `dass tag`: a batch of equal-length features -> one table row per input.

The numbers are those of `dass classify` (`readout.top_labels`, the step it runs too) and, for segments, of
`dass timeline` (`timeline.timeline_of_frame_logits` on the unpadded features, then `timeline.segments`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..readout import read_out, top_labels
from ..timeline import segments as find_segments
from ..timeline import timeline_of_frame_logits
from .batching import batches_of_equal_length
from .features import DecodedInput
from .inputs import TagInput

__all__ = ["Predictor", "error_row"]


@dataclass
class Predictor:
    """What to compute for each clip.

    Attributes:
        model: a `DassForAudioClassification` in eval mode, on `device`.
        top_k: labels per row, the best first.
        clip_pooling: `--clip-pooling` (auto, mean, max), resolved per clip length as `dass classify` does.
        segments: also the (start, end, label, score) runs at or above `threshold` of `dass timeline`.
        smoothing: the timeline's moving average in steps (odd; 1 = none).
    """

    model: object
    top_k: int = 5
    clip_pooling: str = "auto"
    segments: bool = False
    threshold: float = 0.5
    smoothing: int = 1
    device: torch.device | str = "cpu"
    batch_size: int = 8

    def rows(self, batch: list[DecodedInput], inputs: list[TagInput]) -> list[dict]:
        """Rows of a batch of inputs whose `input_values` all have the same frame count."""
        config = self.model.config
        features = torch.stack([item.input_values for item in batch]).to(self.device)
        best = top_labels(self.model, features, self.clip_pooling, self.top_k)
        rows = []
        for b, item in enumerate(batch):
            source = inputs[item.position]
            row = {
                "id": source.id,
                "path": source.path,
                "duration_s": item.duration_s,
                "sample_rate": item.sample_rate,
                "labels": [config.id2label[i] for i in best.indices[b].tolist()],
                "scores": best.scores[b].tolist(),
                "clip_pooling": best.pooling,
                "error": None,
            }
            rows.append(row)
        if self.segments:
            for row, segments in zip(rows, self._segments(batch, best.readouts.frame_logits)):
                row["segments"] = segments
        return rows

    def _segments(self, batch: list[DecodedInput], frame_logits: torch.Tensor) -> list[list[dict]]:
        """Segments of each clip, from the unpadded features as `dass timeline` runs them: the batch's own frame
        scores where the clip was not padded, else a forward on its `timeline_values` (batched by length)."""
        logits_by_position = {}
        padded = [item for item in batch if item.timeline_values is not None]
        as_timeline = [
            DecodedInput(position=item.position, input_values=item.timeline_values) for item in padded
        ]
        for group in batches_of_equal_length(as_timeline, self.batch_size):
            features = torch.stack([item.input_values for item in group]).to(self.device)
            group_logits = read_out(self.model, features, ()).frame_logits
            for item, logits in zip(group, group_logits):
                logits_by_position[item.position] = (logits, features.shape[1])
        found = []
        for b, item in enumerate(batch):
            logits, frames = logits_by_position.get(item.position, (frame_logits[b], item.input_values.shape[0]))
            timeline = timeline_of_frame_logits(self.model, logits, frames, self.smoothing)
            found.append(
                [
                    {"start_s": s.start, "end_s": s.end, "label": s.label, "score": s.score}
                    for s in find_segments(timeline, self.threshold)
                ]
            )
        return found


def error_row(item: DecodedInput, source: TagInput, segments: bool) -> dict:
    """The row of an input that could not be tagged: its id, path and error, no labels."""
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
    return row

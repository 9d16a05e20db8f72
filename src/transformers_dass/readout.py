"""Clip readouts of a DASS model's frame scores: the one place that turns `frame_logits` into clip scores.

`DassForAudioClassification` scores every time step of its last feature map (`frame_logits`, one step per 32
input frames = 0.32 s). A clip readout reduces them over time to one score per label:

- `"mean"`: the average over time. This is the paper's global average pooling: the model's `logits` (computed
  from the pooled features, equal to the time mean of `frame_logits` up to float rounding). A short sound in a
  long input is diluted by the number of steps.
- `"max"`: per label, the highest step. It asks "is the sound anywhere in the recording?"; a short sound keeps
  its score however long the input, while the noise adds chances of a spurious peak only slowly.

`read_out` runs the model once and returns the frame scores and every requested readout of them: the clip
readouts of `forward(clip_pooling=...)`, `dass classify`, `dass timeline` and the NIAH sweep all come from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

CLIP_POOLINGS = ("mean", "max")

__all__ = ["CLIP_POOLINGS", "Readouts", "check_clip_pooling", "choose_clip_pooling", "pool_frame_logits", "read_out"]


def check_clip_pooling(value, name: str = "clip_pooling") -> str:
    """`value` if it names a clip readout; else a ValueError listing them."""
    if not isinstance(value, str) or value not in CLIP_POOLINGS:
        raise ValueError(
            f"`{name}` must be one of {CLIP_POOLINGS} (mean: the paper's average over time; max: the highest "
            f"time step, for short sounds in long recordings), got {value!r}."
        )
    return value


def choose_clip_pooling(requested: str, model_pooling: str, frames: int, training_frames: int | None) -> str:
    """The readout for an input of `frames` frames: `requested`, or for `"auto"` the model's own readout
    (`model_pooling`) up to its training length `training_frames` (the extractor's `max_length`; None: unknown,
    the model's own) and `"max"` beyond it, where averaging over time dilutes a short sound."""
    if requested != "auto":
        return check_clip_pooling(requested)
    if training_frames is None or frames <= training_frames:
        return check_clip_pooling(model_pooling)
    return "max"


def pool_frame_logits(frame_logits: torch.Tensor, pooling: str) -> torch.Tensor:
    """Clip scores from frame scores.

    Args:
        frame_logits: (batch, time_steps, num_labels).
        pooling: one of `CLIP_POOLINGS`.

    Returns:
        (batch, num_labels): the mean or, per label, the maximum over the time steps.
    """
    check_clip_pooling(pooling, "pooling")
    if frame_logits.ndim != 3 or frame_logits.shape[1] == 0:
        raise ValueError(f"frame_logits must be (batch, time_steps >= 1, num_labels), got {tuple(frame_logits.shape)}")
    if pooling == "max":
        return frame_logits.amax(dim=1)
    return frame_logits.mean(dim=1)


@dataclass
class Readouts:
    """One forward's scores.

    Attributes:
        frame_logits: (batch, time_steps, num_labels) scores of every time step.
        clip_logits: {pooling: (batch, num_labels)} for each requested readout; "mean" is the model's `logits`.
    """

    frame_logits: torch.Tensor
    clip_logits: dict[str, torch.Tensor]


def read_out(
    model,
    input_values: torch.Tensor,
    poolings: Sequence[str] = ("mean",),
    show_progress: bool = False,
    **forward_kwargs,
) -> Readouts:
    """Frame scores and clip readouts of a `DassForAudioClassification` from one forward in inference mode.

    Args:
        model: a `DassForAudioClassification`; put in eval mode for the call and restored afterwards.
        input_values: (batch, frames, num_mel_bins) normalised features.
        poolings: the readouts wanted, each one of `CLIP_POOLINGS` (may be empty: frame scores only).
        show_progress: progress bar over the layers on the lean path.
        forward_kwargs: passed to the forward (e.g. `inference_mode`).
    """
    poolings = [check_clip_pooling(p, "poolings") for p in poolings]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model(
                input_values,
                return_frame_logits=True,
                clip_pooling="mean",
                show_progress=show_progress,
                **forward_kwargs,
            )
    finally:
        model.train(was_training)
    clip = {p: output.logits if p == "mean" else pool_frame_logits(output.frame_logits, p) for p in poolings}
    return Readouts(frame_logits=output.frame_logits, clip_logits=clip)

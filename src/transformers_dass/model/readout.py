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
# What a config or a call may ask for: a readout, or "auto" (mean up to the training length, max beyond).
CLIP_POOLING_CHOICES = ("auto",) + CLIP_POOLINGS

__all__ = [
    "CLIP_POOLINGS",
    "CLIP_POOLING_CHOICES",
    "Readouts",
    "check_clip_pooling",
    "choose_clip_pooling",
    "label_scores",
    "pool_frame_logits",
    "read_out",
    "resolve_clip_pooling",
]


def check_clip_pooling(value, name: str = "clip_pooling", choices: tuple[str, ...] = CLIP_POOLINGS) -> str:
    """`value` if it is one of `choices`; else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices} (mean: the paper's average over time; max: the highest time step, "
            f"for short sounds in long recordings{'; auto: mean up to the training length, max beyond' if 'auto' in choices else ''}), "
            f"got {value!r}."
        )
    return value


def resolve_clip_pooling(pooling: str, frames: int, training_frames: int) -> str:
    """The readout (`"mean"` or `"max"`) that `pooling` means for an input of `frames` frames: itself, or for
    `"auto"` the paper's mean up to the training length `training_frames` and the max beyond it, where
    averaging over time dilutes a short sound."""
    check_clip_pooling(pooling, choices=CLIP_POOLING_CHOICES)
    if pooling != "auto":
        return pooling
    return "mean" if frames <= training_frames else "max"


def choose_clip_pooling(requested: str, model_pooling: str, frames: int, training_frames: int) -> str:
    """The readout `dass classify --clip-pooling requested` uses for `frames` frames: the model's own
    (`model_pooling`, `config.clip_pooling`) for `"auto"`, so that it gives what the model's forward and
    `pipeline()` give; `"mean"` or `"max"` when forced."""
    check_clip_pooling(requested, "--clip-pooling", CLIP_POOLING_CHOICES)
    return resolve_clip_pooling(model_pooling if requested == "auto" else requested, frames, training_frames)


def label_scores(logits: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """Scores shown for logits (..., num_labels), by transformers' audio-classification pipeline rule: sigmoid for
    `problem_type="multi_label_classification"`, the logits themselves for "regression", softmax otherwise
    (None included). `dass classify`, `dass timeline` and archive tagging all score with this one rule."""
    if problem_type == "regression":
        return logits
    if problem_type == "multi_label_classification":
        return logits.sigmoid()
    return logits.softmax(-1)


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

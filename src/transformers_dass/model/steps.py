"""The time grid of frame scores: which input frames a step covers, when it starts and ends, which steps hold audio.

A grid of `frames_per_step` input frames per step: step `k` covers frames `[k S, (k + 1) S)` clipped to the audio
(S = `frames_per_step`), frame `i` starting at `i * frame_shift` seconds. `DassForAudioClassification.frame_logits`
use S = 32 (0.32 s at a 10 ms hop); `DassForAudioFrameClassification`'s logits S = 32 / `config.frame_upsampling`
(4 = 40 ms by default); the strong-label collator lays events on the same grid.
"""

from __future__ import annotations

import torch

from ..utils.checks import positive_int

__all__ = ["num_steps", "step_times", "steps_holding_audio"]


def num_steps(num_frames: int, frames_per_step: int) -> int:
    """Steps that hold at least one of `num_frames` input frames: `ceil(num_frames / frames_per_step)`."""
    num_frames = positive_int(num_frames, "num_frames (input frames)")
    return -(-num_frames // positive_int(frames_per_step, "frames_per_step"))


def step_times(num_frames: int, frames_per_step: int, frame_shift: float = 0.01) -> torch.Tensor:
    """(steps, 2) float64 start and end in seconds of each step of the grid over `num_frames` input frames.

    Step `k` covers frames `[k * frames_per_step, min((k + 1) * frames_per_step, num_frames))`.
    """
    count = num_steps(num_frames, frames_per_step)
    starts = torch.arange(count, dtype=torch.float64) * frames_per_step
    ends = (starts + frames_per_step).clamp(max=num_frames)
    return torch.stack([starts, ends], dim=1) * frame_shift


def steps_holding_audio(clip_frames: torch.Tensor, frames_per_step: int, total_steps: int) -> torch.Tensor:
    """(batch, total_steps) bool: whether step `k` holds any of a clip's frames, `k * frames_per_step <
    clip_frames[b]`, for clips of `clip_frames` (batch,) frames batched on a grid of `total_steps` steps."""
    first_frames = torch.arange(total_steps, device=clip_frames.device) * frames_per_step
    return first_frames[None, :] < clip_frames.reshape(-1, 1)

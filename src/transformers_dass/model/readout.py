"""Clip readouts of a DASS model's frame scores: the one place that turns `frame_logits` into clip scores.

`DassForAudioClassification` scores every time step of its last feature map (`frame_logits`, one step per 32
input frames = 0.32 s). A clip readout reduces them over time to one score per label:

- `"mean"`: the average over time. This is the paper's global average pooling: the model's `logits` (computed
  from the pooled features, equal to the time mean of `frame_logits` up to float rounding). A short sound in a
  long input is diluted by the number of steps.
- `"max"`: per label, the highest step. It asks "is the sound anywhere in the recording?"; a short sound keeps
  its score however long the input, while the noise adds chances of a spurious peak only slowly.
- `"linear_softmax"`: `sum_t p_t^2 / sum_t p_t` of the step probabilities `p_t = sigmoid(frame_logits)`, each step
  weighted by its own probability (Wang et al., ICASSP 2019). Trained on clip labels, it lets the frame scores
  localise: a step earns the clip's score only by being high itself, and no step is pushed up for the others.
- `"attention"`: PANNs' decision-level attention, `sum_t a_t p_t` with `a = softmax_t(attention_logits)`, the
  attention logits from a trainable head that only models created with `config.clip_pooling="attention"` have.

The last two read a probability out; they return its logit, computed in log space (see
`_weighted_probability_logit`), so that the loss and the scores treat every readout as logits.

`read_out` runs the model once and returns the frame scores and every requested readout of them: the clip
readouts of `forward(clip_pooling=...)`, `dass classify`, `dass timeline` and the NIAH sweep all come from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..utils.checks import positive_int

# Each readout and what it is for (the error message of a bad choice lists them).
_READOUT_USES = {
    "mean": "the paper's average over time",
    "max": "the highest time step, for short sounds in long recordings",
    "linear_softmax": "sum p^2 / sum p over time, clip labels that teach the steps to localise",
    "attention": "a learned attention over time, for models created with clip_pooling='attention'",
    "auto": "mean up to the training length, max beyond",
}
CLIP_POOLINGS = ("mean", "max", "linear_softmax", "attention")
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
    "step_hidden_states",
    "upsample_frame_logits",
]


def check_clip_pooling(value, name: str = "clip_pooling", choices: tuple[str, ...] = CLIP_POOLINGS) -> str:
    """`value` if it is one of `choices`; else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        uses = "; ".join(f"{choice}: {_READOUT_USES[choice]}" for choice in choices)
        raise ValueError(f"`{name}` must be one of {choices} ({uses}), got {value!r}.")
    return value


def resolve_clip_pooling(pooling: str, frames: int, training_frames: int) -> str:
    """The readout (one of `CLIP_POOLINGS`) that `pooling` means for an input of `frames` frames: itself, or for
    `"auto"` the paper's mean up to the training length `training_frames` and the max beyond it, where
    averaging over time dilutes a short sound."""
    check_clip_pooling(pooling, choices=CLIP_POOLING_CHOICES)
    if pooling != "auto":
        return pooling
    return "mean" if frames <= training_frames else "max"


def choose_clip_pooling(requested: str, model_pooling: str, frames: int, training_frames: int) -> str:
    """The readout `dass classify --clip-pooling requested` uses for `frames` frames: the model's own
    (`model_pooling`, `config.clip_pooling`) for `"auto"`, so that it gives what the model's forward and
    `pipeline()` give; the readout asked for otherwise."""
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


def pool_frame_logits(
    frame_logits: torch.Tensor, pooling: str, attention_logits: torch.Tensor | None = None
) -> torch.Tensor:
    """Clip scores from frame scores.

    Args:
        frame_logits: (batch, time_steps, num_labels).
        pooling: one of `CLIP_POOLINGS`.
        attention_logits: (batch, time_steps, num_labels), the attention head's per-step logits; for
            `"attention"` only.

    Returns:
        (batch, num_labels) logits: the mean or, per label, the maximum over the time steps; for `"linear_softmax"`
        and `"attention"` the logit of the pooled probability.
    """
    check_clip_pooling(pooling, "pooling")
    if frame_logits.ndim != 3 or frame_logits.shape[1] == 0:
        raise ValueError(f"frame_logits must be (batch, time_steps >= 1, num_labels), got {tuple(frame_logits.shape)}")
    if pooling == "max":
        return frame_logits.amax(dim=1)
    if pooling == "linear_softmax":
        # Weights p_t / sum p: the attention form with log-weights log p_t.
        return _weighted_probability_logit(F.logsigmoid(frame_logits), frame_logits)
    if pooling == "attention":
        if attention_logits is None:
            raise ValueError(
                "clip_pooling='attention' needs the attention head, which only models created with "
                "config.clip_pooling='attention' have: build (or fine-tune) the model with that setting, or choose "
                "'mean', 'max' or 'linear_softmax', which need no parameters"
            )
        if attention_logits.shape != frame_logits.shape:
            raise ValueError(
                f"attention_logits {tuple(attention_logits.shape)} must have the shape of frame_logits "
                f"{tuple(frame_logits.shape)}"
            )
        return _weighted_probability_logit(attention_logits, frame_logits)
    return frame_logits.mean(dim=1)


def _weighted_probability_logit(weight_logits: torch.Tensor, frame_logits: torch.Tensor) -> torch.Tensor:
    """`logit(sum_t w_t sigmoid(z_t))` with `w = softmax_t(weight_logits)`, over dim 1 of (batch, steps, labels).

    In log space, `log p = LSE_t(a_t + log sigmoid(z_t)) - LSE_t(a_t)` and, as the weights sum to 1,
    `log(1 - p) = LSE_t(a_t + log sigmoid(-z_t)) - LSE_t(a_t)`; the normaliser cancels in the logit. So the result
    is finite and has gradients wherever the inputs are finite, with no clamp of p near 0 or 1 (a clamp would stop
    the gradient of a positive label whose steps all score near 0, exactly where it is needed).
    """
    return torch.logsumexp(weight_logits + F.logsigmoid(frame_logits), dim=1) - torch.logsumexp(
        weight_logits + F.logsigmoid(-frame_logits), dim=1
    )


def step_hidden_states(last_hidden_state: torch.Tensor) -> torch.Tensor:
    """The embedding of every time step: `DassModel`'s last hidden state averaged over frequency.

    The one place this is computed: the classifier reads `frame_logits` from it, `read_out(..., step_embeddings=True)`
    returns it (float32) as the per-step embeddings, and the HEAR module's timestamp embeddings interpolate it.

    Args:
        last_hidden_state: (batch, hidden_size, frequency, time_steps), one time step per `config.frames_per_step`
            (32) input frames.

    Returns:
        (batch, time_steps, hidden_size), in the dtype of `last_hidden_state`.
    """
    if last_hidden_state.ndim != 4:
        shape = tuple(last_hidden_state.shape)
        raise ValueError(f"last_hidden_state must be (batch, hidden_size, frequency, time_steps), got {shape}")
    return last_hidden_state.mean(dim=2).transpose(1, 2)


def upsample_frame_logits(frame_logits: torch.Tensor, factor: int, num_steps: int) -> torch.Tensor:
    """Frame scores at `factor` times the step rate, by linear interpolation in time between step centres.

    Step `j` of `frame_logits` covers input frames `[j F, (j + 1) F)` (F = `frames_per_step`, 32 for DASS) and is
    placed at its centre `j F + F / 2`; output step `k` covers `[k F / factor, (k + 1) F / factor)` and takes the
    linear interpolation at its own centre, i.e. at input step `(k + 1/2) / factor - 1/2` (PyTorch's
    `interpolate(mode="linear", align_corners=False)`). Before the first centre and after the last the value is
    that step's (no extrapolation). A last step that the audio cuts short keeps its nominal centre.

    Args:
        frame_logits: (batch, time_steps, num_labels).
        factor: output steps per input step (`config.frame_upsampling`).
        num_steps: output steps to keep, at most `time_steps * factor`: those that hold audio
            (`ceil(frames / (F / factor))`); the rest of the last input step's share is dropped.

    Returns:
        (batch, num_steps, num_labels), a view of a new tensor, in the dtype of `frame_logits`.
    """
    factor = positive_int(factor, "factor")
    if frame_logits.ndim != 3 or frame_logits.shape[1] == 0:
        raise ValueError(f"frame_logits must be (batch, time_steps >= 1, num_labels), got {tuple(frame_logits.shape)}")
    available = frame_logits.shape[1] * factor
    if not 1 <= num_steps <= available:
        raise ValueError(f"num_steps must be between 1 and time_steps * factor = {available}, got {num_steps}")
    if factor == 1:
        return frame_logits[:, :num_steps]
    fine = F.interpolate(frame_logits.transpose(1, 2), size=available, mode="linear", align_corners=False)
    return fine[..., :num_steps].transpose(1, 2)


@dataclass
class Readouts:
    """One forward's scores.

    Attributes:
        frame_logits: (batch, time_steps, num_labels) scores of every time step of the last stage (0.32 s).
        clip_logits: {pooling: (batch, num_labels)} for each requested readout; "mean" is the model's `logits`.
        fine_frame_logits: (batch, steps, num_labels), the frame model's scores (`DassForAudioFrameClassification`,
            40 ms steps by default) when asked for with `fine_steps=True`, else None.
        embeddings: (batch, hidden_size) float32, the clip embedding (`DassModel`'s `pooler_output`: the last
            hidden state averaged over frequency and time, the classifier's input) when asked for with
            `embeddings=True`, else None.
        step_embeddings: (batch, time_steps, hidden_size) float32, the embedding of every 0.32 s step
            (`step_hidden_states`: the last hidden state averaged over frequency, what `frame_logits` are read from)
            when asked for with `step_embeddings=True`, else None. Their time mean is `embeddings`.
    """

    frame_logits: torch.Tensor
    clip_logits: dict[str, torch.Tensor]
    fine_frame_logits: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    step_embeddings: torch.Tensor | None = None


def read_out(
    model,
    input_values: torch.Tensor,
    poolings: Sequence[str] = ("mean",),
    show_progress: bool = False,
    fine_steps: bool = False,
    embeddings: bool = False,
    step_embeddings: bool = False,
    **forward_kwargs,
) -> Readouts:
    """Frame scores and clip readouts of a `DassForAudioClassification` from one forward in inference mode.

    Args:
        model: a `DassForAudioClassification`; put in eval mode for the call and restored afterwards.
        input_values: (batch, frames, num_mel_bins) normalised features.
        poolings: the readouts wanted, each one of `CLIP_POOLINGS` (may be empty: frame scores only).
        show_progress: progress bar over the layers on the lean path.
        fine_steps: also the frame model's scores (`Readouts.fine_frame_logits`): what a timeline shows.
        embeddings: also the clip embeddings (`Readouts.embeddings`), taken from the same forward.
        step_embeddings: also the per-step embeddings (`Readouts.step_embeddings`), from the same forward.
        forward_kwargs: passed to the forward (e.g. `inference_mode`).
    """
    poolings = [check_clip_pooling(p, "poolings") for p in poolings]
    was_training = model.training
    model.eval()
    kept: dict[str, torch.Tensor] = {}
    # The classifier's outputs do not carry the base model's states; a hook on the base model keeps them from this
    # forward (on the standard and the lean path alike), rather than running the model a second time.
    def keep(_module, _inputs, output):
        if embeddings:
            kept["pooled"] = output.pooler_output
        if step_embeddings:
            kept["steps"] = step_hidden_states(output.last_hidden_state)

    hook = model.dass.register_forward_hook(keep) if embeddings or step_embeddings else None
    try:
        with torch.inference_mode():
            output = model(
                input_values,
                return_frame_logits=True,
                clip_pooling="mean",
                show_progress=show_progress,
                return_fine_frame_logits=fine_steps,
                **forward_kwargs,
            )
    finally:
        model.train(was_training)
        if hook is not None:
            hook.remove()
    clip = {
        p: output.logits if p == "mean" else pool_frame_logits(output.frame_logits, p, output.attention_logits)
        for p in poolings
    }
    return Readouts(
        frame_logits=output.frame_logits,
        clip_logits=clip,
        fine_frame_logits=output.fine_frame_logits,
        # clones: plain tensors (not inference tensors) that a probe can train on
        embeddings=kept["pooled"].float().clone() if embeddings else None,
        step_embeddings=kept["steps"].float().clone() if step_embeddings else None,
    )

"""Post-processing of a timeline's scores in seconds: the median filter of sound event detection.

`median_filter` is the filter sed_scores_eval applies (`sed_scores_eval.base_modules.postprocessing.medfilt`, the
DCASE task 4 post-processing): a window of a given length in seconds slides over the scores, each step's score
holding over the step's span, and at each instant the output is the weighted median of the scores under the
window (each weighted by the time it spends in the window). sed_scores_eval returns that piecewise-constant curve
with change points of its own; here it is read at the centre of every step, so the result stays on the timeline's
grid (the same `times`, whatever the step: 0.32 s or finer) and is what sed_scores_eval's filter gives there.
"""

from __future__ import annotations

import numpy as np

from ..utils.checks import non_negative_float

__all__ = ["median_filter"]

# Elements (window steps x labels x steps) handled at once: bounds the memory of long recordings (~32 MB per array).
_CHUNK_ELEMENTS = 1 << 22
# Time tolerance in seconds (sed_scores_eval compares times to 6 decimals). A window of an even number of steps can
# split its time evenly between two scores (the median of an even count): the lower one is taken. sed_scores_eval
# keeps whichever its sweep over time held before, so only there can the two differ.
_EPS = 1e-9


def median_filter(scores: np.ndarray, times: np.ndarray, seconds: float) -> np.ndarray:
    """Median filter of `seconds` over per-step scores, read at each step's centre.

    Args:
        scores: (steps, labels) scores, step `i` holding over `[times[i, 0], times[i, 1])`.
        times: (steps, 2) start and end of each step in seconds, increasing (`Timeline.times`).
        seconds: the window length (0: the scores unchanged). Steps of 0.32 s with `seconds=0.96` are the usual
            3-step median; any length works, a window edge splitting a step weighting it by the part inside.

    Returns:
        (steps, labels) filtered scores, same dtype. Time outside the recording (or between steps) counts as score
        0, the lowest probability (sed_scores_eval pads with -inf: the same medians wherever the result is not
        that padding, i.e. wherever at least half of the window lies in the recording). Where two scores hold
        exactly half of the window each (windows of an even number of steps), the lower one.
    """
    seconds = non_negative_float(seconds, "the median filter's length in seconds")
    scores = np.asarray(scores)
    times = np.asarray(times, dtype=np.float64)
    if scores.ndim != 2 or times.shape != (scores.shape[0], 2):
        raise ValueError(f"median_filter takes scores (steps, labels), times (steps, 2); got {scores.shape}, {times.shape}")
    if seconds == 0.0 or scores.shape[0] == 0:
        return scores
    starts, ends = times[:, 0], times[:, 1]
    if np.any(ends <= starts) or np.any(starts[1:] < ends[:-1] - _EPS):
        raise ValueError("median_filter needs steps of positive length in increasing, non-overlapping order")
    centres = (starts + ends) / 2
    low, high = centres - seconds / 2, centres + seconds / 2
    first = np.searchsorted(ends, low + _EPS, side="right")  # the first step ending after the window starts
    stop = np.searchsorted(starts, high - _EPS, side="left")  # steps starting before the window ends: [first, stop)
    width = int((stop - first).max())
    chunk = max(1, _CHUNK_ELEMENTS // ((width + 1) * scores.shape[1]))
    filtered = np.empty_like(scores)
    for begin in range(0, scores.shape[0], chunk):
        rows = slice(begin, begin + chunk)
        filtered[rows] = _weighted_medians(scores, starts, ends, low[rows], high[rows], first[rows], stop[rows], width)
    return filtered


def _weighted_medians(scores, starts, ends, low, high, first, stop, width) -> np.ndarray:
    """(rows, labels) weighted medians of the windows [low, high) of some rows: the steps [first, stop) under
    each, weighted by their overlap with it, plus the time outside every step at score 0."""
    index = first[:, None] + np.arange(width)  # (rows, width)
    inside = index < stop[:, None]
    index = np.minimum(index, len(starts) - 1)
    overlap = np.minimum(ends[index], high[:, None]) - np.maximum(starts[index], low[:, None])
    overlap = np.where(inside, np.clip(overlap, 0.0, None), 0.0)
    outside = np.clip((high - low) - overlap.sum(axis=1), 0.0, None)
    weights = np.concatenate([overlap, outside[:, None]], axis=1)  # (rows, width + 1)
    values = np.concatenate([scores[index], np.zeros((len(first), 1, scores.shape[1]), scores.dtype)], axis=1)
    order = np.argsort(values, axis=1, kind="stable")  # (rows, width + 1, labels), lowest score first
    ranked = np.take_along_axis(values, order, axis=1)
    ranked_weights = np.take_along_axis(np.broadcast_to(weights[:, :, None], values.shape), order, axis=1)
    cumulative = np.cumsum(ranked_weights, axis=1)
    half = ((high - low) / 2)[:, None, None]
    position = np.argmax(cumulative >= half - _EPS, axis=1)  # (rows, labels): the score whose weight holds the middle
    return np.take_along_axis(ranked, position[:, None, :], axis=1)[:, 0, :]

"""When things happen: per-step label scores of a DASS model over a recording, segments, a plot.

`frame_scores` runs the model once (`readout.read_out(..., fine_steps=True)`, the forward whose frame scores the
clip readouts use too) for the scores of `DassForAudioFrameClassification` on its 40 ms steps (the 0.32 s scores
interpolated, plus the finer stages' in models with `config.frame_skip_stages`) and turns them into scores by the
pipeline's rule (`readout.label_scores`: sigmoid for multi-label models, softmax otherwise), optionally smoothed over
neighbouring steps (a moving average in steps, then the median filter of sound event detection in seconds:
`postprocessing.median_filter`). `segments` merges consecutive steps at or above a threshold into (start, end,
label, score) rows; `write_csv` and `plot_timeline` write them out, and
`write_scores_tsv` writes the scores themselves in the score-file layout of sed_scores_eval (the SED metrics of
`evaluation.sed`). The command line front end is `dass timeline FILE --model DIR`.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

from ..model.readout import label_scores, read_out
from ..model.steps import step_times
from ..utils.checks import odd_window, probability
from ..utils.optional import install_hint, require
from .postprocessing import median_filter

PLOT_HINT = install_hint("plot")
# The columns of a segment wherever one is written: the CSV of `dass timeline`, `dass tag --segments`, the demo.
SEGMENT_FIELDS = ("start_s", "end_s", "label", "score")

__all__ = [
    "SEGMENT_FIELDS",
    "Segment",
    "Timeline",
    "frame_scores",
    "plot_timeline",
    "segments",
    "smooth",
    "step_boundaries",
    "strongest_labels",
    "timeline_of_frame_logits",
    "write_csv",
    "write_scores_tsv",
]


@dataclass
class Timeline:
    """Scores over time of one recording.

    Attributes:
        times: (steps, 2) float64 start and end of each step in seconds.
        scores: (steps, num_labels) float32 probabilities.
        labels: the label names, in score column order.
    """

    times: np.ndarray
    scores: np.ndarray
    labels: list[str]


@dataclass
class Segment:
    """Consecutive steps whose score for `label` is at or above the threshold; `score` is their highest."""

    start: float
    end: float
    label: str
    score: float

    def as_row(self, rounded: bool = False) -> dict:
        """The segment as a row with the columns `SEGMENT_FIELDS` (`dass tag --segments`, the demo page and its
        API, `write_csv`). `rounded`: seconds to 0.01 s and the score to 4 decimals, as the CSV writes them."""
        if rounded:
            return dict(zip(SEGMENT_FIELDS, (round(self.start, 2), round(self.end, 2), self.label, round(self.score, 4))))
        return dict(zip(SEGMENT_FIELDS, (self.start, self.end, self.label, self.score)))


def smooth(scores: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` (odd) steps of (steps, labels) scores; at the edges the average
    covers the steps that exist. `window=1` returns the scores unchanged."""
    window = odd_window(window, "smoothing")
    if window == 1:
        return scores
    half = window // 2
    padded = np.pad(scores.astype(np.float64), ((half + 1, half), (0, 0)))
    counts = np.pad(np.ones(scores.shape[0]), (half + 1, half))
    sums = np.cumsum(padded, axis=0)
    totals = np.cumsum(counts)
    window_sums = sums[window:] - sums[:-window]
    window_counts = totals[window:] - totals[:-window]
    return (window_sums / window_counts[:, None]).astype(scores.dtype)


def frame_scores(
    model,
    input_values: torch.Tensor,
    smoothing: int = 1,
    frame_shift: float = 0.01,
    show_progress: bool | None = None,
    median_filter_s: float = 0.0,
) -> Timeline:
    """Per-step probabilities of a `DassForAudioClassification` over one recording's features.

    Args:
        model: a `DassForAudioClassification` (multi- or single-label).
        input_values: (frames, num_mel_bins) or (1, frames, num_mel_bins) normalised features, unpadded.
        smoothing: odd moving-average window in steps (1: none).
        frame_shift: seconds between input frames (10 ms for `DassFeatureExtractor`).
        show_progress: progress bar over the layers on the lean path; None: when stderr is a terminal.
        median_filter_s: median filter length in seconds, after the moving average (0: none).
    """
    check_timeline_model(model)
    if input_values.ndim == 2:
        input_values = input_values.unsqueeze(0)
    if input_values.ndim != 3 or input_values.shape[0] != 1:
        raise ValueError(f"frame_scores takes one recording, (frames, mel bins); got shape {tuple(input_values.shape)}")
    show = sys.stderr.isatty() if show_progress is None else show_progress
    logits = read_out(model, input_values, poolings=(), show_progress=show, fine_steps=True).fine_frame_logits[0]
    return timeline_of_frame_logits(model, logits, input_values.shape[1], smoothing, frame_shift, median_filter_s)


def check_timeline_model(model) -> None:
    """Refuse a regression model: a timeline needs label probabilities."""
    if model.config.problem_type == "regression":
        raise ValueError("a timeline needs a classification model; this one has problem_type='regression'")


def timeline_of_frame_logits(
    model,
    fine_frame_logits: torch.Tensor,
    num_frames: int,
    smoothing: int = 1,
    frame_shift: float = 0.01,
    median_filter_s: float = 0.0,
) -> Timeline:
    """The `Timeline` of one recording from its frame model scores.

    Args:
        model: the `DassForAudioClassification` that computed them (its labels, problem type and step).
        fine_frame_logits: (steps, num_labels) logits of `DassForAudioFrameClassification` on the recording's
            features (`read_out(..., fine_steps=True)`), one step per `config.fine_step_frames` input frames
            (40 ms); when the features were padded, `num_frames` is the frames of audio, and the steps past it
            are dropped.
        smoothing: odd moving-average window in steps (1: none).
        frame_shift: seconds between input frames.
        median_filter_s: median filter length in seconds (`postprocessing.median_filter`), applied after the moving
            average (0: none).
    """
    check_timeline_model(model)
    config = model.config
    times = step_times(num_frames, config.fine_step_frames, frame_shift).numpy()
    if fine_frame_logits.ndim != 2 or fine_frame_logits.shape[0] < len(times):
        raise ValueError(
            f"frame model logits of shape {tuple(fine_frame_logits.shape)} for {num_frames} input frames: expected "
            f"(steps >= {len(times)}, num_labels), the steps of {config.fine_step_frames} frames"
        )
    logits = fine_frame_logits.detach()[: len(times)].float().cpu()
    probabilities = label_scores(logits, model.config.problem_type)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scores = median_filter(smooth(probabilities.numpy(), smoothing), times, median_filter_s)
    return Timeline(times=times, scores=scores, labels=labels)


def segments(timeline: Timeline, threshold: float = 0.5) -> list[Segment]:
    """Runs of consecutive steps with score >= `threshold`, one `Segment` per (label, run), sorted by start."""
    threshold = probability(threshold, "threshold")
    found = []
    above = timeline.scores >= threshold
    for column in np.flatnonzero(above.any(axis=0)):
        flags = np.concatenate([[False], above[:, column], [False]])
        edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
        for first, stop in zip(edges[::2], edges[1::2]):  # steps [first, stop)
            found.append(
                Segment(
                    start=float(timeline.times[first, 0]),
                    end=float(timeline.times[stop - 1, 1]),
                    label=timeline.labels[column],
                    score=float(timeline.scores[first:stop, column].max()),
                )
            )
    found.sort(key=lambda s: (s.start, -s.score, s.label))
    return found


def write_csv(found: list[Segment], path: str | os.PathLike) -> None:
    """CSV with header start_s,end_s,label,score (seconds to 0.01 s, scores to 4 decimals)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SEGMENT_FIELDS)
        for segment in found:
            writer.writerow([f"{segment.start:.2f}", f"{segment.end:.2f}", segment.label, f"{segment.score:.4f}"])


def write_scores_tsv(timeline: Timeline, path: str | os.PathLike) -> None:
    """The timeline's scores as a sed_scores_eval score file: tab-separated, header `onset offset LABEL...`, one row
    per step (its start and end in seconds, then its score for each label, in `timeline.labels` order).

    sed_scores_eval reads it with `io.read_sed_scores(path)` (and a folder of them, one `{recording}.tsv` each, as
    the scores of a whole evaluation set). Times are written to the microsecond and scores to 6 significant digits;
    a step's end and the next step's start are the same number, as the format requires.

    Raises:
        ValueError: a label holding a tab or a line break (it would break the header), or steps that are not
            back to back.
    """
    bad = [label for label in timeline.labels if any(c in label for c in "\t\r\n")]
    if bad:
        raise ValueError(f"labels {bad} hold a tab or a line break: a score file cannot name them; rename them")
    boundaries = step_boundaries(timeline.times)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write("\t".join(["onset", "offset", *timeline.labels]) + "\n")
        for start, end, row in zip(boundaries[:-1], boundaries[1:], np.asarray(timeline.scores)):
            handle.write(f"{start:.6f}\t{end:.6f}\t" + "\t".join(f"{value:.6g}" for value in row) + "\n")


def step_boundaries(times: np.ndarray) -> np.ndarray:
    """(steps + 1,) float64 start of every step and end of the last, from (steps, 2) `Timeline.times` whose steps
    lie back to back (the layout of score files and of sed_scores_eval's score DataFrames).

    Raises:
        ValueError: no steps, or a step that does not start where the previous one ends.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 2 or times.shape[0] == 0 or times.shape[1] != 2:
        raise ValueError(f"times must be (steps, 2) with at least one step, got shape {times.shape}")
    if not np.array_equal(times[1:, 0], times[:-1, 1]):
        raise ValueError("scores per step need steps back to back (each starting where the previous ends)")
    return np.concatenate([times[:, 0], times[-1:, 1]])


def strongest_labels(timeline: Timeline, count: int) -> list[int]:
    """Columns of the `count` labels with the highest peak score, strongest first."""
    peaks = timeline.scores.max(axis=0)
    return [int(i) for i in np.argsort(-peaks, kind="stable")[:count]]


def plot_timeline(timeline: Timeline, path: str | os.PathLike, top_labels: int = 10, title: str | None = None) -> None:
    """PNG heat map of the `top_labels` strongest labels (rows) over time (seconds). Needs matplotlib."""
    matplotlib = require("matplotlib", "plot", "The timeline plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if isinstance(top_labels, bool) or not isinstance(top_labels, int) or top_labels < 1:
        raise ValueError(f"top_labels must be a positive integer, got {top_labels!r}")
    rows = strongest_labels(timeline, top_labels)
    start, end = float(timeline.times[0, 0]), float(timeline.times[-1, 1])
    figure, axes = plt.subplots(figsize=(12, 1.0 + 0.35 * len(rows)))
    image = axes.imshow(
        timeline.scores[:, rows].T,
        aspect="auto",
        interpolation="nearest",
        extent=(start, end, len(rows) - 0.5, -0.5),
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
    )
    axes.set_yticks(range(len(rows)), [timeline.labels[i] for i in rows])
    axes.set_xlabel("time (s)")
    axes.set_title(title or "strongest labels over time")
    figure.colorbar(image, ax=axes, label="score", pad=0.01)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

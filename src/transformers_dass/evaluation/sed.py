"""Sound event detection metrics, computed by the field's library (sed_scores_eval): PSDS1, PSDS2, collar-based F1.

The settings are DCASE task 4's: PSDS1 (dtc = gtc = 0.7, alpha_ct = 0, alpha_st = 1, eFPR up to 100 per hour),
PSDS2 (dtc = gtc = 0.1, cttc = 0.3, alpha_ct = 0.5, alpha_st = 1, up to 100 per hour) and collar-based F1 at
threshold 0.5 (onset collar 200 ms, offset collar the larger of 200 ms and 20 % of the event's length).

Inputs, as sed_scores_eval takes them:

- `scores`: `{recording: scores}` with each value a score DataFrame (`onset`, `offset`, one column per class, one
  row per step: sed_scores_eval's layout) or a `Timeline`; or the folder of `{recording}.tsv` score files that
  `dass timeline --scores` / `inference.timeline.write_scores_tsv` write.
- `ground_truth`: `{recording: [(onset_s, offset_s, label), ...]}` for every scored recording (an empty list for
  one without events); events of one label in one recording must not overlap or touch (`merge_events` joins them).
- `durations`: `{recording: seconds}`.

The classes evaluated are those of the ground truth unless `classes` names them; score columns of other labels are
left out (an AudioSet model scored on a 10-class set is judged on those 10). sed_scores_eval is an optional
dependency: `pip install "transformers-dass[sed]"`.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from ..inference.timeline import Timeline, step_boundaries
from ..utils.optional import install_hint, require

__all__ = [
    "COLLAR",
    "PSDS1",
    "PSDS2",
    "CollarF1",
    "CollarSetting",
    "PsdsResult",
    "PsdsSetting",
    "collar_f1",
    "ground_truth_classes",
    "load_sed_scores_eval",
    "merge_events",
    "psds",
    "read_strong_labels",
    "reference_scores",
    "score_frame",
    "sed_metrics",
    "step_times",
]

Events = list[tuple[float, float, str]]


@dataclass(frozen=True)
class PsdsSetting:
    """One Polyphonic Sound Detection Score definition (Bilen et al., ICASSP 2020).

    Attributes:
        dtc: detection tolerance: the share of a detection that must lie in events of its label (else it is a
            false positive).
        gtc: ground truth intersection: the share of an event that detections of its label must cover to find it.
        cttc: cross-trigger tolerance (share of a false detection lying in an event of another label), or None
            when cross-triggers are not counted (`alpha_ct` 0).
        alpha_ct: weight of the cross-trigger rate in the effective false positive rate.
        alpha_st: weight of the spread of the per-class true positive rates subtracted from their mean.
        max_efpr: the effective false positives per hour up to which the ROC's area is taken.
    """

    dtc: float
    gtc: float
    cttc: float | None
    alpha_ct: float
    alpha_st: float
    max_efpr: float = 100.0


PSDS1 = PsdsSetting(dtc=0.7, gtc=0.7, cttc=None, alpha_ct=0.0, alpha_st=1.0)
PSDS2 = PsdsSetting(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1.0)


@dataclass(frozen=True)
class CollarSetting:
    """Collar-based (event-based) F1 (Mesaros et al., 2016) at one threshold: a detection matches an event of its
    label when its onset is within `onset` seconds of the event's and its offset within max(`offset`,
    `offset_rate` x the event's length)."""

    threshold: float = 0.5
    onset: float = 0.2
    offset: float = 0.2
    offset_rate: float = 0.2


COLLAR = CollarSetting()


@dataclass
class PsdsResult:
    """`value`: the PSDS in [0, 1]; `per_class`: each class's own PSDS (its ROC alone, no `alpha_st` spread)."""

    value: float
    per_class: dict[str, float]


@dataclass
class CollarF1:
    """Collar-based scores at one threshold: macro averages over classes (DCASE's headline), micro averages
    (all events pooled), and each class's F1."""

    f1: float
    precision: float
    recall: float
    f1_micro: float
    precision_micro: float
    recall_micro: float
    per_class: dict[str, float]


def psds(scores, ground_truth: dict[str, Events], durations: dict[str, float], setting: PsdsSetting = PSDS1,
         classes: list[str] | None = None) -> PsdsResult:  # fmt: skip
    """The PSDS of scores against strong labels (sed_scores_eval's `intersection_based.psds`), PSDS1 by default.

    Args:
        scores, ground_truth, durations: as in the module docstring.
        setting: `PSDS1`, `PSDS2` or another `PsdsSetting`.
        classes: the classes evaluated, each with at least one event; None: those of the ground truth.
    """
    library = load_sed_scores_eval()
    frames, ground_truth, classes = _prepare(scores, ground_truth, classes)
    durations = _durations(durations, frames)
    value, per_class, *_ = library.intersection_based.psds(
        frames, ground_truth, durations, dtc_threshold=setting.dtc, gtc_threshold=setting.gtc,
        cttc_threshold=setting.cttc, alpha_ct=setting.alpha_ct, alpha_st=setting.alpha_st, max_efpr=setting.max_efpr,
    )  # fmt: skip
    return PsdsResult(value=float(value), per_class={name: float(per_class[name]) for name in classes})


def collar_f1(scores, ground_truth: dict[str, Events], setting: CollarSetting = COLLAR,
              classes: list[str] | None = None) -> CollarF1:  # fmt: skip
    """Collar-based F1, precision and recall at `setting.threshold` (sed_scores_eval's `collar_based.fscore`)."""
    library = load_sed_scores_eval()
    frames, ground_truth, classes = _prepare(scores, ground_truth, classes)
    f, p, r, _ = library.collar_based.fscore(
        frames, ground_truth, setting.threshold, onset_collar=setting.onset, offset_collar=setting.offset,
        offset_collar_rate=setting.offset_rate,
    )  # fmt: skip
    return CollarF1(
        f1=float(f["macro_average"]), precision=float(p["macro_average"]), recall=float(r["macro_average"]),
        f1_micro=float(f["micro_average"]), precision_micro=float(p["micro_average"]),
        recall_micro=float(r["micro_average"]), per_class={name: float(f[name]) for name in classes},
    )  # fmt: skip


def sed_metrics(scores, ground_truth: dict[str, Events], durations: dict[str, float],
                classes: list[str] | None = None) -> dict[str, float]:  # fmt: skip
    """PSDS1, PSDS2 and collar-based F1 (macro, with its precision and recall, and micro) in one dict, the
    numbers `scripts/evaluate_sed.py` reports: keys `psds1`, `psds2`, `collar_f1`, `collar_precision`,
    `collar_recall`, `collar_f1_micro`, `classes` (how many were evaluated)."""
    frames, ground_truth, classes = _prepare(scores, ground_truth, classes)  # read score files once
    collar = collar_f1(frames, ground_truth, classes=classes)
    return {
        "psds1": psds(frames, ground_truth, durations, PSDS1, classes).value,
        "psds2": psds(frames, ground_truth, durations, PSDS2, classes).value,
        "collar_f1": collar.f1,
        "collar_precision": collar.precision,
        "collar_recall": collar.recall,
        "collar_f1_micro": collar.f1_micro,
        "classes": len(classes),
    }


def score_frame(timeline: Timeline, classes: list[str] | None = None):
    """A `Timeline` as sed_scores_eval's score DataFrame: columns `onset`, `offset`, then one per class (`classes`,
    default all of `timeline.labels`), one row per step; (steps, 2 + classes)."""
    scores_module = importlib.import_module(f"{load_sed_scores_eval().__name__}.base_modules.scores")
    classes = list(timeline.labels) if classes is None else list(classes)
    missing = [name for name in classes if name not in timeline.labels]
    if missing:
        raise ValueError(f"classes {missing} are not labels of the timeline (it has {timeline.labels[:8]}...)")
    columns = [timeline.labels.index(name) for name in classes]
    values = np.asarray(timeline.scores, dtype=np.float64)[:, columns]
    return scores_module.create_score_dataframe(values, step_boundaries(timeline.times), classes)


def ground_truth_classes(ground_truth: dict[str, Events], labels: list[str]) -> list[str]:
    """The labels (in `labels` order) that have at least one event in the ground truth: the classes evaluated
    by default."""
    present = {label for events in ground_truth.values() for _, _, label in events}
    return [name for name in labels if name in present]


def reference_scores(events: Events, times: np.ndarray, labels: list[str], min_share: float = 0.5) -> np.ndarray:
    """Perfect scores on a grid: 1 at a step where an event of the label covers at least `min_share` of the step.

    The ceiling a model with that step can reach (with `step_times`, the scores of the ground truth laid on a
    0.32 s or 40 ms grid) and a check of the metrics: on 40 ms steps they score PSDS1 1.

    Args:
        events: one recording's `(onset_s, offset_s, label)` events.
        times: (steps, 2) start and end of each step in seconds.
        labels: the score columns; every event's label must be one of them.

    Returns:
        (steps, len(labels)) float64 of 0 and 1.
    """
    times = np.asarray(times, dtype=np.float64)
    scores = np.zeros((len(times), len(labels)))
    for onset, offset, label in events:
        if label not in labels:
            raise ValueError(f"event label {label!r} is not one of the labels {labels[:8]}...")
        overlap = np.minimum(times[:, 1], offset) - np.maximum(times[:, 0], onset)
        covered = overlap >= min_share * (times[:, 1] - times[:, 0]) - 1e-9  # 1e-9 s: float rounding of the times
        scores[covered, labels.index(label)] = 1.0
    return scores


def step_times(duration: float, step: float) -> np.ndarray:
    """(steps, 2) back-to-back steps of `step` seconds from 0 covering `duration` (the last one shorter)."""
    if not duration > 0 or not step > 0:
        raise ValueError(f"duration and step must be > 0, got {duration!r} and {step!r}")
    count = int(np.ceil(duration / step - 1e-9))
    boundaries = np.minimum(np.arange(count + 1) * step, duration)
    boundaries[-1] = duration
    return np.stack([boundaries[:-1], boundaries[1:]], axis=1)


def merge_events(events: Events) -> Events:
    """Events with those of one label that overlap or touch joined into one (sed_scores_eval refuses them apart;
    AudioSet-strong's annotations hold some), sorted by onset."""
    by_label = defaultdict(list)
    for onset, offset, label in events:
        by_label[label].append((float(onset), float(offset)))
    merged = []
    for label, spans in by_label.items():
        spans.sort()
        start, end = spans[0]
        for onset, offset in spans[1:]:
            if onset <= end:
                end = max(end, offset)
            else:
                merged.append((start, end, label))
                start, end = onset, offset
        merged.append((start, end, label))
    return sorted(merged)


def read_strong_labels(path: str | os.PathLike, names: dict[str, str] | None = None) -> dict[str, Events]:
    """Strong labels from an AudioSet-strong style TSV (`segment_id`, `start_time_seconds`, `end_time_seconds`,
    `label`), as `{segment_id: events}` with overlapping events of a label merged (`merge_events`).

    Args:
        names: maps the file's labels (AudioSet mids) to the score columns' names (a model's labels); a label it
            does not hold is kept as it is.
    """
    columns = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
    events = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
            raise ValueError(f"{path}: a strong-label TSV needs the columns {columns}, found {reader.fieldnames}")
        for row in reader:
            label = (names or {}).get(row["label"], row["label"])
            events[row["segment_id"]].append((float(row["start_time_seconds"]), float(row["end_time_seconds"]), label))
    return {segment: merge_events(found) for segment, found in events.items()}


def load_sed_scores_eval():
    """sed_scores_eval, or an ImportError naming the fix (the extra, or the pin of pandas / setuptools it needs)."""
    pandas = require("pandas", "sed", "The SED metrics")
    if importlib.util.find_spec("sed_scores_eval") is not None:
        version = metadata.version("sed_scores_eval")
        if _release(version) <= (0, 0, 4) and _release(pandas.__version__) >= (3,):
            raise ImportError(
                f"sed_scores_eval {version} fails under pandas {pandas.__version__} (its Cython code is handed "
                f"read-only column buffers): pip install \"pandas>=1.5,<3\" (as {install_hint('sed')} pins it)"
            )
        if importlib.util.find_spec("pkg_resources") is None:
            raise ImportError(
                "sed_scores_eval imports dcase_util, which needs pkg_resources, removed in setuptools 81: "
                f"pip install \"setuptools>=70.1,<81\" (as {install_hint('sed')} pins it)"
            )
    with warnings.catch_warnings():  # dcase_util's own import of pkg_resources warns; the pin above handles it
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        return require("sed_scores_eval", "sed", "The SED metrics (PSDS, collar-based F1)")


# ---------------------------------------------------------------------------------------------------------------


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string, as far as it has plain numbers."""
    numbers = []
    for part in version.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def _prepare(scores, ground_truth: dict[str, Events], classes: list[str] | None):
    """(score DataFrames of the evaluated classes, checked ground truth of those classes, classes)."""
    library = load_sed_scores_eval()
    if isinstance(scores, (str, os.PathLike)):
        folder = Path(scores)
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder of score files ({{recording}}.tsv)")
        scores = library.io.read_sed_scores(folder)
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty {recording: score DataFrame or Timeline} dict, or a folder")
    _same_recordings(scores, ground_truth, "ground truth")
    frames = {name: score_frame(value) if isinstance(value, Timeline) else value for name, value in scores.items()}
    columns = list(next(iter(frames.values())).columns[2:])
    labels = {label for events in ground_truth.values() for _, _, label in events}
    unknown = sorted((labels if classes is None else labels & set(classes)) - set(columns))
    if unknown:
        raise ValueError(
            f"ground-truth labels {unknown[:8]} are not score columns (the scores have {columns[:8]}...): give the "
            "ground truth the model's label names (AudioSet mids map to names through config.label_mids)"
        )
    classes = ground_truth_classes(ground_truth, columns) if classes is None else list(classes)
    if not classes:
        raise ValueError("no class to evaluate: the ground truth holds no event")
    counts = _event_counts(ground_truth)
    empty = [name for name in classes if not counts[name]]
    if empty:
        raise ValueError(f"classes {empty} have no event in the ground truth (recall is undefined): leave them out")
    for name, frame in frames.items():
        missing = [label for label in classes if label not in frame.columns]
        if missing:
            raise ValueError(f"the scores of {name!r} have no column for {missing[:8]}")
        frames[name] = frame[["onset", "offset", *classes]]
    kept = set(classes)
    checked = {name: _checked_events(name, events, kept) for name, events in ground_truth.items()}
    return frames, checked, classes


def _checked_events(recording: str, events: Events, classes: set[str]) -> Events:
    """The recording's events of the evaluated classes, after checking that no two of one label overlap."""
    kept = [(float(onset), float(offset), label) for onset, offset, label in events if label in classes]
    for onset, offset, label in kept:
        if not 0 <= onset < offset:
            raise ValueError(f"{recording}: event {(onset, offset, label)} needs 0 <= onset < offset")
    ordered = sorted(kept, key=_by_label)
    for (_, end, label), (start, _, other) in zip(ordered, ordered[1:]):
        if label == other and start <= end:
            raise ValueError(f"{recording}: two {label!r} events overlap or touch; join them with merge_events")
    return kept


def _by_label(event):
    return event[2], event[0], event[1]


def _event_counts(ground_truth: dict[str, Events]) -> dict[str, int]:
    counts = defaultdict(int)
    for events in ground_truth.values():
        for _, _, label in events:
            counts[label] += 1
    return counts


def _durations(durations: dict[str, float], frames: dict) -> dict[str, float]:
    _same_recordings(frames, {name: None for name in durations}, "durations", allow_extra=True)
    return {name: float(durations[name]) for name in frames}


def _same_recordings(scores: dict, other: dict, what: str, allow_extra: bool = False) -> None:
    missing = sorted(set(scores) - set(other))
    extra = [] if allow_extra else sorted(set(other) - set(scores))
    if missing or extra:
        raise ValueError(
            f"the {what} must cover the scored recordings: missing {missing[:5]}{'...' if len(missing) > 5 else ''}"
            f", not scored {extra[:5]}{'...' if len(extra) > 5 else ''} (a recording without events takes [])"
        )

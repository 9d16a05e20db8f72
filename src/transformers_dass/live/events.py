"""Sound events from a stream of per-step scores: each sound reported once, when it starts and when it ends.

`EventTracker.update(times, scores)` takes the next steps' label probabilities (decided once each, by the live
detector's newest window) and returns the `LiveEvent`s they cause, with hysteresis per label:

- a label *starts* when a step's score reaches `start_threshold`; its start time goes back over the steps just
  before it, as the deciding window scores them (`earlier_*` of `update`), while they are at or above
  `end_threshold` (a window's newest steps see only the beginning of a sound: the next window, seeing more,
  often scores its first steps high only then, and the onset is in its earlier steps);
- it stays on while its score is at or above `end_threshold` (lower than the start threshold, so that a score
  wavering around one value does not start and end the same sound again and again);
- it *ends* at the end of its last step at or above `end_threshold`, once `min_gap_s` seconds of steps below it
  have followed (a shorter dip is part of the same sound).

Times are stream times in seconds: the steps' own times, never the window boundaries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..utils.checks import non_negative_float, probability

HISTORY_STEPS = 256  # decided steps kept for onsets (10.24 s of 40 ms steps: a window)

__all__ = ["EventTracker", "LiveEvent", "format_clock"]


@dataclass(frozen=True)
class LiveEvent:
    """One line of `dass listen`: a sound starting or ending.

    Attributes:
        time_s: seconds from the stream's start: the first step's start ("start") or the last step's end ("end").
        kind: "start" or "end".
        label: the label's name.
        score: "start": the score of the step that started it; "end": the highest score over the whole sound.
    """

    time_s: float
    kind: str
    label: str
    score: float

    def as_json(self) -> str:
        """`{"time_s", "kind", "label", "score"}` on one line (`dass listen --jsonl`)."""
        return json.dumps({"time_s": round(self.time_s, 3), "kind": self.kind, "label": self.label,
                           "score": round(self.score, 4)})  # fmt: skip

    def as_line(self) -> str:
        """`00:01:12.60  start  siren  0.93`: what `dass listen` prints by default."""
        return f"{format_clock(self.time_s)}  {self.kind:<5}  {self.label}  {self.score:.2f}"


def format_clock(seconds: float) -> str:
    """`HH:MM:SS.ss` of a non-negative number of seconds."""
    hundredths = round(seconds * 100)
    hours, rest = divmod(hundredths, 360000)
    minutes, rest = divmod(rest, 6000)
    return f"{hours:02d}:{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"


@dataclass
class _OpenSound:
    start_s: float
    last_above_end_s: float  # end of the last step at or above the end threshold
    peak: float


class EventTracker:
    """Start/end events of each label over consecutive steps of scores.

    Args:
        labels: the label names, in score column order.
        start_threshold: a score at or above it starts a sound (default 0.5, `dass timeline`'s threshold).
        end_threshold: a sound goes on while its score is at or above it; at most `start_threshold`.
        min_gap_s: seconds below `end_threshold` after which a sound has ended (0: at the first step below).
    """

    def __init__(self, labels: list[str], start_threshold: float = 0.5, end_threshold: float = 0.3,
                 min_gap_s: float = 0.2):  # fmt: skip
        self.labels = list(labels)
        self.start_threshold = probability(start_threshold, "start threshold")
        self.end_threshold = probability(end_threshold, "end threshold")
        if self.end_threshold > self.start_threshold:
            raise ValueError(
                f"the end threshold ({end_threshold}) must not be above the start threshold ({start_threshold}): "
                "a sound would end before it could start; lower the end threshold"
            )
        self.min_gap_s = non_negative_float(min_gap_s, "minimum gap")
        self._open: dict[int, _OpenSound] = {}
        self._last_end: dict[int, float] = {}  # per label column, the end of its last sound
        # The last decided steps, for onsets when an update brings no rescored earlier steps.
        self._history_times = np.zeros((0, 2))
        self._history_scores = np.zeros((0, len(self.labels)))

    @property
    def open_labels(self) -> list[str]:
        """The labels sounding now, in column order."""
        return [self.labels[column] for column in sorted(self._open)]

    def update(self, times: np.ndarray, scores: np.ndarray, earlier_times: np.ndarray | None = None,
               earlier_scores: np.ndarray | None = None) -> list[LiveEvent]:  # fmt: skip
        """The events caused by the next steps, in time order.

        Args:
            times: (steps, 2) start and end in seconds of each new step, after every step seen before.
            scores: (steps, num_labels) probabilities of those steps.
            earlier_times, earlier_scores: (earlier, 2) and (earlier, num_labels): the steps just before `times`
                (already decided), as the same window scores them now; a sound starting in the new steps may
                start back in them. None: the scores they were decided with.
        """
        times, scores = self._checked(times, scores)
        if earlier_times is None:
            earlier_times, earlier_scores = self._history_times, self._history_scores
        earlier_times, earlier_scores = self._checked(earlier_times, earlier_scores)
        all_times, all_scores = np.concatenate([earlier_times, times]), np.concatenate([earlier_scores, scores])
        found: list[LiveEvent] = []
        for index, ((start, end), row) in enumerate(zip(times, scores), start=len(earlier_times)):
            for column in sorted(set(np.flatnonzero(row >= self.end_threshold).tolist()) | set(self._open)):
                starting = column not in self._open and row[column] >= self.start_threshold
                onset = self._onset(all_times, all_scores[:, column], index, column) if starting else float(start)
                self._step(column, onset, float(end), float(row[column]), found)
        self._history_times = np.concatenate([self._history_times, times])[-HISTORY_STEPS:]
        self._history_scores = np.concatenate([self._history_scores, scores])[-HISTORY_STEPS:]
        found.sort(key=lambda event: (event.time_s, event.kind != "end", event.label))
        return found

    def _checked(self, times, scores) -> tuple[np.ndarray, np.ndarray]:
        times = np.asarray(times, dtype=np.float64).reshape(-1, 2)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (times.shape[0], len(self.labels)):
            raise ValueError(f"scores of shape {scores.shape} for {times.shape[0]} steps and {len(self.labels)} labels")
        return times, scores

    def _onset(self, times: np.ndarray, column_scores: np.ndarray, index: int, column: int) -> float:
        """Start of the earliest step of the run at or above the end threshold that ends at step `index`, not
        before the label's last sound ended."""
        first = index
        last_end = self._last_end.get(column, -np.inf)
        while first > 0 and column_scores[first - 1] >= self.end_threshold and times[first - 1, 0] >= last_end - 1e-9:
            first -= 1
        return float(times[first, 0])

    def _step(self, column: int, start: float, end: float, score: float, found: list[LiveEvent]) -> None:
        sound = self._open.get(column)
        if sound is None:
            if score >= self.start_threshold:
                self._open[column] = _OpenSound(start, end, score)
                found.append(LiveEvent(start, "start", self.labels[column], score))
            return
        if score >= self.end_threshold:
            sound.last_above_end_s = end
            sound.peak = max(sound.peak, score)
        elif end - sound.last_above_end_s >= self.min_gap_s - 1e-9:
            del self._open[column]
            self._last_end[column] = sound.last_above_end_s
            found.append(self._end_of(column, sound))

    def _end_of(self, column: int, sound: _OpenSound) -> LiveEvent:
        """The "end" event of a sound: at the end of its last step above the end threshold, with its peak score."""
        return LiveEvent(sound.last_above_end_s, "end", self.labels[column], sound.peak)

    def close(self) -> list[LiveEvent]:
        """End every open sound (the stream has ended): at its last step above the end threshold."""
        found = [self._end_of(column, sound) for column, sound in sorted(self._open.items())]
        self._open.clear()
        found.sort(key=lambda event: (event.time_s, event.label))
        return found

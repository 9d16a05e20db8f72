"""Sound events of a stream as it arrives: overlapping windows through the model, each step decided once.

`LiveDetector.push(samples)` takes the next mono samples at the model's rate and returns the `LiveEvent`s they
cause. Every `hop` of audio, the last `window` of it (at the stream's start: all there is so far) goes through the
path of `dass timeline` (`inference.classify.analyse_features` of `waveform_features`: one forward, the frame
model's scores every 40 ms). The steps not yet decided are decided by that window, the newest one that holds them,
and go to the `EventTracker`, so a sound that spans many windows is reported once, with the times of its steps.

Falling behind: `push(..., newest_only=True)` runs only the newest of the windows that are due and decides all the
waiting steps from it (counted in `skipped_windows`); steps older than a whole window are no longer in any window
and are counted in `lost_s`. The audio kept is one window and the samples of the hop in progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..audio.fbank import frame_geometry
from ..inference.classify import analyse_features
from ..inference.features import waveform_features
from ..inference.timeline import check_timeline_model
from ..utils.checks import finite_float
from .events import EventTracker, LiveEvent

DEFAULT_HOP_S = 1.0

__all__ = ["DEFAULT_HOP_S", "DetectorStats", "LiveDetector"]


@dataclass
class DetectorStats:
    """What a detector has done so far.

    Attributes:
        audio_s: seconds of audio pushed.
        windows: windows run through the model.
        skipped_windows: due windows not run because the detector was behind (`newest_only`).
        model_s: seconds spent in the model (features and forward), the time the real-time factor divides.
        lost_s: seconds of steps that no window decided (behind by more than a window).
    """

    audio_s: float = 0.0
    windows: int = 0
    skipped_windows: int = 0
    model_s: float = 0.0
    lost_s: float = 0.0

    @property
    def real_time_factor(self) -> float:
        """Model seconds per second of audio analysed (below 1: keeps up)."""
        return self.model_s / self.audio_s if self.audio_s else 0.0


class LiveDetector:
    """Start/end events of a stream, from overlapping windows.

    Args:
        model: a `DassForAudioClassification` (its frame model scores the steps).
        extractor: its `DassFeatureExtractor` (the rate the samples must have).
        window_s: seconds of audio per window; default the training length (`config.training_length_frames`,
            10.24 s). Rounded to whole steps.
        hop_s: seconds of new audio between windows (default 1); rounded to whole steps (40 ms), at most the window.
        start_threshold, end_threshold, min_gap_s: the `EventTracker`'s hysteresis.
    """

    def __init__(self, model, extractor, window_s: float | None = None, hop_s: float = DEFAULT_HOP_S,
                 start_threshold: float = 0.5, end_threshold: float = 0.3, min_gap_s: float = 0.2,
                 lookahead_s: float = 0.0):  # fmt: skip
        check_timeline_model(model)
        self.model, self.extractor = model, extractor
        config = model.config
        self.rate = int(extractor.sampling_rate)
        frame_shift_samples = frame_geometry(self.rate)[1]
        self.step_samples = config.fine_step_frames * frame_shift_samples
        self.step_s = self.step_samples / self.rate
        if window_s is None:
            window_s = config.training_length_frames * frame_shift_samples / self.rate
        self.window_steps = self._whole_steps(window_s, "window")
        self.hop_steps = self._whole_steps(hop_s, "hop")
        if self.hop_steps > self.window_steps:
            raise ValueError(
                f"the hop ({hop_s} s) is longer than the window ({window_s} s): the audio between windows would never "
                "be analysed; use a hop at most the window"
            )
        self.lookahead_steps = round(finite_float(lookahead_s, "lookahead") / self.step_s)
        if not 0 <= self.lookahead_steps <= self.window_steps - self.hop_steps:
            raise ValueError(
                f"the lookahead ({lookahead_s} s) must be between 0 and the window minus the hop "
                f"({self.window_s - self.hop_s:g} s)"
            )
        labels = [config.id2label[i] for i in range(config.num_labels)]
        self.tracker = EventTracker(labels, start_threshold, end_threshold, min_gap_s)
        self.stats = DetectorStats()
        self._audio = np.zeros(0, np.float32)
        self._audio_start = 0  # stream sample index of self._audio[0]
        self._received = 0  # samples pushed
        self._decided_steps = 0  # steps [0, _decided_steps) are decided
        self._last_window_end = 0  # stream sample where the last window due ended (run or skipped)
        self._finished = False
        self.last_window_ends: list[int] = []  # stream samples where the windows of the last push/finish ended

    @property
    def window_s(self) -> float:
        return self.window_steps * self.step_s

    @property
    def hop_s(self) -> float:
        return self.hop_steps * self.step_s

    @property
    def time_s(self) -> float:
        """Seconds of audio pushed so far."""
        return self._received / self.rate

    def _whole_steps(self, seconds, name: str) -> int:
        seconds = finite_float(seconds, name)
        steps = round(seconds / self.step_s)
        if steps < 1:
            raise ValueError(f"the {name} must be at least one step ({self.step_s:g} s), got {seconds} s")
        return steps

    def push(self, samples: np.ndarray, newest_only: bool = False) -> list[LiveEvent]:
        """The events caused by the next samples, (samples,) float32 mono at `self.rate`.

        `newest_only`: of the windows the samples complete, run only the newest (the caller is behind).
        """
        if self._finished:
            raise RuntimeError("this detector has finished its stream; make a new one")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.isfinite(samples).all():
            raise ValueError(
                f"NaN or infinite samples in the stream after {self.time_s:.2f} s: the source is broken or its sample "
                "format is wrong (raw PCM: check --format)"
            )
        self._audio = np.concatenate([self._audio, samples])
        self._received += samples.shape[0]
        self.stats.audio_s = self.time_s
        hop = self.hop_steps * self.step_samples
        newest_end = self._received - self._received % hop  # windows end at hop, 2 hop, ...
        ends = list(range(self._last_window_end + hop, newest_end + 1, hop))
        self._last_window_end = newest_end
        # With a lookahead, the stream's first windows end before any step they may decide: nothing to run yet.
        ends = [end for end in ends if self._decide_until(end) > self._decided_steps]
        if newest_only and len(ends) > 1:
            self.stats.skipped_windows += len(ends) - 1
            ends = ends[-1:]
        events = []
        self.last_window_ends = ends
        for end in ends:
            events += self._run_window(end, self._decide_until(end))
        self._forget_before(newest_end - self.window_steps * self.step_samples)
        return events

    def finish(self) -> list[LiveEvent]:
        """The stream has ended: decide its last steps (a last window ending at its end) and close every sound."""
        if self._finished:
            return []
        self._finished = True
        events = []
        self.last_window_ends = []
        total_steps = -(-self._received // self.step_samples)
        one_frame = frame_geometry(self.rate)[0]  # fewer samples give no fbank frame, hence no step
        if total_steps > self._decided_steps and self._received >= one_frame:
            events += self._run_window(self._received, total_steps)
            self.last_window_ends = [self._received]
        return events + self.tracker.close()

    def _decide_until(self, end: int) -> int:
        """The first step the window ending at stream sample `end` does not decide (`lookahead_steps` before it)."""
        return end // self.step_samples - self.lookahead_steps

    def _run_window(self, end: int, decide_until: int) -> list[LiveEvent]:
        """Run the window ending at sample `end` and decide the steps `[_decided_steps, decide_until)` from it."""
        start = max(0, end - self.window_steps * self.step_samples)
        start -= start % self.step_samples  # windows start on the step grid
        first_step = start // self.step_samples
        if first_step > self._decided_steps:  # behind by more than a window: those steps are gone
            self.stats.lost_s += (first_step - self._decided_steps) * self.step_s
            self._decided_steps = first_step
        began = time.perf_counter()
        waveform = self._audio[start - self._audio_start : end - self._audio_start]
        recording = waveform_features(waveform, self.extractor)
        timeline = analyse_features(self.model, recording, top_k=1, timeline=True).timeline
        self.stats.model_s += time.perf_counter() - began
        self.stats.windows += 1
        local = slice(self._decided_steps - first_step, min(decide_until - first_step, len(timeline.times)))
        times = timeline.times[local] + start / self.rate
        self._decided_steps = first_step + local.stop
        earlier = slice(0, local.start)
        return self.tracker.update(
            times, timeline.scores[local], timeline.times[earlier] + start / self.rate, timeline.scores[earlier]
        )

    def _forget_before(self, sample: int) -> None:
        """Drop the audio before stream sample `sample` (no window needs it any more)."""
        sample -= sample % self.step_samples
        if sample > self._audio_start:
            self._audio = self._audio[sample - self._audio_start :]
            self._audio_start = sample

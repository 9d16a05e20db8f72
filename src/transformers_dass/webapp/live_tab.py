"""What the Live tab of `dass demo` computes: the browser's microphone, chunk by chunk, through `dass listen`'s
detector.

Gradio streams the microphone as chunks of `(rate, samples)`: int16 samples, (samples,) mono or (samples, channels),
at the browser's rate (48 kHz in Chromium, often). Each browser session has a `LiveSession`: the chunks are
downmixed, scaled to [-1, 1), resampled block by block to the model's rate (`audio.resample.BlockResampler`) and
pushed into a `live.LiveDetector` (windows of the training length every second, each sound reported once, when it
starts and when it ends). `LiveTab.stream` and `LiveTab.stop` are the page's handlers; they return what the page
shows: the events (the newest `MAX_ROWS`), the labels sounding now and a status line. Nothing here needs gradio.

Memory per session is bounded: the detector keeps one window of audio, the resampler a few samples, the table its
last `MAX_ROWS` rows. When the model falls behind (chunks arrive faster than windows run), only the newest of the
windows due runs and the others are counted as skipped (`LiveDetector.push(newest_only=True)`).
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from ..audio.resample import BlockResampler, check_rate
from ..live import LiveDetector, LiveEvent
from ..live.events import format_clock

MAX_ROWS = 200  # events kept in a session's table; older rows are dropped (and counted in the status line)
EVENT_COLUMNS = ("time", "kind", "label", "score")
NOTHING_SOUNDING = "**Sounding now:** nothing"

__all__ = ["EVENT_COLUMNS", "MAX_ROWS", "NOTHING_SOUNDING", "LiveSession", "LiveTab", "chunk_samples"]


def chunk_samples(data) -> np.ndarray:
    """One chunk of gradio's streaming audio as (samples,) float32 mono in [-1, 1).

    Args:
        data: (samples,) or (samples, channels) int16 PCM (gradio's `type="numpy"`), or float samples in [-1, 1];
            channels are averaged.

    Raises:
        ValueError: more than two dimensions, a type that is not audio, or NaN/infinite samples.
    """
    array = np.asarray(data)
    if array.ndim > 2:
        raise ValueError(f"an audio chunk must be (samples,) or (samples, channels), got shape {array.shape}")
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        samples = (array.astype(np.float32) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    elif array.dtype.kind == "f":
        samples = array.astype(np.float32)
        if not np.isfinite(samples).all():
            raise ValueError("the microphone sent NaN or infinite samples: its audio is broken; record again")
    else:
        raise ValueError(f"an audio chunk must hold integer PCM or float samples, got {array.dtype}")
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] else np.zeros(0, np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


class LiveSession:
    """One browser's recording: its detector, its resampler from the browser's rate, and the events shown.

    Args:
        model, extractor: the loaded model (`Tagger.model`, `Tagger.extractor`); shared, only read.
        max_rows: events kept for the table (the newest).
        detector_options: `LiveDetector`'s options (window_s, hop_s, start_threshold, end_threshold, min_gap_s).
    """

    def __init__(self, model, extractor, max_rows: int = MAX_ROWS, **detector_options):
        self.detector = LiveDetector(model, extractor, **detector_options)
        self.rows: collections.deque[LiveEvent] = collections.deque(maxlen=max_rows)
        self.events_seen = 0
        self.rate: int | None = None  # the browser's rate, from the first chunk
        self._resampler: BlockResampler | None = None
        self.finished = False
        # The stop handler may run while the last chunk's handler is still pushing: one at a time per session.
        self.lock = threading.Lock()

    def push(self, rate: int, data) -> list[LiveEvent]:
        """The events caused by one chunk: `rate` in Hz, `data` as `chunk_samples` takes it. A chunk after `finish`
        (the recording stopped while it was on its way) is ignored."""
        samples = chunk_samples(data)
        rate = check_rate(rate, "the microphone's rate")
        with self.lock:
            if self.finished or samples.shape[0] == 0:
                return []
            resampled = self._resample(rate, samples)
            events = self.detector.push(resampled, newest_only=True) if resampled.shape[0] else []
            self._keep(events)
            return events

    def finish(self) -> list[LiveEvent]:
        """The recording stopped: decide its last steps and close every open sound; returns those events."""
        with self.lock:
            if self.finished:
                return []
            self.finished = True
            tail = self._resampler.finish() if self._resampler is not None else np.zeros(0, np.float32)
            self._resampler = None  # its buffers (soxr's state) go now, not when gradio drops the session
            events = self.detector.push(tail, newest_only=True) if tail.shape[0] else []
            events += self.detector.finish()
            self._keep(events)
            return events

    def _resample(self, rate: int, samples: np.ndarray) -> np.ndarray:
        """`samples` at the model's rate; a new rate mid-stream (another microphone) flushes the old resampler."""
        flushed = np.zeros(0, np.float32)
        if rate != self.rate:
            if self._resampler is not None:
                flushed = self._resampler.finish()
            self.rate = rate
            self._resampler = BlockResampler(rate, self.detector.rate)
        return np.concatenate([flushed, self._resampler.push(samples)])

    def _keep(self, events: list[LiveEvent]) -> None:
        self.rows.extend(events)
        self.events_seen += len(events)

    def table(self) -> list[list]:
        """The rows of the events table, oldest first: [HH:MM:SS.ss, kind, label, score], strings as `dass listen`
        prints them."""
        return [[format_clock(e.time_s), e.kind, e.label, f"{e.score:.2f}"] for e in self.rows]

    def sounding_now(self) -> str:
        """The labels sounding now, as Markdown."""
        labels = self.detector.tracker.open_labels
        if self.finished:
            return f"{NOTHING_SOUNDING} (the recording has stopped)"
        return f"**Sounding now:** {', '.join(labels)}" if labels else NOTHING_SOUNDING

    def status(self) -> str:
        """Seconds heard, windows run (and skipped), the real-time factor, and rows dropped from the table."""
        stats = self.detector.stats
        skipped = f" ({stats.skipped_windows} skipped: the model was behind)" if stats.skipped_windows else ""
        dropped = self.events_seen - len(self.rows)
        older = f" · the table shows the last {len(self.rows)} of {self.events_seen} events" if dropped else ""
        rate = f"{self.rate} Hz" if self.rate else "no audio yet"
        state = "stopped" if self.finished else "listening"
        return (
            f"{state}: {stats.audio_s:.1f} s heard ({rate}), {stats.windows} windows of {self.detector.window_s:g} s "
            f"every {self.detector.hop_s:g} s{skipped}, real-time factor {stats.real_time_factor:.3f}{older}"
        )

    def view(self) -> tuple[list[list], str, str]:
        """(events table rows, sounding now, status): what the page shows."""
        with self.lock:
            return self.table(), self.sounding_now(), self.status()


class LiveTab:
    """The Live tab's handlers over one loaded model; each browser session's `LiveSession` lives in its gr.State.

    Args:
        model, extractor: the loaded model and its feature extractor (`Tagger.model`, `Tagger.extractor`).
        max_rows, detector_options: each session's (`LiveSession`).
    """

    def __init__(self, model, extractor, max_rows: int = MAX_ROWS, **detector_options):
        self.model, self.extractor = model, extractor
        self.max_rows, self.detector_options = max_rows, detector_options
        detector = self.new_session().detector  # a bad option fails when the page is built, not at the first chunk
        self.window_s, self.hop_s = detector.window_s, detector.hop_s

    def new_session(self) -> LiveSession:
        return LiveSession(self.model, self.extractor, self.max_rows, **self.detector_options)

    @staticmethod
    def start() -> tuple[None, list[list], str, str]:
        """A recording starts: (session state, table, sounding now, status) reset; the first chunk makes the
        session."""
        return None, [], NOTHING_SOUNDING, "listening: waiting for the microphone's first chunk"

    def stream(self, chunk, session: LiveSession | None) -> tuple[LiveSession | None, list[list], str, str]:
        """One chunk `(rate, samples)` (or None) of the recording: (session, table, sounding now, status).

        Raises:
            ValueError: a chunk that is not audio (see `chunk_samples`), naming what is wrong.
        """
        if chunk is None:
            return (session, *session.view()) if session is not None else (None, *self.start()[1:])
        rate, data = chunk
        if session is None:
            session = self.new_session()
        session.push(rate, data)
        return (session, *session.view())

    def stop(self, session: LiveSession | None) -> tuple[LiveSession | None, list[list], str, str]:
        """The recording stopped: the session's closing events shown, every sound ended."""
        if session is None:
            return None, [], NOTHING_SOUNDING, "stopped before any audio arrived"
        session.finish()
        return (session, *session.view())

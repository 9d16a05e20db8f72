"""`dass listen`: read a source on one thread, run the detector on another, write each event as it is decided.

The reader thread puts blocks with their arrival time on a bounded queue. A live source (a microphone, a paced
file, a pipe that delivers at real time) is never made to wait: when the queue is full, its oldest block is
dropped and counted. A source that can wait (an unpaced file, a pipe faster than real time) waits instead.
The detector thread takes all the blocks that have arrived; when more than two hops of audio waited (the model
is slower than the stream), it runs only the newest window (`LiveDetector.push(newest_only=True)`), says so once,
and counts the windows skipped. Memory: the queue (`QUEUE_S` of audio) and the detector's window. Lines go out
as they are decided; a consumer that reads slowly makes the detector wait, and a live source then drops, never
piles up.

Latency is measured from a window's newest sample arriving to its lines being written; the real-time factor is
the model's time over the audio's.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .detector import LiveDetector
from .events import LiveEvent
from .sources import BLOCK_S, put_dropping_oldest

QUEUE_S = 30.0  # seconds of audio the reader may hold ahead of the detector
BEHIND_HOPS = 2  # audio waiting beyond this many hops: the detector is behind a live source
# A pipe that has delivered this much more audio than time has passed is not live (a file piped in).
AHEAD_OF_REAL_TIME_S = 2.0

__all__ = ["ListenReport", "listen_to", "summary"]


@dataclass
class ListenReport:
    """How a `listen_to` run went.

    Attributes:
        events: every event written, in order.
        window_latency_s: per window run, seconds from its newest sample's arrival to its lines being written.
        start_latency_s: per "start" event, seconds from its first step's audio arriving to its line.
        dropped_s: seconds of audio a live source dropped because the queue was full.
        interrupted: stopped by Ctrl-C (or the consumer of the lines going away).
        real_time: the source delivered at real time throughout (else latency says nothing: audio that arrives
            faster than it plays waits for the model by design).
    """

    events: list[LiveEvent] = field(default_factory=list)
    window_latency_s: list[float] = field(default_factory=list)
    start_latency_s: list[float] = field(default_factory=list)
    dropped_s: float = 0.0
    interrupted: bool = False
    real_time: bool = True


_END = object()


class _Reader(threading.Thread):
    """Iterates `blocks` into a bounded queue of (block, arrival time)."""

    def __init__(self, blocks: Iterator[np.ndarray], live: bool | None, rate: int, capacity_blocks: int):
        super().__init__(daemon=True, name="dass-listen-reader")
        self.blocks, self.live, self.rate = blocks, live, rate
        self.queue: queue.Queue = queue.Queue(maxsize=capacity_blocks)
        self.error: BaseException | None = None
        self.dropped_s = 0.0
        self.stopping = threading.Event()
        self.live_now = bool(live)  # what `is_live` said of the last block
        self.always_live = live is not False

    def is_live(self, received_s: float, began: float) -> bool:
        """A given `live`, else (a pipe) live unless it has delivered well ahead of real time."""
        if self.live is not None:
            return self.live
        return received_s - (time.monotonic() - began) < AHEAD_OF_REAL_TIME_S

    def run(self) -> None:
        began, received_s = time.monotonic(), 0.0
        try:
            for block in self.blocks:
                received_s += block.shape[0] / self.rate
                self.live_now = self.is_live(received_s, began)
                self.always_live = self.always_live and self.live_now
                self._put((block, time.monotonic()), drop_oldest=self.live_now)
                if self.stopping.is_set():
                    return
        except BaseException as error:  # handed to the detector thread, which reports it
            self.error = error
        finally:
            self._put(_END, drop_oldest=True)

    def _put(self, item, drop_oldest: bool) -> None:
        while not self.stopping.is_set():
            if drop_oldest:
                for old in put_dropping_oldest(self.queue, item):
                    if old is not _END:
                        self.dropped_s += old[0].shape[0] / self.rate
                return
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


class _Arrivals:
    """When each stream sample arrived: (end sample, arrival time) of recent blocks."""

    def __init__(self):
        self._blocks: collections.deque = collections.deque()
        self.samples = 0

    def add(self, count: int, arrived: float) -> None:
        self.samples += count
        self._blocks.append((self.samples, arrived))

    def of(self, sample: int) -> float | None:
        """Arrival time of stream sample `sample` (None: before the blocks kept)."""
        for end, arrived in self._blocks:
            if sample < end:
                return arrived
        return self._blocks[-1][1] if self._blocks else None

    def forget_before(self, sample: int) -> None:
        while len(self._blocks) > 1 and self._blocks[0][0] <= sample:
            self._blocks.popleft()


def listen_to(
    detector: LiveDetector,
    blocks: Iterator[np.ndarray],
    write: Callable[[LiveEvent], None],
    live: bool | None,
    warn: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> ListenReport:
    """Run `detector` over `blocks` (mono float32 at its rate) and `write` each event as it is decided.

    Args:
        live: True: a source that does not wait (drop when full, skip windows when behind); False: one that can
            wait (never drop or skip); None: decide from the arrival rate (a pipe).
        write: called with each event, in order; raising BrokenPipeError ends the run like Ctrl-C.

    Returns the `ListenReport`. Errors of the source (bad bytes on stdin, an undecodable file) are raised after
    the sounds open at that point have been closed and written.
    """
    rate = detector.rate
    reader = _Reader(blocks, live, rate, capacity_blocks=max(4, int(QUEUE_S / BLOCK_S)))
    report = ListenReport()
    arrivals = _Arrivals()
    warned_behind = False
    reader.start()

    def emit(events: list[LiveEvent], window_ends: list[int]) -> None:
        for event in events:
            write(event)
            report.events.append(event)
        done = time.monotonic()
        for end in window_ends:
            arrived = arrivals.of(end - 1)
            if arrived is not None:
                report.window_latency_s.append(done - arrived)
        for event in events:
            if event.kind == "start":
                arrived = arrivals.of(int((event.time_s + detector.step_s) * rate) - 1)
                if arrived is not None:
                    report.start_latency_s.append(done - arrived)

    try:
        while True:
            items = [_get(reader.queue)]
            while items[-1] is not _END:
                try:
                    items.append(reader.queue.get_nowait())
                except queue.Empty:
                    break
            ended = items[-1] is _END
            blocks_now = [item for item in items if item is not _END]
            if blocks_now:
                for block, arrived in blocks_now:
                    arrivals.add(block.shape[0], arrived)
                samples = np.concatenate([block for block, _ in blocks_now])
                behind = reader.live_now and samples.shape[0] > BEHIND_HOPS * detector.hop_s * rate
                if behind and not warned_behind:
                    warned_behind = True
                    warn(_behind_message(detector, samples.shape[0] / rate))
                emit(detector.push(samples, newest_only=behind), detector.last_window_ends)
                arrivals.forget_before(arrivals.samples - int((detector.window_s + QUEUE_S) * rate))
            if ended:
                break
        if reader.error is not None:
            emit(detector.finish(), [])
            raise reader.error
        emit(detector.finish(), detector.last_window_ends)
    except (KeyboardInterrupt, BrokenPipeError):
        report.interrupted = True
        reader.stopping.set()
        try:
            emit(detector.finish(), [])
        except (KeyboardInterrupt, BrokenPipeError):
            pass
    finally:
        reader.stopping.set()
        report.dropped_s = reader.dropped_s
        report.real_time = reader.always_live
    return report


def _get(items: queue.Queue):
    """The next item; waits in short steps so that Ctrl-C is taken at once."""
    while True:
        try:
            return items.get(timeout=0.2)
        except queue.Empty:
            continue


def _behind_message(detector: LiveDetector, waited_s: float) -> str:
    speed = f", real-time factor {detector.stats.real_time_factor:.2f}" if detector.stats.windows else ""
    return (
        f"falling behind: {waited_s:.1f} s of audio waited while the model ran (hop {detector.hop_s:g} s{speed}); "
        "skipping windows, each waiting step decided by the newest window (counted at the end). A longer --hop, "
        "--dtype bfloat16 or a smaller model keep up"
    )


def summary(detector: LiveDetector, report: ListenReport, source: str) -> str:
    """The closing line on stderr: audio, windows, skips and losses, real-time factor, latency."""
    stats = detector.stats
    line = (
        f"{stats.audio_s:.2f} s of audio from {source}; {stats.windows} windows of {detector.window_s:g} s every "
        f"{detector.hop_s:g} s ({stats.skipped_windows} skipped"
    )
    if stats.lost_s or report.dropped_s:
        line += f", {stats.lost_s + report.dropped_s:.2f} s of audio not analysed"
    line += f"); real-time factor {stats.real_time_factor:.3f}"
    if not report.real_time:
        line += "; latency not measured (the source delivered faster than real time)"
    elif report.window_latency_s:
        p50, p95 = np.percentile(report.window_latency_s, [50, 95])
        line += f"; latency p50 {p50:.3f} s, p95 {p95:.3f} s (a window's newest sample to its lines)"
    return line

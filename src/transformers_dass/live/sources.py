"""Where `dass listen` gets its audio: raw PCM on stdin, a file or URL (paced at real time or not), a microphone.

Every source is an iterator of mono float32 blocks at the model's rate (about `BLOCK_S` each), resampled with
`audio.resample.BlockResampler` from whatever rate the source has, so the detector sees one kind of input.
A source also says whether it is live (`LIVE`: audio arrives at real time whether or not it is read, so a reader
that falls behind must skip) or can wait (a file, or a pipe that delivers faster than real time).
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..audio.io import describe_source
from ..audio.resample import check_rate
from ..audio.stream import resampled_blocks, stream_audio
from ..utils.checks import positive_int
from ..utils.optional import require

BLOCK_S = 0.1  # seconds per block read: the finest grain of latency the reading adds
PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
# Encoded files recognised by their first bytes on stdin, where raw samples were expected.
CONTAINER_MAGIC = {b"RIFF": "a WAV file", b"fLaC": "a FLAC file", b"OggS": "an Ogg file", b"ID3": "an MP3 file"}
# Float samples of a real signal stay near [-1, 1]; far beyond, the bytes are most likely not f32le.
F32_PLAUSIBLE_PEAK = 64.0

__all__ = ["BLOCK_S", "PCM_FORMATS", "MicrophoneBlocks", "file_blocks", "is_url", "pcm_blocks", "put_dropping_oldest"]


def is_url(source: str) -> bool:
    """Whether SOURCE names a network stream (`scheme://...`) rather than a file path."""
    return "://" in source and not os.path.exists(source)


def put_dropping_oldest(items: queue.Queue, item) -> list:
    """Put `item` on the bounded queue `items` without waiting: while it is full, its oldest items are taken off to
    make room. Returns the items dropped, oldest first, for the caller to count (a live source must never wait)."""
    dropped = []
    while True:
        try:
            items.put_nowait(item)
            return dropped
        except queue.Full:
            try:
                dropped.append(items.get_nowait())
            except queue.Empty:  # another thread took one meanwhile: there is room now
                pass


def pcm_blocks(stream: BinaryIO, rate: int = 16000, channels: int = 1, sample_format: str = "s16le",
               target_rate: int = 16000, warn=None) -> Iterator[np.ndarray]:  # fmt: skip
    """Raw interleaved PCM from a binary stream (stdin) as mono float32 blocks at `target_rate`.

    Bytes that do not make a whole frame (`channels` samples) wait for the next read; at the end of the stream a
    partial frame is dropped, with a warning (`warn(message)`).

    Raises:
        ValueError: the stream holds no samples, starts like an encoded file (WAV, FLAC, Ogg, MP3) rather than raw
            samples, or holds NaN/inf floats; each message names the fix.
    """
    rate = check_rate(rate, "--rate")
    channels = positive_int(channels, "--channels")
    if sample_format not in PCM_FORMATS:
        raise ValueError(f"unknown --format {sample_format!r}: use one of {', '.join(PCM_FORMATS)}")
    dtype = PCM_FORMATS[sample_format]
    frame_bytes = dtype.itemsize * channels
    chunk = max(frame_bytes, int(BLOCK_S * rate) * frame_bytes)
    read = getattr(stream, "read1", stream.read)

    def frames() -> Iterator[np.ndarray]:
        pending, total, warned = b"", 0, False
        while True:
            data = read(chunk)
            if not data:
                break
            if total == 0 and not pending:
                _refuse_container(data)
            data = pending + data
            usable = len(data) - len(data) % frame_bytes
            pending = data[usable:]
            if not usable:
                continue
            samples = np.frombuffer(data[:usable], dtype=dtype).reshape(-1, channels)
            if dtype.kind == "f":
                if not np.isfinite(samples).all():
                    raise ValueError(
                        f"NaN or infinite samples on stdin after {total / rate:.2f} s: the bytes are not f32le "
                        "samples (if they are 16-bit integers, pass --format s16le)"
                    )
                if not warned and np.abs(samples).max() > F32_PLAUSIBLE_PEAK and warn is not None:
                    warned = True
                    warn(f"f32le samples up to {np.abs(samples).max():.3g}, far outside [-1, 1]: if stdin holds "
                         "16-bit integers, pass --format s16le")  # fmt: skip
                block = samples
            else:
                block = samples.astype(np.float32) / 32768.0
            total += samples.shape[0]
            yield block
        if pending and warn is not None:
            warn(f"stdin ended with {len(pending)} byte(s) that do not make a whole frame ({frame_bytes} bytes: "
                 f"{channels} x {sample_format}); they are dropped")  # fmt: skip
        if total == 0:
            raise ValueError(
                "no audio on stdin: pipe raw samples into it, e.g. `arecord -f S16_LE -r 16000 -c 1 -t raw | dass "
                "listen -` or `ffmpeg -i IN -f s16le -ac 1 -ar 16000 - | dass listen -`"
            )

    return resampled_blocks(frames(), rate, target_rate, "stdin")


def _refuse_container(first_bytes: bytes) -> None:
    for magic, what in CONTAINER_MAGIC.items():
        if first_bytes.startswith(magic) or (magic == b"ID3" and first_bytes[:2] in (b"\xff\xfb", b"\xff\xf3")):
            raise ValueError(
                f"stdin holds {what}, not raw samples: pass the file itself (`dass listen FILE`), or send raw "
                "samples (`ffmpeg -i IN -f s16le -ac 1 -ar 16000 - | dass listen -`)"
            )


def file_blocks(source: str, pace: bool = True, target_rate: int = 16000) -> Iterator[np.ndarray]:
    """A file (as `dass classify` decodes it: libsndfile, else PyAV) or a URL (PyAV: http(s), rtsp, ...) as mono
    float32 blocks at `target_rate`; `pace`: released at real time, as a microphone would deliver them."""
    blocks = _url_blocks(source, target_rate) if is_url(source) else stream_audio(source, target_rate, BLOCK_S)
    if not pace:
        yield from blocks
        return
    began, released = time.monotonic(), 0
    for block in blocks:
        released += block.shape[0]
        delay = began + released / target_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield block


def _url_blocks(url: str, target_rate: int) -> Iterator[np.ndarray]:
    from ..audio.media import MediaFile

    with MediaFile(url) as media:
        yield from resampled_blocks(media.blocks(max(1, int(BLOCK_S * media.rate))), media.rate, target_rate, url)


class MicrophoneBlocks:
    """Blocks from an input device through PortAudio (`sounddevice`, the `[live]` extra); a live source.

    The device's callback never waits: when the reader has not taken the last `capacity_s` seconds, the oldest
    block is dropped and counted (`dropped_s`), so memory stays bounded; PortAudio's input overflows are counted
    (`overflows`), and `losses()` says both. Iterating yields mono float32 blocks at
    `target_rate` until `stop()` (or Ctrl-C in the reader).
    """

    def __init__(self, device=None, target_rate: int = 16000, capacity_s: float = 30.0):
        try:
            sounddevice = require("sounddevice", "live", "listening to a microphone")
        except OSError as error:  # sounddevice is there, the PortAudio library is not
            raise ImportError(
                f"listening to a microphone needs the PortAudio library ({error}): apt-get install libportaudio2 "
                "(Debian/Ubuntu), brew install portaudio (macOS)"
            ) from error
        if isinstance(device, str) and device.strip().isdigit():
            device = int(device)  # `--device 3`: the index `python -m sounddevice` lists
        try:
            info = sounddevice.query_devices(device, "input")
            self.rate = int(info["default_samplerate"])
            self.name = info["name"]
            self.target_rate = target_rate
            self.dropped_s = 0.0
            self.overflows = 0
            self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(capacity_s / BLOCK_S)))
            self._stream = sounddevice.InputStream(
                device=device, channels=1, samplerate=self.rate, dtype="float32", blocksize=int(BLOCK_S * self.rate),
                callback=self._callback,
            )  # fmt: skip
        except (ValueError, sounddevice.PortAudioError) as error:
            which = "the default input device" if device is None else f"input device {device!r}"
            raise ValueError(
                f"cannot open {which}: {error}. `python -m sounddevice` lists the devices (pick one with --device); "
                "or pipe audio in with `dass listen -`"
            ) from error

    def losses(self) -> str | None:
        """What the device lost so far, as a sentence for the user; None when it lost nothing."""
        parts = []
        if self.overflows:
            parts.append(f"PortAudio reported {self.overflows} input overflow(s)")
        if self.dropped_s:
            parts.append(f"{self.dropped_s:.2f} s were dropped before the reader took them")
        if not parts:
            return None
        return f"the microphone lost audio: {' and '.join(parts)} (the machine was too busy to keep up with the device)"

    def _callback(self, indata, frames, time_info, status) -> None:
        if status:
            self.overflows += 1
        block = np.array(indata, dtype=np.float32)  # (frames, 1)
        for old in put_dropping_oldest(self._queue, block):
            self.dropped_s += old.shape[0] / self.rate

    def __iter__(self) -> Iterator[np.ndarray]:
        def blocks():
            self._stream.start()
            try:
                while self._stream.active or not self._queue.empty():
                    try:
                        yield self._queue.get(timeout=0.5)
                    except queue.Empty:
                        continue
            finally:
                self._stream.stop()
                self._stream.close()

        return resampled_blocks(blocks(), self.rate, self.target_rate, "the microphone")


def describe(source: str | None) -> str:
    """How messages name a source."""
    if source is None:
        return "the microphone"
    return "stdin" if source == "-" else describe_source(source)

"""Audio streams of the containers libsndfile does not read, decoded through PyAV (FFmpeg's libraries, bundled).

m4a/AAC, mp4/mov, webm/mkv, wma/asf, amr, avi and other video files: `MediaFile(source)` opens the first audio
stream (and says which one, when the file has several), reads it whole (`read`) or in blocks of a bounded size
(`blocks`), as float32 (frames, channels) at the stream's own rate; downmixing and resampling are the caller's, as
for what libsndfile reads. PyAV is the `[media]` extra, imported on first use (`require`).

Errors are one line naming the file: a file FFmpeg cannot open ("could not decode ..."), one without an audio stream,
a packet it cannot decode (and after how many seconds). A stream that ends well before the duration its container
declares (a file cut off in copying) is read as far as it goes, with a warning, as a truncated WAV is.
"""

from __future__ import annotations

import io
import os
from typing import Iterator

import numpy as np
from transformers.utils import logging

from ..utils.optional import install_hint, require

logger = logging.get_logger(__name__)

__all__ = ["MEDIA_HINT", "MEDIA_SUFFIXES", "MediaFile", "MediaOpenError", "media_available"]

# File extensions of containers with audio that FFmpeg reads and libsndfile does not (folders are searched for them).
MEDIA_SUFFIXES = frozenset(
    ".m4a .m4b .m4p .aac .adts .mp4 .m4v .mov .qt .3gp .3g2 .webm .weba .mkv .mka .wma .wmv .asf .amr .awb .avi .flv "
    ".ts .mts .m2ts .mpg .mpeg .ac3 .eac3 .mp2 .dts .ape .wv .tta .spx".split()
)
MEDIA_HINT = (
    "libsndfile reads WAV/FLAC/OGG/MP3/AIFF; other containers (m4a/AAC, mp4/mov, webm/mkv, wma, amr, video files) "
    f"are read through PyAV: {install_hint('media')}"
)
# A stream may end this much before its container's declared duration without being called truncated: encoder
# priming and padding (AAC: 1024-2112 samples, Opus: 312) and container durations rounded to a frame or a packet.
TRUNCATION_SLACK_S = 0.5
TRUNCATION_SLACK_FRACTION = 0.01


class MediaOpenError(ValueError):
    """FFmpeg cannot open the file (damaged, or not a media file); `reason` is FFmpeg's message on one line."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"could not decode {name}: {reason}; the file is damaged or not a media file (copy or export it again)")
        self.reason = reason


def media_available() -> bool:
    """Whether PyAV can be imported (the `[media]` extra is installed)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _describe(source) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"<in-memory audio file, {len(source)} bytes>"
    return os.fspath(source)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


class MediaFile:
    """The first audio stream of a media file (path or encoded bytes), opened with PyAV; a context manager.

    Attributes:
        name: how messages name the file.
        rate: the stream's sampling rate in Hz.
        channels: its channel count.
        declared_seconds: the duration the container declares, or None.
        description: e.g. "stream #1 of 2 audio streams: aac, 2 channels, 44100 Hz".

    Args:
        source: a path or the file's bytes.
        warn: log which stream is read when there are several (off for a second pass over the same file).

    Raises:
        ModuleNotFoundError: PyAV is not installed (names the `[media]` extra).
        MediaOpenError: FFmpeg cannot open the file.
        ValueError: it has no audio stream.
    """

    def __init__(self, source, warn: bool = True):
        av = require("av", "media", "reading m4a/mp4/webm/mkv/wma/amr and video files")
        self.name = _describe(source)
        self._source = source
        try:
            handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else os.fspath(source)
            self._container = av.open(handle, mode="r")
        except av.error.FFmpegError as error:
            raise MediaOpenError(self.name, _one_line(error)) from error
        audio = list(self._container.streams.audio)
        if not audio:
            kinds = ", ".join(f"{s.type} {s.codec_context.name}" for s in self._container.streams) or "none"
            self._container.close()
            raise ValueError(f"{self.name} has no audio stream (its streams: {kinds}); pass a file with sound")
        self._stream = audio[0]
        context = self._stream.codec_context
        self.rate = int(context.sample_rate or self._stream.sample_rate or 0)
        self.channels = int(context.channels or 0)
        if self.rate <= 0:
            self._container.close()
            raise ValueError(f"{self.name}: its audio stream declares no sampling rate; the file is damaged")
        self.declared_seconds = self._declared_seconds()
        language = self._stream.language
        self.description = (
            f"stream #{self._stream.index}"
            + (f" of {len(audio)} audio streams" if len(audio) > 1 else "")
            + f": {context.name}, {self.channels} channel{'s' if self.channels != 1 else ''}, {self.rate} Hz"
            + (f", language {language}" if language else "")
        )
        if warn and len(audio) > 1:
            logger.warning(
                f"{self.name} has {len(audio)} audio streams; reading the first, {self.description} "
                "(extract another one, e.g. `ffmpeg -i IN -map 0:a:1 OUT.wav`, to classify it)"
            )

    def _declared_seconds(self) -> float | None:
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if self._container.duration is not None:
            return self._container.duration / 1_000_000  # AV_TIME_BASE
        return None

    def __enter__(self) -> "MediaFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def blocks(self, frames: int, warn_truncated: bool = True) -> Iterator[np.ndarray]:
        """The stream decoded in (frames, channels) float32 blocks of `frames` rows (the last one shorter).

        Memory: one block plus one decoded packet. Raises ValueError (naming the file and the time reached) on a
        packet FFmpeg cannot decode; logs a warning when the stream ends well before its declared duration.
        """
        import av

        if frames < 1:
            raise ValueError(f"frames must be a positive number of samples per block, got {frames}")
        # Every frame converted to float planar at the stream's rate (a no-op for most decoders' output).
        resampler = None
        pending: list[np.ndarray] = []
        held = decoded = 0
        try:
            for frame in self._container.decode(self._stream):
                if resampler is None:
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=self.rate)
                for converted in resampler.resample(frame):
                    pending.append(converted.to_ndarray().T)
                    held += converted.samples
                while held >= frames:
                    block, pending, held = _take(pending, frames)
                    decoded += block.shape[0]
                    yield block
            for converted in resampler.resample(None) if resampler is not None else ():
                pending.append(converted.to_ndarray().T)
                held += converted.samples
        except av.error.FFmpegError as error:
            seconds = (decoded + held) / self.rate
            raise ValueError(
                f"could not decode {self.name} after {seconds:.2f} s: {_one_line(error)}; the file is damaged "
                "(copy or export it again)"
            ) from error
        while held > 0:
            block, pending, held = _take(pending, min(frames, held))
            decoded += block.shape[0]
            yield block
        if warn_truncated:
            self._warn_if_truncated(decoded)

    def read(self, warn_truncated: bool = True) -> np.ndarray:
        """The whole stream, (frames, channels) float32 (frames may be 0)."""
        blocks = list(self.blocks(1 << 20, warn_truncated))
        if not blocks:
            return np.zeros((0, max(self.channels, 1)), dtype=np.float32)
        return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]

    def _warn_if_truncated(self, decoded: int) -> bool:
        declared = self.declared_seconds
        read = decoded / self.rate
        if declared is None or read >= declared - max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * declared):
            return False
        logger.warning(
            f"{self.name} is truncated: read {read:.2f} s of the {declared:.2f} s its container declares; the rest "
            "of the recording is missing (copy or export the file again to use all of it)"
        )
        return True


def _take(pending: list[np.ndarray], frames: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """The first `frames` rows of the concatenated `pending` arrays, the rest, and the rest's row count."""
    whole = np.concatenate(pending) if len(pending) > 1 else pending[0]
    rest = whole[frames:]
    return np.ascontiguousarray(whole[:frames], dtype=np.float32), ([rest] if rest.shape[0] else []), rest.shape[0]

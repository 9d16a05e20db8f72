"""Reading audio files: libsndfile first, PyAV (FFmpeg) for the containers it does not read; downmix and resample.

`load_audio` decodes whatever libsndfile reads (WAV, FLAC, OGG/Vorbis/Opus, MP3 with libsndfile >= 1.1, AIFF, ...)
through `soundfile`; what libsndfile cannot open (m4a/AAC, mp4/mov, webm/mkv, wma, amr, video files: their first
audio stream) goes through PyAV (`media.MediaFile`, the `[media]` extra). It then downmixes to mono and resamples
to the model's rate with `resample.resample`. A WAV file whose data is shorter than its header declares is read as
far as it goes, with a warning (`warn_if_truncated`); so is a media stream shorter than its container declares.
`audio_info` reads the header (rate, channels, duration) of either kind.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Union

import numpy as np
import soundfile
from transformers.utils import logging

from .media import MEDIA_HINT, MEDIA_SUFFIXES, MediaFile, MediaOpenError, media_available
from .resample import check_rate, resample

logger = logging.get_logger(__name__)

__all__ = [
    "AUDIO_SUFFIXES",
    "AudioInfo",
    "CONVERT_HINT",
    "SOUNDFILE_ERRORS",
    "audio_info",
    "check_audio_path",
    "describe_source",
    "load_audio",
    "open_media",
    "warn_if_truncated",
]

AudioSource = Union[str, os.PathLike, bytes, bytearray]


# File extensions of the formats libsndfile reads (MP3 needs libsndfile >= 1.1).
SOUNDFILE_SUFFIXES = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aiff .aif .aifc .au .snd .caf .w64 .rf64 .sph .nist .voc .sd2 .paf .svx "
    ".htk .pvf .xi .avr .wve .mpc".split()
)
# File extensions of audio, where folders are searched: libsndfile's and the containers PyAV reads (`[media]`; without
# it such a file gets an error naming the extra, rather than being left out unseen).
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | MEDIA_SUFFIXES
CONVERT_HINT = (
    "soundfile (libsndfile) reads WAV/FLAC/OGG/MP3/AIFF and PyAV (the [media] extra) m4a/mp4/webm/mkv/wma/amr and "
    "video files; convert anything else, e.g. `ffmpeg -i IN -ar 16000 -ac 1 out.wav`"
)
SOUNDFILE_ERRORS = (soundfile.SoundFileError, RuntimeError, EOFError)
# A RIFF chunk size that streaming writers put when they do not know the length yet.
_OPEN_LENGTH = 0xFFFFFFFF


def describe_source(source: AudioSource) -> str:
    """How error messages name `source`: the path, or the size of an in-memory file."""
    if isinstance(source, (bytes, bytearray)):
        return f"<in-memory audio file, {len(source)} bytes>"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return repr(source)


def check_audio_path(path: str | os.PathLike, name: str) -> None:
    """Raise a FileNotFoundError / ValueError that names the fix when `path` is missing or empty (0 bytes)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"audio file not found: {name}; check the path and the working directory")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ValueError(f"{name} is empty (0 bytes): the file was never written or was cut off; copy or export it again")


def _handle(source: AudioSource):
    """What soundfile opens for `source` (a path string or a BytesIO), after the checks that name the fix."""
    name = describe_source(source)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ValueError(f"{name} is empty: pass the encoded file's content")
        return io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        check_audio_path(source, name)
        return os.fspath(source)
    raise TypeError(
        f"load_audio expects a path (str or os.PathLike) or the encoded file's bytes, got {type(source).__name__}"
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()).rstrip(".")


def open_media(source: AudioSource, soundfile_error: BaseException, warn: bool = True) -> MediaFile:
    """The `MediaFile` of a source libsndfile could not open (`soundfile_error`), or one ValueError that says why
    neither decoder reads it: without PyAV, libsndfile's reason and the `[media]` extra to install; with it, both
    decoders' reasons."""
    name = describe_source(source)
    if not media_available():
        raise ValueError(f"could not decode {name}: {_one_line(soundfile_error)}. {MEDIA_HINT}") from soundfile_error
    try:
        return MediaFile(source, warn=warn)
    except MediaOpenError as error:
        raise ValueError(
            f"could not decode {name}: libsndfile: {_one_line(soundfile_error)}; FFmpeg: {error.reason}. The file is "
            f"damaged or not audio; {CONVERT_HINT}"
        ) from error


def _read(source: AudioSource) -> tuple[np.ndarray, int]:
    """Decode `source`: libsndfile, else PyAV. Returns (samples, channels) float32 and the rate in Hz."""
    handle = _handle(source)
    try:
        data, rate = soundfile.read(handle, dtype="float32", always_2d=True)
    except SOUNDFILE_ERRORS as err:
        with open_media(source, err) as media:
            return media.read(), media.rate
    warn_if_truncated(source, data.shape[0], rate)
    return data, rate


@dataclass(frozen=True)
class AudioInfo:
    """A file's header: `rate` in Hz, `channels`, `frames` (None where the container does not say), `seconds`."""

    rate: int
    channels: int
    frames: int | None
    seconds: float | None


def audio_info(source: AudioSource) -> AudioInfo:
    """The header of `source` (path or bytes) as libsndfile reads it, else as PyAV does (its first audio stream).

    Raises:
        FileNotFoundError, ValueError, TypeError: as `load_audio`, for a file neither can open.
    """
    handle = _handle(source)
    try:
        info = soundfile.info(handle)
    except SOUNDFILE_ERRORS as err:
        with open_media(source, err, warn=False) as media:
            seconds = media.declared_seconds
            frames = round(seconds * media.rate) if seconds is not None else None
            return AudioInfo(media.rate, media.channels, frames, seconds)
    seconds = info.frames / info.samplerate if info.samplerate else None
    return AudioInfo(info.samplerate, info.channels, info.frames, seconds)


def _wav_data_sizes(stream: io.BufferedIOBase) -> tuple[int, int, int] | None:
    """Bytes of audio a WAV header declares, bytes the file holds after the data chunk's start, and the byte
    rate of its fmt chunk; None when `stream` is not a RIFF/WAVE file or its header leaves the length open."""
    head = stream.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
        return None
    byte_rate = 0
    while True:
        chunk = stream.read(8)
        if len(chunk) < 8:
            return None
        chunk_id, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if chunk_id == b"data":
            break
        body_start = stream.tell()
        if chunk_id == b"fmt ":
            byte_rate = int.from_bytes(stream.read(12)[8:12], "little")
        stream.seek(body_start + size + (size & 1))  # chunks are padded to an even size
    if size == _OPEN_LENGTH or byte_rate == 0:
        return None
    start = stream.tell()
    available = stream.seek(0, io.SEEK_END) - start
    return size, available, byte_rate


def warn_if_truncated(source: AudioSource, frames_read: int, sampling_rate: int) -> bool:
    """Log a warning when `source` is a WAV file whose data is shorter than its header declares.

    libsndfile silently decodes what is there; the header's data chunk size still tells how long the
    recording was meant to be. Returns whether the file is truncated. Other formats are not checked.
    """
    if isinstance(source, (bytes, bytearray)):
        sizes = _wav_data_sizes(io.BytesIO(source))
    else:
        with open(source, "rb") as stream:
            sizes = _wav_data_sizes(stream)
    if sizes is None or sizes[0] <= sizes[1]:
        return False
    declared, _, byte_rate = sizes
    logger.warning(
        f"{describe_source(source)} is truncated: read {frames_read / sampling_rate:.2f} s of the "
        f"{declared / byte_rate:.2f} s its header declares; the rest of the recording is missing (copy or "
        "export the file again to use all of it)"
    )
    return True


def load_audio(path: AudioSource, sampling_rate: int = 16000, mono: bool = True) -> np.ndarray:
    """Read an audio file as float32 at `sampling_rate` Hz.

    Args:
        path: a file libsndfile or PyAV (the `[media]` extra) can decode, or the encoded file's content as bytes
            (e.g. what `datasets.Audio(decode=False)` yields).
        sampling_rate: output rate in Hz; the file is resampled with `resample` if it differs.
        mono: average the channels into one.

    Returns:
        (samples,) float32 if `mono`, else (channels, samples) float32; integer PCM is scaled to
        [-1, 1). A truncated WAV file (or media stream) gives the samples it holds, and a logged warning.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is empty (0 bytes), cannot be decoded (without PyAV: naming the `[media]` extra), has
            no audio stream, holds no samples, or holds NaN/inf samples.
    """
    sampling_rate = check_rate(sampling_rate, "sampling_rate")
    name = describe_source(path)
    data, file_rate = _read(path)
    if data.shape[0] == 0:
        raise ValueError(f"{name} contains no audio samples (0 frames); pass a non-empty recording")
    if not np.isfinite(data).all():
        raise ValueError(
            f"{name} contains NaN or infinite samples; the file is corrupted or was written from a "
            "broken signal: regenerate or re-export it from a clean source"
        )
    channels = data.mean(axis=1, dtype=np.float32) if mono else np.ascontiguousarray(data.T)
    return resample(channels, file_rate, sampling_rate)

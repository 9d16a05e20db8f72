"""Reading audio files and band-limited resampling, with no torchaudio, scipy or ffmpeg.

`load_audio` decodes whatever libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1,
AIFF, ...) through `soundfile`, downmixes to mono and resamples to the model's rate with
`resample`, a windowed-sinc resampler in torch that follows the default of
`torchaudio.functional.resample` (Hann window, 6 zero crossings, rolloff 0.99). A WAV file whose data is
shorter than its header declares is read as far as it goes, with a warning (`warn_if_truncated`).
"""

from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
import soundfile
from transformers.utils import logging

from .resample import check_rate, resample

logger = logging.get_logger(__name__)

__all__ = ["AUDIO_SUFFIXES", "CONVERT_HINT", "check_audio_path", "describe_source", "load_audio", "warn_if_truncated"]

AudioSource = Union[str, os.PathLike, bytes, bytearray]


# File extensions of audio, where folders are searched: the formats libsndfile reads (MP3 needs libsndfile >= 1.1).
AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aiff .aif .aifc .au .snd .caf .w64 .rf64 .sph .nist .voc .sd2 .paf .svx "
    ".htk .pvf .xi .avr .wve .mpc".split()
)
CONVERT_HINT = (
    "soundfile (libsndfile) reads WAV/FLAC/OGG/MP3/AIFF and other formats it knows; convert other "
    "formats, e.g. `ffmpeg -i in.mp3 -ar 16000 -ac 1 out.wav`"
)
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


def _read(source: AudioSource) -> tuple[np.ndarray, int]:
    """Decode `source` with soundfile. Returns (samples, channels) float32 and the rate in Hz."""
    name = describe_source(source)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ValueError(f"{name} is empty: pass the encoded file's content")
        handle = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        handle = os.fspath(source)
        check_audio_path(handle, name)
    else:
        raise TypeError(
            "load_audio expects a path (str or os.PathLike) or the encoded file's bytes, "
            f"got {type(source).__name__}"
        )
    try:
        data, rate = soundfile.read(handle, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, EOFError) as err:
        raise ValueError(f"could not decode {name}: {err}. {CONVERT_HINT}") from err
    warn_if_truncated(source, data.shape[0], rate)
    return data, rate


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
        path: a file libsndfile can decode, or the encoded file's content as bytes
            (e.g. what `datasets.Audio(decode=False)` yields).
        sampling_rate: output rate in Hz; the file is resampled with `resample` if it differs.
        mono: average the channels into one.

    Returns:
        (samples,) float32 if `mono`, else (channels, samples) float32; integer PCM is scaled to
        [-1, 1). A truncated WAV file gives the samples it holds, and a logged warning.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is empty (0 bytes), cannot be decoded, holds no samples, or holds NaN/inf samples.
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

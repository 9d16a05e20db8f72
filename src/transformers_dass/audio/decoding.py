"""Decoding dataset audio values without torchcodec or ffmpeg, and counting the clips that are skipped."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
from transformers.utils import logging

from .fbank import frame_geometry
from .io import load_audio
from .resample import resample

logger = logging.get_logger(__name__)

# Every skip is logged up to this count; after it only counts that are powers of two are, so that a bad
# shard cannot flood the log of a long run.
ALWAYS_LOGGED_SKIPS = 10


class AudioDecodeError(ValueError):
    """A clip that cannot be used: undecodable, empty, shorter than one frame, or of an unknown form."""


def decode_audio(value, sampling_rate: int = 16000) -> np.ndarray:
    """Mono float32 waveform (samples,) at `sampling_rate` from one value of a dataset's audio column.

    Accepts what `datasets.Audio(decode=False)` yields (`{"bytes": ..., "path": ...}`: bytes are decoded when
    present, else the path is read), encoded bytes, a file path, or an already decoded
    `{"array": ..., "sampling_rate": ...}`. Files are read with soundfile and resampled with
    `transformers_dass.audio.io.resample`.

    Raises:
        AudioDecodeError: the value cannot be decoded, holds no samples, or is shorter than one 25 ms frame.
    """
    try:
        waveform = _decode(value, sampling_rate)
    except (ValueError, FileNotFoundError, TypeError, RuntimeError) as err:
        if isinstance(err, AudioDecodeError):
            raise
        raise AudioDecodeError(str(err)) from err
    min_samples = frame_geometry(sampling_rate)[0]
    if waveform.shape[0] < min_samples:
        raise AudioDecodeError(
            f"{waveform.shape[0]} samples at {sampling_rate} Hz is shorter than one {min_samples}-sample frame"
        )
    return waveform


def _decode(value, sampling_rate: int) -> np.ndarray:
    if isinstance(value, dict):
        if value.get("array") is not None:
            if value.get("sampling_rate") is None:
                raise AudioDecodeError("a decoded audio dict needs its 'sampling_rate'")
            array = np.asarray(value["array"], dtype=np.float32)
            if array.ndim == 2:  # (channels, samples), as datasets returns multichannel audio
                array = array.mean(axis=0)
            if array.ndim != 1 or array.size == 0:
                raise AudioDecodeError(f"decoded audio must be a non-empty 1-D array, got shape {array.shape}")
            return resample(array, int(value["sampling_rate"]), sampling_rate)
        if value.get("bytes"):
            return load_audio(value["bytes"], sampling_rate)
        if value.get("path"):
            return load_audio(value["path"], sampling_rate)
        raise AudioDecodeError("audio value has neither bytes nor a path (empty clip)")
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise AudioDecodeError("audio value is empty (0 bytes)")
        return load_audio(value, sampling_rate)
    if isinstance(value, (str, os.PathLike)):
        return load_audio(value, sampling_rate)
    raise AudioDecodeError(
        f"unsupported audio value of type {type(value).__name__}; cast the column with "
        "`datasets.Audio(decode=False)` so that it holds the encoded bytes"
    )


class SkipCounter:
    """Counts skipped clips by reason and logs them with running counts.

    Each process (and each dataloader worker) has its own counter, so logged counts are per worker.
    """

    def __init__(self, what: str = "clip"):
        self.what = what
        self.counts: Counter = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def skip(self, reason: str, detail: str = "") -> None:
        """Record one skipped item; `reason` is a short category, `detail` says which item and why."""
        self.counts[reason] += 1
        total = self.total
        if total <= ALWAYS_LOGGED_SKIPS or (total & (total - 1)) == 0:
            logger.warning(
                f"skipping {self.what} ({reason}){': ' + detail if detail else ''} "
                f"[{self.counts[reason]} skipped for this reason, {total} in all in this worker]"
            )


__all__ = ["AudioDecodeError", "SkipCounter", "decode_audio"]

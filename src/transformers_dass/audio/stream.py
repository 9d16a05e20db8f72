"""Audio files as a stream of blocks, and the Kaldi fbank of a stream: the one-shot numbers, in bounded memory.

These are the pieces of `inference.features.long_audio_features`, which equals
`DassFeatureExtractor(max_length=None)(load_audio(path))` (within float32 rounding) without ever holding the
waveform:

- `stream_audio` decodes the file block by block (libsndfile, or PyAV for the containers it does not read), downmixes each block as `load_audio` does
  and resamples it with `BlockResampler`, which cuts the signal into the same fixed tiles as
  `audio.resample.resample` (each tile reading its own `2 * width` samples of context), so its output is that of
  the one-shot resampler;
- `FbankStream` turns consecutive blocks into exactly the frames of one `kaldi_fbank` call on the whole
  waveform: the samples after the last complete window of a block are carried into the next;
- the feature extractor removes the clip's mean before the fbank. That mean needs the whole file, so the
  file is read twice: once for the mean, once for the frames. (Kaldi also centres every frame, so the clip
  mean changes the features only by rounding; it is still removed, to give the same numbers.)

Memory: one block of audio (`block_seconds`) plus the features, 128 floats per 10 ms (184 MB per hour).
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import soundfile
import torch

from .fbank import (
    fbank_into,
    frame_geometry,
    hann_window,
    kaldi_mel_filters,
    num_frames,
)
from .io import CONVERT_HINT, SOUNDFILE_ERRORS, check_audio_path, describe_source, open_media, warn_if_truncated
from .resample import BlockResampler, check_rate

DEFAULT_BLOCK_SECONDS = 60.0

__all__ = ["DEFAULT_BLOCK_SECONDS", "FbankStream", "resampled_blocks", "stream_audio"]


def stream_audio(
    path: str | os.PathLike,
    sampling_rate: int = 16000,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    progress=None,
    warn_truncated: bool = True,
) -> Iterator[np.ndarray]:
    """Decode an audio file in blocks: mono float32 (samples,) arrays at `sampling_rate` Hz.

    Concatenated, the blocks are `audio_io.load_audio(path, sampling_rate)`. `progress`, if given, is
    called with the number of file frames read after each block. A WAV file shorter than its header
    declares (or a media stream shorter than its container declares) is read as far as it goes, with a warning
    unless `warn_truncated` is False (which also silences the note on which of several audio streams is read).

    Raises:
        FileNotFoundError, ValueError: as `load_audio` (missing file, 0 bytes, undecodable, no samples, NaN/inf).
    """
    sampling_rate = check_rate(sampling_rate, "sampling_rate")
    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds!r}")
    name = describe_source(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"stream_audio expects a file path, got {type(path).__name__}")
    check_audio_path(path, name)
    try:
        handle = soundfile.SoundFile(os.fspath(path))
    except SOUNDFILE_ERRORS as err:
        with open_media(path, err, warn=warn_truncated) as media:
            frames = max(1, int(block_seconds * media.rate))
            yield from resampled_blocks(media.blocks(frames, warn_truncated), media.rate, sampling_rate, name, progress)
        return
    with handle:
        frames = max(1, int(block_seconds * handle.samplerate))
        blocks = _soundfile_blocks(handle, frames, name)
        yield from resampled_blocks(blocks, handle.samplerate, sampling_rate, name, progress)
        if warn_truncated:
            warn_if_truncated(path, handle.tell(), handle.samplerate)


def _soundfile_blocks(handle: soundfile.SoundFile, frames: int, name: str) -> Iterator[np.ndarray]:
    """(frames, channels) float32 blocks of an open soundfile, until its end."""
    total = 0
    while True:
        try:
            data = handle.read(frames, dtype="float32", always_2d=True)
        except SOUNDFILE_ERRORS as err:
            raise ValueError(f"could not decode {name} after {total} frames: {err}. {CONVERT_HINT}") from err
        if data.shape[0] == 0:
            return
        total += data.shape[0]
        yield data


def resampled_blocks(blocks, file_rate: int, sampling_rate: int, name: str, progress=None) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `sampling_rate` from (frames, channels) float32 `blocks` at `file_rate`: the checks of
    `load_audio` (finite samples, not empty; messages name the source as `name`), its downmix, and
    `BlockResampler`. Files (`stream_audio`) and the live sources (`live.sources`) go through it."""
    resampler = BlockResampler(file_rate, sampling_rate)
    total = 0
    for data in blocks:
        if not np.isfinite(data).all():
            raise ValueError(
                f"{name} contains NaN or infinite samples (after frame {total}); the file is corrupted or was "
                "written from a broken signal: regenerate or re-export it from a clean source"
            )
        total += data.shape[0]
        out = resampler.push(data.mean(axis=1, dtype=np.float32))
        if progress is not None:
            progress(data.shape[0])
        if out.shape[0]:
            yield out
    if total == 0:
        raise ValueError(f"{name} contains no audio samples (0 frames); pass a non-empty recording")
    tail = resampler.finish()
    if tail.shape[0]:
        yield tail


class FbankStream:
    """Kaldi fbank (`feature_extraction_dass.kaldi_fbank`) of a waveform given in consecutive blocks.

    `push(block)` returns the frames whose windows the samples so far complete; concatenated they are the
    frames of one `kaldi_fbank(whole waveform - offset)` call. `offset` is subtracted from every sample first
    (the feature extractor's clip mean).
    """

    def __init__(self, num_mel_bins: int = 128, sampling_rate: int = 16000, offset: float = 0.0):
        self.window_size, self.window_shift, fft_size = frame_geometry(sampling_rate)
        self.sampling_rate = sampling_rate
        self.window = hann_window(self.window_size)
        self.filters = kaldi_mel_filters(num_mel_bins, fft_size, sampling_rate)
        self.offset = torch.tensor(offset, dtype=torch.float32)
        # Samples from the next frame's first one on, already offset.
        self._pending = torch.zeros(0)

    def push(self, block: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Feed (samples,) audio; returns the completed frames, (frames, num_mel_bins) float32."""
        block = torch.as_tensor(block, dtype=torch.float32) - self.offset
        samples = torch.cat([self._pending, block]) if self._pending.shape[0] else block
        frames = num_frames(samples.shape[0], self.sampling_rate)
        out = torch.empty(frames, self.filters.shape[0])
        fbank_into(out, samples, self.window, self.filters, self.window_shift)
        self._pending = samples[frames * self.window_shift :].clone()
        return out

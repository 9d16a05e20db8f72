"""DASS features of long audio files in bounded memory: the numbers of the one-shot path, computed in blocks.

`long_audio_features(path)` equals `DassFeatureExtractor(max_length=None)(load_audio(path))` (within float32
rounding), without ever holding the waveform:

- `stream_audio` decodes the file with soundfile block by block, downmixes each block as `load_audio` does
  and resamples it with `BlockResampler`, which cuts the signal into the same fixed tiles as
  `audio_io.resample` (each tile reading its own `2 * width` samples of context), so its output is that of
  the one-shot resampler;
- `FbankStream` turns consecutive blocks into exactly the frames of one `kaldi_fbank` call on the whole
  waveform: the samples after the last complete window of a block are carried into the next;
- the feature extractor removes the clip's mean before the fbank. That mean needs the whole file, so the
  file is read twice: once for the mean, once for the frames. (Kaldi also centres every frame, so the clip
  mean changes the features only by rounding; it is still removed, to give the same numbers.)

Memory: one block of audio (`block_seconds`) plus the features, 128 floats per 10 ms (184 MB per hour).
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np
import soundfile
import torch

from .audio_io import (
    _CONVERT_HINT,
    TILE_SAMPLES,
    _block_factor,
    _check_rate,
    _describe,
    _sinc_kernels,
    check_audio_path,
    warn_if_truncated,
)
from .feature_extraction_dass import (
    FRAME_LENGTH_MS,
    DassFeatureExtractor,
    _fbank_into,
    frame_geometry,
    hann_window,
    kaldi_mel_filters,
    num_frames,
)

DEFAULT_BLOCK_SECONDS = 60.0

__all__ = ["BlockResampler", "FbankStream", "long_audio_features", "stream_audio"]


class BlockResampler:
    """`audio_io.resample` of a signal that arrives in blocks.

    `push(block)` returns the output samples that are complete so far, `finish()` the rest; concatenated,
    they are `resample(whole signal, orig_sr, target_sr)`. The one-shot resampler computes its output in
    tiles of a fixed number of frames, each from its own slice of input (zero before the start and after the
    end); this class computes the same tiles as soon as their input has arrived.
    """

    def __init__(self, orig_sr: int, target_sr: int):
        orig_sr = _check_rate(orig_sr, "orig_sr")
        target_sr = _check_rate(target_sr, "target_sr")
        self.passthrough = orig_sr == target_sr
        gcd = math.gcd(orig_sr, target_sr)
        block = _block_factor(orig_sr // gcd, target_sr // gcd)
        self.orig, self.new = orig_sr // gcd * block, target_sr // gcd * block
        self.kernels, self.width = _sinc_kernels(self.orig, self.new)
        self.tile_frames = max(1, TILE_SAMPLES // self.orig)
        self.tile_step = self.tile_frames * self.orig
        self.tile_length = (self.tile_frames - 1) * self.orig + self.kernels.shape[-1]
        # Input from the next tile's first sample on; the tile starts `width` samples before its frame.
        self._pending = torch.zeros(self.width)
        self._tiles_done = 0
        self._samples_in = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed (samples,) float32 input; returns the (samples',) float32 output completed by it."""
        block = np.asarray(block, dtype=np.float32)
        self._samples_in += block.shape[0]
        if self.passthrough:
            return block
        self._pending = torch.cat([self._pending, torch.from_numpy(np.ascontiguousarray(block))])
        available = self._pending.shape[0] - self.tile_length
        return self._tiles(available // self.tile_step + 1 if available >= 0 else 0)

    def finish(self) -> np.ndarray:
        """The output after the last input sample (the tiles reaching past the end read zeros)."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        out_length = -(-self._samples_in * self.new // self.orig)
        tiles_total = -(-out_length // (self.new * self.tile_frames))
        remaining = tiles_total - self._tiles_done
        needed = (remaining - 1) * self.tile_step + self.tile_length
        if remaining > 0 and self._pending.shape[0] < needed:
            self._pending = torch.nn.functional.pad(self._pending, (0, needed - self._pending.shape[0]))
        produced = self._tiles_done * self.tile_frames * self.new
        return self._tiles(max(remaining, 0))[: out_length - produced]

    def _tiles(self, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        span = (count - 1) * self.tile_step + self.tile_length
        tiles = self._pending[:span].unfold(0, self.tile_length, self.tile_step).unsqueeze(1)
        with torch.inference_mode():
            phases = torch.nn.functional.conv1d(tiles, self.kernels, stride=self.orig)  # (count, new, tile_frames)
        self._pending = self._pending[count * self.tile_step :].clone()
        self._tiles_done += count
        return phases.transpose(1, 2).reshape(-1).numpy()


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
    declares is read as far as it goes, with a warning (`audio_io.warn_if_truncated`) unless `warn_truncated`
    is False.

    Raises:
        FileNotFoundError, ValueError: as `load_audio` (missing file, 0 bytes, undecodable, no samples, NaN/inf).
    """
    sampling_rate = _check_rate(sampling_rate, "sampling_rate")
    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds!r}")
    name = _describe(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"stream_audio expects a file path, got {type(path).__name__}")
    check_audio_path(path, name)
    try:
        handle = soundfile.SoundFile(os.fspath(path))
    except (soundfile.SoundFileError, RuntimeError) as err:
        raise ValueError(f"could not decode {name}: {err}. {_CONVERT_HINT}") from err
    with handle:
        resampler = BlockResampler(handle.samplerate, sampling_rate)
        block_frames = max(1, int(block_seconds * handle.samplerate))
        total = 0
        while True:
            try:
                data = handle.read(block_frames, dtype="float32", always_2d=True)
            except (soundfile.SoundFileError, RuntimeError) as err:
                raise ValueError(f"could not decode {name} after {total} frames: {err}. {_CONVERT_HINT}") from err
            if data.shape[0] == 0:
                break
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
        if warn_truncated:
            warn_if_truncated(path, total, handle.samplerate)
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
        _fbank_into(out, samples, self.window, self.filters, self.window_shift)
        self._pending = samples[frames * self.window_shift :].clone()
        return out


def long_audio_features(
    path: str | os.PathLike,
    feature_extractor: DassFeatureExtractor | None = None,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    show_progress: bool | None = None,
) -> torch.Tensor:
    """Normalised DASS features of a whole audio file, read in blocks.

    Args:
        path: a file soundfile can decode (any rate and channel count: downmixed and resampled).
        feature_extractor: whose settings to use (rate, mel bins, normalisation); the default extractor when
            None. Its `max_length` is ignored: every frame is kept, none is padded.
        block_seconds: seconds of file audio decoded at a time.
        show_progress: a tqdm bar over the two passes; None shows it when stderr is a terminal.

    Returns:
        (frames, num_mel_bins) float32 with `frames = 1 + (samples - 400) // 160` at 16 kHz: the
        `input_values` of `feature_extractor(load_audio(path), max_length=None)[0]`; add the batch
        dimension with `.unsqueeze(0)`.
    """
    extractor = feature_extractor if feature_extractor is not None else DassFeatureExtractor()
    rate = extractor.sampling_rate
    name = _describe(path)
    bar = _progress_bar(path, show_progress)
    try:
        # Pass 1: the number of samples and the clip mean, which the feature extractor removes first.
        count, total = 0, 0.0
        for block in stream_audio(path, rate, block_seconds, progress=bar.update):
            count += block.shape[0]
            total += float(block.sum(dtype=np.float64))
        min_samples = frame_geometry(rate)[0]
        if count < min_samples:
            raise ValueError(
                f"{name} has only {count} samples at {rate} Hz; DASS needs at least {min_samples} (one "
                f"{FRAME_LENGTH_MS} ms window). Pad short recordings with silence."
            )
        mean = float(np.float32(total / count))

        # Pass 2: the frames, straight into the output (pass 1 already warned if the file is truncated).
        features = torch.empty(num_frames(count, rate), extractor.num_mel_bins)
        stream = FbankStream(extractor.num_mel_bins, rate, offset=mean)
        written = 0
        for block in stream_audio(path, rate, block_seconds, progress=bar.update, warn_truncated=False):
            frames = stream.push(block)
            features[written : written + frames.shape[0]] = frames
            written += frames.shape[0]
        if written != features.shape[0]:
            raise RuntimeError(
                f"{name} decoded to {written} frames on the second pass, {features.shape[0]} on the first"
            )
    finally:
        bar.close()
    if extractor.do_normalize:
        features.sub_(extractor.mean).div_(extractor.std * 2)
    return features


def _progress_bar(path, show: bool | None):
    """A tqdm bar over both passes, in file frames (`disable=None`: only on a terminal)."""
    from tqdm.auto import tqdm

    try:
        frames = soundfile.info(os.fspath(path)).frames
    except Exception:  # the stream raises the real error with its message
        frames = None
    total = 2 * frames if frames and frames > 0 else None
    disable = None if show is None else not show
    return tqdm(total=total, desc="reading audio (2 passes)", unit="frame", unit_scale=True, disable=disable)

"""Resampling to the model's rate: one call (`resample`) or block by block (`BlockResampler`, for long files).

Two resamplers (`RESAMPLERS`), chosen once per call:
- "soxr": libsoxr through python-soxr (`soxr.resample` / `soxr.ResampleStream`, quality "HQ"), a core dependency
  and the default: far more accurate than ours at every rate measured and as fast or faster (BENCHMARKS.md,
  "Resampling: soxr against the windowed-sinc resampler", `python -m scripts.bench.resample`);
- "sinc": the package's windowed-sinc filter in torch (`audio.sinc`): asked for by name (the benchmark's baseline),
  or the fallback where python-soxr cannot be imported (a platform without its wheels).

Both return `ceil(samples * target_sr / orig_sr)` samples, and block by block the same samples as in one call
(within float32 rounding for soxr, whose stream keeps its state in float32 as its one-shot call does).
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

from . import sinc

__all__ = ["RESAMPLERS", "BlockResampler", "check_rate", "default_resampler", "resample"]

RESAMPLERS = ("soxr", "sinc")
SOXR_QUALITY = "HQ"  # libsoxr's 20-bit precision: far below float32 audio's own noise at 16 kHz


def check_rate(value: object, name: str) -> int:
    """Return `value` as a positive Python int, or raise a ValueError/TypeError naming `name`."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer in Hz, got the bool {value!r}")
    try:
        rate = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a positive integer in Hz, got {value!r} of type {type(value).__name__}"
        ) from None
    if rate <= 0:
        raise ValueError(f"{name} must be a positive integer in Hz, got {rate}")
    return rate


def _soxr():
    try:
        import soxr
    except ImportError:
        return None
    return soxr


def default_resampler() -> str:
    """"soxr" where python-soxr is installed, else "sinc"."""
    return "soxr" if _soxr() is not None else "sinc"


def _check_resampler(resampler: str | None) -> str:
    resampler = default_resampler() if resampler is None else resampler
    if resampler not in RESAMPLERS:
        raise ValueError(f"resampler must be one of {RESAMPLERS}, got {resampler!r}")
    if resampler == "soxr" and _soxr() is None:
        raise ModuleNotFoundError(
            'resampler "soxr" needs soxr (a dependency of transformers-dass), which cannot be imported: pip install soxr',
            name="soxr",
        )
    return resampler


def resample(
    waveform: np.ndarray | torch.Tensor,
    orig_sr: int,
    target_sr: int = 16000,
    *,
    chunk_size: int = sinc.DEFAULT_CHUNK_SIZE,
    resampler: str | None = None,
) -> np.ndarray:
    """Band-limited resampling of `waveform` from `orig_sr` to `target_sr` Hz.

    Args:
        waveform: (samples,) or (channels, samples) float array or tensor.
        orig_sr: sampling rate of `waveform` in Hz, a positive integer.
        target_sr: wanted sampling rate in Hz, a positive integer.
        chunk_size: the "sinc" resampler's input samples per convolution call (memory bound; the result does not
            depend on it).
        resampler: "soxr" or "sinc"; None: `default_resampler()`.

    Returns:
        float32 numpy array (samples',) or (channels, samples') with `samples' = ceil(samples * target_sr / orig_sr)`.
        When the rates are equal the input is returned as float32 without filtering (sharing memory when it already
        is float32).
    """
    orig_sr = check_rate(orig_sr, "orig_sr")
    target_sr = check_rate(target_sr, "target_sr")
    resampler = _check_resampler(resampler)
    if resampler == "sinc" or orig_sr == target_sr:
        return sinc.resample(waveform, orig_sr, target_sr, chunk_size=chunk_size)
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim not in (1, 2):
        raise ValueError(f"waveform must have shape (samples,) or (channels, samples), got {waveform.shape}")
    length = waveform.shape[-1]
    out_length = math.ceil(length * target_sr / orig_sr) if length else 0
    if length == 0 or (waveform.ndim == 2 and waveform.shape[0] == 0):
        return np.zeros((*waveform.shape[:-1], out_length), dtype=np.float32)
    # soxr takes (frames,) or (frames, channels) and returns round(length * ratio) frames: padded or cut to the ceiling.
    out = _soxr().resample(np.ascontiguousarray(waveform.T), orig_sr, target_sr, quality=SOXR_QUALITY)
    return _fit(np.ascontiguousarray(out.T, dtype=np.float32), out_length)


def _fit(out: np.ndarray, length: int) -> np.ndarray:
    """`out` (..., n) cut or zero-padded to (..., length)."""
    if out.shape[-1] >= length:
        return out[..., :length]
    return np.concatenate([out, np.zeros((*out.shape[:-1], length - out.shape[-1]), np.float32)], axis=-1)


class BlockResampler:
    """`resample` of a mono signal that arrives in blocks.

    `push(block)` returns the output samples that are complete so far, `finish()` the rest; concatenated, they are
    `resample(whole signal, orig_sr, target_sr)` (bitwise for "sinc", within float32 rounding for "soxr").
    """

    def __init__(self, orig_sr: int, target_sr: int, resampler: str | None = None):
        orig_sr = check_rate(orig_sr, "orig_sr")
        target_sr = check_rate(target_sr, "target_sr")
        self.resampler = _check_resampler(resampler)
        self.orig_sr, self.target_sr = orig_sr, target_sr
        self._samples_in = self._samples_out = 0
        if self.resampler == "sinc" or orig_sr == target_sr:
            self._sinc = sinc.BlockResampler(orig_sr, target_sr)
        else:
            self._sinc = None
            self._stream = _soxr().ResampleStream(orig_sr, target_sr, 1, dtype="float32", quality=SOXR_QUALITY)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed (samples,) float32 input; returns the (samples',) float32 output completed by it."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self._sinc is not None:
            return self._sinc.push(block)
        self._samples_in += block.shape[0]
        return self._count(self._stream.resample_chunk(block))

    def finish(self) -> np.ndarray:
        """The output after the last input sample."""
        if self._sinc is not None:
            return self._sinc.finish()
        tail = self._count(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        wanted = math.ceil(self._samples_in * self.target_sr / self.orig_sr)
        return _fit(tail, max(wanted - (self._samples_out - tail.shape[0]), 0))

    def _count(self, out: np.ndarray) -> np.ndarray:
        self._samples_out += out.shape[0]
        return np.asarray(out, dtype=np.float32)

"""The package's own band-limited resampler, in torch: one call (`resample`) or block by block (`BlockResampler`, the
same output for a signal that arrives in pieces). `audio.resample` takes it when asked by name, or where soxr cannot be imported.

A windowed-sinc polyphase filter with the defaults of `torchaudio.functional.resample` (Hann window, 6 zero
crossings, rolloff 0.99), computed in tiles of a fixed number of input samples so that the result does not
depend on how the input is cut. Rates are checked by the caller (`audio.resample.check_rate`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["BlockResampler", "resample"]

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
# Input samples per conv1d call: bounds the temporary memory to tens of MB, whatever the length.
DEFAULT_CHUNK_SIZE = 1 << 22
# Input samples covered by one conv1d tile; fixed so that results do not depend on chunk_size.
TILE_SAMPLES = 1 << 16
# Fewest output phases per conv1d frame, see `_block_factor`.
MIN_PHASES = 8


@functools.lru_cache(maxsize=16)
def _sinc_kernels(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """Polyphase filter bank turning frames of `orig` input samples into frames of `new` outputs.

    Returns `(kernels, width)`: `kernels` (new, 1, 2 * width + orig) float32, row `j` being the taps
    that produce output phase `j` of a frame from `2 * width + orig` consecutive input samples,
    the first of which lies `width` samples before the frame's start.
    """
    cutoff = min(orig, new) * ROLLOFF  # in cycles per frame (a frame = orig inputs = new outputs)
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / cutoff)
    input_times = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    output_times = torch.arange(new, dtype=torch.float64) / new
    # Time from each output sample to each input sample, in periods of the cutoff frequency.
    t = (input_times[None, :] - output_times[:, None]) * cutoff
    t = t.clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(t * (math.pi / (2 * LOWPASS_FILTER_WIDTH))) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    kernels = sinc * window * (cutoff / orig)
    return kernels.to(torch.float32).unsqueeze(1), width


def _input_slice(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """`x[:, start:stop]` (channels, stop - start), zero-filled where it leaves the signal."""
    n = x.shape[-1]
    body = x[:, max(start, 0) : min(stop, n)]
    left, right = max(-start, 0), max(stop - n, 0)
    if left or right:
        body = torch.nn.functional.pad(body, (left, right))
    return body


def _block_factor(orig: int, new: int) -> int:
    """How many reduced frames to fuse into one conv1d frame (a power of two, >= 1).

    With a handful of phases (48 kHz -> 16 kHz has orig=3, new=1) conv1d runs a slow path for
    tiny channel counts; fusing frames gives it `new * block` output channels at the cost of zero
    taps and runs several times faster. Each output still uses the same non-zero taps.
    """
    block = 1
    while min(orig, new) * block < MIN_PHASES:
        block *= 2
    return block


def _resample_frames(
    x: torch.Tensor, orig: int, new: int, out_length: int, chunk_size: int
) -> torch.Tensor:
    """Resample `x` (channels, samples) float32 by the ratio `new / orig` (frame of orig -> new).

    Returns (channels, out_length) float32. Output frame `f` (outputs `f*new ... f*new + new - 1`)
    only reads inputs `f*orig - width ... f*orig + orig + width - 1`. Frames are cut into tiles of
    a fixed number of frames that depends only on the rates, each tile reading its own input with
    a `2 * width` overlap; `chunk_size` only sets how many tiles one conv1d call takes as a batch.
    Every call thus sees the same tile length, for which oneDNN picks the same kernel and
    summation order, so chunked and single-pass outputs are bitwise identical (letting the conv
    length vary with the chunk instead changes the last bits of some outputs).
    """
    kernels, width = _sinc_kernels(orig, new)
    taps = kernels.shape[-1]
    tile_frames = max(1, TILE_SAMPLES // orig)
    tile_step = tile_frames * orig
    tile_length = (tile_frames - 1) * orig + taps
    n_tiles = -(-out_length // (new * tile_frames))
    tiles_per_chunk = max(1, chunk_size // tile_step)
    channels = x.shape[0]
    out = x.new_empty((channels, n_tiles * tile_frames * new))
    for first in range(0, n_tiles, tiles_per_chunk):
        count = min(tiles_per_chunk, n_tiles - first)
        start = first * tile_step - width
        segment = _input_slice(x, start, start + (count - 1) * tile_step + tile_length)
        tiles = segment.unfold(-1, tile_length, tile_step).reshape(channels * count, 1, tile_length)
        phases = torch.nn.functional.conv1d(tiles, kernels, stride=orig)
        # (channels * count, new, tile_frames) phase-major -> (channels, count, tile_frames, new)
        span = out[:, first * tile_frames * new : (first + count) * tile_frames * new]
        span.view(channels, count, tile_frames, new).copy_(
            phases.view(channels, count, new, tile_frames).transpose(2, 3)
        )
    return out[:, :out_length]


def resample(
    waveform: np.ndarray | torch.Tensor,
    orig_sr: int,
    target_sr: int = 16000,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Band-limited resampling of `waveform` from `orig_sr` to `target_sr` Hz.

    Windowed-sinc polyphase filtering with the defaults of `torchaudio.functional.resample`
    (Hann window, `lowpass_filter_width=6`, `rolloff=0.99`), computed in float32 on the CPU with
    a strided `conv1d`. Long inputs are processed `chunk_size` input samples at a time; the
    result does not depend on `chunk_size`.

    Args:
        waveform: (samples,) or (channels, samples) float array or tensor.
        orig_sr: sampling rate of `waveform` in Hz, a positive integer (checked by the caller).
        target_sr: wanted sampling rate in Hz, a positive integer (checked by the caller).
        chunk_size: approximate number of input samples per convolution call (memory bound).

    Returns:
        float32 numpy array (samples',) or (channels, samples') with
        `samples' = ceil(samples * target_sr / orig_sr)`. When the rates are equal the input is
        returned as float32 without filtering (sharing memory when it already is float32).
    """
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim not in (1, 2):
        raise ValueError(
            f"waveform must have shape (samples,) or (channels, samples), got {waveform.shape}"
        )
    if orig_sr == target_sr:
        return waveform
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of samples, got {chunk_size}")
    gcd = math.gcd(orig_sr, target_sr)
    block = _block_factor(orig_sr // gcd, target_sr // gcd)
    orig, new = orig_sr // gcd * block, target_sr // gcd * block
    length = waveform.shape[-1]
    out_length = -(-length * new // orig)
    x = torch.from_numpy(np.ascontiguousarray(waveform.reshape(-1 if length else 1, length)))
    if out_length == 0 or x.shape[0] == 0:
        out = x.new_zeros((x.shape[0], 0))
    else:
        with torch.inference_mode():
            out = _resample_frames(x, orig, new, out_length, chunk_size)
    return out.numpy().reshape(*waveform.shape[:-1], out_length)


class BlockResampler:
    """`resample` of a signal that arrives in blocks.

    `push(block)` returns the output samples that are complete so far, `finish()` the rest; concatenated,
    they are `resample(whole signal, orig_sr, target_sr)`. The one-shot resampler computes its output in
    tiles of a fixed number of frames, each from its own slice of input (zero before the start and after the
    end); this class computes the same tiles as soon as their input has arrived.
    """

    def __init__(self, orig_sr: int, target_sr: int):
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

"""Reading audio files and band-limited resampling, with no torchaudio, scipy or ffmpeg.

`load_audio` decodes whatever libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1,
AIFF, ...) through `soundfile`, downmixes to mono and resamples to the model's rate with
`resample`, a windowed-sinc resampler in torch that follows the default of
`torchaudio.functional.resample` (Hann window, 6 zero crossings, rolloff 0.99). A WAV file whose data is
shorter than its header declares is read as far as it goes, with a warning (`warn_if_truncated`).
"""

from __future__ import annotations

import functools
import io
import math
import operator
import os
from typing import Union

import numpy as np
import soundfile
import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["load_audio", "resample", "warn_if_truncated"]

AudioSource = Union[str, os.PathLike, bytes, bytearray]

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
# Input samples per conv1d call: bounds the temporary memory to tens of MB, whatever the length.
DEFAULT_CHUNK_SIZE = 1 << 22
# Input samples covered by one conv1d tile; fixed so that results do not depend on chunk_size.
TILE_SAMPLES = 1 << 16
# Fewest output phases per conv1d frame, see `_block_factor`.
MIN_PHASES = 8

_CONVERT_HINT = (
    "soundfile (libsndfile) reads WAV/FLAC/OGG/MP3/AIFF and other formats it knows; convert other "
    "formats, e.g. `ffmpeg -i in.mp3 -ar 16000 -ac 1 out.wav`"
)
# A RIFF chunk size that streaming writers put when they do not know the length yet.
_OPEN_LENGTH = 0xFFFFFFFF


def _check_rate(value: object, name: str) -> int:
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
        orig_sr: sampling rate of `waveform` in Hz, a positive integer.
        target_sr: wanted sampling rate in Hz, a positive integer.
        chunk_size: approximate number of input samples per convolution call (memory bound).

    Returns:
        float32 numpy array (samples',) or (channels, samples') with
        `samples' = ceil(samples * target_sr / orig_sr)`. When the rates are equal the input is
        returned as float32 without filtering (sharing memory when it already is float32).
    """
    orig_sr = _check_rate(orig_sr, "orig_sr")
    target_sr = _check_rate(target_sr, "target_sr")
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


def _describe(source: AudioSource) -> str:
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
    name = _describe(source)
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
        raise ValueError(f"could not decode {name}: {err}. {_CONVERT_HINT}") from err
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
        f"{_describe(source)} is truncated: read {frames_read / sampling_rate:.2f} s of the "
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
    sampling_rate = _check_rate(sampling_rate, "sampling_rate")
    name = _describe(path)
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

"""Audio Needle In A Haystack (NIAH): a labelled clip (the needle) hidden in a long haystack.

The DASS paper's duration test places a 10 s AudioSet clip at a relative position inside a haystack of 10 s to
2.5 h and asks the model to tag the whole sequence; mAP is measured against the needle's labels.

Two ways to build a haystack:

- `make_haystack` works on normalised fbank features (frames, mel bins), as the authors' NIAH code does: the
  needle's features are spliced, unchanged, between haystack frames. The haystack frames are zeros in the
  normalised space (`noise="zeros"`, the original default) or the normalised fbank of a noise waveform ("white",
  or a noise file such as babble) scaled to an SNR against the needle's waveform RMS. The needle span itself holds
  no noise.
- `make_haystack_waveform` works on waveforms: the needle waveform is *added* into a noise waveform (or digital
  silence for "zeros") at the position, and `haystack_features` turns the mixture into normalised features.

Noise features are computed in chunks of whole frames (`chunked_fbank`), so hours of noise never go through one
FFT call and never need to be held as one waveform; the frames equal those of one `kaldi_fbank` call.

`ast_position_embeddings` stretches an Audio Spectrogram Transformer's position embeddings to a longer input, the
baseline the paper compares against (DASS has no positional embedding and needs nothing).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from ...audio.fbank import AUDIOSET_MEAN, AUDIOSET_STD, frame_geometry, num_frames
from ...audio.io import load_audio
from ...audio.stream import FbankStream
from ...utils.checks import finite_float, float_tensor, positive_int

__all__ = [
    "FRAMES_PER_SECOND",
    "ast_position_embeddings",
    "chunked_fbank",
    "haystack_features",
    "haystack_frames",
    "haystack_samples",
    "make_haystack",
    "make_haystack_waveform",
    "make_noise",
    "needle_start",
]

# AST / DASS count 1024 frames (10 ms hop) as "10 s": a haystack of S seconds has round(S * 102.4) frames, so the
# 10 s haystack is exactly one 1024-frame needle.
FRAMES_PER_SECOND = 102.4
# Noise samples generated and featurised per step (about 65 s at 16 kHz, 4 MB): bounds memory and FFT size. The
# white noise of chunk k is drawn from its own generator seeded with (seed, k), so this also fixes the noise values.
NOISE_CHUNK_SAMPLES = 1 << 20
NOISE_KINDS = ("zeros", "white")

Seed = int | Sequence[int]
NoiseSpec = str | os.PathLike | np.ndarray | torch.Tensor


# ----------------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------------


def haystack_frames(seconds: float) -> int:
    """Frames of a haystack of `seconds` (1024 frames = 10 s, the AST convention)."""
    seconds = finite_float(seconds, "seconds")
    if seconds <= 0:
        raise ValueError(f"a haystack length must be positive, got {seconds} s")
    return max(1, round(seconds * FRAMES_PER_SECOND))


def haystack_samples(frames: int, sampling_rate: int = 16000) -> int:
    """Fewest samples whose Kaldi fbank has exactly `frames` frames: (frames - 1) * shift + window."""
    window_size, window_shift, _ = frame_geometry(sampling_rate)
    return (positive_int(frames, "frames") - 1) * window_shift + window_size


def needle_start(total: int, needle_length: int, position: float) -> int:
    """Index where the needle starts: int(total * position), clamped so that the needle ends at `total` at most.

    Position 0 puts the needle first, 1 last (it ends with the haystack), 0.5 starts it at the middle.
    """
    position = finite_float(position, "position")
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"the needle position is relative and must be in [0, 1], got {position}")
    if needle_length > total:
        raise ValueError(f"the haystack ({total}) is shorter than the needle ({needle_length}); make it longer")
    return min(int(total * position), total - needle_length)


# ----------------------------------------------------------------------------------------------------------------
# Chunked fbank
# ----------------------------------------------------------------------------------------------------------------


def chunked_fbank(
    chunks: Iterable[torch.Tensor], num_mel_bins: int = 128, sampling_rate: int = 16000
) -> Iterator[torch.Tensor]:
    """Kaldi fbank of a waveform given as consecutive chunks, one block of frames per chunk: an iterator over
    `long_audio.FbankStream`, which carries the samples after a chunk's last whole frame into the next.
    Concatenated, the blocks equal `kaldi_fbank` of the concatenated waveform (every frame is computed from the
    same samples by the same code).

    Args:
        chunks: 1-D float tensors (samples,) of any sizes, empty ones included.

    Yields:
        (frames_i, num_mel_bins) float32 blocks; a chunk too short to finish a frame yields nothing.
    """
    stream = FbankStream(num_mel_bins, sampling_rate)  # the package's one streaming fbank (long_audio.py)
    for chunk in chunks:
        if not isinstance(chunk, torch.Tensor) or chunk.ndim != 1:
            raise ValueError("chunked_fbank expects 1-D torch tensors (samples,) as chunks")
        block = stream.push(chunk.detach().to("cpu", torch.float32))
        if block.shape[0]:
            yield block


# ----------------------------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------------------------


def _noise_source(noise: NoiseSpec, sampling_rate: int) -> str | torch.Tensor:
    """"white", or the noise recording as a 1-D float32 tensor at `sampling_rate` (a path is read and resampled)."""
    if isinstance(noise, str) and noise == "white":
        return noise
    if isinstance(noise, str) and noise == "zeros":
        raise ValueError('noise "zeros" has no waveform; make_haystack handles it without make_noise')
    if isinstance(noise, (str, os.PathLike)):
        return torch.from_numpy(load_audio(noise, sampling_rate))
    if isinstance(noise, np.ndarray):
        noise = torch.from_numpy(np.ascontiguousarray(noise))
    if not isinstance(noise, torch.Tensor):
        raise TypeError(
            f'noise must be "zeros", "white", a path to a noise recording or its 1-D waveform, got {type(noise)}'
        )
    if noise.ndim != 1 or noise.shape[0] == 0 or not noise.is_floating_point():
        raise ValueError(
            f"a noise waveform must be a non-empty 1-D float array at {sampling_rate} Hz, got shape "
            f"{tuple(noise.shape)} and dtype {noise.dtype}; downmix and resample it first (audio_io.load_audio)"
        )
    noise = noise.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(noise).all()):
        raise ValueError("the noise waveform contains NaN or infinite samples")
    return noise


def _seed_sequence(seed: Seed) -> list[int]:
    values = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in values):
        raise ValueError(f"seed must be a non-negative int or a sequence of them, got {seed!r}")
    return [int(v) for v in values]


def _raw_noise_chunks(source: str | torch.Tensor, num_samples: int, seed: list[int]) -> Iterator[torch.Tensor]:
    """Unscaled noise samples 0..num_samples-1 in chunks of NOISE_CHUNK_SAMPLES.

    White: chunk k is standard normal from numpy's generator seeded with (*seed, k). A recording: looped, starting
    at an offset drawn from the seed.
    """
    if isinstance(source, str):  # "white"
        for k, start in enumerate(range(0, num_samples, NOISE_CHUNK_SAMPLES)):
            size = min(NOISE_CHUNK_SAMPLES, num_samples - start)
            rng = np.random.default_rng([*seed, k])
            yield torch.from_numpy(rng.standard_normal(size, dtype=np.float32))
        return
    length = source.shape[0]
    offset = int(np.random.default_rng(seed).integers(length))
    for start in range(0, num_samples, NOISE_CHUNK_SAMPLES):
        index = (torch.arange(start, min(start + NOISE_CHUNK_SAMPLES, num_samples)) + offset) % length
        yield source[index]


def _scaled_noise_chunks(
    noise: NoiseSpec, num_samples: int, reference_rms: float, snr_db: float, seed: Seed, sampling_rate: int
) -> Iterator[torch.Tensor]:
    """Noise chunks with the mean removed and the RMS set to reference_rms / 10^(snr_db / 20).

    Two passes over the (regenerated) noise: the first measures its mean and RMS in float64, the second yields it.
    """
    source = _noise_source(noise, sampling_rate)
    seed = _seed_sequence(seed)
    total = 0.0
    total_sq = 0.0
    for chunk in _raw_noise_chunks(source, num_samples, seed):
        chunk = chunk.double()
        total += float(chunk.sum())
        total_sq += float(chunk.square().sum())
    mean = total / num_samples
    centred_rms = math.sqrt(max(total_sq / num_samples - mean * mean, 0.0))
    if centred_rms <= 1e-12:
        raise ValueError("the noise is silent or constant over the haystack; pass a noise recording with sound in it")
    gain = reference_rms * 10.0 ** (-snr_db / 20.0) / centred_rms
    for chunk in _raw_noise_chunks(source, num_samples, seed):
        yield ((chunk.double() - mean) * gain).to(torch.float32)


def make_noise(
    noise: NoiseSpec,
    num_samples: int,
    reference_rms: float,
    snr_db: float,
    seed: Seed = 0,
    sampling_rate: int = 16000,
) -> torch.Tensor:
    """The haystack noise waveform: zero mean, RMS = reference_rms / 10^(snr_db / 20).

    Args:
        noise: "white" (Gaussian), a path to a noise recording (read with `audio_io.load_audio`, looped) or its
            1-D waveform at `sampling_rate`.
        num_samples: length of the noise.
        reference_rms: RMS of the needle waveform, the signal of the SNR.
        snr_db: signal-to-noise ratio in dB.
        seed: int or sequence of ints; the same seed gives the same noise (for a recording: the same start offset).

    Returns:
        (num_samples,) float32. The raw noise of a shorter length is the start of a longer one's; the centring and
        scaling are measured over the whole length.
    """
    num_samples = positive_int(num_samples, "num_samples")
    reference_rms = _reference_rms(reference_rms)
    chunks = _scaled_noise_chunks(noise, num_samples, reference_rms, finite_float(snr_db, "snr_db"), seed, sampling_rate)
    out = torch.empty(num_samples)
    written = 0
    for chunk in chunks:
        out[written : written + chunk.shape[0]] = chunk
        written += chunk.shape[0]
    return out


# ----------------------------------------------------------------------------------------------------------------
# Haystacks
# ----------------------------------------------------------------------------------------------------------------


def make_haystack(
    needle: torch.Tensor | np.ndarray,
    total_frames: int,
    position: float,
    noise: NoiseSpec = "zeros",
    *,
    needle_waveform: torch.Tensor | np.ndarray | None = None,
    snr_db: float | None = None,
    seed: Seed = 0,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
    sampling_rate: int = 16000,
) -> torch.Tensor:
    """A haystack of normalised fbank features with the needle's features spliced in at `position`.

    The needle (e.g. `DassFeatureExtractor()(clip)["input_values"][0]`, 1024 frames) starts at frame
    `needle_start(total_frames, len(needle), position)`. The other `total_frames - len(needle)` frames are

    - `noise="zeros"`: zeros in the normalised space (the authors' NIAH default);
    - `noise="white"` or a noise recording (path or 1-D waveform at `sampling_rate`): the normalised fbank
      `(fbank - mean) / (2 * std)` of a noise waveform of that many frames, mean removed and scaled to `snr_db`
      below the RMS of `needle_waveform`, computed in chunks. The noise frames before the needle are the first
      frames of that noise, those after it the rest: the needle replaces noise, it is not mixed into it (for
      mixing, use `make_haystack_waveform`).

    Args:
        needle: (needle_frames, mel_bins) normalised features, torch tensor or numpy array.
        total_frames: frames of the haystack, the needle included (`haystack_frames(seconds)`).
        position: relative start in [0, 1]; 1 ends the haystack with the needle.
        noise: "zeros", "white", a path or a waveform.
        needle_waveform: (samples,) the needle's audio (its RMS sets the noise level); needed for noise.
        snr_db: needle-to-noise ratio in dB; needed for noise.
        seed: int or sequence of ints making the noise reproducible.
        mean, std: the model's normalisation (`DassFeatureExtractor.mean` / `.std`).

    Returns:
        (total_frames, mel_bins) float32 tensor on the needle's device.
    """
    device = needle.device if isinstance(needle, torch.Tensor) else torch.device("cpu")
    needle = float_tensor(needle, "needle", ndim=2)
    length, bins = needle.shape
    if length == 0 or bins == 0:
        raise ValueError(f"the needle has shape {tuple(needle.shape)}; it needs at least one frame and one bin")
    total_frames = positive_int(total_frames, "total_frames")
    start = needle_start(total_frames, length, position)
    haystack = torch.zeros(total_frames, bins)
    haystack[start : start + length] = needle
    if isinstance(noise, str) and noise == "zeros":
        return haystack.to(device)
    if needle_waveform is None or snr_db is None:
        raise ValueError(
            f"noise {_describe_noise(noise)} needs `needle_waveform` (its RMS sets the noise level) and `snr_db`"
        )
    reference_rms = _waveform_rms(needle_waveform)
    noise_frames = total_frames - length
    if noise_frames == 0:
        return haystack.to(device)
    mean, std = finite_float(mean, "mean"), finite_float(std, "std")
    samples = haystack_samples(noise_frames, sampling_rate)
    chunks = _scaled_noise_chunks(noise, samples, reference_rms, finite_float(snr_db, "snr_db"), seed, sampling_rate)
    written = 0  # noise frames written so far
    for block in chunked_fbank(chunks, bins, sampling_rate):
        block.sub_(mean).div_(2 * std)
        before = max(0, min(block.shape[0], start - written))  # rows of this block that go before the needle
        haystack[written : written + before] = block[:before]
        haystack[written + before + length : written + block.shape[0] + length] = block[before:]
        written += block.shape[0]
    return haystack.to(device)


def make_haystack_waveform(
    needle_waveform: torch.Tensor | np.ndarray,
    total_samples: int,
    position: float,
    noise: NoiseSpec = "zeros",
    *,
    snr_db: float | None = None,
    seed: Seed = 0,
    sampling_rate: int = 16000,
) -> torch.Tensor:
    """A haystack waveform: noise with the needle waveform added at `position`.

    The needle starts at sample `needle_start(total_samples, len(needle), position)`; its samples are added to the
    noise there (a mixture, unlike `make_haystack`, which replaces noise frames). The noise is digital silence for
    "zeros" (NB: silence is not zeros in the normalised feature space, it is the fbank's log floor), otherwise
    `make_noise(noise, total_samples, rms(needle), snr_db, seed)`: mean removed, its RMS `snr_db` below the
    needle's over the whole haystack. Pass the result to `haystack_features`.

    Args:
        needle_waveform: (samples,) mono float audio at `sampling_rate`, e.g. a 10 s clip.
        total_samples: haystack length in samples, the needle included (`haystack_samples(frames)` for an exact
            number of frames).

    Returns:
        (total_samples,) float32 tensor.
    """
    needle = float_tensor(needle_waveform, "needle_waveform", ndim=1)
    total_samples = positive_int(total_samples, "total_samples")
    start = needle_start(total_samples, needle.shape[0], position)
    if isinstance(noise, str) and noise == "zeros":
        haystack = torch.zeros(total_samples)
    else:
        if snr_db is None:
            raise ValueError(f"noise {_describe_noise(noise)} needs `snr_db`")
        haystack = make_noise(noise, total_samples, _waveform_rms(needle), snr_db, seed, sampling_rate)
    haystack[start : start + needle.shape[0]] += needle
    return haystack


def haystack_features(
    waveform: torch.Tensor | np.ndarray,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
    num_mel_bins: int = 128,
    sampling_rate: int = 16000,
    remove_mean: bool = True,
) -> torch.Tensor:
    """Normalised fbank (frames, num_mel_bins) of a long waveform, in chunks: what `DassFeatureExtractor` gives
    with `max_length=None` (the waveform's mean removed, kaldi fbank, `(x - mean) / (2 * std)`).

    `remove_mean=False` skips the clip mean: Kaldi removes each frame's own DC offset, so the clip mean changes
    the features only by float rounding, and without it every frame depends on its own 400 samples alone (what
    `niah_mixing.MixedHaystacks` needs to recompute a few frames of hours of audio)."""
    waveform = float_tensor(waveform, "waveform", ndim=1)
    frames = num_frames(waveform.shape[0], sampling_rate)
    if frames == 0:
        raise ValueError(f"the waveform has {waveform.shape[0]} samples, fewer than one fbank window")
    mean, std = finite_float(mean, "mean"), finite_float(std, "std")
    # The mean in float64, a chunk at a time (a float64 copy of hours of audio would be gigabytes).
    starts = range(0, waveform.shape[0], NOISE_CHUNK_SAMPLES)
    centre = 0.0
    if remove_mean:
        centre = sum(float(waveform[i : i + NOISE_CHUNK_SAMPLES].double().sum()) for i in starts) / waveform.shape[0]
    out = torch.empty(frames, num_mel_bins)
    chunks = (waveform[i : i + NOISE_CHUNK_SAMPLES] - centre for i in starts)
    written = 0
    for block in chunked_fbank(chunks, num_mel_bins, sampling_rate):
        out[written : written + block.shape[0]] = block
        written += block.shape[0]
    return out.sub_(mean).div_(2 * std)


# ----------------------------------------------------------------------------------------------------------------
# AST baseline: position embeddings for longer inputs
# ----------------------------------------------------------------------------------------------------------------


def ast_position_embeddings(
    position_embeddings: torch.Tensor, frequency_patches: int, time_patches: int, method: str = "interpolate"
) -> torch.Tensor:
    """Position embeddings of an Audio Spectrogram Transformer for `time_patches` patch columns.

    AST (`ASTForAudioClassification`) adds a learned table (1, 2 + F * T, hidden) to its tokens: the CLS and
    distillation tokens, then the patches in frequency-major order (F rows of T time columns). It only accepts the
    T its config's `max_length` gives, so a longer haystack needs a new table:

    - `"interpolate"`: the patch grid (hidden, F, T) is resized along time to `time_patches` by linear
      interpolation (bilinear with F unchanged, `align_corners=False`), or cut from the middle when shorter, and
      the two token embeddings are kept: what the authors' AST code does when it loads the 10 s AudioSet model for
      a longer `input_tdim`. This is the method for models with learned embeddings (e.g. the Hub AST).
    - `"sinusoidal"`: the whole table is replaced by the 1-D sinusoidal table of 2 + F * T positions
      (sin on even, cos on odd channels, base 10000), as the authors' `run_NIAH.py` does; only meaningful for an
      AST trained with sinusoidal embeddings.

    Args:
        position_embeddings: (1, 2 + F * T0, hidden), the model's own table at its training length.
        frequency_patches: F.
        time_patches: T, the number of patch columns of the new input.

    Returns:
        (1, 2 + F * time_patches, hidden) tensor of the input's dtype and device.
    """
    if position_embeddings.ndim != 3 or position_embeddings.shape[0] != 1:
        raise ValueError(f"expected position embeddings (1, tokens, hidden), got {tuple(position_embeddings.shape)}")
    _, tokens, hidden = position_embeddings.shape
    frequency_patches = positive_int(frequency_patches, "frequency_patches")
    time_patches = positive_int(time_patches, "time_patches")
    if method == "sinusoidal":
        return _sinusoidal_table(2 + frequency_patches * time_patches, hidden).to(position_embeddings)[None]
    if method != "interpolate":
        raise ValueError(f'method must be "interpolate" or "sinusoidal", got {method!r}')
    if (tokens - 2) % frequency_patches:
        raise ValueError(f"{tokens - 2} patch embeddings do not form {frequency_patches} frequency rows")
    old_time = (tokens - 2) // frequency_patches
    grid = position_embeddings[:, 2:].transpose(1, 2).reshape(1, hidden, frequency_patches, old_time)
    if time_patches <= old_time:
        first = old_time // 2 - time_patches // 2
        grid = grid[..., first : first + time_patches]
    else:
        grid = torch.nn.functional.interpolate(
            grid.float(), size=(frequency_patches, time_patches), mode="bilinear", align_corners=False
        ).to(grid.dtype)
    patches = grid.reshape(1, hidden, frequency_patches * time_patches).transpose(1, 2)
    return torch.cat([position_embeddings[:, :2], patches], dim=1)


def _sinusoidal_table(positions: int, hidden: int) -> torch.Tensor:
    """(positions, hidden) float32: sin(p * w_i) on channel 2i, cos(p * w_i) on 2i + 1, w_i = 10000^(-2i / hidden)."""
    position = torch.arange(positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, hidden, 2, dtype=torch.float32) * (-math.log(10000.0) / hidden))
    table = torch.zeros(positions, hidden)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : hidden // 2]
    return table


# ----------------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------------


def _waveform_rms(waveform) -> float:
    waveform = float_tensor(waveform, "needle_waveform", ndim=1)
    if waveform.shape[0] == 0:
        raise ValueError("needle_waveform is empty")
    return _reference_rms(float(waveform.double().square().mean().sqrt()))


def _reference_rms(value) -> float:
    value = finite_float(value, "reference_rms")
    if value <= 0:
        raise ValueError(
            "the needle is silent (RMS 0): an SNR against it is undefined; use noise='zeros' or another clip"
        )
    return value


def _describe_noise(noise) -> str:
    return repr(noise) if isinstance(noise, (str, os.PathLike)) else f"waveform {tuple(noise.shape)}"

"""How far two correct float32 Kaldi fbank implementations may differ, per frame and mel bin.

A log-mel value is log(E) with E = sum_k w_k |X_k|^2, X the FFT of a 512-sample frame. A float32 FFT is
accurate relative to the norm of the whole frame, not to each bin, so a bin holding a millionth of the
frame's energy carries a relative error a thousand times float32 epsilon, and its log inherits it: a fixed
atol on log-mel features passes on the machine that chose it and fails on a CPU with other FFT code (MKL's
AVX-512 kernels, another thread count, ATEN_CPU_CAPABILITY). The bound below follows the rounding of each
step through to the log, evaluated on an independent float64 computation of the frames, so it is tight where
the energy is meaningful (most bins: about 1e-5 in log) and loose only where float32 cannot resolve it.

Steps and their float32 error (u = 2**-24, unit roundoff):
- time domain (global centring, frame centring, pre-emphasis, window): a few roundings per sample, at most
  10u * ||frame|| (the pre-emphasis gain is at most 1.97), plus the frame mean's summation error, at most
  gamma_400 * mean|frame|, which pre-emphasis shrinks to 0.03 of itself on each of the 400 samples;
- FFT: ||computed - exact|| <= log2(N) * eta * ||X||, eta = u + gamma_4 * (sqrt(2) + u) ~ 7u (Higham,
  Accuracy and Stability of Numerical Algorithms, 2nd ed., thm 24.2, radix-2 Cooley-Tukey with accurate
  twiddles); two more stages for the real-input packing, so every bin is off by at most
  delta = sqrt(N) * ((log2(N) + 2) * 7u * ||x|| + ||time-domain error||);
- power: |d|X_k|^2| <= 2 |X_k| delta + delta^2 + 2u |X_k|^2;
- mel weights: each mel value (at most mel(Nyquist)) is within 4 ulp of it, and a weight is a difference of
  two of them over the filter spacing, so |dw| <= 16u * mel(Nyquist) / spacing on the filter's support and
  the bins beside it (one may flip across the edge);
- mel sum: 257 non-negative terms, gamma_257 relative;
- log and clamp at float32 epsilon: the clamp is monotone, so the log error is that of the clamped energy
  interval, plus one rounding of the log.
Two implementations each within the bound of the exact value are within twice the bound of each other.
"""

from __future__ import annotations

import math

import numpy as np

from .tolerances import U, gamma

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # Kaldi's energy floor before the log
WINDOW, SHIFT, FFT_SIZE = 400, 160, 512  # 25 ms, 10 ms, next power of two, at 16 kHz
PREEMPHASIS, LOW_FREQ_HZ = 0.97, 20.0


def mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filters_float64(num_mel_bins: int, sampling_rate: int) -> np.ndarray:
    """Kaldi's triangular mel filters in float64, (num_mel_bins, FFT_SIZE // 2 + 1), Nyquist column zero."""
    edges = np.linspace(mel(LOW_FREQ_HZ), mel(sampling_rate / 2), num_mel_bins + 2)
    bins = mel(np.arange(FFT_SIZE // 2) * sampling_rate / FFT_SIZE)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = np.maximum(0.0, np.minimum((bins - left) / (center - left), (right - bins) / (right - center)))
    return np.pad(weights, ((0, 0), (0, 1)))


def power_spectra_float64(waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact-ish Kaldi frames of a centred waveform (samples,): (power (frames, 257), ||x|| (frames,),
    time-domain float32 error bound (frames,)), all float64."""
    wave = np.asarray(waveform, dtype=np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(wave, WINDOW)[::SHIFT]
    centred = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([centred[:, :1], centred[:, :-1]], axis=1)
    n = np.arange(WINDOW)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (WINDOW - 1))
    windowed = (centred - PREEMPHASIS * previous) * hann
    spectrum = np.fft.rfft(windowed, FFT_SIZE, axis=1)
    norm = np.linalg.norm(windowed, axis=1)
    time_error = 10 * U * np.linalg.norm(frames, axis=1) + (1 - PREEMPHASIS) * math.sqrt(WINDOW) * gamma(
        WINDOW
    ) * np.abs(frames).mean(axis=1)
    return np.abs(spectrum) ** 2, norm, time_error


def log_mel_error_bound(waveform: np.ndarray, num_mel_bins: int = 128, sampling_rate: int = 16000) -> np.ndarray:
    """Bound on |computed - exact| of any float32 Kaldi log-mel fbank of `waveform`, (frames, num_mel_bins).

    waveform: (samples,) the centred signal the fbank sees (the feature extractor removes the clip mean first).
    """
    if sampling_rate != 16000:
        raise ValueError("the framing constants here are those of 16 kHz")
    power, norm, time_error = power_spectra_float64(waveform)
    weights = mel_filters_float64(num_mel_bins, sampling_rate)
    energy = power @ weights.T

    stages = math.log2(FFT_SIZE) + 2
    delta = math.sqrt(FFT_SIZE) * (stages * 7 * U * norm + time_error)[:, None]  # per-bin |dX_k|, (frames, 1)
    power_error = 2 * np.sqrt(power) * delta + delta**2 + 2 * U * power

    spacing = (mel(sampling_rate / 2) - mel(LOW_FREQ_HZ)) / (num_mel_bins + 1)
    weight_error = 16 * U * mel(sampling_rate / 2) / spacing
    support = weights > 0
    support[:, 1:] |= support[:, :-1]
    support[:, :-1] |= support[:, 1:]
    energy_error = (
        power_error @ weights.T + weight_error * (power @ support.T) + gamma(FFT_SIZE // 2 + 1) * energy
    )

    def clamped_log(e):
        return np.log(np.maximum(e, FLOAT32_EPS))

    low, high = clamped_log(energy - energy_error), clamped_log(energy + energy_error)
    centre = clamped_log(energy)
    return np.maximum(high - centre, centre - low) + 2 * U * np.abs(centre)


def centred(waveform) -> np.ndarray:
    """The signal the feature extractor's fbank sees: the clip minus its mean, (samples,) float64."""
    wave = np.asarray(waveform, dtype=np.float64)
    return wave - wave.mean()


def assert_log_mel_close(got, want, waveform, *, scale: float = 1.0, what: str = "log-mel") -> None:
    """Assert two float32 fbanks of `waveform` agree within twice the per-element rounding bound.

    got, want: (frames, num_mel_bins), raw log-mel (scale 1) or normalised features (scale = 1 / (2 * std)),
    only the frames computed from audio (no padding rows). Normalising adds one rounding of the value.
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    bound = log_mel_error_bound(waveform, num_mel_bins=want.shape[1])
    assert got.shape == want.shape == bound.shape, (got.shape, want.shape, bound.shape)
    tolerance = 2 * bound * scale + 4 * U * np.abs(want)
    excess = np.abs(got - want) - tolerance
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, (
        f"{what}: {int((excess > 0).sum())} of {excess.size} values differ by more than float32 rounding allows; "
        f"worst at frame {worst[0]}, bin {worst[1]}: {got[worst]:.6g} vs {want[worst]:.6g} "
        f"(tolerance {tolerance[worst]:.3g})"
    )

"""Needles mixed into hours of noise, affordably: the background's features once, the needle's frames per needle.

A mixed haystack is a fixed background waveform (white noise or a looped recording such as babble) with a needle
waveform added at a relative position, scaled to `snr_db` above the background's RMS. The kaldi fbank is
frame-local: frame `i` reads samples `[160 i, 160 i + 400)` only (at 16 kHz; the clip mean is not removed, see
`niah.haystack_features(remove_mean=False)`), so the mixture's features equal the background's except in the
frames whose window overlaps the needle. `MixedHaystacks` computes the background's features once per length
(streamed, `niah.haystack_features`) and, per needle, recomputes only those frames from the mixed samples: for a 3 s
needle in 2.5 h, about 300 frames instead of 921,600.

Unlike `niah.make_haystack_waveform` (noise scaled to each needle, a new noise per seed), the background here is
the same for every needle of a length (zero mean, RMS `background_rms`) and the needle is scaled to it.
"""

from __future__ import annotations

import torch

from .feature_extraction_dass import frame_geometry
from .niah import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    NoiseSpec,
    Seed,
    _as_float_tensor,
    _finite,
    _waveform_rms,
    haystack_features,
    haystack_samples,
    make_noise,
    needle_start,
)

__all__ = ["BACKGROUND_RMS", "MixedHaystacks"]

# RMS of the background waveform (about -26 dBFS): a level at which neither the needle nor the noise is near the
# fbank's log floor or full scale.
BACKGROUND_RMS = 0.05


class MixedHaystacks:
    """Haystacks of `total_frames` frames of one background, each with one needle mixed in.

    Args:
        noise: "white", a path to a noise recording (looped) or its 1-D waveform at `sampling_rate`.
        total_frames: frames of every haystack (`niah.haystack_frames(seconds)`).
        seed: makes the background reproducible (white noise values; a recording's start offset).
        mean, std: the model's feature normalisation `(x - mean) / (2 * std)`.
        background_rms: RMS of the background waveform.

    Attributes:
        background: (samples,) float32 background waveform, `samples = niah.haystack_samples(total_frames)`.
        features: (total_frames, num_mel_bins) float32 normalised features of the background.
    """

    def __init__(
        self,
        noise: NoiseSpec,
        total_frames: int,
        *,
        seed: Seed = 0,
        mean: float = DEFAULT_MEAN,
        std: float = DEFAULT_STD,
        num_mel_bins: int = 128,
        sampling_rate: int = 16000,
        background_rms: float = BACKGROUND_RMS,
    ):
        self.mean, self.std = _finite(mean, "mean"), _finite(std, "std")
        self.num_mel_bins, self.sampling_rate = num_mel_bins, sampling_rate
        self.background_rms = _finite(background_rms, "background_rms")
        self.window_size, self.window_shift, _ = frame_geometry(sampling_rate)
        samples = haystack_samples(total_frames, sampling_rate)
        self.background = make_noise(noise, samples, self.background_rms, 0.0, seed, sampling_rate)
        self.features = self._features(self.background)

    @property
    def total_frames(self) -> int:
        return self.features.shape[0]

    def scaled_needle(self, needle_waveform, snr_db: float) -> torch.Tensor:
        """(samples,) the needle scaled so that its RMS is `snr_db` above the background's."""
        needle = _as_float_tensor(needle_waveform, "needle_waveform", ndim=1)
        gain = self.background_rms * 10.0 ** (_finite(snr_db, "snr_db") / 20.0) / _waveform_rms(needle)
        return needle * gain

    def waveform(self, needle_waveform, position: float, snr_db: float) -> torch.Tensor:
        """(samples,) the whole mixture: the background with the scaled needle added at `position`."""
        needle = self.scaled_needle(needle_waveform, snr_db)
        start = needle_start(self.background.shape[0], needle.shape[0], position)
        mixture = self.background.clone()
        mixture[start : start + needle.shape[0]] += needle
        return mixture

    def needle_frames(self, start: int, length: int) -> range:
        """The frames whose window overlaps samples `[start, start + length)`."""
        first = max(0, (start - self.window_size) // self.window_shift + 1)
        last = min(self.total_frames - 1, (start + length - 1) // self.window_shift)
        return range(first, last + 1)

    def features_with(self, needle_waveform, position: float, snr_db: float) -> torch.Tensor:
        """(total_frames, num_mel_bins) normalised features of `waveform(needle, position, snr_db)`: the
        background's features with the frames over the needle recomputed from the mixed samples."""
        needle = self.scaled_needle(needle_waveform, snr_db)
        start = needle_start(self.background.shape[0], needle.shape[0], position)
        frames = self.needle_frames(start, needle.shape[0])
        first_sample = frames.start * self.window_shift
        span = self.background[first_sample : (frames.stop - 1) * self.window_shift + self.window_size].clone()
        span[start - first_sample : start - first_sample + needle.shape[0]] += needle
        out = self.features.clone()
        out[frames.start : frames.stop] = self._features(span)
        return out

    def _features(self, waveform: torch.Tensor) -> torch.Tensor:
        return haystack_features(
            waveform, self.mean, self.std, self.num_mel_bins, self.sampling_rate, remove_mean=False
        )

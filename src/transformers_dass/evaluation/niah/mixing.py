"""Needles mixed into hours of noise, affordably: the background's features once, the needle's frames per needle.

A mixed haystack is a fixed background waveform (white noise or a looped recording such as babble) with a needle
waveform added at a relative position, scaled to `snr_db` above the background's RMS. The kaldi fbank is
frame-local: frame `i` reads samples `[160 i, 160 i + 400)` only (at 16 kHz; the clip mean is not removed, see
`niah.haystack_features(remove_mean=False)`), so the mixture's features equal the background's except in the
frames whose window overlaps the needle. `MixedHaystacks` computes the background's features once per length
(streamed, `niah.haystack_features`) and, per needle, recomputes only those frames from the mixed samples: for a 3 s
needle in 2.5 h, about 300 frames instead of 921,600.

Every needle gets its own stretch of background: the background is `extra_frames` longer than a haystack and
needle `i` reads the window that starts `offset` frames in (`offset * 160` samples, so the window's frames are
frames of the whole background). And, as in `niah.make_haystack_waveform`, the haystack is at the needle's level
(the noise `snr_db` below the needle's RMS): that is the mixture at the background's level times a gain `g`, whose
log-mel features are those of the unscaled mixture plus `2 ln g` (normalised: `+ ln(g) / std`) wherever a mel
energy is above the fbank's log floor (`at_needle_level`). A background of the same level and content for every
needle would make mean pooling look better than it is: a constant background adds the same to every haystack's
mean, and only the needle is left to rank them (as with zeros).
"""

from __future__ import annotations

import math

import torch

from ...audio.fbank import AUDIOSET_MEAN, AUDIOSET_STD, LOG_FLOOR, frame_geometry
from ...utils.checks import finite_float, float_tensor
from .haystack import (
    NoiseSpec,
    Seed,
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
        extra_frames: how much longer than a haystack the background is (the range of the per-needle offsets).

    Attributes:
        background: (samples,) float32 background waveform, `niah.haystack_samples(total_frames + extra_frames)`.
        features: (total_frames + extra_frames, num_mel_bins) float32 normalised features of the background.
    """

    def __init__(
        self,
        noise: NoiseSpec,
        total_frames: int,
        *,
        seed: Seed = 0,
        mean: float = AUDIOSET_MEAN,
        std: float = AUDIOSET_STD,
        num_mel_bins: int = 128,
        sampling_rate: int = 16000,
        background_rms: float = BACKGROUND_RMS,
        extra_frames: int = 0,
    ):
        self.mean, self.std = finite_float(mean, "mean"), finite_float(std, "std")
        self.num_mel_bins, self.sampling_rate = num_mel_bins, sampling_rate
        self.background_rms = finite_float(background_rms, "background_rms")
        self.window_size, self.window_shift, _ = frame_geometry(sampling_rate)
        if isinstance(extra_frames, bool) or not isinstance(extra_frames, int) or extra_frames < 0:
            raise ValueError(f"extra_frames must be a non-negative integer, got {extra_frames!r}")
        self.total_frames, self.extra_frames = total_frames, extra_frames
        self.total_samples = haystack_samples(total_frames, sampling_rate)
        samples = haystack_samples(total_frames + extra_frames, sampling_rate)
        self.background = make_noise(noise, samples, self.background_rms, 0.0, seed, sampling_rate)
        self.features = self._features(self.background)

    def scaled_needle(self, needle_waveform, snr_db: float) -> torch.Tensor:
        """(samples,) the needle scaled so that its RMS is `snr_db` above the background's."""
        needle = float_tensor(needle_waveform, "needle_waveform", ndim=1)
        return needle * self._gain(needle, snr_db)

    def at_needle_level(self, features: torch.Tensor, needle_waveform, snr_db: float) -> torch.Tensor:
        """In place: the normalised features of a haystack at the background's level -> those of the same haystack
        at the needle's level (the noise `snr_db` below the needle's RMS). Bins above the fbank's log floor move by
        `level_shift`, floored again; bins at the floor stay (an empty mel filter has no energy at any level).
        Exact unless a mel energy lies between 0 and the floor (float32 eps), which noise at a normal level does
        not have."""
        floor = (math.log(LOG_FLOOR) - self.mean) / (2 * self.std)
        shift = self.level_shift(needle_waveform, snr_db)
        above = features > floor + 1e-4  # float32 rounding of the normalised floor
        return features.add_(above.to(features.dtype).mul_(shift)).clamp_(min=floor)

    def level_shift(self, needle_waveform, snr_db: float) -> float:
        """What to add to the normalised features of `waveform(...)` to put the haystack at the needle's level
        (noise `snr_db` below the needle's RMS): the mixture times `g = 1 / gain`, so `+ 2 ln g / (2 std)`."""
        needle = float_tensor(needle_waveform, "needle_waveform", ndim=1)
        return -math.log(self._gain(needle, snr_db)) / self.std

    def _gain(self, needle: torch.Tensor, snr_db: float) -> float:
        return self.background_rms * 10.0 ** (finite_float(snr_db, "snr_db") / 20.0) / _waveform_rms(needle)

    def waveform(self, needle_waveform, position: float, snr_db: float, offset: int = 0) -> torch.Tensor:
        """(samples,) one haystack at the background's level: the background's window from frame `offset`, the
        scaled needle added at `position`."""
        needle = self.scaled_needle(needle_waveform, snr_db)
        first = self._window_start(offset)
        mixture = self.background[first : first + self.total_samples].clone()
        start = needle_start(self.total_samples, needle.shape[0], position)
        mixture[start : start + needle.shape[0]] += needle
        return mixture

    def needle_frames(self, start: int, length: int) -> range:
        """The frames of a haystack whose window overlaps its samples `[start, start + length)`."""
        first = max(0, (start - self.window_size) // self.window_shift + 1)
        last = min(self.total_frames - 1, (start + length - 1) // self.window_shift)
        return range(first, last + 1)

    def features_with(self, needle_waveform, position: float, snr_db: float, offset: int = 0) -> torch.Tensor:
        """(total_frames, num_mel_bins) normalised features of `waveform(needle, position, snr_db, offset)`: the
        background's frames `offset ... offset + total_frames - 1`, those over the needle recomputed from the
        mixed samples."""
        needle = self.scaled_needle(needle_waveform, snr_db)
        first = self._window_start(offset)
        start = needle_start(self.total_samples, needle.shape[0], position)
        frames = self.needle_frames(start, needle.shape[0])
        span_start = first + frames.start * self.window_shift
        span_stop = first + (frames.stop - 1) * self.window_shift + self.window_size
        span = self.background[span_start:span_stop].clone()
        needle_at = first + start - span_start
        span[needle_at : needle_at + needle.shape[0]] += needle
        out = self.features[offset : offset + self.total_frames].clone()
        out[frames.start : frames.stop] = self._features(span)
        return out

    def _window_start(self, offset: int) -> int:
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= self.extra_frames:
            raise ValueError(
                f"offset must be an integer frame in [0, extra_frames={self.extra_frames}], got {offset!r}"
            )
        return offset * self.window_shift

    def _features(self, waveform: torch.Tensor) -> torch.Tensor:
        return haystack_features(
            waveform, self.mean, self.std, self.num_mel_bins, self.sampling_rate, remove_mean=False
        )

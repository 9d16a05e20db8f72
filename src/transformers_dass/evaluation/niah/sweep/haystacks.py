"""Haystacks of the NIAH sweep, one needle at a time."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ....audio.io import load_audio
from ....model.feature_extraction_dass import DassFeatureExtractor
from ..haystack import (
    haystack_features,
    haystack_samples,
    make_haystack,
    make_haystack_waveform,
)
from ..mixing import MixedHaystacks
from .arguments import NiahArguments, Point
from .needles import SAMPLING_RATE, Needle


@functools.lru_cache(maxsize=4)
def noise_waveform(path: str) -> torch.Tensor:
    """A noise file read once per run (16 kHz mono)."""
    return torch.from_numpy(load_audio(path, SAMPLING_RATE))


def noise_source(noise: str) -> str | torch.Tensor:
    """"zeros" / "white" as they are, a noise file as its waveform."""
    return noise if noise in ("zeros", "white") else noise_waveform(noise)


# Each needle's haystack starts up to this many frames (60 s) into its length's background, at an offset drawn
# from (seed, needle index): a looped noise recording of up to 60 s is heard from a different point by every needle.
BACKGROUND_OFFSET_FRAMES = 6144


@functools.lru_cache(maxsize=1)
def mixed_haystacks(noise: str, frames: int, seed: int, mean: float, std: float, num_mel_bins: int) -> MixedHaystacks:
    """The background of one length, its features computed once for all the needles of the length (the points
    run length by length, so one is kept)."""
    return MixedHaystacks(
        noise_source(noise), frames, seed=(seed, frames), mean=mean, std=std, num_mel_bins=num_mel_bins,
        sampling_rate=SAMPLING_RATE, extra_frames=BACKGROUND_OFFSET_FRAMES,
    )  # fmt: skip


def build_haystack(
    needle: Needle, extractor: DassFeatureExtractor, point: Point, frames: int, args: NiahArguments
) -> torch.Tensor:
    """(frames, mel bins) normalised haystack of one needle.

    Level "features": the needle's features (cut or padded to --needle_frames) spliced between zeros or noise
    frames (`niah.make_haystack`, noise seeded per needle). Level "waveform": the needle's audio mixed into the
    background of the length at the SNR (`niah_mixing.MixedHaystacks`, background seeded per length), each needle
    reading it from its own offset, the haystack at the needle's level (the noise `snr_db` below the needle).
    """
    if point.haystack_level == "waveform":
        if point.noise == "zeros":  # digital silence, not zeros in the normalised space: the fbank's log floor
            samples = haystack_samples(frames, SAMPLING_RATE)
            waveform = make_haystack_waveform(needle.waveform, samples, point.needle_position, "zeros")
            return haystack_features(waveform, extractor.mean, extractor.std, extractor.num_mel_bins, SAMPLING_RATE)
        haystacks = mixed_haystacks(
            point.noise, frames, args.seed, extractor.mean, extractor.std, extractor.num_mel_bins
        )
        offset = int(np.random.default_rng((args.seed, needle.index)).integers(BACKGROUND_OFFSET_FRAMES + 1))
        features = haystacks.features_with(needle.waveform, point.needle_position, point.snr_db, offset)
        return haystacks.at_needle_level(features, needle.waveform, point.snr_db)
    noise = noise_source(point.noise)
    seed = (args.seed, needle.index)
    # The needle is a fixed-length clip (the model's training length): cut what is longer.
    features = extractor(needle.waveform, sampling_rate=SAMPLING_RATE, return_tensors="pt", truncation=True)
    features = features["input_values"][0]
    return make_haystack(
        features,
        frames,
        point.needle_position,
        noise,
        needle_waveform=needle.waveform,
        snr_db=point.snr_db,
        seed=seed,
        mean=extractor.mean,
        std=extractor.std,
        sampling_rate=SAMPLING_RATE,
    )


"""`MixedHaystacks`: the background's features once, the frames over the needle recomputed, equal to the features of
the whole mixed waveform."""

from __future__ import annotations

import math

import pytest
import torch

from transformers_dass.audio.fbank import AUDIOSET_STD
from transformers_dass.audio.io import load_audio
from transformers_dass.evaluation.niah import haystack as niah
from transformers_dass.evaluation.niah.haystack import haystack_features, needle_start
from transformers_dass.evaluation.niah.mixing import MixedHaystacks

from .conftest import require_fixture
from .fbank_tolerance import assert_log_mel_close

SR = 16000


@pytest.fixture
def several_chunks(monkeypatch):
    """Noise generated and featurised in small chunks, so that the needle straddles chunk boundaries."""
    monkeypatch.setattr(niah, "NOISE_CHUNK_SAMPLES", 7001)


def make_needle() -> torch.Tensor:
    torch.manual_seed(0)
    t = torch.arange(2 * SR + 77) / SR
    return 0.3 * torch.sin(2 * torch.pi * 700 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) + 0.05 * torch.randn(t.shape)


@pytest.mark.parametrize("noise", ["white", "babble"])
@pytest.mark.parametrize(("position", "offset"), [(0.0, 0), (0.37, 13), (1.0, 200)])
def test_recomputed_frames_equal_the_features_of_the_mixed_waveform(several_chunks, noise, position, offset):
    source = load_audio(require_fixture("babble_all.wav"), SR) if noise == "babble" else "white"
    haystacks = MixedHaystacks(source, 3001, seed=5, extra_frames=200)  # about 30 s
    needle = make_needle()
    got = haystacks.features_with(needle, position, snr_db=10.0, offset=offset)
    window = haystacks.waveform(needle, position, 10.0, offset)
    assert got.shape == (3001, 128) and window.shape == (haystacks.total_samples,)
    # The reference: the whole background with the needle added, featurised as one waveform; the haystack is its
    # frames offset ... offset + 3000 (the window's frames, the window starting on a frame boundary).
    mixed = haystacks.background.clone()
    mixed[offset * 160 : offset * 160 + window.shape[0]] = window
    expected = haystack_features(mixed, remove_mean=False)[offset : offset + 3001]

    start = needle_start(haystacks.total_samples, needle.shape[0], position)
    over = haystacks.needle_frames(start, needle.shape[0])
    outside = torch.ones(3001, dtype=torch.bool)
    outside[over.start : over.stop] = False
    assert torch.equal(got[outside], expected[outside])  # untouched frames: bit for bit
    # Frames over the needle: the same float32 code, other blocking (frames per FFT call), so within the fbank
    # rounding bound of their samples (the window's), normalised.
    assert_log_mel_close(got, expected, window.numpy(), scale=1 / (2 * AUDIOSET_STD), what="frames over the needle")
    # the window on its own gives the same features (other chunk boundaries)
    alone = haystack_features(window, remove_mean=False)
    assert_log_mel_close(got, alone, window.numpy(), scale=1 / (2 * AUDIOSET_STD), what="the window alone")
    # the needle is there: its frames differ from the background's
    background = haystacks.features[offset : offset + 3001]
    assert (got[~outside] - background[~outside]).abs().amax() > 0.5
    # and the recomputed range is exactly the frames whose 400-sample window overlaps the needle
    window, shift = 400, 160
    assert over.start == 0 or (over.start - 1) * shift + window <= start < over.start * shift + window
    stop = start + needle.shape[0]
    assert over.stop == 3001 or (over.stop - 1) * shift < stop <= over.stop * shift


def test_level_shift_puts_the_haystack_at_the_needle_level():
    """features(g * mixture) = features(mixture) + ln(g) / std while no mel energy is at the log floor."""
    haystacks = MixedHaystacks("white", 1200, seed=2)
    needle = 0.02 * make_needle()  # quiet: the haystack is scaled down by about 1 / 7
    shift = haystacks.level_shift(needle, 10.0)
    window = haystacks.waveform(needle, 0.5, 10.0)
    gain = (needle.double().square().mean().sqrt() / 10 ** 0.5 / 0.05).item()
    assert shift == pytest.approx(2 * math.log(gain) / (2 * AUDIOSET_STD), rel=1e-9)
    got = haystacks.at_needle_level(haystacks.features_with(needle, 0.5, 10.0), needle, 10.0)
    floor = haystacks.features.amin()
    assert (got == floor).any() and (got > floor).float().mean() > 0.9  # empty mel filters stay at the floor
    expected = haystack_features(window * gain, remove_mean=False)
    # Scaling the samples rounds each one (relative 2^-24), within the time-domain term of the fbank bound.
    scaled = (window * gain).numpy()
    assert_log_mel_close(got, expected, scaled, scale=1 / (2 * AUDIOSET_STD), what="haystack at the needle level")


def test_needle_is_scaled_to_the_snr_above_the_fixed_background():
    haystacks = MixedHaystacks("white", 1500, seed=1, background_rms=0.05)
    assert haystacks.background.double().square().mean().sqrt().item() == pytest.approx(0.05, rel=1e-4)
    needle = 0.01 * torch.randn(SR)
    scaled = haystacks.scaled_needle(needle, 10.0)
    assert scaled.double().square().mean().sqrt().item() == pytest.approx(0.05 * 10 ** 0.5, rel=1e-4)
    with pytest.raises(ValueError, match="silent"):
        haystacks.scaled_needle(torch.zeros(SR), 10.0)
    with pytest.raises(ValueError, match="shorter than the needle"):
        haystacks.features_with(torch.randn(SR * 20), 0.5, 10.0)
    with pytest.raises(ValueError, match="extra_frames=0"):
        haystacks.features_with(needle, 0.5, 10.0, offset=1)

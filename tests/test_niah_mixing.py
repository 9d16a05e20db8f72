"""`MixedHaystacks`: the background's features once, the frames over the needle recomputed, equal to the features of
the whole mixed waveform."""

from __future__ import annotations

import pytest
import torch

from transformers_dass import niah
from transformers_dass.audio_io import load_audio
from transformers_dass.niah import haystack_features, needle_start
from transformers_dass.niah_mixing import MixedHaystacks

from .conftest import require_fixture

SR = 16000
# Frames over the needle are computed by the same code from the same float32 samples as in the whole-waveform
# call; only the number of frames per call differs, which can change how the FFT and the mel matrix product are
# blocked (summation order). For a mel energy E that is a relative error of a few float32 ulps times the FFT's
# log2 depth, far below 1e-5 of log(E), i.e. < 1e-5 after normalisation (/ 9.14) -- as long as E is not at the
# level of the rounding of the frame's largest FFT terms. The noise here is 10 dB below a loud needle and white,
# so no mel band of these frames is that small; 1e-4 leaves a margin of 10 for other CPUs' FFT code paths.
OVERLAP_TOL = 1e-4


@pytest.fixture
def several_chunks(monkeypatch):
    """Noise generated and featurised in small chunks, so that the needle straddles chunk boundaries."""
    monkeypatch.setattr(niah, "NOISE_CHUNK_SAMPLES", 7001)


@pytest.mark.parametrize("noise", ["white", "babble"])
@pytest.mark.parametrize("position", [0.0, 0.37, 1.0])
def test_recomputed_frames_equal_the_features_of_the_mixed_waveform(several_chunks, noise, position):
    source = load_audio(require_fixture("babble_all.wav"), SR) if noise == "babble" else "white"
    haystacks = MixedHaystacks(source, 3001, seed=5)  # about 30 s
    torch.manual_seed(0)
    t = torch.arange(2 * SR + 77) / SR
    needle = 0.3 * torch.sin(2 * torch.pi * 700 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) + 0.05 * torch.randn(t.shape)
    got = haystacks.features_with(needle, position, snr_db=10.0)
    expected = haystack_features(haystacks.waveform(needle, position, 10.0), remove_mean=False)
    assert got.shape == expected.shape == (3001, 128)

    start = needle_start(haystacks.background.shape[0], needle.shape[0], position)
    over = haystacks.needle_frames(start, needle.shape[0])
    outside = torch.ones(3001, dtype=torch.bool)
    outside[over.start : over.stop] = False
    assert torch.equal(got[outside], expected[outside])  # untouched frames: bit for bit
    torch.testing.assert_close(got[~outside], expected[~outside], atol=OVERLAP_TOL, rtol=0)
    # the needle is there: its frames differ from the background's
    assert (got[~outside] - haystacks.features[~outside]).abs().amax() > 0.5
    # and the recomputed range is exactly the frames whose 400-sample window overlaps the needle
    window, shift = 400, 160
    assert over.start == 0 or (over.start - 1) * shift + window <= start < over.start * shift + window
    stop = start + needle.shape[0]
    assert over.stop == 3001 or (over.stop - 1) * shift < stop <= over.stop * shift


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

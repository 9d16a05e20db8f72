"""Tests of DassFeatureExtractor and kaldi_fbank against torchaudio reference numbers and edge cases."""

import importlib.util
import json
import logging
import math
import sys

import numpy as np
import pytest
import torch

from transformers_dass.audio.fbank import kaldi_fbank, num_frames
from transformers_dass.model.feature_extraction_dass import DassFeatureExtractor

from .conftest import require_fixture
from .fbank_tolerance import assert_log_mel_close, centred

CLIPS = ["babble", "chirp3s", "short0p5s", "tone12s"]
SR = 16000
MEAN, STD = -4.2677393, 4.5689974
# Normalised value of a padded (all-zero raw fbank) frame.
PAD_ROW = (0.0 - MEAN) / (2 * STD)
HAS_TORCHAUDIO = importlib.util.find_spec("torchaudio") is not None


@pytest.fixture(scope="module")
def reference():
    """The torchaudio 2.9.1 reference tensors, {name: ndarray}."""
    from safetensors.numpy import load_file

    return load_file(str(require_fixture("fbank_kaldi.safetensors")))


@pytest.fixture
def extractor():
    return DassFeatureExtractor()


def noise(seconds: float, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    """Gaussian noise (samples,) float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def features(extractor, audio, **kwargs) -> np.ndarray:
    """input_values of one call, (batch, frames, bins)."""
    return extractor(audio, sampling_rate=SR, **kwargs)["input_values"]


# ------------------------------------------------------------------------------------------------------------
# Parity with torchaudio's kaldi.fbank (reference fixtures)
# ------------------------------------------------------------------------------------------------------------


def assert_features_close(got: np.ndarray, want: np.ndarray, wave: np.ndarray, what: str) -> None:
    """Normalised features (1024, bins) of one clip: frames from audio within float32 fbank rounding (see
    fbank_tolerance), padding rows equal up to one rounding of the normalised pad value (~0.47)."""
    real = min(want.shape[0], num_frames(len(wave)))
    assert_log_mel_close(got[:real], want[:real], centred(wave)[: (real - 1) * 160 + 400], scale=1 / (2 * STD), what=what)
    np.testing.assert_allclose(got[real:], want[real:], rtol=0, atol=4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("clip", CLIPS)
def test_input_values_match_reference(reference, extractor, clip):
    # The authors' features are cut to 10 s: parity asks for the cut.
    got = features(extractor, reference[f"wave.{clip}"], truncation=True)
    want = reference[f"input_values.{clip}"]
    assert got.shape == (1,) + want.shape == (1, 1024, 128)
    assert got.dtype == np.float32
    assert_features_close(got[0], want, reference[f"wave.{clip}"], f"input_values of {clip}")


@pytest.mark.parametrize("clip", CLIPS)
def test_raw_fbank_matches_reference(reference, clip):
    wave = torch.from_numpy(reference[f"wave.{clip}"])
    got = kaldi_fbank(wave - wave.mean())
    want = reference[f"fbank_raw.{clip}"]
    assert got.shape == want.shape
    assert got.shape[0] == 1 + (wave.shape[0] - 400) // 160
    assert_log_mel_close(got.numpy(), want, centred(reference[f"wave.{clip}"]), what=f"raw fbank of {clip}")


@pytest.mark.skipif(not HAS_TORCHAUDIO, reason="torchaudio is not installed; backend='torchaudio' parity not checked")
@pytest.mark.parametrize("clip", CLIPS)
def test_torchaudio_backend_matches_torch_backend(reference, extractor, clip):
    wave = reference[f"wave.{clip}"]
    other = DassFeatureExtractor(backend="torchaudio")
    got, want = features(other, wave, truncation=True)[0], features(extractor, wave, truncation=True)[0]
    assert_features_close(got, want, wave, f"torchaudio backend, {clip}")


def test_torchaudio_backend_missing_gives_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchaudio", None)  # makes `import torchaudio...` fail
    with pytest.raises(ImportError, match=r"pip install torchaudio.*backend='torch'"):
        DassFeatureExtractor(backend="torchaudio")(noise(1), sampling_rate=SR)


# ------------------------------------------------------------------------------------------------------------
# Framing, padding, cutting, batching
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("samples", "frames"), [(399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)])
def test_kaldi_fbank_frame_count(samples, frames):
    assert kaldi_fbank(torch.zeros(samples)).shape == (frames, 128)


def test_max_length_none_keeps_every_frame(extractor):
    assert features(extractor, noise(60), max_length=None).shape == (1, 5998, 128)


def test_long_clips_are_kept_whole_by_default(extractor):
    audio = noise(12)  # 1198 frames, longer than the training length (1024)
    got = features(extractor, audio)
    assert got.shape == (1, 1198, 128)
    np.testing.assert_array_equal(got, features(extractor, audio, max_length=None))
    assert features(extractor, audio, max_length=100).shape == (1, 1198, 128)


def test_truncation_cuts_to_leading_frames_and_says_how_much(extractor, caplog):
    audio = noise(3)
    full = features(extractor, audio, max_length=None)
    with caplog.at_level(logging.INFO, logger="transformers_dass.model.feature_extraction_dass"):
        cut = features(extractor, audio, max_length=100, truncation=True)
        features(extractor, audio, max_length=100, truncation=True)
        features(extractor, noise(0.5), max_length=100, truncation=True)  # 48 frames: padded, nothing cut
    assert cut.shape == (1, 100, 128)
    np.testing.assert_array_equal(cut, full[:, :100])
    records = [r for r in caplog.records if "truncation=True cut" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO]
    assert "cut 1 of 1 clips to max_length=100 frames (1.00 s), dropping 1.98 s of audio" in records[0].getMessage()
    short = features(DassFeatureExtractor(max_length=50), audio, truncation=True)
    assert short.shape == (1, 50, 128)


def test_truncation_without_max_length_is_refused(extractor):
    with pytest.raises(ValueError, match="truncation=True cuts clips to max_length frames: pass max_length"):
        features(extractor, noise(1), max_length=None, truncation=True)


def test_short_clip_is_padded_with_normalised_zero_rows(extractor):
    padded = features(extractor, noise(1))[0]
    assert padded.shape == (1024, 128)
    np.testing.assert_allclose(padded[98:], PAD_ROW, rtol=0, atol=1e-6)
    assert not np.allclose(padded[97], PAD_ROW)


def test_batch_equals_each_clip_alone(extractor):
    long, short = noise(3, seed=1), noise(1.5, seed=2)
    batch = features(extractor, [long, short], max_length=None)
    alone_long = features(extractor, long, max_length=None)[0]
    alone_short = features(extractor, short, max_length=None)[0]
    assert batch.shape == (2, 298, 128)
    np.testing.assert_array_equal(batch[0], alone_long)
    np.testing.assert_array_equal(batch[1, :148], alone_short)
    np.testing.assert_allclose(batch[1, 148:], PAD_ROW, rtol=0, atol=1e-6)


def test_attention_mask_marks_each_clip_and_not_batch_padding(extractor):
    clips = [noise(3, seed=1), noise(1, seed=2)]
    batch = extractor(clips, sampling_rate=SR, max_length=200)
    mask, values = batch["attention_mask"], batch["input_values"]
    assert mask.shape == (2, 298) and values.shape == (2, 298, 128)
    assert np.issubdtype(mask.dtype, np.integer)
    assert mask[0].tolist() == [1] * 298
    # The 1 s clip's own padding to max_length is part of it (the model was trained on such rows).
    assert mask[1].tolist() == [1] * 200 + [0] * 98
    alone = features(extractor, clips[1], max_length=200)[0]
    np.testing.assert_array_equal(values[1, :200], alone)
    cut = extractor(clips, sampling_rate=SR, max_length=200, truncation=True)["attention_mask"]
    assert cut.tolist() == [[1] * 200, [1] * 200]


def test_attention_mask_default_comes_from_constructor():
    assert DassFeatureExtractor()([noise(1)], sampling_rate=SR, max_length=None)["attention_mask"].tolist() == [[1] * 98]
    assert "attention_mask" not in DassFeatureExtractor(return_attention_mask=False)(noise(1), sampling_rate=SR)


# ------------------------------------------------------------------------------------------------------------
# Input types
# ------------------------------------------------------------------------------------------------------------


def test_int16_pcm_is_scaled_like_float(extractor):
    pcm = (noise(1) * 32767).astype(np.int16)
    np.testing.assert_array_equal(features(extractor, pcm), features(extractor, pcm.astype(np.float32) / 32768))


def test_int32_pcm_is_scaled_like_float(extractor):
    pcm = (noise(1).astype(np.float64) * 2**31).astype(np.int32)
    scaled = (pcm.astype(np.float64) / 2**31).astype(np.float32)
    np.testing.assert_array_equal(features(extractor, pcm), features(extractor, scaled))


def test_tensor_list_and_float64_inputs_agree(extractor):
    audio = noise(1)
    want = features(extractor, audio)
    np.testing.assert_array_equal(features(extractor, torch.from_numpy(audio)), want)
    np.testing.assert_array_equal(features(extractor, audio.tolist()), want)
    np.testing.assert_array_equal(features(extractor, audio.astype(np.float64)), want)
    np.testing.assert_array_equal(features(extractor, (audio,)), want)
    np.testing.assert_array_equal(features(extractor, audio[None, :]), want)


def test_return_tensors_pt(extractor):
    batch = extractor([noise(1), noise(2)], sampling_rate=SR, return_tensors="pt", return_attention_mask=True)
    assert isinstance(batch["input_values"], torch.Tensor)
    assert batch["input_values"].dtype == torch.float32
    assert batch["input_values"].shape == (2, 1024, 128)
    assert batch["attention_mask"].sum(dim=1).tolist() == [1024, 1024]  # both padded to the training length


def test_digital_silence_gives_the_log_floor(extractor):
    got = features(extractor, np.zeros(SR, dtype=np.float32))[0]
    floor = (math.log(np.finfo(np.float32).eps) - MEAN) / (2 * STD)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[:98], floor, rtol=0, atol=1e-5)


def test_one_hour_runs(extractor):
    hour = np.resize(noise(1), 3600 * SR)
    got = extractor(hour, sampling_rate=SR, return_tensors="pt")["input_values"]
    assert got.shape == (1, 1 + (3600 * SR - 400) // 160, 128) == (1, 359998, 128)
    assert features(extractor, hour, truncation=True).shape == (1, 1024, 128)


# ------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------


def test_wrong_sampling_rate_is_refused(extractor):
    with pytest.raises(ValueError, match=r"expects audio sampled at 16000 Hz, got 44100 Hz.*load_audio"):
        extractor(noise(1), sampling_rate=44100)


def test_missing_sampling_rate_warns_once(extractor, caplog):
    logging.Logger.warning_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="transformers_dass.model.feature_extraction_dass"):
        extractor(noise(1))
        extractor(noise(1))
    warnings = [r for r in caplog.records if "sampling_rate" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(("audio", "pattern"), [
    (np.zeros((2, SR), np.float32), r"mono.*x\.mean\(axis=0\).*list of 1-D arrays"),
    (np.zeros((SR, 2), np.float32), r"mono.*x\.mean\(axis=1\)"),
    ([np.zeros(SR, np.float32), np.zeros((2, SR), np.float32)], r"clip 1 .*mono"),
    (np.zeros((1, 2, SR), np.float32), r"expected a 1-D waveform"),
    (np.zeros(0, np.float32), r"empty.*at least 400 samples"),
    ([], r"empty.*at least 400 samples"),
    (np.zeros(399, np.float32), r"399 samples.*at least 400 samples"),
    (np.array([0.0] * 500 + [np.nan], np.float32), r"NaN or infinite"),
    (np.array([0.0] * 500 + [np.inf], np.float32), r"NaN or infinite"),
    (np.zeros(SR, np.int64), r"unsupported dtype int64"),
    (["a"] * 500, r"list of numbers"),
])
def test_bad_audio_is_refused(extractor, audio, pattern):
    with pytest.raises(ValueError, match=pattern):
        extractor(audio, sampling_rate=SR)


def test_bad_call_max_length_is_refused(extractor):
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        extractor(noise(1), sampling_rate=SR, max_length=0)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"num_mel_bins": 0}, "num_mel_bins must be a positive integer"),
    ({"num_mel_bins": 64}, None),
    ({"feature_size": 64}, r"feature_size \(64\) must equal num_mel_bins \(128\)"),
    ({"sampling_rate": "16k"}, "sampling_rate must be a positive integer"),
    ({"max_length": -5}, "max_length must be a positive integer"),
    ({"max_length": 10.5}, "max_length must be a positive integer"),
    ({"std": 0.0}, "std must be positive"),
    ({"mean": float("nan")}, "mean must be finite"),
    ({"do_normalize": "yes"}, "do_normalize must be True or False"),
    ({"backend": "librosa"}, "backend must be one of"),
    ({"padding_side": "left"}, "only pads on the right"),
])
def test_constructor_validates_arguments(kwargs, pattern):
    if pattern is None:
        assert DassFeatureExtractor(**kwargs).feature_size == kwargs["num_mel_bins"]
        return
    with pytest.raises(ValueError, match=pattern):
        DassFeatureExtractor(**kwargs)


# ------------------------------------------------------------------------------------------------------------
# Serialisation
# ------------------------------------------------------------------------------------------------------------


def test_save_and_load_restore_every_argument(tmp_path):
    args = {
        "sampling_rate": 8000,
        "num_mel_bins": 64,
        "max_length": None,
        "padding_value": -1.5,
        "do_normalize": False,
        "mean": 1.25,
        "std": 2.5,
        "return_attention_mask": True,
        "backend": "torchaudio",
    }
    original = DassFeatureExtractor(**args)
    original._kernels()  # fill the cache: it must not reach the JSON file
    original.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert not any(key.startswith("_") for key in saved)

    loaded = DassFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.feature_size == 64
    for name, value in args.items():
        assert getattr(loaded, name) == value, name
    assert loaded.to_dict() == original.to_dict()


def test_loaded_extractor_gives_same_features(tmp_path, extractor):
    extractor.save_pretrained(tmp_path)
    loaded = DassFeatureExtractor.from_pretrained(tmp_path)
    audio = noise(2)
    np.testing.assert_array_equal(features(loaded, audio), features(extractor, audio))

"""Long files in blocks: streamed resampling, chunked fbank and whole-file features equal the one-shot path."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from transformers_dass import DassFeatureExtractor
from transformers_dass.audio.fbank import kaldi_fbank
from transformers_dass.audio.io import load_audio
from transformers_dass.audio.resample import BlockResampler, default_resampler, resample
from transformers_dass.audio.stream import FbankStream, stream_audio
from transformers_dass.inference.features import long_audio_features

from .fbank_tolerance import assert_log_mel_close


def random_splits(total: int, rng: np.random.Generator, largest: int) -> list[int]:
    """Cut points 0 < ... < total at random, with some empty and one-sample blocks."""
    cuts, position = [0], 0
    while position < total:
        position = min(total, position + int(rng.choice([0, 1, rng.integers(1, largest)])))
        cuts.append(position)
    return cuts


@pytest.mark.parametrize("resampler", ["sinc"] + (["soxr"] if default_resampler() == "soxr" else []))
@pytest.mark.parametrize("orig_sr, target_sr", [(44100, 16000), (48000, 16000), (8000, 16000), (16000, 16000), (22050, 16000), (96000, 16000)])
def test_block_resampler_equals_one_shot_resample(orig_sr, target_sr, resampler):
    rng = np.random.default_rng(orig_sr)
    signal = rng.standard_normal(orig_sr * 3 + 123).astype(np.float32) * 0.3
    blocks = BlockResampler(orig_sr, target_sr, resampler=resampler)
    cuts = random_splits(signal.shape[0], rng, largest=orig_sr // 2)
    pieces = [blocks.push(signal[a:b]) for a, b in zip(cuts[:-1], cuts[1:])] + [blocks.finish()]
    streamed = np.concatenate(pieces)
    expected = resample(signal, orig_sr, target_sr, resampler=resampler)
    assert streamed.shape == expected.shape
    np.testing.assert_allclose(streamed, expected, atol=1e-6, rtol=0)


def test_fbank_stream_equals_one_kaldi_fbank_call():
    rng = np.random.default_rng(0)
    waveform = torch.from_numpy(rng.standard_normal(16000 * 2 + 77).astype(np.float32) * 0.1 + 0.05)
    offset = float(waveform.mean())
    stream = FbankStream(num_mel_bins=128, sampling_rate=16000, offset=offset)
    cuts = random_splits(waveform.shape[0], rng, largest=3000)  # blocks shorter and longer than one window
    frames = torch.cat([stream.push(waveform[a:b]) for a, b in zip(cuts[:-1], cuts[1:])])
    expected = kaldi_fbank(waveform - offset)
    assert frames.shape == expected.shape
    assert_log_mel_close(frames, expected, (waveform - offset).numpy(), what="streamed fbank")


def write_clip(path, rate: int, seconds: float, channels: int, subtype: str = "FLOAT") -> np.ndarray:
    rng = np.random.default_rng(rate + channels)
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) * (t > seconds / 2)
    data = np.stack([tone + 0.05 * rng.standard_normal(t.shape) + 0.1 * c for c in range(channels)], axis=1)
    soundfile.write(str(path), data.astype(np.float32), rate, subtype=subtype)
    return data


@pytest.mark.parametrize("rate, channels, subtype", [(16000, 1, "FLOAT"), (44100, 2, "PCM_16"), (22050, 3, "FLOAT")])
def test_long_audio_features_equal_one_shot_extractor(tmp_path, rate, channels, subtype):
    path = tmp_path / "clip.wav"
    write_clip(path, rate, 4.37, channels, subtype)
    extractor = DassFeatureExtractor()
    expected = extractor(load_audio(path), sampling_rate=16000, max_length=None, return_tensors="pt")["input_values"][0]
    streamed = long_audio_features(path, extractor, block_seconds=0.37, show_progress=False)
    assert streamed.shape == expected.shape
    # The clip mean summed by blocks in float64 can differ from torch's one-shot float32 mean by an ulp; the
    # per-frame DC removal cancels it up to rounding, which the fbank rounding bound covers.
    audio = load_audio(path).astype(np.float64)
    assert_log_mel_close(streamed, expected, audio - audio.mean(), scale=1 / (2 * extractor.std), what="streamed features")


def test_stream_audio_blocks_concatenate_to_load_audio(tmp_path):
    path = tmp_path / "clip.wav"
    write_clip(path, 44100, 2.2, 2)
    streamed = np.concatenate(list(stream_audio(path, 16000, block_seconds=0.25)))
    np.testing.assert_allclose(streamed, load_audio(path), atol=1e-6, rtol=0)


def test_long_audio_features_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        long_audio_features(tmp_path / "missing.wav", show_progress=False)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(ValueError, match="could not decode"):
        long_audio_features(junk, show_progress=False)
    short = tmp_path / "short.wav"
    soundfile.write(str(short), np.zeros(200, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="at least 400"):
        long_audio_features(short, show_progress=False)
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="no audio samples"):
        long_audio_features(empty, show_progress=False)
    nan = tmp_path / "nan.wav"
    soundfile.write(str(nan), np.array([0.0, np.nan] * 400, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        long_audio_features(nan, show_progress=False)

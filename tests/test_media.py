"""Containers libsndfile does not read (m4a, mp4 with video, webm, mkv with two audio streams, wma, amr), through PyAV.

The test media are written by PyAV itself (tests/media_files.py; no ffmpeg on PATH). Tolerances come from the codecs:
- lengths: a decoded stream may differ from what was encoded by the encoder's priming and its last frame's padding,
  at most two codec frames (AAC 1024 + up to 2048 samples, WMA 2048, Opus 960 of 48 kHz, AMR 160 of 8 kHz);
- levels: at 128 kbit/s the transform codecs (AAC, Opus, WMA) put their quantisation noise far below a pure tone
  (>= 30 dB), so its level moves by well under 0.5 dB; AMR-NB is a 12.2 kbit/s speech codec whose post-filter reshapes
  the spectrum: 1.5 dB;
- clip scores: the same top label as the WAV source, the scores within 0.05, where the codec's own noise in the band
  the model hears (0-8 kHz, measured here after aligning the decoded waveform with the source) is at least 20 dB
  below the signal: the demo model keeps 88 % of its digits in babble 10 dB below them (BENCHMARKS.md), so noise
  10 dB weaker still moves a confident score by a few hundredths at most; a decoder that read the wrong channel, rate or
  stream would move it by far more (or change the label).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import soundfile

from transformers_dass.audio.io import AUDIO_SUFFIXES, audio_info, load_audio
from transformers_dass.audio.stream import stream_audio

pytest.importorskip("av", reason="PyAV (the [media] extra, installed by dev) writes and reads the test media")

from .media_files import CODEC_RATES, KINDS, write_media  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
EDGE = 800  # samples at 16 kHz left out of level and frequency checks: codec onsets and resampler edges


def tone(rate: int, seconds: float, frequency: float = 1000.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.sin(2 * np.pi * frequency * t)


def rms_db(signal: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))))


def peak_frequency(signal: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def stereo_tone(rate: int, seconds: float = 1.5, frequency: float = 1000.0) -> np.ndarray:
    """(samples, 2): the tone at 0.6 on the left, 0.2 on the right; their mean (the downmix) is 0.4."""
    wave = tone(rate, seconds, frequency)
    return np.stack([0.6 * wave, 0.2 * wave], axis=1)


def codec_frames(suffix: str, rate: int) -> int:
    """Two codec frames of the kind's audio codec, in samples at 16 kHz: the most a stream's length may move."""
    codec = KINDS[suffix][1]
    frame, codec_rate = {"aac": (2048, rate), "wmav2": (2048, rate), "libopus": (960, 48000)}.get(codec, (160, 8000))
    return 2 * int(np.ceil(frame * 16000 / codec_rate)) + 1


@pytest.mark.parametrize("suffix", sorted(KINDS))
@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000])
def test_containers_decode_downmix_and_resample(tmp_path, suffix, rate):
    path = tmp_path / f"tone{suffix}"
    audio = stereo_tone(rate)
    if suffix == ".amr":  # AMR-NB is mono only
        audio = audio.mean(axis=1, keepdims=True)
    write_media(path, audio, rate)
    decoded = load_audio(path)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(decoded.shape[0] - 24000) <= codec_frames(suffix, rate)
    body = decoded[EDGE:-EDGE]
    assert peak_frequency(body) == pytest.approx(1000.0, abs=2.0)  # wrong rate: the peak moves by hundreds of Hz
    allowed_db = 1.5 if suffix == ".amr" else 0.5
    # The downmix is the mean of the channels (0.4): one channel alone would be 3.5 or 6 dB off, their sum 6 dB.
    assert abs(rms_db(body) - rms_db(0.4 * tone(16000, 1.0))) <= allowed_db


@pytest.mark.parametrize("suffix", [".m4a", ".mp4", ".webm", ".mkv"])
def test_blocks_equal_one_shot_and_bytes_equal_path(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    write_media(path, stereo_tone(44100, seconds=2.0, frequency=440.0), 44100)
    whole = load_audio(path)
    streamed = np.concatenate(list(stream_audio(path, block_seconds=0.3)))
    assert streamed.shape == whole.shape
    # The same decoded samples; the block-wise resampler equals the one-shot one within float32 rounding.
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), whole)
    info = audio_info(path)
    codec_rate = CODEC_RATES.get(KINDS[suffix][1], 44100)  # Opus encodes at 48 kHz whatever it is given
    assert (info.rate, info.channels) == (codec_rate, 2) and info.seconds == pytest.approx(2.0, abs=0.05)


def test_long_audio_features_of_an_mp4_equal_the_feature_extractor(tmp_path):
    from transformers_dass import DassFeatureExtractor
    from transformers_dass.inference.features import long_audio_features

    from .fbank_tolerance import assert_log_mel_close

    path = tmp_path / "video.mp4"
    rng = np.random.default_rng(0)
    write_media(path, 0.2 * rng.standard_normal((48000 * 3, 2)) + 0.3 * stereo_tone(48000, 3.0), 48000)
    extractor = DassFeatureExtractor()
    waveform = load_audio(path)
    expected = extractor(waveform, sampling_rate=16000, max_length=None, return_tensors="pt")["input_values"][0]
    features = long_audio_features(path, extractor, block_seconds=0.7, show_progress=False)
    assert features.shape == expected.shape
    raw = (features * extractor.std * 2 + extractor.mean, expected * extractor.std * 2 + extractor.mean)
    assert_log_mel_close(*raw, waveform - waveform.mean(), what="block-wise mp4 features")


def test_several_audio_streams_read_the_first_and_say_which(tmp_path, caplog):
    path = tmp_path / "two_tracks.mkv"
    write_media(path, stereo_tone(44100, frequency=1000.0), 44100, second_audio=stereo_tone(44100, frequency=3000.0))
    with caplog.at_level(logging.WARNING, logger="transformers_dass"):
        decoded = load_audio(path)
    assert peak_frequency(decoded[EDGE:-EDGE]) == pytest.approx(1000.0, abs=2.0)  # the first stream's tone
    notes = [r.getMessage() for r in caplog.records if "audio streams" in r.getMessage()]
    assert len(notes) == 1 and "has 2 audio streams; reading the first, stream #1 of 2 audio streams: aac" in notes[0]


def test_file_without_an_audio_stream_says_so(tmp_path):
    path = tmp_path / "silent_film.mp4"
    write_media(path, stereo_tone(44100, 0.5), 44100)  # then keep only its video stream
    import av

    video_only = tmp_path / "video_only.mp4"
    with av.open(str(path)) as source, av.open(str(video_only), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    with pytest.raises(ValueError, match=r"video_only.mp4 has no audio stream \(its streams: video mpeg4\)"):
        load_audio(video_only)


@pytest.mark.parametrize("damage", ["cut", "noise"])
def test_corrupt_mp4_is_one_clear_line(tmp_path, damage):
    path = tmp_path / "broken.mp4"
    write_media(path, stereo_tone(44100, 1.0), 44100)
    content = path.read_bytes()
    if damage == "cut":  # the mp4 muxer writes its index (moov) at the end: cut in half, nothing can be read
        path.write_bytes(content[: len(content) // 2])
    else:
        path.write_bytes(np.random.default_rng(1).integers(0, 256, len(content), dtype=np.uint8).tobytes())
    with pytest.raises(ValueError) as caught:
        load_audio(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"could not decode {path}: libsndfile: ")
    assert "FFmpeg: " in message and "damaged or not audio" in message


def test_truncated_webm_is_read_as_far_as_it_goes_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cut.webm"
    write_media(path, stereo_tone(48000, 2.0), 48000)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) * 6 // 10])
    with caplog.at_level(logging.WARNING, logger="transformers_dass"):
        decoded = load_audio(path)
    assert 0.5 * 16000 < decoded.shape[0] < 1.5 * 16000
    assert any("cut.webm is truncated: read" in r.getMessage() for r in caplog.records)


def test_folders_are_searched_for_media_suffixes():
    assert {".m4a", ".mp4", ".mov", ".webm", ".mkv", ".wma", ".amr", ".wav", ".flac"} <= AUDIO_SUFFIXES


# ---------------------------------------------------------------------------------------------------------------
# The "done when": the same labels as the WAV source, through every front end


def _aligned_noise_db(source: np.ndarray, decoded: np.ndarray) -> float:
    """Energy of `decoded - source` relative to `source`, in dB, after shifting `decoded` by the lag (within 0.25 s)
    that best matches them (codecs delay the signal by their priming)."""
    from scipy.signal import correlate

    lags = np.arange(-len(source) + 1, len(decoded))
    correlation = correlate(decoded, source, mode="full", method="fft")
    window = np.abs(lags) <= 4000
    lag = int(lags[window][np.argmax(correlation[window])])
    shifted = np.zeros_like(source)
    piece = decoded[max(lag, 0) : max(lag, 0) + len(source) - max(-lag, 0)]
    shifted[max(-lag, 0) : max(-lag, 0) + len(piece)] = piece
    return rms_db(shifted - source) - rms_db(source)


@pytest.fixture(scope="module")
def demo_model():
    from transformers_dass.inference.loading import load_model

    return load_model(None, "float32")


@pytest.mark.parametrize("example", ["seven_in_babble.wav", "scene_siren_three.wav"])
@pytest.mark.parametrize("suffix", [".m4a", ".mp4", ".webm", ".mkv"])
def test_containers_classify_as_their_wav_source(tmp_path, demo_model, example, suffix):
    pytest.importorskip("scipy.signal", reason="scipy (dev extra) aligns the decoded waveform with its source")
    from transformers_dass.inference.classify import classify_file

    source_path = os.path.join(EXAMPLES, example)
    data, rate = soundfile.read(source_path, always_2d=True)
    path = tmp_path / f"copy{suffix}"
    # mp4 and webm with their video stream; the mkv holds a second, quieter audio stream after the first.
    write_media(path, data, rate, second_audio=0.1 * data if suffix == ".mkv" else None)
    assert _aligned_noise_db(load_audio(source_path), load_audio(path)) < -20.0
    model, extractor = demo_model.model, demo_model.extractor
    expected = classify_file(source_path, model, extractor, top_k=3).labels
    labels = classify_file(path, model, extractor, top_k=3).labels
    assert labels[0]["label"] == expected[0]["label"]
    scores = {item["label"]: item["score"] for item in labels}
    for item in expected:
        if item["label"] in scores:
            assert abs(scores[item["label"]] - item["score"]) <= 0.05, (item, labels)


def test_dass_tag_tags_a_folder_of_mixed_containers(tmp_path):
    pytest.importorskip("pyarrow", reason="dass tag writes Parquet (tag extra, in dev)")
    import pandas as pd

    from transformers_dass.cli import main

    folder = tmp_path / "archive"
    (folder / "phone").mkdir(parents=True)
    data, rate = soundfile.read(os.path.join(EXAMPLES, "seven_in_babble.wav"), always_2d=True)
    soundfile.write(folder / "source.wav", data, rate)
    soundfile.write(folder / "source.flac", data, rate)
    for suffix in (".m4a", ".mp4", ".mov", ".webm", ".mkv", ".mka", ".wma"):
        write_media(folder / "phone" / f"copy{suffix}", data, rate)
    write_media(folder / "phone" / "copy.amr", data[:, :1], rate)
    (folder / "notes.txt").write_text("not audio")
    output = tmp_path / "tags.parquet"
    assert main(["tag", str(folder), "--output", str(output), "--num-workers", "0", "--top-k", "1"]) == 0
    table = pd.read_parquet(output)
    assert len(table) == 10 and table["error"].isna().all()
    rates = dict(zip(table["path"].map(lambda p: os.path.splitext(p)[1]), table["sample_rate"]))
    # Each file's own rate: the source's 16 kHz, Opus's 48 kHz, AMR-NB's 8 kHz.
    assert rates == {".wav": 16000, ".flac": 16000, ".m4a": 16000, ".mp4": 16000, ".mov": 16000, ".mkv": 16000,
                     ".wma": 16000, ".webm": 48000, ".mka": 48000, ".amr": 8000}  # fmt: skip
    top = dict(zip(table["path"].map(lambda p: os.path.splitext(p)[1]), table["labels"].map(lambda labels: labels[0])))
    # AMR-NB keeps 300-3400 Hz only (a phone line): the digit's sibilant is gone, its label may change.
    assert {suffix: label for suffix, label in top.items() if suffix != ".amr"} == dict.fromkeys(rates.keys() - {".amr"}, "seven")


def test_dataset_bytes_and_demo_uploads_read_media(tmp_path, demo_model):
    from transformers_dass.audio.decoding import decode_audio
    from transformers_dass.inference.classify import classify_file
    from transformers_dass.webapp.analysis import Tagger, check_audio_file

    data, rate = soundfile.read(os.path.join(EXAMPLES, "seven_in_babble.wav"), always_2d=True)
    path = tmp_path / "memo.m4a"
    write_media(path, data, rate)
    # `dass tag --dataset` rows: datasets.Audio(decode=False) values with the encoded bytes.
    np.testing.assert_array_equal(decode_audio({"bytes": path.read_bytes(), "path": "memo.m4a"}), load_audio(path))
    assert check_audio_file(path, max_bytes=1 << 20) == "16000 Hz, 1 channel, 3.00 s"
    tagger = Tagger.__new__(Tagger)  # the page's analysis with the model already loaded
    tagger.model, tagger.extractor, tagger.max_bytes = demo_model.model, demo_model.extractor, 1 << 20
    analysis = tagger.analyse(path, top_k=1)
    expected = classify_file(path, demo_model.model, demo_model.extractor, top_k=1).labels
    assert analysis.labels == {expected[0]["label"]: expected[0]["score"]} and expected[0]["label"] == "seven"

"""Resampling against scipy (an independent reference) and file loading through soundfile."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch

from transformers_dass.audio import sinc as resampling
from transformers_dass.audio.io import load_audio
from transformers_dass.audio.media import media_available
from transformers_dass.audio.resample import default_resampler, resample

from .conftest import hide_package, require_fixture

EDGE = 100  # output samples ignored at each end, where the filters see the zero padding
# Both resamplers (soxr is a core dependency; the windowed sinc is kept by name and as its fallback).
RESAMPLERS = ["sinc"] + (["soxr"] if default_resampler() == "soxr" else [])


def sine(frequency: float, rate: int, seconds: float = 2.0, amplitude: float = 1.0) -> np.ndarray:
    """(rate * seconds,) float64 sine starting at phase 0."""
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def peak_frequency(signal: np.ndarray, rate: int) -> float:
    """Frequency in Hz of the largest FFT bin of a Hann-windowed `signal` (samples,)."""
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def rms_db(signal: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))))


# ---------------------------------------------------------------------------------------------
# resample


@pytest.mark.parametrize("resampler", RESAMPLERS)
@pytest.mark.parametrize("orig_sr", [44100, 48000, 8000])
@pytest.mark.parametrize("frequency", [440.0, 1000.0])
def test_resample_sine_matches_scipy(resampler, orig_sr, frequency):
    signal = pytest.importorskip("scipy.signal", reason="scipy (dev extra) is the reference")
    x = sine(frequency, orig_sr)
    y = resample(x, orig_sr, 16000, resampler=resampler)
    gcd = math.gcd(orig_sr, 16000)
    reference = signal.resample_poly(x, 16000 // gcd, orig_sr // gcd)
    assert y.dtype == np.float32
    assert y.shape == reference.shape == (32000,)
    # Measured about 2e-3; a one-sample shift or a 1 % gain error gives more than 1e-2.
    np.testing.assert_allclose(y[EDGE:-EDGE], reference[EDGE:-EDGE], rtol=0, atol=5e-3)
    assert peak_frequency(y[EDGE:-EDGE], 16000) == pytest.approx(frequency, abs=1.0)


@pytest.mark.parametrize("resampler", RESAMPLERS)
@pytest.mark.parametrize("orig_sr", [48000, 44100])
def test_resample_removes_tone_above_new_nyquist(resampler, orig_sr):
    x = sine(10000.0, orig_sr, seconds=1.0)
    y = resample(x, orig_sr, 16000, resampler=resampler)
    # A 10 kHz tone would alias to 6 kHz; the Hann-windowed sinc stops it by about 45 dB.
    assert rms_db(y[EDGE:-EDGE]) - rms_db(x) < -40.0


@pytest.mark.parametrize("resampler", RESAMPLERS)
def test_resample_passes_tone_below_cutoff_at_full_level(resampler):
    y = resample(sine(3000.0, 48000, seconds=1.0), 48000, 16000, resampler=resampler)
    assert abs(rms_db(y[EDGE:-EDGE]) - rms_db(sine(3000.0, 16000, seconds=1.0))) < 0.05


@pytest.mark.parametrize(("orig_sr", "target_sr"), [(44100, 16000), (48000, 16000), (8000, 16000)])
def test_resample_chunks_are_seamless(orig_sr, target_sr):
    x = np.random.default_rng(0).standard_normal(3 * orig_sr + 17).astype(np.float32)
    one_pass = resample(x, orig_sr, target_sr, resampler="sinc")
    for chunk_size in (1, 5000, 70001, 150000):
        chunked = resample(x, orig_sr, target_sr, chunk_size=chunk_size, resampler="sinc")
        np.testing.assert_array_equal(chunked, one_pass, err_msg=f"chunk_size={chunk_size}")


@pytest.mark.parametrize(("orig_sr", "target_sr"), [(44100, 16000), (48000, 16000), (8000, 16000)])
def test_resample_tiles_are_seamless(monkeypatch, orig_sr, target_sr):
    """Tiles of any size give the output of a single tile, up to float32 rounding."""
    x = np.random.default_rng(7).standard_normal(orig_sr + 5).astype(np.float32)
    monkeypatch.setattr(resampling, "TILE_SAMPLES", 1 << 18)  # the whole input in one tile
    single_tile = resample(x, orig_sr, target_sr, resampler="sinc")
    monkeypatch.setattr(resampling, "TILE_SAMPLES", 999)
    many_tiles = resample(x, orig_sr, target_sr, resampler="sinc")
    # A seam (a missing or misplaced overlap) moves outputs next to it by about 0.1 or more.
    np.testing.assert_allclose(many_tiles, single_tile, rtol=0, atol=1e-5)


@pytest.mark.parametrize("resampler", RESAMPLERS)
def test_resample_channels_are_independent(resampler):
    x = np.random.default_rng(1).standard_normal((3, 20000)).astype(np.float32)
    batched = resample(x, 44100, 16000, resampler=resampler)
    for channel in range(3):
        np.testing.assert_array_equal(batched[channel], resample(x[channel], 44100, 16000, resampler=resampler))


@pytest.mark.parametrize("resampler", RESAMPLERS)
def test_resample_accepts_tensors(resampler):
    x = np.random.default_rng(2).standard_normal(10000)
    from_tensor = resample(torch.from_numpy(x), 48000, 16000, resampler=resampler)
    assert isinstance(from_tensor, np.ndarray)
    np.testing.assert_array_equal(from_tensor, resample(x, 48000, 16000, resampler=resampler))


@pytest.mark.parametrize("resampler", RESAMPLERS)
@pytest.mark.parametrize(
    ("orig_sr", "target_sr"), [(44100, 16000), (48000, 16000), (16000, 44100), (16000, 22050)]
)
@pytest.mark.parametrize("length", [0, 1, 2, 3, 7, 440, 441, 442, 44100, 44101])
def test_resample_length_is_ceiling(resampler, orig_sr, target_sr, length):
    y = resample(np.ones(length, dtype=np.float32), orig_sr, target_sr, resampler=resampler)
    assert y.shape == (math.ceil(Fraction(length * target_sr, orig_sr)),)


@pytest.mark.parametrize("resampler", RESAMPLERS)
def test_resample_same_rate_returns_input_as_float32(resampler):
    x = np.random.default_rng(3).standard_normal(1000)
    y = resample(x, 16000, 16000, resampler=resampler)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x.astype(np.float32))
    np.testing.assert_array_equal(resample(torch.from_numpy(x), 22050, 22050, resampler=resampler), y)


@pytest.mark.parametrize("bad", [0, -16000])
def test_resample_rejects_non_positive_rates(bad):
    with pytest.raises(ValueError, match="orig_sr must be a positive integer"):
        resample(np.zeros(10), bad, 16000)
    with pytest.raises(ValueError, match="target_sr must be a positive integer"):
        resample(np.zeros(10), 16000, bad)


@pytest.mark.parametrize("bad", [16000.5, 16000.0, "16000", None, True])
def test_resample_rejects_non_integer_rates(bad):
    with pytest.raises(TypeError, match="orig_sr must be a positive integer"):
        resample(np.zeros(10), bad, 16000)


@pytest.mark.parametrize("resampler", RESAMPLERS)
def test_resample_rejects_wrong_rank(resampler):
    with pytest.raises(ValueError, match="shape"):
        resample(np.zeros((1, 2, 3)), 44100, 16000, resampler=resampler)


def test_resample_rejects_unknown_resampler():
    with pytest.raises(ValueError, match=r"resampler must be one of \('soxr', 'sinc'\)"):
        resample(np.zeros(10), 44100, 16000, resampler="linear")


@pytest.mark.parametrize("orig_sr", [8000, 22050, 44100, 48000, 96000])
def test_soxr_matches_the_analytic_tones(orig_sr):
    """soxr HQ against the exact 16 kHz samples of tones up to 7/8 of the lower Nyquist frequency.

    libsoxr's "HQ" filter is specified to 20 bits (2^-20 ~ 1e-6 of full scale, passband ripple included); the input
    is rounded to float32 (2^-24 relative); the passband edge lies above 0.9 of Nyquist. Measured: 1.3e-4 at the
    non-integer ratios (22.05 / 44.1 kHz, where the 7 kHz tone nears that edge), 3e-7 elsewhere. The windowed sinc
    reaches 3e-2 there (its Hann window's transition band begins below 7 kHz): 2e-3 separates the two by 10x both ways.
    """
    pytest.importorskip("soxr", reason="soxr, a core dependency, cannot be imported here")
    nyquist = min(orig_sr, 16000) / 2
    frequencies = [100.0, 1000.0] + [f * nyquist for f in (0.5, 0.75, 0.875)]
    x = sum(sine(f, orig_sr, seconds=1.0, amplitude=0.15) for f in frequencies)
    expected = sum(sine(f, 16000, seconds=1.0, amplitude=0.15) for f in frequencies)
    y = resample(x.astype(np.float32), orig_sr, 16000, resampler="soxr")
    np.testing.assert_allclose(y[EDGE * 16 : -EDGE * 16], expected[EDGE * 16 : -EDGE * 16], rtol=0, atol=2e-3)


def test_without_soxr_the_windowed_sinc_is_taken(monkeypatch):
    from transformers_dass.audio import resample as dispatch

    monkeypatch.setattr(dispatch, "_soxr", lambda: None)
    assert dispatch.default_resampler() == "sinc"
    x = np.random.default_rng(8).standard_normal(4410).astype(np.float32)
    np.testing.assert_array_equal(resample(x, 44100, 16000), resampling.resample(x, 44100, 16000))
    with pytest.raises(ModuleNotFoundError, match=r"needs soxr \(a dependency of transformers-dass\), which cannot be imported: pip install soxr"):
        resample(x, 44100, 16000, resampler="soxr")


# ---------------------------------------------------------------------------------------------
# load_audio


def test_load_int16_wav_scales_to_float(tmp_path):
    data = np.random.default_rng(4).uniform(-0.99, 0.99, 16000).astype(np.float32)
    path = tmp_path / "mono.wav"
    sf.write(path, data, 16000, subtype="PCM_16")
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    np.testing.assert_allclose(audio, data, rtol=0, atol=1 / 32768)


def test_load_int16_wav_is_exact(tmp_path):
    pcm = np.array([0, 1, -1, 16384, -16384, 32767, -32768], dtype=np.int16)
    path = tmp_path / "exact.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(str(path)), pcm.astype(np.float32) / 32768)


def test_load_stereo_flac_downmixes_and_resamples(tmp_path):
    left = sine(440.0, 44100, seconds=1.5, amplitude=0.8)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, 0.5 * left], axis=1), 44100, subtype="PCM_16")
    audio = load_audio(path, sampling_rate=16000)
    expected_length = math.ceil(Fraction(len(left) * 16000, 44100))
    assert audio.dtype == np.float32 and audio.shape == (expected_length,)
    # The average of the channels: taking one channel or their sum would be off by 0.2 or more.
    expected = sine(440.0, 16000, seconds=expected_length / 16000, amplitude=0.6)
    np.testing.assert_allclose(audio[EDGE:-EDGE], expected[EDGE:-EDGE], rtol=0, atol=2e-3)

    channels = load_audio(path, sampling_rate=16000, mono=False)
    assert channels.shape == (2, expected_length)
    np.testing.assert_allclose(channels.mean(axis=0), audio, rtol=0, atol=1e-6)


def test_load_ogg_vorbis(tmp_path):
    if "VORBIS" not in sf.available_subtypes("OGG"):
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} here cannot write OGG/Vorbis")
    path = tmp_path / "tone.ogg"
    tone = sine(1000.0, 22050, seconds=1.0, amplitude=0.5)
    sf.write(path, tone, 22050, format="OGG", subtype="VORBIS")
    audio = load_audio(path)
    assert audio.dtype == np.float32
    assert abs(len(audio) - 16000) <= 16  # lossy codecs may trim or pad a few samples
    assert peak_frequency(audio, 16000) == pytest.approx(1000.0, abs=2.0)
    assert rms_db(audio[EDGE:-EDGE]) == pytest.approx(rms_db(np.full(2, 0.5 / np.sqrt(2))), abs=0.5)


def test_load_bytes_matches_path(tmp_path):
    data = np.random.default_rng(5).uniform(-0.5, 0.5, (8000, 2))
    path = tmp_path / "clip.wav"
    sf.write(path, data, 8000, subtype="PCM_16")
    from_path = load_audio(path)
    content = path.read_bytes()
    np.testing.assert_array_equal(load_audio(content), from_path)
    np.testing.assert_array_equal(load_audio(bytearray(content)), from_path)
    assert from_path.shape == (16000,)


def test_load_missing_file(tmp_path):
    missing = tmp_path / "nowhere.wav"
    with pytest.raises(FileNotFoundError, match="nowhere.wav"):
        load_audio(missing)


def test_load_corrupted_file(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(6).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="could not decode") as caught:
        load_audio(path)
    message = str(caught.value)
    assert str(path) in message and "ffmpeg" in message.lower() and "\n" not in message
    if media_available():  # both decoders tried, both reasons given
        assert "libsndfile: " in message and "FFmpeg: " in message
    else:
        assert isinstance(caught.value.__cause__, sf.SoundFileError)


def test_without_pyav_what_libsndfile_cannot_read_names_the_media_extra(tmp_path, monkeypatch):
    from transformers_dass.audio.io import audio_info
    from transformers_dass.audio.media import MediaFile
    from transformers_dass.audio.stream import stream_audio

    path = tmp_path / "phone.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))  # an m4a header libsndfile does not know
    hide_package(monkeypatch, "av")
    assert not media_available()
    hint = r'pip install "transformers-dass\[media\]"'
    for call in (load_audio, audio_info, lambda p: list(stream_audio(p)), lambda p: load_audio(p.read_bytes())):
        with pytest.raises(ValueError, match=rf"could not decode .*: .*{hint}") as caught:
            call(path)
        assert isinstance(caught.value.__cause__, sf.SoundFileError)
    with pytest.raises(ModuleNotFoundError, match=rf"needs av, which is not installed: {hint}"):
        MediaFile(path)


def test_load_corrupted_bytes():
    with pytest.raises(ValueError, match="could not decode <in-memory audio file, 5 bytes>"):
        load_audio(b"hello")


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(ValueError, match="no audio samples") as caught:
        load_audio(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_load_non_finite_samples(tmp_path, bad_value):
    data = np.zeros(100, dtype=np.float32)
    data[50] = bad_value
    path = tmp_path / "broken.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_audio(path)


def test_load_rejects_other_inputs():
    with pytest.raises(TypeError, match="path"):
        load_audio(12345)
    with pytest.raises(ValueError, match="sampling_rate"):
        load_audio(b"", sampling_rate=0)


def test_load_real_recording():
    path = require_fixture("babble_all.wav")
    audio = load_audio(path)
    # 15.06 s at 16 kHz: read as is, no resampling.
    assert audio.dtype == np.float32 and audio.shape == (240960,)
    from safetensors.numpy import load_file

    np.testing.assert_array_equal(audio, load_file(str(require_fixture("fbank_kaldi.safetensors")))["wave.babble"])
    assert load_audio(path, sampling_rate=8000).shape == (120480,)

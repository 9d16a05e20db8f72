"""WAV files whose data is shorter than their header declares are read as far as they go, with a warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from transformers_dass.audio.io import load_audio, warn_if_truncated
from transformers_dass.audio.stream import stream_audio
from transformers_dass.inference.features import long_audio_features

from .conftest import require_fixture

LOGGER = "transformers_dass.audio.io"


@pytest.fixture
def babble_bytes() -> bytes:
    return require_fixture("babble_all.wav").read_bytes()


def truncation_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and "truncated" in r.getMessage()]


def test_load_audio_warns_with_read_and_declared_seconds(babble_bytes, tmp_path, caplog):
    path = tmp_path / "cut.wav"
    path.write_bytes(babble_bytes[:20000])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        waveform = load_audio(path)
    assert waveform.shape == ((20000 - 44) // 2,)
    np.testing.assert_array_equal(waveform, load_audio(require_fixture("babble_all.wav"))[: waveform.shape[0]])
    assert truncation_warnings(caplog) == [
        f"{path} is truncated: read 0.62 s of the 15.06 s its header declares; the rest of the recording is "
        "missing (copy or export the file again to use all of it)"
    ]


def test_in_memory_truncated_wav_warns(babble_bytes, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_audio(babble_bytes[:40044])
    assert len(truncation_warnings(caplog)) == 1 and "read 1.25 s of the 15.06 s" in caplog.text


def test_complete_files_do_not_warn(babble_bytes, tmp_path, caplog):
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((4410, 2), dtype=np.float32), 44100, subtype="PCM_24")
    with_list_chunk = tmp_path / "list.wav"  # a chunk after the data: the file is longer than its data
    with_list_chunk.write_bytes(babble_bytes + b"LIST\x04\x00\x00\x00INFO")
    cut_in_trailing_chunk = tmp_path / "cut_list.wav"  # damage after the data chunk leaves the audio whole
    cut_in_trailing_chunk.write_bytes(babble_bytes + b"LIST\x40\x00\x00\x00INFO")
    flac = tmp_path / "clip.flac"
    sf.write(flac, np.zeros(16000, dtype=np.float32), 16000)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for path in (require_fixture("babble_all.wav"), stereo, with_list_chunk, cut_in_trailing_chunk, flac):
            load_audio(path)
        load_audio(babble_bytes)
    assert truncation_warnings(caplog) == []


def test_streaming_header_of_open_length_does_not_warn(babble_bytes, caplog):
    # Writers that stream to a pipe put 0xFFFFFFFF as the data size: the length is unknown, not wrong.
    data_size_at = babble_bytes.index(b"data") + 4
    streamed = babble_bytes[:data_size_at] + b"\xff\xff\xff\xff" + babble_bytes[data_size_at + 4 : 20000]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not warn_if_truncated(streamed, 9978, 16000)
    assert truncation_warnings(caplog) == []


def test_multichannel_truncated_wav_declares_seconds_not_samples(tmp_path, caplog):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.zeros((48000 * 2, 2), dtype=np.float32), 48000, subtype="PCM_24")  # 2 s, 288000 B/s
    path.write_bytes(path.read_bytes()[: 44 + 288000 // 2])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_audio(path)
    assert "read 0.50 s of the 2.00 s its header declares" in caplog.text


def test_block_reader_warns_once_per_file(babble_bytes, tmp_path, caplog):
    path = tmp_path / "cut.wav"
    path.write_bytes(babble_bytes[:100044])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        blocks = list(stream_audio(path, block_seconds=0.5))
        features = long_audio_features(path, show_progress=False)
    assert sum(b.shape[0] for b in blocks) == 50000
    assert features.shape[0] == 1 + (50000 - 400) // 160
    # one from stream_audio, one from long_audio_features' two passes
    assert truncation_warnings(caplog) == [
        f"{path} is truncated: read 3.12 s of the 15.06 s its header declares; the rest of the recording is "
        "missing (copy or export the file again to use all of it)"
    ] * 2


def test_header_only_wav_warns_then_says_it_holds_no_samples(babble_bytes, tmp_path, caplog):
    path = tmp_path / "header.wav"
    path.write_bytes(babble_bytes[:44])
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(ValueError, match="no audio samples"):
        load_audio(path)
    assert "read 0.00 s of the 15.06 s" in caplog.text


def test_header_chunks_before_the_data_are_skipped_with_their_padding(tmp_path, caplog):
    # an odd-sized chunk (padded to an even size) before fmt, then 1 s declared and 0.5 s present
    fmt = (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
    fmt += (32000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    chunks = b"JUNK" + (3).to_bytes(4, "little") + b"abc\x00" + b"fmt " + (16).to_bytes(4, "little") + fmt
    chunks += b"data" + (32000).to_bytes(4, "little") + np.full(8000, 1000, dtype="<i2").tobytes()
    path = tmp_path / "junk.wav"
    path.write_bytes(b"RIFF" + (4 + len(chunks) + 16000).to_bytes(4, "little") + b"WAVE" + chunks)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        waveform = load_audio(path)
    assert waveform.shape == (8000,)
    assert "read 0.50 s of the 1.00 s its header declares" in caplog.text

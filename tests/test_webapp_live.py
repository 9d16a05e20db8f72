"""The Live tab of `dass demo` without a browser: its handlers fed the chunks gradio streams from a microphone,
(rate, int16 samples), here the example scene at 48 kHz stereo in half-second chunks (gradio's `stream_every`)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from transformers_dass.audio.resample import resample
from transformers_dass.webapp.analysis import Tagger
from transformers_dass.webapp.live_tab import EVENT_COLUMNS, LiveTab, chunk_samples

from .webapp_server import EXAMPLES, SCENE

BROWSER_RATE = 48_000
CHUNK = BROWSER_RATE // 2  # 0.5 s: gradio's default stream_every
SIREN_S = (1.5, 3.8)  # examples/README.md: the siren of scene_siren_three.wav
# The block resampler holds back samples its filter still needs until the next block or the end: late, not lost
# (soxr from 48 to 16 kHz in 0.5 s blocks: 11 to 36 ms, varying with its internal buffering).
RESAMPLER_DELAY_S = 0.05


@pytest.fixture(scope="module")
def tagger():
    return Tagger()


@pytest.fixture(scope="module")
def scene_48k_stereo() -> np.ndarray:
    """The scene as a browser's microphone would send it: (samples, 2) int16 at 48 kHz (the right channel quieter)."""
    waveform, rate = soundfile.read(SCENE, dtype="float32")
    waveform = resample(waveform, rate, BROWSER_RATE)
    stereo = np.stack([waveform, 0.5 * waveform], axis=1)
    return np.clip(np.round(stereo * 32767), -32768, 32767).astype(np.int16)


def stream(tab: LiveTab, pcm: np.ndarray, session=None):
    """Feed `pcm` chunk by chunk as gradio would; returns the last outputs (session, rows, now, status)."""
    outputs = (session, [], "", "")
    for begin in range(0, pcm.shape[0], CHUNK):
        outputs = tab.stream((BROWSER_RATE, pcm[begin : begin + CHUNK]), outputs[0])
    return outputs


def rows_of(rows: list[list], kind: str, label: str) -> list[list]:
    return [row for row in rows if row[1] == kind and row[2] == label]


def seconds(clock: str) -> float:
    hours, minutes, rest = clock.split(":")
    return 3600 * int(hours) + 60 * int(minutes) + float(rest)


def test_a_siren_starts_while_streaming_and_stop_ends_it(tagger, scene_48k_stereo):
    tab = LiveTab(tagger.model, tagger.extractor)
    session, rows, now, status = stream(tab, scene_48k_stereo[: 3 * BROWSER_RATE])  # stop while the siren sounds
    starts = rows_of(rows, "start", "siren")
    assert len(starts) == 1, rows
    # within a second of the truth: the onset as the window's 40 ms steps place it, in the browser's stream time
    assert abs(seconds(starts[0][0]) - SIREN_S[0]) <= 1.0, rows
    assert len(rows[0]) == len(EVENT_COLUMNS) and float(starts[0][3]) >= 0.5  # the start threshold
    assert "siren" in now and not rows_of(rows, "end", "siren")
    assert status.startswith("listening: 3.0 s heard (48000 Hz)"), status
    detector = session.detector
    assert 3.0 - RESAMPLER_DELAY_S <= detector.time_s <= 3.0
    assert detector.stats.windows == int(detector.time_s / detector.hop_s)  # one a second, none skipped
    assert f"{detector.stats.windows} windows" in status

    session, rows, now, status = tab.stop(session)
    ends = rows_of(rows, "end", "siren")
    assert len(ends) == 1, rows  # closed by the stop, at its last step above the end threshold
    assert seconds(starts[0][0]) < seconds(ends[0][0]) <= 3.0 + 1e-9
    assert now == "**Sounding now:** nothing (the recording has stopped)"
    assert status.startswith("stopped: 3.0 s heard"), status

    # a chunk on its way when the recording stopped changes nothing; stopping twice neither
    assert tab.stream((BROWSER_RATE, scene_48k_stereo[:CHUNK]), session)[1:] == (rows, now, status)
    assert tab.stop(session)[1:] == (rows, now, status)
    # the next recording starts afresh (start_recording resets the state), with the same detector settings
    fresh, table, now, status = tab.start()
    assert fresh is None and table == [] and "nothing" in now and "waiting" in status


def test_the_table_keeps_the_newest_rows_and_says_how_many_it_dropped(tagger, scene_48k_stereo):
    tab = LiveTab(tagger.model, tagger.extractor, max_rows=1)
    session = stream(tab, scene_48k_stereo[: 3 * BROWSER_RATE])[0]
    session, rows, _, status = tab.stop(session)
    assert [row[1:3] for row in rows] == [["end", "siren"]], rows
    assert "the table shows the last 1 of 2 events" in status, status


def test_bad_chunks_get_a_message_or_nothing(tagger):
    tab = LiveTab(tagger.model, tagger.extractor)
    session, rows, now, status = tab.stream(None, None)  # gradio sends None before the first chunk
    assert session is None and rows == [] and "nothing" in now and "waiting" in status
    session, rows, _, status = tab.stream((BROWSER_RATE, np.zeros(0, np.int16)), None)  # an empty chunk
    assert rows == [] and session.detector.stats.audio_s == 0 and "0.0 s heard" in status
    broken = np.full(CHUNK, np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN or infinite samples"):
        tab.stream((BROWSER_RATE, broken), session)
    with pytest.raises(ValueError, match=r"\(samples,\) or \(samples, channels\)"):
        tab.stream((BROWSER_RATE, np.zeros((2, 2, 2), np.int16)), session)
    with pytest.raises(ValueError, match="rate"):
        tab.stream((0, np.zeros(CHUNK, np.int16)), session)
    # the session goes on after a bad chunk
    assert 0.5 - RESAMPLER_DELAY_S <= tab.stream((BROWSER_RATE, np.zeros(CHUNK, np.int16)), session)[0].detector.time_s
    assert tab.stop(None)[1:3] == ([], "**Sounding now:** nothing")  # stopped before any chunk arrived


def test_chunk_samples_scales_int16_and_averages_channels():
    pcm = np.array([[32767, -32768], [16384, 0], [-16384, -16384]], np.int16)
    np.testing.assert_array_equal(chunk_samples(pcm), np.array([-0.5 / 32768, 0.25, -0.5], np.float32))
    np.testing.assert_array_equal(chunk_samples(pcm[:, 0]), pcm[:, 0] / np.float32(32768))
    assert chunk_samples(np.zeros((0, 2), np.int16)).shape == (0,)
    with pytest.raises(ValueError, match="integer PCM or float"):
        chunk_samples(np.array(["a"]))


def test_the_page_turns_a_bad_chunk_into_a_message(tagger):
    gr = pytest.importorskip("gradio", reason='the web app needs gradio: pip install -e ".[demo]"')
    from transformers_dass.webapp.page import build_app

    app = build_app(tagger, EXAMPLES)
    (handler,) = [fn.fn for fn in app.fns.values() if fn.name == "live_stream"]
    with pytest.raises(gr.Error, match="NaN or infinite samples"):
        handler((BROWSER_RATE, np.full(CHUNK, np.inf, np.float32)), None)
    session, rows, _, status = handler((BROWSER_RATE, np.zeros(CHUNK, np.int16)), None)
    assert 0.5 - RESAMPLER_DELAY_S <= session.detector.time_s <= 0.5 and rows == [] and status.startswith("listening")

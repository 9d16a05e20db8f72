"""`live.detector.LiveDetector`: every step decided once, by the newest window that holds it, with that window's
scores from the timeline path (checked against `analyse_features` on the window's samples); the same events for
any block size; skipping when behind; bad settings and samples refused."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from transformers_dass.inference.classify import analyse_features
from transformers_dass.inference.features import waveform_features
from transformers_dass.inference.loading import load_model
from transformers_dass.live import LiveDetector

from .test_demo_model import EXAMPLES

RATE = 16000


@pytest.fixture(scope="module")
def demo():
    return load_model(None, "float32")


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    """The example scene twice and 0.3 s more (a last step cut short): 20.3 s."""
    scene, rate = soundfile.read(EXAMPLES / "scene_siren_three.wav", dtype="float32")
    assert rate == RATE
    return np.concatenate([scene, scene, scene[: int(0.3 * RATE)]])


def run(detector: LiveDetector, samples: np.ndarray, block: int) -> list:
    events = []
    for first in range(0, len(samples), block):
        events += detector.push(samples[first : first + block])
    return events + detector.finish()


def test_each_step_is_decided_once_by_the_newest_window_that_holds_it(demo, stream):
    detector = LiveDetector(demo.model, demo.extractor, window_s=4.0, hop_s=1.0)
    decided = []
    update = detector.tracker.update

    def record(times, scores, *earlier):
        decided.append((np.array(times), np.array(scores)))
        return update(times, scores, *earlier)

    detector.tracker.update = record
    run(detector, stream, 1600)
    times = np.concatenate([t for t, _ in decided])
    scores = np.concatenate([s for _, s in decided])
    step, window, hop = 640, 4 * RATE, RATE
    # the steps tile the stream: [0.04 k, 0.04 (k + 1)), no gap, no step twice
    np.testing.assert_allclose(times[:, 0], np.arange(len(times)) * 0.04, atol=1e-9)
    assert len(times) == 507  # kaldi frames: 20.3 s = 324800 samples hold 1 + (324800 - 400) // 160 = 2028 frames
    for k in range(0, len(times), 13):
        end = min(-(-(k + 1) * step // hop) * hop, len(stream))  # the first window end at or after the step
        start = max(0, end - window)
        expected = analyse_features(demo.model, waveform_features(stream[start:end], demo.extractor), top_k=1,
                                    timeline=True).timeline.scores[k - start // step]  # fmt: skip
        # the same samples through the same float32 computation: equal but for thread scheduling of reductions
        np.testing.assert_allclose(scores[k], expected, rtol=0, atol=1e-5, err_msg=f"step {k}")
    assert detector.stats.windows == 21 and detector.stats.skipped_windows == 0  # 20 hops, then the end


@pytest.mark.parametrize("lookahead_s", [0.0, 1.0, 1.48, 2.96])
def test_with_a_lookahead_each_step_is_still_decided_once(demo, stream, lookahead_s):
    """A lookahead longer than the audio heard so far (the stream's first windows) decides nothing yet."""
    detector = LiveDetector(demo.model, demo.extractor, window_s=4.0, hop_s=1.0, lookahead_s=lookahead_s)
    decided = []
    update = detector.tracker.update

    def record(times, scores, *earlier):
        decided.append(np.array(times))
        return update(times, scores, *earlier)

    detector.tracker.update = record
    run(detector, stream[: 6 * RATE], 1600)
    starts = np.concatenate(decided)[:, 0]
    np.testing.assert_allclose(starts, np.arange(150) * 0.04, atol=1e-9)  # 6 s: 598 frames, 150 steps, each once


def test_the_events_do_not_depend_on_the_block_size(demo, stream):
    events = [run(LiveDetector(demo.model, demo.extractor), stream, block) for block in (1600, 5923, len(stream))]
    assert events[0] == events[1] == events[2]
    starts = [(e.label, e.time_s) for e in events[0] if e.kind == "start"]
    assert [label for label, _ in starts] == ["siren", "three", "siren", "three"]
    # the scene's sounds (reports/demo/make_examples.py): siren from 1.5 s, "three" from 6.8 s, and again 10 s later
    np.testing.assert_allclose([t for _, t in starts], [1.5, 6.8, 11.5, 16.8], atol=1.0)


def test_behind_it_runs_the_newest_window_only_and_loses_steps_only_past_a_window(demo, stream):
    detector = LiveDetector(demo.model, demo.extractor, window_s=4.0, hop_s=1.0)
    detector.push(stream[: 5 * RATE])
    assert detector.stats.windows == 5
    detector.push(stream[5 * RATE : 8 * RATE], newest_only=True)  # windows at 6, 7, 8 s due: only 8 s runs
    assert (detector.stats.windows, detector.stats.skipped_windows, detector.stats.lost_s) == (6, 2, 0.0)
    detector.push(stream[8 * RATE : 15 * RATE], newest_only=True)  # steps from 8 s; the window at 15 s starts at 11 s
    assert detector.stats.skipped_windows == 8
    assert detector.stats.lost_s == pytest.approx(3.0)
    assert detector.stats.audio_s == pytest.approx(15.0)


def test_a_stream_shorter_than_a_frame_gives_no_window(demo):
    detector = LiveDetector(demo.model, demo.extractor)
    assert detector.push(np.zeros(100, np.float32)) == []
    assert detector.finish() == [] and detector.stats.windows == 0
    with pytest.raises(RuntimeError, match="finished"):
        detector.push(np.zeros(10, np.float32))


def test_bad_settings_and_samples_are_refused(demo):
    with pytest.raises(ValueError, match="longer than the window"):
        LiveDetector(demo.model, demo.extractor, window_s=2.0, hop_s=3.0)
    with pytest.raises(ValueError, match="at least one step"):
        LiveDetector(demo.model, demo.extractor, hop_s=0.01)
    with pytest.raises(ValueError, match="lookahead"):
        LiveDetector(demo.model, demo.extractor, window_s=2.0, hop_s=1.0, lookahead_s=1.5)
    with pytest.raises(ValueError, match="NaN or infinite samples"):
        LiveDetector(demo.model, demo.extractor).push(np.array([0.0, np.nan], np.float32))

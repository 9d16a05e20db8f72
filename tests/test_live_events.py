"""`live.events.EventTracker`: each sound once, start/end hysteresis, short dips, onsets found in earlier steps,
and the same events however the steps are split between updates. Scores are written by hand here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transformers_dass.live.events import EventTracker, LiveEvent, format_clock

STEP = 0.04


def grid(count: int, first: int = 0) -> np.ndarray:
    return np.stack([np.arange(first, first + count) * STEP, np.arange(first + 1, first + count + 1) * STEP], axis=1)


def run(tracker: EventTracker, column_scores: list[float], chunks: list[int] | None = None) -> list[LiveEvent]:
    scores = np.asarray(column_scores, dtype=np.float64)[:, None]
    chunks = chunks or [len(scores)]
    events, first = [], 0
    for size in chunks:
        events += tracker.update(grid(size, first), scores[first : first + size])
        first += size
    return events + tracker.close()


def test_a_sound_starts_at_its_first_step_over_the_threshold_and_ends_after_the_gap():
    tracker = EventTracker(["siren"], start_threshold=0.5, end_threshold=0.3, min_gap_s=0.12)
    events = run(tracker, [0.1, 0.2, 0.6, 0.9, 0.4, 0.2, 0.1, 0.0, 0.0])
    assert events == [
        LiveEvent(pytest.approx(2 * STEP), "start", "siren", 0.6),
        LiveEvent(pytest.approx(5 * STEP), "end", "siren", 0.9),  # end of step 4, the last one >= 0.3
    ]


def test_a_score_wavering_around_the_start_threshold_is_one_sound():
    wavering = [0.0, 0.55, 0.45, 0.52, 0.35, 0.6, 0.48, 0.51, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    events = run(EventTracker(["hum"], 0.5, 0.3, min_gap_s=0.0), wavering)
    assert [e.kind for e in events] == ["start", "end"]
    # without hysteresis (end threshold = start threshold) and no gap, the same scores make four sounds
    events = run(EventTracker(["hum"], 0.5, 0.5, min_gap_s=0.0), wavering)
    assert [e.kind for e in events].count("start") == 4


@pytest.mark.parametrize("gap_steps, sounds", [(2, 1), (4, 2)])
def test_a_dip_shorter_than_the_minimum_gap_is_part_of_the_sound(gap_steps, sounds):
    scores = [0.9] * 5 + [0.0] * gap_steps + [0.9] * 5 + [0.0] * 10
    events = run(EventTracker(["knock"], 0.5, 0.3, min_gap_s=3 * STEP), scores)
    assert [e.kind for e in events].count("start") == sounds
    assert [e.kind for e in events].count("end") == sounds


def test_the_events_do_not_depend_on_how_the_steps_are_split():
    rng = np.random.default_rng(0)
    scores = np.clip(np.convolve(rng.random(400), np.ones(9) / 9, mode="same") * 1.6 - 0.3, 0, 1).tolist()
    whole = run(EventTracker(["x"], 0.5, 0.3, 0.2), scores)
    assert len(whole) >= 4  # the test has sounds to split
    for chunks in ([1] * 400, [25] * 16, [7, 93, 1, 299]):
        assert run(EventTracker(["x"], 0.5, 0.3, 0.2), scores, chunks) == whole


def test_each_label_is_tracked_on_its_own_and_lines_come_in_time_order():
    tracker = EventTracker(["a", "b"], 0.5, 0.3, min_gap_s=0.0)
    scores = np.array([[0.0, 0.0], [0.0, 0.9], [0.9, 0.9], [0.9, 0.0], [0.0, 0.0]])
    events = tracker.update(grid(5), scores)
    assert [(e.kind, e.label, round(e.time_s, 2)) for e in events] == [
        ("start", "b", 0.04), ("start", "a", 0.08), ("end", "b", 0.12), ("end", "a", 0.16)
    ]  # fmt: skip
    assert tracker.close() == []


def test_an_onset_goes_back_over_the_earlier_steps_of_the_deciding_window_but_not_into_the_last_sound():
    tracker = EventTracker(["siren"], 0.5, 0.3, min_gap_s=0.0)
    assert tracker.update(grid(10), np.zeros((10, 1))) == []
    # the next window rescores steps 6-9 at 0.4 (over the end threshold): the sound began there
    earlier = np.array([[0.1], [0.4], [0.4], [0.4]])
    events = tracker.update(grid(3, 10), np.array([[0.8], [0.9], [0.9]]), grid(4, 6), earlier)
    assert events == [LiveEvent(pytest.approx(7 * STEP), "start", "siren", 0.8)]
    events = tracker.update(grid(2, 13), np.zeros((2, 1)))
    assert events == [LiveEvent(pytest.approx(13 * STEP), "end", "siren", 0.9)]
    # a new sound right after: its onset stops at the end of the last one
    events = tracker.update(grid(1, 16), np.array([[0.9]]), grid(3, 13), np.array([[0.4], [0.4], [0.4]]))
    assert events[0].time_s == pytest.approx(13 * STEP)


def test_bad_thresholds_and_shapes_are_refused():
    with pytest.raises(ValueError, match="must not be above the start threshold"):
        EventTracker(["a"], start_threshold=0.4, end_threshold=0.6)
    with pytest.raises(ValueError, match="probability"):
        EventTracker(["a"], start_threshold=1.5)
    with pytest.raises(ValueError, match="scores of shape"):
        EventTracker(["a"]).update(grid(3), np.zeros((3, 2)))


def test_lines_and_json():
    event = LiveEvent(72.6, "start", "siren", 0.93)
    assert event.as_line() == "00:01:12.60  start  siren  0.93"
    assert json.loads(event.as_json()) == {"time_s": 72.6, "kind": "start", "label": "siren", "score": 0.93}
    assert format_clock(3600 + 59.999) == "01:01:00.00"

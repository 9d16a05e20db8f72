"""SED metrics (`transformers_dass.evaluation.sed`) on hand-made cases whose answer follows from the definitions.

PSDS (Bilen et al. 2020, as sed_scores_eval computes it): a detection (a run of steps scoring above a threshold) is a
false positive unless at least `dtc` of it lies in events of its label; an event is found when detections of its
label cover at least `gtc` of it. Sweeping the threshold gives per class a ROC of true positive rate against false
positives per hour (eFPR); PSDS is the area under mean(TPR) - alpha_st * std(TPR) up to 100 per hour, divided by
100. A threshold below every score detects each whole recording: with 10 s recordings that is one false positive
per 10 s = 360 per hour, beyond the 100 per hour the area stops at, so it never counts here.

Collar-based F1 at threshold 0.5: a detection matches an event when its onset is within 0.2 s of the event's and
its offset within max(0.2 s, 20 % of the event's length).
"""

from __future__ import annotations

import numpy as np
import pytest

from transformers_dass.evaluation import sed
from transformers_dass.inference.timeline import Timeline, write_scores_tsv

try:
    sed.load_sed_scores_eval()
except ImportError as error:  # the reason names the fix (the extra, or the pandas / setuptools pin)
    pytest.skip(str(error), allow_module_level=True)

CLASSES = ["dog", "cat"]


def frame(boundaries, **columns):
    """A score DataFrame with steps between the given times; each class column lists its score per step."""
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    values = np.array([columns[name] for name in columns], dtype=np.float64).T
    return create_score_dataframe(values, np.array(boundaries, dtype=np.float64), list(columns))


def detected(start, end, duration=10.0, score=1.0):
    """One class's steps: `score` over [start, end), 0 elsewhere in a recording of `duration` s."""
    return [0.0, start, end, duration], [0.0, score, 0.0]


def two_class_set(dog_start, dog_end):
    """r1 (10 s): a dog event at [2, 4] s, detected over [dog_start, dog_end); r2 (10 s): a cat event at [5, 6] s,
    detected exactly. The cat class is always found, so PSDS1 (alpha_st = 1) = max(0, mean - std) of the two TPRs:
    1 when the dog is found too, 0.5 - 0.5 = 0 when it is not."""
    dog_times, dog_scores = detected(dog_start, dog_end)
    cat_times, cat_scores = detected(5.0, 6.0)
    scores = {
        "r1": frame(dog_times, dog=dog_scores, cat=[0.0, 0.0, 0.0]),
        "r2": frame(cat_times, dog=[0.0, 0.0, 0.0], cat=cat_scores),
    }
    truth = {"r1": [(2.0, 4.0, "dog")], "r2": [(5.0, 6.0, "cat")]}
    return scores, truth, {"r1": 10.0, "r2": 10.0}


def test_perfect_detections_score_one():
    scores, truth, durations = two_class_set(2.0, 4.0)
    metrics = sed.sed_metrics(scores, truth, durations)
    assert metrics == pytest.approx(
        {"psds1": 1.0, "psds2": 1.0, "collar_f1": 1.0, "collar_precision": 1.0, "collar_recall": 1.0,
         "collar_f1_micro": 1.0, "classes": 2}
    )  # fmt: skip


def test_a_detection_spilling_past_the_event_fails_the_dtc():
    # [1.5, 4.5) over the event [2, 4]: 2 s of 3 s lie in it, 0.67 < dtc 0.7: a false positive (at 360/h) and the
    # dog is never found -> PSDS1 = 0.5 - 0.5 = 0. PSDS2's dtc 0.1 and gtc 0.1 accept it -> 1. Collar: onset 0.5 s off.
    scores, truth, durations = two_class_set(1.5, 4.5)
    assert sed.psds(scores, truth, durations, sed.PSDS1).value == pytest.approx(0.0)
    assert sed.psds(scores, truth, durations, sed.PSDS2).value == pytest.approx(1.0)
    assert sed.collar_f1(scores, truth).per_class == pytest.approx({"dog": 0.0, "cat": 1.0})
    # [1.7, 4.3): 2 s of 2.6 s = 0.77 >= 0.7 and the whole event covered: found -> PSDS1 = 1. Collar: the onset is
    # 0.3 s off, beyond 0.2 s -> still no match.
    scores, truth, durations = two_class_set(1.7, 4.3)
    assert sed.psds(scores, truth, durations, sed.PSDS1).value == pytest.approx(1.0)
    assert sed.collar_f1(scores, truth).per_class["dog"] == pytest.approx(0.0)


def test_a_half_covered_event_is_missed_by_psds1_and_found_by_psds2():
    # [3, 4) covers half of [2, 4]: all of the detection is in the event (dtc 1), but 0.5 < gtc 0.7 -> not found
    # (PSDS1 0, and per class: dog 0, cat 1); gtc 0.1 -> found (PSDS2 1). Collar: the onset is 1 s late.
    scores, truth, durations = two_class_set(3.0, 4.0)
    result = sed.psds(scores, truth, durations, sed.PSDS1)
    assert result.value == pytest.approx(0.0)
    assert result.per_class == pytest.approx({"dog": 0.0, "cat": 1.0})
    assert sed.psds(scores, truth, durations, sed.PSDS2).value == pytest.approx(1.0)
    collar = sed.collar_f1(scores, truth)
    # dog: 0 of 1 detections right, 0 of 1 events found -> F1 0; cat: F1 1. Macro 0.5; micro: 1 TP, 1 FP, 1 FN -> 0.5.
    assert (collar.f1, collar.precision, collar.recall, collar.f1_micro) == pytest.approx((0.5, 0.5, 0.5, 0.5))


def test_one_false_positive_in_a_known_duration_sets_the_efpr():
    # r1 (10 s): dog event [2, 4] detected exactly at score 0.6; r2 (340 s, no event): a dog detection [5, 6) at
    # score 0.9; r3 (10 s): a cat event [5, 6] found exactly. 360 s = 0.1 h in all.
    # Thresholds above 0.9: nothing. Between 0.6 and 0.9: the false positive alone (dog TPR 0, 1 FP / 0.1 h = 10/h).
    # Below 0.6: the dog found too (TPR 1 at 10/h). Cat: TPR 1 from 0/h. Mean - std of (dog, cat): 0 up to 10/h,
    # 1 from 10/h to 100/h -> PSDS1 = 90 / 100 = 0.9. PSDS2: the false positive lies in no cat event (no cross
    # trigger), so the same 0.9.
    dog_times, dog_scores = detected(2.0, 4.0, score=0.6)
    false_times, false_scores = detected(5.0, 6.0, duration=340.0, score=0.9)
    cat_times, cat_scores = detected(5.0, 6.0)
    scores = {
        "r1": frame(dog_times, dog=dog_scores, cat=[0.0] * 3),
        "r2": frame(false_times, dog=false_scores, cat=[0.0] * 3),
        "r3": frame(cat_times, dog=[0.0] * 3, cat=cat_scores),
    }
    truth = {"r1": [(2.0, 4.0, "dog")], "r2": [], "r3": [(5.0, 6.0, "cat")]}
    durations = {"r1": 10.0, "r2": 340.0, "r3": 10.0}
    assert sed.psds(scores, truth, durations, sed.PSDS1).value == pytest.approx(0.9)
    assert sed.psds(scores, truth, durations, sed.PSDS2).value == pytest.approx(0.9)
    # Collar F1 at 0.5: dog 1 right, 1 false -> precision 1/2, recall 1, F1 2/3; cat F1 1.
    collar = sed.collar_f1(scores, truth)
    assert collar.per_class == pytest.approx({"dog": 2 / 3, "cat": 1.0})
    assert collar.f1 == pytest.approx((2 / 3 + 1) / 2)


def test_the_collars():
    # Event [1, 6] (5 s): onset collar 0.2 s, offset collar max(0.2, 0.2 * 5) = 1 s.
    def f1(start, end):
        times, values = detected(start, end)
        return sed.collar_f1({"r": frame(times, dog=values)}, {"r": [(1.0, 6.0, "dog")]}).f1

    assert f1(1.15, 6.9) == pytest.approx(1.0)  # onset 0.15 s, offset 0.9 s off: a match
    assert f1(1.25, 6.0) == pytest.approx(0.0)  # onset 0.25 s off
    assert f1(1.0, 7.1) == pytest.approx(0.0)  # offset 1.1 s off


def test_timelines_and_score_files_score_like_dataframes(tmp_path):
    scores, truth, durations = two_class_set(1.7, 4.3)
    timelines = {}
    for name, table in scores.items():
        values = table[["onset", "offset"]].to_numpy()
        timelines[name] = Timeline(times=values, scores=table[CLASSES].to_numpy(np.float32), labels=CLASSES)
        write_scores_tsv(timelines[name], tmp_path / f"{name}.tsv")
    expected = sed.sed_metrics(scores, truth, durations)
    assert sed.sed_metrics(timelines, truth, durations) == pytest.approx(expected)
    assert sed.sed_metrics(tmp_path, truth, durations) == pytest.approx(expected)


def test_perfect_labels_on_a_coarse_grid_miss_short_events():
    # Event [0.5, 1.0] (0.5 s) in 10 s. On 0.32 s steps, a step is marked where the event covers half of it:
    # [0.32, 0.64) holds 0.14 s (< 0.16) and [0.96, 1.28) 0.04 s, so only [0.64, 0.96) is: it covers
    # 0.32 / 0.5 = 0.64 < gtc 0.7 of the event -> missed, PSDS1 0. On 40 ms steps, [0.48, 0.52) holds 0.02 s = half
    # -> marked: [0.48, 1.0) lies 0.5 / 0.52 = 0.96 in the event and covers all of it -> PSDS1 1.
    truth = {"r": [(0.5, 1.0, "dog")]}
    for step, expected in ((0.32, 0.0), (0.04, 1.0)):
        times = sed.step_times(10.0, step)
        values = sed.reference_scores(truth["r"], times, ["dog"])
        timeline = Timeline(times=times, scores=values, labels=["dog"])
        assert sed.psds({"r": timeline}, truth, {"r": 10.0}).value == pytest.approx(expected), step
    times = sed.step_times(1.5, 0.32)
    np.testing.assert_allclose(times, [[0, 0.32], [0.32, 0.64], [0.64, 0.96], [0.96, 1.28], [1.28, 1.5]])
    np.testing.assert_array_equal(sed.reference_scores(truth["r"], times, ["dog"])[:, 0], [0, 0, 1, 0, 0])
    # A last step shorter than the others counts by its own length: [0.96, 1.0) lies wholly in the event.
    shorter = sed.reference_scores(truth["r"], sed.step_times(1.0, 0.32), ["dog"])
    np.testing.assert_array_equal(shorter[:, 0], [0, 0, 1, 1])


def test_classes_default_to_those_of_the_ground_truth():
    # A third score column ("owl") with no event is left out: the result is that of the two classes.
    scores, truth, durations = two_class_set(2.0, 4.0)
    for name in scores:
        scores[name] = scores[name].assign(owl=1.0)
    assert sed.psds(scores, truth, durations).value == pytest.approx(1.0)
    assert sed.psds(scores, truth, durations, classes=["dog"]).per_class == {"dog": pytest.approx(1.0)}
    for metric in (sed.collar_f1, lambda *args, **kw: sed.psds(*args, durations, **kw)):
        with pytest.raises(ValueError, match=r"\['owl'\] have no event"):
            metric(scores, truth, classes=["dog", "owl"])


def test_merge_events_and_strong_label_files(tmp_path):
    events = [(3.0, 4.0, "dog"), (1.0, 2.0, "dog"), (2.0, 2.5, "dog"), (1.5, 3.5, "cat"), (5.0, 6.0, "dog")]
    assert sed.merge_events(events) == [(1.0, 2.5, "dog"), (1.5, 3.5, "cat"), (3.0, 4.0, "dog"), (5.0, 6.0, "dog")]
    path = tmp_path / "strong.tsv"
    path.write_text(
        "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
        "a\t1.0\t2.0\t/m/dog\na\t1.5\t3.0\t/m/dog\nb\t0.0\t1.0\t/m/cat\n"
    )
    assert sed.read_strong_labels(path, {"/m/dog": "dog"}) == {"a": [(1.0, 3.0, "dog")], "b": [(0.0, 1.0, "/m/cat")]}


def test_clear_errors():
    scores, truth, durations = two_class_set(2.0, 4.0)
    with pytest.raises(ValueError, match=r"not score columns.*label_mids"):
        sed.psds(scores, {**truth, "r2": [(5.0, 6.0, "/m/cat")]}, durations)
    with pytest.raises(ValueError, match=r"missing \['r2'\]"):
        sed.psds(scores, {"r1": truth["r1"]}, durations)
    with pytest.raises(ValueError, match="durations"):
        sed.psds(scores, truth, {"r1": 10.0})
    with pytest.raises(ValueError, match="merge_events"):
        sed.psds(scores, {**truth, "r1": [(2.0, 4.0, "dog"), (3.0, 5.0, "dog")]}, durations)


def test_the_install_pins_are_named_when_broken(monkeypatch):
    import pandas

    monkeypatch.setattr(pandas, "__version__", "3.0.0")
    with pytest.raises(ImportError, match=r"pandas>=1.5,<3"):
        sed.load_sed_scores_eval()
    monkeypatch.undo()
    real = sed.importlib.util.find_spec
    without = lambda name, *a: None if name == "pkg_resources" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(sed.importlib.util, "find_spec", without)
    with pytest.raises(ImportError, match=r"setuptools>=70.1,<81"):
        sed.load_sed_scores_eval()

"""The timeline's median filter (seconds, as sed_scores_eval applies it) and its score files (`--scores`)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import soundfile

from tests.test_timeline import hand_timeline, model_dir, tiny_model  # noqa: F401 - model_dir is a fixture
from transformers_dass.cli import main
from transformers_dass.evaluation.sed import load_sed_scores_eval
from transformers_dass.inference.classify import timeline_of_file
from transformers_dass.inference.postprocessing import median_filter
from transformers_dass.inference.timeline import Timeline, step_boundaries, write_scores_tsv


def sed_scores_eval_module(name: str):
    """A module of sed_scores_eval, or a skip naming what is missing (the extra, or its pandas / setuptools pin)."""
    try:
        load_sed_scores_eval()
    except ImportError as error:
        pytest.skip(str(error))
    return importlib.import_module(f"sed_scores_eval.{name}")


def grid(steps: int, step: float, last: float | None = None) -> np.ndarray:
    """(steps, 2) back-to-back steps of `step` s, the last one `last` s long when given."""
    boundaries = np.arange(steps + 1) * step
    if last is not None:
        boundaries[-1] = boundaries[-2] + last
    return np.stack([boundaries[:-1], boundaries[1:]], axis=1)


def test_median_filter_by_hand():
    times = grid(7, 0.32)
    spike = np.array([0, 0, 0, 1, 0, 0, 0], dtype=np.float32)[:, None]
    gap = np.array([1, 1, 1, 0, 1, 1, 1], dtype=np.float32)[:, None]
    # 0.96 s = 3 steps: a 1-step spike goes, a 1-step gap closes. At the edges, the window's third outside the
    # recording counts as score 0: the first step of `gap` sees (0, 1, 1) -> median 1.
    np.testing.assert_array_equal(median_filter(spike, times, 0.96)[:, 0], np.zeros(7))
    np.testing.assert_array_equal(median_filter(gap, times, 0.96)[:, 0], np.ones(7))
    # 0.5 s: the window holds the step itself (0.32 s) and 0.09 s of each neighbour: the step's own score is the
    # median (it holds 0.32 of 0.5 s, more than half).
    np.testing.assert_array_equal(median_filter(spike, times, 0.5), spike)
    # 1.6 s = 5 steps: a 2-step burst (2 of 5) goes, a 3-step one (3 of 5) stays.
    burst = np.array([0, 0, 1, 1, 1, 0, 0], dtype=np.float32)[:, None]
    np.testing.assert_array_equal(median_filter(burst, times, 1.6), burst)
    burst2 = np.array([0, 0, 1, 1, 0, 0, 0], dtype=np.float32)[:, None]
    np.testing.assert_array_equal(median_filter(burst2, times, 1.6)[:, 0], np.zeros(7))
    assert median_filter(spike, times, 0.0) is spike
    for bad in (-0.1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="median filter"):
            median_filter(spike, times, bad)


def test_median_filter_is_sed_scores_evals_at_step_centres():
    postprocessing = sed_scores_eval_module("base_modules.postprocessing")
    create_score_dataframe = sed_scores_eval_module("base_modules.scores").create_score_dataframe

    rng = np.random.default_rng(0)
    # Odd windows in steps, fractions of a step, windows longer than the recording, a short last step.
    for times, seconds in (
        (grid(31, 0.32), 0.96), (grid(31, 0.32), 1.6), (grid(20, 0.32, last=0.1), 0.5), (grid(200, 0.04), 0.37),
        (grid(250, 0.04), 1.0), (grid(5, 0.32, last=0.2), 3.0), (grid(40, 0.32), 0.7),
    ):  # fmt: skip
        scores = rng.random((len(times), 3))
        labels = ["a", "b", "c"]
        frame = create_score_dataframe(scores, step_boundaries(times), labels)
        theirs = postprocessing.medfilt({"x": frame}, seconds)["x"]
        row = np.searchsorted(theirs["onset"].to_numpy(), times.mean(axis=1), side="right") - 1
        # sed_scores_eval pads the recording with -inf where this filter pads with score 0.
        expected = np.maximum(theirs[labels].to_numpy()[row], 0.0)
        np.testing.assert_array_equal(median_filter(scores, times, seconds), expected, err_msg=f"{seconds} s")


def test_median_filter_of_an_even_window_takes_the_lower_middle():
    # 0.64 s = 2 steps, centred on a step: half of the step before (0.16 s), the step (0.32 s), half of the next
    # (0.16 s). Scores 0.9, 0.1, 0.7 ranked: 0.1 for 0.32 s, 0.7 for 0.16 s, 0.9 for 0.16 s: the window's middle
    # (0.32 s) is the boundary between 0.1 and 0.7; the lower, 0.1, is taken (the median of an even count is either;
    # sed_scores_eval keeps whichever its sweep held before, so it has no fixed value to compare with).
    times = grid(3, 0.32)
    assert median_filter(np.array([[0.9], [0.1], [0.7]]), times, 0.64)[1, 0] == 0.1
    # Scores 0.1, 0.5, 0.9: ranked 0.1 for 0.16 s, 0.5 for 0.32 s (0.16 to 0.48 s), 0.9: the middle is in 0.5's share.
    assert median_filter(np.array([[0.1], [0.5], [0.9]]), times, 0.64)[1, 0] == 0.5


def test_median_filter_bounds_its_memory_on_long_recordings(monkeypatch):
    import transformers_dass.inference.postprocessing as module

    rng = np.random.default_rng(1)
    times, scores = grid(300, 0.04), rng.random((300, 5)).astype(np.float32)
    whole = median_filter(scores, times, 0.44)
    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 100)  # chunks of a couple of steps
    np.testing.assert_array_equal(median_filter(scores, times, 0.44), whole)


def test_score_file_reads_back_in_sed_scores_eval(tmp_path):
    io = sed_scores_eval_module("base_modules.io")
    timeline = hand_timeline()
    path = tmp_path / "scores.tsv"
    write_scores_tsv(timeline, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "onset\toffset\tdog\tspeech\tsilence"
    assert lines[1] == "0.000000\t0.320000\t0.9\t0.1\t0" and len(lines) == 6
    frame = io.read_sed_scores(path)
    np.testing.assert_allclose(frame[["onset", "offset"]].to_numpy(), timeline.times)
    np.testing.assert_allclose(frame[timeline.labels].to_numpy(), timeline.scores, rtol=1e-6)


def test_score_file_refuses_what_it_cannot_hold(tmp_path):
    timeline = hand_timeline()
    with pytest.raises(ValueError, match="tab"):
        write_scores_tsv(Timeline(timeline.times, timeline.scores, ["dog", "a\tb", "c"]), tmp_path / "x.tsv")
    gapped = timeline.times.copy()
    gapped[2, 0] += 0.01
    with pytest.raises(ValueError, match="back to back"):
        write_scores_tsv(Timeline(gapped, timeline.scores, timeline.labels), tmp_path / "x.tsv")


def test_cli_timeline_writes_scores_and_median_filters(tmp_path, model_dir, capsys):  # noqa: F811
    wav = tmp_path / "noise.wav"
    soundfile.write(str(wav), 0.1 * np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32), 16000)
    scores = tmp_path / "noise.tsv"
    code = main(["timeline", str(wav), "--model", str(model_dir), "--dtype", "float32", "--no-png",
                 "--csv", str(tmp_path / "s.csv"), "--scores", str(scores), "--median-filter", "0.96"])  # fmt: skip
    assert code == 0 and "-> " + str(scores) in capsys.readouterr().out
    rows = [line.split("\t") for line in scores.read_text().splitlines()]
    assert rows[0] == ["onset", "offset", "a", "b", "c", "d"]
    model = tiny_model()
    plain = timeline_of_file(wav, model, show_progress=False)
    filtered = timeline_of_file(wav, model, show_progress=False, median_filter_s=0.96)
    np.testing.assert_allclose(filtered.scores, median_filter(plain.scores, plain.times, 0.96))
    written = np.array([[float(value) for value in row[2:]] for row in rows[1:]])
    np.testing.assert_allclose(written, filtered.scores, rtol=1e-5, atol=1e-7)  # 6 significant digits
    np.testing.assert_allclose([[float(row[0]), float(row[1])] for row in rows[1:]], filtered.times)
    with pytest.raises(SystemExit, match="--median-filter"):
        main(["timeline", str(wav), "--model", str(model_dir), "--median-filter", "-1"])

"""Scores over time: smoothing, segments, CSV, the plot and `dass timeline`."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
import soundfile
import torch

from transformers_dass import (
    DassConfig,
    DassFeatureExtractor,
    DassForAudioClassification,
    DassForAudioFrameClassification,
)
from transformers_dass.cli import main
from transformers_dass.inference.classify import classify_waveform
from transformers_dass.inference.timeline import (
    PLOT_HINT,
    Timeline,
    frame_scores,
    plot_timeline,
    segments,
    smooth,
    write_csv,
)


def test_smooth_equals_a_plain_loop():
    rng = np.random.default_rng(0)
    scores = rng.random((11, 3)).astype(np.float32)
    for window in (1, 3, 5, 13):
        expected = np.stack(
            [scores[max(0, i - window // 2) : i + window // 2 + 1].mean(axis=0) for i in range(len(scores))]
        )
        np.testing.assert_allclose(smooth(scores, window), expected, rtol=1e-6)
    for bad in (0, 2, -1, 1.0):
        with pytest.raises(ValueError, match="odd"):
            smooth(scores, bad)


def hand_timeline() -> Timeline:
    times = np.array([[0.0, 0.32], [0.32, 0.64], [0.64, 0.96], [0.96, 1.28], [1.28, 1.5]])
    scores = np.array(
        [[0.9, 0.1, 0.0], [0.8, 0.6, 0.0], [0.2, 0.7, 0.0], [0.55, 0.4, 0.0], [0.6, 0.5, 0.0]], dtype=np.float32
    )
    return Timeline(times=times, scores=scores, labels=["dog", "speech", "silence"])


def test_segments_by_hand(tmp_path):
    found = segments(hand_timeline(), threshold=0.5)
    rows = [(s.start, s.end, s.label, round(s.score, 4)) for s in found]
    assert rows == [
        (0.0, 0.64, "dog", 0.9),
        (0.32, 0.96, "speech", 0.7),
        (0.96, 1.5, "dog", 0.6),
        (1.28, 1.5, "speech", 0.5),
    ]
    path = tmp_path / "segments.csv"
    write_csv(found, path)
    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["start_s", "end_s", "label", "score"]
    assert table[1] == ["0.00", "0.64", "dog", "0.9000"] and len(table) == 5
    with pytest.raises(ValueError, match="threshold"):
        segments(hand_timeline(), threshold=1.5)


def tiny_model(problem_type: str = "multi_label_classification") -> DassForAudioClassification:
    torch.manual_seed(0)
    config = DassConfig(
        dims=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=4, drop_path_rate=0.0, problem_type=problem_type,
        id2label={0: "a", 1: "b", 2: "c", 3: "d"},
    )  # fmt: skip
    return DassForAudioClassification(config).eval()


def test_frame_scores_are_the_frame_models_probabilities():
    """The timeline's steps are `DassForAudioFrameClassification`'s (40 ms) on the same weights and input."""
    features = torch.randn(150, 128)
    model = tiny_model()
    frame_model = DassForAudioFrameClassification(model.config).eval()
    frame_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        frame_logits = frame_model(features[None]).logits[0]
    timeline = frame_scores(model, features, show_progress=False)
    assert frame_logits.shape == (38, 4)  # ceil(150 frames / 4 frames a step)
    np.testing.assert_allclose(timeline.scores, torch.sigmoid(frame_logits).numpy(), rtol=1e-6)
    assert timeline.labels == ["a", "b", "c", "d"]
    np.testing.assert_allclose(timeline.times[-1], [1.48, 1.5])
    np.testing.assert_allclose(timeline.times[:, 0], np.arange(38) * 0.04)
    single = frame_scores(tiny_model("single_label_classification"), features, smoothing=3, show_progress=False)
    np.testing.assert_allclose(single.scores.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="regression"):
        frame_scores(tiny_model("regression"), features)


def test_frame_scores_and_classify_score_an_unset_problem_type_alike():
    """problem_type None: softmax in both, as transformers' audio-classification pipeline does."""
    model = tiny_model(None)
    waveform = torch.randn(16000 * 3, generator=torch.Generator().manual_seed(1)).numpy() * 0.1
    extractor = DassFeatureExtractor()
    features = extractor(waveform, sampling_rate=16000, return_tensors="pt")["input_values"][0]
    timeline = frame_scores(model, features, show_progress=False)
    np.testing.assert_allclose(timeline.scores.sum(axis=1), 1.0, rtol=1e-5)
    top = classify_waveform(model, extractor, waveform, top_k=4, clip_pooling="mean")
    assert abs(sum(item["score"] for item in top) - 1.0) < 1e-5


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    DassFeatureExtractor().save_pretrained(folder)
    return folder


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "street.wav"
    rng = np.random.default_rng(0)
    soundfile.write(str(path), (0.1 * rng.standard_normal((22050 * 3, 2))).astype(np.float32), 22050)
    return path


def test_cli_timeline_writes_csv_and_png(tmp_path, model_dir, wav, capsys):
    csv_path, png_path = tmp_path / "out.csv", tmp_path / "out.png"
    code = main(["timeline", str(wav), "--model", str(model_dir), "--threshold", "0", "--csv", str(csv_path),
                 "--dtype", "float32", "--png", str(png_path), "--top-labels", "3"])  # fmt: skip
    assert code == 0
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # Threshold 0: every label is one segment over the whole file, 3 s = 298 frames of 10 ms.
    assert sorted(row["label"] for row in rows) == ["a", "b", "c", "d"]
    assert {(row["start_s"], row["end_s"]) for row in rows} == {("0.00", "2.98")}
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "4 segments" in capsys.readouterr().out


def test_cli_timeline_without_matplotlib_still_writes_the_csv(tmp_path, model_dir, wav, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    csv_path = tmp_path / "out.csv"
    png_path = tmp_path / "x.png"
    code = main(["timeline", str(wav), "--model", str(model_dir), "--csv", str(csv_path), "--png", str(png_path)])
    assert code == 2 and csv_path.exists() and not png_path.exists()
    assert PLOT_HINT in capsys.readouterr().err
    with pytest.raises(ImportError, match=r"transformers-dass\[plot\]"):
        plot_timeline(hand_timeline(), tmp_path / "y.png")


def test_cli_timeline_bad_arguments(tmp_path, model_dir, wav, capsys):
    assert main(["timeline", str(tmp_path / "missing.wav"), "--model", str(model_dir), "--no-png"]) == 2
    assert "not found" in capsys.readouterr().err
    for flag, value in (("--threshold", "1.5"), ("--smoothing", "2"), ("--top-labels", "0")):
        with pytest.raises(SystemExit, match=flag):
            main(["timeline", str(wav), "--model", str(model_dir), flag, value])

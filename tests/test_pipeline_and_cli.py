"""pipeline("audio-classification") and the `dass` command line on a converted model folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import pipeline
from transformers.utils import is_torchaudio_available

import transformers_dass  # noqa: F401
from transformers_dass import DassFeatureExtractor, DassForAudioClassification
from transformers_dass.cli import main as cli_main

from .conftest import require_fixture


@pytest.fixture(scope="module")
def babble() -> np.ndarray:
    data, rate = sf.read(require_fixture("babble_all.wav"), dtype="float32")
    assert rate == 16000
    return data


def expected_scores(folder, waveform, clip_pooling=None) -> torch.Tensor:
    """Sigmoid scores computed by hand: extractor then model (its own readout unless one is given)."""
    model = DassForAudioClassification.from_pretrained(folder).eval()
    features = DassFeatureExtractor.from_pretrained(folder)(waveform, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return model(**features, clip_pooling=clip_pooling).logits[0].sigmoid()


def check_predictions(predictions, scores, top_k):
    assert len(predictions) == top_k
    values, indices = scores.topk(top_k)
    assert [p["label"] for p in predictions] == [f"LABEL_{i}" for i in indices.tolist()]
    np.testing.assert_allclose([p["score"] for p in predictions], values.numpy(), atol=1e-5)


def test_pipeline_array_and_dict(converted_tiny, babble):
    classifier = pipeline("audio-classification", model=str(converted_tiny))
    scores = expected_scores(converted_tiny, babble)
    check_predictions(classifier(babble, top_k=3), scores, 3)
    check_predictions(classifier({"raw": babble, "sampling_rate": 16000}, top_k=5), scores, 5)
    check_predictions(classifier({"array": babble, "sampling_rate": 16000}, top_k=10), scores, 10)
    # multi-label: independent sigmoid scores, which need not sum to one
    assert sum(p["score"] for p in classifier(babble, top_k=10)) != pytest.approx(1.0, abs=1e-3)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="transformers reads file paths with ffmpeg, not installed")
def test_pipeline_file_path(converted_tiny, babble):
    classifier = pipeline("audio-classification", model=str(converted_tiny))
    check_predictions(classifier(str(require_fixture("babble_all.wav")), top_k=3), expected_scores(converted_tiny, babble), 3)


@pytest.mark.skipif(is_torchaudio_available(), reason="checks the error shown when torchaudio is absent")
def test_pipeline_other_rate_without_torchaudio_names_the_fix(converted_tiny, babble):
    classifier = pipeline("audio-classification", model=str(converted_tiny))
    with pytest.raises(ImportError, match="torchaudio"):
        classifier({"raw": babble[::2].copy(), "sampling_rate": 8000})


def test_cli_classify_json_matches_the_model(converted_tiny, babble, capsys):
    path = require_fixture("babble_all.wav")
    args = ["classify", str(path), "--model", str(converted_tiny), "--top-k", "4", "--json", "--clip-pooling", "mean", "--dtype", "float32"]
    assert cli_main(args) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert all(set(p) == {"label", "score", "clip_pooling"} for p in predictions)
    # 15 s clip: longer than 10 s, so the CLI keeps all of it instead of cutting it to 1024 frames
    check_predictions(predictions, expected_scores(converted_tiny, babble, clip_pooling="mean"), 4)


def test_cli_resamples_and_downmixes(converted_tiny, babble, tmp_path, capsys):
    rate = 44100
    seconds = 3
    t = np.arange(rate * seconds) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t)], axis=1) * 0.3
    path = tmp_path / "stereo44k.flac"
    sf.write(path, stereo, rate)
    assert cli_main(["classify", str(path), "--model", str(converted_tiny), "--top-k", "2", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 2 and all(0.0 <= p["score"] <= 1.0 for p in predictions)


def test_cli_text_output_and_module_entry_point(converted_tiny):
    path = require_fixture("babble_all.wav")
    result = subprocess.run(
        [sys.executable, "-m", "transformers_dass", "classify", str(path), "--model", str(converted_tiny), "--top-k", "2"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith("babble_all.wav  (clip readout: max)") and len(lines) == 3 and "LABEL_" in lines[1]


def test_cli_errors_name_the_problem(converted_tiny, tmp_path, capsys):
    corrupted = tmp_path / "broken.wav"
    corrupted.write_bytes(b"RIFF\x00\x01garbage" * 10)
    assert cli_main(["classify", str(corrupted), "--model", str(converted_tiny)]) == 2
    assert "could not decode" in capsys.readouterr().err
    assert cli_main(["classify", str(tmp_path / "absent.wav"), "--model", str(converted_tiny)]) == 2
    assert "absent.wav" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--top-k"):
        cli_main(["classify", str(require_fixture("babble_all.wav")), "--model", str(converted_tiny), "--top-k", "99"])

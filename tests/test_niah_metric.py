"""The NIAH metric: compute_niah_metrics against scikit-learn / scipy, and its evaluate module loaded offline."""

from __future__ import annotations

import math
import socket
import sys

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

import transformers_dass
from transformers_dass.evaluation.niah.metric import (
    NIAH_METRIC_PATH,
    compute_niah_metrics,
)


def sklearn_scores(scores: np.ndarray, labels: np.ndarray) -> dict:
    """AST calculate_stats semantics with sklearn: AP over classes with positives, AUC over classes with both."""
    with_pos = [k for k in range(labels.shape[1]) if labels[:, k].any()]
    with_both = [k for k in with_pos if not labels[:, k].all()]
    mauc = np.mean([roc_auc_score(labels[:, k], scores[:, k]) for k in with_both])
    return {
        "mAP": np.mean([average_precision_score(labels[:, k], scores[:, k]) for k in with_pos]),
        "mAUC": mauc,
        "d_prime": math.sqrt(2) * norm.ppf(mauc),
        "skipped_classes": labels.shape[1] - len(with_pos),
        "skipped_auc_classes": labels.shape[1] - len(with_both),
    }


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    n, classes = 40, 6
    labels = (rng.random((n, classes)) < 0.3).astype(np.int64)
    labels[:, 2] = 0  # a class without positives: no AP, no AUC
    labels[:, 4] = 1  # a class without negatives: AP 1, no AUC
    scores = np.round(rng.random((n, classes)), 1)  # ties, as real probabilities have
    scores = np.clip(scores + 0.3 * labels, 0, 1)
    seconds = np.repeat([10.0, 50.0], n // 2)
    positions = np.tile([0.0, 0.5], n // 2)
    return scores, labels, seconds, positions


def assert_matches(result: dict, expected: dict) -> None:
    for key in ("mAP", "mAUC", "d_prime"):
        assert result[key] == pytest.approx(expected[key], abs=1e-9), key
    assert result["skipped_classes"] == expected["skipped_classes"]
    assert result["skipped_auc_classes"] == expected["skipped_auc_classes"]


def test_scores_match_sklearn_with_classes_without_positives_or_negatives(data):
    scores, labels, _, _ = data
    result = compute_niah_metrics(scores, labels)
    assert_matches(result, sklearn_scores(scores, labels))
    assert result["skipped_classes"] == 1 and result["skipped_auc_classes"] == 2
    assert result["num_examples"] == 40 and result["num_classes"] == 6 and "breakdown" not in result


def test_breakdown_per_length_and_position_matches_sklearn_on_each_group(data):
    scores, labels, seconds, positions = data
    result = compute_niah_metrics(scores, labels, haystack_seconds=seconds, needle_position=positions)
    assert_matches(result, sklearn_scores(scores, labels))
    groups = [(g["haystack_seconds"], g["needle_position"]) for g in result["breakdown"]]
    assert groups == [(10.0, 0.0), (10.0, 0.5), (50.0, 0.0), (50.0, 0.5)]
    for group in result["breakdown"]:
        rows = (seconds == group["haystack_seconds"]) & (positions == group["needle_position"])
        assert group["num_examples"] == rows.sum() == 10
        assert_matches(group, sklearn_scores(scores[rows], labels[rows]))
    only_lengths = compute_niah_metrics(scores, labels, haystack_seconds=seconds)["breakdown"]
    assert [(g["haystack_seconds"], g["needle_position"]) for g in only_lengths] == [(10.0, None), (50.0, None)]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s, l: (np.where(np.arange(s.size).reshape(s.shape) == 3, np.nan, s), l), "NaN"),
        (lambda s, l: (s[:, :5], l), "differ in shape"),
        (lambda s, l: (s[:0], l[:0]), r"\(n, classes\)"),
        (lambda s, l: (s[0], l[0]), r"\(n, classes\)"),
        (lambda s, l: (s, l * 0.5), "multi-hot"),
    ],
)
def test_bad_inputs_raise(data, change, message):
    scores, labels = change(*data[:2])
    with pytest.raises(ValueError, match=message):
        compute_niah_metrics(scores, labels)


def test_settings_of_the_wrong_length_raise(data):
    scores, labels, seconds, _ = data
    with pytest.raises(ValueError, match="one per prediction"):
        compute_niah_metrics(scores, labels, haystack_seconds=seconds[:-1])


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No network: any socket connection fails; evaluate's caches go to a temporary folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

    def refuse(*args, **kwargs):
        raise OSError("network access during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_evaluate_module_loads_offline_and_computes_the_same(data, offline):
    import evaluate

    scores, labels, seconds, positions = data
    expected = compute_niah_metrics(scores, labels, haystack_seconds=seconds, needle_position=positions)
    for metric in (transformers_dass.load_niah_metric(), evaluate.load(str(NIAH_METRIC_PATH))):
        for start in range(0, 40, 16):  # accumulate in batches, as an evaluation loop does
            metric.add_batch(predictions=scores[start : start + 16], references=labels[start : start + 16])
        result = metric.compute(haystack_seconds=seconds, needle_position=positions)
        assert_matches(result, expected)
        assert [g["mAP"] for g in result["breakdown"]] == pytest.approx([g["mAP"] for g in expected["breakdown"]])
    with pytest.raises(ValueError, match="NaN"):
        transformers_dass.load_niah_metric().compute(predictions=[[math.nan, 0.1]], references=[[1, 0]])


def test_load_niah_metric_names_the_extra_without_evaluate(monkeypatch):
    monkeypatch.setitem(sys.modules, "evaluate", None)  # makes `import evaluate` fail
    with pytest.raises(ImportError, match=r"transformers-dass\[niah\]"):
        transformers_dass.load_niah_metric()


def test_breakdown_per_clip_readout(data):
    scores, labels, seconds, _ = data
    readouts = np.array(["mean", "max"] * (len(scores) // 2))
    result = compute_niah_metrics(scores, labels, haystack_seconds=seconds, clip_pooling=list(readouts))
    groups = [(g["haystack_seconds"], g["needle_position"], g["clip_pooling"]) for g in result["breakdown"]]
    assert groups == [(10.0, None, "max"), (10.0, None, "mean"), (50.0, None, "max"), (50.0, None, "mean")]
    for group in result["breakdown"]:
        rows = (seconds == group["haystack_seconds"]) & (readouts == group["clip_pooling"])
        assert_matches(group, sklearn_scores(scores[rows], labels[rows]))
    with pytest.raises(ValueError, match="clip_pooling"):
        compute_niah_metrics(scores, labels, clip_pooling=["mean"])

"""Tagging metrics of multi-label scores: per-class average precision and ROC AUC, their means and d'.

Plain numpy, so the NIAH metric and the Trainer's evaluation compute them alike without scikit-learn (which the
tests use as the independent reference).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["area_under_roc", "average_precision", "compute_tagging_metrics", "tagging_metrics"]


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class: scores (clips,), binary targets (clips,); NaN without positives.

    Tied scores form one threshold, as in scikit-learn: AP = sum over thresholds of (recall step) * precision.
    """
    positives = targets.sum()
    if positives == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_targets = scores[order], targets[order]
    true_pos = np.cumsum(sorted_targets)
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    tp = true_pos[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall_step = np.diff(np.r_[0.0, tp]) / positives
    return float(np.sum(recall_step * precision))


def area_under_roc(scores: np.ndarray, targets: np.ndarray) -> float:
    """ROC AUC of one class from ranks (Mann-Whitney U, ties get their mean rank); NaN if a class is missing."""
    positives = int(targets.sum())
    negatives = len(targets) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of the 1-based ranks start+1..end
    return float((ranks[targets == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def tagging_metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """mAP over classes with positives and mAUC over classes with positives and negatives.

    Args:
        scores: (clips, num_labels) scores (logits or probabilities: only their order matters).
        targets: (clips, num_labels) targets; values >= 0.5 count as positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    binary = (np.asarray(targets) >= 0.5).astype(np.int64)
    aps = [average_precision(scores[:, k], binary[:, k]) for k in range(scores.shape[1])]
    aucs = [area_under_roc(scores[:, k], binary[:, k]) for k in range(scores.shape[1])]
    aps, aucs = [a for a in aps if not math.isnan(a)], [a for a in aucs if not math.isnan(a)]
    return {
        "mAP": float(np.mean(aps)) if aps else math.nan,
        "mAUC": float(np.mean(aucs)) if aucs else math.nan,
    }


def compute_tagging_metrics(eval_prediction) -> dict[str, float]:
    """`compute_metrics` for `Trainer`: mAP and mAUC of the logits against the labels."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    return tagging_metrics(logits, eval_prediction.label_ids)

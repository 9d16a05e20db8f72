"""The NIAH metric: `compute_niah_metrics`, a plain function, and `load_niah_metric`, the same as an `evaluate`
module (the script `niah.py` beside this file).

The scores: mAP, mAUC and d' of multi-label scores, overall and per haystack setting.

Semantics of AST's `calculate_stats` (which the DASS authors evaluate with): per class, average precision and ROC
AUC over all clips; the mean over classes. Classes without a positive clip have no AP or AUC; they are left out of
the means and counted (`skipped_classes`), as are classes without a negative clip for the AUC
(`skipped_auc_classes`). d' = sqrt(2) * Phi^-1(mAUC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist

import numpy as np

from ...training.metrics import area_under_roc, average_precision
from ...utils.optional import require

# The folder `evaluate.load` takes: it holds niah.py, the evaluate module.
NIAH_METRIC_PATH = Path(__file__).resolve().parent

__all__ = ["NIAH_METRIC_PATH", "compute_niah_metrics", "d_prime", "load_niah_metric"]


def d_prime(auc: float) -> float:
    """sqrt(2) * Phi^-1(auc), the sensitivity index of an ROC AUC (AST's `d_prime`); +-inf at 1 and 0, NaN for NaN."""
    if math.isnan(auc):
        return math.nan
    if auc >= 1.0:
        return math.inf
    if auc <= 0.0:
        return -math.inf
    return math.sqrt(2.0) * NormalDist().inv_cdf(auc)


def compute_niah_metrics(
    predictions,
    references,
    haystack_seconds: Sequence[float] | None = None,
    needle_position: Sequence[float] | None = None,
    clip_pooling: Sequence[str] | None = None,
) -> dict:
    """Tagging scores of NIAH predictions against the needles' labels.

    Args:
        predictions: (n, classes) scores, e.g. sigmoid probabilities (only their order within a class matters).
        references: (n, classes) multi-hot labels of the needles, 0 or 1.
        haystack_seconds, needle_position: (n,) the setting each example was run at; when either is given, the
            result also has a `breakdown` with the scores of each (haystack_seconds, needle_position) group.
        clip_pooling: (n,) the clip readout ("mean", "max", ...) of each example's scores; when given, the
            breakdown groups by readout too. Rows of several readouts of the same needle are then in one call:
            read the breakdown (the overall scores pool the readouts).

    Returns:
        {"mAP", "mAUC", "d_prime", "num_examples", "num_classes", "skipped_classes", "skipped_auc_classes"} and,
        with settings, "breakdown": a list of such dicts plus "haystack_seconds", "needle_position" and
        "clip_pooling" (None for a setting that was not given), in increasing order of the three.

    Raises:
        ValueError: empty input, shapes that differ or are not 2-D, NaN or infinite scores, labels not 0/1, or
            settings whose length is not n.
    """
    scores = _matrix(predictions, "predictions")
    labels = _matrix(references, "references")
    if scores.shape != labels.shape:
        raise ValueError(
            f"predictions {scores.shape} and references {labels.shape} differ in shape; give one row of class "
            "scores per needle and the needle's multi-hot labels in the same class order"
        )
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("references must be multi-hot (0 or 1); soft labels have no average precision")
    result = _scores(scores, labels)
    if haystack_seconds is None and needle_position is None and clip_pooling is None:
        return result
    n = scores.shape[0]
    seconds = _settings(haystack_seconds, "haystack_seconds", n)
    positions = _settings(needle_position, "needle_position", n)
    poolings = _names(clip_pooling, "clip_pooling", n)
    breakdown = []
    settings = sorted(
        set(zip(seconds, positions, poolings)),
        key=lambda key: (-1 if key[0] is None else key[0], -1 if key[1] is None else key[1], key[2] or ""),
    )
    for second, position, pooling in settings:
        rows = [i for i in range(n) if (seconds[i], positions[i], poolings[i]) == (second, position, pooling)]
        group = {"haystack_seconds": second, "needle_position": position, "clip_pooling": pooling}
        group.update(_scores(scores[rows], labels[rows]))
        breakdown.append(group)
    result["breakdown"] = breakdown
    return result


def _scores(scores: np.ndarray, labels: np.ndarray) -> dict:
    classes = scores.shape[1]
    aps = [average_precision(scores[:, k], labels[:, k]) for k in range(classes)]
    aucs = [area_under_roc(scores[:, k], labels[:, k]) for k in range(classes)]
    aps = [value for value in aps if not math.isnan(value)]
    aucs = [value for value in aucs if not math.isnan(value)]
    mean_auc = float(np.mean(aucs)) if aucs else math.nan
    return {
        "mAP": float(np.mean(aps)) if aps else math.nan,
        "mAUC": mean_auc,
        "d_prime": d_prime(mean_auc),
        "num_examples": int(scores.shape[0]),
        "num_classes": int(classes),
        "skipped_classes": int(classes - len(aps)),
        "skipped_auc_classes": int(classes - len(aucs)),
    }


def _matrix(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().float().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a (n, classes) array of numbers: {err}") from err
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, classes) with n, classes >= 1, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; check the model outputs (e.g. an fp16 overflow)")
    return array


def _names(value, name: str, n: int) -> list:
    if value is None:
        return [None] * n
    names = [value] if isinstance(value, str) else list(value)
    if len(names) != n or not all(isinstance(v, str) and v for v in names):
        raise ValueError(f"{name} must be {n} non-empty strings, one per prediction, got {len(names)} values")
    return names


def _settings(value, name: str, n: int) -> list:
    if value is None:
        return [None] * n
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64).reshape(-1)
    if array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} values for {n} predictions; give one per prediction")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return [float(v) for v in array]


def load_niah_metric(**kwargs):
    """`evaluate.load` of the NIAH metric shipped in this package (works offline).

    Keyword arguments go to `evaluate.load` (e.g. `experiment_id`, `keep_in_memory`).

    Raises:
        ImportError: `evaluate` is not installed (it is the `niah` extra).
    """
    evaluate = require(
        "evaluate", "niah", "the NIAH metric module", "or call compute_niah_metrics: the same computation without evaluate"
    )
    return evaluate.load(str(NIAH_METRIC_PATH), **kwargs)

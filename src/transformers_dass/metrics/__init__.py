"""Evaluation metrics shipped as `evaluate` modules; their computations are plain functions usable without it."""

from .niah import NIAH_METRIC_PATH, compute_niah_metrics, load_niah_metric

__all__ = ["NIAH_METRIC_PATH", "compute_niah_metrics", "load_niah_metric"]

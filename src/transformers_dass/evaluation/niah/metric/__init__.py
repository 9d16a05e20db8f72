"""The NIAH metric: `compute_niah_metrics` (plain numpy) and its `evaluate` module in this folder (niah.py)."""

from __future__ import annotations

from pathlib import Path

from ....utils.optional import require
from .core import compute_niah_metrics, d_prime

# The folder `evaluate.load` takes: it holds niah.py, the evaluate module.
NIAH_METRIC_PATH = Path(__file__).resolve().parent

__all__ = ["NIAH_METRIC_PATH", "compute_niah_metrics", "d_prime", "load_niah_metric"]


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

"""Argument checks shared by the whole package: one message (and one exception type, ValueError) per bad value.

Each returns the value in its plain Python type, or raises a ValueError that names the argument and what it
takes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["check_bool", "finite_float", "float_tensor", "non_negative_float", "odd_window", "positive_int", "probability"]


def positive_int(value, name: str) -> int:
    """`value` as an int, or a ValueError if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def finite_float(value, name: str) -> float:
    """`value` as a float, or a ValueError if it is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def non_negative_float(value, name: str) -> float:
    """`value` as a float >= 0 (a length in seconds where 0 means none), or a ValueError."""
    value = finite_float(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """`value` if it is a bool, else a ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def probability(value, name: str) -> float:
    """`value` as a float in [0, 1] (a score threshold), or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def odd_window(value, name: str) -> int:
    """`value` as an odd number of steps >= 1 (a centred moving average; 1 = none), or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be an odd number of steps >= 1 (1 = none), got {value!r}")
    return int(value)


def float_tensor(value, name: str, ndim: int) -> torch.Tensor:
    """`value` (tensor or numpy array) as a finite float32 CPU tensor with `ndim` dimensions, or a ValueError."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(value).__name__}")
    if value.ndim != ndim or not value.is_floating_point():
        shape = "(frames, mel_bins)" if ndim == 2 else "(samples,)"
        raise ValueError(f"{name} must be a float array of shape {shape}, got {tuple(value.shape)} {value.dtype}")
    value = value.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value

"""Choose which implementation runs the cross selective scan.

Only this module knows which backends exist. Resolution order: an explicit backend argument (from
`config.scan_backend`) unless it is "auto", then the `DASS_SCAN_BACKEND` environment variable, then the
fastest available backend for the input's device.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from .reference import cross_selective_scan_reference

ENV_VAR = "DASS_SCAN_BACKEND"

# name -> implementation with the signature of `cross_selective_scan_reference`.
_BACKENDS: dict[str, Callable[..., torch.Tensor]] = {"reference": cross_selective_scan_reference}
SCAN_BACKENDS = ("auto", *_BACKENDS)


def available_backends() -> list[str]:
    """Names of the backends that can run here (the compiled ones only once built/installed)."""
    return list(_BACKENDS)


def resolve_backend(requested: str = "auto", device: torch.device | None = None) -> str:
    """Turn "auto" (or the environment override) into a concrete backend name for `device`."""
    name = requested
    if name == "auto":
        name = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if name not in SCAN_BACKENDS:
        source = f"the {ENV_VAR} environment variable" if requested == "auto" else "config.scan_backend"
        raise ValueError(f"Unknown scan backend {name!r} from {source}; choose one of {SCAN_BACKENDS}.")
    if name == "auto":
        return "reference"
    return name


def cross_selective_scan(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_proj_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """SS2D core through the chosen backend. Shapes as in `cross_selective_scan_reference`:
    x (B, D, H, W) -> (B, D, H, W) float32."""
    implementation = _BACKENDS[resolve_backend(backend, x.device)]
    return implementation(x, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D)

"""mamba-ssm's CUDA `selective_scan_fn` as a backend (optional package, CUDA only, imported lazily).

mamba-ssm scans one direction per channel row, so the four scan orders are materialised with
`cross_scan` and summed back with `cross_merge`, as in the authors' code.
"""

from __future__ import annotations

import functools

import torch

from .reference import cross_selective_scan_reference


@functools.lru_cache(maxsize=None)
def load_mamba_scan():
    """mamba-ssm's `selective_scan_fn`, or None when the package (or its CUDA build) is absent."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):
        return None
    return selective_scan_fn


def cross_selective_scan_mamba(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_proj_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor,
) -> torch.Tensor:
    """SS2D core with mamba-ssm's scan; contract of `cross_selective_scan_reference`."""
    scan = load_mamba_scan()
    if scan is None:
        raise RuntimeError("mamba-ssm is not installed: `pip install mamba-ssm` (CUDA), or use another scan backend.")
    return cross_selective_scan_reference(x, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D, scan=scan)

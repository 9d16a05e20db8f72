"""Choose which implementation runs the cross selective scan.

Only this package (`ops`) knows which backends exist:
- "reference": PyTorch (`reference.py`), always available, any device;
- "chunked": PyTorch (`chunked.py`), always available: the reference's arithmetic in a graph whose shape does not
  depend on the length, for `torch.export` / ONNX export with a dynamic number of frames;
- "cpu" / "cuda": the compiled kernels of `kernels/selective_scan` (`compiled.py`);
- "mamba_ssm": mamba-ssm's CUDA `selective_scan_fn` (`mamba.py`).
Resolution: `config.scan_backend` unless it is "auto", then the `DASS_SCAN_BACKEND` environment variable,
then the fastest backend available for the input's device. A backend that cannot run here falls back to
the reference with one warning.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from transformers.utils import logging

from .chunked import cross_selective_scan_chunked
from .compiled import cross_selective_scan_compiled, kernels_have_cuda, load_kernels
from .mamba import cross_selective_scan_mamba, load_mamba_scan
from .reference import cross_selective_scan_reference

logger = logging.get_logger(__name__)

ENV_VAR = "DASS_SCAN_BACKEND"
BUILD_HINT = "build the kernels with `pip install --no-build-isolation ./kernels/selective_scan`"

_IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "reference": cross_selective_scan_reference,
    "chunked": cross_selective_scan_chunked,
    "cpu": cross_selective_scan_compiled,
    "cuda": cross_selective_scan_compiled,
    "mamba_ssm": cross_selective_scan_mamba,
}
SCAN_BACKENDS = ("auto", *_IMPLEMENTATIONS)


def _unavailable_reason(name: str, device: torch.device) -> str | None:
    """Why backend `name` cannot run on `device`, or None when it can."""
    if name in ("reference", "chunked"):
        return None
    if name == "cpu":
        if device.type != "cpu":
            return f"it runs on CPU tensors, the input is on {device}"
        return None if load_kernels() is not None else f"the compiled kernels are not installed ({BUILD_HINT})"
    if device.type != "cuda":
        return f"it runs on CUDA tensors, the input is on {device}"
    if name == "cuda":
        return None if kernels_have_cuda() else f"the kernels were not compiled with CUDA ({BUILD_HINT} on a CUDA machine)"
    return None if load_mamba_scan() is not None else "mamba-ssm is not installed (`pip install mamba-ssm`)"


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on `device` here."""
    device = torch.device(device)
    return [name for name in _IMPLEMENTATIONS if _unavailable_reason(name, device) is None]


# Resolution reads the environment and imports lazily; under torch.compile/export it runs once at trace time
# and its answer is baked into the graph.
@torch.compiler.assume_constant_result
def resolve_backend(requested: str = "auto", device: torch.device | str | None = None) -> str:
    """Turn "auto" (or the environment override) into a concrete backend that can run on `device`."""
    device = torch.device(device if device is not None else "cpu")
    name = requested
    if name == "auto":
        name = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if name not in SCAN_BACKENDS:
        source = f"the {ENV_VAR} environment variable" if requested == "auto" else "config.scan_backend"
        raise ValueError(f"Unknown scan backend {name!r} from {source}; choose one of {SCAN_BACKENDS}.")
    if name == "auto":
        preferred = ("cuda", "mamba_ssm") if device.type == "cuda" else ("cpu",)
        for candidate in preferred:
            if _unavailable_reason(candidate, device) is None:
                return candidate
        logger.warning_once(
            f"No compiled DASS scan for {device.type} tensors; using the PyTorch reference scan (slower). To speed it "
            f"up, {BUILD_HINT}."
        )
        return "reference"
    reason = _unavailable_reason(name, device)
    if reason is not None:
        logger.warning_once(f"Scan backend {name!r} cannot run: {reason}. Falling back to the PyTorch reference scan.")
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
    x (B, D, H, W) -> (B, D, H, W), float32; except that the compiled backends ("cpu", "cuda") run float16 and
    bfloat16 x natively (float32 state and sums) and return x's dtype."""
    implementation = _IMPLEMENTATIONS[resolve_backend(backend, x.device)]
    return implementation(x, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D)

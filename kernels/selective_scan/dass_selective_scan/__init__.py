"""Compiled kernels of the DASS cross selective scan.

Importing this package registers `torch.ops.dass.cross_scan_fwd` and `torch.ops.dass.cross_scan_bwd`
(CPU always, CUDA when the extension was built with it). Autograd and torch.compile support are added by
`transformers_dass`.
"""

from __future__ import annotations

import torch

from . import _C  # noqa: F401  (loading the library registers the ops)

__version__ = "0.1.0"

__all__ = ["__version__", "has_cuda"]


def has_cuda() -> bool:
    """Whether CUDA kernels of the dass ops were compiled into this build."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("dass::cross_scan_fwd", "CUDA")

"""Compiled kernels of the DASS cross selective scan.

Importing this package registers `torch.ops.dass.cross_scan_fwd` and `torch.ops.dass.cross_scan_bwd`
(CPU always, CUDA when the extension was built with it). Autograd and torch.compile support are added by
`transformers_dass`.

The CPU kernels are compiled for several instruction sets ("avx512": x86-64-v4, "avx2": x86-64-v3,
"default": the portable baseline); the best one this CPU runs is chosen when the library loads.
`set_cpu_isa` (or the environment variable DASS_CPU_ISA, read on import) forces one, for tests and
benchmarks; `cpu_isa()` says which runs.
"""

from __future__ import annotations

import os

import torch

from . import _C  # noqa: F401  (loading the library registers the ops)

__version__ = "0.1.0"

__all__ = ["CPU_ISA_ENV_VAR", "__version__", "cpu_isa", "has_cuda", "set_cpu_isa", "supported_cpu_isas"]

CPU_ISA_ENV_VAR = "DASS_CPU_ISA"


def has_cuda() -> bool:
    """Whether CUDA kernels of the dass ops were compiled into this build."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("dass::cross_scan_fwd", "CUDA")


def cpu_isa() -> str:
    """The instruction-set variant the CPU kernels run now: "avx512", "avx2" or "default"."""
    return torch.ops.dass.cpu_isa()


def supported_cpu_isas() -> tuple[str, ...]:
    """The variants this CPU (and this build) can run, most portable first; always includes "default"."""
    return tuple(torch.ops.dass.supported_cpu_isas())


def set_cpu_isa(isa: str) -> str:
    """Run the CPU kernels with variant `isa` ("avx512", "avx2", "default"), or the best one with "auto".

    Process-wide; returns the variant now active. Raises RuntimeError, naming what is missing, for a
    variant this CPU cannot run (it never falls back silently).
    """
    return torch.ops.dass.set_cpu_isa(isa)


def _apply_environment() -> None:
    requested = os.environ.get(CPU_ISA_ENV_VAR, "").strip().lower()
    if requested:
        try:
            set_cpu_isa(requested)
        except RuntimeError as error:
            raise RuntimeError(f"{CPU_ISA_ENV_VAR}={requested!r}: {error}") from None


_apply_environment()

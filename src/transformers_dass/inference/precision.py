"""Inference precision on CPU: which number format a DASS model runs in, and turning a float32 model into it.

    choice, reason = resolve_dtype("auto")          # ("bfloat16", "bfloat16: this CPU has AVX512-BF16") or float32
    model = apply_precision(model, choice)

- "float32": the model as trained.
- "bfloat16": parameters cast to bfloat16, so that linears, convolutions, norms and activations run in bf16 (oneDNN
  uses AVX512-BF16 dot products or AMX tiles where the CPU has them); the selective scan keeps float32 state and
  accumulation. A few parameters stay float32, for the reasons in `DassPreTrainedModel._keep_in_fp32_modules_strict`.
  Without native bf16 instructions every bf16 operation is emulated through float32 and is slower than float32.
- "int8": the backbone's `nn.Linear` layers with int8 weights (per output channel) and activations quantised at run
  time, the rest float32 (`int8.quantize_int8`: torch.ao's dynamic quantisation by default, torchao's `quantize_` as
  the other route). The linears are ~90 % of DASS's multiply-adds.
- "auto": bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX-BF16), float32 elsewhere.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
from torch import nn

from .int8 import default_int8_route, keeps_float32, quantize_int8

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "int8")

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA) under which its matrix products have no bf16 instructions.
_ISA_CAPS_WITHOUT_BF16 = ("sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni")

__all__ = ["DTYPE_CHOICES", "CpuCapabilities", "apply_precision", "cpu_capabilities", "resolve_dtype"]


@dataclass(frozen=True)
class CpuCapabilities:
    """What this CPU (and the torch build) can do for bf16 matrix products."""

    avx512_bf16: bool = False
    amx_bf16: bool = False
    onednn: bool = True
    isa_cap: str | None = None  # ONEDNN_MAX_CPU_ISA when it is set

    def native_bf16(self) -> str | None:
        """Name of the native bf16 unit oneDNN will use, or None when bf16 would be emulated."""
        if not self.onednn:
            return None
        if self.isa_cap and self.isa_cap.lower() in _ISA_CAPS_WITHOUT_BF16:
            return None
        if self.amx_bf16:
            return "AMX-BF16"
        if self.avx512_bf16:
            return "AVX512-BF16"
        return None

    def missing_bf16(self) -> str:
        """Why bf16 would be emulated here (when `native_bf16()` is None)."""
        if not self.onednn:
            return "this torch build has no oneDNN"
        if self.isa_cap and self.isa_cap.lower() in _ISA_CAPS_WITHOUT_BF16:
            return f"ONEDNN_MAX_CPU_ISA={self.isa_cap} caps oneDNN below bf16"
        return "this CPU has no native bf16 (no AVX512-BF16 or AMX-BF16)"


@functools.lru_cache(maxsize=None)
def cpu_capabilities() -> CpuCapabilities:
    """This machine's capabilities, as torch's CPU feature detection (cpuinfo, the same that oneDNN relies on)
    reports them, with /proc/cpuinfo flags as a fallback where torch lacks the private query."""
    avx512_bf16 = _torch_cpu_flag("_is_avx512_bf16_supported", "avx512_bf16")
    # AMX needs its tile unit (and the OS's permission, which torch's check requests) and the bf16 extension.
    amx_bf16 = _torch_cpu_flag("_is_amx_tile_supported", "amx_tile") and "amx_bf16" in _proc_cpu_flags()
    isa_cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return CpuCapabilities(avx512_bf16, amx_bf16, torch.backends.mkldnn.is_available(), isa_cap)


def _torch_cpu_flag(query: str, proc_flag: str) -> bool:
    check = getattr(torch.cpu, query, None)
    if check is not None:
        try:
            return bool(check())
        except RuntimeError:
            pass
    return proc_flag in _proc_cpu_flags()


@functools.lru_cache(maxsize=None)
def _proc_cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_dtype(
    choice: str, device: torch.device | str = "cpu", capabilities: CpuCapabilities | None = None
) -> tuple[str, str]:
    """The concrete precision for `choice` (one of `DTYPE_CHOICES`) and a one-line reason, e.g.
    `("bfloat16", "bfloat16: this CPU has AVX512-BF16")`.

    "auto" takes bfloat16 only where the CPU computes it natively (see `CpuCapabilities.native_bf16`), since
    emulated bf16 is slower than float32; on a CUDA device it takes bfloat16 where the GPU supports it. An explicit
    choice is returned as it is, its reason naming what it costs where bf16 is emulated. `capabilities` replaces
    this machine's detection (for tests).
    """
    if choice not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {DTYPE_CHOICES}, got {choice!r}.")
    device = torch.device(device)
    if device.type == "cuda":
        if choice == "int8":
            raise ValueError("int8 (dynamic quantisation) runs on CPU only; use --dtype bfloat16 or float32 on a GPU.")
        if choice == "auto":
            native = torch.cuda.is_bf16_supported()
            return ("bfloat16", "bfloat16: this GPU supports it") if native else ("float32", "float32: this GPU has no bf16")
        return choice, f"{choice}: requested"
    capabilities = capabilities or cpu_capabilities()
    unit = capabilities.native_bf16()
    if choice == "auto":
        if unit is not None:
            return "bfloat16", f"bfloat16: this CPU has {unit}"
        return "float32", f"float32: {capabilities.missing_bf16()}"
    if choice == "bfloat16":
        if unit is not None:
            return "bfloat16", f"bfloat16: requested; this CPU has {unit}"
        return "bfloat16", f"bfloat16: requested; {capabilities.missing_bf16()}, so it is emulated (slower than float32)"
    if choice == "int8":
        route = "torch.ao dynamic quantisation" if default_int8_route() == "dynamic" else "torchao"
        return "int8", f"int8: requested; the linear layers quantised ({route})"
    return "float32", "float32: requested"


def apply_precision(model: nn.Module, choice: str, int8_route: str | None = None) -> nn.Module:
    """`model` (a float32 DASS model) in the precision `choice` ("float32", "bfloat16" or "int8"; resolve "auto"
    first with `resolve_dtype`). float32 returns it unchanged; bfloat16 casts it in place; int8 returns a copy whose
    backbone linears are quantised by `int8_route` ("dynamic" or "torchao", see `int8.INT8_ROUTES`; None: the
    default, `int8.default_int8_route()`). Put the model in eval mode first: these are inference formats.

    The forward still takes the float32 `input_values` of the feature extractor (it casts them to its parameters'
    dtype) and, the classification head staying float32, returns float32 logits.
    """
    if choice == "auto":
        raise ValueError("resolve 'auto' with resolve_dtype() first; apply_precision takes a concrete dtype.")
    if choice not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {DTYPE_CHOICES[1:]}, got {choice!r}.")
    if choice == "float32":
        return model
    if choice == "bfloat16":
        return _cast_keeping_float32(model, torch.bfloat16)
    return quantize_int8(model, int8_route)


_keeps_float32 = keeps_float32


def _cast_keeping_float32(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating-point parameters and buffers to `dtype`, except those the model keeps in float32: the same
    parameters in the same formats as `from_pretrained(..., dtype=dtype)`."""
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() and not _keeps_float32(model, name):
            tensor.data = tensor.data.to(dtype)
    return model

"""`nn.Linear` (optionally followed by GELU) through oneDNN in CPU inference: the block's projections and MLP.

ATen sends float32 linears to MKL's sgemm, which on AMD CPUs runs its AVX2 code even where the CPU has AVX-512;
oneDNN picks its kernels by the CPU's features on any vendor (measured on Zen 5, one thread: the MLP's fc1 at stage
0 in 4.4 ms instead of 8.6). oneDNN also applies GELU to the product before writing it out, saving a pass over the
MLP's 4x-wide hidden layer (in bf16, GELU then also sees the float32 product rather than its bf16 rounding).
`torch.ops.mkldnn._linear_pointwise` is the op that torch.compile's CPU backend emits for this; it has no autograd
formula, so it serves inference only: training, autocast, tracing for export and anything but a plain float32 or
bfloat16 `nn.Linear` on the CPU take the ordinary path. So do quantised weights: torchao's `quantize_` keeps the
`nn.Linear` but swaps its weight for a tensor subclass (`Int8Tensor`, whose `dtype` still reads float32) that
implements `F.linear` and not the oneDNN op. The results are those of `F.gelu(layer(x))` up to the
order of the float32 accumulation.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

ONEDNN_ACTIVATIONS = {None: ("none", ""), "gelu": ("gelu", "none")}


@functools.lru_cache(maxsize=None)
def _onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _plain_tensor(weight: torch.Tensor) -> bool:
    """Whether `weight` is an ordinary tensor or parameter, not a subclass such as torchao's quantised weights."""
    return type(weight) in (torch.Tensor, nn.Parameter)


def _takes_onednn(layer: nn.Module, hidden_states: torch.Tensor) -> bool:
    return (
        type(layer) is nn.Linear
        and _plain_tensor(layer.weight)
        and hidden_states.device.type == "cpu"
        and hidden_states.dtype in (torch.float32, torch.bfloat16)
        and layer.weight.dtype == hidden_states.dtype
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
        and not torch.jit.is_tracing()
        and _onednn_linear_available()
    )


def linear(layer: nn.Module, hidden_states: torch.Tensor, activation: str | None = None) -> torch.Tensor:
    """`layer(hidden_states)`, then GELU (exact, erf) when `activation == "gelu"`; (..., in) -> (..., out)."""
    if activation not in ONEDNN_ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ONEDNN_ACTIVATIONS)}, got {activation!r}")
    if _takes_onednn(layer, hidden_states):
        attr, algorithm = ONEDNN_ACTIVATIONS[activation]
        return torch.ops.mkldnn._linear_pointwise(hidden_states, layer.weight, layer.bias, attr, [], algorithm)
    output = layer(hidden_states)
    return output if activation is None else F.gelu(output)


__all__ = ["linear"]

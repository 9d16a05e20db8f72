"""fused_linear.linear: the oneDNN path (inference) against float64 and against the ordinary path it replaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformers_dass.model import fused_linear
from transformers_dass.model.fused_linear import linear

from .tolerances import gamma

BF16_U = 2.0**-8
GELU_SLOPE = 1.13  # max |gelu'(y)| (at y ~ 1.5)


def exact(layer, x, activation):
    """float64 result from the same (possibly bf16-rounded) inputs and weights."""
    y = F.linear(x.double(), layer.weight.double(), layer.bias.double() if layer.bias is not None else None)
    return (y, F.gelu(y)) if activation == "gelu" else (y, y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("activation", [None, "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_float64_on_odd_shapes(dtype, activation, bias):
    torch.manual_seed(0)
    layer = torch.nn.Linear(37, 53, bias=bias).to(dtype)
    x = torch.randn(2, 5, 7, 37).to(dtype).permute(0, 2, 1, 3)  # not contiguous, as a channels-last view may be
    with torch.inference_mode():
        fast = linear(layer, x, activation)
        plain = layer(x) if activation is None else F.gelu(layer(x))
    assert fast.shape == plain.shape == (2, 7, 5, 53) and fast.dtype == dtype
    y, out = exact(layer, x, activation)
    # float32 accumulation over K = 37 products (+ bias) in any order: gamma(K + 1) |W||x| (+|b|), times the
    # activation's slope. In bf16 the fast path rounds its result once (u |out|); the plain path may round the
    # product x W^T before adding the bias, then the sum, then the GELU: u (|out| + slope (|x W^T| + |y|)).
    magnitude = F.linear(x.double().abs(), layer.weight.double().abs(), layer.bias.double().abs() if bias else None)
    accumulation = gamma(38) * GELU_SLOPE * magnitude
    bf16 = dtype == torch.bfloat16
    fast_rounding = BF16_U * out.abs() if bf16 else 0.0
    plain_rounding = BF16_U * (out.abs() + GELU_SLOPE * (magnitude + y.abs())) if bf16 else 0.0
    assert ((fast.double() - out).abs() <= accumulation + fast_rounding).all()
    assert ((plain.double() - out).abs() <= accumulation + plain_rounding).all()


def test_onednn_serves_inference_only():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with torch.inference_mode():
        assert fused_linear._takes_onednn(layer, x) == fused_linear._onednn_linear_available()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fused_linear._takes_onednn(layer, x)
        assert not fused_linear._takes_onednn(layer, x.double())
    assert not fused_linear._takes_onednn(layer, x)  # gradients enabled: ordinary path, with autograd
    out = linear(layer, x, "gelu")
    out.sum().backward()
    assert layer.weight.grad is not None
    with pytest.raises(ValueError, match="activation"):
        linear(layer, x, "relu")

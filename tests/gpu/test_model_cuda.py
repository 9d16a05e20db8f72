"""DASS on a GPU through each CUDA scan backend against the reference (skips without a GPU)."""

from __future__ import annotations

import pytest
import torch

from transformers_dass.model.conversion import build_model
from transformers_dass.ops import available_backends

CUDA_BACKENDS = [b for b in available_backends("cuda") if b not in ("reference", "chunked")] if torch.cuda.is_available() else []
pytestmark = pytest.mark.skipif(
    not CUDA_BACKENDS, reason="needs a GPU and a CUDA scan backend (kernels built with CUDA, or mamba-ssm)"
)


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("length", [200, 1024])
def test_authors_fixture_on_gpu(original_tiny, original_tiny_weights, backend, length):
    model = build_model(original_tiny_weights, scan_backend=backend).cuda()
    with torch.no_grad():
        logits = model(original_tiny[f"input.T{length}"].cuda()).logits.cpu()
    torch.testing.assert_close(logits, original_tiny[f"logits.T{length}"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_bf16_autocast_and_gradients_on_gpu(original_tiny, original_tiny_weights, backend):
    x = original_tiny["input.T200"].cuda()
    grads = {}
    for name in ("reference", backend):
        model = build_model(original_tiny_weights, scan_backend=name).cuda().train()
        model.config.drop_path_rate = 0.0
        for module in model.modules():
            if hasattr(module, "drop_prob"):
                module.drop_prob = 0.0
        model(x, labels=torch.zeros(2, 10, device="cuda")).loss.backward()
        grads[name] = {n: p.grad.cpu() for n, p in model.named_parameters()}
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            assert torch.isfinite(model.eval()(x).logits.float()).all()
    for param, ref in grads["reference"].items():
        torch.testing.assert_close(grads[backend][param], ref, atol=1e-4, rtol=1e-3, msg=param)

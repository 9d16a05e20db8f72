"""Every scan backend that can run here against the PyTorch reference, through the whole model."""

from __future__ import annotations

import pytest
import torch

from transformers_dass import DassConfig, DassForAudioClassification
from transformers_dass.model.conversion import build_model
from transformers_dass.ops import available_backends, cross_selective_scan

from .tolerances import assert_close_scaled, gamma, scan_tolerance

COMPILED = [name for name in available_backends("cpu") if name not in ("reference", "chunked")]  # the PyTorch ones
needs_kernel = pytest.mark.skipif(
    not COMPILED, reason="compiled CPU kernel not built: pip install --no-build-isolation ./kernels/selective_scan"
)


def random_core_inputs(batch, channels, height, width, rank, state, memory):
    scale = 1e-2 if memory == "long" else 3.0
    return (
        torch.randn(batch, channels, height, width),
        torch.randn(4, rank + 2 * state, channels) * 0.5,
        torch.randn(4, channels, rank) * 0.5,
        torch.randn(4, channels) - 1.0,
        torch.log(torch.rand(4 * channels, state) * scale + 1e-4),
        torch.randn(4 * channels),
    )


@needs_kernel
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("grid", [(3, 5), (7, 2), (1, 9), (13, 4)])
@pytest.mark.parametrize("state", [1, 2])
@pytest.mark.parametrize("memory", ["long", "short"])
def test_core_outputs_and_gradients_match_reference(backend, grid, state, memory):
    inputs = random_core_inputs(3, 19, *grid, rank=3, state=state, memory=memory)
    reference_inputs = [t.clone().requires_grad_() for t in inputs]
    kernel_inputs = [t.clone().requires_grad_() for t in inputs]
    expected = cross_selective_scan(*reference_inputs, backend="reference")
    got = cross_selective_scan(*kernel_inputs, backend=backend)
    # Both run in float32, each within the scan's rounding bound (projections over 19 channels and rank 3
    # included), so they agree within twice it.
    tol = 2 * scan_tolerance(grid[0] * grid[1] + 19 + 3, state)
    assert_close_scaled(got, expected, "y", tol)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    names = ["x", "x_proj_weight", "dt_proj_weight", "dt_proj_bias", "A_log", "D"]
    for name, ref, ker in zip(names, reference_inputs, kernel_inputs):
        # Parameter gradients also sum over the batch and every position: that many more roundings.
        assert_close_scaled(ker.grad, ref.grad, name, tol + gamma(3 * grid[0] * grid[1]))


@needs_kernel
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("length", [200, 1024])
def test_authors_fixture_through_each_backend(original_tiny, original_tiny_weights, backend, length):
    model = build_model(original_tiny_weights, scan_backend=backend)
    with torch.no_grad():
        out = model(original_tiny[f"input.T{length}"], output_hidden_states=True)
    torch.testing.assert_close(out.logits, original_tiny[f"logits.T{length}"], atol=1e-4, rtol=0)
    for name, hidden in zip(["embed", "stage0", "stage1", "stage2", "stage3"], out.hidden_states):
        torch.testing.assert_close(hidden, original_tiny[f"hidden.T{length}.{name}"], atol=1e-4, rtol=0)


def tiny_model(backend: str) -> DassForAudioClassification:
    torch.manual_seed(0)
    config = DassConfig(dims=[8, 16], depths=[1, 1], num_labels=3, drop_path_rate=0.0, num_mel_bins=16)
    config.scan_backend = backend
    return DassForAudioClassification(config)


@needs_kernel
@pytest.mark.parametrize("backend", COMPILED)
def test_training_step_gradients_equal_reference(backend):
    x = torch.randn(2, 37, 16)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    grads = {}
    for name in ("reference", backend):
        model = tiny_model(name).train()
        model(x, labels=labels).loss.backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters()}
    for param, ref in grads["reference"].items():
        torch.testing.assert_close(grads[backend][param], ref, atol=1e-5, rtol=1e-4, msg=param)


@needs_kernel
@pytest.mark.parametrize("backend", COMPILED)
def test_torch_compile_and_export_trace_the_kernel(backend):
    model = tiny_model(backend).eval()
    x = torch.randn(1, 40, 16)
    with torch.no_grad():
        expected = model(x).logits
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x).logits, expected, atol=1e-5, rtol=1e-5)
    exported = torch.export.export(model, (x,))
    targets = {
        str(node.target) for module in exported.graph_module.modules() if hasattr(module, "graph")
        for node in module.graph.nodes
    }
    assert "dass.cross_scan_fwd.default" in targets
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x).logits, expected, atol=1e-5, rtol=1e-5)

"""The export-friendly "chunked" scan backend (ops/chunked.py) against step-by-step definitions and the reference."""

from __future__ import annotations

import pytest
import torch

from transformers_dass.ops import cross_selective_scan, resolve_backend
from transformers_dass.ops.chunked import linear_recurrence_chunked

from .tolerances import assert_close_scaled, scan_tolerance


def loop_recurrence(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """h_t = decay_t * h_{t-1} + drive_t, one step at a time in float64."""
    state = torch.zeros(decay.shape[:-1], dtype=torch.float64)
    states = []
    for t in range(decay.shape[-1]):
        state = decay[..., t].double() * state + drive[..., t].double()
        states.append(state)
    return torch.stack(states, -1)


# chunk=4, levels=2: every level and a closed form over several states (ceil(T / 16) of them) at small T;
# the defaults (64, 2): one closed-form state up to 4,096 steps, two beyond.
@pytest.mark.parametrize("chunk,levels", [(4, 2), (4, 1), (64, 2)])
@pytest.mark.parametrize("length", [1, 2, 3, 15, 16, 17, 63, 64, 65, 257, 4097])
@pytest.mark.parametrize("memory", ["long", "short"])
def test_linear_recurrence_chunked_matches_a_loop(chunk, levels, length, memory):
    generator = torch.Generator().manual_seed(length)
    # long memory: decays near 1 (states carry across every chunk); short: many decays underflow to 0.
    decay = torch.rand(2, 3, length, generator=generator) ** (1e-3 if memory == "long" else 50.0)
    drive = torch.randn(2, 3, length, generator=generator)
    got = linear_recurrence_chunked(decay, drive, chunk=chunk, levels=levels)
    assert got.dtype == torch.float32 and got.shape == drive.shape
    # The closed form's exp(sum of logs) rounds like the products it replaces (a sum of at most T rounded logs,
    # one log and one exp per weight), within the bound of a float32 scan of that length.
    assert_close_scaled(got, loop_recurrence(decay, drive), "h", scan_tolerance(length, 1))


def test_decays_of_zero_give_finite_states_and_gradients():
    decay = torch.zeros(1, 100, requires_grad=True)
    drive = torch.randn(1, 100, requires_grad=True)
    states = linear_recurrence_chunked(decay, drive, chunk=4, levels=1)
    torch.testing.assert_close(states, drive.detach(), atol=0, rtol=0)
    states.sum().backward()
    assert torch.isfinite(decay.grad).all() and torch.isfinite(drive.grad).all()


def random_core_inputs(channels, height, width, rank=3, state=1):
    generator = torch.Generator().manual_seed(height * width)
    return (
        torch.randn(2, channels, height, width, generator=generator),
        torch.randn(4, rank + 2 * state, channels, generator=generator) * 0.5,
        torch.randn(4, channels, rank, generator=generator) * 0.5,
        torch.randn(4, channels, generator=generator) - 1.0,
        torch.log(torch.rand(4 * channels, state, generator=generator) * 0.1 + 1e-4),
        torch.randn(4 * channels, generator=generator),
    )


@pytest.mark.parametrize("grid", [(1, 1), (3, 5), (13, 4), (7, 611)])
@pytest.mark.parametrize("state", [1, 2])
def test_core_outputs_and_gradients_match_reference(grid, state):
    inputs = random_core_inputs(11, *grid, state=state)
    reference_inputs = [t.clone().requires_grad_() for t in inputs]
    chunked_inputs = [t.clone().requires_grad_() for t in inputs]
    expected = cross_selective_scan(*reference_inputs, backend="reference")
    got = cross_selective_scan(*chunked_inputs, backend="chunked")
    # Both float32, each within the scan's rounding bound (with the projections over 11 channels and rank 3).
    tol = 2 * scan_tolerance(grid[0] * grid[1] + 11 + 3, state)
    assert_close_scaled(got, expected, "y", tol)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    for name, ref, new in zip(["x", "x_proj", "dt_proj", "dt_bias", "A_log", "D"], reference_inputs, chunked_inputs):
        # Parameter gradients also sum over the batch and every position: that many more roundings. (On a 1 x 1
        # grid the reference never reads the decay, so A_log gets no gradient there: zero.)
        expected_grad = ref.grad if ref.grad is not None else torch.zeros_like(ref)
        assert_close_scaled(new.grad, expected_grad, name, tol + scan_tolerance(3 * grid[0] * grid[1], state))


def test_chunked_is_a_backend_that_always_runs():
    assert resolve_backend("chunked", "cpu") == "chunked"

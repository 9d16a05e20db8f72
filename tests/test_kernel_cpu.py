"""The compiled CPU kernels torch.ops.dass.cross_scan_fwd / cross_scan_bwd against the PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from transformers_dass.ops.reference import cross_scan_channels_last_reference

from .tolerances import NUM_DIRECTIONS, assert_close_scaled, scan_tolerance

pytest.importorskip(
    "dass_selective_scan", reason="kernel not built: pip install --no-build-isolation ./kernels/selective_scan"
)

GRIDS = [(3, 5), (7, 2), (1, 9), (13, 4)]
INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def make_inputs(batch, height, width, channels, state, memory):
    """Random kernel inputs (u, delta, A, B, C, D, delta_bias), float32 and contiguous.

    long memory: decays close to 1 (A ~ -1e-3, small time steps), so states carry along a whole scan;
    short memory: A ~ -5 with time steps around 1, so states forget within a step or two.
    """
    length = height * width
    if memory == "long":
        A = -(torch.rand(NUM_DIRECTIONS, channels, state) + 0.1) * 1e-3
        delta = torch.randn(batch, NUM_DIRECTIONS, length, channels) * 0.5 - 3.0
    else:
        A = -(torch.rand(NUM_DIRECTIONS, channels, state) + 0.5) * 5.0
        delta = torch.randn(batch, NUM_DIRECTIONS, length, channels)
    return (
        torch.randn(batch, length, channels),
        delta,
        A,
        torch.randn(batch, NUM_DIRECTIONS, length, state),
        torch.randn(batch, NUM_DIRECTIONS, length, state),
        torch.randn(NUM_DIRECTIONS, channels),
        torch.randn(NUM_DIRECTIONS, channels) * 0.5,
    )


def reference_output(inputs, height, width):
    """The PyTorch reference in float64: the ground truth the float32 kernel is held to."""
    return cross_scan_channels_last_reference(*(t.double() for t in inputs), height, width)


def reference_gradients(inputs, dy, height, width):
    leaves = [t.double().requires_grad_(True) for t in inputs]
    out = cross_scan_channels_last_reference(*leaves, height, width)
    return torch.autograd.grad(out, leaves, dy.double())


def check_forward_and_backward(inputs, dy, height, width):
    """The kernel's output and its seven gradients against the float64 reference, within scan_tolerance."""
    tol = scan_tolerance(height * width, inputs[2].shape[-1])
    out = torch.ops.dass.cross_scan_fwd(*inputs, height, width)
    assert out.dtype == torch.float32
    assert_close_scaled(out, reference_output(inputs, height, width), "y", tol)
    grads = torch.ops.dass.cross_scan_bwd(dy, *inputs, height, width)
    assert len(grads) == len(INPUT_NAMES)
    for name, grad, ref, tensor in zip(INPUT_NAMES, grads, reference_gradients(inputs, dy, height, width), inputs):
        assert grad.shape == tensor.shape, name
        assert torch.isfinite(grad).all(), name
        assert_close_scaled(grad, ref, name, tol)


@pytest.mark.parametrize("memory", ["long", "short"])
@pytest.mark.parametrize("state", [1, 3])
@pytest.mark.parametrize("channels", [5, 19])
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_forward_and_backward_match_reference(grid, channels, state, memory):
    height, width = grid
    inputs = make_inputs(3, height, width, channels, state, memory)
    check_forward_and_backward(inputs, torch.randn(3, height * width, channels), height, width)


# Wide blocks (channels split into 64/48/32/16-wide blocks plus a partial group), N = 2 and 4, and the
# stage shapes of DASS with fewer positions.
@pytest.mark.parametrize(
    ("batch", "height", "width", "channels", "state"),
    [(2, 6, 11, 96, 1), (1, 5, 7, 200, 1), (2, 4, 9, 37, 2), (1, 8, 8, 48, 4), (4, 3, 3, 64, 1)],
)
def test_wide_blocks_and_other_state_sizes(batch, height, width, channels, state):
    inputs = make_inputs(batch, height, width, channels, state, "short")
    check_forward_and_backward(inputs, torch.randn(batch, height * width, channels), height, width)


def test_long_scan_with_large_state_is_checkpointed():
    """9000 steps x 16 (padded) channels x N = 16 exceed the backward's per-thread record budget (2^22 floats),
    so the reverse walk re-records the scan chunk by chunk from saved states. Long memory: every step's error
    is carried to the end of the scan, so the tolerance grows with the length."""
    height, width, channels, state = 45, 200, 5, 16
    inputs = make_inputs(1, height, width, channels, state, "long")
    check_forward_and_backward(inputs, torch.randn(1, height * width, channels), height, width)


def test_results_do_not_depend_on_thread_count():
    """Threads split the work, not the order of any sum a thread makes, so counts agree within the rounding
    bound of either (twice scan_tolerance)."""
    inputs = make_inputs(2, 8, 12, 80, 1, "short")
    dy = torch.randn(2, 96, 80)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = (torch.ops.dass.cross_scan_fwd(*inputs, 8, 12), *torch.ops.dass.cross_scan_bwd(dy, *inputs, 8, 12))
    finally:
        torch.set_num_threads(threads)
    multi = (torch.ops.dass.cross_scan_fwd(*inputs, 8, 12), *torch.ops.dass.cross_scan_bwd(dy, *inputs, 8, 12))
    for a, b in zip(single, multi):
        assert_close_scaled(a, b, "threads", 2 * scan_tolerance(96, 1))


def test_extreme_time_steps():
    """softplus past its threshold (x > 20) and far below 0, where exp underflows."""
    inputs = list(make_inputs(2, 4, 5, 21, 1, "short"))
    inputs[1] = torch.randn_like(inputs[1]) * 40.0
    check_forward_and_backward(inputs, torch.randn(2, 20, 21), 4, 5)


def test_has_cuda_reports_a_bool():
    import dass_selective_scan

    assert isinstance(dass_selective_scan.has_cuda(), bool)
    assert isinstance(dass_selective_scan.__version__, str)


def test_wrong_dtype_is_rejected():
    inputs = list(make_inputs(1, 2, 3, 4, 1, "short"))
    inputs[0] = inputs[0].double()
    with pytest.raises(RuntimeError, match="u must be float32"):
        torch.ops.dass.cross_scan_fwd(*inputs, 2, 3)


def test_non_contiguous_input_is_rejected():
    inputs = list(make_inputs(1, 2, 3, 4, 1, "short"))
    inputs[1] = inputs[1].transpose(2, 3).contiguous().transpose(2, 3)
    assert not inputs[1].is_contiguous()
    with pytest.raises(RuntimeError, match="delta must be contiguous"):
        torch.ops.dass.cross_scan_fwd(*inputs, 2, 3)


def test_grid_that_does_not_match_the_length_is_rejected():
    inputs = make_inputs(1, 2, 3, 4, 1, "short")
    with pytest.raises(RuntimeError, match=r"height \* width .* must equal the number of positions L"):
        torch.ops.dass.cross_scan_fwd(*inputs, 3, 3)
    with pytest.raises(RuntimeError, match="must equal the number of positions"):
        torch.ops.dass.cross_scan_bwd(torch.randn(1, 6, 4), *inputs, 1, 5)


def test_inconsistent_shapes_are_rejected():
    u, delta, A, B, C, D, delta_bias = make_inputs(1, 2, 3, 4, 1, "short")
    with pytest.raises(RuntimeError, match=r"B \(Bt, 4, L, N\) must have shape"):
        torch.ops.dass.cross_scan_fwd(u, delta, A, B[:, :, :5].contiguous(), C, D, delta_bias, 2, 3)
    with pytest.raises(RuntimeError, match=r"dy \(Bt, L, Dc\) must have shape"):
        torch.ops.dass.cross_scan_bwd(torch.randn(1, 6, 5), u, delta, A, B, C, D, delta_bias, 2, 3)

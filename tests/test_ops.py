"""The reference cross selective scan against plain step-by-step definitions."""

from __future__ import annotations

import pytest
import torch

from transformers_dass.ops import (
    cross_merge,
    cross_scan,
    cross_selective_scan,
    cross_selective_scan_reference,
    resolve_backend,
    selective_scan_reference,
)
from transformers_dass.ops.reference import linear_recurrence

from .tolerances import assert_close_scaled, scan_tolerance


def step_by_step_scan(u, delta, A, B, C, D, delta_bias):
    """mamba-ssm's selective scan written as the recurrence itself, one time step at a time (float64)."""
    u, delta, A, B, C, D, delta_bias = (t.double() for t in (u, delta, A, B, C, D, delta_bias))
    batch, channels, length = u.shape
    groups = B.shape[1]
    per_group = channels // groups
    delta = torch.nn.functional.softplus(delta + delta_bias[:, None])
    group_of = torch.arange(channels) // per_group
    state = torch.zeros(batch, channels, A.shape[1], dtype=torch.float64)
    outputs = []
    for t in range(length):
        b_t = B[:, group_of, :, t]  # (batch, channels, N)
        c_t = C[:, group_of, :, t]
        state = torch.exp(delta[:, :, t, None] * A) * state + (delta[:, :, t] * u[:, :, t])[..., None] * b_t
        outputs.append((state * c_t).sum(-1) + D * u[:, :, t])
    return torch.stack(outputs, -1)


@pytest.mark.parametrize("length", [1, 2, 63, 64, 65, 130, 4099])
def test_linear_recurrence_matches_a_loop(length):
    decay = torch.rand(3, length)
    drive = torch.randn(3, length)
    state = torch.zeros(3, dtype=torch.float64)
    expected = []
    for t in range(length):
        state = decay[:, t].double() * state + drive[:, t].double()
        expected.append(state)
    got = linear_recurrence(decay, drive, chunk=8)
    assert got.dtype == torch.float32
    # A chunked prefix scan rounds differently from the loop, but no more than a scan of that length may.
    assert_close_scaled(got, torch.stack(expected, -1), "h", scan_tolerance(length, 1))


@pytest.mark.parametrize("state_size", [1, 3])
@pytest.mark.parametrize("memory", ["long", "short"])
def test_selective_scan_matches_the_recurrence(state_size, memory):
    batch, groups, per_group, length = 3, 4, 5, 211
    channels = groups * per_group
    u = torch.randn(batch, channels, length)
    delta = torch.randn(batch, channels, length)
    # long memory: decays close to 1; short memory: states forget within a step or two.
    scale = 1e-3 if memory == "long" else 5.0
    A = -torch.rand(channels, state_size) * scale
    B = torch.randn(batch, groups, state_size, length)
    C = torch.randn(batch, groups, state_size, length)
    D = torch.randn(channels)
    delta_bias = torch.randn(channels)
    got = selective_scan_reference(u, delta, A, B, C, D, delta_bias)
    expected = step_by_step_scan(u, delta, A, B, C, D, delta_bias)
    assert got.dtype == torch.float32
    assert_close_scaled(got, expected, "y", scan_tolerance(length, state_size))


def test_cross_scan_orders():
    batch, channels, height, width = 2, 3, 4, 7
    x = torch.randn(batch, channels, height, width)
    xs = cross_scan(x)
    assert xs.shape == (batch, 4, channels, height * width)
    for position in range(height * width):
        torch.testing.assert_close(xs[:, 0, :, position], x[:, :, position // width, position % width])
        torch.testing.assert_close(xs[:, 1, :, position], x[:, :, position % height, position // height])
    torch.testing.assert_close(xs[:, 2], xs[:, 0].flip(-1))
    torch.testing.assert_close(xs[:, 3], xs[:, 1].flip(-1))


def test_cross_merge_is_the_adjoint_of_cross_scan():
    x = torch.randn(2, 3, 5, 9, dtype=torch.float64)
    ys = torch.randn(2, 4, 3, 45, dtype=torch.float64)
    left = (cross_scan(x) * ys).sum()
    right = (x * cross_merge(ys, 5, 9)).sum()
    torch.testing.assert_close(left, right)


def test_cross_selective_scan_matches_per_direction_recurrence():
    batch, channels, height, width, rank, state = 2, 6, 3, 5, 2, 1
    x = torch.randn(batch, channels, height, width)
    x_proj = torch.randn(4, rank + 2 * state, channels) * 0.5
    dt_proj = torch.randn(4, channels, rank) * 0.5
    dt_bias = torch.randn(4, channels)
    A_log = torch.randn(4 * channels, state)
    D = torch.randn(4 * channels)
    got = cross_selective_scan_reference(x, x_proj, dt_proj, dt_bias, A_log, D)

    expected = torch.zeros(batch, channels, height, width, dtype=torch.float64)
    orders = [
        [(h, w) for h in range(height) for w in range(width)],
        [(h, w) for w in range(width) for h in range(height)],
    ]
    orders += [order[::-1] for order in orders]
    for k, order in enumerate(orders):
        seq = torch.stack([x[:, :, h, w] for h, w in order], -1)  # (batch, channels, L)
        proj = torch.einsum("cd,bdl->bcl", x_proj[k], seq)
        dts = torch.einsum("dr,brl->bdl", dt_proj[k], proj[:, :rank])
        rows = slice(k * channels, (k + 1) * channels)
        y = step_by_step_scan(
            seq, dts, -torch.exp(A_log[rows]), proj[:, None, rank : rank + state], proj[:, None, rank + state :],
            D[rows], dt_bias[k],
        )
        for position, (h, w) in enumerate(order):
            expected[:, :, h, w] += y[:, :, position]
    # The projections add sums over the channels and the dt rank to the scan's own accumulation.
    assert_close_scaled(got, expected, "y", scan_tolerance(height * width + channels + rank, state))


def test_backend_resolution(monkeypatch):
    from transformers_dass.ops.compiled import load_kernels

    monkeypatch.delenv("DASS_SCAN_BACKEND", raising=False)
    assert resolve_backend("auto") == ("cpu" if load_kernels() is not None else "reference")
    assert resolve_backend("reference") == "reference"
    monkeypatch.setenv("DASS_SCAN_BACKEND", "reference")
    assert resolve_backend("auto") == "reference"
    assert resolve_backend("reference", "cpu") == "reference"
    monkeypatch.setenv("DASS_SCAN_BACKEND", "warp-drive")
    with pytest.raises(ValueError, match="DASS_SCAN_BACKEND"):
        resolve_backend("auto")
    with pytest.raises(ValueError, match="config.scan_backend"):
        resolve_backend("bogus")


@pytest.mark.parametrize("backend", ["cuda", "mamba_ssm"])
def test_gpu_backends_on_cpu_tensors_fall_back_with_a_warning(backend, caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers_dass.ops.dispatch").warning_once.cache_clear()
    with caplog.at_level("WARNING"):
        assert resolve_backend(backend, "cpu") == "reference"
    assert f"Scan backend '{backend}' cannot run" in caplog.text


def test_dispatch_runs_the_reference():
    args = (torch.randn(1, 4, 3, 3), torch.randn(4, 3, 4), torch.randn(4, 4, 1), torch.randn(4, 4),
            torch.randn(16, 1), torch.randn(16))
    torch.testing.assert_close(cross_selective_scan(*args, backend="reference"), cross_selective_scan_reference(*args))

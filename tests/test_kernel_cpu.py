"""The compiled CPU kernels torch.ops.dass.cross_scan_fwd / cross_scan_bwd against the PyTorch reference."""

from __future__ import annotations

import os

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


def test_wrong_dtypes_are_rejected():
    inputs = list(make_inputs(1, 2, 3, 4, 1, "short"))
    with pytest.raises(RuntimeError, match="u must be float32, float16 or bfloat16, got Double"):
        torch.ops.dass.cross_scan_fwd(inputs[0].double(), *inputs[1:], 2, 3)
    with pytest.raises(RuntimeError, match=r"delta \(BFloat16\) must have the dtype of u \(Float\)"):
        torch.ops.dass.cross_scan_fwd(inputs[0], inputs[1].bfloat16(), *inputs[2:], 2, 3)
    with pytest.raises(RuntimeError, match="A must be float32, got BFloat16"):
        torch.ops.dass.cross_scan_fwd(*inputs[:2], inputs[2].bfloat16(), *inputs[3:], 2, 3)
    with pytest.raises(RuntimeError, match=r"dy \(Double\) must be float32 or have the dtype of u"):
        torch.ops.dass.cross_scan_bwd(torch.randn(1, 6, 4, dtype=torch.float64), *inputs, 2, 3)


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


# ---------------------------------------------------------------------------------------------------------------
# Instruction-set variants (AVX-512, AVX2, portable), each forced in turn

ISAS = ("avx512", "avx2", "default")


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test with the CPU kernels forced to one variant; skips variants this CPU cannot run."""
    import dass_selective_scan

    if request.param not in dass_selective_scan.supported_cpu_isas():
        supported = dass_selective_scan.supported_cpu_isas()
        pytest.skip(f"this CPU cannot run the {request.param} kernels (it runs {', '.join(supported)})")
    previous = dass_selective_scan.cpu_isa()
    assert dass_selective_scan.set_cpu_isa(request.param) == request.param
    try:
        yield request.param
    finally:
        dass_selective_scan.set_cpu_isa(previous)


# Odd shapes: partial channel groups (5, 37), wide + narrow + partial groups (70), N = 1 and N > 1.
@pytest.mark.parametrize(
    ("batch", "height", "width", "channels", "state", "memory"),
    [(3, 3, 5, 19, 1, "long"), (2, 7, 2, 37, 3, "short"), (1, 13, 4, 70, 1, "short"), (2, 1, 9, 5, 2, "long")],
)
def test_each_isa_matches_reference(isa, batch, height, width, channels, state, memory):
    import dass_selective_scan

    assert dass_selective_scan.cpu_isa() == isa
    inputs = make_inputs(batch, height, width, channels, state, memory)
    check_forward_and_backward(inputs, torch.randn(batch, height * width, channels), height, width)


def test_isa_choice_rule_with_faked_cpus():
    """The rule that picks the variant, fed the capability lists of other CPUs: "auto" takes the fastest one the
    CPU runs; a named one must be among them, else the error names what is missing (never a SIGILL later)."""
    resolve = torch.ops.dass.resolve_cpu_isa
    assert resolve("auto", ["default", "avx2", "avx512"]) == "avx512"  # e.g. Intel Xeon with AVX-512, Zen 4/5
    assert resolve("auto", ["default", "avx2"]) == "avx2"  # an AVX2-only EPYC
    assert resolve("auto", ["default"]) == "default"
    assert resolve("avx2", ["default", "avx2", "avx512"]) == "avx2"
    assert resolve("default", ["default", "avx2"]) == "default"
    with pytest.raises(RuntimeError, match=r"cannot run the \"avx512\" kernels \(they need x86-64-v4: AVX-512"):
        resolve("avx512", ["default", "avx2"])
    with pytest.raises(RuntimeError, match=r"cannot run the \"avx2\" kernels .* it runs: default"):
        resolve("avx2", ["default"])
    with pytest.raises(RuntimeError, match=r"unknown CPU kernel variant \"sse4\"; choose \"auto\""):
        resolve("sse4", ["default"])


def test_set_cpu_isa_reports_and_refuses():
    import dass_selective_scan

    supported = dass_selective_scan.supported_cpu_isas()
    assert supported[0] == "default" and set(supported) <= set(ISAS)
    previous = dass_selective_scan.cpu_isa()
    try:
        assert dass_selective_scan.set_cpu_isa("auto") == supported[-1] == dass_selective_scan.cpu_isa()
        assert dass_selective_scan.set_cpu_isa("default") == "default" == dass_selective_scan.cpu_isa()
        for missing in set(ISAS) - set(supported):
            with pytest.raises(RuntimeError, match=f'cannot run the "{missing}" kernels'):
                dass_selective_scan.set_cpu_isa(missing)
            assert dass_selective_scan.cpu_isa() == "default"  # a refused request changes nothing
        with pytest.raises(RuntimeError, match="unknown CPU kernel variant"):
            dass_selective_scan.set_cpu_isa("fastest")
    finally:
        dass_selective_scan.set_cpu_isa(previous)


def test_environment_variable_forces_the_variant():
    import subprocess
    import sys

    code = "import dass_selective_scan as d; print(d.cpu_isa())"
    env = {k: v for k, v in os.environ.items() if k != "DASS_CPU_ISA"}
    forced = subprocess.run([sys.executable, "-c", code], env={**env, "DASS_CPU_ISA": "default"},
                            capture_output=True, text=True, check=True)
    assert forced.stdout.strip() == "default"
    bad = subprocess.run([sys.executable, "-c", code], env={**env, "DASS_CPU_ISA": "avx1024"},
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert "DASS_CPU_ISA='avx1024': dass: unknown CPU kernel variant" in bad.stderr


# ---------------------------------------------------------------------------------------------------------------
# bfloat16 / float16 inputs: float32 state and sums, outputs rounded once to the input dtype

# Unit roundoff of the storage formats (8 and 11 significand bits): rounding to nearest changes a value by at most
# this much relative to its magnitude (float16 also has subnormals, absolute error 2^-25, far below the scales here).
UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def low_precision_tolerance(length, state, dtype):
    """The kernel reads the rounded inputs exactly (bfloat16/float16 -> float32 is exact) and computes as in
    float32 (scan_tolerance); each low-precision output (y, du, ddelta, dB, dC) is then rounded once, adding at
    most the unit roundoff times its magnitude. The reference runs in float64 on the very same rounded inputs,
    so no input rounding enters the comparison."""
    return scan_tolerance(length, state) + UNIT_ROUNDOFF[dtype]


def check_low_precision(inputs, dy, height, width, dtype):
    out = torch.ops.dass.cross_scan_fwd(*inputs, height, width)
    assert out.dtype == dtype
    tol = low_precision_tolerance(height * width, inputs[2].shape[-1], dtype)
    assert_close_scaled(out, reference_output(inputs, height, width), "y", tol)
    grads = torch.ops.dass.cross_scan_bwd(dy, *inputs, height, width)
    for name, grad, ref, tensor in zip(INPUT_NAMES, grads, reference_gradients(inputs, dy, height, width), inputs):
        assert grad.dtype == tensor.dtype and grad.shape == tensor.shape, name
        assert torch.isfinite(grad).all(), name
        assert_close_scaled(grad, ref, name, tol)


def round_scan_inputs(inputs, dtype, indices=(0, 1, 3, 4)):
    """u, delta, B, C (or the given ones) rounded to dtype; A, D, delta_bias stay float32."""
    return tuple(t.to(dtype) if i in indices else t for i, t in enumerate(inputs))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    ("batch", "height", "width", "channels", "state", "memory"),
    [(2, 13, 4, 37, 1, "short"), (1, 5, 7, 70, 2, "long")],
)
def test_low_precision_inputs_match_reference(isa, dtype, batch, height, width, channels, state, memory):
    inputs = round_scan_inputs(make_inputs(batch, height, width, channels, state, memory), dtype)
    check_low_precision(inputs, torch.randn(batch, height * width, channels).to(dtype), height, width, dtype)


def test_low_precision_u_with_float32_projections_and_gradient():
    """bfloat16 u / delta with float32 B, C and dy (the dtypes the CUDA kernels also take)."""
    inputs = round_scan_inputs(make_inputs(2, 6, 11, 40, 1, "short"), torch.bfloat16, indices=(0, 1))
    check_low_precision(inputs, torch.randn(2, 66, 40), 6, 11, torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_loads_and_stores_round_like_torch(isa, dtype):
    """With B = C = 0 the output is exactly sum_k D_k u in float32 (the state terms are 0), so y must equal torch's
    rounding of D_0 * u to dtype bit for bit (D_1..3 = 0): round to nearest even, ties, subnormals, overflow to
    infinity, NaN. The inputs cover every finite bit pattern of the format times a few scales."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    every_value = bits.view(dtype)
    every_value = every_value[torch.isfinite(every_value.float())]
    half_ulp = UNIT_ROUNDOFF[dtype]  # half the spacing of the format just above 1: 1 + half_ulp is a tie
    scales = torch.tensor([1.0, 1.0 + half_ulp, 1.0 + 3 * half_ulp, 0.7, 3.3e4, 1.0 / 3.0, float("nan")])
    channels = scales.numel()
    u = every_value.view(1, -1, 1).expand(1, -1, channels).contiguous()
    length = u.shape[1]
    D = torch.zeros(NUM_DIRECTIONS, channels)
    D[0] = scales
    zeros = torch.zeros(1, NUM_DIRECTIONS, length, 1, dtype=dtype)
    y = torch.ops.dass.cross_scan_fwd(
        u,
        torch.zeros(1, NUM_DIRECTIONS, length, channels, dtype=dtype),
        -torch.ones(NUM_DIRECTIONS, channels, 1),
        zeros,
        zeros,
        D,
        torch.zeros(NUM_DIRECTIONS, channels),
        1,
        length,
    )
    expected = (u.float() * scales).to(dtype)
    torch.testing.assert_close(y, expected, rtol=0, atol=0, equal_nan=True)
    # and bit for bit, except the sign of zeros (the kernel adds the other directions' +0 terms) and NaN payloads
    same_bits = y.view(torch.int16) == expected.view(torch.int16)
    assert bool((same_bits | torch.isnan(expected.float()) | (expected == 0)).all())


class ScanRecorder:
    """A TorchDispatchMode (built lazily) that records the dtypes of u, delta, B, C of every dass.cross_scan_fwd call
    and every op output (name, dtype, numel)."""

    def __new__(cls):
        from torch.utils._python_dispatch import TorchDispatchMode

        class Recorder(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.scans, self.outputs = [], []

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if str(func).startswith("dass.cross_scan_fwd"):
                    self.scans.append(tuple(args[i].dtype for i in (0, 1, 3, 4)))
                if isinstance(out, torch.Tensor):
                    self.outputs.append((str(func), out.dtype, out.numel()))
                return out

        return Recorder()


def test_autocast_model_feeds_the_kernel_bfloat16():
    """torch.autocast("cpu", bfloat16) around a float32 model: every scan gets bfloat16 u, delta, B and C."""
    from transformers_dass import DassConfig, DassForAudioClassification

    torch.manual_seed(0)
    config = DassConfig(dims=[8, 16], depths=[1, 1], num_labels=3, drop_path_rate=0.0, num_mel_bins=16)
    config.scan_backend = "cpu"
    model = DassForAudioClassification(config).eval()
    recorder = ScanRecorder()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16), recorder:
        model(torch.randn(1, 37, 16))
    assert len(recorder.scans) == sum(config.depths)
    assert set(recorder.scans) == {(torch.bfloat16,) * 4}


def test_low_precision_model_core_runs_without_float32_copies():
    """bfloat16 features through the compiled SS2D core: the kernel gets bfloat16 u and delta, the result is
    bfloat16, and nothing of the size of the features (or larger) is copied to float32 on the way."""
    from transformers_dass.ops import cross_selective_scan

    batch, channels, height, width, rank = 2, 24, 6, 10, 2
    x = torch.randn(batch, height, width, channels).permute(0, 3, 1, 2).bfloat16()  # channels-last, as the model's
    weights = (
        torch.randn(4, rank + 2, channels) * 0.3,
        torch.randn(4, channels, rank) * 0.3,
        torch.randn(4, channels) - 1.0,
        torch.log(torch.rand(4 * channels, 1) + 0.1),
        torch.randn(4 * channels),
    )
    recorder = ScanRecorder()
    with torch.no_grad(), recorder, torch.autocast("cpu", torch.bfloat16):
        y = cross_selective_scan(x, *weights, backend="cpu")
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    assert recorder.scans == [(torch.bfloat16,) * 4]  # u, delta, B, C
    big_float32 = [name for name, dtype, numel in recorder.outputs if dtype == torch.float32 and numel >= x.numel()]
    assert big_float32 == [], big_float32

"""The CUDA kernels of torch.ops.dass (kernels/selective_scan/csrc/cross_scan_cuda.cu) against the reference.

Three layers, so that a machine without a GPU still checks what it can:

* `test_nvcc_compile_check`: the .cu file compiles with nvcc (check_cuda_compile.sh; skipped without nvcc).
* `test_emulated_*`: the very device code of the kernels (csrc/cross_scan_cuda_kernels.cuh), built by the host
  C++ compiler against csrc/cuda_host_emulation.cuh and run on CPU threads (real __syncthreads barriers, warp
  shuffles and atomics), against the reference: indexing, chunk carries, direction orders and reductions.
* the rest run the real kernels and skip unless a GPU and a CUDA build of dass_selective_scan are present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from transformers_dass.ops.reference import (
    NUM_DIRECTIONS,
    cross_scan_channels_last_reference,
)

INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")
GRAD_NAMES = tuple(f"d{name}" for name in INPUT_NAMES)
KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels" / "selective_scan"
CSRC = KERNEL_DIR / "csrc"


# ---------------------------------------------------------------------------------------------------------
# Inputs and the reference


def make_inputs(batch, height, width, channels, state, memory, seed=0):
    """Random float32 kernel inputs (u, delta, A, B, C, D, delta_bias) on the CPU.

    long memory: decays close to 1 (A ~ -1e-3, small time steps), so states carry along a whole scan;
    short memory: A ~ -5 with time steps around 1, so states forget within a step or two.
    One raw time step is pushed past softplus's threshold (20) to cover that branch.
    """
    generator = torch.Generator().manual_seed(seed)
    length = height * width

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    if memory == "long":
        A = -(rand(NUM_DIRECTIONS, channels, state) + 0.1) * 1e-3
        delta = randn(batch, NUM_DIRECTIONS, length, channels) * 0.5 - 3.0
    else:
        A = -(rand(NUM_DIRECTIONS, channels, state) + 0.5) * 5.0
        delta = randn(batch, NUM_DIRECTIONS, length, channels)
    delta[0, 0, 0, 0] = 25.0
    return (
        randn(batch, length, channels),
        delta,
        A,
        randn(batch, NUM_DIRECTIONS, length, state),
        randn(batch, NUM_DIRECTIONS, length, state),
        randn(NUM_DIRECTIONS, channels),
        randn(NUM_DIRECTIONS, channels) * 0.5,
    )


def reference(inputs, dy, height, width):
    """Output and input gradients of the reference (float32, on the inputs' device)."""
    leaves = [t.detach().float().clone().requires_grad_(True) for t in inputs]
    out = cross_scan_channels_last_reference(*leaves, height, width)
    grads = torch.autograd.grad(out, leaves, dy, allow_unused=True)  # A is unused when L == 1
    return out.detach(), [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]


def assert_close_scaled(actual, expected, name, tol):
    """Agreement within tol relative to the expected tensor's largest magnitude (and tol elementwise)."""
    actual, expected = actual.float(), expected.float()
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=tol * scale, rtol=tol, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------------------------------------------------
# nvcc compile check (CPU machines too)


def find_nvcc() -> str | None:
    found = shutil.which(os.environ.get("NVCC", "nvcc"))
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
            return os.path.join(home, "bin", "nvcc")
    return None


def test_nvcc_compile_check():
    """check_cuda_compile.sh compiles csrc/*.cu with nvcc against the installed torch (about 1.5 min)."""
    if find_nvcc() is None:
        pytest.skip("nvcc is not installed: the CUDA kernels cannot be compile-checked here")
    result = subprocess.run(
        ["bash", str(KERNEL_DIR / "check_cuda_compile.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"nvcc compile check failed:\n{result.stdout}\n{result.stderr[-20000:]}"
    if result.stdout.startswith("SKIP"):
        pytest.skip(result.stdout.strip())
    assert "OK: cross_scan_cuda.cu" in result.stdout, result.stdout


# ---------------------------------------------------------------------------------------------------------
# The kernels' device code on CPU threads (cuda_host_emulation.cuh)

EMULATION_DRIVER = r"""
#include "cuda_host_emulation.cuh"
#include "cross_scan_cuda_kernels.cuh"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <vector>

using namespace dass_cuda;

// driver IN OUT SLICE
// IN: int32 (Bt, L, Dc, N, H, W), then float32 u, delta, A, B, C, D, delta_bias, dy.
// OUT: float32 y, du, ddelta, dA, dB, dC, dD, ddelta_bias, allocated and launched as cross_scan_cuda.cu
// does, SLICE batch elements per round of the three passes.
static std::vector<float> take(std::ifstream& in, size_t count) {
  std::vector<float> v(count);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (!in) throw std::runtime_error("short input file");
  return v;
}

template <int kN>
static void run(ScanParams p, int slice, std::vector<std::vector<float>>& out) {
  const size_t Bt = p.batch, L = p.length, Dc = p.channels, N = p.state, Bs = slice;
  auto launcher = [](auto kernel, dim3 grid, dim3 block, const ScanParams& params) {
    dass_emulation::launch(kernel, grid, block, params);
  };
  std::vector<float> y(Bt * L * Dc, 0.f);
  p.y = y.data();
  p.chunks = chunk_count<kN, false>(p.length);
  // Scratch starts as NaN so a read of anything not written shows.
  std::vector<float> S(Bs * 4 * p.chunks * Dc, NAN), H(Bs * 4 * p.chunks * N * Dc, NAN);
  p.S = S.data();
  p.H = H.data();
  forward_launches<float, kN>(p, slice, launcher);
  out.push_back(y);

  std::vector<float> du(Bt * L * Dc, 0.f), ddelta(Bt * 4 * L * Dc, NAN), dA(4 * Dc * N, 0.f),
      dB(Bt * 4 * L * N, 0.f), dC(Bt * 4 * L * N, 0.f), dD(4 * Dc, 0.f), dbias(4 * Dc, 0.f);
  p.du = du.data();
  p.ddelta = ddelta.data();
  p.dA = dA.data();
  p.dB = dB.data();
  p.dC = dC.data();
  p.dD = dD.data();
  p.dbias = dbias.data();
  p.chunks = chunk_count<kN, true>(p.length);
  std::vector<float> S2(Bs * 4 * p.chunks * Dc, NAN), H2(Bs * 4 * p.chunks * N * Dc, NAN),
      Q2(Bs * 4 * p.chunks * N * Dc, NAN);
  p.S = S2.data();
  p.H = H2.data();
  p.Q = Q2.data();
  backward_launches<float, kN>(p, slice, launcher);
  for (auto* v : {&du, &ddelta, &dA, &dB, &dC, &dD, &dbias}) out.push_back(*v);
}

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const int slice = std::atoi(argv[3]);
  std::ifstream in(argv[1], std::ios::binary);
  int32_t header[6];
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  const size_t Bt = header[0], L = header[1], Dc = header[2], N = header[3];
  auto u = take(in, Bt * L * Dc), delta = take(in, Bt * 4 * L * Dc), A = take(in, 4 * Dc * N),
       B = take(in, Bt * 4 * L * N), C = take(in, Bt * 4 * L * N), D = take(in, 4 * Dc), bias = take(in, 4 * Dc),
       dy = take(in, Bt * L * Dc);
  ScanParams p{};
  p.u = u.data();
  p.delta = delta.data();
  p.A = A.data();
  p.B = B.data();
  p.C = C.data();
  p.D = D.data();
  p.bias = bias.data();
  p.dy = dy.data();
  p.batch = header[0];
  p.length = header[1];
  p.channels = header[2];
  p.state = header[3];
  p.height = header[4];
  p.width = header[5];
  std::vector<std::vector<float>> out;
  if (N == 1) {
    run<1>(p, slice, out);
  } else if (N <= 4) {
    run<4>(p, slice, out);
  } else {
    run<16>(p, slice, out);
  }
  std::ofstream o(argv[2], std::ios::binary);
  for (auto& v : out) {
    o.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  }
  return o ? 0 : 1;
}
"""


def find_cxx() -> str | None:
    for candidate in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="module")
def emulated_kernels(tmp_path_factory) -> Path:
    """The emulation driver, compiled once for this module."""
    cxx = find_cxx()
    if cxx is None:
        pytest.skip("no C++ compiler (g++/clang++) to build the CPU emulation of the CUDA kernels")
    folder = tmp_path_factory.mktemp("cuda_emulation")
    probe = folder / "probe.cpp"
    probe.write_text(
        "#include <atomic>\n#include <barrier>\n"
        "int main() { float f = 0; std::atomic_ref<float>(f).fetch_add(1.f); std::barrier<> b(1); b.arrive_and_wait(); }\n"
    )
    flags = ["-std=c++20", "-O2", "-pthread"]
    if subprocess.run([cxx, *flags, str(probe), "-o", str(folder / "probe")], capture_output=True).returncode:
        pytest.skip(f"{cxx} lacks C++20 <barrier> / atomic_ref<float>, needed by the CPU emulation")
    source = folder / "driver.cpp"
    source.write_text(EMULATION_DRIVER)
    binary = folder / "driver"
    result = subprocess.run(
        [cxx, *flags, "-Wall", "-Wno-unknown-pragmas", f"-I{CSRC}", str(source), "-o", str(binary)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"the kernels do not build against the emulation:\n{result.stderr[-20000:]}"
    return binary


def run_emulated(binary: Path, inputs, dy, height, width, folder: Path, slice_size: int):
    u = inputs[0]
    batch, length, channels = u.shape
    state = inputs[2].shape[-1]
    source, target = folder / "in.bin", folder / "out.bin"
    with open(source, "wb") as handle:
        np.array([batch, length, channels, state, height, width], dtype=np.int32).tofile(handle)
        for tensor in (*inputs, dy):
            tensor.float().contiguous().numpy().tofile(handle)
    subprocess.run([str(binary), str(source), str(target), str(slice_size)], check=True, timeout=600)
    flat = torch.from_numpy(np.fromfile(target, dtype=np.float32))
    shapes = [tuple(u.shape), *(tuple(t.shape) for t in inputs)]
    sizes = [int(np.prod(shape)) for shape in shapes]
    assert flat.numel() == sum(sizes)
    pieces = [piece.view(shape) for piece, shape in zip(torch.split(flat, sizes), shapes)]
    return pieces[0], pieces[1:]


EMULATED_CASES = [
    # batch, height, width, channels, state, memory, batch elements per round of the passes
    (1, 1, 1, 3, 1, "short", 1),  # a single position
    (3, 3, 5, 5, 1, "long", 2),  # L < one chunk; rounds of 2 + 1 batch elements
    (3, 7, 2, 19, 1, "short", 3),
    (2, 13, 4, 19, 3, "long", 1),  # padded state (kN = 4), partial last chunk
    (1, 5, 9, 33, 5, "short", 1),  # kN = 16, two channel tiles, the last one nearly empty
    (1, 1, 40, 4, 1, "long", 1),  # one row
    (1, 40, 1, 4, 2, "short", 1),  # one column
    (2, 17, 16, 40, 1, "long", 2),  # several warps in the carry scan
]


@pytest.mark.parametrize("case", EMULATED_CASES, ids=lambda c: "b{}_{}x{}_c{}_n{}_{}_r{}".format(*c))
def test_emulated_kernels_match_reference(emulated_kernels, tmp_path, case):
    batch, height, width, channels, state, memory, slice_size = case
    inputs = make_inputs(batch, height, width, channels, state, memory)
    dy = torch.randn(batch, height * width, channels)
    y, grads = run_emulated(emulated_kernels, inputs, dy, height, width, tmp_path, slice_size)
    expected_y, expected_grads = reference(inputs, dy, height, width)
    assert_close_scaled(y, expected_y, "y", 1e-4)
    for name, grad, expected in zip(GRAD_NAMES, grads, expected_grads):
        assert torch.isfinite(grad).all(), name
        assert_close_scaled(grad, expected, name, 1e-4)


# ---------------------------------------------------------------------------------------------------------
# The real kernels on a GPU


def cuda_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import dass_selective_scan
    except ImportError as error:
        return (
            f"dass_selective_scan is not built ({error}): "
            "DASS_BUILD_CUDA=1 pip install --no-build-isolation ./kernels/selective_scan"
        )
    if not dass_selective_scan.has_cuda():
        return "dass_selective_scan was built without its CUDA kernels (rebuild with DASS_BUILD_CUDA=1)"
    return None


@pytest.fixture
def cuda():
    reason = cuda_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return torch.device("cuda")


def on(device, tensors, dtype=None):
    """The tensors on device; u, delta, B and C (indices 0, 1, 3, 4) cast to dtype when given."""
    return tuple(
        t.to(device=device, dtype=dtype if dtype is not None and i in (0, 1, 3, 4) else t.dtype).contiguous()
        for i, t in enumerate(tensors)
    )


def check_against_reference(inputs, dy, height, width, tol):
    """Forward and backward of the CUDA ops against the reference on the same (device) inputs."""
    out = torch.ops.dass.cross_scan_fwd(*inputs, height, width)
    grads = torch.ops.dass.cross_scan_bwd(dy, *inputs, height, width)
    expected_y, expected_grads = reference(inputs, dy, height, width)
    assert out.dtype == inputs[0].dtype and out.shape == expected_y.shape
    assert_close_scaled(out, expected_y, "y", tol)
    assert len(grads) == len(INPUT_NAMES)
    for name, grad, expected, tensor in zip(GRAD_NAMES, grads, expected_grads, inputs):
        assert grad.shape == tensor.shape, name
        assert grad.dtype == tensor.dtype, name
        assert grad.device == tensor.device, name
        assert torch.isfinite(grad).all(), name
        assert_close_scaled(grad, expected, name, tol)


GRIDS = [(3, 5), (7, 2), (13, 4), (32, 256)]


@pytest.mark.parametrize("memory", ["long", "short"])
@pytest.mark.parametrize("state", [1, 3])
@pytest.mark.parametrize("channels", [5, 19, 96])
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_cuda_float32_matches_reference(cuda, grid, channels, state, memory):
    height, width = grid
    inputs = on(cuda, make_inputs(3, height, width, channels, state, memory))
    dy = torch.randn(3, height * width, channels, device=cuda)
    check_against_reference(inputs, dy, height, width, 1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("memory", ["long", "short"])
@pytest.mark.parametrize("state", [1, 3])
@pytest.mark.parametrize("grid", [(13, 4), (32, 256)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_cuda_half_inputs_match_reference(cuda, grid, state, memory, dtype):
    """float16 / bfloat16 u, delta, B, C: float32 state and sums, gradients rounded to the input dtype."""
    height, width = grid
    inputs = on(cuda, make_inputs(3, height, width, 96, state, memory), dtype)
    dy = torch.randn(3, height * width, 96, device=cuda)
    check_against_reference(inputs, dy, height, width, 1e-2)


@pytest.mark.parametrize("state", [2, 4, 5, 16])
def test_cuda_larger_state_sizes(cuda, state):
    inputs = on(cuda, make_inputs(2, 9, 11, 40, state, "long"))
    dy = torch.randn(2, 99, 40, device=cuda)
    check_against_reference(inputs, dy, 9, 11, 1e-4)


def test_cuda_stage_shapes(cuda):
    """The DASS stage shapes (grid, channels) at batch 2."""
    for (height, width), channels in (((32, 256), 96), ((16, 128), 192), ((8, 64), 384), ((4, 32), 768)):
        inputs = on(cuda, make_inputs(2, height, width, channels, 1, "long"))
        dy = torch.randn(2, height * width, channels, device=cuda)
        check_against_reference(inputs, dy, height, width, 1e-4)


def test_cuda_mixed_dtypes(cuda):
    """bfloat16 u / delta with float32 B / C: each gradient in its input's dtype."""
    inputs = list(on(cuda, make_inputs(2, 13, 4, 19, 1, "short"), torch.bfloat16))
    inputs[3], inputs[4] = inputs[3].float(), inputs[4].float()
    dy = torch.randn(2, 52, 19, device=cuda)
    check_against_reference(tuple(inputs), dy, 13, 4, 1e-2)


def test_cuda_deterministic_sums(cuda):
    """y, du and ddelta get at most two addends per element, so repeated calls agree bit for bit."""
    inputs = on(cuda, make_inputs(2, 32, 64, 96, 1, "long"))
    dy = torch.randn(2, 32 * 64, 96, device=cuda)
    first = torch.ops.dass.cross_scan_fwd(*inputs, 32, 64)
    grads = torch.ops.dass.cross_scan_bwd(dy, *inputs, 32, 64)
    for _ in range(3):
        assert torch.equal(torch.ops.dass.cross_scan_fwd(*inputs, 32, 64), first)
        again = torch.ops.dass.cross_scan_bwd(dy, *inputs, 32, 64)
        assert torch.equal(again[0], grads[0]) and torch.equal(again[1], grads[1])


def test_cuda_runs_on_the_current_stream(cuda):
    inputs = on(cuda, make_inputs(2, 16, 32, 64, 1, "long"))
    expected = torch.ops.dass.cross_scan_fwd(*inputs, 16, 32)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = torch.ops.dass.cross_scan_fwd(*inputs, 16, 32)
    stream.synchronize()
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_cuda_empty_batch(cuda):
    inputs = on(cuda, make_inputs(1, 3, 5, 8, 1, "short"))
    empty = tuple(t[:0] if i in (0, 1, 3, 4) else t for i, t in enumerate(inputs))  # batch 0
    assert torch.ops.dass.cross_scan_fwd(*empty, 3, 5).shape == (0, 15, 8)
    grads = torch.ops.dass.cross_scan_bwd(torch.zeros(0, 15, 8, device=cuda), *empty, 3, 5)
    assert grads[0].shape == (0, 15, 8) and torch.count_nonzero(grads[2]) == 0


def test_cuda_rejects_bad_inputs(cuda):
    inputs = on(cuda, make_inputs(2, 3, 5, 8, 1, "short"))
    with pytest.raises(RuntimeError, match="height \\* width"):
        torch.ops.dass.cross_scan_fwd(*inputs, 4, 5)
    strided = (inputs[0].transpose(1, 2).contiguous().transpose(1, 2), *inputs[1:])
    with pytest.raises(RuntimeError, match="contiguous"):
        torch.ops.dass.cross_scan_fwd(*strided, 3, 5)
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.dass.cross_scan_fwd(inputs[0].half(), *inputs[1:], 3, 5)
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        torch.ops.dass.cross_scan_fwd(inputs[0], inputs[1], inputs[2].cpu(), *inputs[3:], 3, 5)

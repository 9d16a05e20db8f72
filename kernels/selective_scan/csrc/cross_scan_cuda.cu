// CUDA kernels of dass::cross_scan_fwd / dass::cross_scan_bwd (schemas in ops.cpp), the four-direction
// selective scan of DASS on a channels-last grid. Semantics:
// transformers_dass.ops.reference.cross_scan_channels_last_reference. The device code and the design
// notes (chunked three-pass scan, thread mapping, how directions and reductions are summed) are in
// cross_scan_cuda_kernels.cuh; this file checks the inputs, allocates and launches.
//
// dtypes (the same contract as the CPU kernels): u and delta float32, float16 or bfloat16 (the same one); B
// and C any of those (read as float32); A, D, delta_bias float32; dy float32 or the dtype of u (read as
// float32). State and sums are float32. dA, dD, d(delta_bias) are float32; y (summed in float32, then rounded
// once), du, ddelta, dB, dC come back in the dtype of u, u, delta, B, C.

// torch's CPU-only wheels ship the c10/cuda headers but not the cmake-generated cuda_cmake_macros.h, which
// only sets a Windows export macro. Skipping it lets the CI compile check (check_cuda_compile.sh) build this
// file against a CPU wheel; a CUDA wheel has the header and nothing changes.
#if defined(__has_include)
#if !__has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
#define C10_CUDA_NO_CMAKE_CONFIGURE_FILE
#endif
#endif

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <tuple>

#include "cross_scan_cuda_kernels.cuh"

namespace dass_cuda {
namespace {

constexpr int64_t kGridYZLimit = 65535;

struct ScanShape {
  int64_t batch, length, channels, state;
};

template <typename T>
struct TypeTag {
  using type = T;
};
template <int V>
struct IntTag {
  static constexpr int value = V;
};

bool is_scan_dtype(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16; }

void check_tensor(const at::Tensor& t, const char* name, int64_t dim, const at::Device& device) {
  TORCH_CHECK(t.is_cuda(), "dass::cross_scan (CUDA): ", name, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.device() == device, "dass::cross_scan (CUDA): ", name, " is on ", t.device(), " but u is on ",
              device);
  TORCH_CHECK(t.dim() == dim, "dass::cross_scan: ", name, " must have ", dim, " dimensions, got shape ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "dass::cross_scan: ", name, " must be contiguous (call .contiguous()), got strides ",
              t.strides(), " for shape ", t.sizes());
}

void check_dtype(const at::Tensor& t, const char* name, bool scan_dtype) {
  if (scan_dtype) {
    TORCH_CHECK(is_scan_dtype(t.scalar_type()), "dass::cross_scan (CUDA): ", name,
                " must be float32, float16 or bfloat16, got ", t.scalar_type());
  } else {
    TORCH_CHECK(t.scalar_type() == at::kFloat, "dass::cross_scan (CUDA): ", name, " must be float32, got ",
                t.scalar_type());
  }
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, "dass::cross_scan: ", name, " must have shape ", expected, ", got ", t.sizes());
}

ScanShape check_inputs(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                       const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias, int64_t height,
                       int64_t width) {
  const at::Device device = u.device();
  check_tensor(u, "u", 3, device);
  check_tensor(delta, "delta", 4, device);
  check_tensor(A, "A", 3, device);
  check_tensor(B, "B", 4, device);
  check_tensor(C, "C", 4, device);
  check_tensor(D, "D", 2, device);
  check_tensor(delta_bias, "delta_bias", 2, device);
  check_dtype(u, "u", true);
  TORCH_CHECK(delta.scalar_type() == u.scalar_type(), "dass::cross_scan (CUDA): delta (", delta.scalar_type(),
              ") must have the dtype of u (", u.scalar_type(), ")");
  check_dtype(B, "B", true);
  check_dtype(C, "C", true);
  check_dtype(A, "A", false);
  check_dtype(D, "D", false);
  check_dtype(delta_bias, "delta_bias", false);
  const ScanShape s{u.size(0), u.size(1), u.size(2), A.size(2)};
  TORCH_CHECK(height > 0 && width > 0, "dass::cross_scan: height and width must be positive, got ", height, " x ",
              width);
  TORCH_CHECK(height * width == s.length, "dass::cross_scan: height * width (", height, " * ", width, " = ",
              height * width, ") must equal the number of positions L = u.size(1) = ", s.length);
  check_shape(delta, "delta (Bt, 4, L, Dc)", {s.batch, kDirections, s.length, s.channels});
  check_shape(A, "A (4, Dc, N)", {kDirections, s.channels, s.state});
  check_shape(B, "B (Bt, 4, L, N)", {s.batch, kDirections, s.length, s.state});
  check_shape(C, "C (Bt, 4, L, N)", {s.batch, kDirections, s.length, s.state});
  check_shape(D, "D (4, Dc)", {kDirections, s.channels});
  check_shape(delta_bias, "delta_bias (4, Dc)", {kDirections, s.channels});
  TORCH_CHECK(s.state >= 1 && s.state <= kMaxState,
              "dass::cross_scan (CUDA): the state size N = A.size(2) must be in [1, ", kMaxState, "], got ", s.state);
  // In-slab offsets (position * Dc + channel, position * N + n) are 32-bit in the kernels.
  constexpr int64_t int_max = std::numeric_limits<int32_t>::max();
  TORCH_CHECK(s.length * s.channels <= int_max && s.length * s.state <= int_max,
              "dass::cross_scan (CUDA): L * Dc = ", s.length * s.channels, " is too large");
  TORCH_CHECK(s.batch * 2 <= kGridYZLimit, "dass::cross_scan (CUDA): batch ", s.batch, " is too large (at most ",
              kGridYZLimit / 2, ")");
  return s;
}

// Calls fn(TypeTag<input type>, IntTag<padded state size>).
template <typename Fn>
void dispatch(at::ScalarType dtype, int64_t state, Fn&& fn) {
  auto by_state = [&](auto type_tag) {
    if (state == 1) {
      fn(type_tag, IntTag<1>{});
    } else if (state <= 4) {
      fn(type_tag, IntTag<4>{});
    } else {
      fn(type_tag, IntTag<16>{});
    }
  };
  switch (dtype) {
    case at::kFloat:
      by_state(TypeTag<float>{});
      break;
    case at::kHalf:
      by_state(TypeTag<__half>{});
      break;
    case at::kBFloat16:
      by_state(TypeTag<__nv_bfloat16>{});
      break;
    default:
      TORCH_CHECK(false, "dass::cross_scan (CUDA): unsupported dtype ", dtype);
  }
}

at::Tensor as_float(const at::Tensor& t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); }

ScanParams make_params(const ScanShape& s, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                       const at::Tensor& B32, const at::Tensor& C32, const at::Tensor& D, const at::Tensor& delta_bias,
                       int64_t height, int64_t width) {
  ScanParams p{};
  p.u = u.data_ptr();
  p.delta = delta.data_ptr();
  p.A = A.data_ptr<float>();
  p.B = B32.data_ptr<float>();
  p.C = C32.data_ptr<float>();
  p.D = D.data_ptr<float>();
  p.bias = delta_bias.data_ptr<float>();
  p.batch = static_cast<int>(s.batch);
  p.length = static_cast<int>(s.length);
  p.channels = static_cast<int>(s.channels);
  p.state = static_cast<int>(s.state);
  p.height = static_cast<int>(height);
  p.width = static_cast<int>(width);
  return p;
}

void check_grid(const ScanParams& p) {
  TORCH_CHECK((p.chunks + kChunkWarps - 1) / kChunkWarps <= kGridYZLimit, "dass::cross_scan (CUDA): L = ", p.length,
              " is too long");
}

// Launches kernel(params) on the current stream of the current device.
struct StreamLauncher {
  cudaStream_t stream;
  template <typename Kernel>
  void operator()(Kernel kernel, dim3 grid, dim3 block, const ScanParams& params) const {
    kernel<<<grid, block, 0, stream>>>(params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

// Batch elements per round of the three passes: as many as keep the bytes a round streams (the inputs it
// reads twice plus its outputs) within half the L2, so the output pass re-reads the inputs from L2; at
// least one. The L2 size is looked up once per device.
int batch_per_launch(const ScanShape& s, int64_t bytes_per_batch_element) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> l2_bytes[kMaxDevices] = {};
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  int l2 = device < kMaxDevices ? l2_bytes[device].load(std::memory_order_relaxed) : 0;
  if (l2 == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
    l2 = l2 > 0 ? l2 : -1;
    if (device < kMaxDevices) l2_bytes[device].store(l2, std::memory_order_relaxed);
  }
  if (l2 < 0) return static_cast<int>(s.batch);
  const int64_t fit = (static_cast<int64_t>(l2) / 2) / std::max<int64_t>(bytes_per_batch_element, 1);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(fit, s.batch)));
}

at::Tensor cross_scan_fwd_cuda(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                               const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias, int64_t height,
                               int64_t width) {
  const ScanShape s = check_inputs(u, delta, A, B, C, D, delta_bias, height, width);
  const c10::cuda::CUDAGuard guard(u.device());
  const auto f32 = u.options().dtype(at::kFloat);
  at::Tensor y = at::zeros({s.batch, s.length, s.channels}, f32);
  if (y.numel() == 0) return y.to(u.scalar_type());
  const at::Tensor B32 = as_float(B), C32 = as_float(C);
  ScanParams p = make_params(s, u, delta, A, B32, C32, D, delta_bias, height, width);
  p.y = y.data_ptr<float>();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(u.scalar_type(), s.state, [&](auto type_tag, auto state_tag) {
    using T_in = typename decltype(type_tag)::type;
    constexpr int kN = decltype(state_tag)::value;
    p.chunks = chunk_count<kN, false>(p.length);
    check_grid(p);
    // Reads u, delta (twice), writes y.
    const int64_t per_element = s.length * s.channels * (static_cast<int64_t>(sizeof(T_in)) * 5 + 4);
    const int slice = batch_per_launch(s, per_element);
    // Scratch reused by every slice. Freed when this returns; the caching allocator only hands the memory
    // to later work on this stream.
    at::Tensor chunk_dt = at::empty({slice, kDirections, p.chunks, s.channels}, f32);
    at::Tensor chunk_state = at::empty({slice, kDirections, p.chunks, s.state, s.channels}, f32);
    p.S = chunk_dt.data_ptr<float>();
    p.H = chunk_state.data_ptr<float>();
    forward_launches<T_in, kN>(p, slice, StreamLauncher{stream});
  });
  return y.to(u.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_scan_bwd_cuda(
    const at::Tensor& dy, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias, int64_t height, int64_t width) {
  const ScanShape s = check_inputs(u, delta, A, B, C, D, delta_bias, height, width);
  check_tensor(dy, "dy", 3, u.device());
  TORCH_CHECK(dy.scalar_type() == at::kFloat || dy.scalar_type() == u.scalar_type(), "dass::cross_scan (CUDA): dy (",
              dy.scalar_type(), ") must be float32 or have the dtype of u (", u.scalar_type(), ")");
  check_shape(dy, "dy (Bt, L, Dc)", u.sizes());
  const c10::cuda::CUDAGuard guard(u.device());
  const auto f32 = u.options().dtype(at::kFloat);
  // Summed with atomics from several threads: zeroed float32.
  at::Tensor du = at::zeros({s.batch, s.length, s.channels}, f32);
  at::Tensor dA = at::zeros({kDirections, s.channels, s.state}, f32);
  at::Tensor dB = at::zeros({s.batch, kDirections, s.length, s.state}, f32);
  at::Tensor dC = at::zeros({s.batch, kDirections, s.length, s.state}, f32);
  at::Tensor dD = at::zeros({kDirections, s.channels}, f32);
  at::Tensor dbias = at::zeros({kDirections, s.channels}, f32);
  // Written once per element.
  at::Tensor ddelta = at::empty({s.batch, kDirections, s.length, s.channels}, delta.options());
  if (du.numel() > 0) {
    const at::Tensor B32 = as_float(B), C32 = as_float(C), dy32 = as_float(dy);
    ScanParams p = make_params(s, u, delta, A, B32, C32, D, delta_bias, height, width);
    p.dy = dy32.data_ptr<float>();
    p.ddelta = ddelta.data_ptr();
    p.du = du.data_ptr<float>();
    p.dA = dA.data_ptr<float>();
    p.dB = dB.data_ptr<float>();
    p.dC = dC.data_ptr<float>();
    p.dD = dD.data_ptr<float>();
    p.dbias = dbias.data_ptr<float>();
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    dispatch(u.scalar_type(), s.state, [&](auto type_tag, auto state_tag) {
      using T_in = typename decltype(type_tag)::type;
      constexpr int kN = decltype(state_tag)::value;
      p.chunks = chunk_count<kN, true>(p.length);
      check_grid(p);
      // Reads u, delta, dy (twice), writes ddelta, du.
      const int64_t per_element = s.length * s.channels * (static_cast<int64_t>(sizeof(T_in)) * 9 + 8);
      const int slice = batch_per_launch(s, per_element);
      at::Tensor chunk_dt = at::empty({slice, kDirections, p.chunks, s.channels}, f32);
      at::Tensor chunk_state = at::empty({slice, kDirections, p.chunks, s.state, s.channels}, f32);
      at::Tensor chunk_adjoint = at::empty({slice, kDirections, p.chunks, s.state, s.channels}, f32);
      p.S = chunk_dt.data_ptr<float>();
      p.H = chunk_state.data_ptr<float>();
      p.Q = chunk_adjoint.data_ptr<float>();
      backward_launches<T_in, kN>(p, slice, StreamLauncher{stream});
    });
  }
  return {du.to(u.scalar_type()), ddelta, dA, dB.to(B.scalar_type()), dC.to(C.scalar_type()), dD, dbias};
}

}  // namespace
}  // namespace dass_cuda

TORCH_LIBRARY_IMPL(dass, CUDA, m) {
  m.impl("cross_scan_fwd", &dass_cuda::cross_scan_fwd_cuda);
  m.impl("cross_scan_bwd", &dass_cuda::cross_scan_bwd_cuda);
}

// CPU kernels of dass::cross_scan_fwd / dass::cross_scan_bwd (schemas in ops.cpp): input checks, the split of
// the work into (batch, channel block) items, and the choice of the compiled variant that runs them, by
// element type (float32, bfloat16, float16) and instruction set (cpu_isa.h). The per-item kernels are in
// cross_scan_cpu_kernels.h.
//
// dtypes, as the CUDA kernels take them: u and delta float32, float16 or bfloat16 (the same one); B and C any of
// those (read as float32: they are N / Dc of the size of u); A, D, delta_bias float32; dy float32 or the dtype of
// u (read as float32). State and every sum are float32. y, du and ddelta come back in the dtype of u;
// dB and dC in those of B and C; dA, dD, d(delta_bias) in float32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "cpu_isa.h"
#include "cross_scan_cpu_kernels.h"

namespace dass_cpu {
namespace {

// ---------------------------------------------------------------------------------------------------
// Scan orders

// (K, L) grid positions: rows (w fastest), columns (h fastest), then both reversed.
std::vector<int32_t> scan_orders(int64_t height, int64_t width) {
  const int64_t length = height * width;
  std::vector<int32_t> order(kDirections * length);
  for (int64_t l = 0; l < length; ++l) {
    const int64_t column_major = (l % height) * width + l / height;
    order[l] = static_cast<int32_t>(l);
    order[length + l] = static_cast<int32_t>(column_major);
    order[2 * length + (length - 1 - l)] = static_cast<int32_t>(l);
    order[3 * length + (length - 1 - l)] = static_cast<int32_t>(column_major);
  }
  return order;
}


// ---------------------------------------------------------------------------------------------------
// Work split

// Relative time of one step of a block `width` channels wide: per channel, narrow groups measure ~1.3x
// slower than wide ones (less independent work to overlap), partial groups ~2x.
double block_cost(int64_t width) {
  const int64_t wide = width / kWide * kWide;
  const int64_t narrow = (width - wide) / kNarrow * kNarrow;
  return wide + 1.3 * narrow + 2.0 * (width - wide - narrow);
}

// Channels per item, a multiple of kNarrow up to 64: the width that gives the busiest thread the least
// work, the widest among equals. at::parallel_for hands each thread a contiguous run of
// ceil(items / threads) items.
int64_t channel_block_width(const ScanShape& s) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t best = kNarrow;
  double best_load = -1.0;
  for (int64_t width = 64; width >= kNarrow; width -= kNarrow) {
    const int64_t blocks = (s.channels + width - 1) / width;
    const int64_t items = s.batch * blocks;
    const int64_t per_thread = (items + threads - 1) / threads;
    double load = 0.0;
    for (int64_t first = 0; first < items; first += per_thread) {
      double run = 0.0;
      for (int64_t item = first; item < std::min(items, first + per_thread); ++item) {
        const int64_t c0 = item % blocks * width;
        run += block_cost(std::min(width, s.channels - c0));
      }
      load = std::max(load, run);
    }
    if (best_load < 0.0 || load < best_load * (1.0 - 1e-9)) best = width, best_load = load;
  }
  return best;
}

int64_t channel_block_count(const ScanShape& s, int64_t width) { return (s.channels + width - 1) / width; }

// Runs fn(Block, Workspace&) for every (batch, channel block), in parallel.
template <typename Fn>
void for_each_block(const ScanShape& s, int64_t width, const Fn& fn) {
  const int64_t blocks = channel_block_count(s, width);
  at::parallel_for(0, s.batch * blocks, 1, [&](int64_t begin, int64_t end) {
    Workspace ws;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t index = item % blocks;
      const int64_t c0 = index * width;
      fn(Block{item / blocks, c0, std::min(width, s.channels - c0), index}, ws);
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Instruction-set variants
//
// Each variant compiles the same item kernels under its own target attribute. Everything they call is
// force-inlined (vec_math.h, element_types.h, the kernels' DASS_INLINE templates), so it takes the variant's
// instructions; what is not inlined (std::fill, the allocator) keeps the baseline ISA of the build, so no
// shared out-of-line code ever holds instructions of a variant the CPU may lack. Only the entry points of
// the variant cpu_isa.h chose run.

template <typename Elem>
using ForwardItem = void (*)(const ScanInputs<Elem>&, const Block&, Workspace&, const DirectionSum<Elem>&);
template <typename Elem>
using BackwardItem = void (*)(const ScanInputs<Elem>&, const float*, const Block&, Workspace&,
                              const Gradients<Elem>&);

#define DASS_DEFINE_VARIANT(NAME, TARGET)                                                                    \
  template <typename Elem, int kState>                                                                      \
  TARGET void forward_item_##NAME(const ScanInputs<Elem>& in, const Block& blk, Workspace& ws,              \
                                  const DirectionSum<Elem>& y) {                                            \
    forward_block<Elem, kState>(in, blk, ws, y);                                                            \
  }                                                                                                         \
  template <typename Elem, int kState>                                                                      \
  TARGET void backward_item_##NAME(const ScanInputs<Elem>& in, const float* dy, const Block& blk,            \
                                   Workspace& ws, const Gradients<Elem>& out) {                             \
    backward_block<Elem, kState>(in, dy, blk, ws, out);                                                     \
  }

// Portable: the build's baseline (x86-64: SSE2).
DASS_DEFINE_VARIANT(default, )
#if DASS_X86_VARIANTS
DASS_DEFINE_VARIANT(avx2, __attribute__((target("arch=x86-64-v3"))))
// 512-bit vectors asked for explicitly: generic tuning may otherwise prefer 256-bit ones.
DASS_DEFINE_VARIANT(avx512, __attribute__((target("arch=x86-64-v4,prefer-vector-width=512"))))
#endif
#undef DASS_DEFINE_VARIANT

// The item kernels of the active variant; `state_one` picks those compiled for N = 1 (DASS's d_state).
template <typename Elem>
ForwardItem<Elem> forward_item(bool state_one) {
  switch (active_isa()) {
#if DASS_X86_VARIANTS
    case CpuIsa::kAvx512:
      return state_one ? &forward_item_avx512<Elem, 1> : &forward_item_avx512<Elem, 0>;
    case CpuIsa::kAvx2:
      return state_one ? &forward_item_avx2<Elem, 1> : &forward_item_avx2<Elem, 0>;
#endif
    default:
      return state_one ? &forward_item_default<Elem, 1> : &forward_item_default<Elem, 0>;
  }
}

template <typename Elem>
BackwardItem<Elem> backward_item(bool state_one) {
  switch (active_isa()) {
#if DASS_X86_VARIANTS
    case CpuIsa::kAvx512:
      return state_one ? &backward_item_avx512<Elem, 1> : &backward_item_avx512<Elem, 0>;
    case CpuIsa::kAvx2:
      return state_one ? &backward_item_avx2<Elem, 1> : &backward_item_avx2<Elem, 0>;
#endif
    default:
      return state_one ? &backward_item_default<Elem, 1> : &backward_item_default<Elem, 0>;
  }
}

// ---------------------------------------------------------------------------------------------------
// Input checks

bool is_scan_dtype(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16; }

void check_tensor(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), "dass::cross_scan (CPU): ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.dim() == dim, "dass::cross_scan: ", name, " must have ", dim, " dimensions, got shape ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "dass::cross_scan: ", name, " must be contiguous (call .contiguous()), got strides ",
              t.strides(), " for shape ", t.sizes());
}

// low_precision: float16 and bfloat16 are accepted besides float32.
void check_dtype(const at::Tensor& t, const char* name, bool low_precision) {
  if (low_precision) {
    TORCH_CHECK(is_scan_dtype(t.scalar_type()), "dass::cross_scan (CPU): ", name,
                " must be float32, float16 or bfloat16, got ", t.scalar_type());
  } else {
    TORCH_CHECK(t.scalar_type() == at::kFloat, "dass::cross_scan (CPU): ", name, " must be float32, got ",
                t.scalar_type(), " (cast it with .float() before calling the op)");
  }
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, "dass::cross_scan: ", name, " must have shape ", expected, ", got ", t.sizes());
}

// Validates the inputs and returns their shape; u is (Bt, L, Dc), A is (K, Dc, N).
ScanShape check_inputs(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                       const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias, int64_t height,
                       int64_t width) {
  check_tensor(u, "u", 3);
  check_tensor(delta, "delta", 4);
  check_tensor(A, "A", 3);
  check_tensor(B, "B", 4);
  check_tensor(C, "C", 4);
  check_tensor(D, "D", 2);
  check_tensor(delta_bias, "delta_bias", 2);
  check_dtype(u, "u", true);
  TORCH_CHECK(delta.scalar_type() == u.scalar_type(), "dass::cross_scan (CPU): delta (", delta.scalar_type(),
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
  TORCH_CHECK(s.length < (int64_t{1} << 31), "dass::cross_scan: L = ", s.length, " is too long");
  check_shape(delta, "delta (Bt, 4, L, Dc)", {s.batch, kDirections, s.length, s.channels});
  check_shape(A, "A (4, Dc, N)", {kDirections, s.channels, s.state});
  check_shape(B, "B (Bt, 4, L, N)", {s.batch, kDirections, s.length, s.state});
  check_shape(C, "C (Bt, 4, L, N)", {s.batch, kDirections, s.length, s.state});
  check_shape(D, "D (4, Dc)", {kDirections, s.channels});
  check_shape(delta_bias, "delta_bias (4, Dc)", {kDirections, s.channels});
  return s;
}

at::Tensor as_float(const at::Tensor& t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); }

template <typename Elem>
const typename Elem::Storage* elements(const at::Tensor& t) {
  return reinterpret_cast<const typename Elem::Storage*>(t.const_data_ptr());
}

template <typename Elem>
typename Elem::Storage* mutable_elements(at::Tensor& t) {
  return reinterpret_cast<typename Elem::Storage*>(t.mutable_data_ptr());
}

// B32, C32: B and C as float32.
template <typename Elem>
ScanInputs<Elem> make_inputs(const ScanShape& s, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                             const at::Tensor& B32, const at::Tensor& C32, const at::Tensor& D,
                             const at::Tensor& delta_bias, const std::vector<int32_t>& order) {
  return {elements<Elem>(u),          elements<Elem>(delta),      A.const_data_ptr<float>(),
          B32.const_data_ptr<float>(), C32.const_data_ptr<float>(), D.const_data_ptr<float>(),
          delta_bias.const_data_ptr<float>(), order.data(), s};
}

// Calls fn(Elem{}) with the element policy of dtype (float32, bfloat16 or float16).
template <typename Fn>
void dispatch_element(at::ScalarType dtype, const Fn& fn) {
  switch (dtype) {
    case at::kFloat:
      return fn(Float32{});
    case at::kBFloat16:
      return fn(BFloat16{});
    case at::kHalf:
      return fn(Float16{});
    default:
      TORCH_CHECK(false, "dass::cross_scan (CPU): unsupported dtype ", dtype);
  }
}

// The float32 running sum of an output summed over directions, for low-precision outputs (undefined for float32).
at::Tensor direction_sum_buffer(const at::Tensor& out) {
  return out.scalar_type() == at::kFloat ? at::Tensor() : at::empty(out.sizes(), out.options().dtype(at::kFloat));
}

template <typename Elem>
DirectionSum<Elem> direction_sum(at::Tensor& out, at::Tensor& sum) {
  return {mutable_elements<Elem>(out), sum.defined() ? sum.mutable_data_ptr<float>() : nullptr};
}

// ---------------------------------------------------------------------------------------------------
// Ops

at::Tensor cross_scan_fwd_cpu(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                              const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias, int64_t height,
                              int64_t width) {
  const ScanShape s = check_inputs(u, delta, A, B, C, D, delta_bias, height, width);
  at::Tensor y = at::empty({s.batch, s.length, s.channels}, u.options());  // see add_direction
  if (y.numel() == 0) return y;
  at::Tensor y_sum = direction_sum_buffer(y);
  const at::Tensor B32 = as_float(B), C32 = as_float(C);
  const std::vector<int32_t> order = scan_orders(height, width);
  dispatch_element(u.scalar_type(), [&](auto elem) {
    using Elem = decltype(elem);
    const ScanInputs<Elem> in = make_inputs<Elem>(s, u, delta, A, B32, C32, D, delta_bias, order);
    const DirectionSum<Elem> out = direction_sum<Elem>(y, y_sum);
    const ForwardItem<Elem> item = forward_item<Elem>(s.state == 1);
    for_each_block(s, channel_block_width(s), [&](const Block& blk, Workspace& ws) { item(in, blk, ws, out); });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_scan_bwd_cpu(
    const at::Tensor& dy, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias, int64_t height, int64_t width) {
  const ScanShape s = check_inputs(u, delta, A, B, C, D, delta_bias, height, width);
  check_tensor(dy, "dy", 3);
  TORCH_CHECK(dy.scalar_type() == at::kFloat || dy.scalar_type() == u.scalar_type(), "dass::cross_scan (CPU): dy (",
              dy.scalar_type(), ") must be float32 or have the dtype of u (", u.scalar_type(), ")");
  check_shape(dy, "dy (Bt, L, Dc)", u.sizes());
  const int64_t block_width = channel_block_width(s);
  const int64_t blocks = channel_block_count(s, block_width);
  const auto f32 = u.options().dtype(at::kFloat);
  // Every element of these is written by exactly one item (du: by its first direction).
  at::Tensor du = at::empty_like(u);
  at::Tensor ddelta = at::empty_like(delta);
  at::Tensor dA_part = at::empty({s.batch, kDirections, s.channels, s.state}, f32);
  at::Tensor dD_part = at::empty({s.batch, kDirections, s.channels}, f32);
  at::Tensor dbias_part = at::empty({s.batch, kDirections, s.channels}, f32);
  at::Tensor dB_part = at::empty({blocks, s.batch, kDirections, s.length, s.state}, f32);
  at::Tensor dC_part = at::empty({blocks, s.batch, kDirections, s.length, s.state}, f32);
  if (du.numel() > 0) {
    at::Tensor du_sum = direction_sum_buffer(du);
    const at::Tensor B32 = as_float(B), C32 = as_float(C), dy32 = as_float(dy);
    const std::vector<int32_t> order = scan_orders(height, width);
    dispatch_element(u.scalar_type(), [&](auto elem) {
      using Elem = decltype(elem);
      const ScanInputs<Elem> in = make_inputs<Elem>(s, u, delta, A, B32, C32, D, delta_bias, order);
      const Gradients<Elem> out{direction_sum<Elem>(du, du_sum),
                                mutable_elements<Elem>(ddelta),
                                dA_part.mutable_data_ptr<float>(),
                                dD_part.mutable_data_ptr<float>(),
                                dbias_part.mutable_data_ptr<float>(),
                                dB_part.mutable_data_ptr<float>(),
                                dC_part.mutable_data_ptr<float>()};
      const BackwardItem<Elem> item = backward_item<Elem>(s.state == 1);
      const float* grad = dy32.const_data_ptr<float>();
      for_each_block(s, block_width, [&](const Block& blk, Workspace& ws) { item(in, grad, blk, ws, out); });
    });
  }
  return {du,
          ddelta,
          dA_part.sum(0),
          dB_part.sum(0).to(B.scalar_type()),
          dC_part.sum(0).to(C.scalar_type()),
          dD_part.sum(0),
          dbias_part.sum(0)};
}

}  // namespace
}  // namespace dass_cpu

TORCH_LIBRARY_IMPL(dass, CPU, m) {
  m.impl("cross_scan_fwd", &dass_cpu::cross_scan_fwd_cpu);
  m.impl("cross_scan_bwd", &dass_cpu::cross_scan_bwd_cpu);
}

// The work of one (batch, channel block) item of the CPU kernels of dass::cross_scan_fwd / cross_scan_bwd:
// the four-direction selective scan of DASS on a channels-last grid (semantics:
// transformers_dass.ops.reference.cross_scan_channels_last_reference). cross_scan_cpu.cpp checks the inputs,
// splits the work and compiles these templates once per instruction-set variant (cpu_isa.h).
//
// Notation: Bt batch, K = 4 directions, L = H * W grid positions (row-major, p = h * W + w), Dc channels,
// N state size. Work is split into (batch, channel block) items run in parallel; each item walks the four
// directions one after another, so it alone writes its slice of every per-position output. Inside a step
// the loops run over the block's channels, which are contiguous in this layout, and vectorise.
//
// Element types (element_types.h): u, delta, y, du and ddelta are float32, bfloat16 or float16 (`Elem`);
// everything else, the state and every sum are float32. A low-precision output summed over the directions
// (y, du) is summed in a float32 buffer and rounded once, in the last direction.
//
// Every function here is force-inlined or a template, and carries no target attribute: it takes the
// instruction set of the variant entry point that inlines it (see DASS_DEFINE_VARIANT in cross_scan_cpu.cpp).
#pragma once

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <type_traits>

#include "element_types.h"
#include "vec_math.h"

namespace dass_cpu {

constexpr int64_t kDirections = 4;

struct ScanShape {
  int64_t batch, length, channels, state;
};

// Contiguous inputs. `order` (K, L) is the grid position of each step of each direction.
template <typename Elem>
struct ScanInputs {
  using T = typename Elem::Storage;
  const T* u;           // (Bt, L, Dc)
  const T* delta;       // (Bt, K, L, Dc)
  const float* A;       // (K, Dc, N)
  const float* B;       // (Bt, K, L, N)
  const float* C;       // (Bt, K, L, N)
  const float* D;       // (K, Dc)
  const float* bias;    // (K, Dc)
  const int32_t* order; // (K, L)
  ScanShape shape;
};

// One work item: channels [c0, c0 + width) of batch element b; `index` numbers the channel blocks.
struct Block {
  int64_t b, c0, width, index;
};

// Floats take() hands out for an array of `count`: rounded up to 16 so every array starts on a cache line.
constexpr int64_t padded(int64_t count) { return (count + 15) / 16 * 16; }

// Bump allocator over a 64-byte aligned, uninitialised buffer reused by all the items a thread runs.
// reset() sizes it for one item, so take() never reallocates and earlier pointers stay valid.
class Workspace {
 public:
  void reset(int64_t capacity) {
    if (capacity_ < capacity) {
      buffer_.reset(static_cast<float*>(std::aligned_alloc(64, padded(capacity) * sizeof(float))));
      TORCH_CHECK(buffer_ != nullptr, "dass::cross_scan: out of memory for a ", capacity, "-float workspace");
      capacity_ = capacity;
    }
    used_ = 0;
  }
  float* take(int64_t count) {
    TORCH_INTERNAL_ASSERT(used_ + padded(count) <= capacity_);
    float* start = buffer_.get() + used_;
    used_ += padded(count);
    return start;
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> buffer_;
  int64_t capacity_ = 0;
  int64_t used_ = 0;
};

// ---------------------------------------------------------------------------------------------------
// Per-direction parameters

// Steps handle a block in channel groups whose width is a compile-time constant (kWide or kNarrow), so
// their loops unroll into straight-line vector code with temporaries in registers, and each statement is
// issued for several vectors at once: independent work that hides the latency of the long exp/log
// chains. What is left of a block (fewer than kNarrow channels) takes the runtime-count instantiation
// (kWidth = 0). Per-block arrays are state-major, (N, padded width), so any group is contiguous per n.
constexpr int64_t kWide = 32;
constexpr int64_t kNarrow = 16;

// Lambdas are not covered by DASS_INLINE; an out-of-line one would also miss the caller's target clone.
#define DASS_LAMBDA_INLINE __attribute__((always_inline))

template <int kWidth>
using GroupWidth = std::integral_constant<int, kWidth>;

// Calls group(GroupWidth<kWidth>, c0, count) over a block `width` channels wide.
template <typename Group>
DASS_INLINE void for_each_group(int64_t width, const Group& group) {
  int64_t c0 = 0;
  for (; c0 + kWide <= width; c0 += kWide) group(GroupWidth<kWide>{}, c0, kWide);
  for (; c0 + kNarrow <= width; c0 += kNarrow) group(GroupWidth<kNarrow>{}, c0, kNarrow);
  if (c0 < width) group(GroupWidth<0>{}, c0, width - c0);
}

// Block widths are rounded up to a multiple of this in the per-block arrays.
constexpr int64_t padded_width(int64_t width) { return (width + kNarrow - 1) / kNarrow * kNarrow; }

// A direction's parameters for one block.
struct Params {
  float* A;     // (N, padded width): A transposed so that channels are contiguous
  float* D;     // (padded width)
  float* bias;  // (padded width)
};

constexpr int64_t params_size(int64_t state, int64_t pw) { return padded(state * pw) + 2 * padded(pw); }

inline Params take_params(Workspace& ws, int64_t state, int64_t pw) {
  return {ws.take(state * pw), ws.take(pw), ws.take(pw)};
}

template <typename Elem>
void load_params(const ScanInputs<Elem>& in, int64_t k, const Block& blk, int64_t state, const Params& prm) {
  const int64_t pw = padded_width(blk.width);
  std::fill(prm.A, prm.A + state * pw, 0.0f);
  std::fill(prm.D, prm.D + pw, 0.0f);
  std::fill(prm.bias, prm.bias + pw, 0.0f);
  for (int64_t c = 0; c < blk.width; ++c) {
    const int64_t channel = k * in.shape.channels + blk.c0 + c;
    for (int64_t n = 0; n < state; ++n) prm.A[n * pw + c] = in.A[channel * state + n];
    prm.D[c] = in.D[channel];
    prm.bias[c] = in.bias[channel];
  }
}

// Offsets of the rows an item touches at grid position p of direction k.
DASS_INLINE int64_t channel_row(const ScanShape& s, const Block& blk, int64_t p) {  // into (Bt, L, Dc)
  return (blk.b * s.length + p) * s.channels + blk.c0;
}
DASS_INLINE int64_t direction_row(const ScanShape& s, const Block& blk, int64_t k, int64_t p) {  // (Bt, K, L, Dc)
  return ((blk.b * kDirections + k) * s.length + p) * s.channels + blk.c0;
}
DASS_INLINE int64_t state_row(const ScanShape& s, const Block& blk, int64_t k, int64_t p) {  // (Bt, K, L, N)
  return ((blk.b * kDirections + k) * s.length + p) * s.state;
}

// Column walks jump W * Dc floats per step, onto a new page each time, which the hardware prefetchers
// do not follow; the walks ask for the rows of the position kPrefetchSteps ahead themselves.
constexpr int64_t kPrefetchSteps = 8;

template <typename T>
DASS_INLINE void prefetch_row(const T* row, int64_t width) {
  const char* bytes = reinterpret_cast<const char*>(row);
  for (int64_t offset = 0; offset < width * static_cast<int64_t>(sizeof(T)); offset += 64) {
    __builtin_prefetch(bytes + offset);
  }
}

// ---------------------------------------------------------------------------------------------------
// Forward

// An output summed over the four directions, (Bt, L, Dc), or a row of it: `out` in the element type; `sum`, a
// float32 buffer of the same shape holding the sum of the directions done so far, only for low-precision
// outputs (null for float32, which sums in `out` itself).
template <typename Elem>
struct DirectionSum {
  typename Elem::Storage* out;
  float* sum;
  DASS_INLINE DirectionSum at(int64_t offset) const {
    if constexpr (is_float32<Elem>) return {out + offset, nullptr};
    else return {out + offset, sum + offset};
  }
};

// One direction's contribution `value` to `width` channels of a DirectionSum row (out, sum at the same
// offset; sum unused for float32). The first direction overwrites, so nothing needs zeroing beforehand.
template <typename Elem>
DASS_INLINE void add_direction(typename Elem::Storage* __restrict out, float* __restrict sum,
                               const float* __restrict value, int64_t width, int64_t k) {
  if constexpr (is_float32<Elem>) {
    if (k == 0) {
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) out[c] = value[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) out[c] += value[c];
    }
  } else if (k == 0) {
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) sum[c] = value[c];
  } else if (k < kDirections - 1) {
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) sum[c] += value[c];
  } else {
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) out[c] = Elem::store(sum[c] + value[c]);
  }
}

// Rows of one step, at the block's first channel: delta, u, y (width); B, C (N); k the direction.
template <typename Elem>
struct ForwardRows {
  using T = typename Elem::Storage;
  const T* delta;
  const T* u;
  const float* B;
  const float* C;
  DirectionSum<Elem> y;
  int64_t k;
};

// Rows of step p of direction k; y (Bt, L, Dc) is the forward's output, null in the backward's walks.
template <typename Elem>
DASS_INLINE ForwardRows<Elem> forward_rows(const ScanInputs<Elem>& in, const Block& blk, int64_t k, int64_t p,
                                           const DirectionSum<Elem>* y = nullptr) {
  const ScanShape& s = in.shape;
  const int64_t row = channel_row(s, blk, p);
  const int64_t srow = state_row(s, blk, k, p);
  return {in.delta + direction_row(s, blk, k, p), in.u + row, in.B + srow, in.C + srow,
          y != nullptr ? y->at(row) : DirectionSum<Elem>{nullptr, nullptr}, k};
}

template <typename Elem>
DASS_INLINE void prefetch_forward_rows(const ScanInputs<Elem>& in, const Block& blk, int64_t k, int64_t p,
                                       const DirectionSum<Elem>* y = nullptr) {
  prefetch_row(in.delta + direction_row(in.shape, blk, k, p), blk.width);
  const int64_t row = channel_row(in.shape, blk, p);
  prefetch_row(in.u + row, blk.width);
  if (y == nullptr) return;
  if constexpr (is_float32<Elem>) {
    prefetch_row(y->out + row, blk.width);
  } else {
    prefetch_row(y->sum + row, blk.width);
  }
}

// One step for channels [c0, c0 + width) of the block: h_n = exp(dt A_n) h_n + dt u B_n and
// y += sum_n C_n h_n + D u, with h the block's (N, pw) state.
template <typename Elem, int kState, int kWidth>
DASS_INLINE void forward_group(const ForwardRows<Elem>& rows, const Params& prm, float* __restrict h, int64_t pw,
                               int64_t c0, int64_t count, int64_t state) {
  using T = typename Elem::Storage;
  const int64_t width = kWidth > 0 ? kWidth : count;
  const T* __restrict delta = rows.delta + c0;
  const T* __restrict u = rows.u + c0;
  const float* __restrict bias = prm.bias + c0;
  const float* __restrict D = prm.D + c0;
  float dt[kWide], drive[kWide], acc[kWide];
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    const float u_c = Elem::load(u[c]);
    dt[c] = softplus(Elem::load(delta[c]) + bias[c]);
    drive[c] = dt[c] * u_c;
    acc[c] = D[c] * u_c;
  }
  for (int64_t n = 0; n < state; ++n) {
    const float* __restrict a_n = prm.A + n * pw + c0;
    float* __restrict h_n = h + n * pw + c0;
    const float b_n = rows.B[n];
    const float c_n = rows.C[n];
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) {
      const float h_new = fast_exp(dt[c] * a_n[c]) * h_n[c] + drive[c] * b_n;
      h_n[c] = h_new;
      acc[c] += c_n * h_new;
    }
  }
  const DirectionSum<Elem> y = rows.y.at(c0);
  add_direction<Elem>(y.out, y.sum, acc, width, rows.k);
}

// kState > 0 fixes N at compile time (the loops over n then unroll); 0 reads it from the shape.
template <typename Elem, int kState>
DASS_INLINE void forward_block(const ScanInputs<Elem>& in, const Block& blk, Workspace& ws,
                               const DirectionSum<Elem>& y) {
  const ScanShape& s = in.shape;
  const int64_t state = kState > 0 ? kState : s.state;
  const int64_t pw = padded_width(blk.width);
  ws.reset(params_size(state, pw) + padded(state * pw));
  const Params prm = take_params(ws, state, pw);
  float* h = ws.take(state * pw);
  for (int64_t k = 0; k < kDirections; ++k) {
    load_params(in, k, blk, state, prm);
    std::fill(h, h + state * pw, 0.0f);
    const int32_t* order = in.order + k * s.length;
    for (int64_t l = 0; l < s.length; ++l) {
      if (l + kPrefetchSteps < s.length) prefetch_forward_rows(in, blk, k, order[l + kPrefetchSteps], &y);
      const ForwardRows<Elem> rows = forward_rows(in, blk, k, order[l], &y);
      for_each_group(blk.width, [&](auto group_width, int64_t c0, int64_t count) DASS_LAMBDA_INLINE {
        forward_group<Elem, kState, decltype(group_width)::value>(rows, prm, h, pw, c0, count, state);
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Backward
//
// Along a direction, with a_n = exp(dt A_n) and g_n the gradient w.r.t. h_n at a step:
//   g_n(t) = dy(t) C_n(t) + a_n(t+1) g_n(t+1)
//   dC_n += dy h_n(t),  dB_n += g_n dt u  (both summed over channels)
//   du += D dy + sum_n g_n dt B_n,  ddt = sum_n g_n (A_n a_n h_n(t-1) + B_n u)
//   dA_n += g_n dt a_n h_n(t-1),  dD += dy u,  ddelta = ddt softplus'(delta + bias),  dbias += ddelta.
//
// A forward walk first records, for every step of the (direction, block), dt, softplus'(delta + bias),
// a_n and h_n, so that the reverse walk evaluates no exp or log. The records of a whole scan are kept
// when they fit kRecordBudget floats; a longer scan is cut into chunks, each recorded again from its
// saved starting state just before the reverse walk crosses it.

constexpr int64_t kRecordBudget = int64_t{1} << 22;  // floats per thread: 16 MiB

template <typename Elem>
struct Gradients {
  DirectionSum<Elem> du;             // (Bt, L, Dc), accumulated over directions
  typename Elem::Storage* ddelta;    // (Bt, K, L, Dc)
  float* dA_part;     // (Bt, K, Dc, N), summed over Bt afterwards
  float* dD_part;     // (Bt, K, Dc)
  float* dbias_part;  // (Bt, K, Dc)
  float* dB_part;     // (channel blocks, Bt, K, L, N), summed over blocks afterwards
  float* dC_part;     // (channel blocks, Bt, K, L, N)
};

// Reverse-walk carries and channel-wise sums of one (direction, block).
struct Adjoint {
  float* g;      // (N, pw) gradient w.r.t. the state of the step after the current one
  float* decay;  // (N, pw) that step's a_n
  float* dA;     // (N, pw)
  float* dD;     // (pw)
  float* dbias;  // (pw)
};

// What the forward walk keeps of one step: (2 + 2N) * pw floats.
struct StepRecord {
  float* dt;     // (pw) softplus(delta + bias)
  float* slope;  // (pw) its derivative, sigmoid(delta + bias)
  float* decay;  // (N, pw) a_n = exp(dt A_n)
  float* h;      // (N, pw) state after the step
};

constexpr int64_t record_size(int64_t state, int64_t pw) { return (2 + 2 * state) * pw; }

DASS_INLINE StepRecord record_at(float* records, int64_t i, int64_t state, int64_t pw) {
  float* base = records + i * record_size(state, pw);
  return {base, base + pw, base + 2 * pw, base + (2 + state) * pw};
}

// h_out_n = exp(dt A_n) h_in_n + dt u B_n for channels [c0, c0 + width); h_in, h_out are (N, pw).
template <typename Elem, int kState, int kWidth>
DASS_INLINE void state_group(const ForwardRows<Elem>& rows, const Params& prm, const float* __restrict h_in,
                             float* __restrict h_out, int64_t pw, int64_t c0, int64_t count, int64_t state) {
  using T = typename Elem::Storage;
  const int64_t width = kWidth > 0 ? kWidth : count;
  const T* __restrict delta = rows.delta + c0;
  const T* __restrict u = rows.u + c0;
  const float* __restrict bias = prm.bias + c0;
  float dt[kWide], drive[kWide];
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    dt[c] = softplus(Elem::load(delta[c]) + bias[c]);
    drive[c] = dt[c] * Elem::load(u[c]);
  }
  for (int64_t n = 0; n < state; ++n) {
    const int64_t at = n * pw + c0;
    const float b_n = rows.B[n];
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) {
      h_out[at + c] = fast_exp(dt[c] * prm.A[at + c]) * h_in[at + c] + drive[c] * b_n;
    }
  }
}

// The forward step of state_group, keeping what the reverse walk needs in `rec`.
template <typename Elem, int kState, int kWidth>
DASS_INLINE void record_group(const ForwardRows<Elem>& rows, const Params& prm, const float* __restrict h_in,
                              const StepRecord& rec, int64_t pw, int64_t c0, int64_t count, int64_t state) {
  using T = typename Elem::Storage;
  const int64_t width = kWidth > 0 ? kWidth : count;
  const T* __restrict delta = rows.delta + c0;
  const T* __restrict u = rows.u + c0;
  const float* __restrict bias = prm.bias + c0;
  float* __restrict dt = rec.dt + c0;
  float* __restrict slope = rec.slope + c0;
  float drive[kWide];
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    softplus_and_sigmoid(Elem::load(delta[c]) + bias[c], dt[c], slope[c]);
    drive[c] = dt[c] * Elem::load(u[c]);
  }
  for (int64_t n = 0; n < state; ++n) {
    const int64_t at = n * pw + c0;
    const float b_n = rows.B[n];
    float* __restrict decay = rec.decay + at;
    float* __restrict h = rec.h + at;
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) {
      decay[c] = fast_exp(dt[c] * prm.A[at + c]);
      h[c] = decay[c] * h_in[at + c] + drive[c] * b_n;
    }
  }
}

// Walks all of direction k keeping only the state, and saves the state before each chunk's first step
// into checkpoints (chunks, N, pw); h_a, h_b are (N, pw) scratch.
template <typename Elem, int kState>
DASS_INLINE void checkpoint_walk(const ScanInputs<Elem>& in, const Block& blk, int64_t k, const Params& prm,
                                 int64_t chunk, float* checkpoints, float* h_a, float* h_b, int64_t state) {
  const int64_t length = in.shape.length;
  const int64_t pw = padded_width(blk.width);
  const int32_t* order = in.order + k * length;
  std::fill(checkpoints, checkpoints + state * pw, 0.0f);
  const float* h_in = checkpoints;
  for (int64_t l = 0; l + 1 < length; ++l) {  // the last step's state is never needed
    if (l + kPrefetchSteps < length) prefetch_forward_rows(in, blk, k, order[l + kPrefetchSteps]);
    const ForwardRows<Elem> rows = forward_rows(in, blk, k, order[l]);
    float* h_out = (l + 1) % chunk == 0 ? checkpoints + (l + 1) / chunk * state * pw : (h_in == h_a ? h_b : h_a);
    for_each_group(blk.width, [&](auto group_width, int64_t c0, int64_t count) DASS_LAMBDA_INLINE {
      state_group<Elem, kState, decltype(group_width)::value>(rows, prm, h_in, h_out, pw, c0, count, state);
    });
    h_in = h_out;
  }
}

// Records steps [start, end) of direction k, starting from state h_start: step l goes to records[l - start].
template <typename Elem, int kState>
DASS_INLINE void record_walk(const ScanInputs<Elem>& in, const Block& blk, int64_t k, const Params& prm,
                             const float* h_start, float* records, int64_t start, int64_t end, int64_t state) {
  const int64_t pw = padded_width(blk.width);
  const int32_t* order = in.order + k * in.shape.length;
  for (int64_t l = start; l < end; ++l) {
    if (l + kPrefetchSteps < end) prefetch_forward_rows(in, blk, k, order[l + kPrefetchSteps]);
    const ForwardRows<Elem> rows = forward_rows(in, blk, k, order[l]);
    const float* h_in = l > start ? record_at(records, l - start - 1, state, pw).h : h_start;
    const StepRecord rec = record_at(records, l - start, state, pw);
    for_each_group(blk.width, [&](auto group_width, int64_t c0, int64_t count) DASS_LAMBDA_INLINE {
      record_group<Elem, kState, decltype(group_width)::value>(rows, prm, h_in, rec, pw, c0, count, state);
    });
  }
}

// Rows of one reverse step, at the block's first channel; dB, dC are this block's partial sums (N); k the
// direction. dy is float32 whatever the element type.
template <typename Elem>
struct BackwardRows {
  using T = typename Elem::Storage;
  const T* u;
  const float* dy;
  const float* B;
  const float* C;
  DirectionSum<Elem> du;
  T* ddelta;
  float* dB;
  float* dC;
  int64_t k;
};

// One reverse step for channels [c0, c0 + width), from the step's record and the previous step's state
// h_prev (N, pw). Writes ddelta; adds into du and into the position's channel sums dB, dC.
template <typename Elem, int kState, int kWidth>
DASS_INLINE void backward_group(const BackwardRows<Elem>& rows, const Params& prm, const Adjoint& adj,
                                const StepRecord& rec, const float* __restrict h_prev, int64_t pw, int64_t c0,
                                int64_t count, int64_t state) {
  using T = typename Elem::Storage;
  const int64_t width = kWidth > 0 ? kWidth : count;
  const T* __restrict u_in = rows.u + c0;
  const float* __restrict dy = rows.dy + c0;
  const float* __restrict dt = rec.dt + c0;
  const float* __restrict D = prm.D + c0;
  float* __restrict dD = adj.dD + c0;
  float u[kWide], drive[kWide], du[kWide], ddt[kWide];
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    u[c] = Elem::load(u_in[c]);
    drive[c] = dt[c] * u[c];
    du[c] = D[c] * dy[c];
    ddt[c] = 0.0f;
    dD[c] += dy[c] * u[c];
  }
  for (int64_t n = 0; n < state; ++n) {
    const int64_t at = n * pw + c0;
    const float* __restrict a_n = prm.A + at;
    const float* __restrict decay_n = rec.decay + at;
    const float* __restrict h_n = rec.h + at;
    const float* __restrict h_prev_n = h_prev + at;
    float* __restrict g_n = adj.g + at;
    float* __restrict decay_next = adj.decay + at;
    float* __restrict dA_n = adj.dA + at;
    const float b_n = rows.B[n];
    const float c_n = rows.C[n];
    float sum_b = 0.0f, sum_c = 0.0f;
#pragma omp simd reduction(+ : sum_b, sum_c)
    for (int64_t c = 0; c < width; ++c) {
      const float grad = g_n[c] * decay_next[c] + dy[c] * c_n;
      const float decayed_prev = decay_n[c] * h_prev_n[c];
      sum_c += dy[c] * h_n[c];
      sum_b += grad * drive[c];
      du[c] += grad * dt[c] * b_n;
      ddt[c] += grad * (decayed_prev * a_n[c] + b_n * u[c]);
      dA_n[c] += grad * decayed_prev * dt[c];
      g_n[c] = grad;
      decay_next[c] = decay_n[c];
    }
    rows.dB[n] += sum_b;
    rows.dC[n] += sum_c;
  }
  const DirectionSum<Elem> du_row = rows.du.at(c0);
  add_direction<Elem>(du_row.out, du_row.sum, du, width, rows.k);
  const float* __restrict slope = rec.slope + c0;
  T* __restrict ddelta = rows.ddelta + c0;
  float* __restrict dbias = adj.dbias + c0;
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    const float dx = ddt[c] * slope[c];
    ddelta[c] = Elem::store(dx);
    dbias[c] += dx;
  }
}

template <typename Elem>
DASS_INLINE void prefetch_backward_rows(const ScanInputs<Elem>& in, const float* dy, const Gradients<Elem>& out,
                                        const Block& blk, int64_t k, int64_t p) {
  const int64_t row = channel_row(in.shape, blk, p);
  prefetch_row(in.u + row, blk.width);
  prefetch_row(dy + row, blk.width);
  if constexpr (is_float32<Elem>) {
    prefetch_row(out.du.out + row, blk.width);
  } else {
    prefetch_row(out.du.sum + row, blk.width);
  }
  prefetch_row(out.ddelta + direction_row(in.shape, blk, k, p), blk.width);
}

// Reverse walk over steps [start, end) of direction k, whose records are in `records` (see record_walk).
template <typename Elem, int kState>
DASS_INLINE void reverse_walk(const ScanInputs<Elem>& in, const float* dy, const Block& blk, int64_t k,
                              const Params& prm, const Adjoint& adj, const float* h_start, float* records,
                              int64_t start, int64_t end, const Gradients<Elem>& out, int64_t state) {
  const ScanShape& s = in.shape;
  const int64_t pw = padded_width(blk.width);
  const int64_t part = blk.index * s.batch * kDirections * s.length * s.state;  // block's slice of dB/dC_part
  const int32_t* order = in.order + k * s.length;
  for (int64_t l = end - 1; l >= start; --l) {
    if (l - kPrefetchSteps >= start) prefetch_backward_rows(in, dy, out, blk, k, order[l - kPrefetchSteps]);
    const int64_t p = order[l];
    const int64_t row = channel_row(s, blk, p);
    const int64_t srow = state_row(s, blk, k, p);
    const BackwardRows<Elem> rows{in.u + row,
                                  dy + row,
                                  in.B + srow,
                                  in.C + srow,
                                  out.du.at(row),
                                  out.ddelta + direction_row(s, blk, k, p),
                                  out.dB_part + part + srow,
                                  out.dC_part + part + srow,
                                  k};
    std::fill(rows.dB, rows.dB + state, 0.0f);
    std::fill(rows.dC, rows.dC + state, 0.0f);
    const StepRecord rec = record_at(records, l - start, state, pw);
    const float* h_prev = l > start ? record_at(records, l - start - 1, state, pw).h : h_start;
    for_each_group(blk.width, [&](auto group_width, int64_t c0, int64_t count) DASS_LAMBDA_INLINE {
      backward_group<Elem, kState, decltype(group_width)::value>(rows, prm, adj, rec, h_prev, pw, c0, count, state);
    });
  }
}

inline void reset_adjoint(const Adjoint& adj, int64_t stride, int64_t pw) {
  for (float* buffer : {adj.g, adj.decay, adj.dA}) std::fill(buffer, buffer + stride, 0.0f);
  for (float* buffer : {adj.dD, adj.dbias}) std::fill(buffer, buffer + pw, 0.0f);
}

// Copies a direction's parameter gradients of one block into the per-batch partial buffers.
template <typename Elem>
void store_parameter_grads(const ScanShape& s, const Block& blk, int64_t k, int64_t state, const Adjoint& adj,
                           const Gradients<Elem>& out) {
  const int64_t pw = padded_width(blk.width);
  const int64_t base = (blk.b * kDirections + k) * s.channels + blk.c0;
  for (int64_t c = 0; c < blk.width; ++c) {
    for (int64_t n = 0; n < state; ++n) out.dA_part[(base + c) * state + n] = adj.dA[n * pw + c];
    out.dD_part[base + c] = adj.dD[c];
    out.dbias_part[base + c] = adj.dbias[c];
  }
}

// Steps per recorded chunk: the whole scan when its records fit kRecordBudget.
inline int64_t record_chunk(int64_t length, int64_t state, int64_t pw) {
  return std::clamp<int64_t>(kRecordBudget / record_size(state, pw), 1, length);
}

template <typename Elem, int kState>
DASS_INLINE void backward_block(const ScanInputs<Elem>& in, const float* dy, const Block& blk, Workspace& ws,
                                const Gradients<Elem>& out) {
  const ScanShape& s = in.shape;
  const int64_t state = kState > 0 ? kState : s.state;
  const int64_t pw = padded_width(blk.width);
  const int64_t stride = state * pw;  // floats per state
  const int64_t chunk = record_chunk(s.length, state, pw);
  const int64_t chunks = (s.length + chunk - 1) / chunk;
  ws.reset(params_size(state, pw) + 5 * padded(stride) + 2 * padded(pw) + padded(chunks * stride) +
           padded(chunk * record_size(state, pw)));
  const Params prm = take_params(ws, state, pw);
  const Adjoint adj{ws.take(stride), ws.take(stride), ws.take(stride), ws.take(pw), ws.take(pw)};
  float* h_a = ws.take(stride);
  float* h_b = ws.take(stride);
  float* checkpoints = ws.take(chunks * stride);  // state before each chunk, (chunks, N, pw)
  float* records = ws.take(chunk * record_size(state, pw));
  for (int64_t k = 0; k < kDirections; ++k) {
    load_params(in, k, blk, state, prm);
    if (chunks > 1) {
      checkpoint_walk<Elem, kState>(in, blk, k, prm, chunk, checkpoints, h_a, h_b, state);
    } else {
      std::fill(checkpoints, checkpoints + stride, 0.0f);
    }
    reset_adjoint(adj, stride, pw);
    for (int64_t j = chunks - 1; j >= 0; --j) {
      const int64_t start = j * chunk;
      const int64_t end = std::min(s.length, start + chunk);
      const float* h_start = checkpoints + j * stride;
      record_walk<Elem, kState>(in, blk, k, prm, h_start, records, start, end, state);
      reverse_walk<Elem, kState>(in, dy, blk, k, prm, adj, h_start, records, start, end, out, state);
    }
    store_parameter_grads(s, blk, k, state, adj, out);
  }
}

}  // namespace dass_cpu

// CPU kernels of dass::cross_scan_fwd / dass::cross_scan_bwd: the four-direction selective scan of DASS
// on a channels-last grid (semantics: transformers_dass.ops.reference.cross_scan_channels_last_reference).
//
// Notation: Bt batch, K = 4 directions, L = H * W grid positions (row-major, p = h * W + w), Dc channels,
// N state size. Work is split into (batch, channel block) items run in parallel; each item walks the four
// directions one after another, so it alone writes its slice of every per-position output. Inside a step
// the loops run over the block's channels, which are contiguous in this layout, and vectorise.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#include "vec_math.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// An AVX2 + FMA clone next to the baseline SSE2 one, picked at load time, since wheels must not be
// built with -march=native.
#define DASS_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DASS_TARGET_CLONES
#endif

namespace dass_cpu {
namespace {

constexpr int64_t kDirections = 4;

struct ScanShape {
  int64_t batch, length, channels, state;
};

// Contiguous float32 inputs. `order` (K, L) is the grid position of each step of each direction.
struct ScanInputs {
  const float* u;       // (Bt, L, Dc)
  const float* delta;   // (Bt, K, L, Dc)
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
// Scan orders and per-direction parameters

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

Params take_params(Workspace& ws, int64_t state, int64_t pw) {
  return {ws.take(state * pw), ws.take(pw), ws.take(pw)};
}

void load_params(const ScanInputs& in, int64_t k, const Block& blk, int64_t state, const Params& prm) {
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

DASS_INLINE void prefetch_row(const float* row, int64_t width) {
  for (int64_t c = 0; c < width; c += kNarrow) __builtin_prefetch(row + c);
}

// ---------------------------------------------------------------------------------------------------
// Forward

// Rows of one step, at the block's first channel: delta, u, y (width); B, C (N). The first direction
// overwrites y (so it needs no zeroing), the others add to it.
struct ForwardRows {
  const float* delta;
  const float* u;
  const float* B;
  const float* C;
  float* y;
  bool overwrite;
};

// Rows of step p of direction k; y (Bt, L, Dc) is the forward's output, null in the backward's walks.
DASS_INLINE ForwardRows forward_rows(const ScanInputs& in, const Block& blk, int64_t k, int64_t p,
                                     float* y = nullptr) {
  const ScanShape& s = in.shape;
  const int64_t row = channel_row(s, blk, p);
  const int64_t srow = state_row(s, blk, k, p);
  return {in.delta + direction_row(s, blk, k, p), in.u + row, in.B + srow, in.C + srow,
          y != nullptr ? y + row : nullptr, k == 0};
}

DASS_INLINE void prefetch_forward_rows(const ScanInputs& in, const Block& blk, int64_t k, int64_t p,
                                       const float* y = nullptr) {
  prefetch_row(in.delta + direction_row(in.shape, blk, k, p), blk.width);
  prefetch_row(in.u + channel_row(in.shape, blk, p), blk.width);
  if (y != nullptr) prefetch_row(y + channel_row(in.shape, blk, p), blk.width);
}

// out = value (overwrite) or out += value, over `width` channels.
DASS_INLINE void store_or_add(float* __restrict out, const float* __restrict value, int64_t width, bool overwrite) {
  if (overwrite) {
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) out[c] = value[c];
  } else {
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) out[c] += value[c];
  }
}

// One step for channels [c0, c0 + width) of the block: h_n = exp(dt A_n) h_n + dt u B_n and
// y += sum_n C_n h_n + D u, with h the block's (N, pw) state.
template <int kState, int kWidth>
DASS_INLINE void forward_group(const ForwardRows& rows, const Params& prm, float* __restrict h, int64_t pw,
                               int64_t c0, int64_t count, int64_t state) {
  const int64_t width = kWidth > 0 ? kWidth : count;
  const float* __restrict delta = rows.delta + c0;
  const float* __restrict u = rows.u + c0;
  const float* __restrict bias = prm.bias + c0;
  const float* __restrict D = prm.D + c0;
  float dt[kWide], drive[kWide], acc[kWide];
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    dt[c] = softplus(delta[c] + bias[c]);
    drive[c] = dt[c] * u[c];
    acc[c] = D[c] * u[c];
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
  store_or_add(rows.y + c0, acc, width, rows.overwrite);
}

// kState > 0 fixes N at compile time (the loops over n then unroll); 0 reads it from the shape.
template <int kState>
DASS_INLINE void forward_block(const ScanInputs& in, const Block& blk, Workspace& ws, float* y) {
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
      if (l + kPrefetchSteps < s.length) prefetch_forward_rows(in, blk, k, order[l + kPrefetchSteps], y);
      const ForwardRows rows = forward_rows(in, blk, k, order[l], y);
      for_each_group(blk.width, [&](auto group_width, int64_t c0, int64_t count) DASS_LAMBDA_INLINE {
        forward_group<kState, decltype(group_width)::value>(rows, prm, h, pw, c0, count, state);
      });
    }
  }
}

DASS_TARGET_CLONES void forward_block_n1(const ScanInputs& in, const Block& blk, Workspace& ws, float* y) {
  forward_block<1>(in, blk, ws, y);
}

DASS_TARGET_CLONES void forward_block_any(const ScanInputs& in, const Block& blk, Workspace& ws, float* y) {
  forward_block<0>(in, blk, ws, y);
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

struct Gradients {
  float* du;          // (Bt, L, Dc), accumulated over directions
  float* ddelta;      // (Bt, K, L, Dc)
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
template <int kState, int kWidth>
DASS_INLINE void state_group(const ForwardRows& rows, const Params& prm, const float* __restrict h_in,
                             float* __restrict h_out, int64_t pw, int64_t c0, int64_t count, int64_t state) {
  const int64_t width = kWidth > 0 ? kWidth : count;
  const float* __restrict delta = rows.delta + c0;
  const float* __restrict u = rows.u + c0;
  const float* __restrict bias = prm.bias + c0;
  float dt[kWide], drive[kWide];
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    dt[c] = softplus(delta[c] + bias[c]);
    drive[c] = dt[c] * u[c];
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
template <int kState, int kWidth>
DASS_INLINE void record_group(const ForwardRows& rows, const Params& prm, const float* __restrict h_in,
                              const StepRecord& rec, int64_t pw, int64_t c0, int64_t count, int64_t state) {
  const int64_t width = kWidth > 0 ? kWidth : count;
  const float* __restrict delta = rows.delta + c0;
  const float* __restrict u = rows.u + c0;
  const float* __restrict bias = prm.bias + c0;
  float* __restrict dt = rec.dt + c0;
  float* __restrict slope = rec.slope + c0;
  float drive[kWide];
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    softplus_and_sigmoid(delta[c] + bias[c], dt[c], slope[c]);
    drive[c] = dt[c] * u[c];
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
template <int kState>
DASS_INLINE void checkpoint_walk(const ScanInputs& in, const Block& blk, int64_t k, const Params& prm,
                                 int64_t chunk, float* checkpoints, float* h_a, float* h_b, int64_t state) {
  const int64_t length = in.shape.length;
  const int64_t pw = padded_width(blk.width);
  const int32_t* order = in.order + k * length;
  std::fill(checkpoints, checkpoints + state * pw, 0.0f);
  const float* h_in = checkpoints;
  for (int64_t l = 0; l + 1 < length; ++l) {  // the last step's state is never needed
    if (l + kPrefetchSteps < length) prefetch_forward_rows(in, blk, k, order[l + kPrefetchSteps]);
    const ForwardRows rows = forward_rows(in, blk, k, order[l]);
    float* h_out = (l + 1) % chunk == 0 ? checkpoints + (l + 1) / chunk * state * pw : (h_in == h_a ? h_b : h_a);
    for_each_group(blk.width, [&](auto group_width, int64_t c0, int64_t count) DASS_LAMBDA_INLINE {
      state_group<kState, decltype(group_width)::value>(rows, prm, h_in, h_out, pw, c0, count, state);
    });
    h_in = h_out;
  }
}

// Records steps [start, end) of direction k, starting from state h_start: step l goes to records[l - start].
template <int kState>
DASS_INLINE void record_walk(const ScanInputs& in, const Block& blk, int64_t k, const Params& prm,
                             const float* h_start, float* records, int64_t start, int64_t end, int64_t state) {
  const int64_t pw = padded_width(blk.width);
  const int32_t* order = in.order + k * in.shape.length;
  for (int64_t l = start; l < end; ++l) {
    if (l + kPrefetchSteps < end) prefetch_forward_rows(in, blk, k, order[l + kPrefetchSteps]);
    const ForwardRows rows = forward_rows(in, blk, k, order[l]);
    const float* h_in = l > start ? record_at(records, l - start - 1, state, pw).h : h_start;
    const StepRecord rec = record_at(records, l - start, state, pw);
    for_each_group(blk.width, [&](auto group_width, int64_t c0, int64_t count) DASS_LAMBDA_INLINE {
      record_group<kState, decltype(group_width)::value>(rows, prm, h_in, rec, pw, c0, count, state);
    });
  }
}

// Rows of one reverse step, at the block's first channel; dB, dC are this block's partial sums (N).
// The first direction overwrites du, the others add to it.
struct BackwardRows {
  const float* u;
  const float* dy;
  const float* B;
  const float* C;
  float* du;
  float* ddelta;
  float* dB;
  float* dC;
  bool overwrite;
};

// One reverse step for channels [c0, c0 + width), from the step's record and the previous step's state
// h_prev (N, pw). Writes ddelta; adds into du and into the position's channel sums dB, dC.
template <int kState, int kWidth>
DASS_INLINE void backward_group(const BackwardRows& rows, const Params& prm, const Adjoint& adj,
                                const StepRecord& rec, const float* __restrict h_prev, int64_t pw, int64_t c0,
                                int64_t count, int64_t state) {
  const int64_t width = kWidth > 0 ? kWidth : count;
  const float* __restrict u = rows.u + c0;
  const float* __restrict dy = rows.dy + c0;
  const float* __restrict dt = rec.dt + c0;
  const float* __restrict D = prm.D + c0;
  float* __restrict dD = adj.dD + c0;
  float drive[kWide], du[kWide], ddt[kWide];
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
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
  store_or_add(rows.du + c0, du, width, rows.overwrite);
  const float* __restrict slope = rec.slope + c0;
  float* __restrict ddelta = rows.ddelta + c0;
  float* __restrict dbias = adj.dbias + c0;
#pragma omp simd
  for (int64_t c = 0; c < width; ++c) {
    const float dx = ddt[c] * slope[c];
    ddelta[c] = dx;
    dbias[c] += dx;
  }
}

DASS_INLINE void prefetch_backward_rows(const ScanInputs& in, const float* dy, const Gradients& out,
                                        const Block& blk, int64_t k, int64_t p) {
  const int64_t row = channel_row(in.shape, blk, p);
  prefetch_row(in.u + row, blk.width);
  prefetch_row(dy + row, blk.width);
  prefetch_row(out.du + row, blk.width);
  prefetch_row(out.ddelta + direction_row(in.shape, blk, k, p), blk.width);
}

// Reverse walk over steps [start, end) of direction k, whose records are in `records` (see record_walk).
template <int kState>
DASS_INLINE void reverse_walk(const ScanInputs& in, const float* dy, const Block& blk, int64_t k, const Params& prm,
                              const Adjoint& adj, const float* h_start, float* records, int64_t start,
                              int64_t end, const Gradients& out, int64_t state) {
  const ScanShape& s = in.shape;
  const int64_t pw = padded_width(blk.width);
  const int64_t part = blk.index * s.batch * kDirections * s.length * s.state;  // block's slice of dB/dC_part
  const int32_t* order = in.order + k * s.length;
  for (int64_t l = end - 1; l >= start; --l) {
    if (l - kPrefetchSteps >= start) prefetch_backward_rows(in, dy, out, blk, k, order[l - kPrefetchSteps]);
    const int64_t p = order[l];
    const int64_t row = channel_row(s, blk, p);
    const int64_t srow = state_row(s, blk, k, p);
    const BackwardRows rows{in.u + row,   dy + row, in.B + srow, in.C + srow, out.du + row,
                            out.ddelta + direction_row(s, blk, k, p), out.dB_part + part + srow,
                            out.dC_part + part + srow, k == 0};
    std::fill(rows.dB, rows.dB + state, 0.0f);
    std::fill(rows.dC, rows.dC + state, 0.0f);
    const StepRecord rec = record_at(records, l - start, state, pw);
    const float* h_prev = l > start ? record_at(records, l - start - 1, state, pw).h : h_start;
    for_each_group(blk.width, [&](auto group_width, int64_t c0, int64_t count) DASS_LAMBDA_INLINE {
      backward_group<kState, decltype(group_width)::value>(rows, prm, adj, rec, h_prev, pw, c0, count, state);
    });
  }
}

void reset_adjoint(const Adjoint& adj, int64_t stride, int64_t pw) {
  for (float* buffer : {adj.g, adj.decay, adj.dA}) std::fill(buffer, buffer + stride, 0.0f);
  for (float* buffer : {adj.dD, adj.dbias}) std::fill(buffer, buffer + pw, 0.0f);
}

// Copies a direction's parameter gradients of one block into the per-batch partial buffers.
void store_parameter_grads(const ScanShape& s, const Block& blk, int64_t k, int64_t state, const Adjoint& adj,
                           const Gradients& out) {
  const int64_t pw = padded_width(blk.width);
  const int64_t base = (blk.b * kDirections + k) * s.channels + blk.c0;
  for (int64_t c = 0; c < blk.width; ++c) {
    for (int64_t n = 0; n < state; ++n) out.dA_part[(base + c) * state + n] = adj.dA[n * pw + c];
    out.dD_part[base + c] = adj.dD[c];
    out.dbias_part[base + c] = adj.dbias[c];
  }
}

// Steps per recorded chunk: the whole scan when its records fit kRecordBudget.
int64_t record_chunk(int64_t length, int64_t state, int64_t pw) {
  return std::clamp<int64_t>(kRecordBudget / record_size(state, pw), 1, length);
}

template <int kState>
DASS_INLINE void backward_block(const ScanInputs& in, const float* dy, const Block& blk, Workspace& ws,
                                const Gradients& out) {
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
      checkpoint_walk<kState>(in, blk, k, prm, chunk, checkpoints, h_a, h_b, state);
    } else {
      std::fill(checkpoints, checkpoints + stride, 0.0f);
    }
    reset_adjoint(adj, stride, pw);
    for (int64_t j = chunks - 1; j >= 0; --j) {
      const int64_t start = j * chunk;
      const int64_t end = std::min(s.length, start + chunk);
      const float* h_start = checkpoints + j * stride;
      record_walk<kState>(in, blk, k, prm, h_start, records, start, end, state);
      reverse_walk<kState>(in, dy, blk, k, prm, adj, h_start, records, start, end, out, state);
    }
    store_parameter_grads(s, blk, k, state, adj, out);
  }
}

DASS_TARGET_CLONES void backward_block_n1(const ScanInputs& in, const float* dy, const Block& blk, Workspace& ws,
                                          const Gradients& out) {
  backward_block<1>(in, dy, blk, ws, out);
}

DASS_TARGET_CLONES void backward_block_any(const ScanInputs& in, const float* dy, const Block& blk, Workspace& ws,
                                           const Gradients& out) {
  backward_block<0>(in, dy, blk, ws, out);
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
// Input checks

void check_tensor(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), "dass::cross_scan (CPU): ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "dass::cross_scan (CPU): ", name, " must be float32, got ",
              t.scalar_type(), " (cast the inputs before calling the op)");
  TORCH_CHECK(t.dim() == dim, "dass::cross_scan: ", name, " must have ", dim, " dimensions, got shape ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "dass::cross_scan: ", name, " must be contiguous (call .contiguous()), got strides ",
              t.strides(), " for shape ", t.sizes());
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

ScanInputs make_inputs(const ScanShape& s, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                       const at::Tensor& B, const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias,
                       const std::vector<int32_t>& order) {
  return {u.data_ptr<float>(), delta.data_ptr<float>(), A.data_ptr<float>(), B.data_ptr<float>(),
          C.data_ptr<float>(), D.data_ptr<float>(), delta_bias.data_ptr<float>(), order.data(), s};
}

// ---------------------------------------------------------------------------------------------------
// Ops

at::Tensor cross_scan_fwd_cpu(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                              const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias, int64_t height,
                              int64_t width) {
  const ScanShape s = check_inputs(u, delta, A, B, C, D, delta_bias, height, width);
  at::Tensor y = at::empty({s.batch, s.length, s.channels}, u.options());  // see ForwardRows::overwrite
  if (y.numel() == 0) return y;
  const std::vector<int32_t> order = scan_orders(height, width);
  const ScanInputs in = make_inputs(s, u, delta, A, B, C, D, delta_bias, order);
  float* out = y.data_ptr<float>();
  for_each_block(s, channel_block_width(s), [&](const Block& blk, Workspace& ws) {
    if (s.state == 1) {
      forward_block_n1(in, blk, ws, out);
    } else {
      forward_block_any(in, blk, ws, out);
    }
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_scan_bwd_cpu(
    const at::Tensor& dy, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const at::Tensor& D, const at::Tensor& delta_bias, int64_t height, int64_t width) {
  const ScanShape s = check_inputs(u, delta, A, B, C, D, delta_bias, height, width);
  check_tensor(dy, "dy", 3);
  check_shape(dy, "dy (Bt, L, Dc)", u.sizes());
  const int64_t block_width = channel_block_width(s);
  const int64_t blocks = channel_block_count(s, block_width);
  const auto opts = u.options();
  // Every element of these is written by exactly one item (du: by its first direction).
  at::Tensor du = at::empty_like(u);
  at::Tensor ddelta = at::empty_like(delta);
  at::Tensor dA_part = at::empty({s.batch, kDirections, s.channels, s.state}, opts);
  at::Tensor dD_part = at::empty({s.batch, kDirections, s.channels}, opts);
  at::Tensor dbias_part = at::empty({s.batch, kDirections, s.channels}, opts);
  at::Tensor dB_part = at::empty({blocks, s.batch, kDirections, s.length, s.state}, opts);
  at::Tensor dC_part = at::empty({blocks, s.batch, kDirections, s.length, s.state}, opts);
  if (du.numel() > 0) {
    const std::vector<int32_t> order = scan_orders(height, width);
    const ScanInputs in = make_inputs(s, u, delta, A, B, C, D, delta_bias, order);
    const Gradients out{du.data_ptr<float>(),         ddelta.data_ptr<float>(), dA_part.data_ptr<float>(),
                        dD_part.data_ptr<float>(),    dbias_part.data_ptr<float>(), dB_part.data_ptr<float>(),
                        dC_part.data_ptr<float>()};
    const float* grad = dy.data_ptr<float>();
    for_each_block(s, block_width, [&](const Block& blk, Workspace& ws) {
      if (s.state == 1) {
        backward_block_n1(in, grad, blk, ws, out);
      } else {
        backward_block_any(in, grad, blk, ws, out);
      }
    });
  }
  return {du, ddelta, dA_part.sum(0), dB_part.sum(0), dC_part.sum(0), dD_part.sum(0), dbias_part.sum(0)};
}

}  // namespace
}  // namespace dass_cpu

TORCH_LIBRARY_IMPL(dass, CPU, m) {
  m.impl("cross_scan_fwd", &dass_cpu::cross_scan_fwd_cpu);
  m.impl("cross_scan_bwd", &dass_cpu::cross_scan_bwd_cpu);
}

// Device kernels of the CUDA dass::cross_scan_fwd / dass::cross_scan_bwd (host side: cross_scan_cuda.cu).
// Semantics: transformers_dass.ops.reference.cross_scan_channels_last_reference.
//
// Notation: Bt batch, 4 directions k, L = H * W grid positions (row-major, p = h * W + w), Dc channels, N
// state size. Direction k walks axis k & 1 (0: rows, scan index l -> p = l; 1: columns, l -> p =
// (l % H) * W + l / H), forwards for k < 2 and backwards for k >= 2. Along its order, with
// dt = softplus(delta + delta_bias), a = exp(dt * A):
//     h_t = a_t * h_{t-1} + dt_t * B_t * u_t,   y_t = sum_n C_t,n h_t,n + D * u_t.
//
// Parallel decomposition (a chunked scan, three launches per pass):
//   * Each axis is cut into NC = ceil(L / T) chunks of T consecutive scan indices. A warp owns one
//     (batch, axis, chunk) and 32 consecutive channels (lane = channel, so every load of u / delta / dy at
//     a position is one coalesced row of the channels-last tensor); a block stacks kChunkWarps chunks.
//     The warp handles both directions of its axis (k = axis forwards and k = axis + 2 backwards), which
//     share u and the positions.
//   1. chunk-state kernel: each chunk's summary from a zero state: S = sum of dt (the chunk's decay is
//      exp(A * S)) and the end state; the backward pass also gets the adjoint that leaves the chunk.
//   2. carry kernel: per (b, k, n, channel) a scan over the chunk summaries in direction order (blocks of
//      kCarryWarps warps, each warp a contiguous run of chunks, runs combined through shared memory),
//      replacing each summary by the carry that enters the chunk.
//   3. output / gradient kernel: recompute each chunk from its carry and write the results.
// Sums over directions: a grid position gets one contribution from the row warp and one from the column
// warp, added with atomicAdd into zeroed float32 (y, du). Exactly two addends onto 0 (fp add is
// commutative), so these sums are deterministic; ddelta is stored once per element. dB / dC (sums over
// channels) are reduced within the warp by a transposing butterfly (16 values in 16 shuffles, lane i keeps
// sum i, instead of 5 shuffles per value) and atomically added across channel tiles; dA / dD /
// d(delta_bias) are reduced over the block's warps in shared memory and atomically added across blocks.
// Those float32 atomic sums have more than two addends, so their last bits depend on scheduling.
//
// State sizes: kernels are compiled for kN in {1, 4, 16}; a smaller N runs in the next one up with the
// states n >= N masked (never loaded, stored or read back). Traffic per pass: u, delta (and dy) are read
// twice (chunk-state and output kernels; the host runs the passes on batch slices that fit half the L2,
// so the second read mostly hits L2), the chunk summaries add 2-3 floats per chunk of T positions, and
// y / du get one atomic add per axis.
//
// Everything here is plain CUDA C++ with no torch dependency. Defining DASS_CUDA_EMULATION before including
// it lets a host compiler build the same kernels against an emulation of the CUDA built-ins (a test aid).
#pragma once

#include <cstddef>
#include <cstdint>

#ifndef DASS_CUDA_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define DASS_DEVICE __device__ __forceinline__
#define DASS_UNROLL _Pragma("unroll")
#endif

namespace dass_cuda {

constexpr int kWarpSize = 32;
// Warps (= chunks) per block in the chunk kernels.
constexpr int kChunkWarps = 4;
constexpr int kChunkThreads = kWarpSize * kChunkWarps;
// Warps per block in the carry kernel.
constexpr int kCarryWarps = 16;
constexpr int kCarryThreads = kWarpSize * kCarryWarps;
constexpr int kDirections = 4;
constexpr int kMaxState = 16;

// Chunk length for a (padded) state size. Longer chunks mean less chunk-summary traffic, shorter ones
// fewer registers: the backward pass keeps T * kN states per thread (at kN = 1, T = 16 would need about
// 220 registers against 128 for T = 8), so it uses shorter chunks than the forward pass.
template <int kN, bool kBackward>
struct ChunkLen {
  static constexpr int value = kBackward ? (kN <= 4 ? 8 : 4) : (kN == 1 ? 16 : (kN <= 4 ? 8 : 4));
};

// Raw pointers and sizes. u / delta (and ddelta) hold the input type; everything else is float32.
struct ScanParams {
  const void* u;        // (Bt, L, Dc)
  const void* delta;    // (Bt, 4, L, Dc)
  const float* A;       // (4, Dc, N)
  const float* B;       // (Bt, 4, L, N)
  const float* C;       // (Bt, 4, L, N)
  const float* D;       // (4, Dc)
  const float* bias;    // (4, Dc)
  const float* dy;      // (Bt, L, Dc), backward only
  float* y;             // (Bt, L, Dc), zeroed, forward only
  float* S;             // (Bt, 4, NC, Dc) chunk sums of dt
  float* H;             // (Bt, 4, NC, N, Dc) chunk end states, then carries in
  float* Q;             // (Bt, 4, NC, N, Dc) chunk adjoints out, then adjoint carries in (backward)
  void* ddelta;         // (Bt, 4, L, Dc), every element written
  float* du;            // (Bt, L, Dc), zeroed
  float* dA;            // (4, Dc, N), zeroed
  float* dB;            // (Bt, 4, L, N), zeroed
  float* dC;            // (Bt, 4, L, N), zeroed
  float* dD;            // (4, Dc), zeroed
  float* dbias;         // (4, Dc), zeroed
  int batch, length, channels, state, height, width, chunks;
};

// ---------------------------------------------------------------------------------------------------------
// Scalar helpers

DASS_DEVICE float to_float(float v) { return v; }
#ifndef DASS_CUDA_EMULATION
DASS_DEVICE float to_float(__half v) { return __half2float(v); }
DASS_DEVICE float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
#endif

template <typename T>
struct FromFloat;
template <>
struct FromFloat<float> {
  static DASS_DEVICE float convert(float v) { return v; }
};
#ifndef DASS_CUDA_EMULATION
template <>
struct FromFloat<__half> {
  static DASS_DEVICE __half convert(float v) { return __float2half_rn(v); }
};
template <>
struct FromFloat<__nv_bfloat16> {
  static DASS_DEVICE __nv_bfloat16 convert(float v) { return __float2bfloat16_rn(v); }
};
#endif

// torch.nn.functional.softplus (beta 1, threshold 20) and its derivative.
DASS_DEVICE float softplus(float z) { return z > 20.f ? z : log1pf(__expf(z)); }
// softplus'(z) = sigmoid(z) = 1 - exp(-softplus(z)), from dt itself (also right past the threshold, to
// rounding; and 0 at masked steps, where dt = 0).
DASS_DEVICE float softplus_grad_from_dt(float dt) { return -expm1f(-dt); }

// Grid position of scan index l along an axis.
DASS_DEVICE int axis_position(int axis, int l, int height, int width) {
  return axis == 0 ? l : (l % height) * width + l / height;
}

// Block / warp coordinates shared by the chunk kernels: grid (channel tiles, chunk groups, Bt * 2 axes),
// block (32 lanes = channels, kChunkWarps warps = chunks).
struct ChunkCoords {
  int lane, warp, channel, chunk, batch, axis;
  bool channel_ok, chunk_ok;
};

DASS_DEVICE ChunkCoords chunk_coords(const ScanParams& p) {
  ChunkCoords c;
  c.lane = threadIdx.x;
  c.warp = threadIdx.y;
  c.channel = blockIdx.x * kWarpSize + c.lane;
  c.chunk = blockIdx.y * kChunkWarps + c.warp;
  c.batch = blockIdx.z >> 1;
  c.axis = blockIdx.z & 1;
  c.channel_ok = c.channel < p.channels;
  c.chunk_ok = c.chunk < p.chunks;
  return c;
}

// Grid positions of the chunk's T scan indices along the axis (ok[t] false past L; pos 0 there).
template <int T>
DASS_DEVICE void chunk_positions(const ScanParams& p, int axis, int l0, int (&pos)[T], bool (&ok)[T]) {
  if (axis == 0) {
    DASS_UNROLL
    for (int t = 0; t < T; ++t) {
      ok[t] = l0 + t < p.length;
      pos[t] = ok[t] ? l0 + t : 0;
    }
  } else {
    int hh = l0 % p.height;
    int ww = l0 / p.height;
    DASS_UNROLL
    for (int t = 0; t < T; ++t) {
      ok[t] = l0 + t < p.length;
      pos[t] = ok[t] ? hh * p.width + ww : 0;
      if (++hh == p.height) {
        hh = 0;
        ++ww;
      }
    }
  }
}

// One channel of a channels-last (positions, Dc) slab at the chunk's positions; 0 where masked.
template <typename T_in, int T>
DASS_DEVICE void load_chunk(const T_in* __restrict__ base, int channels, int channel, bool channel_ok,
                            const int (&pos)[T], const bool (&ok)[T], float (&out)[T]) {
  DASS_UNROLL
  for (int t = 0; t < T; ++t) {
    out[t] = (channel_ok && ok[t]) ? to_float(base[pos[t] * channels + channel]) : 0.f;
  }
}

// dt of the chunk; 0 at masked steps so they leave the state unchanged (decay 1, no input).
template <int T>
DASS_DEVICE void chunk_dt(const float (&raw)[T], float bias, bool channel_ok, const bool (&ok)[T], float (&dt)[T]) {
  DASS_UNROLL
  for (int t = 0; t < T; ++t) dt[t] = (channel_ok && ok[t]) ? softplus(raw[t] + bias) : 0.f;
}

// Warp-wide sums of kSlots values at once (kSlots a power of two <= 32): lane i returns the sum over the
// warp of v[i % kSlots]; v is clobbered. Each halving step sends the half of the values this lane gives
// up and adds the partner's copy of the half it keeps (kSlots - 1 shuffles), then lanes kSlots apart add
// up (log2(32 / kSlots) shuffles): about one shuffle per sum instead of five. All 32 lanes must call it.
template <int kSlots>
DASS_DEVICE float warp_transpose_sum(float (&v)[kSlots], int lane) {
  static_assert(kSlots >= 1 && kSlots <= kWarpSize && (kSlots & (kSlots - 1)) == 0, "kSlots: power of 2 <= 32");
  constexpr int kHalvings =
      kSlots >= 32 ? 5 : kSlots >= 16 ? 4 : kSlots >= 8 ? 3 : kSlots >= 4 ? 2 : kSlots >= 2 ? 1 : 0;
  DASS_UNROLL
  for (int step = 0; step < kHalvings; ++step) {
    const int width = (kSlots / 2) >> step;
    const bool upper = (lane & width) != 0;
    DASS_UNROLL
    for (int i = 0; i < (kSlots / 2) >> step; ++i) {
      const float send = upper ? v[i] : v[i + width];
      const float keep = upper ? v[i + width] : v[i];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, send, width);
    }
  }
  DASS_UNROLL
  for (int step = 0; step < 5 - kHalvings; ++step) v[0] += __shfl_xor_sync(0xffffffffu, v[0], kSlots << step);
  return v[0];
}

// ---------------------------------------------------------------------------------------------------------
// Pass 1: chunk summaries from a zero state.

// Forward: S and the end state of each (b, k, chunk, channel), both directions of the block's axis.
template <typename T_in, int kN>
__global__ void __launch_bounds__(kChunkThreads) fwd_chunk_state_kernel(ScanParams p) {
  constexpr int T = ChunkLen<kN, false>::value;
  const ChunkCoords cc = chunk_coords(p);
  if (!cc.chunk_ok) return;  // whole warps; this kernel has no block-wide barrier
  const int Dc = p.channels, L = p.length, N = p.state, d = cc.channel;
  const int l0 = cc.chunk * T;
  int pos[T];
  bool ok[T];
  chunk_positions<T>(p, cc.axis, l0, pos, ok);
  float u[T];
  load_chunk<T_in, T>(static_cast<const T_in*>(p.u) + static_cast<size_t>(cc.batch) * L * Dc, Dc, d, cc.channel_ok,
                      pos, ok, u);
  DASS_UNROLL
  for (int j = 0; j < 2; ++j) {
    const int k = cc.axis + 2 * j;
    const size_t bk = static_cast<size_t>(cc.batch) * kDirections + k;
    float dt[T];
    load_chunk<T_in, T>(static_cast<const T_in*>(p.delta) + bk * L * Dc, Dc, d, cc.channel_ok, pos, ok, dt);
    chunk_dt<T>(dt, cc.channel_ok ? p.bias[k * Dc + d] : 0.f, cc.channel_ok, ok, dt);
    const float* Bk = p.B + bk * L * N;
    float A[kN], h[kN];
    DASS_UNROLL
    for (int n = 0; n < kN; ++n) {
      A[n] = (cc.channel_ok && (kN == 1 || n < N)) ? p.A[(static_cast<size_t>(k) * Dc + d) * N + n] : 0.f;
      h[n] = 0.f;
    }
    float S = 0.f;
    DASS_UNROLL
    for (int s = 0; s < T; ++s) {
      const int t = j == 0 ? s : T - 1 - s;
      S += dt[t];
      const float x = dt[t] * u[t];
      DASS_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (kN == 1 || n < N) {
          const float b = ok[t] ? Bk[pos[t] * N + n] : 0.f;
          h[n] = __expf(dt[t] * A[n]) * h[n] + x * b;
        }
      }
    }
    if (cc.channel_ok) {
      const size_t chunk_row = bk * p.chunks + cc.chunk;
      p.S[chunk_row * Dc + d] = S;
      DASS_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (kN == 1 || n < N) p.H[(chunk_row * N + n) * Dc + d] = h[n];
      }
    }
  }
}

// Backward: as the forward one, plus the adjoint handed to the previous chunk (in direction order) when
// the adjoint entering from the next chunk is 0: q = a_first * g_first with g_t = a_{t+1} g_{t+1} + dy_t C_t.
template <typename T_in, int kN>
__global__ void __launch_bounds__(kChunkThreads) bwd_chunk_state_kernel(ScanParams p) {
  constexpr int T = ChunkLen<kN, true>::value;
  const ChunkCoords cc = chunk_coords(p);
  if (!cc.chunk_ok) return;  // whole warps; this kernel has no block-wide barrier
  const int Dc = p.channels, L = p.length, N = p.state, d = cc.channel;
  const int l0 = cc.chunk * T;
  int pos[T];
  bool ok[T];
  chunk_positions<T>(p, cc.axis, l0, pos, ok);
  float u[T], gy[T];
  const size_t slab = static_cast<size_t>(cc.batch) * L * Dc;
  load_chunk<T_in, T>(static_cast<const T_in*>(p.u) + slab, Dc, d, cc.channel_ok, pos, ok, u);
  load_chunk<float, T>(p.dy + slab, Dc, d, cc.channel_ok, pos, ok, gy);
  DASS_UNROLL
  for (int j = 0; j < 2; ++j) {
    const int k = cc.axis + 2 * j;
    const size_t bk = static_cast<size_t>(cc.batch) * kDirections + k;
    float dt[T];
    load_chunk<T_in, T>(static_cast<const T_in*>(p.delta) + bk * L * Dc, Dc, d, cc.channel_ok, pos, ok, dt);
    chunk_dt<T>(dt, cc.channel_ok ? p.bias[k * Dc + d] : 0.f, cc.channel_ok, ok, dt);
    const float* Bk = p.B + bk * L * N;
    const float* Ck = p.C + bk * L * N;
    float A[kN], h[kN], q[kN];
    DASS_UNROLL
    for (int n = 0; n < kN; ++n) {
      A[n] = (cc.channel_ok && (kN == 1 || n < N)) ? p.A[(static_cast<size_t>(k) * Dc + d) * N + n] : 0.f;
      h[n] = 0.f;
      q[n] = 0.f;
    }
    float S = 0.f;
    DASS_UNROLL
    for (int s = 0; s < T; ++s) {  // direction order
      const int t = j == 0 ? s : T - 1 - s;
      S += dt[t];
      const float x = dt[t] * u[t];
      DASS_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (kN == 1 || n < N) {
          const float b = ok[t] ? Bk[pos[t] * N + n] : 0.f;
          h[n] = __expf(dt[t] * A[n]) * h[n] + x * b;
        }
      }
    }
    DASS_UNROLL
    for (int s = 0; s < T; ++s) {  // reverse direction order
      const int t = j == 0 ? T - 1 - s : s;
      DASS_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (kN == 1 || n < N) {
          const float c = ok[t] ? Ck[pos[t] * N + n] : 0.f;
          q[n] = __expf(dt[t] * A[n]) * (q[n] + gy[t] * c);
        }
      }
    }
    if (cc.channel_ok) {
      const size_t chunk_row = bk * p.chunks + cc.chunk;
      p.S[chunk_row * Dc + d] = S;
      DASS_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (kN == 1 || n < N) {
          p.H[(chunk_row * N + n) * Dc + d] = h[n];
          p.Q[(chunk_row * N + n) * Dc + d] = q[n];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pass 2: carries across chunks.
//
// grid (channel tiles, modes * 4 * N, Bt), block (32 lanes = channels, kCarryWarps warps). Mode 0 scans
// the states p.H in direction order (chunk index rising for k < 2, falling for k >= 2); mode 1 scans the
// adjoints p.Q against direction order. A chunk combines as carry_out = exp(A * S) * carry_in + summary,
// and each summary is overwritten in place by the carry entering its chunk (0 for the first chunk).
__global__ void __launch_bounds__(kCarryThreads) chunk_carry_kernel(ScanParams p) {
  __shared__ float run_decay[kCarryWarps][kWarpSize];
  __shared__ float run_state[kCarryWarps][kWarpSize];
  const int lane = threadIdx.x, warp = threadIdx.y;
  const int Dc = p.channels, N = p.state, NC = p.chunks;
  const int d = blockIdx.x * kWarpSize + lane;
  const bool channel_ok = d < Dc;
  const int mode = blockIdx.y / (kDirections * N);
  const int rest = blockIdx.y - mode * kDirections * N;
  const int k = rest / N, n = rest - (rest / N) * N;
  const bool rising = (k >= 2) == (mode == 1);
  const size_t bk = static_cast<size_t>(blockIdx.z) * kDirections + k;
  const float* S = p.S + bk * NC * Dc;
  float* X = (mode == 0 ? p.H : p.Q) + bk * NC * N * Dc;
  const size_t state_stride = static_cast<size_t>(N) * Dc;
  const float A = channel_ok ? p.A[(static_cast<size_t>(k) * Dc + d) * N + n] : 0.f;

  // This warp's run of chunks, as positions j in scan order; lanes past Dc take none.
  const int per_warp = (NC + kCarryWarps - 1) / kCarryWarps;
  const int j0 = warp * per_warp;
  const int j1 = channel_ok ? (j0 + per_warp < NC ? j0 + per_warp : NC) : j0;

  float total_dt = 0.f, state = 0.f;
  for (int j = j0; j < j1; ++j) {
    const int c = rising ? j : NC - 1 - j;
    const float s = S[static_cast<size_t>(c) * Dc + d];
    state = __expf(A * s) * state + X[c * state_stride + n * Dc + d];
    total_dt += s;
  }
  run_decay[warp][lane] = total_dt;
  run_state[warp][lane] = state;
  __syncthreads();
  float carry = 0.f;
  for (int w = 0; w < warp; ++w) carry = __expf(A * run_decay[w][lane]) * carry + run_state[w][lane];
  for (int j = j0; j < j1; ++j) {
    const int c = rising ? j : NC - 1 - j;
    const float s = S[static_cast<size_t>(c) * Dc + d];
    float* x = X + c * state_stride + n * Dc + d;
    const float summary = *x;
    *x = carry;
    carry = __expf(A * s) * carry + summary;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pass 3, forward: outputs of both directions of the axis from the carries, added into y.
template <typename T_in, int kN>
__global__ void __launch_bounds__(kChunkThreads) fwd_output_kernel(ScanParams p) {
  constexpr int T = ChunkLen<kN, false>::value;
  const ChunkCoords cc = chunk_coords(p);
  if (!cc.chunk_ok) return;  // whole warps; this kernel has no block-wide barrier
  const int Dc = p.channels, L = p.length, N = p.state, d = cc.channel;
  const int l0 = cc.chunk * T;
  int pos[T];
  bool ok[T];
  chunk_positions<T>(p, cc.axis, l0, pos, ok);
  const size_t slab = static_cast<size_t>(cc.batch) * L * Dc;
  float u[T], y[T];
  load_chunk<T_in, T>(static_cast<const T_in*>(p.u) + slab, Dc, d, cc.channel_ok, pos, ok, u);
  {
    const float skip = cc.channel_ok ? p.D[cc.axis * Dc + d] + p.D[(cc.axis + 2) * Dc + d] : 0.f;
    DASS_UNROLL
    for (int t = 0; t < T; ++t) y[t] = skip * u[t];
  }
  DASS_UNROLL
  for (int j = 0; j < 2; ++j) {
    const int k = cc.axis + 2 * j;
    const size_t bk = static_cast<size_t>(cc.batch) * kDirections + k;
    float dt[T];
    load_chunk<T_in, T>(static_cast<const T_in*>(p.delta) + bk * L * Dc, Dc, d, cc.channel_ok, pos, ok, dt);
    chunk_dt<T>(dt, cc.channel_ok ? p.bias[k * Dc + d] : 0.f, cc.channel_ok, ok, dt);
    const float* Bk = p.B + bk * L * N;
    const float* Ck = p.C + bk * L * N;
    const size_t chunk_row = bk * p.chunks + cc.chunk;
    float A[kN], h[kN];
    DASS_UNROLL
    for (int n = 0; n < kN; ++n) {
      const bool live = cc.channel_ok && (kN == 1 || n < N);
      A[n] = live ? p.A[(static_cast<size_t>(k) * Dc + d) * N + n] : 0.f;
      h[n] = live ? p.H[(chunk_row * N + n) * Dc + d] : 0.f;
    }
    DASS_UNROLL
    for (int s = 0; s < T; ++s) {
      const int t = j == 0 ? s : T - 1 - s;
      const float x = dt[t] * u[t];
      float out = 0.f;
      DASS_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (kN == 1 || n < N) {
          const float b = ok[t] ? Bk[pos[t] * N + n] : 0.f;
          const float c = ok[t] ? Ck[pos[t] * N + n] : 0.f;
          h[n] = __expf(dt[t] * A[n]) * h[n] + x * b;
          out += c * h[n];
        }
      }
      y[t] += out;
    }
  }
  if (cc.channel_ok) {
    float* yb = p.y + slab;
    DASS_UNROLL
    for (int t = 0; t < T; ++t) {
      if (ok[t]) atomicAdd(yb + pos[t] * Dc + d, y[t]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pass 3, backward: every gradient of both directions of the axis.
//
// Per step t (direction order), with g_t the adjoint of h_t and hp = h_{t-1}:
//   g_t = a_{t+1} g_{t+1} + dy_t C_t           dC_t += dy_t h_t          dB_t += g_t dt_t u_t
//   du_t += dy_t D + sum_n g_t dt_t B_t        dA += g_t dt_t a_t hp      dD += dy_t u_t
//   d(dt_t) = sum_n g_t (A a_t hp + B_t u_t)   ddelta_t = d(dt_t) softplus'(z_t), d(delta_bias) += ddelta_t
template <typename T_in, int kN>
__global__ void __launch_bounds__(kChunkThreads) bwd_grads_kernel(ScanParams p) {
  constexpr int T = ChunkLen<kN, true>::value;
  constexpr int kPerDir = kN + 2;          // dA[0..kN), dD, dbias
  constexpr int kSums = 2 * kPerDir;       // both directions
  constexpr int kEntries = 2 * T * kN;     // dB and dC values of one direction, in sweep order
  constexpr int kSlots = 16;               // dB / dC values reduced per warp transpose-sum
  __shared__ float block_sums[kSums][kChunkWarps][kWarpSize];
  const ChunkCoords cc = chunk_coords(p);
  const int Dc = p.channels, L = p.length, N = p.state, d = cc.channel;
  const int l0 = cc.chunk * T;
  float sums[kSums];
  DASS_UNROLL
  for (int i = 0; i < kSums; ++i) sums[i] = 0.f;

  // No early return: every warp reaches the barrier below. chunk_ok is uniform over a warp, so the
  // shuffles inside stay warp-converged.
  if (cc.chunk_ok) {
    int pos[T];
    bool ok[T];
    chunk_positions<T>(p, cc.axis, l0, pos, ok);
    const size_t slab = static_cast<size_t>(cc.batch) * L * Dc;
    float u[T], gy[T], du[T];
    load_chunk<T_in, T>(static_cast<const T_in*>(p.u) + slab, Dc, d, cc.channel_ok, pos, ok, u);
    load_chunk<float, T>(p.dy + slab, Dc, d, cc.channel_ok, pos, ok, gy);
    DASS_UNROLL
    for (int t = 0; t < T; ++t) du[t] = 0.f;

    DASS_UNROLL
    for (int j = 0; j < 2; ++j) {
      const int k = cc.axis + 2 * j;
      const size_t bk = static_cast<size_t>(cc.batch) * kDirections + k;
      float dt[T];
      load_chunk<T_in, T>(static_cast<const T_in*>(p.delta) + bk * L * Dc, Dc, d, cc.channel_ok, pos, ok, dt);
      chunk_dt<T>(dt, cc.channel_ok ? p.bias[k * Dc + d] : 0.f, cc.channel_ok, ok, dt);
      const float Dk = cc.channel_ok ? p.D[k * Dc + d] : 0.f;
      const float* Bk = p.B + bk * L * N;
      const float* Ck = p.C + bk * L * N;
      const size_t chunk_row = bk * p.chunks + cc.chunk;
      float A[kN], h[kN], g_next[kN];
      DASS_UNROLL
      for (int n = 0; n < kN; ++n) {
        const bool live = cc.channel_ok && (kN == 1 || n < N);
        A[n] = live ? p.A[(static_cast<size_t>(k) * Dc + d) * N + n] : 0.f;
        h[n] = live ? p.H[(chunk_row * N + n) * Dc + d] : 0.f;
        g_next[n] = live ? p.Q[(chunk_row * N + n) * Dc + d] : 0.f;
      }

      // States entering each step, from the carry.
      float h_prev[T][kN];
      DASS_UNROLL
      for (int s = 0; s < T; ++s) {
        const int t = j == 0 ? s : T - 1 - s;
        const float x = dt[t] * u[t];
        DASS_UNROLL
        for (int n = 0; n < kN; ++n) {
          h_prev[t][n] = h[n];
          if (kN == 1 || n < N) {
            const float b = ok[t] ? Bk[pos[t] * N + n] : 0.f;
            h[n] = __expf(dt[t] * A[n]) * h[n] + x * b;
          }
        }
      }

      // Adjoint sweep against direction order. dB / dC values go to a kSlots buffer flushed through the
      // warp transpose-sum whenever it fills (all indices below are compile-time after unrolling).
      T_in* ddelta = static_cast<T_in*>(p.ddelta) + bk * L * Dc;
      float pending[kSlots];
      DASS_UNROLL
      for (int i = 0; i < kSlots; ++i) pending[i] = 0.f;
      DASS_UNROLL
      for (int s = 0; s < T; ++s) {
        const int t = j == 0 ? T - 1 - s : s;
        const float x = dt[t] * u[t];
        float d_dt = 0.f;
        float du_t = gy[t] * Dk;
        DASS_UNROLL
        for (int n = 0; n < kN; ++n) {
          float b = 0.f, c = 0.f;
          if ((kN == 1 || n < N) && ok[t]) {
            b = Bk[pos[t] * N + n];
            c = Ck[pos[t] * N + n];
          }
          const float a = __expf(dt[t] * A[n]);
          const float g = g_next[n] + gy[t] * c;
          const float hp = h_prev[t][n];
          const float h_t = a * hp + x * b;
          const float g_dt = g * dt[t];
          du_t += g_dt * b;
          d_dt += g * (A[n] * a * hp + b * u[t]);
          sums[j * kPerDir + n] += g_dt * a * hp;
          g_next[n] = a * g;

          const int e = (s * kN + n) * 2;  // entry index: dB at e, dC at e + 1
          pending[e % kSlots] = g_dt * u[t];
          pending[e % kSlots + 1] = gy[t] * h_t;
          if ((e + 2) % kSlots == 0 || e + 2 == kEntries) {
            const float total = warp_transpose_sum<kSlots>(pending, cc.lane);
            const int entry = (e / kSlots) * kSlots + cc.lane;
            if (cc.lane < kSlots && entry < kEntries) {
              const int es = entry / (2 * kN);
              const int en = (entry / 2) % kN;
              const int et = j == 0 ? T - 1 - es : es;
              const int el = l0 + et;
              if (el < L && en < N) {
                float* target = (entry & 1) ? p.dC : p.dB;
                const int ep = axis_position(cc.axis, el, p.height, p.width);
                atomicAdd(target + (bk * L + ep) * N + en, total);
              }
            }
            DASS_UNROLL
            for (int i = 0; i < kSlots; ++i) pending[i] = 0.f;
          }
        }
        du[t] += du_t;
        sums[j * kPerDir + kN] += gy[t] * u[t];
        const float dz = d_dt * softplus_grad_from_dt(dt[t]);  // 0 at masked steps
        sums[j * kPerDir + kN + 1] += dz;
        if (cc.channel_ok && ok[t]) ddelta[pos[t] * Dc + d] = FromFloat<T_in>::convert(dz);
      }
    }
    if (cc.channel_ok) {
      float* dub = p.du + slab;
      DASS_UNROLL
      for (int t = 0; t < T; ++t) {
        if (ok[t]) atomicAdd(dub + pos[t] * Dc + d, du[t]);
      }
    }
  }

  // dA / dD / dbias: sum the block's warps per channel, then one atomic per block.
  DASS_UNROLL
  for (int i = 0; i < kSums; ++i) block_sums[i][cc.warp][cc.lane] = sums[i];
  __syncthreads();
  if (cc.channel_ok) {
    for (int i = cc.warp; i < kSums; i += kChunkWarps) {
      float total = 0.f;
      DASS_UNROLL
      for (int w = 0; w < kChunkWarps; ++w) total += block_sums[i][w][cc.lane];
      const int j = i / kPerDir, r = i - (i / kPerDir) * kPerDir;
      const int k = cc.axis + 2 * j;
      if (r < kN) {
        if (r < N) atomicAdd(p.dA + (static_cast<size_t>(k) * Dc + d) * N + r, total);
      } else if (r == kN) {
        atomicAdd(p.dD + k * Dc + d, total);
      } else {
        atomicAdd(p.dbias + k * Dc + d, total);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Host side: launch geometry and the order of the launches, shared by cross_scan_cuda.cu and the emulation.

template <int kN, bool kBackward>
inline int chunk_count(int length) {
  constexpr int T = ChunkLen<kN, kBackward>::value;
  return (length + T - 1) / T;
}

struct LaunchShape {
  dim3 chunk_grid, chunk_block, carry_grid, carry_block;
};

// p.chunks must be set. Chunk kernels: grid (channel tiles, chunk groups, Bt * 2 axes), block (32,
// kChunkWarps). Carry kernel: grid (channel tiles, modes * 4 * N, Bt), block (32, kCarryWarps).
inline LaunchShape launch_shape(const ScanParams& p, int modes) {
  const unsigned channel_tiles = static_cast<unsigned>((p.channels + kWarpSize - 1) / kWarpSize);
  LaunchShape g;
  g.chunk_grid = dim3(channel_tiles, static_cast<unsigned>((p.chunks + kChunkWarps - 1) / kChunkWarps),
                      static_cast<unsigned>(p.batch * 2));
  g.chunk_block = dim3(kWarpSize, kChunkWarps, 1);
  g.carry_grid =
      dim3(channel_tiles, static_cast<unsigned>(modes * kDirections * p.state), static_cast<unsigned>(p.batch));
  g.carry_block = dim3(kWarpSize, kCarryWarps, 1);
  return g;
}

// p restricted to batch elements [first, first + count): per-batch tensors offset, per-direction parameters,
// their gradient sums and the chunk scratch shared.
template <typename T_in>
inline ScanParams batch_slice(const ScanParams& p, int first, int count) {
  ScanParams q = p;
  const size_t b = static_cast<size_t>(first), L = p.length, Dc = p.channels, N = p.state;
  q.batch = count;
  q.u = static_cast<const T_in*>(p.u) + b * L * Dc;
  q.delta = static_cast<const T_in*>(p.delta) + b * kDirections * L * Dc;
  q.B = p.B + b * kDirections * L * N;
  q.C = p.C + b * kDirections * L * N;
  if (p.dy != nullptr) q.dy = p.dy + b * L * Dc;
  if (p.y != nullptr) q.y = p.y + b * L * Dc;
  if (p.ddelta != nullptr) q.ddelta = static_cast<T_in*>(p.ddelta) + b * kDirections * L * Dc;
  if (p.du != nullptr) q.du = p.du + b * L * Dc;
  if (p.dB != nullptr) q.dB = p.dB + b * kDirections * L * N;
  if (p.dC != nullptr) q.dC = p.dC + b * kDirections * L * N;
  return q;
}

// launch(kernel, grid, block, params) runs kernel(params) in stream order. The three passes run on
// batch_per_launch batch elements at a time, so that the output pass re-reads what the chunk-state pass
// just read while it is still in L2. p needs the inputs, y (zeroed), chunks = chunk_count<kN, false>(L)
// and S, H with room for (min(batch_per_launch, Bt), 4, chunks[, N], Dc) floats.
template <typename T_in, int kN, typename Launch>
void forward_launches(const ScanParams& p, int batch_per_launch, Launch&& launch) {
  for (int first = 0; first < p.batch; first += batch_per_launch) {
    const int count = p.batch - first < batch_per_launch ? p.batch - first : batch_per_launch;
    const ScanParams q = batch_slice<T_in>(p, first, count);
    const LaunchShape g = launch_shape(q, 1);
    launch(fwd_chunk_state_kernel<T_in, kN>, g.chunk_grid, g.chunk_block, q);
    launch(chunk_carry_kernel, g.carry_grid, g.carry_block, q);
    launch(fwd_output_kernel<T_in, kN>, g.chunk_grid, g.chunk_block, q);
  }
}

// As forward_launches, with dy, the zeroed gradient sums, ddelta, chunks = chunk_count<kN, true>(L) and
// S, H, Q.
template <typename T_in, int kN, typename Launch>
void backward_launches(const ScanParams& p, int batch_per_launch, Launch&& launch) {
  for (int first = 0; first < p.batch; first += batch_per_launch) {
    const int count = p.batch - first < batch_per_launch ? p.batch - first : batch_per_launch;
    const ScanParams q = batch_slice<T_in>(p, first, count);
    const LaunchShape g = launch_shape(q, 2);
    launch(bwd_chunk_state_kernel<T_in, kN>, g.chunk_grid, g.chunk_block, q);
    launch(chunk_carry_kernel, g.carry_grid, g.carry_block, q);
    launch(bwd_grads_kernel<T_in, kN>, g.chunk_grid, g.chunk_block, q);
  }
}

}  // namespace dass_cuda

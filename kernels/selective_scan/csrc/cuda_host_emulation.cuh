// A host-only stand-in for the CUDA built-ins used by cross_scan_cuda_kernels.cuh, so a C++20 compiler can
// run those kernels on CPU threads. A test aid (tests/gpu/test_kernel_cuda.py), never part of the build:
// it checks the kernels' indexing, carries and reductions on machines without a GPU. Not a CUDA
// emulator in general: it provides only what these kernels use.
//
// A launch runs the blocks one after another; each block runs its threads concurrently on std::threads,
// with a std::barrier for __syncthreads and a per-warp exchange (two barriers) for __shfl_xor_sync. The
// block's __shared__ arrays are function-local statics, which is right because only one block runs at a
// time. atomicAdd is a std::atomic_ref fetch_add. Usage:
//     #include "cuda_host_emulation.cuh"
//     #include "cross_scan_cuda_kernels.cuh"
#pragma once

#define DASS_CUDA_EMULATION 1

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include <math.h>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define DASS_DEVICE inline
#define DASS_UNROLL

namespace dass_emulation {

struct BlockContext {
  explicit BlockContext(int threads)
      : block_barrier(threads), lanes(static_cast<size_t>(threads)) {
    const int warps = (threads + 31) / 32;
    for (int w = 0; w < warps; ++w) {
      const int members = (w + 1) * 32 <= threads ? 32 : threads - w * 32;
      warp_barriers.emplace_back(std::make_unique<std::barrier<>>(members));
    }
  }
  std::barrier<> block_barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  std::vector<float> lanes;  // shuffle mailboxes, one per thread
};

inline thread_local BlockContext* current_block = nullptr;
inline thread_local int linear_thread = 0;

}  // namespace dass_emulation

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

inline float __expf(float x) { return std::exp(x); }

inline void __syncthreads() { dass_emulation::current_block->block_barrier.arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned /*mask*/, float value, int lane_mask) {
  using namespace dass_emulation;
  BlockContext& block = *current_block;
  const int warp = linear_thread / 32, lane = linear_thread % 32;
  std::barrier<>& barrier = *block.warp_barriers[warp];
  block.lanes[linear_thread] = value;
  barrier.arrive_and_wait();
  const float other = block.lanes[warp * 32 + (lane ^ lane_mask)];
  barrier.arrive_and_wait();
  return other;
}

inline float atomicAdd(float* address, float value) { return std::atomic_ref<float>(*address).fetch_add(value); }

namespace dass_emulation {

// Runs kernel(args...) over the grid: one std::thread per thread of a block, which together run the blocks
// one after another (a barrier between blocks, so a block's statics are not reused early).
template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, const Args&... args) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  if (threads % 32 != 0) throw std::runtime_error("emulated blocks must be whole warps");
  gridDim = grid;
  blockDim = block;
  BlockContext context(threads);
  std::barrier<> between_blocks(threads);
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      current_block = &context;
      linear_thread = t;
      threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
      for (unsigned bz = 0; bz < grid.z; ++bz) {
        for (unsigned by = 0; by < grid.y; ++by) {
          for (unsigned bx = 0; bx < grid.x; ++bx) {
            blockIdx = dim3(bx, by, bz);
            kernel(args...);
            between_blocks.arrive_and_wait();
          }
        }
      }
    });
  }
  for (std::thread& worker : pool) worker.join();
}

}  // namespace dass_emulation

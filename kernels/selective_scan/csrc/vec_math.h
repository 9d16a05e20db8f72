// Scalar float32 math written only with arithmetic, comparisons and bit casts, so that gcc vectorises
// the `#pragma omp simd` loops that call it (a call to libm's expf/log1pf would keep those loops scalar).
// Accuracy: a few ulp, checked against torch in tests/test_kernel_cpu.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// Every helper is force-inlined so that each target clone of a kernel gets its own ISA's code for it.
#define DASS_INLINE inline __attribute__((always_inline))

namespace dass_cpu {

DASS_INLINE float bits_to_float(int32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

DASS_INLINE int32_t float_to_bits(float value) {
  int32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

// exp(x) for x in [-87.4, 88.3], the range where 2^round(x / ln2) is a normal float. x = n ln2 + r with
// |r| <= ln2 / 2; exp(r) by its degree-7 Taylor polynomial (truncation error < 6e-9 relative); 2^n is
// assembled in the exponent bits.
DASS_INLINE float exp_in_range(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  // ln 2 split so that n * kLn2Hi is exact for |n| < 2^15 (Cody-Waite reduction).
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
  constexpr float kShifter = 12582912.0f;
  const float shifted = x * kLog2e + kShifter;
  const float n = shifted - kShifter;
  const int32_t n_int = float_to_bits(shifted) - float_to_bits(kShifter);
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  // Estrin's scheme: a dependency chain of 3 multiply-adds instead of Horner's 7, so more of these
  // independent evaluations overlap in the out-of-order window.
  const float r2 = r * r;
  const float r4 = r2 * r2;
  const float p01 = r + 1.0f;
  const float p23 = r * (1.0f / 6.0f) + 0.5f;
  const float p45 = r * (1.0f / 120.0f) + (1.0f / 24.0f);
  const float p67 = r * (1.0f / 5040.0f) + (1.0f / 720.0f);
  const float p = (r2 * p23 + p01) + r4 * (r2 * p67 + p45);
  return p * bits_to_float((n_int + 127) << 23);
}

// The clamps below are separate selects, never nested: a comparison that runs on one branch of another
// might raise an FP exception, gcc then keeps the branch and the loop stays scalar. NaN compares false,
// so it passes through and propagates.

// exp(x) for x <= 0; below -87.4 (exp < 1.2e-38) it returns exp(-87.4) instead.
DASS_INLINE float fast_exp_nonpositive(float x) { return exp_in_range(x < -87.4f ? -87.4f : x); }

// exp(x), with x clamped to [-87.4, 88.3]: outside it returns ~1e-38 or ~2e38 instead of 0 or inf.
DASS_INLINE float fast_exp(float x) {
  float clamped = x < -87.4f ? -87.4f : x;
  clamped = clamped > 88.3f ? 88.3f : clamped;
  return exp_in_range(clamped);
}

// log1p(t) for t in [0, 1]: 2 atanh(s) with s = t / (2 + t) <= 1/3, series through s^15 (truncation
// error < 2e-9 relative). No cancellation for small t, unlike log(1 + t).
DASS_INLINE float log1p_unit(float t) {
  const float s = t / (2.0f + t);
  const float z = s * s;
  // Estrin's scheme (see exp_in_range) for sum_k z^k / (2k + 1), k = 0..7.
  const float z2 = z * z;
  const float z4 = z2 * z2;
  const float q01 = z * (1.0f / 3.0f) + 1.0f;
  const float q23 = z * (1.0f / 7.0f) + (1.0f / 5.0f);
  const float q45 = z * (1.0f / 11.0f) + (1.0f / 9.0f);
  const float q67 = z * (1.0f / 15.0f) + (1.0f / 13.0f);
  const float p = (z2 * q23 + q01) + z4 * (z2 * q67 + q45);
  return 2.0f * s * p;
}

// Like torch.nn.functional.softplus (beta 1, threshold 20): log(1 + e^x), evaluated as
// max(x, 0) + log1p(e^-|x|) so that nothing overflows. Torch returns x itself for x > 20; here the
// log1p term is then below 2.1e-9, under half an ulp of x, so the sum rounds to x just the same.
DASS_INLINE float softplus(float x) {
  const float e = fast_exp_nonpositive(-std::fabs(x));
  return (x > 0.0f ? x : 0.0f) + log1p_unit(e);
}

// softplus(x) and its derivative sigmoid(x) from a single exponential. (For x > 20, where torch uses
// slope 1, 1 / (1 + e) rounds to 1 as well.)
DASS_INLINE void softplus_and_sigmoid(float x, float& value, float& slope) {
  const float e = fast_exp_nonpositive(-std::fabs(x));
  const float r = 1.0f / (1.0f + e);
  const float er = e * r;
  value = (x > 0.0f ? x : 0.0f) + log1p_unit(e);
  slope = x >= 0.0f ? r : er;
}

}  // namespace dass_cpu

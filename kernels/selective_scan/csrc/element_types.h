// Element types the CPU kernels read and write: float32, bfloat16 and float16. Each is a policy with the
// storage type of one element and branch-free load (to float) / store (from float, round to nearest even)
// written with integer and float arithmetic only, so that the `#pragma omp simd` loops calling them still
// vectorise, on every ISA variant. All arithmetic of the kernels is float32; only loads and stores convert.
#pragma once

#include <cstdint>
#include <type_traits>

#include "vec_math.h"

namespace dass_cpu {

DASS_INLINE uint32_t float_to_ubits(float value) { return static_cast<uint32_t>(float_to_bits(value)); }
DASS_INLINE float ubits_to_float(uint32_t bits) { return bits_to_float(static_cast<int32_t>(bits)); }

struct Float32 {
  using Storage = float;
  static DASS_INLINE float load(float value) { return value; }
  static DASS_INLINE float store(float value) { return value; }
};

// bfloat16: the high half of a float32.
struct BFloat16 {
  using Storage = uint16_t;
  static DASS_INLINE float load(uint16_t value) { return ubits_to_float(static_cast<uint32_t>(value) << 16); }
  // Round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, then truncate. The carry of a rounding
  // up runs into the exponent, so the largest floats become infinity, as they must. NaN becomes 0x7FC0 (as
  // torch's conversion does), since the rounding could turn a NaN's low payload into infinity.
  static DASS_INLINE uint16_t store(float value) {
    const uint32_t bits = float_to_ubits(value);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
    return static_cast<uint16_t>(nan ? 0x7FC0u : rounded);
  }
};

// IEEE float16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
struct Float16 {
  using Storage = uint16_t;
  static DASS_INLINE float load(uint16_t value) {
    const uint32_t word = static_cast<uint32_t>(value) << 16;
    const uint32_t sign = word & 0x80000000u;
    const uint32_t magnitude = word << 1;  // exponent in bits 31..27, mantissa in 26..17
    // Normal numbers, infinities, NaN: place exponent and mantissa as a float32's (>> 4), add 224 to the
    // exponent (with 31 -> 255 that keeps infinities and NaN) and scale by 2^-112: rebiased from 15 to 127.
    const float normal = ubits_to_float((magnitude >> 4) + (224u << 23)) * 0x1.0p-112f;
    // Subnormals (exponent 0): the value is mantissa * 2^-24; written into the low bits of 0.5 (whose ulp is
    // 2^-24) and 0.5 taken away again, exactly.
    const float subnormal = ubits_to_float((magnitude >> 17) | (126u << 23)) - 0.5f;
    const uint32_t bits = magnitude < (1u << 27) ? float_to_ubits(subnormal) : float_to_ubits(normal);
    return ubits_to_float(sign | bits);
  }
  // Round to nearest, ties to even; overflow to infinity, NaN to a quiet NaN of the same sign.
  static DASS_INLINE uint16_t store(float value) {
    const uint32_t bits = float_to_ubits(value);
    const uint32_t sign = (bits >> 16) & 0x8000u;
    const uint32_t magnitude = bits & 0x7FFFFFFFu;
    // |value| >= 2^-14 (a normal float16): round the mantissa to 10 bits as for bfloat16 (13 dropped bits;
    // a carry runs into the exponent), rebias the exponent from 127 to 15, saturate at infinity.
    const uint32_t rounded = (magnitude + 0x0FFFu + ((magnitude >> 13) & 1u)) >> 13;
    const uint32_t normal_bits = rounded - (112u << 10);
    const uint32_t normal = normal_bits > 0x7C00u ? 0x7C00u : normal_bits;
    // |value| < 2^-14: a multiple of 2^-24 (the subnormal step). Adding 0.5, whose ulp is 2^-24, makes the
    // float unit round it to nearest even; the bits above those of 0.5 are then the float16 bits (up to
    // 0x400, the smallest normal, when it rounds up).
    const uint32_t subnormal = float_to_ubits(ubits_to_float(magnitude) + 0.5f) - float_to_ubits(0.5f);
    uint32_t result = magnitude < (113u << 23) ? subnormal : normal;
    result = magnitude > 0x7F800000u ? 0x7E00u : result;
    return static_cast<uint16_t>(sign | result);
  }
};

template <typename Elem>
constexpr bool is_float32 = std::is_same_v<Elem, Float32>;

}  // namespace dass_cpu

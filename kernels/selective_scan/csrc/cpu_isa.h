// Which instruction-set variant of the CPU kernels runs: chosen from cpuid when the library loads (the best one
// this CPU runs), or forced with dass::set_cpu_isa / the DASS_CPU_ISA environment variable (read by the Python
// package on import). Forcing a variant the CPU lacks raises an error instead of dying on an illegal instruction.
#pragma once

#include <string>
#include <vector>

// The x86-64 variants need gcc >= 12 (arch=x86-64-v3/v4 in target attributes and __builtin_cpu_supports);
// other compilers and architectures build the portable variant alone.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define DASS_X86_VARIANTS 1
#else
#define DASS_X86_VARIANTS 0
#endif

namespace dass_cpu {

// Ordered from the most portable to the fastest.
enum class CpuIsa : int {
  kDefault = 0,  // the compiler's baseline for the build target (x86-64: SSE2)
  kAvx2 = 1,     // x86-64-v3: AVX2, FMA, F16C, BMI1/2
  kAvx512 = 2,   // x86-64-v4: v3 plus AVX-512 F, BW, CD, DQ, VL
};

const char* isa_name(CpuIsa isa);

// Variants this CPU (and OS) can run, most portable first; always contains kDefault.
std::vector<CpuIsa> supported_isas();

// The variant a request ("auto", "avx512", "avx2", "default") resolves to, given the supported ones: "auto"
// is the fastest supported; a named one must be supported, else this throws an error naming what is missing.
CpuIsa resolve_isa(const std::string& requested, const std::vector<CpuIsa>& supported);

// The variant the kernels run now.
CpuIsa active_isa();

}  // namespace dass_cpu

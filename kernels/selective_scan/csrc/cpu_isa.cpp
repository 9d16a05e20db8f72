// Detection and choice of the CPU kernels' instruction-set variant (see cpu_isa.h), and the dass:: ops that
// report and force it:
//   dass::cpu_isa() -> str                       the variant the CPU kernels run now
//   dass::supported_cpu_isas() -> str[]          the variants this CPU runs, most portable first
//   dass::set_cpu_isa(str isa) -> str            force "avx512" | "avx2" | "default", or "auto"; returns the
//                                                variant now active
//   dass::resolve_cpu_isa(str isa, str[] supported) -> str
//                                                the choice rule alone, for a given list of supported variants
#include "cpu_isa.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

namespace dass_cpu {
namespace {

constexpr CpuIsa kAllIsas[] = {CpuIsa::kDefault, CpuIsa::kAvx2, CpuIsa::kAvx512};

std::string known_names() { return "\"auto\", \"avx512\", \"avx2\" or \"default\""; }

CpuIsa parse_isa(const std::string& name) {
  for (CpuIsa isa : kAllIsas) {
    if (name == isa_name(isa)) return isa;
  }
  TORCH_CHECK(false, "dass: unknown CPU kernel variant \"", name, "\"; choose ", known_names());
}

std::string joined(const std::vector<CpuIsa>& isas) {
  std::string out;
  for (CpuIsa isa : isas) out += (out.empty() ? "" : ", ") + std::string(isa_name(isa));
  return out;
}

// What a variant needs, for the error message when it is missing.
const char* requirement(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "x86-64-v4: AVX-512 F/BW/CD/DQ/VL, with AVX2, FMA, F16C, BMI1/2, and OS support for the AVX-512 state";
    case CpuIsa::kAvx2:
      return "x86-64-v3: AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE, and OS support for the AVX state";
    default:
      return "the build's baseline";
  }
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(resolve_isa("auto", supported_isas()))};
  return slot;
}

std::string cpu_isa_op() { return isa_name(active_isa()); }

std::vector<std::string> supported_cpu_isas_op() {
  std::vector<std::string> names;
  for (CpuIsa isa : supported_isas()) names.emplace_back(isa_name(isa));
  return names;
}

std::string set_cpu_isa_op(std::string requested) {
  const CpuIsa isa = resolve_isa(requested, supported_isas());
  active_slot().store(static_cast<int>(isa));
  return isa_name(isa);
}

std::string resolve_cpu_isa_op(std::string requested, std::vector<std::string> supported) {
  std::vector<CpuIsa> isas;
  for (const std::string& name : supported) isas.push_back(parse_isa(name));
  return isa_name(resolve_isa(requested, isas));
}

}  // namespace

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    default:
      return "default";
  }
}

std::vector<CpuIsa> supported_isas() {
  std::vector<CpuIsa> isas{CpuIsa::kDefault};
#if DASS_X86_VARIANTS
  // libgcc's checks include the OS side (XGETBV: the OS saves the YMM / ZMM state), not only cpuid.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v3")) isas.push_back(CpuIsa::kAvx2);
  if (__builtin_cpu_supports("x86-64-v4")) isas.push_back(CpuIsa::kAvx512);
#endif
  return isas;
}

CpuIsa resolve_isa(const std::string& requested, const std::vector<CpuIsa>& supported) {
  if (requested == "auto") {
    CpuIsa best = CpuIsa::kDefault;
    for (CpuIsa isa : supported) best = std::max(best, isa);
    return best;
  }
  const CpuIsa isa = parse_isa(requested);
  if (std::find(supported.begin(), supported.end(), isa) != supported.end()) return isa;
  TORCH_CHECK(DASS_X86_VARIANTS || isa == CpuIsa::kDefault, "dass: the CPU kernel variant \"", requested,
              "\" was not compiled into this build (it has x86-64 variants only when built by gcc >= 12 for "
              "x86-64); use \"default\" or \"auto\"");
  TORCH_CHECK(false, "dass: this CPU cannot run the \"", requested, "\" kernels (they need ", requirement(isa),
              "); it runs: ", joined(supported), ". Use one of those or \"auto\" (e.g. unset DASS_CPU_ISA).");
}

CpuIsa active_isa() { return static_cast<CpuIsa>(active_slot().load(std::memory_order_relaxed)); }

}  // namespace dass_cpu

TORCH_LIBRARY_FRAGMENT(dass, m) {
  m.def("cpu_isa() -> str", &dass_cpu::cpu_isa_op);
  m.def("supported_cpu_isas() -> str[]", &dass_cpu::supported_cpu_isas_op);
  m.def("set_cpu_isa(str isa) -> str", &dass_cpu::set_cpu_isa_op);
  m.def("resolve_cpu_isa(str isa, str[] supported) -> str", &dass_cpu::resolve_cpu_isa_op);
}

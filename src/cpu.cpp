#include "mdn/cpu.hpp"

#include <cpuid.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace mdn {

namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned subleaf = 0) {
  Regs r;
  if (__get_cpuid_count(leaf, subleaf, &r.a, &r.b, &r.c, &r.d) == 0) return {};
  return r;
}

bool bit(unsigned reg, int i) { return ((reg >> i) & 1u) != 0; }

/// XCR0: which register states the operating system saves (bit 1 SSE, 2 AVX, 5-7 AVX-512).
std::uint64_t xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

struct Features {
  bool v2 = false, v3 = false, v4 = false;
};

/// The feature sets of GCC's -march=x86-64-v2/-v3/-v4 (the x86-64 psABI's levels).
Features detect() {
  Features f;
  const unsigned max_leaf = cpuid(0).a;
  const unsigned max_ext = cpuid(0x80000000u).a;
  const Regs l1 = max_leaf >= 1 ? cpuid(1) : Regs{};
  const Regs l7 = max_leaf >= 7 ? cpuid(7, 0) : Regs{};
  const Regs e1 = max_ext >= 0x80000001u ? cpuid(0x80000001u) : Regs{};

  f.v2 = bit(l1.c, 0) /*SSE3*/ && bit(l1.c, 9) /*SSSE3*/ && bit(l1.c, 13) /*CX16*/ &&
         bit(l1.c, 19) /*SSE4.1*/ && bit(l1.c, 20) /*SSE4.2*/ && bit(l1.c, 23) /*POPCNT*/ &&
         bit(e1.c, 0) /*LAHF-SAHF*/;
  const bool osxsave = bit(l1.c, 27);
  const std::uint64_t xcr = osxsave ? xcr0() : 0;
  const bool os_avx = (xcr & 0x6) == 0x6;         // XMM and YMM state
  const bool os_avx512 = (xcr & 0xe6) == 0xe6;    // and opmask, ZMM_Hi256, Hi16_ZMM
  f.v3 = f.v2 && osxsave && os_avx && bit(l1.c, 28) /*AVX*/ && bit(l1.c, 12) /*FMA*/ &&
         bit(l1.c, 29) /*F16C*/ && bit(l1.c, 22) /*MOVBE*/ && bit(l7.b, 5) /*AVX2*/ &&
         bit(l7.b, 3) /*BMI1*/ && bit(l7.b, 8) /*BMI2*/ && bit(e1.c, 5) /*LZCNT*/;
  f.v4 = f.v3 && os_avx512 && bit(l7.b, 16) /*AVX512F*/ && bit(l7.b, 17) /*AVX512DQ*/ &&
         bit(l7.b, 28) /*AVX512CD*/ && bit(l7.b, 30) /*AVX512BW*/ && bit(l7.b, 31) /*AVX512VL*/;
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}

constexpr CpuLevel kAll[] = {CpuLevel::x86_64, CpuLevel::x86_64_v3, CpuLevel::x86_64_v4};

}  // namespace

const char* to_string(CpuLevel level) {
  switch (level) {
    case CpuLevel::x86_64: return "x86-64";
    case CpuLevel::x86_64_v3: return "x86-64-v3";
    case CpuLevel::x86_64_v4: return "x86-64-v4";
  }
  return "?";
}

std::optional<CpuLevel> parse_cpu_level(std::string_view name) {
  for (CpuLevel l : kAll)
    if (name == to_string(l)) return l;
  return std::nullopt;
}

std::string cpu_level_names() {
  std::string s;
  for (CpuLevel l : kAll) s += (s.empty() ? "" : " | ") + std::string(to_string(l));
  return s;
}

const std::vector<CpuLevel>& built_levels() {
  // MDN_BUILT_LEVELS: a comma-separated list of CpuLevel enumerators, set by CMake.
  static const std::vector<CpuLevel> levels = {MDN_BUILT_LEVELS};
  return levels;
}

bool is_built(CpuLevel level) {
  const auto& b = built_levels();
  return std::find(b.begin(), b.end(), level) != b.end();
}

bool cpu_supports(CpuLevel level) {
  switch (level) {
    case CpuLevel::x86_64: return true;
    case CpuLevel::x86_64_v3: return features().v3;
    case CpuLevel::x86_64_v4: return features().v4;
  }
  return false;
}

CpuLevel cpu_best_level() {
  CpuLevel best = CpuLevel::x86_64;
  for (CpuLevel l : kAll)
    if (cpu_supports(l)) best = l;
  return best;
}

CpuLevel best_built_level() {
  CpuLevel best = built_levels().front();
  for (CpuLevel l : built_levels())
    if (cpu_supports(l)) best = l;
  return best;
}

std::string cpu_model_name() {
  if (cpuid(0x80000000u).a < 0x80000004u) return "unknown CPU";
  char brand[49] = {0};
  for (unsigned i = 0; i < 3; ++i) {
    const Regs r = cpuid(0x80000002u + i);
    std::memcpy(brand + 16 * i, &r.a, 4);
    std::memcpy(brand + 16 * i + 4, &r.b, 4);
    std::memcpy(brand + 16 * i + 8, &r.c, 4);
    std::memcpy(brand + 16 * i + 12, &r.d, 4);
  }
  std::string s(brand);
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return "unknown CPU";
  const auto last = s.find_last_not_of(' ');
  return s.substr(first, last - first + 1);
}

}  // namespace mdn

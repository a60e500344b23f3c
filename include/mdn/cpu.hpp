// Instruction-set levels: which build of the compute kernels (kernels.hpp) a process runs.
//
// The kernels are compiled once per x86-64 micro-architecture level, as GCC's -march names them,
// each with generic tuning, and linked into the one binary:
//   x86-64      the baseline every x86-64 CPU runs (SSE2)
//   x86-64-v3   AVX, AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE (and v2: SSE3-SSE4.2, POPCNT, CX16)
//   x86-64-v4   v3 and AVX-512 F, BW, CD, DQ, VL
// A level's results are a function of the binary, the level and the inputs only: the same on
// every CPU that runs it. Different levels round differently (FMA, vector widths), so a job's
// ranks agree on one level (the best that all of them support, or the checkpoint's) and record it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mdn {

/// Ordered: each level's instructions include those of the levels below it.
enum class CpuLevel : int { x86_64 = 0, x86_64_v3 = 1, x86_64_v4 = 2 };

/// "x86-64", "x86-64-v3", "x86-64-v4" (GCC's -march names).
const char* to_string(CpuLevel level);
/// The level of a name as to_string() writes it; none for anything else.
std::optional<CpuLevel> parse_cpu_level(std::string_view name);
/// Every level mdn knows, lowest first, as "x86-64 | x86-64-v3 | x86-64-v4".
std::string cpu_level_names();

/// The levels whose kernels are in this binary, lowest first (CMake's MDN_LEVELS).
const std::vector<CpuLevel>& built_levels();
bool is_built(CpuLevel level);

/// Whether this CPU, and the operating system for the wider registers' state, can run code of
/// `level` (CPUID and XGETBV).
bool cpu_supports(CpuLevel level);

/// The best level this CPU supports, of all levels (built or not).
CpuLevel cpu_best_level();

/// The best built level this CPU supports: what `run.cpu: auto` gives a single process.
CpuLevel best_built_level();

/// The CPU's model name (CPUID brand string), e.g. "AMD EPYC 7763 64-Core Processor".
std::string cpu_model_name();

}  // namespace mdn

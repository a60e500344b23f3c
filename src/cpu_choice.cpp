#include "mdn/cpu_choice.hpp"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "mdn/error.hpp"

namespace mdn {

namespace {

std::string host_name() {
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) != 0) return "?";
  return name;
}

}  // namespace

std::string built_level_list() {
  std::string s;
  for (CpuLevel l : built_levels()) s += (s.empty() ? "" : ", ") + std::string(to_string(l));
  return s;
}

std::string CpuChoice::describe(int ranks) const {
  const std::string all = ranks == 1 ? "this CPU supports" : fmt::format("all {} ranks support", ranks);
  if (reason == "run.cpu") return fmt::format("{} (run.cpu; the best level {} is {})", to_string(level), all, to_string(common));
  if (reason == "checkpoint")
    return fmt::format("{} (auto: the checkpoint's level; the best level {} is {})", to_string(level), all, to_string(common));
  if (!replaced.empty())
    return fmt::format("{} (auto: the best level {}; the checkpoint's level, {}, {})", to_string(level), all, replaced,
                       replaced == "unknown" ? "is not recorded" : "cannot run on every rank");
  return fmt::format("{} (auto: the best level {})", to_string(level), all);
}

CpuChoice choose_cpu_level(std::optional<CpuLevel> requested, const std::string& what,
                           std::optional<CpuLevel> previous, bool resuming, Comm& comm) {
  // Every rank's best built level at its own index; one small collective gives every rank all.
  const auto P = static_cast<std::size_t>(comm.size());
  std::vector<std::int32_t> best(P, INT32_MAX);
  best[static_cast<std::size_t>(comm.rank())] = static_cast<std::int32_t>(best_built_level());
  comm.allreduce(best.data(), P, ReduceOp::min);
  CpuChoice c;
  c.common = static_cast<CpuLevel>(*std::min_element(best.begin(), best.end()));
  if (requested) {
    const CpuLevel want = *requested;
    comm.collectively([&] {
      if (!is_built(want))
        throw input_error("{}: {} is not built into this binary (built: {}; CMake's MDN_LEVELS)", what,
                          to_string(want), built_level_list());
      if (!cpu_supports(want)) {
        std::string lacking;
        for (std::size_t r = 0; r < P; ++r)
          if (best[r] < static_cast<std::int32_t>(want)) lacking += (lacking.empty() ? "" : ", ") + std::to_string(r);
        throw input_error("{}: {} needs instructions that the CPU of rank {} (host {}, {}) lacks: it supports up "
                          "to {}{}. Use auto (here {}) or a level every node supports",
                          what, to_string(want), comm.rank(), host_name(), cpu_model_name(),
                          to_string(cpu_best_level()), P > 1 ? fmt::format("; ranks lacking it: {}", lacking) : "",
                          to_string(c.common));
      }
    });
    c.level = want;
    c.reason = "run.cpu";
    return c;
  }
  if (previous && is_built(*previous) && *previous <= c.common) {
    c.level = *previous;
    c.reason = "checkpoint";
    return c;
  }
  c.level = c.common;
  c.reason = "auto";
  if (previous || resuming) c.replaced = previous ? to_string(*previous) : "unknown";
  return c;
}

}  // namespace mdn

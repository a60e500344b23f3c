// How the ranks' gradients are summed (README, "Exact reduction").
#pragma once

#include <utility>

#include "mdn/names.hpp"

namespace mdn {

/// exact: integer sums, bit-identical for any rank count; fast: a float allreduce.
enum class Reduction { exact, fast };

template <>
struct EnumNames<Reduction> {
  static constexpr std::pair<Reduction, const char*> table[] = {{Reduction::exact, "exact"},
                                                                {Reduction::fast, "fast"}};
};

}  // namespace mdn

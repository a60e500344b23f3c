// The seed of randomised tests: printed by the test mains, settable with MDN_TEST_SEED.
#pragma once

#include <cstdint>
#include <cstdlib>

namespace mdn::test {

inline std::uint64_t seed() {
  const char* s = std::getenv("MDN_TEST_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 0) : 20261124ULL;
}

}  // namespace mdn::test

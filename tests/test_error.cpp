#include <gtest/gtest.h>

#include <new>
#include <stdexcept>

#include "mdn/error.hpp"

namespace mdn {
namespace {

ErrorReport report_of(const std::function<void()>& f) {
  try {
    f();
  } catch (...) {
    return describe(std::current_exception());
  }
  return {Exit::ok, "nothing thrown", false};
}

TEST(Error, InputAndRunErrorsCarryTheirExitCodes) {
  const auto a = report_of([] { throw input_error("config.yaml:3: key '{}': unknown", "x"); });
  EXPECT_EQ(a.code, Exit::input);
  EXPECT_EQ(static_cast<int>(a.code), 2);
  EXPECT_EQ(a.message, "config.yaml:3: key 'x': unknown");
  EXPECT_FALSE(a.collective);

  const auto b = report_of([] { throw run_error("write failed"); });
  EXPECT_EQ(b.code, Exit::failure);
  EXPECT_EQ(static_cast<int>(b.code), 1);
}

TEST(Error, ForeignExceptionsAreInternalFailures) {
  const auto a = report_of([] { throw std::out_of_range("index 9"); });
  EXPECT_EQ(a.code, Exit::failure);
  EXPECT_EQ(a.message, "internal error: index 9");
  const auto b = report_of([] { throw std::bad_alloc(); });
  EXPECT_EQ(b.message, "out of memory");
  const auto c = report_of([] { throw 42; });
  EXPECT_EQ(c.code, Exit::failure);
}

TEST(Error, ExitCodesAreTheDocumentedOnes) {
  EXPECT_EQ(static_cast<int>(Exit::ok), 0);
  EXPECT_EQ(static_cast<int>(Exit::checkpointed), 75);
}

}  // namespace
}  // namespace mdn

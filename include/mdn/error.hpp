// Errors and exit codes.
//
// Three kinds of failure, three mechanisms (README, "Exit codes"):
//   - programmer errors are MDN_CHECKs (cheap checks where data crosses a module boundary,
//     always on) and assert()s (costly ones, off in release builds);
//   - user and environment errors are mdn::Error, carrying the process exit code;
//   - numerical outcomes (non-finite gradients, ...) are statuses the trainer acts on.
// An Error is caught once, in main. Errors found on one rank are settled collectively with
// Comm::settle, so that every rank exits with the same code and rank 0 prints the message once.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace mdn {

/// Process exit codes (README, "Exit codes").
enum class Exit : int {
  ok = 0,
  failure = 1,       ///< a failure while running: I/O error, non-finite stop, overflow, timeout
  input = 2,         ///< the user's command, config or input files are wrong
  checkpointed = 75, ///< stopped by a signal after writing a checkpoint: resume me
};

class Error : public std::runtime_error {
 public:
  Error(Exit code, std::string message, bool collective = false)
      : std::runtime_error(std::move(message)), code_(code), collective_(collective) {}

  Exit code() const noexcept { return code_; }
  /// True when every rank holds this error (it went through Comm::settle or was raised by
  /// identical work on every rank), so rank 0 alone reports it and no rank needs MPI_Abort.
  bool collective() const noexcept { return collective_; }

 private:
  Exit code_;
  bool collective_;
};

/// The user's command, config or input files are wrong (exit 2).
template <class... Args>
Error input_error(fmt::format_string<Args...> f, Args&&... args) {
  return Error(Exit::input, fmt::format(f, std::forward<Args>(args)...));
}

/// A failure while running (exit 1).
template <class... Args>
Error run_error(fmt::format_string<Args...> f, Args&&... args) {
  return Error(Exit::failure, fmt::format(f, std::forward<Args>(args)...));
}

/// A contract check that stays on in release builds, for O(1) checks where data crosses a module
/// boundary (shapes, sizes): a violation is a bug, reported as an internal error naming the
/// condition and its place.
#define MDN_CHECK(condition)                                                          \
  do {                                                                                \
    if (!static_cast<bool>(condition)) ::mdn::check_failed(#condition, __FILE__, __LINE__); \
  } while (false)
[[noreturn]] void check_failed(const char* condition, const char* file, int line);

/// Exit code and message for any exception escaping a command.
struct ErrorReport {
  Exit code = Exit::failure;
  std::string message;
  bool collective = false;
};
ErrorReport describe(const std::exception_ptr& e);

}  // namespace mdn

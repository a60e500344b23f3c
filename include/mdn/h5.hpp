// Owners for HDF5 ids and a checked-call wrapper.
//
// Every raw HDF5 call in mdn goes through h5::check, which turns a negative return into an
// mdn::Error carrying HDF5's own description of what went wrong. HDF5's automatic printing of
// its error stack is turned off (h5::quiet), so the user sees mdn's one message instead.
#pragma once

#include <hdf5.h>

#include <string>
#include <string_view>
#include <utility>

#include "mdn/error.hpp"

namespace mdn::h5 {

/// Turns off HDF5's automatic error printing for this process. Idempotent; cheap after the
/// first call. Called by main and by everything in mdn that opens HDF5 files.
void quiet();

/// Takes HDF5's current error stack (clearing it) and describes it in one line: the innermost
/// failure, which is where HDF5 says what was actually wrong. Empty if the stack is empty.
std::string take_error_stack();

/// Throws Error(code, "<what>: <HDF5's description>").
[[noreturn]] void fail(std::string_view what, Exit code = Exit::failure);

/// Returns rc when the call succeeded (rc >= 0, as HDF5 reports success for herr_t, hid_t,
/// htri_t and ssize_t returns), otherwise throws as fail() does.
template <class T>
T check(T rc, std::string_view what, Exit code = Exit::failure) {
  if (rc < 0) fail(what, code);
  return rc;
}

/// Owns one HDF5 id (file, group, dataset, dataspace, datatype, attribute, property list).
/// Move-only; the destructor releases the id and never throws. Use close() where the outcome of
/// closing matters (a file being written: closing flushes it).
class Handle {
 public:
  Handle() noexcept = default;
  explicit Handle(hid_t id) noexcept : id_(id) {}
  ~Handle() { reset(); }
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const noexcept { return id_; }
  bool valid() const noexcept { return id_ >= 0; }

  /// Releases the id now; throws (as check does) when HDF5 reports a failure.
  void close(std::string_view what, Exit code = Exit::failure);
  /// Releases the id, ignoring failures.
  void reset() noexcept;

 private:
  hid_t id_ = H5I_INVALID_HID;
};

/// Wraps the id returned by an HDF5 call after checking it.
inline Handle checked(hid_t id, std::string_view what, Exit code = Exit::failure) {
  return Handle(check(id, what, code));
}

}  // namespace mdn::h5

// Owners for HDF5 ids, a checked-call wrapper, and the checked operations that mdn's files share:
// files, groups, typed attributes, datasets (whole or by rows), dataset listings.
//
// This is the only place in mdn that calls HDF5's C API (test_h5 checks that no other source file
// does). Every call goes through h5::check, which turns a negative return into an
// mdn::Error carrying HDF5's own description of what went wrong. HDF5's automatic printing of
// its error stack is turned off (h5::quiet), so the user sees mdn's one message instead.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

/// A new HDF5 file that lives in memory only (the core driver without a backing store): HDF5
/// itself never writes to disk, so a full disk or a lost permission cannot leave HDF5 with
/// half-closed objects; the bytes reach the disk through write_file_atomically.
Handle create_in_memory(const std::string& name);

/// The complete file image of an in-memory file, after flushing it.
std::string file_image(const Handle& file, std::string_view what);

/// Attributes as mdn's files hold them: strings as variable-length UTF-8 scalars, integers as
/// little-endian int64, reals as little-endian float64. `obj` is a path from the file's root
/// ("/" for the root); `what` names the attribute in the error (exit 1).
void write_attribute(hid_t file, const std::string& obj, const std::string& name, const std::string& value,
                     std::string_view what);
void write_attribute(hid_t file, const std::string& obj, const std::string& name, std::int64_t value,
                     std::string_view what);
void write_attribute(hid_t file, const std::string& obj, const std::string& name, double value,
                     std::string_view what);
void write_attribute(hid_t file, const std::string& obj, const std::string& name,
                     const std::vector<std::int64_t>& value, std::string_view what);

/// The value of a string attribute, variable- or fixed-length (fixed: up to the first NUL, at
/// most 16 MiB); every call checked, failures thrown with `code`.
std::string read_string(const Handle& attribute, std::string_view what, Exit code);

/// Paths of the datasets in `file`, in name order: those at the root (their names), or with
/// `recursive` every dataset of the tree (paths such as "model/layers/0/weight"). Links to
/// groups and other objects are passed over.
std::vector<std::string> dataset_paths(hid_t file, bool recursive, std::string_view what, Exit code);

// ---- reading -----------------------------------------------------------------------------------
// Every call below checks HDF5's return values; failures throw Error(code, "<what>: <HDF5's
// description>").

/// Whether `path` is an HDF5 file (no also when it cannot be read).
bool is_hdf5(const std::string& path);
/// Opens an existing file read-only.
Handle open_file(const std::string& path, std::string_view what, Exit code);
/// Whether the link `path` ("a/b/c") exists, each component in turn (as H5Lexists requires); a
/// failure reads as no.
bool link_exists(hid_t file, const std::string& path);
/// Whether object `obj` has attribute `name`; a failure reads as no.
bool attribute_exists(hid_t file, const std::string& obj, const std::string& name);
Handle open_attribute(hid_t file, const std::string& obj, const std::string& name, std::string_view what, Exit code);
Handle open_dataset(hid_t file, const std::string& path, std::string_view what, Exit code);

/// What an attribute or a dataset holds.
struct Shape {
  H5T_class_t type_class = H5T_NO_CLASS;
  std::size_t element_bytes = 0;
  std::vector<hsize_t> dims;  ///< empty for a scalar
  /// Elements (1 for a scalar).
  hsize_t points() const;
};
Shape attribute_shape(const Handle& attribute, std::string_view what, Exit code);
Shape dataset_shape(const Handle& dataset, std::string_view what, Exit code);
/// The dataset's type as stored in the file (reading with it copies the stored bytes unconverted).
Handle stored_type(const Handle& dataset, std::string_view what, Exit code);
/// How a dataset is stored: "contiguous", "chunked" or "compact", then its filters (", gzip", ...).
std::string dataset_storage(const Handle& dataset, std::string_view what, Exit code);
/// Rows per chunk of a chunked dataset (its first dimension's chunk size); 0 when not chunked.
hsize_t chunk_rows(const Handle& dataset, std::string_view what, Exit code);

/// Reads a whole attribute or dataset into `out` (shape.points() elements), converted by HDF5 to
/// `mem_type`.
void read_attribute(const Handle& attribute, hid_t mem_type, void* out, std::string_view what, Exit code);
void read_dataset(const Handle& dataset, hid_t mem_type, void* out, std::string_view what, Exit code);
/// Reads rows [first, first + count) of a dataset of shape (N, cols) or (N,) (cols = 1), in one
/// hyperslab, into a row-major array of `width` columns starting at column `offset`.
void read_rows(const Handle& dataset, hid_t mem_type, hsize_t first, hsize_t count, hsize_t cols, void* out,
               hsize_t width, hsize_t offset, std::string_view what, Exit code);

// ---- writing (exit 1 on failure) ---------------------------------------------------------------

/// Creates group `path` and any missing groups above it.
void create_group(hid_t file, const std::string& path, std::string_view what);
/// Creates dataset `path` (and any missing groups above it) of `dims` and `file_type`, and writes
/// `data`, held as `mem_type`.
void write_dataset(hid_t file, const std::string& path, const std::vector<hsize_t>& dims, hid_t file_type,
                   hid_t mem_type, const void* data, std::string_view what);

}  // namespace mdn::h5

namespace mdn {

/// Stages of write_file_atomically, for test-only fault injection.
enum class WriteStage { created = 1, half_written = 2, before_fsync = 3, before_rename = 4 };

/// Writes `bytes` to `path` atomically: to "<dir>/.<name>.tmp" (created exclusively), fsync,
/// rename over `path`, fsync of the directory. A crash at any moment leaves the previous file
/// intact. Throws mdn::Error (exit 1) naming the file and the system's reason, after removing the
/// temporary. `stage_hook` (may be empty) is called at each stage.
void write_file_atomically(const std::string& path, const std::string& bytes,
                           const std::function<void(WriteStage)>& stage_hook = {});

/// The temporary name write_file_atomically uses for `path`.
std::string temporary_name(const std::string& path);

}  // namespace mdn


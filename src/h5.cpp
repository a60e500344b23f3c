#include "mdn/h5.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace mdn::h5 {

void quiet() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

namespace {

struct Frame {
  std::string desc;
  std::string minor;
};

herr_t collect(unsigned, const H5E_error2_t* e, void* out) {
  auto* frames = static_cast<std::vector<Frame>*>(out);
  Frame f;
  if (e->desc != nullptr) f.desc = e->desc;
  char text[256];
  H5E_type_t type;
  const ssize_t n = H5Eget_msg(e->min_num, &type, text, sizeof text);
  if (n > 0) f.minor.assign(text, static_cast<std::size_t>(std::min<ssize_t>(n, sizeof text - 1)));
  frames->push_back(std::move(f));
  return 0;
}

}  // namespace

std::string take_error_stack() {
  const hid_t stack = H5Eget_current_stack();  // copies and clears the current stack
  if (stack < 0) return {};
  std::vector<Frame> frames;
  H5Ewalk2(stack, H5E_WALK_DOWNWARD, collect, &frames);
  H5Eclose_stack(stack);
  if (frames.empty()) return {};
  // Downward walk: the API call first, the innermost failure last.
  const Frame& inner = frames.back();
  std::string text = inner.desc;
  if (!inner.minor.empty() && inner.desc.find(inner.minor) == std::string::npos)
    text += text.empty() ? inner.minor : " (" + inner.minor + ")";
  return text;
}

void fail(std::string_view what, Exit code) {
  const std::string detail = take_error_stack();
  if (detail.empty()) throw Error(code, std::string(what));
  throw Error(code, fmt::format("{}: {}", what, detail));
}

Handle create_in_memory(const std::string& name) {
  quiet();
  const Handle fapl = checked(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate");
  check(H5Pset_fapl_core(fapl.get(), 1 << 20, 0), "H5Pset_fapl_core");
  return checked(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                 fmt::format("creating '{}' in memory", name));
}

std::string file_image(const Handle& file, std::string_view what) {
  check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), what);
  const ssize_t size = check(H5Fget_file_image(file.get(), nullptr, 0), what);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  check(H5Fget_file_image(file.get(), bytes.data(), bytes.size()), what);
  return bytes;
}

namespace {

Handle string_type(std::string_view what) {
  Handle type = checked(H5Tcopy(H5T_C_S1), what);
  check(H5Tset_size(type.get(), H5T_VARIABLE), what);
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), what);
  return type;
}

/// Creates attribute `name` on `obj` with a file type and a dataspace, and writes `data` of
/// memory type `mem_type`.
void put_attribute(hid_t file, const std::string& obj, const std::string& name, hid_t file_type, const Handle& space,
                   hid_t mem_type, const void* data, std::string_view what) {
  const Handle a = checked(H5Acreate_by_name(file, obj.c_str(), name.c_str(), file_type, space.get(), H5P_DEFAULT,
                                             H5P_DEFAULT, H5P_DEFAULT),
                           what);
  check(H5Awrite(a.get(), mem_type, data), what);
}

}  // namespace

void write_attribute(hid_t file, const std::string& obj, const std::string& name, const std::string& value,
                     std::string_view what) {
  const Handle type = string_type(what);
  const char* p = value.c_str();
  put_attribute(file, obj, name, type.get(), checked(H5Screate(H5S_SCALAR), what), type.get(), &p, what);
}

void write_attribute(hid_t file, const std::string& obj, const std::string& name, std::int64_t value,
                     std::string_view what) {
  put_attribute(file, obj, name, H5T_STD_I64LE, checked(H5Screate(H5S_SCALAR), what), H5T_NATIVE_INT64, &value, what);
}

void write_attribute(hid_t file, const std::string& obj, const std::string& name, double value,
                     std::string_view what) {
  put_attribute(file, obj, name, H5T_IEEE_F64LE, checked(H5Screate(H5S_SCALAR), what), H5T_NATIVE_DOUBLE, &value,
                what);
}

void write_attribute(hid_t file, const std::string& obj, const std::string& name,
                     const std::vector<std::int64_t>& value, std::string_view what) {
  const hsize_t n = value.size();
  const std::int64_t none = 0;  // HDF5 refuses a null buffer even for no elements
  put_attribute(file, obj, name, H5T_STD_I64LE, checked(H5Screate_simple(1, &n, nullptr), what), H5T_NATIVE_INT64,
                value.empty() ? &none : value.data(), what);
}

std::string read_string(const Handle& attribute, std::string_view what, Exit code) {
  const Handle type = checked(H5Aget_type(attribute.get()), what, code);
  if (check(H5Tis_variable_str(type.get()), what, code) > 0) {
    const Handle mem = checked(H5Tcopy(H5T_C_S1), what, code);
    check(H5Tset_size(mem.get(), H5T_VARIABLE), what, code);
    check(H5Tset_cset(mem.get(), check(H5Tget_cset(type.get()), what, code)), what, code);
    char* p = nullptr;
    check(H5Aread(attribute.get(), mem.get(), &p), what, code);
    if (p == nullptr) fail(what, code);
    std::string v(p);
    const Handle space = checked(H5Aget_space(attribute.get()), what, code);
    check(H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, &p), what, code);
    return v;
  }
  const std::size_t n = H5Tget_size(type.get());
  if (n == 0 || n > (1u << 24)) throw Error(code, fmt::format("{}: implausible string size {}", what, n));
  std::string v(n, '\0');
  check(H5Aread(attribute.get(), type.get(), v.data()), what, code);
  return v.substr(0, v.find('\0'));
}

std::vector<std::string> dataset_paths(hid_t file, bool recursive, std::string_view what, Exit code) {
  std::vector<std::string> paths;
  // H5L_info_t, H5Literate and H5Lvisit map to the library's default API version (1.10 or later).
  // Whether a link is a dataset is asked by opening it as one: its failure for a group or a
  // dangling link is the answer, not an error (H5Oget_info's signature changes between HDF5
  // versions); the error stack it leaves is cleared.
  auto visit = [](hid_t group, const char* name, const H5L_info_t*, void* out) -> herr_t {
    const hid_t ds = H5Dopen2(group, name, H5P_DEFAULT);
    if (ds >= 0) {
      static_cast<std::vector<std::string>*>(out)->push_back(name);
      if (H5Dclose(ds) < 0) return -1;
    }
    return 0;
  };
  if (recursive) check(H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, visit, &paths), what, code);
  else check(H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, nullptr, visit, &paths), what, code);
  take_error_stack();
  return paths;
}

// ---- reading -----------------------------------------------------------------------------------

bool is_hdf5(const std::string& path) {
  quiet();
  const htri_t r = H5Fis_hdf5(path.c_str());
  take_error_stack();
  return r > 0;
}

Handle open_file(const std::string& path, std::string_view what, Exit code) {
  quiet();
  return checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), what, code);
}

bool link_exists(hid_t file, const std::string& path) {
  for (std::size_t pos = 0;;) {
    pos = path.find('/', pos + 1);
    const htri_t e = H5Lexists(file, path.substr(0, pos).c_str(), H5P_DEFAULT);
    take_error_stack();
    if (e <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

bool attribute_exists(hid_t file, const std::string& obj, const std::string& name) {
  const htri_t e = H5Aexists_by_name(file, obj.c_str(), name.c_str(), H5P_DEFAULT);
  take_error_stack();
  return e > 0;
}

Handle open_attribute(hid_t file, const std::string& obj, const std::string& name, std::string_view what, Exit code) {
  return checked(H5Aopen_by_name(file, obj.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), what, code);
}

Handle open_dataset(hid_t file, const std::string& path, std::string_view what, Exit code) {
  return checked(H5Dopen2(file, path.c_str(), H5P_DEFAULT), what, code);
}

hsize_t Shape::points() const {
  hsize_t n = 1;
  for (hsize_t d : dims) n *= d;
  return n;
}

namespace {

Shape shape_of(const Handle& type, const Handle& space, std::string_view what, Exit code) {
  Shape s;
  s.type_class = check(H5Tget_class(type.get()), what, code);
  s.element_bytes = H5Tget_size(type.get());
  if (s.element_bytes == 0) fail(what, code);
  const int rank = check(H5Sget_simple_extent_ndims(space.get()), what, code);
  s.dims.resize(static_cast<std::size_t>(rank));
  if (rank > 0) check(H5Sget_simple_extent_dims(space.get(), s.dims.data(), nullptr), what, code);
  return s;
}

}  // namespace

Shape attribute_shape(const Handle& attribute, std::string_view what, Exit code) {
  const Handle type = checked(H5Aget_type(attribute.get()), what, code);
  const Handle space = checked(H5Aget_space(attribute.get()), what, code);
  return shape_of(type, space, what, code);
}

Shape dataset_shape(const Handle& dataset, std::string_view what, Exit code) {
  const Handle type = checked(H5Dget_type(dataset.get()), what, code);
  const Handle space = checked(H5Dget_space(dataset.get()), what, code);
  return shape_of(type, space, what, code);
}

Handle stored_type(const Handle& dataset, std::string_view what, Exit code) {
  return checked(H5Dget_type(dataset.get()), what, code);
}

std::string dataset_storage(const Handle& dataset, std::string_view what, Exit code) {
  const Handle dcpl = checked(H5Dget_create_plist(dataset.get()), what, code);
  const H5D_layout_t layout = check(H5Pget_layout(dcpl.get()), what, code);
  std::string storage = layout == H5D_CHUNKED ? "chunked" : layout == H5D_COMPACT ? "compact" : "contiguous";
  const int filters = check(H5Pget_nfilters(dcpl.get()), what, code);
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0;
    std::size_t nelmts = 0;
    char name[64] = {0};
    const H5Z_filter_t f = check(H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nelmts, nullptr,
                                                sizeof name, name, nullptr),
                                 what, code);
    storage += f == H5Z_FILTER_DEFLATE ? ", gzip" : fmt::format(", {}", name[0] ? name : "filter");
  }
  return storage;
}

hsize_t chunk_rows(const Handle& dataset, std::string_view what, Exit code) {
  const Handle dcpl = checked(H5Dget_create_plist(dataset.get()), what, code);
  if (check(H5Pget_layout(dcpl.get()), what, code) != H5D_CHUNKED) return 0;
  hsize_t dims[H5S_MAX_RANK] = {0};
  check(H5Pget_chunk(dcpl.get(), H5S_MAX_RANK, dims), what, code);
  return dims[0];
}

void read_attribute(const Handle& attribute, hid_t mem_type, void* out, std::string_view what, Exit code) {
  check(H5Aread(attribute.get(), mem_type, out), what, code);
}

void read_dataset(const Handle& dataset, hid_t mem_type, void* out, std::string_view what, Exit code) {
  check(H5Dread(dataset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), what, code);
}

void read_rows(const Handle& dataset, hid_t mem_type, hsize_t first, hsize_t count, hsize_t cols, void* out,
               hsize_t width, hsize_t offset, std::string_view what, Exit code) {
  const Handle fspace = checked(H5Dget_space(dataset.get()), what, code);
  // For a (N,) dataset HDF5 reads the first entry of start and count only.
  const hsize_t start[2] = {first, 0};
  const hsize_t counts[2] = {count, cols};
  check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, counts, nullptr), what, code);
  // Row-major (count, width) in memory is column-major (width, count): a sample per column.
  const hsize_t mdims[2] = {count, width};
  const Handle mspace = checked(H5Screate_simple(2, mdims, nullptr), what, code);
  const hsize_t mstart[2] = {0, offset};
  check(H5Sselect_hyperslab(mspace.get(), H5S_SELECT_SET, mstart, nullptr, counts, nullptr), what, code);
  check(H5Dread(dataset.get(), mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, out), what, code);
}

// ---- writing ------------------------------------------------------------------------------------

namespace {

Handle intermediate_groups(std::string_view what) {
  Handle lcpl = checked(H5Pcreate(H5P_LINK_CREATE), what);
  check(H5Pset_create_intermediate_group(lcpl.get(), 1), what);
  return lcpl;
}

}  // namespace

void create_group(hid_t file, const std::string& path, std::string_view what) {
  const Handle lcpl = intermediate_groups(what);
  checked(H5Gcreate2(file, path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), what);
}

void write_dataset(hid_t file, const std::string& path, const std::vector<hsize_t>& dims, hid_t file_type,
                   hid_t mem_type, const void* data, std::string_view what) {
  const Handle lcpl = intermediate_groups(what);
  const Handle space = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), what);
  const Handle ds = checked(H5Dcreate2(file, path.c_str(), file_type, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), what);
  check(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), what);
}

void Handle::close(std::string_view what, Exit code) {
  if (!valid()) return;
  const hid_t id = std::exchange(id_, H5I_INVALID_HID);
  check(H5Idec_ref(id), what, code);
}

void Handle::reset() noexcept {
  if (valid()) H5Idec_ref(id_);
  id_ = H5I_INVALID_HID;
}

}  // namespace mdn::h5

namespace mdn {

namespace {

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw run_error("{} '{}': {}", what, path, std::strerror(errno));
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) io_error("cannot open to sync", path);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  errno = err;
  if (rc != 0) io_error("fsync failed for", path);
}

}  // namespace

std::string temporary_name(const std::string& path) {
  const std::filesystem::path p(path);
  return (p.parent_path() / ("." + p.filename().string() + ".tmp")).string();
}

void write_file_atomically(const std::string& path, const std::string& bytes,
                           const std::function<void(WriteStage)>& stage_hook) {
  const std::string tmp = temporary_name(path);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path().empty()
                                        ? std::filesystem::path(".")
                                        : std::filesystem::path(path).parent_path();
  auto stage = [&](WriteStage s) {
    if (stage_hook) stage_hook(s);
  };
  int fd = -1;
  try {
    ::unlink(tmp.c_str());  // a stale temporary from a crash
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) io_error("cannot create", tmp);
    stage(WriteStage::created);
    auto write_all = [&](const char* data, std::size_t n) {
      for (std::size_t done = 0; done < n;) {
        const ssize_t w = ::write(fd, data + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) io_error("cannot write", tmp);
        done += static_cast<std::size_t>(w);
      }
    };
    // In two halves, with a stage between them for fault injection.
    write_all(bytes.data(), bytes.size() / 2);
    stage(WriteStage::half_written);
    write_all(bytes.data() + bytes.size() / 2, bytes.size() - bytes.size() / 2);
    stage(WriteStage::before_fsync);
    if (::fsync(fd) != 0) io_error("fsync failed for", tmp);
    const int rc = ::close(fd);
    fd = -1;
    if (rc != 0) io_error("cannot close", tmp);
    stage(WriteStage::before_rename);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) io_error("cannot rename the temporary to", path);
    fsync_path(dir.string(), true);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
}

}  // namespace mdn

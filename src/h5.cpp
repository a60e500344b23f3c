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

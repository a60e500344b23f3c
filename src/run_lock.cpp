#include "mdn/run_lock.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "mdn/error.hpp"

namespace mdn {

namespace {

std::string lock_path(const std::string& dir) { return (std::filesystem::path(dir) / "mdn.lock").string(); }

/// A write lock on the whole file.
struct flock whole_file() {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  fl.l_pid = 0;  // must be 0 for open-file-description locks
  return fl;
}

/// The description a holder wrote (its first line), or a placeholder.
std::string read_description(int fd) {
  char buf[512];
  const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  std::string s = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  if (const auto eol = s.find('\n'); eol != std::string::npos) s.resize(eol);
  return s.empty() ? std::string("a process that has not described itself yet") : s;
}

std::string describe_self() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
  std::string s = fmt::format("mdn train on host {}, process {}", host, static_cast<long>(getpid()));
  if (const char* job = std::getenv("SLURM_JOB_ID"); job != nullptr && *job != '\0') s += fmt::format(", SLURM job {}", job);
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return s + ", since " + when;
}

}  // namespace

RunLock::RunLock(const std::string& dir, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::path d = fs::absolute(dir, ec).lexically_normal(); !d.empty() && !fs::exists(d, ec); d = d.parent_path()) {
    dirs_.push_back(d.string());
    if (d == d.parent_path()) break;
  }
  fs::create_directories(dir, ec);
  if (ec) throw input_error("{}: cannot create '{}': {}", what, dir, ec.message());
  const std::string path = lock_path(dir);
  fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0 && errno == ENOENT) {
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ >= 0) file_ = path;
    else if (errno == EEXIST) fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);  // created meanwhile by another
  }
  if (fd_ < 0) throw input_error("{}: cannot open '{}': {}", what, path, std::strerror(errno));
  struct flock fl = whole_file();
  if (fcntl(fd_, F_OFD_SETLK, &fl) == 0) {
    const std::string text = describe_self() + "\n";
    // Informational only: a failed write leaves the lock held and the description short.
    if (ftruncate(fd_, 0) == 0) {
      [[maybe_unused]] const ssize_t written = pwrite(fd_, text.data(), text.size(), 0);
    }
    return;
  }
  const int err = errno;
  if (err == EAGAIN || err == EACCES) {
    const std::string holder = read_description(fd_);
    close(fd_);
    fd_ = -1;
    throw input_error("{}: '{}' is in use by another training ({}); wait until it ends, or train in another "
                      "run directory",
                      what, dir, holder);
  }
  // ENOLCK, ENOSYS, EOPNOTSUPP, EINVAL: a filesystem (or kernel) without such locks.
  warning_ = fmt::format("{}: the filesystem of '{}' refuses file locks ({}): nothing keeps a second mdn train out "
                         "of this run directory; start one training per run directory (on Lustre, mount with "
                         "-o flock)",
                         what, dir, std::strerror(err));
  close(fd_);
  fd_ = -1;
}

void RunLock::remove_created() {
  // Unlinking a file this process holds the lock of is safe: a process that opened it before
  // finds it locked until this one exits; one that opens the path afterwards creates a new file.
  if (!file_.empty()) unlink(file_.c_str());
  for (const std::string& d : dirs_) rmdir(d.c_str());  // innermost first; only empty ones go
  file_.clear();
  dirs_.clear();
}

RunLock::~RunLock() {
  if (fd_ >= 0) close(fd_);  // releases the lock
}

std::optional<std::string> RunLock::holder(const std::string& dir) {
  const int fd = open(lock_path(dir).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct flock fl = whole_file();
  std::optional<std::string> out;
  if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) out = read_description(fd);
  close(fd);
  return out;
}

}  // namespace mdn

// One run per run directory: `mdn train` holds a lock in <run.dir> for its whole life.
//
// Two trainings writing into one run directory would interleave their checkpoints and metrics
// (a requeued job overlapping its predecessor, a resubmission with another --set). Rank 0 takes
// an exclusive lock on <run.dir>/mdn.lock after the config and data are validated and before the
// resume decision; a second `mdn train` finds it held and exits with code 2, naming the holder.
//
// The lock is an open-file-description lock (fcntl F_OFD_SETLK, a write lock on the whole file):
// it belongs to the open file, not to a path or a PID written somewhere, so it ends with the
// process however the process ends (kill -9 included), and a crashed holder never blocks a new
// run on a local filesystem. The file itself stays (removing it would race with a process that
// has it open); it holds the last holder's description: host, process, SLURM job, since when.
//
// Network filesystems: on NFS the lock is a POSIX byte-range lock, seen by every client and the
// server (NLM or NFSv4; a client that dies without releasing it holds it until the server's lease
// expires, about 90 s on NFSv4). Lustre honours it across nodes when mounted with `-o flock`,
// on one node only with `-o localflock`, and refuses it otherwise (`noflock`, the default on some
// sites). Where the filesystem refuses locks, the run goes on with one warning: nothing then
// keeps a second run out of the directory.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace mdn {

class RunLock {
 public:
  /// Takes the lock on <dir>/mdn.lock (creating dir and the file), or throws input_error naming
  /// the holder when another process holds it (`what`: how the message names the directory, e.g.
  /// "run.dir"). Where the filesystem refuses locks: a lock that holds nothing, and `warning`
  /// says why.
  RunLock(const std::string& dir, const std::string& what);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  /// Empty, or why the directory is not protected (the filesystem refused the lock).
  const std::string& warning() const { return warning_; }

  /// Removes what taking the lock created — the lock file, and the directories made for it — for a
  /// training that ends on an input error before it writes anything: bad input leaves the run
  /// directory as it was. The lock itself is released by the destructor.
  void remove_created();

  /// Without writing anything: the holder's description when some process holds the lock of
  /// `dir`, nothing when none does (or there is no lock file, or locks cannot be asked about).
  static std::optional<std::string> holder(const std::string& dir);

 private:
  int fd_ = -1;
  std::string warning_;
  std::string file_;               // the lock file, when this lock created it
  std::vector<std::string> dirs_;  // the directories it created, innermost first
};

}  // namespace mdn

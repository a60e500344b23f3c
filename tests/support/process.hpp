// Runs real processes from tests: the mdn binary, alone or under mpiexec, with a deadline.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mdn::test {

struct RunResult {
  int exit_code = -1;     ///< exit status, or -1 when killed by a signal
  int signal = 0;         ///< the signal that ended the process, if any
  bool timed_out = false; ///< killed (with its process group) at the deadline
  std::string out;        ///< standard output
  std::string err;        ///< standard error
  std::string all() const { return out + err; }
};

struct RunOptions {
  double timeout_seconds = 60;
  std::map<std::string, std::string> env;  ///< added to (or replacing in) the environment
  std::string cwd;                          ///< working directory; empty: the test's
};

/// Runs argv[0] (searched on PATH) with stdin closed; collects stdout and stderr.
RunResult run(const std::vector<std::string>& argv, const RunOptions& options = {});

/// A process running in the background (its own process group), for tests that act on it while
/// it runs (signals). Its output goes to files; the destructor kills what is left of it.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const RunOptions& options, const std::string& log_prefix);
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  int pid() const { return pid_; }
  /// Waits up to the options' timeout from the start; kills the group on timeout.
  RunResult wait();

 private:
  int pid_ = -1;
  std::string out_path_, err_path_;
  double timeout_;
  double started_;
  bool done_ = false;
};

/// PIDs of processes whose command line contains `marker` and whose environment holds
/// `key=value` (e.g. OMPI_COMM_WORLD_RANK=1).
std::vector<int> find_processes(const std::string& marker, const std::string& key_value);

/// Polls `predicate` every 20 ms for up to `seconds`; returns whether it became true.
bool eventually(const std::function<bool()>& predicate, double seconds);

/// The built mdn executable.
std::string mdn_binary();

/// Root ignores file permissions, so permission tests run mdn as the user `nobody`.
/// as_nobody(): the `setpriv` prefix that runs a command as that user (throws when there is none).
std::vector<std::string> as_nobody();
/// Chowns `path` to nobody.
void give_to_nobody(const std::string& path);
/// A copy of the mdn executable in `dir` that nobody can run: the build tree may sit where that
/// user cannot reach it (a clone under /root, mode 700).
std::string mdn_binary_for_nobody(const std::string& dir);

/// The environment variable that holds a process's rank under the build's mpiexec
/// (OMPI_COMM_WORLD_RANK for OpenMPI, PMI_RANK for MPICH's Hydra).
const char* rank_variable();

/// `mpiexec -n np <pre-flags>` as configured by the build.
std::vector<std::string> mpi_launch(int np);

/// mpi_launch(np), telling mpiexec not to kill the other ranks when one exits with a non-zero
/// code, so that a test can see every rank's own exit code.
std::vector<std::string> mpi_launch_keep_going(int np);

/// mpi_launch(np) + {mdn_binary()} + args; np == 0 runs mdn without mpiexec.
std::vector<std::string> mdn_command(int np, const std::vector<std::string>& args);

/// A run of mdn on np ranks in which every rank records its own exit code.
struct RankedRun {
  RunResult result;
  std::vector<std::string> codes;  ///< exit code of each rank, as it wrote it ("" if it did not)
};

/// Runs `mdn args...` on np ranks with cwd `dir` (mpiexec keeps going when a rank fails, so that
/// every rank's exit code is seen; keep_going = false: the launcher's own behaviour, which ends
/// the job when a rank aborts — MPICH's Hydra kills no rank on MPI_Abort while it keeps going).
RankedRun run_mdn_ranks(const std::string& dir, int np, const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& env = {}, double timeout = 120,
                        bool keep_going = true);

/// An MPMD job of one rank per launcher: rank r runs `launchers[r] + {mdn} + args` (a launcher
/// such as {"qemu-x86_64", "-cpu", "Nehalem"} runs its rank on an emulated CPU; {} natively),
/// every rank recording its exit code, with cwd `dir`.
RankedRun run_mdn_ranks_on(const std::string& dir, const std::vector<std::vector<std::string>>& launchers,
                           const std::vector<std::string>& args, double timeout = 120);

/// Every file and directory under `dir` with its size, sorted: compare two to see a change.
std::vector<std::string> dir_listing(const std::string& dir);

/// Number of non-overlapping occurrences of needle in haystack.
int count(const std::string& haystack, const std::string& needle);

/// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace mdn::test

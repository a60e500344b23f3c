// Comm over MPI.
#pragma once

#include <mpi.h>

#include <chrono>
#include <thread>

#include "mdn/comm.hpp"

namespace mdn {

/// Throws mdn::Error (exit 1) naming the call and MPI's error string when rc is not MPI_SUCCESS.
void check_mpi(int rc, const char* call);

/// A duplicate of an MPI communicator with MPI_ERRORS_RETURN, so that every failure comes back
/// as a return code that check_mpi turns into an mdn::Error instead of aborting the job.
///
/// Every collective is started non-blocking and completed by polling against a deadline (the
/// stall watchdog): when a collective makes no progress for the timeout, the rank reports the
/// step and phase it waits in and aborts the job, instead of hanging forever.
class MpiComm final : public Comm {
 public:
  /// After the watchdog's MPI_Abort, a process that is still alive this much later exits by
  /// itself (exit code 1): the launcher it asked to end the job is unreachable or hangs.
  static constexpr int kAbortGraceSeconds = 10;
  /// Requires MPI to be initialised; duplicates `parent` (collective over it).
  explicit MpiComm(MPI_Comm parent);
  /// Frees the duplicate (unless MPI is already finalized). Never finalizes MPI.
  ~MpiComm() override;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void barrier() override;
  void exchange_bytes(const char* send, const std::vector<std::size_t>& offsets, std::vector<char>& recv,
                      std::vector<std::size_t>& recv_offsets) override;
  std::vector<char> gather(const void* data, std::size_t bytes, int root = 0) override;
  void set_phase(const char* what, std::int64_t step = -1) override {
    phase_ = what;
    phase_step_ = step;
  }
  void set_timeout(double seconds) override { timeout_ = seconds; }
  MPI_Comm handle() const { return comm_; }
  /// The exact reduction's integer sum: through a shared-memory window per node (comm.cpp,
  /// SharedSum) unless options say otherwise, there is one rank per node, or some rank cannot
  /// allocate the window.
  std::unique_ptr<IntegerSum> integer_sum(const IntegerSumSpec& spec, const IntegerSumOptions& options = {}) override;
  /// Completes `request` (started by `call`, on this or a derived communicator), polling against
  /// the deadline: past it, reports the step and phase and aborts the job.
  void wait(MPI_Request& request, const char* call);
  /// Completes n requests started by `call`, against the same deadline.
  void wait_all(MPI_Request* requests, int n, const char* call);
  /// Polls `done` until it returns true, against the same deadline (the shared-memory barrier):
  /// spins for the first millisecond, then yields the core between polls.
  template <class Done>
  void poll(Done&& done, const char* call) {
    const auto start = std::chrono::steady_clock::now();
    for (long spins = 0;; ++spins) {
      if (done()) return;
      if (spins % 1024 != 1023) continue;  // the clock only now and then
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > 1e-3) std::this_thread::sleep_for(std::chrono::microseconds(100));
      else std::this_thread::yield();  // another process may need this core (more ranks than cores)
      if (timeout_ > 0 && waited > timeout_) stalled(call);
    }
  }

 protected:
  void allreduce_raw(void* data, std::size_t n, DType type, ReduceOp op) override;
  void broadcast_raw(void* data, std::size_t bytes, int root) override;

 private:
  /// Reports that `call` made no progress for the timeout, with the step and phase, and aborts.
  [[noreturn]] void stalled(const char* call);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  const char* phase_ = "startup";
  std::int64_t phase_step_ = -1;
  double timeout_ = 0;
};

}  // namespace mdn

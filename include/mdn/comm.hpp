// The communicator the rest of mdn talks to.
//
// Model, mixture, optimizer and most of the trainer are written against this interface and
// tested as plain single-process GoogleTest binaries with SelfComm; MpiComm (mpi_comm.hpp) runs
// them across MPI ranks. There is no global communicator: each command builds one and passes it
// down.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace mdn {

enum class DType { i32, i64, u64, f32, f64 };
enum class ReduceOp { sum, max, min };

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, std::int32_t>) return DType::i32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DType::i64;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return DType::u64;
  else if constexpr (std::is_same_v<T, float>) return DType::f32;
  else {
    static_assert(std::is_same_v<T, double>, "unsupported element type for a collective");
    return DType::f64;
  }
}

/// What a rank does with the sums of the units it owns (IntegerSum::sum): the units' results go
/// to IntegerSum::results(), which every rank reads once sum() has returned.
class SumFinisher {
 public:
  virtual ~SumFinisher() = default;
  /// The sums of units [first, last) are complete (sums[i] for i in units[first] .. units[last]).
  virtual void finish(const std::int64_t* sums, std::size_t first, std::size_t last) = 0;
  /// The float terms' way (IntegerSumSpec::terms): writes the integer sums of units [first, last)
  /// (below term_elements) from `count` float terms, the node's ranks' together, exactly as the
  /// ranks would have turned them into their values one by one and added those.
  virtual void quantize(const float* const* terms, int count, std::size_t first, std::size_t last,
                        std::int64_t* sums) = 0;
};

/// The elements of an integer sum, in units (boundaries 0 = units[0] < ... < units[U] = n: the
/// work after the sum is shared out in whole units), and the bytes of the units' results.
struct IntegerSumSpec {
  std::size_t n = 0;
  std::vector<std::size_t> units;  ///< empty: units of 2048 elements
  std::size_t result_bytes = 0;
  /// Where each unit's results lie: in every region r, unit u's are bytes [r[u], r[u + 1]) of
  /// results() (U + 1 offsets each). Given, ranks that hold no common memory exchange the
  /// results of the units they finished instead of the integer sums (fewer bytes: see sum());
  /// empty, they allreduce the integers and each finishes its own copy.
  std::vector<std::vector<std::size_t>> result_regions;
  /// Up to 2 float terms per rank for elements [0, term_elements) (a unit boundary), instead of
  /// their integers in values(), where the route can take them (IntegerSum::term): on a node, the
  /// owner of a unit turns every rank's terms into integers itself (SumFinisher::quantize). It
  /// reads 4 bytes a term where it read 8 an integer, and no rank writes integers first; with
  /// more terms it would read more than the integers. Taken only where every rank gives terms
  /// (their number may differ).
  int terms = 0;
  std::size_t term_elements = 0;
};

/// n int64 values per rank, summed over all ranks in place: the exact reduction's integer sum.
/// Integer addition is associative, so the route does not change the result: ranks on one node
/// add through memory they share (MpiComm), nodes through MPI, and anything else through one
/// allreduce.
class IntegerSum {
 public:
  virtual ~IntegerSum() = default;
  std::size_t size() const { return n_; }
  /// Where this rank writes its n values; what they hold after sum() is unspecified.
  std::int64_t* values() { return values_; }
  /// Where this rank writes float term k (k < spec.terms) of elements [0, spec.term_elements),
  /// which its values() then do not hold; nullptr where this route takes the integers only. Its
  /// bytes are the rank's own until sum() and after it, like values().
  float* term(int k) { return k < static_cast<int>(terms_.size()) ? terms_[static_cast<std::size_t>(k)] : nullptr; }
  /// Collective: adds every rank's values; then, when `finisher` is given, each rank finishes the
  /// units it owns (every unit is finished by one rank), and the call returns once all have.
  /// Returns the element-wise sums; they and results() are valid until this rank calls sum()
  /// again. Allocates nothing.
  ///
  /// `wire_bytes` (1..8): every partial sum of the values (any subset of the ranks') fits in that
  /// many bytes of two's complement, so that between nodes they travel in that width. With a
  /// finisher and result regions, nodes send each other the integers once (a reduce-scatter in a
  /// ring) and then the finished results: the returned sums are then complete only in the units
  /// this rank finished; without, they are complete everywhere.
  ///
  /// `terms`: how many of term(0), term(1) this rank wrote this time (0 when it has nothing to
  /// add); with terms, a finisher is required.
  virtual const std::int64_t* sum(SumFinisher* finisher = nullptr, int wire_bytes = 8, int terms = 0) = 0;
  /// The units' results (result_bytes, 8-byte aligned), written by the finishers.
  void* results() { return results_; }
  /// How the values travel, for the start message and metrics.jsonl.
  virtual std::string route() const = 0;

 protected:
  std::int64_t* values_ = nullptr;
  void* results_ = nullptr;
  std::size_t n_ = 0;
  std::vector<std::size_t> units_;
  std::vector<float*> terms_;  // empty: the integers only
};

struct IntegerSumOptions {
  /// Ranks that share a node add through a shared-memory window (MpiComm); false: one MPI
  /// allreduce over all ranks.
  bool shared_memory = true;
  /// Ranks with the same value share one segment (e.g. one per socket; they must be able to map
  /// the same /dev/shm). -1: the ranks that share memory (MPI_COMM_TYPE_SHARED). The tests use it
  /// to form several "nodes" on one machine.
  int node = -1;
};

class Comm {
 public:
  virtual ~Comm() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool is_root() const { return rank() == 0; }

  /// In-place element-wise reduction of n elements over all ranks.
  template <class T>
  void allreduce(T* data, std::size_t n, ReduceOp op) {
    allreduce_raw(data, n, dtype_of<T>(), op);
  }
  template <class T>
  T sum(T value) { allreduce(&value, 1, ReduceOp::sum); return value; }
  template <class T>
  T max(T value) { allreduce(&value, 1, ReduceOp::max); return value; }
  template <class T>
  T min(T value) { allreduce(&value, 1, ReduceOp::min); return value; }

  /// Root's n elements to every rank.
  template <class T>
  void broadcast(T* data, std::size_t n, int root = 0) {
    static_assert(std::is_trivially_copyable_v<T>);
    broadcast_raw(data, n * sizeof(T), root);
  }
  void broadcast(std::string& s, int root = 0);

  virtual void barrier() = 0;

  /// What the rank is doing, for the stall watchdog's message: a string with static storage
  /// (no allocation on the hot path) and the step (or -1).
  virtual void set_phase(const char* /*what*/, std::int64_t /*step*/ = -1) {}
  /// Collectives that make no progress for this long end the job with a clear error (MPI_Abort)
  /// naming the step and phase; <= 0: wait forever.
  virtual void set_timeout(double /*seconds*/) {}

  /// All-to-all of byte blocks of any size. This rank's block for rank t is bytes
  /// [offsets[t], offsets[t + 1]) of `send`; the blocks from all ranks arrive in `recv` (resized),
  /// rank s's at [recv_offsets[s], recv_offsets[s + 1]). Less than 2 GiB in all per call.
  /// Collective.
  virtual void exchange_bytes(const char* send, const std::vector<std::size_t>& offsets, std::vector<char>& recv,
                              std::vector<std::size_t>& recv_offsets) = 0;

  /// Concatenates every rank's bytes, in rank order, on `root` (empty elsewhere). Collective;
  /// any size.
  virtual std::vector<char> gather(const void* data, std::size_t bytes, int root = 0) = 0;

  /// A sum of spec.n int64 values per rank (above). Collective. This base version: one allreduce.
  virtual std::unique_ptr<IntegerSum> integer_sum(const IntegerSumSpec& spec, const IntegerSumOptions& options = {});

  /// Turns a failure on some ranks into the same mdn::Error on every rank.
  ///
  /// Collective. Each rank passes the exception it caught (or nullptr). When no rank failed this
  /// returns; otherwise every rank throws an Error with the exit code and message of the lowest
  /// failing rank, marked collective, so that rank 0 reports it once and every rank exits with
  /// the same code without MPI_Abort. Costs one integer allreduce when nothing failed.
  void settle(const std::exception_ptr& local);

  /// Runs f on this rank and settles its outcome: f's exception on any rank becomes an Error on
  /// every rank. f's work must not itself call collectives that a failing rank would skip.
  template <class F>
  void collectively(F&& f) {
    std::exception_ptr err;
    try {
      f();
    } catch (...) {
      err = std::current_exception();
    }
    settle(err);
  }

 protected:
  virtual void allreduce_raw(void* data, std::size_t n, DType type, ReduceOp op) = 0;
  virtual void broadcast_raw(void* data, std::size_t bytes, int root) = 0;
};

/// One process, no MPI: every collective is the identity.
class SelfComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void barrier() override {}
  void exchange_bytes(const char* send, const std::vector<std::size_t>& offsets, std::vector<char>& recv,
                      std::vector<std::size_t>& recv_offsets) override;
  std::vector<char> gather(const void* data, std::size_t bytes, int root = 0) override;

 protected:
  void allreduce_raw(void*, std::size_t, DType, ReduceOp) override {}
  void broadcast_raw(void*, std::size_t, int root) override;
};

}  // namespace mdn

// The step's gradient reduction: local micro-batch gradients in, the global mean gradient out,
// with the loss sum and row count in the same collective (README, "Exact reduction").
//
// exact (default): scheme (a) of the design. The step's micro-batch gradients are held until
// the per-slot maxima over all ranks are known (one small MPI_MAX that also carries the
// non-finite flag and the stop request); each micro-batch gradient is then quantised to int64
// with a power-of-two quantum per layout slot, summed as integers locally and with one MPI_SUM
// across ranks, and divided once by the global row count (a multiplication by quantum / rows).
// The integer sum goes through Comm::integer_sum: on one node, through shared memory. Integer sums are associative: the
// result is bit-identical for any number of ranks and any placement of the micro-batches.
//   Quantum of slot s: q_s = 2^(e_s + c - 62), where a_s < 2^e_s is the largest |element| of the
//   slot over the step's M micro-batches and 2^c >= M. Every quantised term is below 2^(62-c) in
//   magnitude, so the sum of M terms stays below 2^62: the bound is checked (by name) before
//   anything is summed, and nothing wraps. Error of the sum: at most M q_s / 2 <= M^2 a_s 2^-61,
//   i.e. within 2^-40 of the largest micro-batch gradient element for M <= 1448.
// fast: per-rank float sums of the micro-batch gradients, one float MPI_SUM; a NaN anywhere
// propagates to every rank through the sum.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/faults.hpp"
#include "mdn/reduction.hpp"
#include "mdn/kernels.hpp"
#include "mdn/model.hpp"

namespace mdn {

/// Requests that ride in the step's collective, so that all ranks act on them at the same step
/// boundary even when only one rank raised them.
struct StepFlags {
  bool stop = false;        ///< stop after this step (a signal arrived)
  bool checkpoint = false;  ///< checkpoint after this step (wall-clock schedule)
};

/// Exact mode: the bytes an integer of the step's sums takes between nodes, for M micro-batches
/// in the step: 6 up to M = 5, 7 up to 90, 8 beyond; enough that the sum is within 2^-40 of the
/// largest micro-batch gradient element (up to M = 1448, as with 8 bytes). The quanta follow it.
int exact_wire_bytes(Index micro_total);

class GradientReducer {
 public:
  /// max_local: the most micro-batches of one step a rank can hold; the quantisation runs in
  /// the kernels of `level`.
  /// `sum` says how the exact mode's integers travel (comm.shared_memory).
  GradientReducer(const Layout& layout, Reduction mode, Index max_local, Comm& comm, CpuLevel level,
                  const Faults& faults = Faults::none(), const IntegerSumOptions& sum = {});

  /// Where local micro-batch k's gradient (layout-sized, float) is to be written.
  float* gradient(Index k);
  /// Records local micro-batch k's summed loss and rows, after its gradient was written.
  void record(Index k, double loss_sum, Index rows);

  using Flags = StepFlags;

  struct Result {
    bool finite = true;     ///< every loss and gradient element of every rank was finite
    Flags flags;            ///< the OR over ranks of the requests
    double loss_sum = 0;    ///< summed NLL over the step's rows (normalised units)
    std::int64_t rows = 0;  ///< the step's rows over all ranks
    /// Sum of the squares of the mean gradient, from the pass that wrote it: per tensor (layout
    /// slot) in blocks of 256 summed in float, the blocks and the tensors in double, in order.
    double sum_squares = 0;
    /// Where the mean gradient is: the caller's buffer, or — exact mode on several ranks — the
    /// integer sum's results (on a node, memory its ranks share), valid until the next reduce.
    const float* mean = nullptr;
  };

  /// Reduces the n_local recorded micro-batches of step `step` (it has micro_total micro-batches
  /// and rows_total rows over all ranks) into the mean gradient = sum / rows: into `mean`, or
  /// where Result::mean says. Collective; throws mdn::Error on an accumulator overflow.
  Result reduce(Index n_local, Index micro_total, std::int64_t rows_total, float* mean, Flags flags = {},
                std::int64_t step = 0);

  /// Exact mode, for tests: the last step's dequantised sums before the division, formed again
  /// from every rank's held gradients (one int64 allreduce). Collective.
  std::vector<double> exact_sums();
  /// How the gradient sums travel between ranks (for the start message).
  std::string route() const;
  /// Seconds spent in collectives so far.
  double comm_seconds() const { return comm_seconds_; }

 private:
  Result reduce_exact(Index n_local, Index micro_total, std::int64_t rows_total, float* mean, Flags flags,
                      std::int64_t step);
  // reduce_exact's three parts.
  bool agree_maxima(Index n_local, Flags flags, Flags& agreed);  ///< false: non-finite on some rank
  void choose_quanta(Index micro_total, std::int64_t step);      ///< throws on an overflow
  void sum_and_divide(Index n_local, std::int64_t rows_total, float* mean, Result& r);
  /// The finishing of the integer sum's units [first, last) (each a tensor's piece of up to 4096
  /// elements): divided and rounded into the shared mean, with their sums of squares.
  void finish_units(const std::int64_t* sums, std::size_t first, std::size_t last);
  /// The integer sums of units [first, last) from the float terms of the node's ranks (the
  /// integer sum's terms: the local gradients are written where the node can read them).
  void quantize_units(const float* const* terms, int count, std::size_t first, std::size_t last, std::int64_t* sums);
  struct Finisher final : SumFinisher {
    GradientReducer* self = nullptr;
    void finish(const std::int64_t* sums, std::size_t first, std::size_t last) override {
      self->finish_units(sums, first, last);
    }
    void quantize(const float* const* terms, int count, std::size_t first, std::size_t last,
                  std::int64_t* sums) override {
      self->quantize_units(terms, count, first, last, sums);
    }
  };
  Result reduce_fast(Index n_local, float* mean, Flags flags);

  const Layout& layout_;
  Reduction mode_;
  Comm& comm_;
  const Kernels<float>& kernels_;
  Index n_;  // parameters
  std::vector<float*> held_;            // exact: one gradient per local micro-batch; fast: [scratch]
  std::vector<Vec<float>> own_;         // held_'s storage, unless they are the integer sum's terms
  std::vector<const float*> held_ptrs_; // exact: the step's local gradients, for the quantisation
  std::vector<double> loss_;            // per local micro-batch
  std::vector<Index> rows_;             // per local micro-batch
  std::vector<double> maxima_;          // exact: per slot, then the MaxTail values (reducer.cpp)
  std::unique_ptr<IntegerSum> sum_;     // exact: this rank's quantised sums, then loss and rows (SumTail)
  const std::int64_t* sums_ = nullptr;  // exact: the last step's sums (complete in this rank's units)
  std::size_t tail_at_ = 0;             // exact, several ranks: where the results hold the loss and rows sums
  int wire_bytes_ = 8;                  // exact: this step's width of the integers between nodes
  Index held_count_ = 0;                // exact: the last step's local micro-batches
  std::vector<std::size_t> units_;      // exact, several ranks: the integer sum's unit boundaries
  std::vector<int> unit_slot_;          // the slot of each unit (-1: the loss and rows)
  std::vector<double> factors_;         // per slot, this step: quantum / rows
  Finisher finisher_;
  std::vector<int> shift_;              // exact: per slot, then loss
  std::vector<double> scales_;          // exact: per slot, 2^shift
  Vec<float> fast_;                     // fast: sums, then loss, rows, stop and checkpoint (SumTail)
  const Faults& faults_;
  double comm_seconds_ = 0;
};

}  // namespace mdn

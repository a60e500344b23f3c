#include "mdn/reducer.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "mdn/error.hpp"
#include "mdn/kernels.hpp"
#include "mdn/timer.hpp"

namespace mdn {

namespace {

// What rides after the per-tensor values in the step's collectives, by position: after the
// per-slot maxima in the exact mode's MAX, and after the gradient sums in the SUM (the exact
// mode's int64 one carries loss and rows, the fast mode's float one all four).
enum MaxTail : std::size_t { kMaxLoss, kMaxNonfinite, kMaxStop, kMaxCheckpoint, kMaxTail };
enum SumTail : Index {
  kSumLoss, kSumRows, kSumStop, kSumCheckpoint,
  kExactSumTail = kSumRows + 1,      // the exact mode carries loss and rows
  kFastSumTail = kSumCheckpoint + 1  // the fast mode all four
};
static_assert(kMaxLoss == 0, "the loss's quantum is computed in the slots' loop, as slot S");

int ceil_log2(Index m) {
  int c = 0;
  while ((Index{1} << c) < m) ++c;
  return c;
}

}  // namespace

int exact_wire_bytes(Index micro_total) {
  // The sum of M terms, each within q/2 of its value, is within M^2 a 2^(1 - W) of the real sum
  // when every term is below 2^(W - c) (W: the bits of the sums' magnitude, 2^c >= M, a the
  // largest |value|); 2^-40 a needs M^2 <= 2^(W - 41). W = 8 B - 2 leaves the sign and one spare
  // bit in B bytes.
  const auto M = static_cast<double>(std::max<Index>(micro_total, 1));
  for (int B = 6; B < 8; ++B)
    if (M * M <= std::ldexp(1.0, 8 * B - 2 - 41)) return B;
  return 8;
}

namespace {

}  // namespace

GradientReducer::GradientReducer(const Layout& layout, Reduction mode, Index max_local, Comm& comm, CpuLevel level,
                                 const Faults& faults, const IntegerSumOptions& sum)
    : layout_(layout), mode_(mode), comm_(comm), kernels_(kernels<float>(level)), n_(layout.size()), faults_(faults) {
  const std::size_t slots = layout.slots().size();
  loss_.assign(static_cast<std::size_t>(std::max<Index>(max_local, 1)), 0.0);
  rows_.assign(loss_.size(), 0);
  if (mode == Reduction::exact) {
    held_ptrs_.assign(loss_.size(), nullptr);
    maxima_.assign(slots + kMaxTail, 0.0);
    factors_.assign(slots, 0.0);
    // One rank has nothing to add its integers to (reduce_exact's one-pass path). Otherwise the
    // sum's units are dequantize's chunks of each tensor (so that a unit's sum of squares is the
    // one dequantize forms), then the loss and rows; the results are the units' sums of squares,
    // then the mean.
    if (comm.size() > 1) {
      Index next = 0;  // the slots tile [0, n) in order
      for (std::size_t s = 0; s < slots; ++s) {
        const Slot& slot = layout.slots()[s];
        MDN_CHECK(slot.offset == next);
        next += slot.size();
        for (Index i = 0; i < slot.size(); i += kDequantizeChunk) {
          units_.push_back(static_cast<std::size_t>(slot.offset + i));
          unit_slot_.push_back(static_cast<int>(s));
        }
      }
      units_.push_back(static_cast<std::size_t>(n_));
      unit_slot_.push_back(-1);
      units_.push_back(static_cast<std::size_t>(n_ + kExactSumTail));
      // The results: each unit's sum of squares (double), the mean (float), then the loss and
      // rows sums (int64, written by the last unit's finisher); the regions say which bytes are
      // whose, so that ranks on different nodes can pass them on.
      const std::size_t U = unit_slot_.size();
      tail_at_ = (U * sizeof(double) + static_cast<std::size_t>(n_) * sizeof(float) + 7) / 8 * 8;
      std::vector<std::vector<std::size_t>> regions(3);
      for (std::size_t u = 0; u <= U; ++u) {
        regions[0].push_back(u * sizeof(double));
        regions[1].push_back(U * sizeof(double) + std::min(units_[u], static_cast<std::size_t>(n_)) * sizeof(float));
        regions[2].push_back(tail_at_ + (u == U ? kExactSumTail * sizeof(std::int64_t) : 0));
      }
      IntegerSumSpec spec{static_cast<std::size_t>(n_ + kExactSumTail), units_,
                          tail_at_ + kExactSumTail * sizeof(std::int64_t), std::move(regions)};
      // Up to two micro-batches a rank: their gradients are the sum's float terms, written by
      // the backward pass where the node's ranks can read them (no pass of integers first).
      if (loss_.size() <= 2) {
        spec.terms = static_cast<int>(loss_.size());
        spec.term_elements = static_cast<std::size_t>(n_);
      }
      sum_ = comm.integer_sum(spec, sum);
    }
    finisher_.self = this;
    shift_.assign(slots + 1, 0);
    scales_.assign(slots, 1.0);
    for (std::size_t k = 0; k < loss_.size(); ++k) held_.push_back(sum_ ? sum_->term(static_cast<int>(k)) : nullptr);
  } else {
    held_.assign(1, nullptr);
    fast_.resize(n_ + kFastSumTail);
  }
  own_.reserve(held_.size());
  for (float*& h : held_)
    if (h == nullptr) h = own_.emplace_back(n_).data();  // the route takes integers only
}

float* GradientReducer::gradient(Index k) {
  MDN_CHECK(k < static_cast<Index>(loss_.size()));
  return held_[mode_ == Reduction::exact ? static_cast<std::size_t>(k) : 0];
}

void GradientReducer::record(Index k, double loss_sum, Index rows) {
  const auto i = static_cast<std::size_t>(k);
  loss_[i] = loss_sum;
  rows_[i] = rows;
  if (mode_ == Reduction::fast) {
    // Sum into the rank's accumulator now; the scratch is reused by the next micro-batch.
    const Eigen::Map<const Vec<float>> g(held_[0], n_);
    if (k == 0) fast_.head(n_) = g;
    else fast_.head(n_) += g;
  }
}

GradientReducer::Result GradientReducer::reduce(Index n_local, Index micro_total, std::int64_t rows_total,
                                                float* mean, Flags flags, std::int64_t step) {
  if (n_local > 0 && faults_.poisons_gradient(step, comm_.rank())) {
    // The fault tests' non-finite gradient: in this rank's first micro-batch (in the fast mode's
    // sum, which holds it).
    if (mode_ == Reduction::exact) held_[0][0] = std::numeric_limits<float>::quiet_NaN();
    else fast_(0) = std::numeric_limits<float>::quiet_NaN();
  }
  return mode_ == Reduction::exact ? reduce_exact(n_local, micro_total, rows_total, mean, flags, step)
                                   : reduce_fast(n_local, mean, flags);
}

GradientReducer::Result GradientReducer::reduce_fast(Index n_local, float* mean, Flags flags) {
  if (n_local == 0) fast_.head(n_).setZero();
  double loss = 0;
  Index rows = 0;
  for (Index k = 0; k < n_local; ++k) {
    loss += loss_[static_cast<std::size_t>(k)];
    rows += rows_[static_cast<std::size_t>(k)];
  }
  fast_(n_ + kSumLoss) = static_cast<float>(loss);
  fast_(n_ + kSumRows) = static_cast<float>(rows);
  fast_(n_ + kSumStop) = flags.stop ? 1.0f : 0.0f;
  fast_(n_ + kSumCheckpoint) = flags.checkpoint ? 1.0f : 0.0f;
  {
    ScopedTimer w(comm_seconds_);
    comm_.allreduce(fast_.data(), static_cast<std::size_t>(fast_.size()), ReduceOp::sum);
  }
  Result r;
  r.rows = static_cast<std::int64_t>(std::llround(fast_(n_ + kSumRows)));
  r.loss_sum = fast_(n_ + kSumLoss);
  r.flags = {fast_(n_ + kSumStop) > 0, fast_(n_ + kSumCheckpoint) > 0};
  r.finite = fast_.head(n_ + kSumLoss + 1).allFinite();  // the same on every rank: the reduced buffer
  if (r.finite) {
    r.mean = mean;
    Eigen::Map<Vec<float>>(mean, n_) = fast_.head(n_) * (1.0f / static_cast<float>(r.rows));
    for (const Slot& slot : layout_.slots()) r.sum_squares += kernels_.sum_squares(mean + slot.offset, slot.size());
  }
  return r;
}

GradientReducer::Result GradientReducer::reduce_exact(Index n_local, Index micro_total, std::int64_t rows_total,
                                                      float* mean, Flags flags, std::int64_t step) {
  Result r;
  // 1. The maxima over every rank, with the non-finite flag and the requests (one small MAX).
  const bool finite = agree_maxima(n_local, flags, r.flags);
  if (!finite) {  // decided on the flag, the same on every rank
    r.finite = false;
    return r;
  }
  // 2. Quanta from the global maxima; the overflow bound is checked before anything is summed.
  choose_quanta(micro_total, step);
  // 3. Quantise and sum, locally and across ranks; divide once by the global row count.
  sum_and_divide(n_local, rows_total, mean, r);
  return r;
}

bool GradientReducer::agree_maxima(Index n_local, Flags flags, Flags& agreed) {
  const auto& slots = layout_.slots();
  const std::size_t S = slots.size();
  // Local maxima per slot and of the losses; non-finite values show as infinity.
  std::fill(maxima_.begin(), maxima_.end(), 0.0);
  bool local_nonfinite = false;
  for (Index k = 0; k < n_local; ++k) {
    const float* g = held_[static_cast<std::size_t>(k)];
    for (std::size_t s = 0; s < S; ++s) {
      const double m = kernels_.max_abs(g + slots[s].offset, slots[s].size());
      if (!std::isfinite(m)) local_nonfinite = true;  // std::max would drop a NaN
      else maxima_[s] = std::max(maxima_[s], m);
    }
    const double l = loss_[static_cast<std::size_t>(k)];
    if (!std::isfinite(l)) local_nonfinite = true;
    else maxima_[S + kMaxLoss] = std::max(maxima_[S + kMaxLoss], std::abs(l));
  }
  maxima_[S + kMaxNonfinite] = local_nonfinite ? 1.0 : 0.0;
  maxima_[S + kMaxStop] = flags.stop ? 1.0 : 0.0;
  maxima_[S + kMaxCheckpoint] = flags.checkpoint ? 1.0 : 0.0;
  {
    ScopedTimer w(comm_seconds_);
    comm_.allreduce(maxima_.data(), maxima_.size(), ReduceOp::max);
  }
  agreed = {maxima_[S + kMaxStop] > 0, maxima_[S + kMaxCheckpoint] > 0};
  return !(maxima_[S + kMaxNonfinite] > 0);
}

void GradientReducer::choose_quanta(Index micro_total, std::int64_t step) {
  const auto& slots = layout_.slots();
  const std::size_t S = slots.size();
  const int c = ceil_log2(std::max<Index>(micro_total, 1));
  const int bias = faults_.quantum_shift(step, comm_.rank());
  wire_bytes_ = exact_wire_bytes(micro_total);
  const int W = 8 * wire_bytes_ - 2;  // the sums' magnitude stays below 2^W
  const double limit = std::ldexp(1.0, W - c);
  for (std::size_t s = 0; s <= S; ++s) {
    const double a = maxima_[s];
    int e = 0;
    if (a > 0) std::frexp(a, &e);  // a < 2^e
    shift_[s] = W - c - e + bias;
    if (s < S) scales_[s] = std::ldexp(1.0, shift_[s]);
    // Decided on the global maxima: every rank reaches the same verdict (a collective error).
    if (std::ldexp(a, shift_[s]) >= limit)
      throw Error(Exit::failure,
                  fmt::format("exact reduction: accumulator overflow in '{}' at step {} (largest |value| {} over {} "
                              "micro-batches cannot be held in {}-bit fixed point at quantum 2^{})",
                              s < S ? slots[s].name : std::string("loss"), step, a, micro_total, 8 * wire_bytes_,
                              -shift_[s]),
                  true);
  }
}

void GradientReducer::sum_and_divide(Index n_local, std::int64_t rows_total, float* mean, Result& r) {
  const auto& slots = layout_.slots();
  const std::size_t S = slots.size();
  // Every local micro-batch in one pass over each tensor.
  for (Index k = 0; k < n_local; ++k) held_ptrs_[static_cast<std::size_t>(k)] = held_[static_cast<std::size_t>(k)];
  held_count_ = n_local;
  std::int64_t loss_acc = 0;
  std::int64_t rows_acc = 0;
  for (Index k = 0; k < n_local; ++k) {
    loss_acc += std::llrint(std::ldexp(loss_[static_cast<std::size_t>(k)], shift_[S]));
    rows_acc += rows_[static_cast<std::size_t>(k)];
  }
  // The division by the row count is one multiplication by quantum / rows (computed once per
  // tensor, in double): vector divisions would cost more than the rest of the reduction.
  for (std::size_t s = 0; s < S; ++s) factors_[s] = std::ldexp(1.0, -shift_[s]) / static_cast<double>(rows_total);
  r.sum_squares = 0;
  if (!sum_) {
    // One rank: its sums are the total; each tensor is quantised and divided in one pass.
    sums_ = nullptr;
    r.mean = mean;
    r.rows = rows_acc;
    r.loss_sum = std::ldexp(static_cast<double>(loss_acc), -shift_[S]);
    for (std::size_t s = 0; s < S; ++s)
      r.sum_squares += kernels_.round_trip(held_ptrs_.data(), static_cast<int>(n_local), slots[s].offset,
                                           mean + slots[s].offset, slots[s].size(), scales_[s], factors_[s]);
  } else {
    std::int64_t* acc = sum_->values();
    // With terms the gradients are in the sum already, and each unit's owner quantises them.
    const bool terms = sum_->term(0) != nullptr;
    if (!terms)
      for (std::size_t s = 0; s < S; ++s)
        kernels_.quantize(held_ptrs_.data(), static_cast<int>(n_local), slots[s].offset, acc + slots[s].offset,
                          slots[s].size(), scales_[s]);
    acc[n_ + kSumLoss] = loss_acc;
    acc[n_ + kSumRows] = rows_acc;
    {
      ScopedTimer w(comm_seconds_);
      // Each rank divides its units into the shared mean.
      sums_ = sum_->sum(&finisher_, wire_bytes_, terms ? static_cast<int>(n_local) : 0);
    }
    const auto* tail = reinterpret_cast<const std::int64_t*>(static_cast<const unsigned char*>(sum_->results()) + tail_at_);
    r.rows = tail[kSumRows];
    r.loss_sum = std::ldexp(static_cast<double>(tail[kSumLoss]), -shift_[S]);
    const auto* unit_squares = static_cast<const double*>(sum_->results());
    // Read in place: a copy would cost as much as the optimizer's own pass over it.
    r.mean = reinterpret_cast<const float*>(unit_squares + unit_slot_.size());
    // Each tensor's sum of squares as dequantize forms it over the whole tensor: its chunks in order.
    for (std::size_t u = 0; u < unit_slot_.size();) {
      const int s = unit_slot_[u];
      if (s < 0) break;
      double tensor = 0;
      for (; u < unit_slot_.size() && unit_slot_[u] == s; ++u) tensor += unit_squares[u];
      r.sum_squares += tensor;
    }
  }
  MDN_CHECK(r.rows == rows_total);
}

void GradientReducer::finish_units(const std::int64_t* sums, std::size_t first, std::size_t last) {
  auto* unit_squares = static_cast<double*>(sum_->results());
  auto* shared_mean = reinterpret_cast<float*>(unit_squares + unit_slot_.size());
  for (std::size_t u = first; u < last; ++u) {
    const int s = unit_slot_[u];
    if (s < 0) {  // the loss and rows: into the results, for every rank
      std::memcpy(static_cast<unsigned char*>(sum_->results()) + tail_at_, sums + n_, kExactSumTail * sizeof(std::int64_t));
      continue;
    }
    const std::size_t at = units_[u];
    unit_squares[u] = kernels_.dequantize(sums + at, shared_mean + at, static_cast<Index>(units_[u + 1] - at),
                                          factors_[static_cast<std::size_t>(s)]);
  }
}

void GradientReducer::quantize_units(const float* const* terms, int count, std::size_t first, std::size_t last,
                                     std::int64_t* sums) {
  for (std::size_t u = first; u < last; ++u) {
    const int s = unit_slot_[u];
    MDN_CHECK(s >= 0);  // the loss and rows come as integers
    kernels_.quantize(terms, count, static_cast<Index>(units_[u]), sums + units_[u],
                      static_cast<Index>(units_[u + 1] - units_[u]), scales_[static_cast<std::size_t>(s)]);
  }
}

std::string GradientReducer::route() const {
  if (comm_.size() == 1) return "one rank";
  return sum_ ? sum_->route() : "MPI allreduce of floats";
}

std::vector<double> GradientReducer::exact_sums() {
  // Every rank's terms, quantised as reduce_exact did, summed exactly over the ranks.
  std::vector<std::int64_t> v(static_cast<std::size_t>(n_), 0);
  for (std::size_t s = 0; s < layout_.slots().size(); ++s) {
    const Slot& slot = layout_.slots()[s];
    for (Index i = slot.offset; i < slot.offset + slot.size(); ++i)
      for (Index k = 0; k < held_count_; ++k)
        v[static_cast<std::size_t>(i)] +=
            std::llrint(std::ldexp(static_cast<double>(held_[static_cast<std::size_t>(k)][i]), shift_[s]));
  }
  comm_.allreduce(v.data(), v.size(), ReduceOp::sum);
  std::vector<double> out(v.size());
  for (std::size_t s = 0; s < layout_.slots().size(); ++s) {
    const Slot& slot = layout_.slots()[s];
    for (Index i = slot.offset; i < slot.offset + slot.size(); ++i)
      out[static_cast<std::size_t>(i)] = std::ldexp(static_cast<double>(v[static_cast<std::size_t>(i)]), -shift_[s]);
  }
  return out;
}

}  // namespace mdn

#include "mdn/step.hpp"

#include <algorithm>
#include <cmath>

#include "mdn/clip.hpp"
#include "mdn/timer.hpp"

namespace mdn {

TrainStep::TrainStep(Prepared& p, Comm& comm, const Faults& faults)
    : p_(p),
      comm_(comm),
      layout_(p.model),
      net_(p.cpu.level, p.model, p.batches.micro),
      params_(layout_.size()),
      grad_(layout_.size()),
      optimizer_(p.config.optimizer_spec(), layout_, p.cpu.level),
      reducer_(layout_, p.config.train.reduction,
               (p.batches.batch / p.batches.micro + comm.size() - 1) / comm.size(), comm, p.cpu.level, faults,
               IntegerSumOptions{p.config.comm.shared_memory}),
      data_(comm, std::move(p.train_shard), p.train_range, p.model.input_dim, p.model.output_dim, p.batches,
            p.cpu.level),
      x_(p.model.input_dim, p.batches.micro),
      y_(p.model.output_dim, p.batches.micro) {}

void TrainStep::start_epoch(std::int64_t epoch) {
  ScopedTimer t(times_.io);
  data_.start_epoch(epoch);
}

StepOutcome TrainStep::run(Index batch, std::int64_t number, double lr, StepFlags requests) {
  const auto& local = data_.micro_batches(batch);
  const BatchSpec& b = p_.batches;
  const Index micro_total = (b.batch_rows(batch) + b.micro - 1) / b.micro;
  const double comm_before = reducer_.comm_seconds();
  GradientReducer::Result r;
  {
    ScopedTimer t(times_.compute);  // the collectives' share is moved to times_.comm below
    // 1. This rank's micro-batches: loss and gradient of each, held by the reducer.
    for (std::size_t k = 0; k < local.size(); ++k) {
      const auto& mb = local[k];
      data_.load(mb, x_, y_);
      float* g = reducer_.gradient(static_cast<Index>(k));
      const double loss = net_.loss_and_grad(params_.data(), x_.leftCols(mb.rows), y_.leftCols(mb.rows), g);
      reducer_.record(static_cast<Index>(k), loss, mb.rows);
    }
    // 2. One reduction: the mean gradient, the loss, the rows and the requests of every rank.
    r = reducer_.reduce(static_cast<Index>(local.size()), micro_total, b.batch_rows(batch), grad_.data(), requests,
                        number);
  }
  const double comm = reducer_.comm_seconds() - comm_before;
  times_.comm += comm;
  times_.compute -= comm;

  StepOutcome out;
  out.flags = r.flags;
  out.rows = r.rows;
  // 3. The finite check, decided on the reduced flag: the same on every rank.
  if (!r.finite) return out;
  out.loss = r.loss_sum / static_cast<double>(r.rows) + p_.norm.log_det_y();
  // 4. Clip and update. The norm comes from the reduction's pass; the norm clip's factor is
  //    applied by the optimizer as it reads the gradient.
  ScopedTimer t(times_.compute);
  const ClipSpec clip = p_.config.clip_spec();
  const float* g = r.mean;
  float* own = nullptr;  // the value clip works in place: on this rank's own buffer
  if (clip.value) {
    if (g != grad_.data()) std::copy_n(g, grad_.size(), grad_.data());
    g = own = grad_.data();
  }
  const ClipResult cr = clip_by_value(p_.cpu.level, own, grad_.size(), clip, std::sqrt(r.sum_squares));
  out.clipped = cr.norm_clipped || cr.value_clipped;
  out.grad_norm = cr.norm;
  optimizer_.step(params_.data(), g, lr, cr.scale);
  out.applied = true;
  return out;
}

}  // namespace mdn

// Single-process training on Bishop's inverse problem, through `mdn train`'s own loop (prepare,
// read_data, RunLoop::run with the single-process communicator): a mixture learns the
// three-branched conditional density, a single Gaussian cannot. (Best held-out NLL of any
// unimodal model is about -0.66 nats; the true conditional's is about -1.29.)
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "mdn/comm.hpp"
#include "mdn/network.hpp"
#include "mdn/prepare.hpp"
#include "mdn/resume.hpp"
#include "mdn/run_loop.hpp"
#include "support/bishop.hpp"
#include "support/h5_files.hpp"
#include "support/process.hpp"
#include "support/run_sinks.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

/// Trains an MDN with K components (hidden [24, 24], Adam, cosine schedule, norm clipping, 400
/// epochs of micro-batches of 100) on `data_path`; returns the held-out mean NLL of the result.
double train_and_evaluate(int K, const std::string& dir, const std::string& data_path, const BishopData& held_out) {
  const std::string run_dir = dir + "/run-K" + std::to_string(K);
  const std::string config = dir + "/K" + std::to_string(K) + ".yaml";
  std::ofstream(config) << "run: {dir: " << run_dir << ", seed: " << seed() << "}\n"
                        << "data: {train: " << data_path << ", normalize: false}\n"
                        << "model: {hidden: [24, 24], components: " << K << "}\n"
                        << "train: {epochs: 400, batch_size: 100, micro_batch: 100}\n"
                        << "optimizer: {name: adam, lr: 0.01, schedule: {name: cosine, min_lr: 0.0001}}\n"
                        << "clip: {global_norm: 5.0}\n"
                        << "checkpoint: {every_epochs: null, keep_best: false}\n"
                        << "log: {every_steps: 3000}\n";
  SelfComm comm;
  Prepared p = prepare(config, {}, comm);
  const ResumeDecision plan = decide_resume(p, comm);
  EXPECT_FALSE(plan.checkpoint.has_value());
  read_data(p, plan.continuation(p.config), comm);
  RecordedMetrics metrics;
  RecordedCheckpoints checkpoints;
  RunLoop trainer(p, comm, nullptr, metrics, checkpoints);
  EXPECT_EQ(trainer.run(), RunEnd::finished);
  EXPECT_EQ(checkpoints.step_numbers(), (std::vector<std::int64_t>{400 * 30})) << "the end's checkpoint";
  EXPECT_EQ(trainer.step(), trainer.total_steps());
  EXPECT_EQ(trainer.total_steps(), 400 * 30);

  const Index m = 100;
  Network<float> net(p.cpu.level, p.model, m);
  double nll = 0;
  const Index n = held_out.x.cols();
  for (Index b = 0; b < n; b += m) {
    const Index len = std::min(m, n - b);
    nll += net.loss(trainer.params().data(), held_out.x.middleCols(b, len), held_out.y.middleCols(b, len));
  }
  return nll / static_cast<double>(n);
}

TEST(TrainBishop, MixtureLearnsTheBranchesSingleGaussianCannot) {
  TempDir dir;
  const BishopData train = bishop(3000, seed());
  const BishopData held_out = bishop(2000, seed() + 1);
  const std::string data = dir / "bishop.h5";
  write_xy(data, std::vector<float>(train.x.data(), train.x.data() + train.x.size()), 1,
           std::vector<float>(train.y.data(), train.y.data() + train.y.size()), 1);
  const double mixture = train_and_evaluate(5, dir.path(), data, held_out);
  const double single = train_and_evaluate(1, dir.path(), data, held_out);
  std::printf("held-out NLL: K=5 %.4f, K=1 %.4f (nats per sample)\n", mixture, single);
  EXPECT_LT(mixture, -0.9);
  EXPECT_GT(single, -0.7);
}

}  // namespace
}  // namespace mdn::test

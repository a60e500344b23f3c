// The training loop's policies in one process (the single-process communicator), with faults
// handed to the loop as an object: a non-finite step skipped or stopped, an accumulator
// overflow. The same policies under MPI, decided on every rank, are in test_train_cli.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "mdn/checkpoint.hpp"
#include "mdn/comm.hpp"
#include "mdn/error.hpp"
#include "mdn/faults.hpp"
#include "mdn/prepare.hpp"
#include "mdn/resume.hpp"
#include "mdn/trainer.hpp"
#include "support/train_fixture.hpp"

namespace mdn::test {
namespace {

class Policies : public testing::Test {
 protected:
  void SetUp() override { write_data(dir_ / "train.h5", 400, 5); }

  /// Trains run `name` for `steps` steps with train.nonfinite = `nonfinite` and `faults`;
  /// returns the final parameters.
  Vec<float> train(const std::string& name, std::int64_t steps, const std::string& nonfinite, const Faults& faults) {
    const std::string run = dir_ / name;
    const std::string config = dir_ / (name + ".yaml");
    std::ofstream(config) << "run: {dir: " << run << ", seed: 4}\n"
                          << "data: {train: " << (dir_ / "train.h5") << "}\n"
                          << "model: {hidden: [8], components: 2}\n"
                          << "train: {max_steps: " << steps << ", batch_size: 64, micro_batch: 32, nonfinite: "
                          << nonfinite << "}\n"
                          << "checkpoint: {every_epochs: null, keep_best: false}\n"
                          << "log: {every_steps: 1}\n";
    SelfComm comm;
    Prepared p = prepare(config, {}, comm);
    read_data(p, decide_resume(p, comm).continuation(p.config), comm);
    std::filesystem::create_directories(run + "/checkpoints");
    Trainer trainer(p, comm, nullptr, faults);
    EXPECT_EQ(trainer.run(), RunEnd::finished);
    return trainer.params();
  }

  std::string metrics(const std::string& name) {
    std::stringstream ss;
    ss << std::ifstream(dir_ / (name + "/metrics.jsonl")).rdbuf();
    return ss.str();
  }

  TempDir dir_;
};

TEST_F(Policies, ASkippedNonFiniteStepLeavesTheParametersOfTheStepBefore) {
  const Vec<float> two = train("two", 2, "skip", Faults::none());
  const Vec<float> three = train("three", 3, "skip", Faults::none());
  const Vec<float> skipped = train("skipped", 3, "skip", Faults::parse("nonfinite@step=3"));
  EXPECT_NE(three, two) << "the third step changes the parameters";
  EXPECT_EQ(skipped, two) << "a skipped step changes nothing, the optimizer's state included";
  EXPECT_NE(metrics("skipped").find(R"({"action":"skip","kind":"nonfinite","step":3})"), std::string::npos)
      << metrics("skipped");
  EXPECT_EQ(metrics("three").find("nonfinite"), std::string::npos);
}

TEST_F(Policies, ANonFiniteStepStopsTheRunWithTheLastGoodStateSaved) {
  const Vec<float> two = train("two", 2, "stop", Faults::none());
  try {
    train("stopped", 5, "stop", Faults::parse("nonfinite@step=3"));
    ADD_FAILURE() << "the run did not stop";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::failure);
    EXPECT_NE(std::string(e.what()).find("step 3: non-finite loss or gradient"), std::string::npos) << e.what();
  }
  const Checkpoint saved = read_checkpoint(dir_ / "stopped/checkpoints/step-00000002.h5");
  EXPECT_EQ(saved.step, 2);
  EXPECT_EQ(saved.params, two);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "stopped/checkpoints/step-00000003.h5"));
}

TEST_F(Policies, AnAccumulatorOverflowIsAnErrorNamingTheStepAndAppliesNothing) {
  try {
    train("overflow", 4, "stop", Faults::parse("overflow@step=2"));
    ADD_FAILURE() << "the overflow was not reported";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::failure);
    EXPECT_NE(std::string(e.what()).find("accumulator overflow in 'layers/"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at step 2"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ / "overflow/checkpoints/step-00000002.h5"));
}

}  // namespace
}  // namespace mdn::test

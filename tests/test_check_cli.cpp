// `mdn check` under mpiexec -n 3: a valid config passes; every config and data error gives one
// message naming the key, file, line or row, and exit code 2 on every rank, within a timeout.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "support/h5_files.hpp"
#include "support/process.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

/// Runs `mdn check` on np ranks; each rank records its own exit code.
RankedRun check(const TempDir& dir, int np, const std::vector<std::string>& args) {
  std::vector<std::string> full = {"check"};
  full.insert(full.end(), args.begin(), args.end());
  return run_mdn_ranks(dir.path(), np, full, {}, 60);
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

class CheckCli : public testing::Test {
 protected:
  void SetUp() override {
    write_small_problem(dir_.path(), 1.0f);
    write(dir_ / "cfg.yaml", base_);
  }

  /// Expects failure with `message` printed once and exit code 2 on each of 3 ranks.
  void expect_error(const std::vector<std::string>& args, const std::string& message) {
    const RankedRun r = check(dir_, 3, args);
    EXPECT_FALSE(r.result.timed_out) << "hang: " << r.result.all();
    EXPECT_EQ(r.result.exit_code, MDN_TEST_MPI_IS_OPENMPI ? 0 : 2)
        << "with abort_on_non_zero_status off, OpenMPI's mpiexec returns 0" << r.result.all();
    EXPECT_EQ(r.codes, (std::vector<std::string>{"2", "2", "2"})) << r.result.all();
    EXPECT_EQ(count(r.result.err, "mdn: error: " + message + "\n"), 1)
        << "expected once: mdn: error: " << message << "\ngot: " << r.result.all();
    EXPECT_EQ(count(r.result.err, "mdn: error"), 1) << r.result.all();
    EXPECT_EQ(r.result.err.find("MPI_ABORT"), std::string::npos) << r.result.all();
  }

  TempDir dir_;
  const std::string base_ =
      "run:\n  dir: run\ndata:\n  train: train.h5\n  valid: valid.h5\n"
      "train:\n  epochs: 2\n  batch_size: 10\n";
};

TEST_F(CheckCli, ValidConfigPassesAndPrintsTheSummaryOnce) {
  const RankedRun r = check(dir_, 3, {"cfg.yaml", "--set", "train.micro_batch=5"});
  EXPECT_EQ(r.result.exit_code, 0) << r.result.all();
  EXPECT_EQ(r.codes, (std::vector<std::string>{"0", "0", "0"}));
  EXPECT_EQ(count(r.result.out, "ok: the config and the data are valid for 3 ranks"), 1) << r.result.out;
  EXPECT_NE(r.result.out.find("N = 50 rows, D = 2 inputs, L = 1 outputs"), std::string::npos) << r.result.out;
  EXPECT_NE(r.result.out.find("B = 10, m = 5: 5 batches per epoch (10 micro-batches)"), std::string::npos) << r.result.out;
  EXPECT_NE(r.result.out.find("each reads 16..17 rows"), std::string::npos) << r.result.out;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "run")) << "check writes nothing";
}

TEST_F(CheckCli, ConfigErrors) {
  write(dir_ / "a.yaml", base_ + "optimizer:\n  lrr: 0.1\n");
  expect_error({"a.yaml"}, "a.yaml:10:3: unknown key 'optimizer.lrr'; did you mean 'optimizer.lr'?");
  write(dir_ / "b.yaml", base_ + "  micro_batch: many\n");
  expect_error({"b.yaml"}, "b.yaml:9:16: train.micro_batch: expected an integer, got 'many'");
  expect_error({"cfg.yaml", "--set", "model.sigma_min=0"},
               "--set model.sigma_min=0: model.sigma_min: must be > 0, got 0");
  expect_error({"cfg.yaml", "--set", "train.micro_batch=4"},
               "--set train.micro_batch=4: train.micro_batch (4) must divide train.batch_size (10)");
  expect_error({"cfg.yaml", "--set", "modle.hidden=[4]"},
               "--set modle.hidden=[4]: unknown key 'modle.hidden'; did you mean 'model.hidden'?");
  write(dir_ / "c.yaml", "run:\n  dir: [x\n");
  expect_error({"c.yaml"}, "c.yaml:3:1: YAML syntax error: end of sequence flow not found");
  expect_error({"missing.yaml"}, "missing.yaml: cannot read the config file: No such file or directory");
  std::filesystem::create_directory(dir_ / "adir.yaml");
  expect_error({"adir.yaml"}, "adir.yaml: is a directory, not a config file");
}

TEST_F(CheckCli, FileErrors) {
  expect_error({"cfg.yaml", "--set", "data.train=nope.h5"},
               "--set data.train=nope.h5: data.train: 'nope.h5': no such file (in the working directory '" +
                   std::filesystem::canonical(dir_.path()).string() + "')");
  std::filesystem::create_directory(dir_ / "d.h5");
  expect_error({"cfg.yaml", "--set", "data.train=d.h5"},
               "--set data.train=d.h5: data.train: 'd.h5' is a directory, not an HDF5 file");
  write(dir_ / "text.h5", "not hdf5\n");
  expect_error({"cfg.yaml", "--set", "data.valid=text.h5"},
               "--set data.valid=text.h5: data.valid: 'text.h5' is not an HDF5 file (or cannot be read)");
  expect_error({"cfg.yaml", "--set", "data.x=inputs"},
               "cfg.yaml:4:10: data.train 'train.h5': no dataset 'inputs' (named by --set data.x=inputs: data.x; "
               "datasets in the file: 'x', 'y')");
  write(dir_ / "afile", "");
  expect_error({"cfg.yaml", "--set", "run.dir=afile"},
               "--set run.dir=afile: run.dir: 'afile' exists and is not a directory");
}

TEST_F(CheckCli, DatasetErrors) {
  const std::string f = dir_ / "bad.h5";
  const std::vector<float> ten(30, 1.0f);
  // x and y row counts differ.
  write_dataset(f, true, "x", {10, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ten.data());
  write_dataset(f, false, "y", {9, 1}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ten.data());
  // A rank-3, an integer, a string and an empty dataset.
  write_dataset(f, false, "cube", {10, 1, 1}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ten.data());
  const std::vector<int> ints(10, 3);
  write_dataset(f, false, "ints", {10, 1}, H5T_STD_I32LE, H5T_NATIVE_INT, ints.data());
  {
    h5::Handle str = h5::checked(H5Tcopy(H5T_C_S1), "str");
    H5Tset_size(str.get(), 8);
    const char text[10][8] = {};
    write_dataset(f, false, "strings", {10}, str.get(), str.get(), text);
  }
  write_dataset(f, false, "empty", {0, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nullptr);
  write_dataset(f, false, "y10", {10}, H5T_IEEE_F64LE, H5T_NATIVE_FLOAT, ten.data());

  auto with = [&](const std::string& x, const std::string& y) {
    return std::vector<std::string>{"cfg.yaml", "--set", "data.train=bad.h5", "--set", "data.valid=null",
                                    "--set", "data.x=" + x, "--set", "data.y=" + y};
  };
  expect_error(with("x", "y"),
               "--set data.train=bad.h5: data.train 'bad.h5': datasets 'x' and 'y' have different row counts (10 and 9)");
  expect_error(with("cube", "y10"),
               "--set data.train=bad.h5: data.train 'bad.h5': dataset 'cube' has 3 dimensions; mdn reads (N, columns) or (N,)");
  expect_error(with("ints", "y10"),
               "--set data.train=bad.h5: data.train 'bad.h5': dataset 'ints' holds integer 4-byte values; mdn reads float32 or float64");
  expect_error(with("strings", "y10"),
               "--set data.train=bad.h5: data.train 'bad.h5': dataset 'strings' holds string 8-byte values; mdn reads float32 or float64");
  expect_error(with("empty", "y10"),
               "--set data.train=bad.h5: data.train 'bad.h5': dataset 'empty' is empty (0 x 2)");
}

TEST_F(CheckCli, ValidFileWithAnotherInputDimension) {
  std::vector<float> x3(30, 0.5f), y(10, 1.0f);
  write_xy(dir_ / "v3.h5", x3, 3, y, 1);
  expect_error({"cfg.yaml", "--set", "data.valid=v3.h5"},
               "--set data.valid=v3.h5: data.valid: 'v3.h5' has 3 inputs and 1 outputs, the training file 'train.h5' has 2 and 1");
}

TEST_F(CheckCli, NonFiniteValuesNameTheFirstBadRow) {
  std::vector<float> x(100, 1.0f), y(50, 2.0f);
  x[2 * 41 + 1] = std::numeric_limits<float>::quiet_NaN();  // row 41
  y[44] = -std::numeric_limits<float>::infinity();
  write_xy(dir_ / "nan.h5", x, 2, y, 1);
  expect_error({"cfg.yaml", "--set", "data.train=nan.h5"},
               "'nan.h5': dataset 'x' has a NaN or Inf in row 41 (the first such row)");
  std::vector<float> x2(100, 1.0f), y2(50, 2.0f);
  y2[3] = std::numeric_limits<float>::infinity();
  write_xy(dir_ / "inf.h5", x2, 2, y2, 1);
  expect_error({"cfg.yaml", "--set", "data.valid=inf.h5"},
               "'inf.h5': dataset 'y' has a NaN or Inf in row 3 (the first such row)");
}

TEST_F(CheckCli, MoreRanksThanRows) {
  write_xy(dir_ / "two.h5", {1, 2, 3, 4}, 2, {1, 2}, 1);
  expect_error({"cfg.yaml", "--set", "data.train=two.h5", "--set", "data.valid=null"},
               "--set data.train=two.h5: data.train: 'two.h5' has 2 rows: too few for 3 ranks (use at most 2 ranks)");
}

}  // namespace
}  // namespace mdn::test

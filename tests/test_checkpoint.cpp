// Checkpoint files: save -> load -> save identity, the atomic write, and detection of corrupt,
// truncated, foreign and hostile files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mdn/checkpoint.hpp"
#include "mdn/config.hpp"
#include "mdn/error.hpp"
#include "mdn/h5.hpp"
#include "support/process.hpp"
#include "support/reference.hpp"
#include "support/test_seed.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;

Checkpoint sample() {
  Checkpoint c;
  c.model.input_dim = 3;
  c.model.output_dim = 2;
  c.model.components = 4;
  c.model.hidden = {5, 6};
  c.model.activation = Activation::relu;
  c.model.sigma = SigmaMode::exp;
  c.model.sigma_min = 0.002;
  const Layout layout(c.model);
  c.params = uniform_matrix<float>(layout.size(), 1, -1, 1, seed(), 1);
  c.optimizer = OptimizerKind::adamw;
  c.optimizer_steps = 17;
  c.optimizer_state = {{"exp_avg", uniform_matrix<float>(layout.size(), 1, -1, 1, seed(), 2)},
                       {"exp_avg_sq", uniform_matrix<float>(layout.size(), 1, 0, 1, seed(), 3)}};
  c.norm = Normalization::identity(3, 2);
  c.norm.enabled = true;
  c.norm.x_mean << 1.5, -2.25, 1e6;
  c.norm.x_std << 0.5, 3.0, 1e-3;
  c.norm.y_mean << 0.1, 0.2;
  c.norm.y_std << 7.0, 0.3;
  c.step = 1234;
  c.epoch = 5;
  c.samples_seen = 1234 * 256;
  c.world_size = 3;
  c.best_valid_nll = -1.25;
  c.config = to_yaml(parse_config("run: {dir: somewhere}\ndata: {train: train.h5}\ntrain: {batch_size: 64, epochs: 1}\n", "sample"));
  return c;
}

std::string h5dump(const std::string& path) {
  const RunResult r = run({"h5dump", path});
  EXPECT_EQ(r.exit_code, 0) << r.all();
  return r.out.substr(r.out.find('\n'));  // the first line names the file
}

std::string error_of(const std::string& path) {
  try {
    read_checkpoint(path);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::input);
    return e.what();
  }
  return "no error";
}

TEST(Checkpoint, SaveLoadSaveGivesIdenticalDatasetsAndAttributes) {
  TempDir dir;
  const Checkpoint c = sample();
  write_checkpoint(dir / "a.h5", c);
  const Checkpoint back = read_checkpoint(dir / "a.h5");
  EXPECT_EQ(back.params, c.params);
  EXPECT_EQ(back.optimizer_state[1].second, c.optimizer_state[1].second);
  EXPECT_EQ(back.norm.x_mean, c.norm.x_mean);
  EXPECT_EQ(back.model.hidden, c.model.hidden);
  EXPECT_EQ(back.model.sigma, SigmaMode::exp);
  EXPECT_EQ(back.best_valid_nll, -1.25);
  EXPECT_EQ(back.config, c.config);
  write_checkpoint(dir / "b.h5", back);
  EXPECT_EQ(h5dump(dir / "a.h5"), h5dump(dir / "b.h5"));
  // Nothing but the two files: no temporary left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 2);
}

TEST(Checkpoint, TheCovarianceFormIsStoredAndCoveredByTheChecksum) {
  TempDir dir;
  Checkpoint c = sample();
  c.model.covariance = Covariance::full;
  c.params = uniform_matrix<float>(Layout(c.model).size(), 1, -1, 1, seed(), 5);
  c.optimizer_state = {{"exp_avg", uniform_matrix<float>(c.params.size(), 1, -1, 1, seed(), 6)},
                       {"exp_avg_sq", uniform_matrix<float>(c.params.size(), 1, 0, 1, seed(), 7)}};
  write_checkpoint(dir / "full.h5", c);
  const Checkpoint back = read_checkpoint(dir / "full.h5");
  EXPECT_EQ(back.model.covariance, Covariance::full);
  EXPECT_EQ(back.params, c.params);
  EXPECT_EQ(Layout(back.model).size(), Layout(c.model).size());
  // With one output the two forms have the same layout: only the checksum tells them apart.
  c.model.output_dim = 1;
  c.norm = Normalization::identity(3, 1);
  c.params = uniform_matrix<float>(Layout(c.model).size(), 1, -1, 1, seed(), 8);
  c.optimizer_state = {{"exp_avg", c.params}, {"exp_avg_sq", c.params.cwiseAbs()}};
  write_checkpoint(dir / "l1.h5", c);
  {
    h5::Handle f = h5::checked(H5Fopen((dir / "l1.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    h5::check(H5Adelete_by_name(f.get(), "model", "covariance", H5P_DEFAULT), "delete");
    h5::write_attribute(f.get(), "/model", "covariance", std::string("diagonal"), "write");
  }
  EXPECT_NE(error_of(dir / "l1.h5").find("checksum mismatch"), std::string::npos) << error_of(dir / "l1.h5");
}

TEST(Checkpoint, NoValidationMeansNaNAndSgdWithoutMomentumHasNoState) {
  TempDir dir;
  Checkpoint c = sample();
  c.model.hidden = {};  // no hidden layer: an empty `hidden` attribute
  c.params = uniform_matrix<float>(Layout(c.model).size(), 1, -1, 1, seed(), 4);
  c.best_valid_nll = std::numeric_limits<double>::quiet_NaN();
  c.optimizer = OptimizerKind::sgd;
  c.optimizer_state.clear();
  c.norm.enabled = false;
  write_checkpoint(dir / "a.h5", c);
  const Checkpoint back = read_checkpoint(dir / "a.h5");
  EXPECT_TRUE(std::isnan(back.best_valid_nll));
  EXPECT_TRUE(back.optimizer_state.empty());
  EXPECT_FALSE(back.norm.enabled);
  EXPECT_TRUE(back.model.hidden.empty());
  EXPECT_EQ(back.params, c.params);
}

/// Flips one bit of the raw data of a dataset, in place.
void flip_bit(const std::string& path, const std::string& dataset) {
  haddr_t offset = 0;
  {
    h5::Handle f = h5::checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open");
    h5::Handle d = h5::checked(H5Dopen2(f.get(), dataset.c_str(), H5P_DEFAULT), "dataset");
    offset = H5Dget_offset(d.get());
    ASSERT_NE(offset, HADDR_UNDEF);
  }
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(static_cast<std::streamoff>(offset) + 5);
  char byte = 0;
  io.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x10);
  io.seekp(static_cast<std::streamoff>(offset) + 5);
  io.write(&byte, 1);
}

TEST(Checkpoint, ABitFlipInAnyDatasetIsCaughtByTheChecksum) {
  TempDir dir;
  for (const char* ds : {"model/layers/1/weight", "model/normalization/y_std", "optimizer/exp_avg/layers/2/bias"}) {
    write_checkpoint(dir / "c.h5", sample());
    flip_bit(dir / "c.h5", ds);
    const std::string e = error_of(dir / "c.h5");
    EXPECT_NE(e.find("checksum mismatch"), std::string::npos) << ds << ": " << e;
    EXPECT_NE(e.find(dir / "c.h5"), std::string::npos) << e;
  }
}

TEST(Checkpoint, ChangedCountersAreCaughtByTheChecksum) {
  TempDir dir;
  write_checkpoint(dir / "c.h5", sample());
  {
    h5::Handle f = h5::checked(H5Fopen((dir / "c.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    h5::Handle a = h5::checked(H5Aopen(f.get(), "step", H5P_DEFAULT), "attr");
    const std::int64_t step = 99;
    h5::check(H5Awrite(a.get(), H5T_NATIVE_INT64, &step), "write");
  }
  EXPECT_NE(error_of(dir / "c.h5").find("checksum mismatch"), std::string::npos);
}

TEST(Checkpoint, AStoredConfigThatCannotBeReadIsRefusedLikeACorruptFile) {
  // Written with a valid checksum over an invalid config (as a file from an incompatible mdn
  // would be): the file is refused by name, never read with guessed settings.
  TempDir dir;
  Checkpoint c = sample();
  c.config = "train: {batch_size: 0}\n";
  write_checkpoint(dir / "bad.h5", c);
  const std::string e = error_of(dir / "bad.h5");
  EXPECT_NE(e.find("its stored config cannot be read"), std::string::npos) << e;
  EXPECT_NE(e.find("train.batch_size"), std::string::npos) << e;
  // The valid one gives the run's micro-batch and dataset names.
  write_checkpoint(dir / "good.h5", sample());
  const Checkpoint good = read_checkpoint(dir / "good.h5");
  EXPECT_EQ(good.micro_batch, 64);
  EXPECT_EQ(good.data_x, "x");
  EXPECT_EQ(good.data_y, "y");
}

TEST(Checkpoint, TruncatedFileIsRefused) {
  TempDir dir;
  write_checkpoint(dir / "c.h5", sample());
  const auto size = fs::file_size(dir / "c.h5");
  for (auto keep : {size / 2, size - 100, std::uintmax_t{100}}) {
    fs::copy_file(dir / "c.h5", dir / "t.h5", fs::copy_options::overwrite_existing);
    fs::resize_file(dir / "t.h5", keep);
    const std::string e = error_of(dir / "t.h5");
    EXPECT_EQ(e.rfind("checkpoint '" + (dir / "t.h5") + "'", 0), 0u) << e;
  }
}

TEST(Checkpoint, ForeignFilesAreRefusedByName) {
  TempDir dir;
  EXPECT_EQ(error_of(dir / "none.h5"), "checkpoint '" + (dir / "none.h5") + "': no such file");
  fs::create_directory(dir / "d.h5");
  EXPECT_EQ(error_of(dir / "d.h5"), "checkpoint '" + (dir / "d.h5") + "' is a directory, not a file");
  std::ofstream(dir / "text.h5") << "hello";
  EXPECT_NE(error_of(dir / "text.h5").find("cannot be opened"), std::string::npos);
  // Another HDF5 file, and a checkpoint of another format version.
  {
    h5::Handle f = h5::checked(H5Fcreate((dir / "other.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "c");
  }
  EXPECT_EQ(error_of(dir / "other.h5"),
            "checkpoint '" + (dir / "other.h5") + "': not an mdn checkpoint (no format attribute 'mdn-checkpoint')");
  write_checkpoint(dir / "v5.h5", sample());
  {
    h5::Handle f = h5::checked(H5Fopen((dir / "v5.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    h5::Handle a = h5::checked(H5Aopen(f.get(), "format_version", H5P_DEFAULT), "attr");
    const std::int64_t v = 5;
    h5::check(H5Awrite(a.get(), H5T_NATIVE_INT64, &v), "write");
  }
  EXPECT_EQ(error_of(dir / "v5.h5"),
            "checkpoint '" + (dir / "v5.h5") + "': format version 5; this mdn reads versions 1 to 4");
}

TEST(Checkpoint, HostileContentsAreRefusedBeforeAnyLargeAllocation) {
  TempDir dir;
  write_checkpoint(dir / "h.h5", sample());
  {
    h5::Handle f = h5::checked(H5Fopen((dir / "h.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    h5::Handle g = h5::checked(H5Gopen2(f.get(), "model", H5P_DEFAULT), "group");
    h5::Handle a = h5::checked(H5Aopen(g.get(), "input_dim", H5P_DEFAULT), "attr");
    const std::int64_t v = std::int64_t{1} << 40;
    h5::check(H5Awrite(a.get(), H5T_NATIVE_INT64, &v), "write");
  }
  EXPECT_EQ(error_of(dir / "h.h5"),
            "checkpoint '" + (dir / "h.h5") + "': /model attribute input_dim = 1099511627776 is out of range");
  write_checkpoint(dir / "s.h5", sample());
  {
    h5::Handle f = h5::checked(H5Fopen((dir / "s.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
    h5::check(H5Ldelete(f.get(), "model/layers/1/bias", H5P_DEFAULT), "delete");
  }
  EXPECT_EQ(error_of(dir / "s.h5"), "checkpoint '" + (dir / "s.h5") + "': dataset 'model/layers/1/bias' is missing");
}

TEST(Checkpoint, AFailedWriteIsAnErrorAndKeepsTheOldFile) {
  TempDir dir;
  write_checkpoint(dir / "c.h5", sample());
  EXPECT_THROW(write_checkpoint(dir / "missing-dir/c.h5", sample()), Error);
  EXPECT_FALSE(fs::exists(dir / "missing-dir"));
  EXPECT_NO_THROW(read_checkpoint(dir / "c.h5"));
  Checkpoint wrong = sample();
  wrong.params.resize(3);  // does not fit the model
  EXPECT_THROW(write_checkpoint(dir / "c.h5", wrong), Error);
  EXPECT_NO_THROW(read_checkpoint(dir / "c.h5"));
  EXPECT_FALSE(fs::exists(dir / ".c.h5.tmp"));
}

}  // namespace
}  // namespace mdn::test

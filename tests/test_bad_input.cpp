// Bad input of every kind, through `mdn` under mpiexec -n 2: one clear message naming the file,
// key, line or row, printed once; the documented exit code on every rank; no hang, no core dump;
// nothing written to run.dir.
#include <unistd.h>

#include <functional>
#include <limits>

#include "mdn/checkpoint.hpp"
#include "support/train_fixture.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string name;
  std::function<void(const TempDir&)> setup;  // files the case needs (may be empty)
  std::vector<std::string> args;              // mdn's arguments
  int code;                                   // expected exit code on every rank
  std::string message;                        // expected in the one error message
};

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A valid base: train.h5 (50 rows, D = 2, L = 1), valid.h5, cfg.yaml training for 2 epochs.
const char* kBase = "run:\n  dir: run\ndata:\n  train: train.h5\n  valid: valid.h5\ntrain:\n  epochs: 2\n  batch_size: 10\n";

std::vector<std::string> train(std::vector<std::string> sets, const std::string& config = "cfg.yaml") {
  std::vector<std::string> a = {"train", config};
  for (const auto& s : sets) a.insert(a.end(), {"--set", s});
  return a;
}

void dataset_file(const std::string& path, const std::vector<hsize_t>& xdims, hid_t xtype, hid_t xmem, const void* x,
                  const std::vector<hsize_t>& ydims, const void* y) {
  write_dataset(path, true, "x", xdims, xtype, xmem, x);
  write_dataset(path, false, "y", ydims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, y);
}

const std::vector<float> kOnes(200, 1.0f);

std::vector<Case> cases() {
  const auto cfg = [](const std::string& extra) {
    return [extra](const TempDir& d) { write(d / "c.yaml", std::string(kBase) + extra); };
  };
  std::vector<Case> c;
  // --- the config --------------------------------------------------------------------------------
  c.push_back({"yaml_syntax", [](const TempDir& d) { write(d / "c.yaml", "run:\n  dir: [run\n"); }, train({}, "c.yaml"), 2,
               "c.yaml:3:1: YAML syntax error: end of sequence flow not found"});
  c.push_back({"not_a_mapping", [](const TempDir& d) { write(d / "c.yaml", "- 1\n- 2\n"); }, train({}, "c.yaml"), 2,
               "c.yaml: expected a mapping of sections"});
  c.push_back({"unknown_key", cfg("model:\n  hiden: [4]\n"), train({}, "c.yaml"), 2,
               "c.yaml:10:3: unknown key 'model.hiden'; did you mean 'model.hidden'?"});
  c.push_back({"wrong_type", cfg("model:\n  components: three\n"), train({}, "c.yaml"), 2,
               "c.yaml:10:15: model.components: expected an integer, got 'three'"});
  c.push_back({"zero_batch", nullptr, train({"train.batch_size=0"}), 2,
               "--set train.batch_size=0: train.batch_size: must be >= 1, got 0"});
  c.push_back({"negative_width", nullptr, train({"model.hidden=[8, -4]"}), 2,
               "model.hidden: element 1: must be 1 .. 1048576, got -4"});
  c.push_back({"zero_components", nullptr, train({"model.components=0"}), 2,
               "model.components: must be 1 .. 4096, got 0"});
  c.push_back({"negative_lr", nullptr, train({"optimizer.lr=-0.1"}), 2, "optimizer.lr: must be > 0, got -0.1"});
  c.push_back({"zero_sigma_min", nullptr, train({"model.sigma_min=0"}), 2, "model.sigma_min: must be > 0, got 0"});
  c.push_back({"micro_batch", nullptr, train({"train.micro_batch=3"}), 2,
               "train.micro_batch (3) must divide train.batch_size (10)"});
  c.push_back({"no_length", [](const TempDir& d) { write(d / "c.yaml", "run: {dir: run}\ndata: {train: train.h5}\n"); },
               train({}, "c.yaml"), 2, "c.yaml: train.epochs or train.max_steps must be given"});
  c.push_back({"bad_signal", nullptr, train({"run.signals=[HUP]"}), 2, "run.signals: element 0: must be USR1, USR2 or TERM"});
  c.push_back({"set_unknown_key", nullptr, train({"optimizer.learning_rate=0.1"}), 2,
               "--set optimizer.learning_rate=0.1: unknown key 'optimizer.learning_rate'"});
  c.push_back({"set_malformed", nullptr, train({"optimizer.lr"}), 2, "--set optimizer.lr: expected KEY=VALUE"});
  c.push_back({"set_section", nullptr, train({"optimizer.schedule=cosine"}), 2,
               "--set optimizer.schedule=cosine: 'optimizer.schedule' is a section; --set takes one key at a time: "
               "optimizer.schedule.name, optimizer.schedule.warmup_steps"});
  c.push_back({"unknown_flag", nullptr, {"train", "cfg.yaml", "--verbose"}, 2, "The following argument was not expected: --verbose"});
  c.push_back({"missing_config", nullptr, {"train", "nope.yaml"}, 2, "nope.yaml: cannot read the config file: No such file or directory"});
  c.push_back({"config_is_directory", [](const TempDir& d) { fs::create_directory(d / "cdir"); }, {"train", "cdir"}, 2,
               "cdir: is a directory, not a config file"});
  c.push_back({"drop_last_empty_epoch", nullptr, train({"train.drop_last=true", "train.batch_size=100"}), 2,
               "train.drop_last is on and train.batch_size (100) exceeds the 50 training rows"});
  // --- files and datasets -------------------------------------------------------------------------
  c.push_back({"missing_train_file", nullptr, train({"data.train=nope.h5"}), 2, "data.train: 'nope.h5': no such file (in the working directory '"});
  c.push_back({"missing_valid_file", nullptr, train({"data.valid=nope.h5"}), 2, "data.valid: 'nope.h5': no such file"});
  c.push_back({"directory_as_data", [](const TempDir& d) { fs::create_directory(d / "ddir"); }, train({"data.train=ddir"}), 2,
               "data.train: 'ddir' is a directory, not an HDF5 file"});
  c.push_back({"pattern_matches_nothing", nullptr, train({"data.train=[train.h5, 'more-*.h5']"}), 2,
               "data.train: the pattern 'more-*.h5' matches no file"});
  c.push_back({"file_named_twice", nullptr, train({"data.train=[train.h5, './train.h5']"}), 2,
               "data.train: './train.h5' is named twice (also as 'train.h5')"});
  c.push_back({"files_differ_in_d",
               [](const TempDir& d) { write_xy(d / "wide.h5", std::vector<float>(30, 1.0f), 3, std::vector<float>(10, 1.0f), 1); },
               train({"data.train=[train.h5, wide.h5]"}), 2,
               "data.train: 'wide.h5' has 3 inputs and 1 outputs, but 'train.h5' (the first file) has 2 and 1"});
  c.push_back({"directory_in_a_list", [](const TempDir& d) { fs::create_directory(d / "ddir"); },
               train({"data.train=[train.h5, ddir]"}), 2, "data.train: 'ddir' is a directory, not an HDF5 file"});
  c.push_back({"not_hdf5", [](const TempDir& d) { write(d / "t.h5", "x,y\n1,2\n"); }, train({"data.train=t.h5"}), 2,
               "data.train: 't.h5' is not an HDF5 file"});
  c.push_back({"missing_dataset", nullptr, train({"data.y=target"}), 2,
               "data.train 'train.h5': no dataset 'target' (named by --set data.y=target: data.y; datasets in the file: "
               "'x', 'y')"});
  c.push_back({"missing_dataset_in_yaml",
               [](const TempDir& d) {
                 write(d / "c.yaml", "run: {dir: run}\ndata:\n  train: train.h5\n  x: inputs\ntrain: {epochs: 1, batch_size: 10}\n");
               },
               train({}, "c.yaml"), 2,
               "c.yaml:3:10: data.train 'train.h5': no dataset 'inputs' (named by c.yaml:4:6: data.x; datasets in the "
               "file: 'x', 'y')"});
  c.push_back({"row_counts_differ",
               [](const TempDir& d) { dataset_file(d / "b.h5", {50, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, kOnes.data(), {49, 1}, kOnes.data()); },
               train({"data.train=b.h5", "data.valid=null"}), 2, "datasets 'x' and 'y' have different row counts (50 and 49)"});
  c.push_back({"three_d",
               [](const TempDir& d) { dataset_file(d / "b.h5", {50, 2, 1}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, kOnes.data(), {50, 1}, kOnes.data()); },
               train({"data.train=b.h5", "data.valid=null"}), 2, "dataset 'x' has 3 dimensions"});
  c.push_back({"integer_dataset",
               [](const TempDir& d) {
                 const std::vector<int> ints(100, 1);
                 dataset_file(d / "b.h5", {50, 2}, H5T_STD_I32LE, H5T_NATIVE_INT, ints.data(), {50, 1}, kOnes.data());
               },
               train({"data.train=b.h5", "data.valid=null"}), 2, "dataset 'x' holds integer 4-byte values; mdn reads float32 or float64"});
  c.push_back({"string_dataset",
               [](const TempDir& d) {
                 h5::Handle str = h5::checked(H5Tcopy(H5T_C_S1), "str");
                 H5Tset_size(str.get(), 4);
                 const std::vector<char> text(50 * 4, 'a');
                 dataset_file(d / "b.h5", {50}, str.get(), str.get(), text.data(), {50, 1}, kOnes.data());
               },
               train({"data.train=b.h5", "data.valid=null"}), 2, "dataset 'x' holds string 4-byte values"});
  c.push_back({"empty_dataset",
               [](const TempDir& d) { dataset_file(d / "b.h5", {0, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nullptr, {0, 1}, nullptr); },
               train({"data.train=b.h5", "data.valid=null"}), 2, "dataset 'x' is empty (0 x 2)"});
  c.push_back({"nan_in_x",
               [](const TempDir& d) {
                 std::vector<float> x(kOnes.begin(), kOnes.begin() + 100);
                 x[2 * 37] = std::numeric_limits<float>::quiet_NaN();
                 dataset_file(d / "b.h5", {50, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, x.data(), {50, 1}, kOnes.data());
               },
               train({"data.train=b.h5", "data.valid=null"}), 2, "'b.h5': dataset 'x' has a NaN or Inf in row 37 (the first such row)"});
  c.push_back({"inf_in_y",
               [](const TempDir& d) {
                 std::vector<float> y(kOnes.begin(), kOnes.begin() + 50);
                 y[12] = -std::numeric_limits<float>::infinity();
                 dataset_file(d / "b.h5", {50, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, kOnes.data(), {50, 1}, y.data());
               },
               train({"data.valid=b.h5"}), 2, "'b.h5': dataset 'y' has a NaN or Inf in row 12 (the first such row)"});
  c.push_back({"more_ranks_than_rows",
               [](const TempDir& d) { dataset_file(d / "b.h5", {1, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, kOnes.data(), {1, 1}, kOnes.data()); },
               train({"data.train=b.h5", "data.valid=null"}), 2, "'b.h5' has 1 rows: too few for 2 ranks (use at most 1 ranks)"});
  c.push_back({"valid_other_dimension",
               [](const TempDir& d) { dataset_file(d / "b.h5", {20, 3}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, kOnes.data(), {20, 1}, kOnes.data()); },
               train({"data.valid=b.h5"}), 2, "data.valid: 'b.h5' has 3 inputs and 1 outputs, the training file 'train.h5' has 2 and 1"});
  c.push_back({"hostile_huge_header",
               [](const TempDir& d) {
                 const hsize_t huge = hsize_t{1} << 40;
                 write_dataset(d / "b.h5", true, "x", {huge, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nullptr, 1024);
                 write_dataset(d / "b.h5", false, "y", {huge, 1}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nullptr, 1024);
               },
               train({"data.train=b.h5", "data.valid=null"}), 2, "dataset 'x' has an implausible shape (1099511627776 x 2)"});
  c.push_back({"hostile_too_big_for_memory",
               [](const TempDir& d) {
                 write_dataset(d / "b.h5", true, "x", {2000000000, 1000}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nullptr, 1024);
                 write_dataset(d / "b.h5", false, "y", {2000000000, 1}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nullptr, 1024);
               },
               train({"data.train=b.h5", "data.valid=null"}), 2, "'b.h5': reading 1000000000 rows of 1000 + 1 columns needs"});
  // --- run directory and checkpoints ------------------------------------------------------------
  c.push_back({"run_dir_is_a_file", [](const TempDir& d) { write(d / "afile", ""); }, train({"run.dir=afile"}), 2,
               "--set run.dir=afile: run.dir: 'afile' exists and is not a directory"});
  c.push_back({"resume_path_missing", nullptr, train({"checkpoint.resume=gone.h5"}), 2, "checkpoint 'gone.h5': no such file"});
  c.push_back({"resume_other_format_version",
               [](const TempDir& d) {
                 ASSERT_EQ(run_mdn_ranks(d.path(), 1, train({"run.dir=donor"})).codes[0], "0");
                 const std::string ck = d / "donor/checkpoints/step-00000010.h5";
                 h5::Handle f = h5::checked(H5Fopen(ck.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
                 h5::Handle a = h5::checked(H5Aopen(f.get(), "format_version", H5P_DEFAULT), "attr");
                 const std::int64_t v = 7;
                 h5::check(H5Awrite(a.get(), H5T_NATIVE_INT64, &v), "write");
               },
               train({"checkpoint.resume=donor/checkpoints/step-00000010.h5"}), 2, "format version 7; this mdn reads versions 1 to 4"});
  c.push_back({"resume_corrupt_checkpoint",
               [](const TempDir& d) {
                 ASSERT_EQ(run_mdn_ranks(d.path(), 1, train({"run.dir=donor"})).codes[0], "0");
                 fs::resize_file(d / "donor/checkpoints/step-00000010.h5", 3000);
               },
               train({"checkpoint.resume=donor/checkpoints/step-00000010.h5"}), 2, "checkpoint 'donor/checkpoints/step-00000010.h5'"});
  c.push_back({"resume_data_of_other_dimension",
               [](const TempDir& d) {
                 ASSERT_EQ(run_mdn_ranks(d.path(), 1, train({"run.dir=donor", "data.train=t2.h5", "data.valid=null"}, "cfg.yaml")).codes[0], "2")
                     << "t2.h5 does not exist yet";
                 write_xy(d / "t2.h5", std::vector<float>(kOnes.begin(), kOnes.begin() + 100), 2,
                          std::vector<float>(kOnes.begin(), kOnes.begin() + 50), 1);
                 ASSERT_EQ(run_mdn_ranks(d.path(), 1, train({"run.dir=donor", "data.train=t2.h5", "data.valid=null"})).codes[0], "0");
                 write_xy(d / "t2.h5", std::vector<float>(150, 0.5f), 3, std::vector<float>(50, 1.0f), 1);
               },
               train({"run.dir=donor", "data.train=t2.h5", "data.valid=null", "train.epochs=3"}), 2,
               "checkpoint 'donor/checkpoints/step-00000010.h5' has 2 inputs and 1 outputs; 't2.h5' has 3 and 1"});
  c.push_back({"resume_never_with_checkpoints",
               [](const TempDir& d) { ASSERT_EQ(run_mdn_ranks(d.path(), 1, train({"run.dir=donor"})).codes[0], "0"); },
               train({"run.dir=donor", "checkpoint.resume=never"}), 2, "checkpoint.resume: never, but 'donor/checkpoints' holds step checkpoints"});
  // --- other commands -----------------------------------------------------------------------------
  c.push_back({"eval_missing_checkpoint", nullptr, {"eval", "--checkpoint", "nope.h5", "--data", "valid.h5"}, 2,
               "checkpoint 'nope.h5': no such file"});
  c.push_back({"check_unknown_key", nullptr, {"check", "cfg.yaml", "--set", "modle.hidden=[2]"}, 2,
               "unknown key 'modle.hidden'; did you mean 'model.hidden'?"});
  return c;
}

class BadInput : public testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    write_small_problem(dir_.path(), 0.1f);
    write(dir_ / "cfg.yaml", kBase);
  }
  TempDir dir_;
};

TEST_P(BadInput, OneClearErrorOnEveryRankNothingWritten) {
  const Case& c = GetParam();
  if (c.setup) c.setup(dir_);
  const auto before = dir_listing(dir_ / "donor");
  const RankedRun r = run_mdn_ranks(dir_.path(), 2, c.args, {}, 60);
  EXPECT_FALSE(r.result.timed_out) << "hang";
  EXPECT_EQ(r.codes, (std::vector<std::string>(2, std::to_string(c.code)))) << r.result.all();
  EXPECT_EQ(count(r.result.err, "mdn: error"), 1) << "one message: " << r.result.all();
  EXPECT_NE(r.result.err.find(c.message), std::string::npos) << "want: " << c.message << "\ngot: " << r.result.all();
  EXPECT_EQ(r.result.err.find("core dumped"), std::string::npos) << r.result.all();
  EXPECT_EQ(r.result.err.find("MPI_ABORT"), std::string::npos) << "settled collectively, not aborted: " << r.result.all();
  EXPECT_FALSE(fs::exists(dir_ / "run")) << "something was written to run.dir";
  EXPECT_EQ(dir_listing(dir_ / "donor"), before) << "an existing run directory was changed";
}

INSTANTIATE_TEST_SUITE_P(Cases, BadInput, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& p) { return p.param.name; });

TEST(BadInputTable, HasAtLeastThirtyCases) { EXPECT_GE(cases().size(), 30u); }

TEST(BadInputRunDir, AReadOnlyRunDirectoryIsRefusedBeforeAnythingIsWritten) {
  // As an unprivileged user: root would ignore the permissions.
  TempDir dir;
  std::vector<float> x(100, 0.5f), y(50, 1.0f);
  write_xy(dir / "train.h5", x, 2, y, 1);
  write(dir / "cfg.yaml", "run: {dir: ro/run}\ndata: {train: train.h5}\ntrain: {epochs: 1, batch_size: 10}\n");
  fs::create_directory(dir / "ro");
  for (const auto& p : {dir.path(), dir / "train.h5", dir / "cfg.yaml", dir / "ro"}) give_to_nobody(p);
  fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
  std::vector<std::string> cmd = as_nobody();
  for (const auto& a : mpi_launch(2)) cmd.push_back(a);
  cmd.insert(cmd.end(), {mdn_binary_for_nobody(dir.path()), "train", "cfg.yaml"});
  const RunResult r = run(cmd, {60, {{"HOME", dir.path()}}, dir.path()});
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_EQ(count(r.err, "mdn: error: cfg.yaml:1:12: run.dir: cannot create 'ro/run': '"), 1) << r.all();
  EXPECT_NE(r.err.find("' is not writable"), std::string::npos) << r.all();
  EXPECT_FALSE(fs::exists(dir / "ro/run"));
}

}  // namespace
}  // namespace mdn::test

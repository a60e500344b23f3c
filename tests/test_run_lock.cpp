// The run directory's lock (run_lock.hpp) in one process: open-file-description locks conflict
// between two opens of the file even in the same process, so a second RunLock stands for a
// second `mdn train`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "mdn/error.hpp"
#include "mdn/run_lock.hpp"
#include "support/process.hpp"

namespace mdn::test {
namespace {

namespace fs = std::filesystem;

TEST(RunLock, ASecondHolderIsRefusedWithTheFirstsDescriptionUntilTheFirstIsGone) {
  TempDir tmp;
  const std::string dir = tmp / "run";
  const std::string me = "process " + std::to_string(getpid());
  {
    const RunLock first(dir, "run.dir");
    EXPECT_TRUE(first.warning().empty()) << first.warning();
    const std::optional<std::string> holder = RunLock::holder(dir);
    ASSERT_TRUE(holder.has_value());
    EXPECT_NE(holder->find("mdn train on host "), std::string::npos) << *holder;
    EXPECT_NE(holder->find(me + ", since "), std::string::npos) << *holder;
    try {
      const RunLock second(dir, "cfg.yaml: run.dir");
      ADD_FAILURE() << "a second lock on the same run directory was granted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Exit::input);
      const std::string m = e.what();
      EXPECT_EQ(m.rfind("cfg.yaml: run.dir: '" + dir + "' is in use by another training (mdn train on host ", 0), 0) << m;
      EXPECT_NE(m.find(me), std::string::npos) << m;
    }
  }
  EXPECT_FALSE(RunLock::holder(dir).has_value());  // released with its holder, the file left
  EXPECT_TRUE(fs::exists(dir + "/mdn.lock"));
  const RunLock again(dir, "run.dir");
  EXPECT_TRUE(RunLock::holder(dir).has_value());
}

TEST(RunLock, RemovingWhatItCreatedLeavesTheRunDirectoryAsItWas) {
  TempDir tmp;
  {  // nothing existed: the file and the three directories go
    RunLock lock(tmp / "a/b/run", "run.dir");
    ASSERT_TRUE(fs::exists(tmp / "a/b/run/mdn.lock"));
    lock.remove_created();
    EXPECT_FALSE(fs::exists(tmp / "a"));
  }
  {  // an existing run directory with an existing lock file: both stay
    fs::create_directories(tmp / "old");
    { const RunLock first(tmp / "old", "run.dir"); }
    RunLock lock(tmp / "old", "run.dir");
    lock.remove_created();
    EXPECT_TRUE(fs::exists(tmp / "old/mdn.lock"));
  }
  {  // an existing directory without a lock file: the file goes, the directory and its files stay
    fs::create_directories(tmp / "kept");
    std::ofstream(tmp / "kept/metrics.jsonl") << "{}\n";
    RunLock lock(tmp / "kept", "run.dir");
    lock.remove_created();
    EXPECT_FALSE(fs::exists(tmp / "kept/mdn.lock"));
    EXPECT_TRUE(fs::exists(tmp / "kept/metrics.jsonl"));
  }
}

TEST(RunLock, AskingAboutADirectoryWithoutALockWritesNothing) {
  TempDir tmp;
  EXPECT_FALSE(RunLock::holder(tmp / "absent").has_value());
  EXPECT_FALSE(fs::exists(tmp / "absent"));
  fs::create_directories(tmp / "empty");
  EXPECT_FALSE(RunLock::holder(tmp / "empty").has_value());
  EXPECT_TRUE(fs::is_empty(tmp / "empty"));
}

}  // namespace
}  // namespace mdn::test

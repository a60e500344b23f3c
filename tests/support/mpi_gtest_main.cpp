// GoogleTest main for MPI tests.
//
// Every rank runs every test. A listener replaces GoogleTest's printer: rank 0 prints the
// progress once; at the end of each test the failures of all ranks are gathered to rank 0 and
// printed there with their rank, and a test counts as failed when it failed on any rank. The
// process exit code is non-zero on every rank when any test failed anywhere.
#include <mpi.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "support/test_seed.hpp"

namespace {

class MpiListener : public testing::EmptyTestEventListener {
 public:
  MpiListener(int rank, int size) : rank_(rank), size_(size) {}

  int global_failures() const { return static_cast<int>(failed_tests_.size()); }

  void OnTestProgramStart(const testing::UnitTest&) override {
    if (rank_ == 0) {
      std::printf("[==========] MPI test run on %d rank%s, test seed %llu (MDN_TEST_SEED)\n",
                  size_, size_ == 1 ? "" : "s",
                  static_cast<unsigned long long>(mdn::test::seed()));
      std::fflush(stdout);
    }
  }

  void OnTestStart(const testing::TestInfo& info) override {
    local_failures_.clear();
    start_ = std::chrono::steady_clock::now();
    if (rank_ == 0) {
      std::printf("[ RUN      ] %s.%s\n", info.test_suite_name(), info.name());
      std::fflush(stdout);
    }
  }

  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::string text = r.file_name() ? std::string(r.file_name()) : std::string("unknown file");
    text += ":" + std::to_string(r.line_number()) + ": Failure\n" + r.message() + "\n";
    if (rank_ == 0) {
      std::printf("%s", text.c_str());
      std::fflush(stdout);
    }
    local_failures_ += text;
  }

  void OnTestEnd(const testing::TestInfo& info) override {
    // Collective: every rank runs the same tests in the same order.
    int local_len = static_cast<int>(local_failures_.size());
    std::vector<int> lens(static_cast<std::size_t>(size_));
    MPI_Gather(&local_len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::vector<int> displs(static_cast<std::size_t>(size_), 0);
    int total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[static_cast<std::size_t>(r)] = total;
      total += lens[static_cast<std::size_t>(r)];
    }
    std::string all(static_cast<std::size_t>(rank_ == 0 ? total : 0), '\0');
    MPI_Gatherv(local_failures_.data(), local_len, MPI_CHAR, all.data(), lens.data(),
                displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank_ != 0) return;

    std::string failing_ranks;
    for (int r = 0; r < size_; ++r) {
      const auto n = static_cast<std::size_t>(lens[static_cast<std::size_t>(r)]);
      if (n == 0) continue;
      failing_ranks += (failing_ranks.empty() ? "" : ",") + std::to_string(r);
      if (r == 0) continue;  // rank 0 printed its own failures as they happened
      std::string text = all.substr(static_cast<std::size_t>(displs[static_cast<std::size_t>(r)]), n);
      std::printf("[rank %d] %s", r, text.c_str());
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start_).count();
    const std::string name = std::string(info.test_suite_name()) + "." + info.name();
    if (failing_ranks.empty()) {
      std::printf("[%s] %s (%lld ms)\n", info.result()->Skipped() ? " SKIPPED  " : "       OK ",
                  name.c_str(), static_cast<long long>(ms));
      ++passed_;
    } else {
      std::printf("[  FAILED  ] %s (%lld ms, failed on rank %s)\n", name.c_str(),
                  static_cast<long long>(ms), failing_ranks.c_str());
      failed_tests_.push_back(name);
    }
    std::fflush(stdout);
  }

  void OnTestProgramEnd(const testing::UnitTest&) override {
    // Rank 0 alone knows the global results; share the count so every rank exits alike.
    int failures = static_cast<int>(failed_tests_.size());
    MPI_Bcast(&failures, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank_ != 0) {
      failed_tests_.assign(static_cast<std::size_t>(failures), std::string());
      return;
    }
    std::printf("[==========] %d tests ran on %d rank%s.\n", passed_ + failures, size_,
                size_ == 1 ? "" : "s");
    std::printf("[  PASSED  ] %d tests.\n", passed_);
    if (failures > 0) {
      std::printf("[  FAILED  ] %d tests, listed below:\n", failures);
      for (const auto& n : failed_tests_) std::printf("[  FAILED  ] %s\n", n.c_str());
    }
    std::fflush(stdout);
  }

 private:
  int rank_;
  int size_;
  std::string local_failures_;
  std::chrono::steady_clock::time_point start_;
  int passed_ = 0;
  std::vector<std::string> failed_tests_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  testing::InitGoogleTest(&argc, argv);
  auto& listeners = testing::UnitTest::GetInstance()->listeners();
  delete listeners.Release(listeners.default_result_printer());
  auto* listener = new MpiListener(rank, size);  // owned by GoogleTest
  listeners.Append(listener);

  const int local = RUN_ALL_TESTS();
  int failed = (local != 0 || listener->global_failures() > 0) ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return failed;
}

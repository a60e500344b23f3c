// Sinks for the run loop that keep what it decided, for tests in one process.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mdn/run_loop.hpp"

namespace mdn::test {

/// Every record, in order.
class RecordedMetrics final : public MetricsSink {
 public:
  void write(const nlohmann::json& record) override { records.push_back(record); }
  /// The records of one kind.
  std::vector<nlohmann::json> of(const std::string& kind) const {
    std::vector<nlohmann::json> out;
    for (const auto& r : records)
      if (r.at("kind") == kind) out.push_back(r);
    return out;
  }
  std::vector<nlohmann::json> records;
};

/// Every checkpoint the loop saved, in order, kept in memory.
class RecordedCheckpoints final : public CheckpointSink {
 public:
  std::string save_step(const Checkpoint& ck) override {
    steps.push_back(ck);
    return step_path(ck.step);
  }
  std::string save_best(const Checkpoint& ck) override {
    bests.push_back(ck);
    return "best";
  }
  std::string step_path(std::int64_t step) const override { return "step " + std::to_string(step); }
  /// The steps of the step checkpoints, in order.
  std::vector<std::int64_t> step_numbers() const {
    std::vector<std::int64_t> out;
    for (const auto& c : steps) out.push_back(c.step);
    return out;
  }
  std::vector<Checkpoint> steps, bests;
};

}  // namespace mdn::test

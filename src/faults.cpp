#include "mdn/faults.hpp"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <set>
#include <sstream>
#include <thread>

#include "mdn/error.hpp"

namespace mdn {

Faults Faults::parse(const std::string& spec) {
  static const std::set<std::string> known = {"nonfinite", "overflow", "slow", "stall", "drift", "crash",
                                              "slow-checkpoint"};
  Faults f;
  f.spec_ = spec;
  std::stringstream items(spec);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.empty()) continue;
    std::stringstream parts(item);
    std::string name, kv;
    std::getline(parts, name, '@');
    if (known.count(name) == 0) throw input_error("MDN_FAULT: unknown fault '{}'", name);
    auto& params = f.faults_[name];
    while (std::getline(parts, kv, '@')) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos) throw input_error("MDN_FAULT: expected key=value in '{}'", kv);
      params[kv.substr(0, eq)] = std::stoll(kv.substr(eq + 1));
    }
  }
  return f;
}

const Faults& Faults::none() {
  static const Faults nothing;
  return nothing;
}

Faults Faults::from_environment() {
  const char* spec = std::getenv("MDN_FAULT");
  return spec != nullptr ? parse(spec) : Faults{};
}

void Faults::before_step(std::int64_t step, int rank) const {
  if (at("slow", step, rank)) std::this_thread::sleep_for(std::chrono::milliseconds(param("slow", "ms", 0)));
  if (at("stall", step, rank)) std::this_thread::sleep_for(std::chrono::hours(1));
}

bool Faults::poisons_gradient(std::int64_t step, int rank) const { return at("nonfinite", step, rank); }

int Faults::quantum_shift(std::int64_t step, int rank) const { return at("overflow", step, rank) ? 8 : 0; }

bool Faults::drifts(std::int64_t step, int rank) const { return at("drift", step, rank); }

void Faults::at_checkpoint_stage(WriteStage stage, std::int64_t step) const {
  if (at("crash", step, 0) && param("crash", "stage", 0) == static_cast<int>(stage)) std::raise(SIGKILL);
  if (stage == WriteStage::half_written && at("slow-checkpoint", step, 0))
    std::this_thread::sleep_for(std::chrono::milliseconds(param("slow-checkpoint", "ms", 0)));
}

bool Faults::at(const std::string& name, std::int64_t step, int rank) const {
  const auto it = faults_.find(name);
  if (it == faults_.end()) return false;
  const auto& p = it->second;
  if (p.count("step") != 0 && p.at("step") != step) return false;
  if (p.count("rank") != 0 && p.at("rank") != rank) return false;
  return true;
}

std::int64_t Faults::param(const std::string& name, const std::string& key, std::int64_t fallback) const {
  const auto it = faults_.find(name);
  if (it == faults_.end() || it->second.count(key) == 0) return fallback;
  return it->second.at(key);
}

}  // namespace mdn

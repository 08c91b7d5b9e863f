#include "kspm/common/lifecycle.h"

#include "spdlog/spdlog.h"

namespace kspm::common {

absl::Status Lifecycle::Start(std::vector<Step> steps) {
  for (auto& step : steps) {
    spdlog::debug("starting {}", step.name);
    absl::Status s = step.start ? step.start() : absl::OkStatus();
    if (!s.ok()) {
      Stop();
      return absl::Status(s.code(), step.name + ": " + std::string(s.message()));
    }
    started_.push_back(std::move(step));
  }
  return absl::OkStatus();
}

void Lifecycle::Stop() {
  while (!started_.empty()) {
    Step step = std::move(started_.back());
    started_.pop_back();
    if (step.stop) {
      spdlog::debug("stopping {}", step.name);
      step.stop();
    }
  }
}

std::vector<std::string> Lifecycle::started() const {
  std::vector<std::string> names;
  for (const auto& s : started_) names.push_back(s.name);
  return names;
}

}  // namespace kspm::common

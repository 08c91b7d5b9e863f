#include "kspm/agent/held_results.h"

namespace kspm::agent {

std::string HeldResults::Key(const v1::CheckResult& r) {
  return r.check_id() + "|" + r.benchmark();
}

void HeldResults::Apply(const v1::NodeReport& report, std::map<std::string, std::string>* into) {
  if (report.full()) into->clear();
  for (const auto& r : report.results()) (*into)[Key(r)] = r.SerializeAsString();
}

void HeldResults::Queued(const v1::NodeReport& report) {
  std::lock_guard lock(mu_);
  Apply(report, &projected_);
  if (report.full()) {
    projected_status_.clear();
    last_full_ = std::chrono::steady_clock::now();
  }
  for (const auto& r : report.results()) projected_status_[Key(r)] = r.status();
}

void HeldResults::Acked(const v1::NodeReport& report) {
  std::lock_guard lock(mu_);
  Apply(report, &acked_);
}

void HeldResults::Lost() {
  std::lock_guard lock(mu_);
  needs_full_ = true;
}

bool HeldResults::TakeNeedsFull() {
  std::lock_guard lock(mu_);
  return std::exchange(needs_full_, false);
}

bool HeldResults::Holds(const v1::CheckResult& r) const {
  const std::string key = Key(r);
  const std::string bytes = r.SerializeAsString();
  std::lock_guard lock(mu_);
  const auto acked = acked_.find(key);
  const auto projected = projected_.find(key);
  return acked != acked_.end() && acked->second == bytes && projected != projected_.end() &&
         projected->second == bytes;
}

bool HeldResults::WillHold(const v1::CheckResult& r) const {
  const std::string key = Key(r);
  const std::string bytes = r.SerializeAsString();
  std::lock_guard lock(mu_);
  const auto it = projected_.find(key);
  return it != projected_.end() && it->second == bytes;
}

v1::Status HeldResults::HeldStatus(const v1::CheckResult& r) const {
  std::lock_guard lock(mu_);
  const auto it = projected_status_.find(Key(r));
  return it == projected_status_.end() ? v1::STATUS_UNSPECIFIED : it->second;
}

bool HeldResults::OnlyHoldsKeysIn(const std::set<std::string>& keys) const {
  std::lock_guard lock(mu_);
  for (const auto* held : {&acked_, &projected_}) {
    for (const auto& [key, bytes] : *held) {
      if (!keys.contains(key)) return false;
    }
  }
  return true;
}

std::chrono::steady_clock::time_point HeldResults::last_full() const {
  std::lock_guard lock(mu_);
  return last_full_;
}

}  // namespace kspm::agent

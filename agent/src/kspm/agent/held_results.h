#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "kspm/v1/results.pb.h"

namespace kspm::agent {

// The agent's one record of what the collector holds of this node's results: every report
// (periodic scan, drift, resync) is recorded when it is queued and again when the collector
// acknowledges it. A result is "held" only when the collector has acknowledged it *and* no
// report still queued carries something else for it; every diff (periodic deltas, drift
// re-checks) is taken against this, never against what the agent itself last computed or sent.
//
// Why both: a report that is not acknowledged is not held (it may never arrive), and a queued
// report that will arrive later would overwrite an older verdict, so a result equal to either
// one alone can still be wrong at the collector. Sending a result twice is harmless (the
// collector does not rewrite an unchanged result); not sending it can leave a false verdict.
//
// Reports are delivered in the order they are queued. A queued report that will never arrive
// (refused by the collector, dropped by a full spool) makes the record unsure: `Lost()` asks for
// the next report to be full, which re-establishes everything.
//
// Thread-safe. `Sequence()` additionally orders "read the host, diff, queue" across threads: a
// report built from an earlier read is never queued after one built from a later read.
class HeldResults {
 public:
  // check_id|benchmark, the key under which the collector stores a node's result.
  static std::string Key(const v1::CheckResult& r);

  // Hold the returned lock from reading the host until the report is queued.
  [[nodiscard]] std::unique_lock<std::mutex> Sequence() { return std::unique_lock(sequence_mu_); }

  // `report` is in the queue to the collector (a full report replaces everything).
  void Queued(const v1::NodeReport& report);
  // The collector acknowledged `report` as committed.
  void Acked(const v1::NodeReport& report);
  // A queued report will never be delivered: the next report must be full.
  void Lost();
  // Whether the next report must be full (and clears the request).
  bool TakeNeedsFull();

  // Whether the collector holds exactly `r`, now and once the queue has drained.
  bool Holds(const v1::CheckResult& r) const;
  // Whether the collector will hold exactly `r` once the queue has drained (what drift compares
  // with: a change already on its way is not a new change).
  bool WillHold(const v1::CheckResult& r) const;
  // The status the collector will hold for `r`'s key once the queue drains (UNSPECIFIED: none).
  v1::Status HeldStatus(const v1::CheckResult& r) const;
  // Whether every key the collector will hold is among `keys` (else a full report is needed to
  // delete what no longer exists).
  bool OnlyHoldsKeysIn(const std::set<std::string>& keys) const;

  // When the last full report was queued (steady clock; epoch when never).
  std::chrono::steady_clock::time_point last_full() const;

 private:
  static void Apply(const v1::NodeReport& report, std::map<std::string, std::string>* into);

  mutable std::mutex mu_;
  std::mutex sequence_mu_;
  // Serialized result per key: what the collector acknowledged, and what it will hold once
  // every queued report is delivered.
  std::map<std::string, std::string> acked_;
  std::map<std::string, std::string> projected_;
  std::map<std::string, v1::Status> projected_status_;
  bool needs_full_ = true;
  std::chrono::steady_clock::time_point last_full_{};
};

}  // namespace kspm::agent

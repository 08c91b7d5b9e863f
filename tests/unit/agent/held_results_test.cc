// HeldResults: what the agent believes the collector holds, the base of every diff it sends.
#include "kspm/agent/held_results.h"

#include <gtest/gtest.h>

namespace kspm::agent {
namespace {

v1::CheckResult Result(const std::string& id, v1::Status status) {
  v1::CheckResult r;
  r.set_check_id(id);
  r.set_benchmark("cis-kubernetes-1.12");
  r.set_status(status);
  return r;
}

v1::NodeReport Report(bool full, std::vector<v1::CheckResult> results) {
  v1::NodeReport report;
  report.set_full(full);
  for (auto& r : results) *report.add_results() = std::move(r);
  return report;
}

TEST(HeldResultsTest, AResultIsHeldOnlyOnceAcknowledged) {
  HeldResults held;
  const auto report = Report(true, {Result("a", v1::STATUS_FAIL)});
  held.Queued(report);
  EXPECT_FALSE(held.Holds(Result("a", v1::STATUS_FAIL)));
  EXPECT_TRUE(held.WillHold(Result("a", v1::STATUS_FAIL)));
  held.Acked(report);
  EXPECT_TRUE(held.Holds(Result("a", v1::STATUS_FAIL)));
  EXPECT_FALSE(held.Holds(Result("a", v1::STATUS_PASS)));
}

// The reported defect: drift sends PASS (acked), the revert to FAIL is missed, and the next
// periodic scan computes FAIL again. FAIL is what the agent sent before the drift report, but
// not what the collector holds: it must be sent.
TEST(HeldResultsTest, AMissedRevertIsNotHeld) {
  HeldResults held;
  const auto scan = Report(true, {Result("a", v1::STATUS_FAIL)});
  held.Queued(scan);
  held.Acked(scan);
  const auto drift = Report(false, {Result("a", v1::STATUS_PASS)});
  held.Queued(drift);
  held.Acked(drift);
  EXPECT_FALSE(held.Holds(Result("a", v1::STATUS_FAIL)));
  EXPECT_EQ(held.HeldStatus(Result("a", v1::STATUS_FAIL)), v1::STATUS_PASS);
}

// A queued report that has not arrived yet will overwrite the acknowledged verdict: a result
// equal to the acknowledged one alone is not held either.
TEST(HeldResultsTest, AQueuedChangeOverridesTheAcknowledgedVerdict) {
  HeldResults held;
  const auto scan = Report(true, {Result("a", v1::STATUS_FAIL)});
  held.Queued(scan);
  held.Acked(scan);
  held.Queued(Report(false, {Result("a", v1::STATUS_PASS)}));  // still in the spool
  EXPECT_FALSE(held.Holds(Result("a", v1::STATUS_FAIL)));
  EXPECT_FALSE(held.WillHold(Result("a", v1::STATUS_FAIL)));
  EXPECT_TRUE(held.WillHold(Result("a", v1::STATUS_PASS)));
}

TEST(HeldResultsTest, AFullReportReplacesEverything) {
  HeldResults held;
  const auto first = Report(true, {Result("a", v1::STATUS_FAIL), Result("b", v1::STATUS_PASS)});
  held.Queued(first);
  held.Acked(first);
  EXPECT_FALSE(held.OnlyHoldsKeysIn({HeldResults::Key(Result("a", v1::STATUS_FAIL))}));
  const auto second = Report(true, {Result("a", v1::STATUS_FAIL)});
  held.Queued(second);
  EXPECT_FALSE(held.OnlyHoldsKeysIn({HeldResults::Key(Result("a", v1::STATUS_FAIL))}))
      << "b is still acknowledged until the full report is";
  held.Acked(second);
  EXPECT_TRUE(held.OnlyHoldsKeysIn({HeldResults::Key(Result("a", v1::STATUS_FAIL))}));
  EXPECT_EQ(held.HeldStatus(Result("b", v1::STATUS_PASS)), v1::STATUS_UNSPECIFIED);
}

TEST(HeldResultsTest, ALostReportAsksForAFullOne) {
  HeldResults held;
  EXPECT_TRUE(held.TakeNeedsFull()) << "nothing is known at start";
  EXPECT_FALSE(held.TakeNeedsFull());
  held.Lost();
  EXPECT_TRUE(held.TakeNeedsFull());
  EXPECT_FALSE(held.TakeNeedsFull());
}

TEST(HeldResultsTest, LastFullIsWhenAFullReportWasQueued) {
  HeldResults held;
  EXPECT_EQ(held.last_full(), std::chrono::steady_clock::time_point{});
  held.Queued(Report(false, {Result("a", v1::STATUS_FAIL)}));
  EXPECT_EQ(held.last_full(), std::chrono::steady_clock::time_point{});
  const auto before = std::chrono::steady_clock::now();
  held.Queued(Report(true, {Result("a", v1::STATUS_FAIL)}));
  EXPECT_GE(held.last_full(), before);
}

}  // namespace
}  // namespace kspm::agent

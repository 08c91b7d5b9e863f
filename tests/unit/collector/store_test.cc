#include "kspm/collector/store/store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "unit/collector/store_test_support.h"

namespace kspm::collector::store {
namespace {

KSPM_STORE_ENGINES(StoreTest);

// An agent's scan that found nothing new arrives as an empty report: the node is seen, and no
// scan row is written for it (the table would otherwise grow by every node every interval).
TEST_P(StoreTest, AHeartbeatMovesLastSeenWithoutAScanRow) {
  ASSERT_TRUE(
      store_->CommitReport(Report("s1", "n", {Result("a", "4.2.1", v1::STATUS_FAIL)}), now_).ok());
  const auto later = now_ + std::chrono::minutes(5);
  auto beat = store_->CommitReport(Report("s2", "n", {}, /*full=*/false), later);
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 1);
  FindingFilter f;
  f.now = later;
  const auto found = store_->Findings(f);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(common::FromProto((*found)[0].reported_at()),
            common::FromUnixMillis(common::ToUnixMillis(later)));
  EXPECT_EQ((*found)[0].result().status(), v1::STATUS_FAIL);
  // A node never seen before takes the full path, even with an empty report.
  ASSERT_TRUE(store_->CommitReport(Report("s3", "fresh", {}, /*full=*/false), later).ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM nodes"), 2);
}

TEST_P(StoreTest, CommitsAndRedeliveryIsIdempotent) {
  const auto rep =
      Report("scan-1", "node-a",
             {Result("a", "4.2.1", v1::STATUS_FAIL), Result("b", "4.2.2", v1::STATUS_PASS)});
  auto first = store_->CommitReport(rep, now_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->duplicate);
  EXPECT_EQ(first->results, 2u);
  EXPECT_EQ(first->transitions, 0u);  // first verdicts are not changes
  auto again = store_->CommitReport(rep, now_);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 2);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM transitions"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 1);
}

TEST_P(StoreTest, RecordsTransitionsOnlyWhenTheVerdictChanges) {
  ASSERT_TRUE(
      store_->CommitReport(Report("s1", "n", {Result("a", "4.2.1", v1::STATUS_FAIL)}), now_).ok());
  ASSERT_TRUE(
      store_->CommitReport(Report("s2", "n", {Result("a", "4.2.1", v1::STATUS_FAIL)}), now_).ok());
  auto third =
      store_->CommitReport(Report("s3", "n", {Result("a", "4.2.1", v1::STATUS_PASS)}), now_);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->transitions, 1u);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM transitions"), 1);
  EXPECT_EQ(Count("SELECT old_status FROM transitions ORDER BY id DESC LIMIT 1"), v1::STATUS_FAIL);
}

TEST_P(StoreTest, FullReportDropsResultsItNoLongerCarries) {
  ASSERT_TRUE(store_
                  ->CommitReport(Report("s1", "n",
                                        {Result("a", "1", v1::STATUS_FAIL),
                                         Result("b", "2", v1::STATUS_FAIL)}),
                                 now_)
                  .ok());
  ASSERT_TRUE(
      store_->CommitReport(Report("s2", "n", {Result("a", "1", v1::STATUS_FAIL)}, false), now_)
          .ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 2);  // partial: b stays
  ASSERT_TRUE(
      store_->CommitReport(Report("s3", "n", {Result("a", "1", v1::STATUS_FAIL)}), now_).ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 1);
}

// Two objects that read alike (`Pod a/b`) stay two results: the store keys an object by its
// kind, namespace, name and container, not by the text shown to people; a page token carries
// the same fields, so paging walks past both.
TEST_P(StoreTest, ObjectsAreKeyedByTheirFieldsNotByTheirText) {
  auto about = [](const std::string& ns, const std::string& name, const std::string& container) {
    v1::CheckResult r = Result("pod.privileged", "5.2.2", v1::STATUS_FAIL);
    r.mutable_resource()->set_kind("Pod");
    r.mutable_resource()->set_namespace_(ns);
    r.mutable_resource()->set_name(name);
    r.mutable_resource()->set_container(container);
    return r;
  };
  ASSERT_TRUE(
      store_
          ->CommitReport(Report("s1", "cluster",
                                {about("a", "b", ""), about("", "a/b", ""), about("a", "b", "c")}),
                         now_)
          .ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 3);
  FindingFilter filter;
  filter.limit = 1;
  std::set<std::string> seen;
  for (int page = 0; page < 4; ++page) {
    auto found = store_->Findings(filter);
    ASSERT_TRUE(found.ok()) << found.status();
    if (found->empty()) break;
    const auto& r = (*found)[0].result().resource();
    seen.insert(r.namespace_() + "|" + r.name() + "|" + r.container());
    filter.after = FindingPosition((*found)[0]);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"a|b|", "|a/b|", "a|b|c"}));
}

// A scope with nothing scored evaluated has no score: n/a, not 100.
TEST_P(StoreTest, AScopeWithNothingScoredEvaluatedIsNotScored) {
  ASSERT_TRUE(store_
                  ->CommitReport(Report("s1", "n1",
                                        {Result("a", "1.1.1", v1::STATUS_MANUAL),
                                         Result("b", "1.1.2", v1::STATUS_PASS, v1::SEVERITY_HIGH,
                                                /*scored=*/false)}),
                                 now_)
                  .ok());
  auto summary = store_->Summary("", now_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_FALSE(summary->overall().evaluated());
  EXPECT_EQ(common::FormatScore(summary->overall().score(), summary->overall().evaluated(),
                                summary->overall().counts()),
            "n/a (not scored)");
  ASSERT_TRUE(
      store_->CommitReport(Report("s2", "n2", {Result("c", "1.1.3", v1::STATUS_FAIL)}), now_).ok());
  summary = store_->Summary("", now_);
  EXPECT_TRUE(summary->overall().evaluated());
  EXPECT_EQ(summary->overall().score(), 0.0);
  for (const auto& n : summary->nodes()) EXPECT_EQ(n.evaluated(), n.scope() == "n2") << n.scope();
}

TEST_P(StoreTest, FindingsFilterByNodeStatusSeverityAndIdPrefix) {
  ASSERT_TRUE(
      store_
          ->CommitReport(Report("s1", "a",
                                {Result("x", "4.2.1", v1::STATUS_FAIL, v1::SEVERITY_CRITICAL),
                                 Result("y", "4.2.10", v1::STATUS_WARN, v1::SEVERITY_LOW),
                                 Result("z", "1.1.1", v1::STATUS_PASS)}),
                         now_)
          .ok());
  ASSERT_TRUE(
      store_->CommitReport(Report("s2", "b", {Result("x", "4.2.1", v1::STATUS_FAIL)}), now_).ok());
  auto all = store_->Findings({});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);  // PASS hidden by default
  FindingFilter f;
  f.node = "a";
  f.id = "4.2";
  auto by_prefix = store_->Findings(f);
  ASSERT_TRUE(by_prefix.ok());
  EXPECT_EQ(by_prefix->size(), 2u);
  f.min_severity = v1::SEVERITY_HIGH;
  auto severe = store_->Findings(f);
  ASSERT_TRUE(severe.ok());
  ASSERT_EQ(severe->size(), 1u);
  EXPECT_EQ((*severe)[0].result().check_id(), "x");
  EXPECT_EQ((*severe)[0].cluster(), "prod");
  FindingFilter passes;
  passes.statuses = {v1::STATUS_PASS};
  EXPECT_EQ(store_->Findings(passes)->size(), 1u);
}

TEST_P(StoreTest, SummaryScoreIsSeverityWeightedOverScoredResults) {
  ASSERT_TRUE(
      store_
          ->CommitReport(
              Report("s1", "a",
                     {Result("p", "1", v1::STATUS_PASS, v1::SEVERITY_CRITICAL),     // 10
                      Result("f", "2", v1::STATUS_FAIL, v1::SEVERITY_MEDIUM),       // 4
                      Result("w", "3", v1::STATUS_WARN, v1::SEVERITY_HIGH, false),  // ignored
                      Result("n", "4", v1::STATUS_NOT_APPLICABLE)}),
              now_)
          .ok());
  auto s = store_->Summary("", now_);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NEAR(s->overall().score(), 100.0 * 10 / 14, 1e-9);
  EXPECT_EQ(s->overall().counts().fail(), 1u);
  EXPECT_EQ(s->overall().counts().warn(), 1u);
  EXPECT_EQ(s->overall().counts().not_applicable(), 1u);
  ASSERT_EQ(s->nodes_size(), 1);
  EXPECT_EQ(s->nodes(0).scope(), "a");
  EXPECT_EQ(s->failed_by_severity().at("medium"), 1u);
}

TEST_P(StoreTest, NodesCarryIdentityAndCounts) {
  auto rep = Report("s1", "a", {Result("f", "2", v1::STATUS_FAIL)});
  rep.mutable_node()->set_agent_version("9.9");
  ASSERT_TRUE(store_->CommitReport(rep, now_).ok());
  auto nodes = store_->Nodes("prod", now_);
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].identity().agent_version(), "9.9");
  EXPECT_EQ((*nodes)[0].counts().fail(), 1u);
  EXPECT_EQ((*nodes)[0].last_scan_id(), "s1");
  EXPECT_TRUE(store_->Nodes("other", now_)->empty());
}

TEST_P(StoreTest, BatchRollsBackOnlyTheBadReport) {
  const auto good = Report("g", "a", {Result("x", "1", v1::STATUS_FAIL)});
  const auto bad = Report("", "b", {Result("x", "1", v1::STATUS_FAIL)});  // no scan id
  auto out = store_->CommitBatch({&good, &bad}, now_);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].ok());
  EXPECT_FALSE(out[1].ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM nodes"), 1);
}

TEST_P(StoreTest, SummaryCountsStayEqualToTheResultsThroughChanges) {
  auto check = [&] {
    auto s = store_->Summary("", now_);
    ASSERT_TRUE(s.ok());
    const auto& c = s->overall().counts();
    EXPECT_EQ(static_cast<int>(c.pass()), Count("SELECT COUNT(*) FROM results WHERE status = 1"));
    EXPECT_EQ(static_cast<int>(c.fail()), Count("SELECT COUNT(*) FROM results WHERE status = 2"));
    EXPECT_EQ(static_cast<int>(c.warn()), Count("SELECT COUNT(*) FROM results WHERE status = 3"));
    EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
              Count("SELECT COUNT(*) FROM results"));
  };
  ASSERT_TRUE(store_
                  ->CommitReport(
                      Report("s1", "a",
                             {Result("x", "1", v1::STATUS_FAIL), Result("y", "2", v1::STATUS_PASS),
                              Result("z", "3", v1::STATUS_WARN)}),
                      now_)
                  .ok());
  check();
  // A verdict and a severity change, partial report.
  ASSERT_TRUE(
      store_
          ->CommitReport(
              Report("s2", "a", {Result("x", "1", v1::STATUS_PASS, v1::SEVERITY_LOW)}, false), now_)
          .ok());
  check();
  // A full report that drops two results.
  ASSERT_TRUE(
      store_->CommitReport(Report("s3", "a", {Result("x", "1", v1::STATUS_FAIL)}), now_).ok());
  check();
  EXPECT_EQ(store_->Summary("", now_)->overall().counts().pass(), 0u);
  // One report that lists a result twice: one row, counted once (the later copy wins).
  ASSERT_TRUE(store_
                  ->CommitReport(Report("s-twice", "a",
                                        {Result("x", "1", v1::STATUS_PASS),
                                         Result("x", "1", v1::STATUS_FAIL, v1::SEVERITY_LOW)}),
                                 now_)
                  .ok());
  check();
  ASSERT_TRUE(
      store_->CommitReport(Report("s3b", "a", {Result("x", "1", v1::STATUS_FAIL)}), now_).ok());
  check();
  // A duplicate changes nothing.
  ASSERT_TRUE(
      store_->CommitReport(Report("s3", "a", {Result("x", "1", v1::STATUS_PASS)}), now_).ok());
  check();
  EXPECT_EQ(store_->Summary("", now_)->overall().counts().fail(), 1u);
}

// A full report that repeats results unchanged writes no row for them; a changed one is written,
// a missing one deleted, and the counts stay equal to the rows.
TEST_P(StoreTest, UnchangedResultsAreNotRewritten) {
  ASSERT_TRUE(store_
                  ->CommitReport(
                      Report("s1", "a",
                             {Result("x", "1", v1::STATUS_FAIL), Result("y", "2", v1::STATUS_PASS),
                              Result("z", "3", v1::STATUS_PASS)}),
                      now_)
                  .ok());
  const auto later = now_ + std::chrono::minutes(5);
  auto second = store_->CommitReport(
      Report("s2", "a", {Result("x", "1", v1::STATUS_FAIL), Result("y", "2", v1::STATUS_FAIL)}),
      later);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->results, 2u);
  EXPECT_EQ(second->written, 1u);  // y changed; x is the same result
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'x' AND scan_id = 's1'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'y' AND scan_id = 's2'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'z'"), 0);  // dropped
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
            Count("SELECT COUNT(*) FROM results"));
  FindingFilter filter;
  filter.statuses = {v1::STATUS_FAIL};
  auto findings = store_->Findings(filter);
  ASSERT_TRUE(findings.ok());
  ASSERT_EQ(findings->size(), 2u);
  // Both vouched for by the latest report, whether or not their row was rewritten.
  for (const auto& f : *findings) {
    EXPECT_EQ(common::FromProto(f.reported_at()),
              common::FromUnixMillis(common::ToUnixMillis(later)))
        << f.result().check_id();
  }
  // The same result with another reason is a change: written, no transition (same verdict).
  auto reworded = Result("x", "1", v1::STATUS_FAIL);
  reworded.set_reason("another reason");
  auto third = store_->CommitReport(Report("s3", "a", {reworded}, false), later);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->written, 1u);
  EXPECT_EQ(third->transitions, 0u);
}

}  // namespace
}  // namespace kspm::collector::store

namespace kspm::collector::store {
namespace {

class StoreHistoryTest : public StoreTest {};
KSPM_STORE_ENGINES(StoreHistoryTest);

TEST_P(StoreHistoryTest, NodeIsStaleAfterThreeMissedIntervals) {
  auto rep = Report("s1", "a", {Result("x", "1", v1::STATUS_FAIL)});
  rep.set_scan_interval_seconds(60);
  ASSERT_TRUE(store_->CommitReport(rep, now_).ok());
  auto fresh = store_->Nodes("", now_ + std::chrono::seconds(179));
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE((*fresh)[0].stale());
  EXPECT_EQ((*fresh)[0].scan_interval_seconds(), 60u);
  const auto later = now_ + std::chrono::seconds(181);
  EXPECT_TRUE((*store_->Nodes("", later))[0].stale());
  // Its results are flagged, not deleted.
  FindingFilter f;
  f.now = later;
  auto findings = store_->Findings(f);
  ASSERT_EQ(findings->size(), 1u);
  EXPECT_TRUE((*findings)[0].stale());
  auto summary = store_->Summary("", later);
  EXPECT_EQ(summary->node_count(), 1u);
  EXPECT_EQ(summary->stale_node_count(), 1u);
}

TEST_P(StoreHistoryTest, HistoryListsChangesNewestFirstAndPrunes) {
  const auto t0 = now_;
  auto at = [&](int hours) { return t0 + std::chrono::hours(hours); };
  ASSERT_TRUE(
      store_->CommitReport(Report("s1", "a", {Result("x", "4.2.1", v1::STATUS_FAIL)}), at(0)).ok());
  ASSERT_TRUE(
      store_->CommitReport(Report("s2", "a", {Result("x", "4.2.1", v1::STATUS_PASS)}), at(1)).ok());
  ASSERT_TRUE(
      store_->CommitReport(Report("s3", "a", {Result("x", "4.2.1", v1::STATUS_FAIL)}), at(2)).ok());
  ASSERT_TRUE(
      store_->CommitReport(Report("s4", "b", {Result("x", "4.2.1", v1::STATUS_FAIL)}), at(2)).ok());
  ASSERT_TRUE(
      store_->CommitReport(Report("s5", "b", {Result("x", "4.2.1", v1::STATUS_WARN)}), at(3)).ok());
  HistoryFilter f;
  f.node = "a";
  f.id = "4.2.1";
  auto h = store_->History(f);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[0].old_status(), v1::STATUS_PASS);  // newest first
  EXPECT_EQ((*h)[0].new_status(), v1::STATUS_FAIL);
  EXPECT_EQ((*h)[0].scan_id(), "s3");
  EXPECT_EQ((*h)[1].old_status(), v1::STATUS_FAIL);
  EXPECT_EQ((*h)[1].new_status(), v1::STATUS_PASS);
  f.node.clear();
  f.since = at(2);
  EXPECT_EQ(store_->History(f)->size(), 2u);  // a's change back to FAIL and b's change to WARN

  FindingFilter changed;
  changed.since = at(3);
  EXPECT_EQ(store_->Findings(changed)->size(), 1u);  // only b's WARN changed that late

  auto pruned = store_->PruneHistory(at(2));
  ASSERT_TRUE(pruned.ok());
  EXPECT_GE(*pruned, 1u);
  EXPECT_EQ(store_->History({})->size(), 2u);
  EXPECT_EQ(store_->Findings({})->size(), 2u);  // current results are never pruned
}

}  // namespace
}  // namespace kspm::collector::store

namespace kspm::collector::store {
namespace {

// Join tokens: one use each unless made for more, for one node if named, never after expiry;
// only the secret's hash is kept; and a wrong secret for a real id is refused like any other.
TEST_P(StoreTest, JoinTokensAreRedeemedOnceForTheirNodeBeforeTheyExpire) {
  const auto now = common::Clock::now();
  JoinToken vm{"abc", "hash-1", "lab", "vm-1", now + std::chrono::hours(1), 1, "operator ops"};
  JoinToken any{"def", "hash-2", "lab", "", now + std::chrono::hours(1), 2, "operator ops"};
  JoinToken old{"ghi", "hash-3", "lab", "", now - std::chrono::seconds(1), 5, "operator ops"};
  for (const auto* t : {&vm, &any, &old}) ASSERT_TRUE(store_->AddJoinToken(*t, now).ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM join_tokens WHERE secret_sha256 LIKE 'hash-%'"), 3);

  auto wrong_node = store_->RedeemJoinToken("abc", "hash-1", "vm-2", now);
  EXPECT_EQ(wrong_node.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(wrong_node.status().message().find("is for node 'vm-1'"), std::string::npos);
  EXPECT_EQ(store_->RedeemJoinToken("abc", "hash-X", "vm-1", now).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto used = store_->RedeemJoinToken("abc", "hash-1", "vm-1", now);
  ASSERT_TRUE(used.ok()) << used.status();
  EXPECT_EQ(used->cluster, "lab");
  auto again = store_->RedeemJoinToken("abc", "hash-1", "vm-1", now);
  EXPECT_NE(again.status().message().find("used up"), std::string::npos) << again.status();

  EXPECT_TRUE(store_->RedeemJoinToken("def", "hash-2", "a", now).ok());
  EXPECT_TRUE(store_->RedeemJoinToken("def", "hash-2", "b", now).ok());
  EXPECT_FALSE(store_->RedeemJoinToken("def", "hash-2", "c", now).ok());
  auto expired = store_->RedeemJoinToken("ghi", "hash-3", "a", now);
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos) << expired.status();
  EXPECT_NE(store_->RedeemJoinToken("zzz", "hash-3", "a", now).status().message().find("unknown"),
            std::string::npos);
}

// A revocation and its time survive reopening; allowing keeps the time (older certificates stay
// refused) and shows in the node list.
TEST_P(StoreTest, RevocationsSurviveReopenAndAllowKeepsTheirTime) {
  const auto now = common::Clock::now();
  ASSERT_TRUE(store_->CommitReport(Report("scan-1", "node-a", {}), now).ok());
  const auto revoked_at = common::FromUnixMillis(common::ToUnixMillis(now));
  ASSERT_TRUE(store_->SetNodeAccess({"prod", "node-a", true, revoked_at}, "ops", now).ok());
  Reopen();
  auto list = store_->NodeAccessList();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE((*list)[0].revoked);
  EXPECT_EQ((*list)[0].revoked_at, revoked_at);
  auto nodes = store_->Nodes("", now);
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_TRUE((*nodes)[0].revoked());

  ASSERT_TRUE(store_->SetNodeAccess({"prod", "node-a", false, {}}, "ops", now).ok());
  list = store_->NodeAccessList();
  EXPECT_FALSE((*list)[0].revoked);
  EXPECT_EQ((*list)[0].revoked_at, revoked_at);
  ASSERT_TRUE(
      store_->RecordNodeCertificate("prod", "node-a", "AB", now + std::chrono::hours(2), now).ok());
  nodes = store_->Nodes("", now);
  EXPECT_FALSE((*nodes)[0].revoked());
  EXPECT_EQ(common::FromProto((*nodes)[0].certificate_not_after()),
            common::FromUnixMillis(common::ToUnixMillis(now + std::chrono::hours(2))));
}

}  // namespace
}  // namespace kspm::collector::store

namespace kspm::collector::store {
namespace {

// A node is scored under the benchmark its agent judged it by: what it also reported under
// another Kubernetes benchmark (`--benchmark all`) shows in that benchmark's own row only.
TEST_P(StoreTest, EachNodeIsScoredUnderTheBenchmarkItWasJudgedBy) {
  auto under = [](v1::CheckResult r, const std::string& benchmark) {
    r.set_benchmark(benchmark);
    return r;
  };
  auto rep = Report(
      "s1", "eks-1",
      {under(Result("kubelet.kubeconfig.mode-644", "3.1.1", v1::STATUS_PASS), "cis-eks-1.8"),
       under(Result("kubelet.kubeconfig.mode", "4.1.5", v1::STATUS_FAIL), "cis-kubernetes-1.12"),
       under(Result("docker.icc", "2.2", v1::STATUS_PASS), "cis-docker-1.6")});
  rep.mutable_node()->set_platform("eks");
  rep.mutable_node()->set_platform_benchmark("cis-eks-1.8");
  ASSERT_TRUE(store_->CommitReport(rep, now_).ok());
  // A node without a platform choice (an older agent) counts everything, as before.
  ASSERT_TRUE(
      store_->CommitReport(Report("s2", "old-1", {Result("a", "4.2.1", v1::STATUS_FAIL)}), now_)
          .ok());
  auto s = store_->Summary("", now_);
  ASSERT_TRUE(s.ok()) << s.status();
  std::map<std::string, v1::Score> by;
  for (const auto& n : s->nodes()) by["node/" + n.scope()] = n;
  for (const auto& b : s->benchmarks()) by[b.scope()] = b;
  EXPECT_EQ(by["node/eks-1"].counts().pass(), 2u);
  EXPECT_EQ(by["node/eks-1"].counts().fail(), 0u);
  EXPECT_DOUBLE_EQ(by["node/eks-1"].score(), 100.0);
  EXPECT_EQ(by["node/old-1"].counts().fail(), 1u);
  EXPECT_EQ(by["cis-kubernetes-1.12"].counts().fail(), 2u);  // its own row keeps both
  EXPECT_EQ(s->overall().counts().fail(), 1u);               // old-1's only
  EXPECT_EQ(s->overall().counts().pass(), 2u);
  EXPECT_EQ(s->failed_by_severity().at("high"), 1u);
}

}  // namespace
}  // namespace kspm::collector::store

namespace kspm::collector::store {
namespace {

// `r` as a cluster result about the Deployment shop/`name`.
v1::CheckResult Deployed(v1::CheckResult r, const std::string& name) {
  r.mutable_resource()->set_kind("Deployment");
  r.mutable_resource()->set_namespace_("shop");
  r.mutable_resource()->set_name(name);
  return r;
}

// A full report in parts (a cluster scan streamed check by check) ends where the same report in
// one piece would: changed rows written with their transitions, unchanged ones left, objects and
// whole checks no part carried removed, counts equal to the rows.
TEST_P(StoreTest, AReportInPartsEndsWhereTheWholeReportWould) {
  ASSERT_TRUE(store_
                  ->CommitReport(Report("s1", "cluster",
                                        {Deployed(Result("a", "1", v1::STATUS_PASS), "web"),
                                         Deployed(Result("b", "2", v1::STATUS_FAIL), "web"),
                                         Deployed(Result("b", "2", v1::STATUS_FAIL), "db"),
                                         Deployed(Result("c", "3", v1::STATUS_FAIL), "web")}),
                                 now_)
                  .ok());
  auto header = Report("s2", "cluster", {});
  auto writer = store_->BeginReport(header, now_);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Add({Deployed(Result("a", "1", v1::STATUS_FAIL), "web")}).ok());
  // Readers see a part as soon as it is committed.
  EXPECT_EQ(Count("SELECT status FROM results WHERE check_id = 'a'"), v1::STATUS_FAIL);
  ASSERT_TRUE((*writer)->Add({Deployed(Result("b", "2", v1::STATUS_FAIL), "web")}).ok());
  // A check comes whole in one part.
  const auto again = (*writer)->Add({Deployed(Result("a", "1", v1::STATUS_PASS), "db")});
  EXPECT_TRUE(absl::IsInvalidArgument(again)) << again;
  const auto later = now_ + std::chrono::seconds(3);
  auto stats = (*writer)->Finish(later);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->results, 2u);
  EXPECT_EQ(stats->written, 1u);  // a changed; b/web is the same result
  EXPECT_EQ(stats->transitions, 1u);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 2);  // b/db and check c are gone
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'c'"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM transitions WHERE check_id = 'a'"), 1);
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
            Count("SELECT COUNT(*) FROM results"));
  EXPECT_EQ(Count("SELECT results FROM scans WHERE scan_id = 's2'"), 2);
  EXPECT_EQ(Count("SELECT finished_ms = " + std::to_string(common::ToUnixMillis(later)) +
                  " FROM scans WHERE scan_id = 's2'"),
            1);
  // The object whose verdict changed is a drift event of the node, seen by the rescan.
  DriftFilter drift_filter;
  auto drift = store_->Drift(drift_filter);
  ASSERT_TRUE(drift.ok()) << drift.status();
  ASSERT_EQ(drift->size(), 1u);
  const auto& event = (*drift)[0].event();
  EXPECT_EQ(event.node_name(), "cluster");
  EXPECT_EQ(event.source(), "rescan");
  EXPECT_EQ(event.operation(), "changed");
  EXPECT_EQ(event.path(), "Deployment shop/web");
  ASSERT_EQ(event.changes_size(), 1);
  EXPECT_EQ(event.changes(0).check_id(), "a");
  EXPECT_EQ(event.changes(0).old_status(), v1::STATUS_PASS);
  EXPECT_EQ(event.changes(0).new_status(), v1::STATUS_FAIL);
  auto summary = store_->Summary("", later);
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->overall().counts().fail(), 2u);
  EXPECT_EQ(summary->overall().counts().pass(), 0u);
  // A scan id already stored is refused, as a redelivered report is not stored twice.
  EXPECT_TRUE(absl::IsAlreadyExists(store_->BeginReport(header, later).status()));
}

// A check judged per workload comes in slices (`more`): its rows that no slice carried go with
// the last slice, not before; other checks' results cannot join a slice; a report left with an
// open check does not finish.
TEST_P(StoreTest, ACheckInSlicesEndsWhereTheCheckInOnePartWould) {
  ASSERT_TRUE(store_
                  ->CommitReport(Report("s1", "cluster",
                                        {Deployed(Result("a", "1", v1::STATUS_PASS), "web"),
                                         Deployed(Result("a", "1", v1::STATUS_FAIL), "db"),
                                         Deployed(Result("a", "1", v1::STATUS_FAIL), "cache"),
                                         Deployed(Result("b", "2", v1::STATUS_FAIL), "web")}),
                                 now_)
                  .ok());
  auto writer = store_->BeginReport(Report("s2", "cluster", {}), now_);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Add({Deployed(Result("a", "1", v1::STATUS_FAIL), "web")}, true).ok());
  const auto mixed = (*writer)->Add({Deployed(Result("b", "2", v1::STATUS_PASS), "web")}, true);
  EXPECT_TRUE(absl::IsInvalidArgument(mixed)) << mixed;
  ASSERT_TRUE((*writer)->Add({Deployed(Result("a", "1", v1::STATUS_FAIL), "db")}, true).ok());
  const auto unfinished = (*writer)->Finish(now_);
  EXPECT_TRUE(absl::IsFailedPrecondition(unfinished.status())) << unfinished.status();
  // The last slice carries nothing: it ends the check, and a/cache, carried by none, goes.
  auto ended = (*writer)->Add({}, false);
  ASSERT_TRUE(ended.ok()) << ended;
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'a'"), 2);
  ASSERT_TRUE((*writer)->Add({Deployed(Result("b", "2", v1::STATUS_FAIL), "web")}).ok());
  auto stats = (*writer)->Finish(now_ + std::chrono::seconds(1));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->results, 3u);
  EXPECT_EQ(stats->written, 1u);      // a/web PASS -> FAIL; a/db and b/web unchanged
  EXPECT_EQ(stats->transitions, 1u);  // a/web
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 3);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE name = 'cache'"), 0);
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
            Count("SELECT COUNT(*) FROM results"));
  // A report abandoned in the middle of a check (the evaluation stopped) undoes the slices since
  // its last commit, and the store writes on.
  {
    auto abandoned = store_->BeginReport(Report("s3", "cluster", {}), now_);
    ASSERT_TRUE(abandoned.ok());
    ASSERT_TRUE((*abandoned)->Add({Deployed(Result("a", "1", v1::STATUS_PASS), "web")}, true).ok());
  }
  EXPECT_EQ(Count("SELECT status FROM results WHERE check_id = 'a' AND name = 'web'"),
            v1::STATUS_FAIL);
  ASSERT_TRUE(
      store_->CommitReport(Report("s4", "node-1", {Result("x", "1.1", v1::STATUS_PASS)}), now_)
          .ok());
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
            Count("SELECT COUNT(*) FROM results"));
  // A check whose slices take long is committed once its transaction has been open for a
  // second: readers see the slices so far, with counts that match them, and the write lock is
  // free for agents' reports between the slices.
  auto slow = store_->BeginReport(Report("s5", "cluster", {}), now_);
  ASSERT_TRUE(slow.ok());
  ASSERT_TRUE((*slow)->Add({Deployed(Result("a", "1", v1::STATUS_PASS), "web")}, true).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_TRUE((*slow)->Add({Deployed(Result("a", "1", v1::STATUS_PASS), "db")}, true).ok());
  // (Asserted: were the lock still held, the agent's report below would wait for it forever.)
  ASSERT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'a' AND status = " +
                  std::to_string(v1::STATUS_PASS)),
            2);
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
            Count("SELECT COUNT(*) FROM results"));
  ASSERT_TRUE(
      store_->CommitReport(Report("s6", "node-1", {Result("x", "1.1", v1::STATUS_FAIL)}), now_)
          .ok());
  ASSERT_TRUE((*slow)->Add({}, false).ok());
  ASSERT_TRUE((*slow)->Add({Deployed(Result("b", "2", v1::STATUS_FAIL), "web")}).ok());
  ASSERT_TRUE((*slow)->Finish(now_).ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'a'"), 2);
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
            Count("SELECT COUNT(*) FROM results"));
}

// A partial report (a watched cluster's change) replaces the results of some objects of some
// checks and leaves the rest: other objects of a scoped check, other checks. A new object that
// fails is a drift event; a scoped object with no result left loses its rows.
TEST_P(StoreTest, APartialReportReplacesOnlyItsScope) {
  auto on = [](v1::CheckResult r, const std::string& name, const std::string& container = "") {
    r.mutable_resource()->set_kind("Pod");
    r.mutable_resource()->set_namespace_("shop");
    r.mutable_resource()->set_name(name);
    r.mutable_resource()->set_container(container);
    return r;
  };
  ASSERT_TRUE(store_
                  ->CommitReport(Report("s1", "cluster",
                                        {on(Result("a", "1", v1::STATUS_PASS), "web", "app"),
                                         on(Result("a", "1", v1::STATUS_PASS), "web", "sidecar"),
                                         on(Result("a", "1", v1::STATUS_PASS), "db", "app"),
                                         on(Result("a", "1", v1::STATUS_PASS), "cache", "app"),
                                         on(Result("b", "2", v1::STATUS_FAIL), "web")}),
                                 now_)
                  .ok());
  auto writer = store_->BeginReport(Report("w1", "cluster", {}), now_, /*partial=*/true);
  ASSERT_TRUE(writer.ok()) << writer.status();
  (*writer)->AnnotateDrift([](v1::DriftEvent& e) {
    e.set_source("watch");
    e.add_caused_by("Pod " + e.path().substr(4));
  });
  ResultScope scope;
  scope.checks["a"] = {"cis-kubernetes-1.12"};
  scope.objects = {{"Pod", "shop", "web"}, {"Pod", "shop", "db"}, {"Pod", "shop", "miner"}};
  // Outside the scope: refused.
  EXPECT_TRUE(absl::IsInvalidArgument(
      (*writer)->AddScoped({on(Result("a", "1", v1::STATUS_FAIL), "cache", "app")}, scope)));
  EXPECT_TRUE(absl::IsInvalidArgument(
      (*writer)->AddScoped({on(Result("b", "2", v1::STATUS_FAIL), "web")}, scope)));
  // web lost its sidecar; db was deleted (no result); miner is new and fails.
  ASSERT_TRUE((*writer)
                  ->AddScoped({on(Result("a", "1", v1::STATUS_FAIL), "web", "app"),
                               on(Result("a", "1", v1::STATUS_FAIL), "miner", "app")},
                              scope)
                  .ok());
  auto stats = (*writer)->Finish(now_ + std::chrono::seconds(1));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->written, 2u);
  EXPECT_EQ(stats->transitions, 1u);  // web/app; miner is new
  // cache (outside the scope) and check b (not in the report) stay.
  EXPECT_EQ(Count("SELECT status FROM results WHERE name = 'cache'"), v1::STATUS_PASS);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'b'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE name = 'db'"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE name = 'web' AND container = 'sidecar'"), 0);
  EXPECT_EQ(Count("SELECT status FROM results WHERE name = 'miner'"), v1::STATUS_FAIL);
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
            Count("SELECT COUNT(*) FROM results"));
  DriftFilter filter;
  auto drift = store_->Drift(filter);
  ASSERT_TRUE(drift.ok());
  std::map<std::string, v1::DriftEvent> by_path;
  for (const auto& d : *drift) by_path[d.event().path()] = d.event();
  ASSERT_TRUE(by_path.contains("Pod shop/miner [app]"));
  EXPECT_EQ(by_path["Pod shop/miner [app]"].source(), "watch");
  EXPECT_EQ(by_path["Pod shop/miner [app]"].changes(0).old_status(), v1::STATUS_UNSPECIFIED);
  ASSERT_TRUE(by_path.contains("Pod shop/web [app]"));
  EXPECT_EQ(by_path["Pod shop/web [app]"].changes(0).old_status(), v1::STATUS_PASS);
  ASSERT_EQ(by_path["Pod shop/web [app]"].caused_by_size(), 1);
  // A part scoped to a namespace: the namespace's objects and the Namespace itself, nothing else.
  auto in = [](v1::CheckResult r, const std::string& kind, const std::string& ns,
               const std::string& name) {
    r.mutable_resource()->set_kind(kind);
    r.mutable_resource()->set_namespace_(ns);
    r.mutable_resource()->set_name(name);
    return r;
  };
  ASSERT_TRUE(
      store_
          ->CommitReport(
              Report("s3", "cluster",
                     {in(Result("n", "9", v1::STATUS_FAIL), "ServiceAccount", "default", "default"),
                      in(Result("n", "9", v1::STATUS_FAIL), "Namespace", "", "shop"),
                      in(Result("n", "9", v1::STATUS_FAIL), "ServiceAccount", "shop", "default")}),
              now_)
          .ok());
  auto ns_writer = store_->BeginReport(Report("w2", "cluster", {}), now_, /*partial=*/true);
  ASSERT_TRUE(ns_writer.ok());
  ResultScope ns_scope;
  ns_scope.checks["n"] = {"cis-kubernetes-1.12"};
  ns_scope.namespaces = {"shop"};
  ASSERT_TRUE(
      (*ns_writer)
          ->AddScoped({in(Result("n", "9", v1::STATUS_PASS), "ServiceAccount", "shop", "default")},
                      ns_scope)
          .ok());
  ASSERT_TRUE((*ns_writer)->Finish(now_).ok());
  EXPECT_EQ(Count("SELECT status FROM results WHERE check_id = 'n' AND object_namespace = "
                  "'default'"),
            v1::STATUS_FAIL);
  EXPECT_EQ(Count("SELECT status FROM results WHERE check_id = 'n' AND object_namespace = 'shop'"),
            v1::STATUS_PASS);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE check_id = 'n' AND kind = 'Namespace'"), 0);
  // A scoped part in a full report is refused.
  auto full = store_->BeginReport(Report("s2", "cluster", {}), now_);
  ASSERT_TRUE(full.ok());
  EXPECT_TRUE(absl::IsInvalidArgument((*full)->AddScoped({}, scope)));
}

}  // namespace
}  // namespace kspm::collector::store

namespace kspm::collector::store {
namespace {

// One store holds many clusters: each has its score, and node names that repeat across clusters
// (every cluster's pseudo-node `cluster`, a `worker-1` in each) are scored apart, not merged.
TEST_P(StoreTest, ManyClustersAreScoredApartAcrossOneStore) {
  auto in = [](std::string cluster, v1::NodeReport r) {
    r.mutable_node()->set_cluster(cluster);
    return r;
  };
  ASSERT_TRUE(store_
                  ->CommitReport(in("east", Report("e1", "worker-1",
                                                   {Result("a", "4.2.1", v1::STATUS_FAIL),
                                                    Result("b", "4.2.2", v1::STATUS_PASS)})),
                                 now_)
                  .ok());
  ASSERT_TRUE(store_
                  ->CommitReport(in("west", Report("w1", "worker-1",
                                                   {Result("a", "4.2.1", v1::STATUS_PASS),
                                                    Result("b", "4.2.2", v1::STATUS_PASS)})),
                                 now_)
                  .ok());
  auto all = store_->Summary("", now_);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->clusters_size(), 2);
  EXPECT_EQ(all->clusters(0).scope(), "east");
  EXPECT_EQ(all->clusters(0).counts().fail(), 1u);
  EXPECT_EQ(all->clusters(1).scope(), "west");
  EXPECT_EQ(all->clusters(1).counts().fail(), 0u);
  EXPECT_DOUBLE_EQ(all->clusters(1).score(), 100.0);
  ASSERT_EQ(all->nodes_size(), 2);
  EXPECT_EQ(all->nodes(0).scope(), "east/worker-1");
  EXPECT_EQ(all->nodes(1).scope(), "west/worker-1");
  EXPECT_EQ(all->overall().counts().pass() + all->overall().counts().fail(), 4u);
  // One cluster asked for: its nodes by their own names.
  auto east = store_->Summary("east", now_);
  ASSERT_TRUE(east.ok());
  ASSERT_EQ(east->nodes_size(), 1);
  EXPECT_EQ(east->nodes(0).scope(), "worker-1");
  ASSERT_EQ(east->clusters_size(), 1);
}

}  // namespace
}  // namespace kspm::collector::store

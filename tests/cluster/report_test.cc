// The merge into one posture: the cluster report committed to the collector's store next to a
// node's report, per-namespace scores, and sections 1 and 2 on a cluster whose control plane no
// agent reports.
#include "kspm/collector/cluster/report.h"

#include <gtest/gtest.h>

#include "cluster_test_util.h"
#include "fixtures/host_builder.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/snapshot_dir.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"

namespace kspm::cluster_test {
namespace {

using collector::cluster::BuildClusterReport;
using collector::cluster::ControlPlaneNotApplicable;
using collector::cluster::NamespaceScores;
using collector::cluster::UncoveredControlPlaneSections;

collector::cluster::ClusterScan DemoLikeScan() {
  static k8s::Snapshot snapshot;
  snapshot =
      Snapshot({Namespace("shop"), Namespace("ops"),
                Deployment("shop", "web", PodSpec({Container("app", {{"privileged", true}})})),
                Deployment("ops", "tools", PodSpec({Container("t")}))});
  return Scan(snapshot);
}

v1::NodeReport WorkerReport() {
  v1::NodeReport r;
  r.set_scan_id("worker-scan-1");
  r.mutable_node()->set_node_name("worker-1");
  r.mutable_node()->set_cluster("prod");
  r.mutable_node()->add_roles(v1::NODE_ROLE_WORKER);
  r.set_full(true);
  auto* res = r.add_results();
  res->set_check_id("kubelet.anonymous-auth");
  res->set_benchmark("cis-kubernetes-1.12");
  res->set_benchmark_id("4.2.1");
  res->set_status(v1::STATUS_FAIL);
  res->set_severity(v1::SEVERITY_CRITICAL);
  res->set_scored(true);
  return r;
}

TEST(Report, ClusterResultsAreStoredAsAPseudoNodeNextToNodes) {
  kspm::testing::TempDir dir;
  auto store = collector::store::OpenSqliteStore(dir.path() + "/kspm.db");
  ASSERT_TRUE(store.ok()) << store.status().message();
  const auto now = common::Clock::now();
  ASSERT_TRUE((*store)->CommitReport(WorkerReport(), now).ok());

  auto report = BuildClusterReport(DemoLikeScan(), "prod", now, now, 600);
  const auto nodes = (*store)->Nodes("prod", now);
  ASSERT_TRUE(nodes.ok());
  const auto sections = UncoveredControlPlaneSections(*nodes);
  EXPECT_EQ(sections, (std::vector<std::string>{"1", "2"}));
  for (auto& r : ControlPlaneNotApplicable(sections, "managed control plane")) {
    *report.add_results() = std::move(r);
  }
  const auto stats = (*store)->CommitReport(report, now);
  ASSERT_TRUE(stats.ok()) << stats.status().message();
  // Nothing collapsed: one stored row per result (keyed by check, benchmark and object).
  EXPECT_EQ(stats->results, static_cast<size_t>(report.results_size()));

  collector::store::FindingFilter filter;
  filter.cluster = "prod";
  filter.statuses = {v1::STATUS_FAIL, v1::STATUS_WARN};
  const auto findings = (*store)->Findings(filter);
  ASSERT_TRUE(findings.ok());
  std::set<std::string> nodes_seen;
  bool privileged = false;
  for (const auto& f : *findings) {
    nodes_seen.insert(f.node());
    if (f.result().check_id() == "pod.privileged" && f.result().resource().name() == "web") {
      privileged = true;
      EXPECT_EQ(common::ResourceKey(f.result().resource()), "Deployment shop/web [app]");
    }
  }
  EXPECT_TRUE(privileged);
  EXPECT_EQ(nodes_seen, (std::set<std::string>{"cluster", "worker-1"}));

  // Items can be found by benchmark id as for any node, and sections 1 and 2 are N/A with the
  // reason on the cluster pseudo-node.
  filter.statuses = {v1::STATUS_NOT_APPLICABLE};
  filter.id = "1.2.1";
  const auto na = (*store)->Findings(filter);
  ASSERT_TRUE(na.ok());
  ASSERT_EQ(na->size(), 1u);
  EXPECT_EQ((*na)[0].node(), "cluster");
  EXPECT_EQ((*na)[0].result().reason(), "managed control plane");

  // A bare check id finds every object's result; a namespace narrows to it.
  filter.statuses = {};
  filter.id = "pod.privileged";
  const auto by_check = (*store)->Findings(filter);
  ASSERT_TRUE(by_check.ok());
  // The privileged Deployment, under CIS (WARN) and NSA/CISA (FAIL); ops/tools passes.
  ASSERT_EQ(by_check->size(), 2u);
  for (const auto& f : *by_check) EXPECT_EQ(f.result().resource().name(), "web");
  filter.statuses = {v1::STATUS_PASS, v1::STATUS_FAIL, v1::STATUS_WARN};
  EXPECT_EQ((*store)->Findings(filter)->size(), 4u);
  filter.ns = "ops";
  const auto in_ops = (*store)->Findings(filter);
  ASSERT_EQ(in_ops->size(), 2u);
  for (const auto& f : *in_ops) EXPECT_EQ(f.result().resource().name(), "tools");
  filter.ns.clear();
  filter.id.clear();

  const auto summary = (*store)->Summary("prod", now);
  ASSERT_TRUE(summary.ok());
  // Namespace scores in the store equal those the scan computes from the same results.
  const auto expected_scores = NamespaceScores(
      std::vector<v1::CheckResult>(report.results().begin(), report.results().end()));
  std::map<std::string, double> expected, stored;
  for (const auto& n : expected_scores) expected[n.scope] = n.score;
  for (const auto& n : summary->namespaces()) stored[n.scope()] = n.score();
  for (const char* ns : {"shop", "ops"}) {
    ASSERT_TRUE(stored.contains(ns)) << ns;
    EXPECT_DOUBLE_EQ(stored[ns], expected[ns]) << ns;
  }
  EXPECT_LT(stored["shop"], stored["ops"]);  // the privileged container
  // Sections: the node's 4 and the cluster's 5 and its N/A 1 and 2 under CIS.
  std::set<std::string> section_scopes;
  for (const auto& s : summary->sections()) section_scopes.insert(s.scope());
  for (const char* want : {"cis-kubernetes-1.12 1", "cis-kubernetes-1.12 2",
                           "cis-kubernetes-1.12 4", "cis-kubernetes-1.12 5", "nsa-cisa-1.2 pod"}) {
    EXPECT_TRUE(section_scopes.contains(want)) << want;
  }
  std::set<std::string> scopes;
  for (const auto& s : summary->nodes()) scopes.insert(s.scope());
  EXPECT_TRUE(scopes.contains("cluster"));
  std::set<std::string> benchmarks;
  for (const auto& s : summary->benchmarks()) benchmarks.insert(s.scope());
  EXPECT_TRUE(benchmarks.contains("nsa-cisa-1.2"));
}

TEST(Report, ControlPlaneSectionsComeFromTheAgentCatalogue) {
  const auto all = ControlPlaneNotApplicable({"1", "2"}, "r");
  size_t one = 0, two = 0;
  for (const auto& r : all) {
    EXPECT_EQ(r.status(), v1::STATUS_NOT_APPLICABLE);
    EXPECT_FALSE(r.title().empty());
    if (r.benchmark_id().rfind("1.", 0) == 0) ++one;
    if (r.benchmark_id().rfind("2.", 0) == 0) ++two;
  }
  EXPECT_EQ(one, 60u);                                                        // CIS 1.12 section 1
  EXPECT_EQ(two, 7u);                                                         // section 2
  for (const auto& r : all) EXPECT_EQ(r.benchmark(), "cis-kubernetes-1.12");  // the newest
  // Under the benchmark the cluster's nodes are judged by; one the catalogue does not map
  // (a platform benchmark with no control-plane items) falls back to the newest.
  const auto older = ControlPlaneNotApplicable({"1"}, "r", {"cis-kubernetes-1.11", "cis-eks-1.8"});
  EXPECT_EQ(older.size(), 60u);
  for (const auto& r : older) EXPECT_EQ(r.benchmark(), "cis-kubernetes-1.11");
  const auto eks = ControlPlaneNotApplicable({"2"}, "r", {"cis-eks-1.8"});
  ASSERT_EQ(eks.size(), 7u);
  EXPECT_EQ(eks[0].benchmark(), "cis-kubernetes-1.12");

  v1::NodeInfo cp;
  cp.mutable_identity()->set_node_name("cp-1");
  cp.mutable_identity()->add_roles(v1::NODE_ROLE_CONTROL_PLANE);
  cp.mutable_identity()->add_roles(v1::NODE_ROLE_ETCD);
  EXPECT_TRUE(UncoveredControlPlaneSections({cp}).empty());
}

TEST(Report, NamespaceScoresUseTheReadmeFormula) {
  const auto scan = DemoLikeScan();
  std::map<std::string, collector::cluster::NamespaceScore> by;
  for (const auto& s : NamespaceScores(scan.results)) by[s.scope] = s;
  ASSERT_TRUE(by.contains("shop"));
  ASSERT_TRUE(by.contains("ops"));
  // Recompute shop's score from its scored results: weights info 1 .. critical 10.
  double pass = 0, total = 0;
  for (const auto& r : scan.results) {
    const bool in_shop = r.resource().namespace_() == "shop" ||
                         (r.resource().kind() == "Namespace" && r.resource().name() == "shop");
    if (!in_shop || !r.scored()) continue;
    const double w = common::SeverityWeight(r.severity());
    if (r.status() == v1::STATUS_PASS) pass += w;
    if (r.status() == v1::STATUS_PASS || r.status() == v1::STATUS_FAIL ||
        r.status() == v1::STATUS_ERROR) {
      total += w;
    }
  }
  ASSERT_GT(total, 0);
  EXPECT_DOUBLE_EQ(by["shop"].score, 100.0 * pass / total);
  EXPECT_LT(by["shop"].score, by["ops"].score);  // shop runs a privileged container
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

// Checks run on several threads; the results and their order must not depend on how many.
TEST(Report, ResultsAreTheSameOnOneThreadAndOnSeveral) {
  k8s::Snapshot demo;
  ASSERT_TRUE(k8s::LoadSnapshotDir(SourceDir() + "/tests/fixtures/cluster/demo", demo).ok());
  collector::cluster::CompactOwnedObjects(demo);
  auto exceptions = collector::cluster::ExceptionSet::Load(
      SourceDir() + "/tests/fixtures/cluster/demo-exceptions.yaml");
  ASSERT_TRUE(exceptions.ok()) << exceptions.status().message();
  const k8s::Snapshot kubeadm = KubeadmSnapshot();
  for (const k8s::Snapshot* snapshot : std::vector<const k8s::Snapshot*>{&demo, &kubeadm}) {
    for (bool include_system : {false, true}) {
      collector::cluster::ScanOptions options;
      options.policy.include_system = include_system;
      options.exceptions = &*exceptions;
      options.threads = 1;
      const auto one = collector::cluster::EvaluateCluster(*snapshot, options);
      options.threads = 3;
      const auto three = collector::cluster::EvaluateCluster(*snapshot, options);
      ASSERT_GT(one.results.size(), 40u);
      ASSERT_EQ(one.results.size(), three.results.size());
      for (size_t i = 0; i < one.results.size(); ++i) {
        ASSERT_EQ(one.results[i].SerializeAsString(), three.results[i].SerializeAsString())
            << "result " << i << ": " << one.results[i].check_id() << " vs "
            << three.results[i].check_id();
      }
      EXPECT_EQ(one.stats.accepted, three.stats.accepted);
      if (snapshot == &demo && !include_system) {
        EXPECT_EQ(one.stats.accepted, 7u);
      }
    }
  }
}

}  // namespace
}  // namespace kspm::cluster_test

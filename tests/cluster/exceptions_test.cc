// Exceptions: a user accepts a finding for a reason until a date; it is shown as accepted and
// never as PASS, and it stops applying when it expires.
#include "kspm/collector/cluster/exceptions.h"

#include <gtest/gtest.h>

#include "cluster_test_util.h"

namespace kspm::cluster_test {
namespace {

using collector::cluster::ExceptionSet;
using collector::cluster::GlobMatch;

common::Clock::time_point At(const char* date) {
  std::tm tm{};
  strptime(date, "%Y-%m-%d", &tm);
  return common::Clock::from_time_t(timegm(&tm));
}

// A monitoring DaemonSet with a privileged exporter and a plain sidecar, and a team Deployment.
std::vector<json> Cluster() {
  json ds = {{"apiVersion", "apps/v1"},
             {"kind", "DaemonSet"},
             {"metadata",
              {{"name", "node-exporter"},
               {"namespace", "monitoring"},
               {"labels", {{"app.kubernetes.io/name", "node-exporter"}}}}},
             {"spec",
              {{"template",
                {{"metadata", {{"labels", {{"app", "node-exporter"}}}}},
                 {"spec", PodSpec({Container("exporter", {{"privileged", true}}),
                                   Container("proxy", {{"privileged", true}})},
                                  {{"hostPID", true}})}}}}}};
  return {Namespace("monitoring"), Namespace("shop"), ds,
          Deployment("shop", "web", PodSpec({Container("app", {{"privileged", true}})}))};
}

collector::cluster::ClusterScan ScanWith(const std::string& yaml, const char* today) {
  auto set = ExceptionSet::Parse(yaml, "exceptions.yaml");
  EXPECT_TRUE(set.ok()) << set.status().message();
  static ExceptionSet kept;
  kept = *set;
  collector::cluster::ScanOptions options;
  options.exceptions = &kept;
  options.now = At(today);
  static k8s::Snapshot snapshot;
  snapshot = Snapshot(Cluster());
  return collector::cluster::EvaluateCluster(snapshot, options);
}

const v1::CheckResult* Find(const collector::cluster::ClusterScan& scan, const std::string& check,
                            const std::string& name, const std::string& benchmark) {
  for (const auto* r : ResultsOf(scan, check, benchmark)) {
    if (r->resource().name() == name) return r;
  }
  return nullptr;
}

TEST(Exceptions, AcceptedFindingsKeepTheirVerdictAndSaySoNeverPass) {
  const auto scan = ScanWith(R"(exceptions:
  - name: node-exporter-host-pid
    checks: [pod.host-pid]
    namespaces: [monitoring]
    kinds: [DaemonSet]
    names: [node-*]
    reason: reads every process of the node to export its metrics
    expires: 2027-06-30
    approved_by: platform-team
)",
                             "2027-01-15");
  for (const char* benchmark : {"cis-kubernetes-1.12", "nsa-cisa-1.2"}) {
    const auto* r = Find(scan, "pod.host-pid", "node-exporter", benchmark);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status(),
              std::string(benchmark) == "nsa-cisa-1.2" ? v1::STATUS_FAIL : v1::STATUS_WARN);
    ASSERT_TRUE(r->has_accepted());
    EXPECT_EQ(r->accepted().exception(), "node-exporter-host-pid");
    EXPECT_EQ(r->accepted().approved_by(), "platform-team");
    EXPECT_EQ(r->accepted().source(), "exceptions.yaml:2");
    EXPECT_EQ(r->reason().rfind("accepted until 2027-06-30", 0), 0u) << r->reason();
  }
  // Other checks and other objects are untouched.
  EXPECT_FALSE(
      Find(scan, "pod.privileged", "node-exporter", "cis-kubernetes-1.12")->has_accepted());
  EXPECT_FALSE(Find(scan, "pod.host-pid", "web", "cis-kubernetes-1.12")->has_accepted());
  EXPECT_EQ(scan.stats.accepted, 2u);
}

TEST(Exceptions, AnExpiredExceptionNoLongerAppliesAndIsNamed) {
  const auto scan = ScanWith(R"(exceptions:
  - name: old
    checks: ["5.2.3"]
    namespaces: [monitoring]
    reason: temporary
    expires: 2026-01-31
)",
                             "2026-02-01");
  const auto* r = Find(scan, "pod.host-pid", "node-exporter", "cis-kubernetes-1.12");
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(r->has_accepted());
  EXPECT_EQ(r->status(), v1::STATUS_WARN);
  EXPECT_NE(r->reason().find("exception 'old' expired on 2026-01-31"), std::string::npos);
  // The expiry date is valid through the end of that day.
  const auto same_day = ScanWith(R"(exceptions:
  - {name: old, checks: ["5.2.3"], reason: temporary, expires: 2026-01-31}
)",
                                 "2026-01-31");
  EXPECT_TRUE(
      Find(same_day, "pod.host-pid", "node-exporter", "cis-kubernetes-1.12")->has_accepted());
}

TEST(Exceptions, ContainersMustAllBeCoveredAndLabelsMayBePodLabels) {
  // Only the exporter is accepted; the proxy is privileged too, so the finding stands.
  const auto partial = ScanWith(R"(exceptions:
  - {name: exporter, checks: [pod.privileged], containers: [exporter], reason: r, expires: 2030-01-01}
)",
                                "2027-01-01");
  EXPECT_FALSE(
      Find(partial, "pod.privileged", "node-exporter", "cis-kubernetes-1.12")->has_accepted());
  const auto both = ScanWith(R"(exceptions:
  - name: exporter
    checks: [pod.privileged]
    containers: [exporter, proxy]
    labels: {app: node-exporter}
    reason: r
    expires: 2030-01-01
)",
                             "2027-01-01");
  EXPECT_TRUE(Find(both, "pod.privileged", "node-exporter", "cis-kubernetes-1.12")->has_accepted());
  // A pod-level finding (hostPID) has no container, so a container exception does not cover it.
  const auto pod_level = ScanWith(R"(exceptions:
  - {name: x, checks: [pod.host-pid], containers: ["*"], reason: r, expires: 2030-01-01}
)",
                                  "2027-01-01");
  EXPECT_FALSE(
      Find(pod_level, "pod.host-pid", "node-exporter", "cis-kubernetes-1.12")->has_accepted());
}

TEST(Exceptions, PassingResultsAreNeverMarked) {
  const auto scan = ScanWith(R"(exceptions:
  - {name: all, checks: ["*"], reason: r, expires: 2030-01-01}
)",
                             "2027-01-01");
  for (const auto& r : scan.results) {
    if (r.has_accepted()) {
      EXPECT_TRUE(r.status() == v1::STATUS_FAIL || r.status() == v1::STATUS_WARN) << r.check_id();
    }
    if (r.status() == v1::STATUS_PASS) {
      EXPECT_FALSE(r.has_accepted());
    }
  }
}

TEST(Exceptions, BadFilesAreRefusedWithTheLine) {
  struct Bad {
    const char* yaml;
    const char* message;
  } cases[] = {
      {"exceptions:\n  - {name: a, checks: [pod.privileged], expires: 2030-01-01}\n",
       "exceptions.yaml:2: missing 'reason'"},
      {"exceptions:\n  - {name: a, checks: [pod.privileged], reason: r}\n",
       "exceptions.yaml:2: missing 'expires'"},
      {"exceptions:\n  - {name: a, checks: [pod.privileged], reason: r, expires: soon}\n",
       "'expires' must be a date"},
      {"exceptions:\n  - {name: a, checks: [pod.privileged], reason: r, expires: 2030-01-01,\n"
       "     namespace: [x]}\n",
       "unknown key 'namespace'"},
      {"exceptions:\n  - {name: a, checks: [pod.priviledged], reason: r, expires: 2030-01-01}\n",
       "unknown check or item 'pod.priviledged'"},
      {"exceptions:\n  - {name: a, reason: r, expires: 2030-01-01}\n", "'checks' is required"},
      {"exceptions: [\n", "exceptions.yaml:"},
      {"rules: []\n", "needs an 'exceptions' list"},
  };
  for (const auto& c : cases) {
    const auto set = ExceptionSet::Parse(c.yaml, "exceptions.yaml");
    ASSERT_FALSE(set.ok()) << c.yaml;
    EXPECT_NE(set.status().message().find(c.message), std::string::npos) << set.status().message();
  }
}

TEST(Exceptions, GlobsMatchWholeNames) {
  EXPECT_TRUE(GlobMatch("node-*", "node-exporter"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("a*b*c", "axxbyyc"));
  EXPECT_FALSE(GlobMatch("node-*", "my-node-exporter"));
  EXPECT_FALSE(GlobMatch("web", "web-2"));
}

}  // namespace
}  // namespace kspm::cluster_test

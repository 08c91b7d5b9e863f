// `kspm-collector scan-cluster --from DIR` as CI calls it: JSON shape, text output, exit codes,
// malformed files named, exceptions.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "cluster_test_util.h"
#include "fixtures/consumers.h"
#include "fixtures/host_builder.h"

namespace kspm::cluster_test {
namespace {

struct Output {
  int exit_code = -1;
  std::string out;
  std::string err;
};

Output ScanCluster(const std::string& args) {
  kspm::testing::TempDir tmp;
  const std::string err_file = tmp.path() + "/stderr";
  Output o;
  const std::string command =
      std::string(KSPM_BIN_DIR) + "/kspm-collector scan-cluster " + args + " 2>" + err_file;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) o.out.append(buf.data(), n);
  const int status = ::pclose(p);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  o.err.assign(std::istreambuf_iterator<char>(in), {});
  return o;
}

std::string Fixture(const std::string& name) {
  return SourceDir() + "/tests/fixtures/cluster/" + name;
}

// A snapshot folder under `dir` with one Deployment, shop/web, on the host's network.
std::string HostNetworkSnapshot(const std::string& dir) {
  const std::string snap = dir + "/snapshot";
  ::mkdir(snap.c_str(), 0755);
  std::ofstream(snap + "/app.yaml") << R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec: {template: {spec: {hostNetwork: true, containers: [{name: app, image: x}]}}}
)";
  return snap;
}

TEST(OfflineCli, JsonHasTheAgentsShapePlusResource) {
  const auto o = ScanCluster("--from " + Fixture("kubeadm") + " --format json --cluster-name lab");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const auto doc = nlohmann::json::parse(o.out);
  EXPECT_EQ(doc["cluster"]["name"], "lab");
  EXPECT_GT(doc["cluster"]["objects"]["ClusterRole"].template get<int>(), 60);
  ASSERT_FALSE(doc["results"].empty());
  for (const auto& r : doc["results"]) {
    for (const char* field : {"benchmark", "id", "check_id", "status", "scored", "severity",
                              "title", "evidence", "remediation", "reason", "resource"}) {
      EXPECT_TRUE(r.contains(field)) << field << " missing in " << r.dump();
    }
    if (r["check_id"] == "sa.default-not-used" && r["resource"]["name"] == "default") continue;
    EXPECT_NE(r["status"], "FAIL") << r.dump();  // a stock kubeadm cluster: only CIS 5.1.5
    EXPECT_NE(r["status"], "WARN") << r.dump();
  }
  EXPECT_TRUE(doc["namespaces"].is_array());
}

TEST(OfflineCli, TextShowsFindingsEvidenceAndNamespaceScores) {
  kspm::testing::TempDir dir;
  std::ofstream(dir.path() + "/app.yaml") << R"(apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    spec:
      containers:
        - name: app
          image: shop/web:1.4
          securityContext: {privileged: true}
)";
  const auto o = ScanCluster("--from " + dir.path());
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("Deployment shop/web [app]"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("read:     spec.template.spec.containers[app].securityContext.privileged: "
                       "true (Deployment shop/web)"),
            std::string::npos)
      << o.out;
  EXPECT_NE(o.out.find("NAMESPACE"), std::string::npos);
  EXPECT_NE(o.out.find("\nshop "), std::string::npos);
}

TEST(OfflineCli, AMalformedFileIsNamedAndTheScanStillRuns) {
  kspm::testing::TempDir dir;
  std::ofstream(dir.path() + "/ns.yaml")
      << "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
  std::ofstream(dir.path() + "/roles.json") << "{\"kind\": \"ClusterRoleList\", \"items\": [}";
  const auto o = ScanCluster("--from " + dir.path() + " --format json");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.err.find("roles.json: line 1, column"), std::string::npos) << o.err;
  const auto doc = nlohmann::json::parse(o.out);
  EXPECT_EQ(doc["cluster"]["errors"].size(), 1u);
  EXPECT_TRUE(doc["cluster"]["unreadable_kinds"].contains("ClusterRole"));
  bool rbac_error = false;
  for (const auto& r : doc["results"]) {
    if (r["check_id"] == "rbac.wildcards") rbac_error = r["status"] == "ERROR";
  }
  EXPECT_TRUE(rbac_error);
}

TEST(OfflineCli, ExceptionsAreShownAsAccepted) {
  kspm::testing::TempDir tmp;
  const std::string snap = HostNetworkSnapshot(tmp.path());
  std::ofstream(tmp.path() + "/exceptions.yaml") << R"(exceptions:
  - {name: web-host-network, checks: [pod.host-network], names: [web], reason: legacy load balancer, expires: 2099-12-31}
)";
  const auto o = ScanCluster("--from " + snap + " --exceptions " + tmp.path() + "/exceptions.yaml");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("WARN (accepted)"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("accepted: until 2099-12-31T23:59:59Z by 'web-host-network'"),
            std::string::npos)
      << o.out;
  const auto json = ScanCluster("--from " + snap + " --format json --exceptions " + tmp.path() +
                                "/exceptions.yaml");
  const auto doc = nlohmann::json::parse(json.out);
  size_t accepted = 0;
  for (const auto& r : doc["results"]) {
    if (!r.contains("accepted")) continue;
    ++accepted;
    EXPECT_NE(r["status"], "PASS");
    EXPECT_EQ(r["accepted"]["reason"], "legacy load balancer");
  }
  EXPECT_EQ(accepted, 2u);  // CIS 5.2.5 and the NSA/CISA host-namespaces item
  EXPECT_EQ(doc["totals"]["ACCEPTED"], 2);
}

// For CI: --exit-code N when an unaccepted FAIL is found; accepted findings do not fail a build.
TEST(OfflineCli, ExitCodeOnlyForFailuresNoExceptionAccepted) {
  kspm::testing::TempDir tmp;
  const std::string snap = HostNetworkSnapshot(tmp.path());
  // hostNetwork fails NSA/CISA pod.host-namespaces (scored: FAIL), among others.
  EXPECT_EQ(ScanCluster("--from " + snap + " --exit-code 7").exit_code, 7);
  EXPECT_EQ(ScanCluster("--from " + snap).exit_code, 0);  // findings are data by default
  // The stock kubeadm cluster has no FAIL.
  EXPECT_EQ(ScanCluster("--from " + Fixture("kubeadm") + " --exit-code 7").exit_code, 0);
  // Every failing check accepted (the Deployment's, and namespace shop without a NetworkPolicy):
  // no failure left.
  std::ofstream(tmp.path() + "/exceptions.yaml") << R"(exceptions:
  - {name: sandbox, checks: ["*"], names: [web, shop], reason: sandbox cluster, expires: 2099-12-31}
)";
  const auto accepted = ScanCluster("--from " + snap + " --exit-code 7 --exceptions " + tmp.path() +
                                    "/exceptions.yaml");
  EXPECT_EQ(accepted.exit_code, 0) << accepted.out;
}

// scan-cluster writes every CI format; SARIF and JUnit pass what reads them (GitHub's upload
// rules and the SARIF schema, the JUnit schema), and the gates exit 3 saying why.
TEST(OfflineCli, CiFormatsPassTheirConsumersAndGatesExitThree) {
  kspm::testing::TempDir tmp;
  for (const std::string format : {"sarif", "junit"}) {
    const auto o =
        ScanCluster("--from " + Fixture("demo") + " --cluster-name lab --format " + format);
    ASSERT_EQ(o.exit_code, 0) << o.err;
    const auto check = kspm::testing::CheckWithConsumer(format, o.out, tmp.path());
    EXPECT_EQ(check.exit_code, 0) << format << ":\n" << check.out;
  }
  const auto sarif = nlohmann::json::parse(
      ScanCluster("--from " + Fixture("demo") + " --cluster-name lab --format sarif").out);
  const auto& result = sarif["runs"][0]["results"][0];
  EXPECT_TRUE(result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                  .get<std::string>()
                  .starts_with("k8s/"))
      << result.dump();
  const auto json = ScanCluster("--from " + Fixture("demo") + " --format json");
  const auto schema = kspm::testing::CheckJsonSchema("clusterScan", json.out, tmp.path());
  EXPECT_EQ(schema.exit_code, 0) << schema.out;
  const auto csv = ScanCluster("--from " + Fixture("demo") + " --format csv");
  EXPECT_EQ(csv.exit_code, 0);
  EXPECT_TRUE(csv.out.starts_with("cluster,node,benchmark,id,")) << csv.out.substr(0, 200);

  const auto gated = ScanCluster("--from " + Fixture("demo") + " --fail-on high");
  EXPECT_EQ(gated.exit_code, 3);
  EXPECT_NE(gated.err.find("gate failed: "), std::string::npos) << gated.err;
  EXPECT_EQ(
      ScanCluster("--from " + Fixture("kubeadm") + " --fail-on low --min-score 100").exit_code,
      0);  // a clean cluster passes both
  EXPECT_EQ(ScanCluster("--from " + Fixture("demo") + " --min-score 99").exit_code, 3);
  EXPECT_EQ(ScanCluster("--from " + Fixture("demo") + " --min-score x").exit_code, 2);
}

TEST(OfflineCli, UsageAndStartUpErrorsExitTwo) {
  EXPECT_EQ(ScanCluster("--from /nonexistent/dir").exit_code, 2);
  EXPECT_EQ(ScanCluster("--from " + Fixture("kubeadm") + " --format xml").exit_code, 2);
  const auto bad =
      ScanCluster("--from " + Fixture("kubeadm") + " --exceptions /nonexistent/x.yaml");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("/nonexistent/x.yaml"), std::string::npos);
}

}  // namespace
}  // namespace kspm::cluster_test

// `kspm-agent scan` as users and CI call it: output shapes, exit codes, selection, custom rules.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "fixtures/consumers.h"
#include "fixtures/host_builder.h"
#include "nlohmann/json.hpp"

namespace kspm {
namespace {

using Output = kspm::testing::CommandOutput;

// Standard error is kept: usage errors are part of what these tests read.
Output Shell(const std::string& command) { return kspm::testing::RunCommand(command, true); }

class ScanCli : public ::testing::Test {
 protected:
  void SetUp() override {
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("demo-kubeadm-node", root_, &owners).ok());
  }
  Output Scan(const std::string& args) {
    return Shell(std::string(KSPM_BIN_DIR) + "/kspm-agent scan --host-root " + root_ + " " + args);
  }
  kspm::testing::TempDir dir_;
  std::string root_ = dir_.path() + "/root";
};

TEST_F(ScanCli, JsonHasNodeAndResultsWithTheDocumentedFields) {
  const auto o = Scan("--format json --benchmark cis-kubernetes-1.12");
  ASSERT_EQ(o.exit_code, 0) << o.out;
  const auto doc = nlohmann::json::parse(o.out);
  EXPECT_EQ(doc["node"]["name"], "demo-cp-1");
  EXPECT_EQ(doc["node"]["roles"].size(), 3u);
  ASSERT_EQ(doc["results"].size(), 97u);
  for (const auto& r : doc["results"]) {
    for (const char* field : {"benchmark", "id", "status", "scored", "severity", "title",
                              "evidence", "remediation", "reason", "check_id"}) {
      EXPECT_TRUE(r.contains(field)) << field << " missing in " << r.dump();
    }
    EXPECT_EQ(r["benchmark"], "cis-kubernetes-1.12");
  }
  EXPECT_EQ(doc["totals"]["ERROR"], 0);
}

// Without --benchmark a scan judges the node by its platform's benchmark: an EKS worker by CIS
// EKS, not by CIS Kubernetes as well; `all` brings every benchmark back.
TEST(ScanCliPlatform, TheDefaultIsThePlatformsBenchmarkAndAllIsEverything) {
  kspm::testing::TempDir dir;
  bool owners = false;
  ASSERT_TRUE(kspm::testing::BuildFixtureHost("eks-al2023-worker", dir.path(), &owners).ok());
  auto benchmarks = [&](const std::string& args) {
    const auto o = Shell(std::string(KSPM_BIN_DIR) + "/kspm-agent scan --format json --host-root " +
                         dir.path() + " " + args);
    EXPECT_EQ(o.exit_code, 0) << o.out;
    std::set<std::string> out;
    const auto doc = nlohmann::json::parse(o.out, nullptr, false);
    if (doc.is_discarded()) return out;
    EXPECT_EQ(doc["node"]["platform"]["benchmark"], "cis-eks-1.8");
    for (const auto& r : doc["results"]) out.insert(r["benchmark"].get<std::string>());
    return out;
  };
  const auto chosen = benchmarks("");
  EXPECT_TRUE(chosen.contains("cis-eks-1.8"));
  EXPECT_FALSE(chosen.contains("cis-kubernetes-1.12"));
  EXPECT_FALSE(chosen.contains("cis-aks-1.8"));
  EXPECT_EQ(benchmarks("--benchmark auto"), chosen);
  const auto all = benchmarks("--benchmark all");
  EXPECT_TRUE(all.contains("cis-kubernetes-1.12"));
  EXPECT_TRUE(all.contains("cis-eks-1.8"));
  EXPECT_TRUE(all.contains("cis-aks-1.8"));
  const auto o = Shell(std::string(KSPM_BIN_DIR) + "/kspm-agent scan --host-root " + dir.path() +
                       " --benchmark cis-nope-9");
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_NE(o.out.find("known: auto, all, "), std::string::npos) << o.out;
}

TEST_F(ScanCli, ExitCodeOnlyWhenSomethingFails) {
  EXPECT_EQ(Scan("--exit-code 4 --format json").exit_code, 4);
  EXPECT_EQ(Scan("--exit-code 4 --only 1.1.3,1.1.5").exit_code, 0);  // both pass
  EXPECT_EQ(Scan("").exit_code, 0);  // without --exit-code failures are data, not an error
}

TEST_F(ScanCli, OnlyAndSkipTakeItemIdsPrefixesAndCheckIds) {
  auto ids = [&](const std::string& args) {
    const auto o = Scan("--format json " + args);
    EXPECT_EQ(o.exit_code, 0) << o.out;
    std::set<std::string> out;
    const auto doc = nlohmann::json::parse(o.out);
    for (const auto& r : doc["results"]) out.insert(r["id"].template get<std::string>());
    return out;
  };
  const auto node = ids("--only 4.2 --benchmark cis-1.12");  // kube-bench's benchmark name
  EXPECT_EQ(node.size(), 14u);
  EXPECT_TRUE(node.contains("4.2.14"));
  EXPECT_FALSE(node.contains("4.1.1"));
  const auto skipped = ids("--only 4.2 --skip 4.2.1,kubelet.read-only-port");
  EXPECT_FALSE(skipped.contains("4.2.1"));
  EXPECT_FALSE(skipped.contains("4.2.4"));
  EXPECT_TRUE(skipped.contains("4.2.10"));  // a prefix of 4.2.1 textually, not an item under it
}

TEST_F(ScanCli, JunitSarifAndCsvAreProduced) {
  EXPECT_NE(Scan("--format junit").out.find("<testsuites"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(Scan("--format sarif").out)["version"], "2.1.0");
  EXPECT_EQ(Scan("--format csv").out.rfind("cluster,node,benchmark,id", 0), 0u);
}

TEST_F(ScanCli, CustomRulesAreAddedAndBadRulesAreNamed) {
  const std::string rules = dir_.path() + "/rules";
  ASSERT_EQ(Shell("mkdir -p " + rules).exit_code, 0);
  std::ofstream(rules + "/site.yaml") << R"(checks:
  - id: site.kubelet-max-pods
    benchmarks: {site-policy: "S.1"}
    title: Kubelet caps pods per node at 110
    severity: low
    component: kubelet
    setting: {flag: max-pods, key: maxPods, type: int, default: "110"}
    expect: {at_most: 110}
    remediation: Keep maxPods at 110 or below.
)";
  const auto o = Scan("--rules " + rules + " --benchmark site-policy --format json");
  ASSERT_EQ(o.exit_code, 0) << o.out;
  const auto doc = nlohmann::json::parse(o.out);
  ASSERT_EQ(doc["results"].size(), 1u);
  EXPECT_EQ(doc["results"][0]["status"], "PASS");
  EXPECT_EQ(doc["results"][0]["evidence"][0]["source_kind"], "default");

  std::ofstream(rules + "/broken.yaml") << "checks:\n  - id: x\n    expect: {present: true\n";
  const auto bad = Scan("--rules " + rules);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.out.find("broken.yaml:"), std::string::npos) << bad.out;
}

TEST_F(ScanCli, UsageErrorsExitTwoWithAMessage) {
  auto o = Scan("--benchmark cis-9.9");
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_NE(o.out.find("unknown benchmark 'cis-9.9'"), std::string::npos) << o.out;
  o = Shell(std::string(KSPM_BIN_DIR) + "/kspm-agent scan --host-root /nonexistent/root");
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_NE(o.out.find("/nonexistent/root"), std::string::npos) << o.out;
  o = Scan("--format yaml");
  EXPECT_EQ(o.exit_code, 2);
}

// Each format is read by what reads it in CI: GitHub code scanning (SARIF schema and upload
// rules) and Jenkins/GitLab (JUnit schema), on real distributions' node files.
TEST(ScanCliFormats, SarifJunitAndJsonAreAcceptedByTheirConsumers) {
  for (const std::string fixture :
       {"kind-control-plane", "eks-al2-worker", "k3s-server-hardened", "demo-kubeadm-node"}) {
    kspm::testing::TempDir dir;
    const std::string root = dir.path() + "/root";
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost(fixture, root, &owners).ok()) << fixture;
    for (const std::string format : {"sarif", "junit", "json"}) {
      const auto o = kspm::testing::RunCommand(std::string(KSPM_BIN_DIR) +
                                               "/kspm-agent scan --cluster prod --host-root " +
                                               root + " --format " + format);
      ASSERT_EQ(o.exit_code, 0) << fixture;
      const auto check = format == "json"
                             ? kspm::testing::CheckJsonSchema("agentScan", o.out, dir.path())
                             : kspm::testing::CheckWithConsumer(format, o.out, dir.path());
      EXPECT_EQ(check.exit_code, 0) << fixture << " " << format << ":\n" << check.out;
    }
  }
}

TEST_F(ScanCli, GatesExitThreeAndSayWhy) {
  auto o = Scan("--fail-on high");
  EXPECT_EQ(o.exit_code, 3) << o.out;
  EXPECT_NE(o.out.find("gate failed: "), std::string::npos) << o.out;
  o = Scan("--min-score 100");
  EXPECT_EQ(o.exit_code, 3) << o.out;
  EXPECT_NE(o.out.find("is below 100.0"), std::string::npos) << o.out;
  EXPECT_EQ(Scan("--min-score 0").exit_code, 0);
  EXPECT_EQ(Scan("--fail-on severe").exit_code, 2);
  EXPECT_EQ(Scan("--min-score 101").exit_code, 2);
}

// Usage errors exit 2 (the units' RestartPreventExitStatus) in one line naming the problem, with
// the closest valid name for a typo; a selection of nothing is such an error too.
TEST(ScanCliUsage, EveryUsageErrorExitsTwoWithTheClosestName) {
  const std::string bin = std::string(KSPM_BIN_DIR) + "/";
  struct Case {
    std::string command, want;
  };
  const std::vector<Case> cases = {
      {"kspm-agent scna", "did you mean 'scan'?"},
      {"kspm-agent scan --fomat json", "did you mean '--format'?"},
      {"kspm-agent run --intervall 5", "did you mean '--interval'?"},
      {"kspm-agent scan --read-timeout soon", "--read-timeout"},
      {"kspm-agent scan --only 9.9.9", "--only 9.9.9: no check id or benchmark item"},
      {"kspm-agent scan --skip kubelet.anonymous-auht", "--skip kubelet.anonymous-auht"},
      {"kspm-agent", "A subcommand is required"},
      {"kspm-collector serv", "did you mean 'serve'?"},
      {"kspm-collector scan-cluster --from /nonexistent --formt json", "did you mean '--format'?"},
      {"kspmctl findngs", "did you mean 'findings'?"},
      {"kspmctl findings --sevrity high", "unknown flag '--sevrity'"},
  };
  for (const auto& c : cases) {
    const auto o = kspm::testing::RunCommand(bin + c.command, true);
    EXPECT_EQ(o.exit_code, 2) << c.command << "\n" << o.out;
    EXPECT_NE(o.out.find(c.want), std::string::npos) << c.command << "\n" << o.out;
    EXPECT_EQ(o.out.find("terminate called"), std::string::npos) << o.out;
  }
}

// --log-format json stays JSON: every stderr line parses, gRPC's own lines included (they go
// through the same logger), and a message holding quotes and backslashes is escaped.
TEST_F(ScanCli, JsonLogsStayJsonWithGrpcLinesAndQuotes) {
  const std::string odd = dir_.path() + "/a\"b\\c";
  std::filesystem::create_directories(odd);
  const auto o = Shell("GRPC_VERBOSITY=debug " + std::string(KSPM_BIN_DIR) +
                       "/kspm-agent --log-format json --log-level debug send --insecure "
                       "--timeout 2 --collector 127.0.0.1:1 --host-root '" +
                       odd + "'");
  size_t lines = 0, grpc = 0;
  std::istringstream in(o.out);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("{")) continue;  // the command's own one-line failure message
    ++lines;
    const auto doc = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << line;
    if (doc["msg"].get<std::string>().starts_with("grpc: ")) ++grpc;
  }
  EXPECT_GT(lines, 0u) << o.out;
  EXPECT_GT(grpc, 0u) << o.out;
}

TEST(ScanCliEmptyHost, AHostWithoutKubernetesSaysSoInOneLine) {
  kspm::testing::TempDir dir;
  std::filesystem::create_directories(dir.path() + "/etc");
  const auto o = kspm::testing::RunCommand(
      std::string(KSPM_BIN_DIR) + "/kspm-agent scan --node-name vm-1 --host-root " + dir.path());
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(std::count(o.out.begin(), o.out.end(), '\n'), 1) << o.out;
  EXPECT_TRUE(o.out.starts_with("nothing to check on vm-1: no Kubernetes or Docker component"))
      << o.out;
  EXPECT_NE(o.out.find("kubelet"), std::string::npos) << o.out;
}

TEST_F(ScanCli, ChecksListsTheCatalogue) {
  const auto o = Shell(std::string(KSPM_BIN_DIR) + "/kspm-agent checks --format json");
  ASSERT_EQ(o.exit_code, 0);
  const auto doc = nlohmann::json::parse(o.out);
  EXPECT_EQ(doc["schemaVersion"], 1);
  EXPECT_GE(doc["checks"].size(), 141u);
  kspm::testing::TempDir dir;
  const auto check = kspm::testing::CheckJsonSchema("agentChecks", o.out, dir.path());
  EXPECT_EQ(check.exit_code, 0) << check.out;
  const auto csv = Shell(std::string(KSPM_BIN_DIR) + "/kspm-agent checks --format csv");
  ASSERT_EQ(csv.exit_code, 0);
  EXPECT_TRUE(csv.out.starts_with("benchmark,id,check_id,scored,severity,title,component,manual\n"))
      << csv.out.substr(0, 200);
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), doc["checks"].size() + 1);
  EXPECT_EQ(Shell(std::string(KSPM_BIN_DIR) + "/kspm-agent checks --format yaml").exit_code, 2);
}

}  // namespace
}  // namespace kspm

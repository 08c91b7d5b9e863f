// `kspm-collector serve` with a cluster scan: the first scan is in the store before the port file
// appears, SIGHUP and `kspmctl scan-cluster` run one more on demand, on-demand requests share
// scans and are answered when the scanner stops, and a bad exceptions file stops start-up.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "cluster_test_util.h"
#include "fake_apiserver.h"
#include "fixtures/host_builder.h"
#include "fixtures/process.h"
#include "kspm/collector/cluster/scanner.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/certs.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace kspm::cluster_test {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// kspm-collector with `args`.
class Collector : public kspm::testing::Process {
 public:
  explicit Collector(std::vector<std::string> args) : Process(WithBinary(std::move(args))) {}

 private:
  static std::vector<std::string> WithBinary(std::vector<std::string> args) {
    args.insert(args.begin(), std::string(KSPM_BIN_DIR) + "/kspm-collector");
    return args;
  }
};

bool WaitFor(const std::function<bool()>& done) {
  return kspm::testing::WaitUntil(done, std::chrono::seconds(10), std::chrono::milliseconds(50));
}

TEST(Serve, TheClusterSnapshotIsInTheStoreAtStartAndSighupScansAgain) {
  kspm::testing::TempDir dir;
  const std::string db = dir.path() + "/kspm.db", port = dir.path() + "/port";
  Collector collector({"--log-level", "warn", "serve", "--insecure", "--listen", "127.0.0.1:0",
                       "--db", db, "--port-file", port, "--cluster-name", "demo",
                       "--cluster-snapshot", SourceDir() + "/tests/fixtures/cluster/demo",
                       "--exceptions",
                       SourceDir() + "/tests/fixtures/cluster/demo-exceptions.yaml"});
  ASSERT_TRUE(WaitFor([&] { return !Slurp(port).empty(); }));
  auto store = collector::store::OpenSqliteStore(db);
  ASSERT_TRUE(store.ok()) << store.status().message();
  std::string first_scan;
  {
    const auto nodes = (*store)->Nodes("demo", common::Clock::now());
    ASSERT_TRUE(nodes.ok());
    ASSERT_EQ(nodes->size(), 1u);
    EXPECT_EQ((*nodes)[0].identity().node_name(), "cluster");
    EXPECT_GT((*nodes)[0].counts().fail(), 0u);
    first_scan = (*nodes)[0].last_scan_id();
  }
  ::kill(collector.pid(), SIGHUP);
  EXPECT_TRUE(WaitFor([&] {
    const auto nodes = (*store)->Nodes("demo", common::Clock::now());
    return nodes.ok() && nodes->size() == 1 && (*nodes)[0].last_scan_id() != first_scan;
  }));
  EXPECT_EQ(collector.Stop(), 0);
}

TEST(Serve, ABrokenExceptionsFileStopsStartUp) {
  kspm::testing::TempDir dir;
  std::ofstream(dir.path() + "/exceptions.yaml") << "exceptions:\n  - {name: x, checks: [nope]}\n";
  Collector collector({"--log-level", "off", "serve", "--insecure", "--listen", "127.0.0.1:0",
                       "--db", dir.path() + "/kspm.db", "--cluster-snapshot",
                       SourceDir() + "/tests/fixtures/cluster/demo", "--exceptions",
                       dir.path() + "/exceptions.yaml"});
  EXPECT_EQ(collector.Wait(), 1);
}

TEST(Serve, TriggerRunsAScanNow) {
  kspm::testing::TempDir dir;
  ::mkdir((dir.path() + "/snapshot").c_str(), 0755);
  std::ofstream(dir.path() + "/snapshot/ns.yaml")
      << "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
  auto store = collector::store::OpenSqliteStore(dir.path() + "/kspm.db");
  ASSERT_TRUE(store.ok());
  collector::cluster::ClusterScanSettings settings;
  settings.cluster = "lab";
  settings.interval = std::chrono::hours(1);
  auto scan = collector::cluster::PeriodicClusterScan::Create(
      collector::cluster::DirectorySource(dir.path() + "/snapshot"), settings, **store);
  ASSERT_TRUE(scan.ok());
  (*scan)->Start(true);
  const auto before = (*store)->Nodes("lab", common::Clock::now());
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->size(), 1u);
  // A privileged workload appears; the next scan would be an hour away.
  std::ofstream(dir.path() + "/snapshot/app.yaml") << R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: a}
spec: {template: {spec: {containers: [{name: app, image: x, securityContext: {privileged: true}}]}}}
)";
  (*scan)->Trigger();
  EXPECT_TRUE(WaitFor([&] {
    const auto nodes = (*store)->Nodes("lab", common::Clock::now());
    return nodes.ok() && nodes->size() == 1 &&
           (*nodes)[0].last_scan_id() != (*before)[0].last_scan_id();
  }));
  collector::store::FindingFilter filter;
  filter.cluster = "lab";
  filter.id = "5.2.2";
  filter.statuses = {v1::STATUS_WARN};
  EXPECT_FALSE((*store)->Findings(filter)->empty());
  (*scan)->Stop();
}

// A snapshot directory with one namespace; `AddPrivileged` adds a privileged Deployment to it.
class SmallSnapshot {
 public:
  SmallSnapshot() {
    ::mkdir(dir().c_str(), 0755);
    std::ofstream(dir() + "/ns.yaml") << "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
  }
  std::string dir() const { return tmp_.path() + "/snapshot"; }
  std::string db() const { return tmp_.path() + "/kspm.db"; }
  std::string port_file() const { return tmp_.path() + "/port"; }
  void AddPrivileged() const {
    std::ofstream(dir() + "/app.yaml") << R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: a}
spec: {template: {spec: {containers: [{name: app, image: x, securityContext: {privileged: true}}]}}}
)";
  }

 private:
  kspm::testing::TempDir tmp_;
};

std::string Kspmctl(const std::string& port, const std::string& args) {
  return std::string(KSPM_BIN_DIR) + "/kspmctl --insecure --collector 127.0.0.1:" + port + " " +
         args;
}

TEST(Serve, KspmctlScanClusterAnswersWithTheScanItAskedFor) {
  SmallSnapshot snap;
  Collector collector({"--log-level", "warn", "serve", "--insecure", "--listen", "127.0.0.1:0",
                       "--db", snap.db(), "--port-file", snap.port_file(), "--cluster-name", "lab",
                       "--cluster-snapshot", snap.dir(), "--cluster-scan-interval", "3600"});
  ASSERT_TRUE(WaitFor([&] { return !Slurp(snap.port_file()).empty(); }));
  std::string port = Slurp(snap.port_file());
  port.erase(port.find_last_not_of("\n") + 1);

  // The workload appears after the start-up scan; the periodic one is an hour away.
  snap.AddPrivileged();
  const auto scanned = kspm::testing::RunCommand(Kspmctl(port, "scan-cluster --format json"));
  ASSERT_EQ(scanned.exit_code, 0) << scanned.out;
  const auto reply = nlohmann::json::parse(scanned.out);
  EXPECT_EQ(reply["cluster"], "lab");
  EXPECT_EQ(reply["source"], "snapshot " + snap.dir());
  EXPECT_EQ(reply["objects"], 2);
  EXPECT_GE(reply["counts"]["WARN"].get<int>(), 1);  // 5.2.2 on the new Deployment
  // Answered after the commit: the store's last cluster scan is the one in the reply.
  auto store = collector::store::OpenSqliteStore(snap.db());
  ASSERT_TRUE(store.ok());
  const auto nodes = (*store)->Nodes("lab", common::Clock::now());
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].last_scan_id(), reply["scan_id"].get<std::string>());

  // Findings by bare check id, with the object and its namespace.
  const auto found = kspm::testing::RunCommand(
      Kspmctl(port, "findings --id pod.privileged --namespace a --format json"));
  ASSERT_EQ(found.exit_code, 0) << found.out;
  const auto findings = nlohmann::json::parse(found.out)["findings"];
  ASSERT_EQ(findings.size(), 2u);  // CIS 5.2.2 and NSA/CISA
  for (const auto& f : findings) {
    EXPECT_EQ(f["check_id"], "pod.privileged");
    EXPECT_EQ(f["resource"]["name"], "web");
    EXPECT_EQ(f["node"], "cluster");
  }
  // --limit caps the list.
  const auto one = kspm::testing::RunCommand(
      Kspmctl(port, "findings --id pod.privileged --limit 1 --format json"));
  EXPECT_EQ(nlohmann::json::parse(one.out)["findings"].size(), 1u) << one.out;
  // The table names the object.
  const auto table = kspm::testing::RunCommand(Kspmctl(port, "findings --id 5.2.2"));
  EXPECT_NE(table.out.find("RESOURCE"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("Deployment a/web [app]"), std::string::npos) << table.out;
  // The summary has the namespace and the section.
  const auto summary =
      nlohmann::json::parse(kspm::testing::RunCommand(Kspmctl(port, "summary --format json")).out);
  std::set<std::string> scopes;
  for (const auto& n : summary["namespaces"]) scopes.insert(n["scope"].get<std::string>());
  for (const auto& n : summary["sections"]) scopes.insert(n["scope"].get<std::string>());
  EXPECT_TRUE(scopes.contains("a"));
  EXPECT_TRUE(scopes.contains("cis-kubernetes-1.12 5"));

  // Another cluster is not this collector's.
  const auto other = kspm::testing::RunCommand(Kspmctl(port, "--cluster prod scan-cluster"), true);
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.out.find("scans cluster 'lab', not 'prod'"), std::string::npos) << other.out;
  EXPECT_EQ(collector.Stop(), 0);
}

// A cluster change between two scans is drift, shown by `kspmctl drift` next to node drift: the
// object, the rescan that saw it, and each verdict that changed.
TEST(Serve, KspmctlDriftShowsAClusterChange) {
  SmallSnapshot snap;
  const auto write_app = [&](const char* host_pid) {
    std::ofstream(snap.dir() + "/app.yaml")
        << "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: a}\n"
           "spec: {template: {spec: {hostPID: "
        << host_pid << ", containers: [{name: app, image: x}]}}}\n";
  };
  write_app("false");
  Collector collector({"--log-level", "warn", "serve", "--insecure", "--listen", "127.0.0.1:0",
                       "--db", snap.db(), "--port-file", snap.port_file(), "--cluster-name", "lab",
                       "--cluster-snapshot", snap.dir(), "--cluster-scan-interval", "3600"});
  ASSERT_TRUE(WaitFor([&] { return !Slurp(snap.port_file()).empty(); }));
  std::string port = Slurp(snap.port_file());
  port.erase(port.find_last_not_of("\n") + 1);
  const auto none = kspm::testing::RunCommand(Kspmctl(port, "drift"));
  EXPECT_NE(none.out.find("no drift events match"), std::string::npos) << none.out;

  write_app("true");  // someone gives the pods the host's PID namespace
  ASSERT_EQ(kspm::testing::RunCommand(Kspmctl(port, "scan-cluster")).exit_code, 0);
  const auto drift = kspm::testing::RunCommand(Kspmctl(port, "drift --format json"));
  ASSERT_EQ(drift.exit_code, 0) << drift.out;
  const auto events = nlohmann::json::parse(drift.out)["drift"];
  ASSERT_EQ(events.size(), 1u) << drift.out;
  EXPECT_EQ(events[0]["cluster"], "lab");
  EXPECT_EQ(events[0]["node"], "cluster");
  EXPECT_EQ(events[0]["path"], "Deployment a/web");
  EXPECT_EQ(events[0]["source"], "rescan");
  std::set<std::string> changed;
  for (const auto& c : events[0]["changes"]) {
    EXPECT_EQ(c["old_status"], "PASS");
    changed.insert(c["check_id"].get<std::string>() + " " + c["status"].get<std::string>());
  }
  EXPECT_TRUE(changed.contains("pod.host-pid WARN")) << drift.out;  // CIS 5.2.3, unscored
  EXPECT_TRUE(changed.contains("pod.host-pid FAIL")) << drift.out;  // NSA/CISA, scored
  const auto table = kspm::testing::RunCommand(Kspmctl(port, "drift"));
  EXPECT_NE(table.out.find("Deployment a/web"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("5.2.3 PASS->WARN"), std::string::npos) << table.out;
  EXPECT_EQ(collector.Stop(), 0);
}

TEST(Serve, ANodeCertificateCannotAskForAClusterScan) {
  SmallSnapshot snap;
  kspm::testing::TempDir certs;
  ASSERT_TRUE(common::InitCertificateDirectory(certs.path(), {"worker-1"}, {"localhost"},
                                               {"127.0.0.1"}, false)
                  .ok());
  // An operator who is not kspmctl, added to the existing CA by kspmctl itself.
  const auto issued = kspm::testing::RunCommand(
      std::string(KSPM_BIN_DIR) + "/kspmctl certs issue --ca " + certs.path() +
          " --client auditor --role operator --out " + certs.path() + "/nodes",
      true);
  ASSERT_EQ(issued.exit_code, 0) << issued.out;
  {
    // worker-1 has reported to this collector before.
    auto store = collector::store::OpenSqliteStore(snap.db());
    ASSERT_TRUE(store.ok());
    v1::NodeReport report;
    report.set_scan_id("worker-1-scan");
    report.mutable_node()->set_node_name("worker-1");
    report.mutable_node()->set_cluster("lab");
    report.set_full(true);
    ASSERT_TRUE((*store)->CommitReport(report, common::Clock::now()).ok());
  }
  const std::string ca = certs.path() + "/ca.crt";
  Collector collector(
      {"--log-level", "warn", "serve", "--listen", "127.0.0.1:0", "--db", snap.db(), "--port-file",
       snap.port_file(), "--tls-ca", ca, "--tls-cert", certs.path() + "/collector.crt", "--tls-key",
       certs.path() + "/collector.key", "--cluster-name", "lab", "--cluster-snapshot", snap.dir()});
  ASSERT_TRUE(WaitFor([&] { return !Slurp(snap.port_file()).empty(); }));
  std::string port = Slurp(snap.port_file());
  port.erase(port.find_last_not_of("\n") + 1);
  auto kspmctl = [&](const std::string& who) {
    return kspm::testing::RunCommand(
        std::string(KSPM_BIN_DIR) + "/kspmctl --collector 127.0.0.1:" + port + " --tls-ca " + ca +
            " --tls-cert " + who + ".crt --tls-key " + who + ".key scan-cluster",
        true);
  };
  const auto node = kspmctl(certs.path() + "/nodes/worker-1");
  EXPECT_EQ(node.exit_code, 1);
  EXPECT_NE(node.out.find("ScanCluster needs the operator role; the certificate 'worker-1' has "
                          "the node role"),
            std::string::npos)
      << node.out;
  const auto ctl = kspmctl(certs.path() + "/kspmctl");
  EXPECT_EQ(ctl.exit_code, 0) << ctl.out;
  EXPECT_NE(ctl.out.find("cluster lab scanned"), std::string::npos) << ctl.out;
  EXPECT_EQ(collector.Stop(), 0);

  // With --scan-clients, only the names listed: a certificate that never reported is refused too.
  ::unlink(snap.port_file().c_str());
  Collector strict({"--log-level",
                    "warn",
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--db",
                    snap.db(),
                    "--port-file",
                    snap.port_file(),
                    "--tls-ca",
                    ca,
                    "--tls-cert",
                    certs.path() + "/collector.crt",
                    "--tls-key",
                    certs.path() + "/collector.key",
                    "--cluster-name",
                    "lab",
                    "--cluster-snapshot",
                    snap.dir(),
                    "--scan-clients",
                    "kspmctl"});
  ASSERT_TRUE(WaitFor([&] { return !Slurp(snap.port_file()).empty(); }));
  port = Slurp(snap.port_file());
  port.erase(port.find_last_not_of("\n") + 1);
  const auto other = kspmctl(certs.path() + "/nodes/auditor");
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.out.find("'auditor' may not ask for cluster scans (--scan-clients: kspmctl)"),
            std::string::npos)
      << other.out;
  EXPECT_EQ(kspmctl(certs.path() + "/kspmctl").exit_code, 0);
  EXPECT_EQ(strict.Stop(), 0);
}

TEST(Serve, KspmctlScanClusterFailsClearlyWithoutAClusterSource) {
  kspm::testing::TempDir dir;
  const std::string port_file = dir.path() + "/port";
  Collector collector({"--log-level", "warn", "serve", "--insecure", "--listen", "127.0.0.1:0",
                       "--db", dir.path() + "/kspm.db", "--port-file", port_file,
                       "--no-cluster-scan"});
  ASSERT_TRUE(WaitFor([&] { return !Slurp(port_file).empty(); }));
  std::string port = Slurp(port_file);
  port.erase(port.find_last_not_of("\n") + 1);
  const auto out = kspm::testing::RunCommand(Kspmctl(port, "scan-cluster"), true);
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.out.find("does not scan a cluster"), std::string::npos) << out.out;
  EXPECT_EQ(collector.Stop(), 0);
}

// The outcome a RequestScan callback received.
struct Answer {
  std::promise<absl::StatusOr<v1::ScanClusterResponse>> promise;
  std::future<absl::StatusOr<v1::ScanClusterResponse>> future = promise.get_future();
  collector::server::ClusterScanTrigger::Done Callback() {
    return [this](absl::StatusOr<v1::ScanClusterResponse> r) { promise.set_value(std::move(r)); };
  }
  absl::StatusOr<v1::ScanClusterResponse> Get() {
    if (future.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      return absl::DeadlineExceededError("no answer in 20 s");
    }
    return future.get();
  }
};

TEST(Serve, OnDemandRequestsAreAnsweredByAScanThatStartsAfterThem) {
  SmallSnapshot snap;
  auto store = collector::store::OpenSqliteStore(snap.db());
  ASSERT_TRUE(store.ok());
  collector::cluster::ClusterScanSettings settings;
  settings.cluster = "lab";
  settings.interval = std::chrono::hours(1);
  auto scan = collector::cluster::PeriodicClusterScan::Create(
      collector::cluster::DirectorySource(snap.dir()), settings, **store);
  ASSERT_TRUE(scan.ok());
  (*scan)->Start(true);
  const std::string start_scan = (*(*store)->Nodes("lab", common::Clock::now()))[0].last_scan_id();
  Answer first, second;
  (*scan)->RequestScan(first.Callback());
  (*scan)->RequestScan(second.Callback());
  const auto a = first.Get(), b = second.Get();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->scan_id(), start_scan);  // never the scan that ran before the request
  EXPECT_EQ(a->cluster(), "lab");
  EXPECT_EQ(a->objects(), 1u);
  // A request after those answers is a new scan, which sees what changed meanwhile.
  snap.AddPrivileged();
  Answer third;
  (*scan)->RequestScan(third.Callback());
  const auto c = third.Get();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(c->scan_id(), a->scan_id());
  EXPECT_NE(c->scan_id(), b->scan_id());
  EXPECT_EQ(c->objects(), 2u);
  // A source that cannot be read: the answer names the cluster and the source.
  ASSERT_EQ(std::system(("rm -rf " + snap.dir()).c_str()), 0);
  Answer broken;
  (*scan)->RequestScan(broken.Callback());
  const auto d = broken.Get();
  ASSERT_FALSE(d.ok());
  EXPECT_NE(std::string(d.status().message()).find("cluster scan of lab (snapshot " + snap.dir()),
            std::string::npos)
      << d.status();
  (*scan)->Stop();
  // After Stop, a request is answered at once, as unavailable.
  Answer late;
  (*scan)->RequestScan(late.Callback());
  const auto e = late.Get();
  EXPECT_EQ(e.status().code(), absl::StatusCode::kUnavailable);
}

TEST(Serve, RequestsPendingWhenTheScannerStopsAreAnswered) {
  SmallSnapshot snap;
  auto store = collector::store::OpenSqliteStore(snap.db());
  ASSERT_TRUE(store.ok());
  collector::cluster::ClusterScanSettings settings;
  settings.cluster = "lab";
  auto scan = collector::cluster::PeriodicClusterScan::Create(
      collector::cluster::DirectorySource(snap.dir()), settings, **store);
  ASSERT_TRUE(scan.ok());
  // Never started: nothing would ever run the scan, so Stop must answer.
  Answer pending;
  (*scan)->RequestScan(pending.Callback());
  (*scan)->Stop();
  const auto outcome = pending.Get();
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kUnavailable) << outcome.status();
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

// One collector scans several clusters, one per kubeconfig context (`--scan-context
// NAME=CONTEXT`): each is filed under its name, scored apart, and scanned on demand by name; an
// unknown context is a start-up error naming it. Both contexts reach the same fake API server
// (fake_apiserver.py, the kubeadm fixture's objects) under different names.
TEST(Serve, OneCollectorScansTheClustersOfSeveralContexts) {
  kspm::testing::TempDir dir;
  const Pki pki = MakePki();
  FakeApiServer api(dir.path(), pki, {});
  ASSERT_GT(api.port(), 0);
  const std::string kubeconfig = dir.path() + "/kubeconfig";
  std::string contexts;
  for (const char* name : {"east-ctx", "west-ctx"}) {
    contexts += std::string("- name: ") + name + "\n  context: {cluster: api, user: c}\n";
  }
  WriteFile(kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: api\n  cluster:\n"
            "    server: " +
                api.url() + "\n    certificate-authority: " + dir.path() +
                "/ca.crt\nusers:\n- name: c\n  user:\n    token: " + kToken + "\ncontexts:\n" +
                contexts + "current-context: east-ctx\n");
  const std::string db = dir.path() + "/kspm.db", port_file = dir.path() + "/collector.port";
  Collector collector({"--log-level",
                       "warn",
                       "serve",
                       "--insecure",
                       "--listen",
                       "127.0.0.1:0",
                       "--db",
                       db,
                       "--port-file",
                       port_file,
                       "--kubeconfig",
                       kubeconfig,
                       "--context",
                       "east-ctx",
                       "--cluster-name",
                       "east",
                       "--scan-context",
                       "west=west-ctx",
                       "--cluster-scan-interval",
                       "3600"});
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return !Slurp(port_file).empty(); },
                                       std::chrono::seconds(30)));
  std::string port = Slurp(port_file);
  port.erase(port.find_last_not_of("\n") + 1);
  // Both clusters scanned on demand, each by name (answered once its scan is committed), then
  // scored apart.
  for (const char* name : {"east", "west"}) {
    const auto scanned = kspm::testing::RunCommand(
        Kspmctl(port, std::string("--cluster ") + name + " scan-cluster --format json"));
    ASSERT_EQ(scanned.exit_code, 0) << scanned.out;
    EXPECT_EQ(nlohmann::json::parse(scanned.out)["cluster"], name);
  }
  const auto out = kspm::testing::RunCommand(Kspmctl(port, "--all-clusters summary --format json"));
  ASSERT_EQ(out.exit_code, 0) << out.out;
  const auto summary = nlohmann::json::parse(out.out);
  ASSERT_EQ(summary["clusters"].size(), 2u) << summary.dump();
  EXPECT_EQ(summary["clusters"][0]["counts"], summary["clusters"][1]["counts"]);  // same objects
  EXPECT_EQ(summary["clusters"][0]["scope"], "east");
  EXPECT_EQ(summary["clusters"][1]["scope"], "west");
  EXPECT_GT(summary["clusters"][0]["counts"]["PASS"].get<int>(), 0);
  std::set<std::string> nodes;
  for (const auto& n : summary["nodes"]) nodes.insert(n["scope"].get<std::string>());
  EXPECT_EQ(nodes, (std::set<std::string>{"east/cluster", "west/cluster"}));
  // Another name is refused, naming both.
  const auto other = kspm::testing::RunCommand(Kspmctl(port, "--cluster north scan-cluster"), true);
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.out.find("scans cluster 'east', 'west', not 'north'"), std::string::npos)
      << other.out;
  EXPECT_EQ(collector.Stop(), 0);

  // A context the kubeconfig does not have stops start-up, naming it.
  const auto bad = kspm::testing::RunCommand(
      std::string(KSPM_BIN_DIR) + "/kspm-collector serve --insecure --listen 127.0.0.1:0 --db " +
          dir.path() + "/bad.db --kubeconfig " + kubeconfig +
          " --cluster-name east --scan-context north=north-ctx",
      true);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.out.find("--scan-context north=north-ctx"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace kspm::cluster_test

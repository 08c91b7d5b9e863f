// `kspm-collector serve` with a cluster scan: the first scan is in the store before the port file
// appears, SIGHUP runs one more on demand, and a bad exceptions file stops start-up.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>
#include <thread>

#include "cluster_test_util.h"
#include "fixtures/host_builder.h"
#include "kspm/collector/cluster/scanner.h"
#include "kspm/collector/store/store.h"

extern char** environ;

namespace kspm::cluster_test {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class Collector {
 public:
  explicit Collector(std::vector<std::string> args) {
    args.insert(args.begin(), std::string(KSPM_BIN_DIR) + "/kspm-collector");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~Collector() { Stop(); }
  int Stop() {
    if (pid_ <= 0) return status_;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return status_;
  }
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 200; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
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

}  // namespace
}  // namespace kspm::cluster_test

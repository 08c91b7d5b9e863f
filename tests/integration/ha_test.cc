// Several collectors on one PostgreSQL database (the real server, kspm::testing::PostgresServer):
// real `kspm-collector serve` processes, real `kspm-agent run` agents that reach them through one
// gRPC target naming both (as a Service would), one collector killed with SIGKILL mid-stream.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fixtures/host_builder.h"
#include "fixtures/http.h"
#include "fixtures/postgres_test.h"
#include "fixtures/process.h"

namespace kspm {
namespace {

using namespace std::chrono_literals;

class HaTest : public kspm::testing::PostgresDatabaseTest {
 protected:
  // A collector on the shared database; its gRPC port once it listens (0: it did not start).
  std::unique_ptr<kspm::testing::Process> Collector(const std::string& name, int* port,
                                                    std::vector<std::string> extra = {}) {
    const std::string port_file = dir_.path() + "/" + name + ".port";
    std::vector<std::string> argv = {kBin + "/kspm-collector",
                                     "--log-level",
                                     "info",
                                     "serve",
                                     "--insecure",
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     port_file,
                                     "--store",
                                     pg_->Url(db_)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = std::make_unique<kspm::testing::Process>(
        argv, kspm::testing::Process::Options{.log = dir_.path() + "/" + name + ".log"});
    std::string text;
    *port = 0;
    if (kspm::testing::WaitUntil(
            [&] { return kspm::testing::ReadFileText(port_file, &text).ok() && !text.empty(); },
            30s)) {
      *port = std::stoi(text);
    }
    return p;
  }

  const std::string kBin = KSPM_BIN_DIR;
  kspm::testing::TempDir dir_;
};

// Agents stream to the first of two collectors until it is killed (SIGKILL, mid-stream); they go
// on to the second, resending what was not acknowledged. Every report is stored once, each
// verdict change is one transition (each node's history is one unbroken chain), and the final
// verdicts are the hosts' final state.
TEST_F(HaTest, AgentsMoveToTheOtherCollectorWhenOneIsKilledAndNothingIsLostOrDoubled) {
  int port_a = 0, port_b = 0;
  auto a = Collector("a", &port_a);
  ASSERT_GT(port_a, 0) << a->Log();
  auto b = Collector("b", &port_b);
  ASSERT_GT(port_b, 0) << b->Log();
  // One target for both, tried in order (gRPC pick_first): A while it lives, then B.
  const std::string target =
      "ipv4:127.0.0.1:" + std::to_string(port_a) + ",127.0.0.1:" + std::to_string(port_b);

  constexpr int kNodes = 3;
  std::vector<std::string> configs;
  std::vector<std::unique_ptr<kspm::testing::Process>> agents;
  for (int i = 0; i < kNodes; ++i) {
    const std::string root = dir_.path() + "/host" + std::to_string(i);
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("kubeadm-worker", root, &owners).ok());
    configs.push_back(root + "/var/lib/kubelet/config.yaml");
    ASSERT_EQ(::chmod(configs.back().c_str(), 0600), 0);
    agents.push_back(std::make_unique<kspm::testing::Process>(
        std::vector<std::string>{kBin + "/kspm-agent",
                                 "--log-level",
                                 "info",
                                 "run",
                                 "--insecure",
                                 "--collector",
                                 target,
                                 "--cluster",
                                 "prod",
                                 "--node-name",
                                 "node-" + std::to_string(i),
                                 "--host-root",
                                 root,
                                 "--state-dir",
                                 dir_.path() + "/state" + std::to_string(i),
                                 "--interval",
                                 "1",
                                 "--drift-mode",
                                 "rescan",
                                 "--only",
                                 "4.1.9,4.1.10"},
        kspm::testing::Process::Options{.log =
                                            dir_.path() + "/agent" + std::to_string(i) + ".log"}));
  }
  ASSERT_TRUE(
      kspm::testing::WaitUntil([&] { return Count("SELECT COUNT(*) FROM nodes") == kNodes; }, 60s))
      << agents[0]->Log();

  // The kubelet config's mode flips (4.1.9 FAIL and PASS) while the agents scan every second;
  // the first collector is killed halfway.
  const auto flip_for = [&](std::chrono::seconds how_long, int& flips) {
    const auto end = std::chrono::steady_clock::now() + how_long;
    while (std::chrono::steady_clock::now() < end) {
      const mode_t mode = flips % 2 == 0 ? 0644 : 0600;
      for (const auto& c : configs) ::chmod(c.c_str(), mode);
      ++flips;
      std::this_thread::sleep_for(700ms);
    }
  };
  int flips = 0;
  flip_for(6s, flips);
  const int scans_before_kill = Count("SELECT COUNT(*) FROM scans");
  const int64_t killed_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
  EXPECT_EQ(a->Stop(SIGKILL), 128 + SIGKILL);
  flip_for(6s, flips);
  // Settle on 0644: 4.1.9 FAILs on every node.
  for (const auto& c : configs) ::chmod(c.c_str(), 0644);
  const std::string final_fail =
      "SELECT COUNT(DISTINCT node_id) FROM results WHERE benchmark_id = '4.1.9' AND status = 2";
  EXPECT_TRUE(kspm::testing::WaitUntil([&] { return Count(final_fail) == kNodes; }, 30s))
      << Count(final_fail) << "\n"
      << b->Log();

  // Reports went to both collectors: some before the kill, some to B after it.
  EXPECT_GT(scans_before_kill, 0);
  EXPECT_GT(Count("SELECT COUNT(*) FROM scans WHERE received_ms > " + std::to_string(killed_at_ms)),
            0)
      << b->Log();
  // Each node's history of 4.1.9 is one chain: every transition starts where the one before
  // it ended. A report stored twice would repeat a change (FAIL->PASS twice in a row).
  const std::string chain_breaks =
      "SELECT COUNT(*) FROM (SELECT old_status, LAG(new_status) OVER (PARTITION BY node_id, "
      "check_id, benchmark ORDER BY id) AS before FROM transitions) t WHERE before IS NOT NULL "
      "AND before <> old_status";
  EXPECT_EQ(Count(chain_breaks), 0);
  EXPECT_GT(Count("SELECT COUNT(*) FROM transitions"), kNodes * 2);
  // Changes are only in history once per scan: no scan recorded two transitions of one result.
  EXPECT_EQ(Count("SELECT COUNT(*) FROM (SELECT scan_id, node_id, check_id, benchmark, kind, "
                  "object_namespace, name, container FROM transitions GROUP BY 1, 2, 3, 4, 5, 6, "
                  "7, 8 HAVING COUNT(*) > 1) d"),
            0);
  std::cout << "scans " << Count("SELECT COUNT(*) FROM scans") << " (" << scans_before_kill
            << " before the kill), transitions " << Count("SELECT COUNT(*) FROM transitions")
            << ", flips " << flips << "\n";
  for (auto& agent : agents) agent->Stop();
}

// A collector whose database is not reachable yet (its socket directory is empty) answers the
// probes while it retries: alive, not ready, saying why. Once the server's socket appears it
// serves, and is ready; a second one, still waiting, stops at once when told to.
TEST_F(HaTest, ACollectorWaitingForItsDatabaseIsAliveNotReadyAndServesOnceItComes) {
  std::string socket;
  for (const auto& e : std::filesystem::directory_iterator(pg_->dir())) {
    if (e.path().filename().string().rfind(".s.PGSQL.", 0) == 0 &&
        e.path().extension() != ".lock") {
      socket = e.path().string();
    }
  }
  ASSERT_FALSE(socket.empty()) << "no socket in " << pg_->dir();
  const std::string later = dir_.path() + "/later";
  ASSERT_EQ(mkdir(later.c_str(), 0755), 0);
  const std::string url = "postgresql://kspm@/" + db_ + "?host=" + later;
  const int health = kspm::testing::FreeLoopbackPort();
  const std::string port_file = dir_.path() + "/waiting.port";
  kspm::testing::Process collector(
      {kBin + "/kspm-collector", "serve", "--insecure", "--listen", "127.0.0.1:0", "--port-file",
       port_file, "--store", url, "--store-wait", "120", "--health-listen",
       "127.0.0.1:" + std::to_string(health)},
      {.log = dir_.path() + "/waiting.log"});
  const std::string base = "http://127.0.0.1:" + std::to_string(health);
  kspm::testing::HttpAnswer ready;
  ASSERT_TRUE(kspm::testing::WaitUntil([&] {
    ready = kspm::testing::HttpGet(base + "/readyz");
    return ready.body.find("store unreachable, retrying") != std::string::npos;
  })) << ready.code
      << " " << ready.body << collector.Log();
  EXPECT_EQ(ready.code, 503);
  EXPECT_NE(ready.body.find(later), std::string::npos) << ready.body;  // which server
  EXPECT_EQ(kspm::testing::HttpGet(base + "/healthz").code, 200);
  std::string text;
  EXPECT_FALSE(kspm::testing::ReadFileText(port_file, &text).ok());  // not serving agents yet

  // The server "comes up": its socket appears where the collector looks.
  ASSERT_EQ(symlink(socket.c_str(),
                    (later + "/" + std::filesystem::path(socket).filename().string()).c_str()),
            0);
  ASSERT_TRUE(kspm::testing::WaitUntil(
      [&] { return kspm::testing::ReadFileText(port_file, &text).ok() && !text.empty(); }, 30s))
      << collector.Log();
  ASSERT_TRUE(kspm::testing::WaitUntil([&] {
    return kspm::testing::HttpGet(base + "/readyz").code == 200;
  })) << kspm::testing::HttpGet(base + "/readyz").body;

  // Another, waiting for a server that never comes, stops at once on SIGTERM: a stop, exit 0.
  const std::string never = dir_.path() + "/never";
  ASSERT_EQ(mkdir(never.c_str(), 0755), 0);
  const int health2 = kspm::testing::FreeLoopbackPort();
  kspm::testing::Process stopped(
      {kBin + "/kspm-collector", "serve", "--insecure", "--listen", "127.0.0.1:0", "--store",
       "postgresql://kspm@/" + db_ + "?host=" + never, "--store-wait", "120", "--health-listen",
       "127.0.0.1:" + std::to_string(health2)},
      {.log = dir_.path() + "/stopped.log"});
  ASSERT_TRUE(kspm::testing::WaitUntil([&] {
    return kspm::testing::HttpGet("http://127.0.0.1:" + std::to_string(health2) + "/readyz").code ==
           503;
  })) << stopped.Log();
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_EQ(stopped.Stop(), 0) << stopped.Log();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 5s);
  EXPECT_NE(stopped.Log().find("stopped while waiting for"), std::string::npos) << stopped.Log();
}

// Two collectors with the same cluster to scan: one scans it (the lease holder), the other
// waits; killed, the first's lease passes to the second, which scans from then on.
TEST_F(HaTest, OneCollectorScansTheClusterAndTheOtherTakesOverWhenItDies) {
  const std::vector<std::string> scan = {
      "--cluster-name",          "prod",
      "--cluster-snapshot",      std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/cluster/demo",
      "--cluster-scan-interval", "1"};
  int port_a = 0, port_b = 0;
  const int health_a = kspm::testing::FreeLoopbackPort(),
            health_b = kspm::testing::FreeLoopbackPort();
  auto with_health = [&](int port) {
    auto args = scan;
    args.push_back("--health-listen");
    args.push_back("127.0.0.1:" + std::to_string(port));
    return args;
  };
  auto a = Collector("a", &port_a, with_health(health_a));
  ASSERT_GT(port_a, 0) << a->Log();
  auto b = Collector("b", &port_b, with_health(health_b));
  ASSERT_GT(port_b, 0) << b->Log();
  // A collector's own count of the cluster scans it ran, and whether it holds the lease.
  auto metric = [](int port, const std::string& series) {
    const auto got =
        kspm::testing::HttpGet("http://127.0.0.1:" + std::to_string(port) + "/metrics");
    std::istringstream in(got.body);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1.0;
  };
  // One of the two prunes history.
  ASSERT_TRUE(kspm::testing::WaitUntil([&] {
    return a->Log().find("prunes history") != std::string::npos &&
           b->Log().find("prunes history") != std::string::npos;
  })) << a->Log()
      << b->Log();
  EXPECT_NE(a->Log().find("this collector prunes history") != std::string::npos,
            b->Log().find("this collector prunes history") != std::string::npos);
  const std::string ran = "kspm_cluster_scans_total{cluster=\"prod\",outcome=\"ok\"}";
  const std::string leads = "kspm_cluster_scan_leader{cluster=\"prod\"}";
  const std::string waiting = "another collector scans it";
  ASSERT_TRUE(kspm::testing::WaitUntil([&] {
    return (a->Log().find(waiting) != std::string::npos) !=
           (b->Log().find(waiting) != std::string::npos);
  })) << a->Log()
      << b->Log();
  const bool a_leads = b->Log().find(waiting) != std::string::npos;
  auto& leader = a_leads ? a : b;
  auto& follower = a_leads ? b : a;
  const std::string cluster_scans =
      "SELECT COUNT(*) FROM scans s JOIN nodes n ON n.id = s.node_id WHERE n.name = 'cluster'";
  const int leader_health = a_leads ? health_a : health_b;
  const int follower_health = a_leads ? health_b : health_a;
  // Scans counted once committed whole (a scan's row is written when it starts).
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return metric(leader_health, ran) >= 3; }, 30s));
  EXPECT_EQ(metric(leader_health, leads), 1);
  EXPECT_EQ(metric(follower_health, ran), 0);  // it never scanned while the other lived
  EXPECT_EQ(metric(follower_health, leads), 0);
  EXPECT_EQ(leader->Stop(SIGKILL), 128 + SIGKILL);
  EXPECT_TRUE(kspm::testing::WaitUntil(
      [&] { return follower->Log().find("lease taken over") != std::string::npos; }, 30s))
      << follower->Log();
  const int after_kill = Count(cluster_scans);
  EXPECT_TRUE(kspm::testing::WaitUntil([&] { return Count(cluster_scans) > after_kill; }, 30s))
      << follower->Log();
  EXPECT_TRUE(kspm::testing::WaitUntil([&] { return metric(follower_health, ran) >= 1; }, 30s));
  EXPECT_EQ(metric(follower_health, leads), 1);
}

}  // namespace
}  // namespace kspm

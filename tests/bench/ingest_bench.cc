// kspm-bench-ingest: many simulated agents (one process, many streams) against one real
// kspm-collector process on loopback, and kspmctl-style summary latency over 1,000,000 stored
// results.
//
//   kspm-bench-ingest [NODES] [RESULTS_PER_NODE] [STREAM_THREADS]
//
// Phases: (1) a wave of NODES full reports, all new; (2) the same wave again with unchanged
// verdicts; (3) a wave of change-only reports (5 results each); (4) a store of 1,000,000 results
// and the Summary RPC over it. Prints results/s, p50/p99 ack latency, and the collector's peak
// RSS (VmHWM of its process).
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fixtures/host_builder.h"
#include "grpcpp/create_channel.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/time.h"
#include "kspm/v1/agent.grpc.pb.h"
#include "kspm/v1/query.grpc.pb.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Collector {
  pid_t pid = 0;
  std::string address;
};

Collector StartCollector(const std::string& db, const std::string& port_file,
                         const std::string& rules) {
  const std::string bin = std::string(KSPM_BIN_DIR) + "/kspm-collector";
  std::vector<std::string> argv = {bin,        "--log-level", "error", "serve", "--insecure",
                                   "--listen", "127.0.0.1:0", "--db",  db,      "--port-file",
                                   port_file,  "--rules",     rules};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  Collector c;
  unlink(port_file.c_str());
  if (posix_spawn(&c.pid, bin.c_str(), nullptr, nullptr, args.data(), environ) != 0) {
    std::cerr << "cannot start " << bin << "\n";
    std::exit(1);
  }
  for (int i = 0; i < 400; ++i) {
    std::ifstream in(port_file);
    int port = 0;
    if (in >> port && port > 0) {
      c.address = "127.0.0.1:" + std::to_string(port);
      return c;
    }
    std::this_thread::sleep_for(25ms);
  }
  std::cerr << "collector did not start\n";
  std::exit(1);
}

long PeakRssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

void StopCollector(const Collector& c) {
  kill(c.pid, SIGTERM);
  int status = 0;
  waitpid(c.pid, &status, 0);
}

kspm::v1::NodeReport MakeReport(const std::string& node, int results, int seq, bool full,
                                int flip) {
  kspm::v1::NodeReport r;
  r.set_scan_id(node + "-" + std::to_string(seq));
  r.mutable_node()->set_node_name(node);
  r.mutable_node()->set_cluster("bench");
  r.set_full(full);
  r.set_scan_interval_seconds(300);
  for (int i = 0; i < results; ++i) {
    auto* res = r.add_results();
    // Ids declared to the collector with --rules, like custom rules.
    res->set_check_id("bench.check-" + std::to_string(i));
    res->set_benchmark(i < results * 2 / 3 ? "cis-kubernetes-1.12" : "cis-docker-1.6");
    res->set_benchmark_id("4.2." + std::to_string(i));
    res->set_title("Kubelet setting number " + std::to_string(i));
    res->set_status(((i + flip) % 5 == 0) ? kspm::v1::STATUS_FAIL : kspm::v1::STATUS_PASS);
    res->set_severity(kspm::v1::SEVERITY_HIGH);
    res->set_scored(true);
    res->set_expected("false");
    res->set_reason("--anonymous-auth is true; expected false");
    res->set_remediation("Set authentication.anonymous.enabled to false in the kubelet config.");
    auto* e = res->add_evidence();
    e->set_key("--anonymous-auth");
    e->set_value("true");
    e->set_present(true);
    e->set_source_kind(kspm::v1::SOURCE_KIND_FLAG);
    e->set_source("flag of pid 812 (kubelet)");
    e->set_pid(812);
  }
  return r;
}

struct WaveResult {
  double seconds = 0;
  std::vector<double> ack_ms;
  size_t results = 0;
  size_t failures = 0;
};

// Each thread drives its share of nodes; every node opens one stream, says hello, sends its
// report(s) and waits for the ack, like an agent would.
WaveResult Wave(const std::string& address, int nodes, int threads,
                const std::function<kspm::v1::NodeReport(int)>& make) {
  WaveResult out;
  std::mutex mu;
  std::atomic<int> next{0};
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int t = 0; t < threads; ++t) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", t);  // distinct connections
    channels.push_back(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  std::vector<kspm::v1::NodeReport> reports(nodes);
  for (int i = 0; i < nodes; ++i) reports[i] = make(i);
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto stub = kspm::v1::AgentService::NewStub(channels[t]);
      std::vector<double> local;
      size_t failures = 0;
      for (int i = next++; i < nodes; i = next++) {
        grpc::ClientContext ctx;
        auto stream = stub->Connect(&ctx);
        kspm::v1::AgentMessage hello;
        hello.mutable_hello()->mutable_node()->set_node_name(reports[i].node().node_name());
        kspm::v1::AgentMessage msg;
        *msg.mutable_report() = reports[i];
        const auto s0 = Clock::now();
        kspm::v1::CollectorMessage reply;
        bool ok = stream->Write(hello) && stream->Write(msg) && stream->Read(&reply) &&
                  reply.ack().accepted();
        local.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
        stream->WritesDone();
        while (stream->Read(&reply)) {
        }
        ok = stream->Finish().ok() && ok;
        if (!ok) ++failures;
      }
      std::lock_guard lock(mu);
      out.ack_ms.insert(out.ack_ms.end(), local.begin(), local.end());
      out.failures += failures;
    });
  }
  for (auto& th : pool) th.join();
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (const auto& r : reports) out.results += static_cast<size_t>(r.results_size());
  return out;
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

void Print(const char* name, const WaveResult& w) {
  std::printf("  %-34s %7.2f s  %9.0f results/s  ack p50 %6.1f ms  p99 %6.1f ms%s\n", name,
              w.seconds, w.results / w.seconds, Pct(w.ack_ms, 0.5), Pct(w.ack_ms, 0.99),
              w.failures ? "  FAILURES" : "");
}

}  // namespace

int main(int argc, char** argv) {
  const int nodes = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int per_node = argc > 2 ? std::atoi(argv[2]) : 150;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 64;
  kspm::testing::TempDir dir;
  // The simulated checks, declared as custom rules so that the collector accepts their ids.
  const std::string rules = dir.path() + "/rules";
  mkdir(rules.c_str(), 0700);
  {
    std::ofstream out(rules + "/bench.yaml");
    out << "checks:\n";
    for (int i = 0; i < per_node; ++i) out << "  - id: bench.check-" << i << "\n";
  }

  Collector c = StartCollector(dir.path() + "/ingest.db", dir.path() + "/port", rules);
  std::printf("ingest: %d simulated agents x %d results, %d client threads, collector pid %d\n",
              nodes, per_node, threads, c.pid);
  auto name = [](int i) { return "node-" + std::to_string(i); };
  const auto first = Wave(c.address, nodes, threads,
                          [&](int i) { return MakeReport(name(i), per_node, 1, true, 0); });
  Print("wave 1: full reports, all new", first);
  const auto same = Wave(c.address, nodes, threads,
                         [&](int i) { return MakeReport(name(i), per_node, 2, true, 0); });
  Print("wave 2: full reports, unchanged", same);
  const auto delta =
      Wave(c.address, nodes, threads, [&](int i) { return MakeReport(name(i), 5, 3, false, 1); });
  std::printf("  %-34s %7.2f s  %9.0f reports/s  ack p50 %6.1f ms  p99 %6.1f ms\n",
              "wave 3: changes only (5 results)", delta.seconds, nodes / delta.seconds,
              Pct(delta.ack_ms, 0.5), Pct(delta.ack_ms, 0.99));
  std::printf("  collector peak RSS %.1f MB\n", PeakRssKb(c.pid) / 1024.0);
  StopCollector(c);

  // Summary over 1,000,000 stored results: filled through the store directly (fast), then
  // queried through a real collector process.
  const std::string big = dir.path() + "/summary.db";
  {
    auto store = kspm::collector::store::OpenSqliteStore(big);
    if (!store.ok()) {
      std::cerr << store.status() << "\n";
      return 1;
    }
    const int big_nodes = 1000000 / per_node + 1;
    const auto t0 = Clock::now();
    for (int base = 0; base < big_nodes; base += 200) {
      std::vector<kspm::v1::NodeReport> batch;
      for (int i = base; i < std::min(big_nodes, base + 200); ++i) {
        batch.push_back(MakeReport(name(i), per_node, 1, true, i));
      }
      std::vector<const kspm::v1::NodeReport*> ptrs;
      for (const auto& r : batch) ptrs.push_back(&r);
      (*store)->CommitBatch(ptrs, kspm::common::Clock::now());
    }
    std::printf("summary: stored %d results in %.1f s (direct batched commits)\n",
                big_nodes * per_node, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  c = StartCollector(big, dir.path() + "/port2", rules);
  auto stub = kspm::v1::QueryService::NewStub(
      grpc::CreateChannel(c.address, grpc::InsecureChannelCredentials()));
  std::vector<double> lat;
  for (int i = 0; i < 10; ++i) {
    grpc::ClientContext ctx;
    kspm::v1::SummaryRequest req;
    kspm::v1::SummaryResponse resp;
    const auto t0 = Clock::now();
    const auto s = stub->Summary(&ctx, req, &resp);
    lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!s.ok()) std::cerr << "summary failed: " << s.error_message() << "\n";
    if (i == 0) {
      std::printf("  summary of %u results over %u nodes, score %.1f\n",
                  resp.overall().counts().pass() + resp.overall().counts().fail(),
                  resp.node_count(), resp.overall().score());
    }
  }
  std::printf("  Summary RPC latency p50 %.1f ms, max %.1f ms\n", Pct(lat, 0.5), Pct(lat, 1.0));
  std::printf("  collector peak RSS %.1f MB\n", PeakRssKb(c.pid) / 1024.0);
  StopCollector(c);
  return 0;
}

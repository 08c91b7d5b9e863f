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
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fixtures/host_builder.h"
#include "fixtures/postgres.h"
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
                         const std::string& rules, const std::vector<std::string>& extra = {}) {
  const std::string bin = std::string(KSPM_BIN_DIR) + "/kspm-collector";
  // `db`: a sqlite file, or a PostgreSQL URL.
  const bool postgres = db.rfind("postgres", 0) == 0;
  std::vector<std::string> argv = {
      bin,          "--log-level", "error",       "serve",
      "--insecure", "--listen",    "127.0.0.1:0", postgres ? "--store" : "--db",
      db,           "--port-file", port_file,     "--rules",
      rules};
  argv.insert(argv.end(), extra.begin(), extra.end());
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

long RssKb(pid_t pid, const char* field = "VmRSS:") {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return 0;
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
// With several addresses (collectors sharing a store), thread t uses addresses[t % size].
WaveResult Wave(const std::vector<std::string>& addresses, int nodes, int threads,
                const std::function<kspm::v1::NodeReport(int)>& make) {
  WaveResult out;
  std::mutex mu;
  std::atomic<int> next{0};
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int t = 0; t < threads; ++t) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", t);  // distinct connections
    channels.push_back(grpc::CreateCustomChannel(addresses[t % addresses.size()],
                                                 grpc::InsecureChannelCredentials(), args));
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

WaveResult Wave(const std::string& address, int nodes, int threads,
                const std::function<kspm::v1::NodeReport(int)>& make) {
  return Wave(std::vector<std::string>{address}, nodes, threads, make);
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

// Readers as dashboards and kspmctl are: `threads` clients each asking in turn for the summary,
// the node list and a page of failing findings, one call every 100 ms each (back to back when a
// call takes longer), until `stop`. Latency of every call, in ms.
std::vector<double> QueryLoad(const std::string& address, int threads,
                              const std::atomic<bool>& stop) {
  std::vector<double> all;
  std::mutex mu;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      grpc::ChannelArguments args;
      args.SetInt("grpc.channel_id", 1000 + t);
      auto stub = kspm::v1::QueryService::NewStub(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
      std::vector<double> local;
      for (int i = t; !stop.load(); ++i) {
        grpc::ClientContext ctx;
        const auto t0 = Clock::now();
        grpc::Status s;
        switch (i % 3) {
          case 0: {
            kspm::v1::SummaryRequest req;
            kspm::v1::SummaryResponse resp;
            s = stub->Summary(&ctx, req, &resp);
            break;
          }
          case 1: {
            kspm::v1::NodesRequest req;
            kspm::v1::NodesResponse resp;
            s = stub->ListNodes(&ctx, req, &resp);
            break;
          }
          default: {
            kspm::v1::FindingsRequest req;
            req.add_statuses(kspm::v1::STATUS_FAIL);
            req.set_page_size(1000);
            kspm::v1::FindingsResponse resp;
            s = stub->ListFindings(&ctx, req, &resp);
          }
        }
        if (!s.ok()) std::cerr << "query failed: " << s.error_message() << "\n";
        local.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        std::this_thread::sleep_until(t0 + 100ms);
      }
      std::lock_guard lock(mu);
      all.insert(all.end(), local.begin(), local.end());
    });
  }
  for (auto& th : pool) th.join();
  return all;
}

// Query latency alone and during a wave of changed full reports, for a collector with
// `readers` query connections.
void QueriesUnderIngest(const std::string& dir, const std::string& rules, int nodes, int per_node,
                        int threads, int readers) {
  Collector c = StartCollector(dir + "/queries-" + std::to_string(readers) + ".db",
                               dir + "/port-q" + std::to_string(readers), rules,
                               {"--query-readers", std::to_string(readers)});
  auto name = [](int i) { return "node-" + std::to_string(i); };
  (void)Wave(c.address, nodes, threads,
             [&](int i) { return MakeReport(name(i), per_node, 1, true, 0); });
  std::atomic<bool> stop{false};
  std::vector<double> idle;
  {
    std::thread load([&] { idle = QueryLoad(c.address, 4, stop); });
    std::this_thread::sleep_for(3s);
    stop = true;
    load.join();
  }
  stop = false;
  std::vector<double> busy;
  std::thread load([&] { busy = QueryLoad(c.address, 4, stop); });
  const auto wave = Wave(c.address, nodes, threads,
                         [&](int i) { return MakeReport(name(i), per_node, 2, true, 1); });
  stop = true;
  load.join();
  std::printf(
      "  %d query connection(s): alone p50 %6.1f ms p99 %6.1f ms (%zu calls); during a wave of "
      "%d changed reports (%.1f s) p50 %6.1f ms p99 %6.1f ms (%zu calls)\n",
      readers, Pct(idle, 0.5), Pct(idle, 0.99), idle.size(), nodes, wave.seconds, Pct(busy, 0.5),
      Pct(busy, 0.99), busy.size());
  StopCollector(c);
}

// A flood: `streams` clients write `reports` large reports each without reading a single ack
// until they are done writing, the worst an agent (or anyone with a certificate) can do. The
// collector's peak RSS above its idle RSS, with the given in-flight budget.
void Flood(const std::string& dir, const std::string& rules, int per_node, int streams, int reports,
           int budget_mb) {
  Collector c = StartCollector(dir + "/flood-" + std::to_string(budget_mb) + ".db",
                               dir + "/port-f" + std::to_string(budget_mb), rules,
                               {"--max-in-flight-mb", std::to_string(budget_mb)});
  std::this_thread::sleep_for(200ms);
  const long idle_kb = RssKb(c.pid);
  kspm::v1::NodeReport sample = MakeReport("x", per_node, 0, true, 0);
  for (auto& r : *sample.mutable_results()) r.set_reason(std::string(10000, 'e'));
  const size_t report_bytes = sample.ByteSizeLong();
  const auto t0 = Clock::now();
  std::atomic<int> acked{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < streams; ++t) {
    pool.emplace_back([&, t] {
      grpc::ChannelArguments args;
      args.SetInt("grpc.channel_id", 2000 + t);
      args.SetMaxSendMessageSize(64 << 20);
      auto stub = kspm::v1::AgentService::NewStub(
          grpc::CreateCustomChannel(c.address, grpc::InsecureChannelCredentials(), args));
      grpc::ClientContext ctx;
      auto stream = stub->Connect(&ctx);
      const std::string node = "flood-" + std::to_string(t);
      kspm::v1::AgentMessage hello;
      hello.mutable_hello()->mutable_node()->set_node_name(node);
      stream->Write(hello);
      kspm::v1::AgentMessage msg;
      *msg.mutable_report() = sample;
      msg.mutable_report()->mutable_node()->set_node_name(node);
      for (int i = 0; i < reports; ++i) {
        msg.mutable_report()->set_scan_id(node + "-" + std::to_string(i));
        if (!stream->Write(msg)) break;
      }
      stream->WritesDone();
      kspm::v1::CollectorMessage reply;
      while (stream->Read(&reply)) {
        if (reply.ack().accepted()) ++acked;
      }
      (void)stream->Finish();
    });
  }
  for (auto& th : pool) th.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const long peak_kb = PeakRssKb(c.pid);
  std::printf(
      "  in-flight budget %4d MiB: %d streams x %d reports of %.1f MB, %d acked in %.1f s; "
      "collector RSS idle %.0f MB, peak %.0f MB (+%.0f MB)\n",
      budget_mb, streams, reports, report_bytes / 1e6, acked.load(), seconds, idle_kb / 1024.0,
      peak_kb / 1024.0, (peak_kb - idle_kb) / 1024.0);
  StopCollector(c);
}

// 1,000,000 results (and a few) in `store`, through batched commits of 200 full reports.
void FillMillion(kspm::collector::store::Store& store, int per_node, const char* label) {
  const int big_nodes = 1000000 / per_node + 1;
  const auto t0 = Clock::now();
  for (int base = 0; base < big_nodes; base += 200) {
    std::vector<kspm::v1::NodeReport> batch;
    for (int i = base; i < std::min(big_nodes, base + 200); ++i) {
      batch.push_back(MakeReport("node-" + std::to_string(i), per_node, 1, true, i));
    }
    std::vector<const kspm::v1::NodeReport*> ptrs;
    for (const auto& r : batch) ptrs.push_back(&r);
    store.CommitBatch(ptrs, kspm::common::Clock::now());
  }
  std::printf("%s: stored %d results in %.1f s (direct batched commits)\n", label,
              big_nodes * per_node, std::chrono::duration<double>(Clock::now() - t0).count());
}

// The same waves on PostgreSQL (the real server, with its default durability: fsync and
// synchronous commits), through one collector and then two sharing the database (each client
// thread streams to one of them), each on a new database; then Summary over 1,000,000 results.
void Postgres(const std::string& dir, const std::string& rules, int nodes, int per_node,
              int threads, double sqlite_first) {
  std::string why;
  auto* pg = kspm::testing::PostgresServer::Get(&why, /*durable=*/true);
  if (pg == nullptr) {
    std::printf("postgres: skipped: %s\n", why.c_str());
    return;
  }
  auto name = [](int i) { return "node-" + std::to_string(i); };
  double first_one = 0, changed_one = 0;
  // Collectors and each one's write connections (--store-writers; 2 is the default).
  for (const auto& [collectors, writers] : {std::pair{1, 2}, std::pair{2, 2}, std::pair{2, 1}}) {
    const std::string url = pg->Url(pg->NewDatabase());
    std::vector<Collector> cs;
    std::vector<std::string> addresses;
    for (int i = 0; i < collectors; ++i) {
      cs.push_back(StartCollector(url, dir + "/port-pg" + std::to_string(i), rules,
                                  {"--store-writers", std::to_string(writers)}));
      addresses.push_back(cs.back().address);
    }
    std::printf("postgres, %d collector(s) on one database, %d writer connection(s) each:\n",
                collectors, writers);
    const auto first = Wave(addresses, nodes, threads,
                            [&](int i) { return MakeReport(name(i), per_node, 1, true, 0); });
    Print("wave 1: full reports, all new", first);
    const auto same = Wave(addresses, nodes, threads,
                           [&](int i) { return MakeReport(name(i), per_node, 2, true, 0); });
    Print("wave 2: full reports, unchanged", same);
    const auto changed = Wave(addresses, nodes, threads,
                              [&](int i) { return MakeReport(name(i), per_node, 3, true, 1); });
    Print("wave 3: full reports, 40% changed", changed);
    const double first_rate = first.results / first.seconds;
    const double changed_rate = changed.results / changed.seconds;
    if (collectors == 1) {
      first_one = first_rate;
      changed_one = changed_rate;
      std::printf("  wave 1 on postgres / on sqlite: %.2f\n", first_rate / sqlite_first);
    } else {
      std::printf("  2 collectors / 1 (%d writers / 2): wave 1 %.2f, wave 3 %.2f\n",
                  collectors * writers, first_rate / first_one, changed_rate / changed_one);
    }
    for (const auto& c : cs) StopCollector(c);
  }
  // Summary over 1,000,000 results, straight from the store (as the collector's RPC reads it).
  kspm::collector::store::PostgresOptions options;
  options.url = pg->Url(pg->NewDatabase());
  auto store = kspm::collector::store::OpenPostgresStore(options);
  if (!store.ok()) {
    std::cerr << store.status() << "\n";
    return;
  }
  FillMillion(**store, per_node, "postgres summary");
  std::vector<double> lat;
  for (int i = 0; i < 10; ++i) {
    const auto s0 = Clock::now();
    auto summary = (*store)->Summary("", kspm::common::Clock::now());
    lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
    if (!summary.ok()) std::cerr << summary.status() << "\n";
    if (i == 0 && summary.ok()) {
      std::printf("  summary of %u results over %u nodes\n",
                  summary->overall().counts().pass() + summary->overall().counts().fail(),
                  summary->node_count());
    }
  }
  std::printf("  Summary latency p50 %.1f ms, max %.1f ms\n", Pct(lat, 0.5), Pct(lat, 1.0));
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
    // Whole catalogue entries: the collector reads custom rules with the catalogue's own reader.
    for (int i = 0; i < per_node; ++i) {
      out << "  - id: bench.check-" << i << "\n    benchmarks: {bench: \"B." << i
          << "\"}\n    title: Bench check " << i
          << "\n    severity: low\n    component: kubelet\n    evaluate: manual\n"
             "    manual: Judge it.\n    remediation: None.\n";
    }
  }

  if (argc > 4 && std::string(argv[4]) == "postgres") {  // sqlite's first wave, then postgres
    Collector c = StartCollector(dir.path() + "/ingest.db", dir.path() + "/port", rules);
    const auto first = Wave(c.address, nodes, threads, [&](int i) {
      return MakeReport("node-" + std::to_string(i), per_node, 1, true, 0);
    });
    Print("sqlite wave 1: full reports, all new", first);
    StopCollector(c);
    Postgres(dir.path(), rules, nodes, per_node, threads, first.results / first.seconds);
    return 0;
  }
  if (argc > 4 && std::string(argv[4]) == "flood") {  // only the flood, for quick looks
    Flood(dir.path(), rules, per_node, 64, 6, 4096);
    Flood(dir.path(), rules, per_node, 64, 6, 32);
    return 0;
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

  std::printf("queries (4 clients: summary, nodes, a page of findings) alone and during ingest\n");
  QueriesUnderIngest(dir.path(), rules, nodes, per_node, threads, 1);
  QueriesUnderIngest(dir.path(), rules, nodes, per_node, threads, 4);

  std::printf("flood: reports written without waiting for acks\n");
  Flood(dir.path(), rules, per_node, 64, 6, 4096);
  Flood(dir.path(), rules, per_node, 64, 6, 32);

  // Summary over 1,000,000 stored results: filled through the store directly (fast), then
  // queried through a real collector process.
  const std::string big = dir.path() + "/summary.db";
  {
    auto store = kspm::collector::store::OpenSqliteStore(big);
    if (!store.ok()) {
      std::cerr << store.status() << "\n";
      return 1;
    }
    FillMillion(**store, per_node, "summary");
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
  Postgres(dir.path(), rules, nodes, per_node, threads, first.results / first.seconds);
  return 0;
}

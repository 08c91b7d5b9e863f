// kspm-bench-scan: a full scan of the control-plane fixture (the demo kubeadm node), against a
// baseline that gathers the same facts the way kube-bench does: one shell per audit, run in the
// same process, on the same files.
//
// Prints wall time per scan (median and p99), CPU time per scan, the peak RSS of a real
// `kspm-agent scan` process, and the speed-up over the baseline.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "fixtures/host_builder.h"
#include "kspm/agent/scan.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return Seconds(ru.ru_utime) + Seconds(ru.ru_stime);
}

// Runs argv, waits, returns the child's rusage.
rusage Spawn(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  rusage ru{};
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) == 0) {
    int status = 0;
    wait4(pid, &status, 0, &ru);
  }
  posix_spawn_file_actions_destroy(&actions);
  return ru;
}

// The shell commands kube-bench would run for the same checks: `stat` for a file item, the
// process's command line (ps) and its config file (cat) for a setting item.
std::vector<std::string> BaselineCommands(const kspm::v1::NodeReport& report,
                                          const std::string& root) {
  std::vector<std::string> out;
  for (const auto& r : report.results()) {
    if (r.status() == kspm::v1::STATUS_NOT_APPLICABLE || r.status() == kspm::v1::STATUS_MANUAL) {
      continue;  // kube-bench still runs these, which would only widen the gap
    }
    std::string cmd;
    for (const auto& e : r.evidence()) {
      if (e.source_kind() == kspm::v1::SOURCE_KIND_FILE_METADATA) {
        cmd += "stat -c '%a %U:%G' " + root + e.path() + " ; ";
      } else if (e.source_kind() == kspm::v1::SOURCE_KIND_CONFIG_FILE && !e.path().empty()) {
        cmd += "cat " + root + e.path() + " ; ";
      }
    }
    // Every setting audit starts from the process table.
    if (cmd.empty() || r.evidence(0).source_kind() != kspm::v1::SOURCE_KIND_FILE_METADATA) {
      cmd =
          "cat " + root + "/proc/*/cmdline | tr '\\0' ' ' | grep -c " + r.component() + " ; " + cmd;
    }
    out.push_back(cmd);
  }
  return out;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 200;
  kspm::testing::TempDir dir;
  std::string text;
  if (!kspm::testing::ReadFileText(
           std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/hosts/demo-kubeadm-node.yaml", &text)
           .ok()) {
    std::cerr << "cannot read the demo node description\n";
    return 1;
  }
  bool owners = false;
  if (auto s = kspm::testing::BuildHostRoot(text, dir.path(), &owners); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 1;
  }
  auto catalog = kspm::agent::checks::Catalog::Builtin();
  auto host = kspm::agent::host::MakeFsHostView(dir.path());
  if (!catalog.ok() || !host.ok()) return 1;

  // kspm, in process: discovery + every check, as `kspm-agent scan` does.
  kspm::v1::NodeReport report;
  for (int i = 0; i < 5; ++i) report = kspm::agent::RunScan(**host, *catalog, {}, {});
  std::vector<double> wall;
  const double cpu0 = CpuSeconds();
  for (int i = 0; i < iterations; ++i) {
    const auto t0 = Clock::now();
    report = kspm::agent::RunScan(**host, *catalog, {}, {});
    wall.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  const double cpu_ms = (CpuSeconds() - cpu0) * 1000 / iterations;
  const double median = Percentile(wall, 0.5);

  // The real binary, for its peak RSS and whole-process time (start-up included).
  const std::string agent = std::string(KSPM_BIN_DIR) + "/kspm-agent";
  std::vector<double> process_ms;
  long max_rss_kb = 0;
  for (int i = 0; i < 10; ++i) {
    const auto t0 = Clock::now();
    const rusage ru =
        Spawn({agent, "scan", "--host-root", dir.path(), "--format", "json", "-o", "/dev/null"});
    process_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    max_rss_kb = std::max(max_rss_kb, ru.ru_maxrss);
  }

  // Baseline: one shell per audit, as kube-bench runs them.
  const auto commands = BaselineCommands(report, dir.path());
  std::vector<double> baseline;
  for (int round = 0; round < 3; ++round) {
    const auto t0 = Clock::now();
    for (const auto& cmd : commands) Spawn({"/bin/sh", "-c", cmd});
    baseline.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  const double baseline_ms = Percentile(baseline, 0.5);

  std::printf("scan of the control-plane fixture: %d checks, %d iterations\n",
              report.results_size(), iterations);
  std::printf("  kspm in-process scan     wall median %.3f ms, p99 %.3f ms, cpu %.3f ms/scan\n",
              median, Percentile(wall, 0.99), cpu_ms);
  std::printf(
      "  kspm-agent scan process  wall median %.1f ms (start-up included), peak RSS %.1f MB\n",
      Percentile(process_ms, 0.5), max_rss_kb / 1024.0);
  std::printf("  baseline (shell per audit, %zu shells)  wall median %.1f ms\n", commands.size(),
              baseline_ms);
  std::printf(
      "  speed-up: %.0fx in-process scan vs baseline; %.1fx whole kspm-agent process vs "
      "baseline\n",
      baseline_ms / median, baseline_ms / Percentile(process_ms, 0.5));
  return 0;
}

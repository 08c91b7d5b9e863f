// kspm-bench-drift: what drift watching costs and how fast it is, on this kernel.
//   1. latency from a chmod of a watched file to the re-evaluated result committed at the
//      collector (p50, p99), with the real kspm-agent binary in eBPF mode;
//   2. the overhead of the attached program on a syscall-heavy loop over unwatched files
//      (open/write/close, chmod), against the same loop with no agent, in the same run;
//   3. the agent's idle CPU and RSS over a minute.
// Needs root (BPF). Usage: kspm-bench-drift [ITERATIONS] [IDLE_SECONDS]
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "fixtures/host_builder.h"
#include "kspm/collector/server/server.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[static_cast<size_t>(p * (v.size() - 1))];
}

pid_t Spawn(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  const size_t close = s.rfind(')');
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long StatusKb(pid_t pid, const char* key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::strlen(key)));
  }
  return 0;
}

// open/write/close and chmod over files nobody watches; returns the wall time.
double SyscallLoop(const std::string& dir, int rounds) {
  const auto t0 = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    const std::string path = dir + "/file-" + std::to_string(i % 64);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      (void)!::write(fd, "x", 1);
      ::close(fd);
    }
    ::chmod(path.c_str(), (i & 1) ? 0600 : 0644);
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 40;
  const int idle_seconds = argc > 2 ? std::atoi(argv[2]) : 60;
  if (geteuid() != 0) {
    std::printf("drift: skipped (loading BPF programs needs root)\n");
    return 0;
  }
  kspm::testing::TempDir dir;
  const std::string root = dir.path() + "/root";
  std::string text;
  if (!kspm::testing::ReadFileText(
           std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/hosts/demo-kubeadm-node.yaml", &text)
           .ok()) {
    return 1;
  }
  bool owners = false;
  if (!kspm::testing::BuildHostRoot(text, root, &owners).ok()) return 1;

  // 2a. The baseline loops, before any agent runs: on this disk, and on tmpfs (the worst case:
  // nothing but syscalls, so the tracepoints' own cost shows).
  const std::string disk = dir.path() + "/scratch";
  const std::string shm = "/dev/shm/kspm-bench-" + std::to_string(getpid());
  mkdir(disk.c_str(), 0755);
  mkdir(shm.c_str(), 0755);
  const int disk_rounds = 20000, shm_rounds = 200000;
  std::vector<double> base_disk, base_shm, with_disk, with_shm;
  SyscallLoop(shm, shm_rounds / 10);  // warm up
  for (int rep = 0; rep < 3; ++rep) {
    base_disk.push_back(SyscallLoop(disk, disk_rounds));
    base_shm.push_back(SyscallLoop(shm, shm_rounds));
  }

  kspm::collector::server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.path() + "/kspm.db";
  options.tls.insecure = true;
  auto server = kspm::collector::server::CollectorServer::Start(options);
  if (!server.ok()) return 1;
  const std::string agent = std::string(KSPM_BIN_DIR) + "/kspm-agent";
  const pid_t pid = Spawn({agent, "--log-level", "error", "run", "--insecure", "--collector",
                           "127.0.0.1:" + std::to_string((*server)->port()), "--host-root", root,
                           "--state-dir", dir.path() + "/state", "--config", "/dev/null",
                           "--drift-mode", "ebpf", "--interval", "3600"});
  auto& store = (*server)->store();
  auto status_of = [&](const std::string& id) {
    kspm::collector::store::FindingFilter f;
    f.id = id;
    f.statuses = {kspm::v1::STATUS_PASS, kspm::v1::STATUS_FAIL};
    auto r = store.Findings(f);
    return r.ok() && r->size() == 1 ? (*r)[0].result().status() : kspm::v1::STATUS_UNSPECIFIED;
  };
  const auto t_start = Clock::now();
  while (status_of("4.1.9") == kspm::v1::STATUS_UNSPECIFIED && Clock::now() - t_start < 20s) {
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(500ms);  // the watcher is attached after the first scan

  // 1. Latency: chmod here (not the agent's own process), poll the collector's store.
  const std::string target = root + "/var/lib/kubelet/config.yaml";
  std::vector<double> latency;
  for (int i = 0; i < iterations; ++i) {
    const bool to_secure = (i % 2) == 0;
    const auto want = to_secure ? kspm::v1::STATUS_PASS : kspm::v1::STATUS_FAIL;
    const auto t0 = Clock::now();
    ::chmod(target.c_str(), to_secure ? 0600 : 0644);
    while (status_of("4.1.9") != want && Clock::now() - t0 < 5s) {
      std::this_thread::sleep_for(200us);
    }
    latency.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    std::this_thread::sleep_for(50ms);
  }
  std::printf("drift (eBPF, real kspm-agent process, in-process collector):\n");
  std::printf(
      "  chmod -> result committed at the collector: p50 %.1f ms, p99 %.1f ms, max %.1f ms "
      "(%d changes)\n",
      Pct(latency, 0.5), Pct(latency, 0.99), Pct(latency, 1.0), iterations);

  // 2b. The same loops with the program attached, then without again.
  for (int rep = 0; rep < 3; ++rep) {
    with_disk.push_back(SyscallLoop(disk, disk_rounds));
    with_shm.push_back(SyscallLoop(shm, shm_rounds));
  }
  const double cpu0 = CpuSeconds(pid);
  const long rss_before_idle = StatusKb(pid, "VmRSS:");
  // 3. Idle.
  std::this_thread::sleep_for(std::chrono::seconds(idle_seconds));
  const double idle_cpu = CpuSeconds(pid) - cpu0;
  const long rss = StatusKb(pid, "VmRSS:");
  const long hwm = StatusKb(pid, "VmHWM:");
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  for (int rep = 0; rep < 3; ++rep) {
    base_disk.push_back(SyscallLoop(disk, disk_rounds));
    base_shm.push_back(SyscallLoop(shm, shm_rounds));
  }
  std::filesystem::remove_all(shm);
  auto report = [](const char* where, int rounds, const std::vector<double>& base,
                   const std::vector<double>& with) {
    const double b = Pct(base, 0.5), w = Pct(with, 0.5);
    std::printf(
        "  syscall loop on %-6s (open/write/close/chmod of unwatched files, medians of %zu "
        "and %zu runs): %.0f ns/iter without agent, %.0f with the program attached: "
        "%+.1f%%\n",
        where, base.size(), with.size(), b / rounds * 1e9, w / rounds * 1e9, (w / b - 1.0) * 100.0);
  };
  report("disk", disk_rounds, base_disk, with_disk);
  report("tmpfs", shm_rounds, base_shm, with_shm);
  std::printf(
      "  agent idle over %d s: CPU %.2f%% of one core, RSS %.1f MB (was %.1f), peak %.1f "
      "MB\n",
      idle_seconds, idle_cpu / idle_seconds * 100.0, rss / 1024.0, rss_before_idle / 1024.0,
      hwm / 1024.0);
  (*server)->Shutdown(1s);
  return 0;
}

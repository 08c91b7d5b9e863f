// Drift detection with the real eBPF program on this kernel, and its fallbacks. The eBPF cases
// need root (CAP_BPF/CAP_PERFMON) and BTF: they skip with the reason elsewhere and run in CI.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "fixtures/host_builder.h"
#include "grpcpp/create_channel.h"
#include "kspm/agent/daemon.h"
#include "kspm/agent/drift/engine.h"
#include "kspm/collector/server/server.h"

extern char** environ;

namespace kspm {
namespace {

using namespace std::chrono_literals;

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

std::string EbpfUnavailable() {
  static const std::string why = [] {
    if (::geteuid() != 0) return std::string("needs root to load BPF programs");
    if (::access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
      return std::string("no BTF at /sys/kernel/btf/vmlinux");
    }
    auto w = agent::drift::StartEbpfWatcher("/", [](agent::drift::RawEvent) {});
    return w.ok() ? std::string() : std::string(w.status().message());
  }();
  return why;
}

// Changes are made by another process: the agent's own accesses are ignored by design.
void Sh(const std::string& command) { ASSERT_EQ(std::system(command.c_str()), 0) << command; }

// A fixture host (the demo kubeadm node) watched by a drift engine; emitted reports are kept.
class DriftTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("demo-kubeadm-node", root_, &owners).ok());
    auto catalog = agent::checks::Catalog::Builtin();
    ASSERT_TRUE(catalog.ok());
    catalog_ = std::make_unique<agent::checks::Catalog>(*std::move(catalog));
  }
  void TearDown() override {
    engine_.reset();
    for (pid_t p : children_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
  }

  // Starts an engine in `mode` over the fixture, with `proc` as the process table.
  void StartEngine(const std::string& mode, const std::string& proc) {
    auto host = agent::host::MakeFsHostView(root_, proc);
    ASSERT_TRUE(host.ok());
    host_ = *std::move(host);
    engine_ = std::make_unique<agent::drift::DriftEngine>(
        *host_, *catalog_, agent::checks::Selection{}, agent::NodeSettings{},
        [this](v1::NodeReport r) {
          std::lock_guard lock(mu_);
          reports_.push_back(std::move(r));
        });
    ASSERT_EQ(engine_->Start(mode, root_, proc), mode);
    engine_->SetBaseline(agent::RunScan(*host_, *catalog_, {}, {}));
  }

  // The first emitted drift change of `check_id`, waiting up to 5 s.
  std::optional<v1::DriftEvent> WaitForChange(const std::string& check_id) {
    std::optional<v1::DriftEvent> found;
    WaitFor([&] {
      std::lock_guard lock(mu_);
      for (const auto& r : reports_) {
        for (const auto& d : r.drift()) {
          for (const auto& c : d.changes()) {
            if (c.check_id() == check_id) found = d;
          }
        }
      }
      return found.has_value();
    });
    return found;
  }

  size_t ReportCount() {
    std::lock_guard lock(mu_);
    return reports_.size();
  }

  // Runs a copy of the sleeper named `name` with `args`; killed at tear-down.
  pid_t StartFakeComponent(const std::string& name, std::vector<std::string> args) {
    const std::string bin = dir_.path() + "/bin/" + name;
    std::filesystem::create_directories(dir_.path() + "/bin");
    std::filesystem::copy_file(std::string(KSPM_BIN_DIR) + "/kspm-test-sleeper", bin,
                               std::filesystem::copy_options::overwrite_existing);
    ::chmod(bin.c_str(), 0755);
    args.insert(args.begin(), bin);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    EXPECT_EQ(::posix_spawn(&pid, bin.c_str(), nullptr, nullptr, argv.data(), environ), 0);
    children_.push_back(pid);
    return pid;
  }

  kspm::testing::TempDir dir_;
  std::string root_ = dir_.path() + "/root";
  std::unique_ptr<agent::checks::Catalog> catalog_;
  std::unique_ptr<agent::host::HostView> host_;
  std::unique_ptr<agent::drift::DriftEngine> engine_;
  std::mutex mu_;
  std::vector<v1::NodeReport> reports_;
  std::vector<pid_t> children_;
};

TEST_F(DriftTest, EbpfSeesChmodOfAWatchedFileAndReevaluates) {
  if (auto why = EbpfUnavailable(); !why.empty()) GTEST_SKIP() << why;
  StartEngine("ebpf", root_ + "/proc");
  Sh("chmod 600 " + root_ + "/var/lib/kubelet/config.yaml");
  const auto event = WaitForChange("kubelet.config-file.mode");
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->operation(), "chmod");
  EXPECT_EQ(event->path(), "/var/lib/kubelet/config.yaml");  // the host path
  EXPECT_EQ(event->comm(), "chmod");
  EXPECT_NE(event->pid(), ::getpid());
  EXPECT_EQ(event->source(), "ebpf");
  for (const auto& c : event->changes()) {
    if (c.check_id() != "kubelet.config-file.mode") continue;
    EXPECT_EQ(c.old_status(), v1::STATUS_FAIL);
    EXPECT_EQ(c.new_status(), v1::STATUS_PASS);
  }
}

TEST_F(DriftTest, EbpfSeesARewriteOfAWatchedConfig) {
  if (auto why = EbpfUnavailable(); !why.empty()) GTEST_SKIP() << why;
  StartEngine("ebpf", root_ + "/proc");
  Sh("printf 'authentication: {anonymous: {enabled: false}}\\nreadOnlyPort: 0\\n' > " + root_ +
     "/var/lib/kubelet/config.yaml");
  const auto event = WaitForChange("kubelet.read-only-port");
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->operation(), "write");
}

TEST_F(DriftTest, EbpfSeesReplaceByRename) {
  if (auto why = EbpfUnavailable(); !why.empty()) GTEST_SKIP() << why;
  StartEngine("ebpf", root_ + "/proc");
  const std::string target = root_ + "/var/lib/kubelet/config.yaml";
  {
    std::ofstream out(target + ".new");  // a name nobody watches
    out << "readOnlyPort: 0\nstreamingConnectionIdleTimeout: 4h0m0s\n";
  }
  Sh("mv " + target + ".new " + target);
  const auto event = WaitForChange("kubelet.streaming-idle-timeout");
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->operation(), "rename");
}

TEST_F(DriftTest, EbpfSeesAKubeletStartWithNewFlags) {
  if (auto why = EbpfUnavailable(); !why.empty()) GTEST_SKIP() << why;
  // The fixture's files, the machine's real process table: the fake kubelet is a real process.
  StartEngine("ebpf", "/proc");
  StartFakeComponent("kubelet", {"--config=/var/lib/kubelet/config.yaml", "--read-only-port=0",
                                 "--anonymous-auth=false"});
  const auto event = WaitForChange("kubelet.read-only-port");
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->operation(), "exec");
  EXPECT_EQ(event->comm(), "kubelet");
}

TEST_F(DriftTest, EbpfIgnoresUnwatchedFiles) {
  if (auto why = EbpfUnavailable(); !why.empty()) GTEST_SKIP() << why;
  // The watcher alone, on the fixture's files: every event it reports is kept. Other processes
  // on this machine may touch watched names meanwhile; none may report the unwatched file.
  std::mutex mu;
  std::vector<agent::drift::RawEvent> seen;
  auto watcher = agent::drift::StartEbpfWatcher(root_, [&](agent::drift::RawEvent ev) {
    std::lock_guard lock(mu);
    seen.push_back(std::move(ev));
  });
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  agent::drift::WatchSet set;
  set.paths = {"/var/lib/kubelet/config.yaml", "/etc/kubernetes/admin.conf"};
  ASSERT_TRUE((*watcher)->Update(set).ok());
  const std::string other = dir_.path() + "/unwatched.txt";
  Sh("for i in $(seq 50); do echo $i > " + other + "; chmod 60$((i % 2 * 4)) " + other + "; done");
  // A watched file as a control: the same program does report it.
  Sh("chmod 600 " + root_ + "/etc/kubernetes/admin.conf");
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    return std::any_of(seen.begin(), seen.end(),
                       [](const auto& e) { return e.path == "/etc/kubernetes/admin.conf"; });
  }));
  std::lock_guard lock(mu);
  for (const auto& e : seen) {
    EXPECT_EQ(e.path.find("unwatched"), std::string::npos) << e.operation << " " << e.path;
  }
  EXPECT_EQ((*watcher)->lost(), 0u);
}

TEST_F(DriftTest, InotifyFallbackSeesChmodAndRename) {
  StartEngine("inotify", root_ + "/proc");
  EXPECT_EQ(engine_->mode(), "inotify");
  Sh("chmod 600 " + root_ + "/etc/kubernetes/admin.conf");
  const auto event = WaitForChange("admin-kubeconfig.mode");
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->source(), "inotify");
}

TEST_F(DriftTest, ProcPollFallbackSeesAComponentStart) {
  StartEngine("inotify", "/proc");
  StartFakeComponent("kubelet", {"--config=/var/lib/kubelet/config.yaml", "--read-only-port=0"});
  const auto event = WaitForChange("kubelet.read-only-port");
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->operation(), "exec");
  EXPECT_EQ(event->source(), "proc-poll");
}

TEST_F(DriftTest, RescanModeWatchesNothing) {
  StartEngine("rescan", root_ + "/proc");
  Sh("chmod 600 " + root_ + "/var/lib/kubelet/config.yaml");
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(ReportCount(), 0u);
  EXPECT_EQ(engine_->mode(), "rescan");
}

// The whole way: agent daemon with eBPF → spool → stream → collector → stored drift event.
TEST_F(DriftTest, DriftEventReachesTheCollector) {
  if (auto why = EbpfUnavailable(); !why.empty()) GTEST_SKIP() << why;
  collector::server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir_.path() + "/kspm.db";
  options.tls.insecure = true;
  auto server = collector::server::CollectorServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto host = agent::host::MakeFsHostView(root_);
  ASSERT_TRUE(host.ok());
  auto spool = agent::transport::Spool::Open(dir_.path() + "/spool", 1 << 20, 100);
  ASSERT_TRUE(spool.ok());
  agent::DaemonSettings settings;
  settings.drift_mode = "ebpf";
  settings.host_root = root_;
  settings.proc_root = root_ + "/proc";
  settings.interval = 3600s;
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  agent::AgentDaemon daemon(**host, *catalog_, {}, settings, **spool, [&] {
    return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  });
  daemon.Start();
  EXPECT_EQ(daemon.drift_mode(), "ebpf");
  ASSERT_TRUE(WaitFor([&] { return daemon.stats().delivered.load() >= 1; }));
  Sh("chmod 600 " + root_ + "/etc/kubernetes/manifests/kube-apiserver.yaml");
  ASSERT_TRUE(WaitFor([&] {
    auto events = (*server)->store().Drift({});
    return events.ok() && !events->empty();
  }));
  daemon.Stop();
  auto events = (*server)->store().Drift({});
  ASSERT_EQ(events->size(), 1u);
  const auto& e = (*events)[0].event();
  EXPECT_EQ(e.path(), "/etc/kubernetes/manifests/kube-apiserver.yaml");
  ASSERT_GE(e.changes_size(), 1);
  // The stored current result moved too.
  collector::store::FindingFilter f;
  f.id = "1.1.1";
  f.statuses = {v1::STATUS_PASS};
  EXPECT_EQ((*server)->store().Findings(f)->size(), 1u);
  (*server)->Shutdown(1s);
}

}  // namespace
}  // namespace kspm

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
#include "fixtures/process.h"
#include "grpcpp/create_channel.h"
#include "kspm/agent/daemon.h"
#include "kspm/agent/drift/engine.h"
#include "kspm/collector/server/server.h"
#include "kspm/common/time.h"

extern char** environ;

namespace kspm {
namespace {

using namespace std::chrono_literals;

// What the agent selects by default: the node's platform benchmark (kspm-agent --benchmark auto).
agent::checks::Selection Auto() {
  agent::checks::Selection selection;
  selection.auto_platform = true;
  return selection;
}

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
  return kspm::testing::WaitUntil(pred, timeout, 5ms);
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

// A plaintext collector on a free loopback port with its store in `db`.
absl::StatusOr<std::unique_ptr<collector::server::CollectorServer>> StartLoopbackCollector(
    const std::string& db) {
  collector::server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = db;
  options.tls.insecure = true;
  return collector::server::CollectorServer::Start(options);
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
        *host_, *catalog_, Auto(), agent::NodeSettings{}, held_, [this](const v1::NodeReport& r) {
          std::lock_guard lock(mu_);
          reports_.push_back(r);
          return true;
        });
    ASSERT_EQ(engine_->Start(mode, root_, proc), mode);
    // The collector holds the first scan: drift is measured against it.
    const v1::NodeReport baseline = agent::RunScan(*host_, *catalog_, Auto(), {});
    held_.Queued(baseline);
    held_.Acked(baseline);
    engine_->SetBaseline(baseline);
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
  agent::HeldResults held_;
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
  auto server = StartLoopbackCollector(dir_.path() + "/kspm.db");
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
  agent::AgentDaemon daemon(**host, *catalog_, Auto(), settings, **spool, [&] {
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

// ---------------------------------------------------------------------------------------------
// Drift truth: whatever drift saw or missed, the collector ends up holding the true verdict.
// The real agent daemon (drift engine, spool, stream) against a real collector on loopback; the
// check is 4.1.9 (the kubelet config file's mode), the fixture's file starts at 0644 (FAIL).

constexpr char kModeCheck[] = "kubelet.config-file.mode";

class DriftTruthTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "ebpf") {
      if (auto why = EbpfUnavailable(); !why.empty()) GTEST_SKIP() << why;
    }
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("demo-kubeadm-node", root_, &owners).ok());
    auto catalog = agent::checks::Catalog::Builtin();
    ASSERT_TRUE(catalog.ok());
    catalog_ = std::make_unique<agent::checks::Catalog>(*std::move(catalog));
    auto host = agent::host::MakeFsHostView(root_);
    ASSERT_TRUE(host.ok());
    host_ = *std::move(host);
    auto spool = agent::transport::Spool::Open(dir_.path() + "/spool", 1 << 20, 100);
    ASSERT_TRUE(spool.ok());
    spool_ = *std::move(spool);
    StartCollector();
  }
  void TearDown() override {
    if (daemon_) daemon_->Stop();
    if (server_) server_->Shutdown(1s);
  }

  void StartCollector() {
    auto server = StartLoopbackCollector(dir_.path() + "/kspm.db");
    ASSERT_TRUE(server.ok()) << server.status();
    std::lock_guard lock(address_mu_);
    server_ = *std::move(server);
    address_ = "127.0.0.1:" + std::to_string(server_->port());
  }

  // Settings for the mode under test: drift watches, the engine's own polls as given, and a
  // periodic scan every `interval`.
  agent::DaemonSettings Settings(std::chrono::seconds interval) {
    agent::DaemonSettings settings;
    settings.drift_mode = GetParam();
    settings.host_root = root_;
    settings.proc_root = root_ + "/proc";
    settings.interval = interval;
    settings.jitter = 0;
    settings.backoff_min = 50ms;
    settings.backoff_max = 200ms;
    settings.ack_timeout = 5s;
    settings.drift.link_poll = 0ms;  // off unless a test turns it on
    settings.drift.sweep = 0ms;
    return settings;
  }

  void StartAgent(const agent::DaemonSettings& settings) {
    daemon_ =
        std::make_unique<agent::AgentDaemon>(*host_, *catalog_, Auto(), settings, *spool_, [this] {
          std::lock_guard lock(address_mu_);
          return grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
        });
    daemon_->Start();
    ASSERT_EQ(daemon_->drift_mode(), GetParam());
  }

  // The verdict the collector holds for the mode check (UNSPECIFIED when none).
  v1::Status Held() {
    if (!server_) return v1::STATUS_UNSPECIFIED;
    collector::store::FindingFilter f;
    f.id = kModeCheck;
    f.statuses = {v1::STATUS_PASS, v1::STATUS_FAIL, v1::STATUS_WARN, v1::STATUS_ERROR};
    auto found = server_->store().Findings(f);
    if (!found.ok() || found->empty()) return v1::STATUS_UNSPECIFIED;
    return (*found)[0].result().status();
  }

  // Waits until the collector holds `status`; the message says what it held instead.
  ::testing::AssertionResult HoldsWithin(v1::Status status, std::chrono::milliseconds timeout) {
    const auto start = std::chrono::steady_clock::now();
    if (WaitFor([&] { return Held() == status; }, timeout)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "after " << timeout.count() << " ms the collector holds " << v1::Status_Name(Held())
           << ", not " << v1::Status_Name(status) << " ("
           << std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count()
           << " ms)";
  }

  const std::string config_ = "/var/lib/kubelet/config.yaml";
  kspm::testing::TempDir dir_;
  std::string root_ = dir_.path() + "/root";
  std::string file_ = root_ + config_;
  std::unique_ptr<agent::checks::Catalog> catalog_;
  std::unique_ptr<agent::host::HostView> host_;
  std::unique_ptr<agent::transport::Spool> spool_;
  std::mutex address_mu_;
  std::string address_;
  std::unique_ptr<collector::server::CollectorServer> server_;
  std::unique_ptr<agent::AgentDaemon> daemon_;
};

// The four steps of the report: FAIL; chmod 600 (PASS); the file made 0644 again through a hard
// link; the collector must hold FAIL again. eBPF and inotify see it through the engine's link
// poll with no periodic scan at all; rescan mode through its periodic scans.
TEST_P(DriftTruthTest, ChangeThroughAHardLinkEndsAsTheTrueVerdict) {
  const bool watching = GetParam() != "rescan";
  auto settings = Settings(watching ? 3600s : 2s);
  settings.drift.link_poll = 200ms;
  settings.drift.sweep = 1s;
  StartAgent(settings);
  ASSERT_TRUE(HoldsWithin(v1::STATUS_FAIL, 5s));
  Sh("chmod 600 " + file_);
  ASSERT_TRUE(HoldsWithin(v1::STATUS_PASS, watching ? 2s : 5s));
  Sh("ln " + file_ + " " + dir_.path() + "/x && chmod 644 " + dir_.path() + "/x");
  EXPECT_TRUE(HoldsWithin(v1::STATUS_FAIL, watching ? 3s : 5s));
}

// The full report by time comes whether or not anything changed.
TEST_P(DriftTruthTest, FullReportEveryResyncPeriod) {
  auto settings = Settings(3600s);
  settings.resync = 1s;
  StartAgent(settings);
  EXPECT_TRUE(WaitFor([&] { return daemon_->stats().full_reports.load() >= 3; }, 6s))
      << daemon_->stats().full_reports.load() << " full reports";
  EXPECT_TRUE(WaitFor([&] { return daemon_->stats().delivered.load() >= 3; }, 3s));
}

// A scan that finds nothing new still reaches the collector, so the node is not shown stale.
TEST_P(DriftTruthTest, EveryScanIsAHeartbeat) {
  StartAgent(Settings(1s));
  ASSERT_TRUE(HoldsWithin(v1::STATUS_FAIL, 5s));
  const uint64_t delivered = daemon_->stats().delivered.load();
  ASSERT_TRUE(WaitFor([&] { return daemon_->stats().delivered.load() >= delivered + 2; }, 5s));
  collector::store::FindingFilter f;
  f.id = kModeCheck;
  f.statuses = {v1::STATUS_FAIL};
  const auto found = server_->store().Findings(f);
  ASSERT_TRUE(found.ok() && !found->empty());
  const auto age = common::Clock::now() - common::FromProto((*found)[0].reported_at());
  EXPECT_LT(age, 2s) << "the node's last report is older than two intervals";
  EXPECT_FALSE((*found)[0].stale());
}

INSTANTIATE_TEST_SUITE_P(Modes, DriftTruthTest, ::testing::Values("ebpf", "inotify", "rescan"),
                         [](const auto& info) { return info.param; });

// The watching modes. Every way of naming the file, seen by the watcher alone (no periodic
// scan, no polls unless said): the collector must move from FAIL to PASS.
class DriftWatchTest : public DriftTruthTest {
 protected:
  void Start() {
    StartAgent(Settings(3600s));
    ASSERT_TRUE(HoldsWithin(v1::STATUS_FAIL, 5s));
  }
};

// Each spelling in turn on one agent: the file is made 0644 again (FAIL) by its absolute path,
// then 0600 by the spelling under test, and the collector must hold PASS.
TEST_P(DriftWatchTest, EverySpellingOfAChangeIsSeen) {
  struct Spelling {
    const char* name;
    std::string command;
  };
  const std::string dir = root_ + "/var/lib/kubelet";
  const std::vector<Spelling> spellings = {
      {"relative path with a folder", "cd " + root_ + "/var/lib && chmod 600 kubelet/config.yaml"},
      {"relative path with ../",
       "cd " + root_ + "/etc && chmod 600 ../var/lib/kubelet/config.yaml"},
      {"bare file name", "cd " + dir + " && chmod 600 config.yaml"},
      {"descriptor",
       "python3 -c 'import os; os.fchmod(os.open(\"" + file_ + "\", os.O_RDONLY), 0o600)'"},
      {"rename over the file", "cd " + dir +
                                   " && cp -p config.yaml new.yaml && chmod 600 new.yaml && "
                                   "mv new.yaml config.yaml"},
  };
  Start();
  for (const auto& spelling : spellings) {
    SCOPED_TRACE(spelling.name);
    Sh("chmod 644 " + file_);
    ASSERT_TRUE(HoldsWithin(v1::STATUS_FAIL, 2s));
    Sh(spelling.command);
    EXPECT_TRUE(HoldsWithin(v1::STATUS_PASS, 2s));
  }
}

// Through a hard link in another folder: with eBPF, a descriptor opened through the link matches
// the watched inode in the kernel; a path through the link is caught by the link poll.
TEST_P(DriftWatchTest, DescriptorThroughAHardLink) {
  const bool ebpf = GetParam() == "ebpf";
  auto settings = Settings(3600s);
  if (!ebpf) {
    settings.drift.link_poll = 200ms;  // inotify: the link poll sees it
    settings.drift.sweep = 1s;
  }
  // Linked before the agent starts: no link event, the kernel must match the inode itself.
  const std::string link = dir_.path() + "/x";
  Sh("ln " + file_ + " " + link);
  StartAgent(settings);
  ASSERT_TRUE(HoldsWithin(v1::STATUS_FAIL, 5s));
  Sh("python3 -c 'import os; fd = os.open(\"" + link + "\", os.O_RDONLY); os.fchmod(fd, 0o600)'");
  EXPECT_TRUE(HoldsWithin(v1::STATUS_PASS, ebpf ? 2s : 3s));
}

TEST_P(DriftWatchTest, PathThroughAHardLink) {
  auto settings = Settings(3600s);
  settings.drift.link_poll = 200ms;
  settings.drift.sweep = 1s;
  StartAgent(settings);
  ASSERT_TRUE(HoldsWithin(v1::STATUS_FAIL, 5s));
  const std::string link = dir_.path() + "/x";
  Sh("ln " + file_ + " " + link + " && chmod 600 " + link);
  EXPECT_TRUE(HoldsWithin(v1::STATUS_PASS, 3s));
}

// The defect itself: drift reports a change, the revert is missed (made through a hard link
// that existed before the agent started, with the engine's polls off), and the next periodic scan
// must send the true verdict, because it diffs against what the collector holds, not against
// what the agent last computed or sent.
TEST_P(DriftWatchTest, PeriodicScanCorrectsARevertDriftMissed) {
  const std::string link = dir_.path() + "/x";
  Sh("ln " + file_ + " " + link);
  StartAgent(Settings(3s));
  ASSERT_TRUE(HoldsWithin(v1::STATUS_FAIL, 5s));
  // The inotify watcher's first /proc poll reports every component as started (a re-check of
  // everything): let it pass, so that only the periodic scan can see what follows.
  std::this_thread::sleep_for(700ms);
  Sh("chmod 600 " + file_);
  ASSERT_TRUE(HoldsWithin(v1::STATUS_PASS, 2s));
  const uint64_t scans = daemon_->stats().scans.load();
  Sh("chmod 644 " + link);
  // Nothing watches the other link: the collector keeps PASS until the next scan...
  std::this_thread::sleep_for(300ms);
  if (daemon_->stats().scans.load() == scans) {
    EXPECT_EQ(Held(), v1::STATUS_PASS);
  }
  // ...which must correct it.
  EXPECT_TRUE(HoldsWithin(v1::STATUS_FAIL, 8s));
}

// A drift report queued while the collector is away is delivered once it is back.
TEST_P(DriftWatchTest, DriftReportUnackedWhileTheCollectorIsDownIsResent) {
  StartAgent(Settings(3600s));
  ASSERT_TRUE(HoldsWithin(v1::STATUS_FAIL, 5s));
  server_->Shutdown(200ms);
  server_.reset();
  const uint64_t queued = daemon_->stats().queued.load();
  Sh("chmod 600 " + file_);
  ASSERT_TRUE(WaitFor([&] { return daemon_->stats().queued.load() > queued; }, 2s));
  StartCollector();
  EXPECT_TRUE(HoldsWithin(v1::STATUS_PASS, 5s));
}

INSTANTIATE_TEST_SUITE_P(Watchers, DriftWatchTest, ::testing::Values("ebpf", "inotify"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kspm

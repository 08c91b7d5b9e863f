// A component in a mount namespace of its own, as kube-proxy runs in a kubeadm DaemonSet pod: the
// file its --config names exists only in that namespace, and the agent reads it through
// /proc/<pid>/root on the real kernel. Needs root (mount namespaces, tmpfs) and unshare(1).
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "fixtures/host_builder.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/checks/evaluator.h"
#include "kspm/agent/discovery/discovery.h"
#include "kspm/agent/host/host_view.h"
#include "kspm/common/render.h"

extern char** environ;

namespace kspm::agent {
namespace {

TEST(MountNamespace, AContainerisedComponentsConfigIsReadWhereItSeesIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create a mount namespace";
  if (std::system("command -v unshare >/dev/null 2>&1") != 0) GTEST_SKIP() << "no unshare(1)";
  kspm::testing::TempDir dir;
  const std::string bin = dir.path() + "/kube-proxy";
  std::filesystem::copy_file(std::string(KSPM_BIN_DIR) + "/kspm-test-sleeper", bin);
  ::chmod(bin.c_str(), 0755);
  // An empty folder on the host; inside the new namespace a tmpfs over it holds the config.
  const std::string volume = dir.path() + "/volume";
  std::filesystem::create_directories(volume);
  const std::string config = volume + "/config.conf";
  const std::string script = "mount -t tmpfs kspm-test " + volume +
                             " && printf 'metricsBindAddress: 0.0.0.0:10249\\n' > " + config +
                             " && exec " + bin + " --config=" + config;
  std::vector<std::string> args = {"unshare", "--mount", "--propagation", "private",
                                   "sh",      "-c",      script};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(::posix_spawnp(&pid, "unshare", nullptr, nullptr, argv.data(), environ), 0);
  // unshare and sh exec in place: the pid becomes the fake kube-proxy's.
  auto host = host::MakeFsHostView("/");
  ASSERT_TRUE(host.ok());
  bool started = false;
  for (int i = 0; i < 200 && !started; ++i) {
    auto processes = (*host)->ListProcesses();
    for (const auto& p : processes.ok() ? *processes : std::vector<host::ProcessInfo>{}) {
      started |= p.pid == pid && !p.argv.empty() && p.argv[0] == bin;
    }
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_TRUE(started) << "the fake kube-proxy did not start";

  EXPECT_EQ((*host)->Stat(config).status().code(), absl::StatusCode::kNotFound);  // not on the host

  auto catalog = checks::Catalog::Builtin();
  ASSERT_TRUE(catalog.ok());
  const auto state = discovery::Discover(**host, *catalog);
  const auto& proxy = state.components.at("kube-proxy");
  EXPECT_EQ(proxy.pid, pid);
  ASSERT_TRUE(proxy.files.contains("config"));
  EXPECT_EQ(proxy.files.at("config").path, "/proc/" + std::to_string(pid) + "/root" + config);
  EXPECT_NE(proxy.files.at("config").how.find("in its own mount namespace"), std::string::npos);
  const checks::Check* check = catalog->FindCheck("kube-proxy.metrics-bind-address");
  ASSERT_NE(check, nullptr);
  const auto result = checks::Evaluate(
      *check,
      (check->benchmarks.contains("cis-kubernetes-1.12") ? std::string("cis-kubernetes-1.12")
                                                         : check->benchmarks.begin()->first),
      **host, state);
  EXPECT_EQ(result.status(), v1::STATUS_FAIL)
      << result.reason() << " / " << common::EvidenceSummary(result);
  EXPECT_NE(result.reason().find("every interface"), std::string::npos) << result.reason();

  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

}  // namespace
}  // namespace kspm::agent

// A file the kernel never finishes reading (a hung NFS server, a stuck FUSE daemon, which any pod
// with a FUSE mount can make) must not stall the agent: the read is abandoned after the read
// timeout, the scan reports ERROR for what depends on it and runs every other check, readiness
// says why, and later calls on the same file fail at once instead of piling up threads. The file
// system here is a real FUSE mount served by the test (tests/fixtures/hung_fs.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "fixtures/host_builder.h"
#include "fixtures/hung_fs.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/host/guarded_host_view.h"
#include "kspm/agent/scan.h"
#include "nlohmann/json.hpp"

namespace kspm::agent {
namespace {

using Clock = std::chrono::steady_clock;
using kspm::testing::HungFs;
using kspm::testing::TempDir;

constexpr auto kTimeout = std::chrono::milliseconds(300);

class HungHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a FUSE file system";
    if (!std::filesystem::exists("/dev/fuse")) GTEST_SKIP() << "no /dev/fuse on this machine";
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("demo-kubeadm-node", root_, &owners).ok());
    // The kubelet's config file lives on the hung mount, the rest of the node is ordinary.
    auto fs =
        HungFs::Mount(root_ + "/var/lib/kubelet", {{"config.yaml", {"", true, false}},
                                                   {"stuck-lookup", {"", false, true}},
                                                   {"fine.yaml", {"ok: true\n", false, false}},
                                                   {"a", {"", true, false}},
                                                   {"b", {"", true, false}}});
    if (!fs.ok()) GTEST_SKIP() << "cannot mount FUSE here: " << fs.status();
    fs_ = *std::move(fs);
    auto inner = host::MakeFsHostView(root_);
    ASSERT_TRUE(inner.ok());
    host_ = std::make_unique<host::GuardedHostView>(
        *std::move(inner), host::ReadGuardOptions{.call_timeout = kTimeout, .max_blocked = 3});
  }
  void TearDown() override {
    host_.reset();
    fs_.reset();  // aborts the FUSE connection: the abandoned threads come back
  }

  TempDir dir_;
  std::string root_ = dir_.path() + "/root";
  std::unique_ptr<HungFs> fs_;
  std::unique_ptr<host::GuardedHostView> host_;
};

TEST_F(HungHostTest, AHungReadIsAbandonedAfterTheTimeoutAndNamed) {
  const auto start = Clock::now();
  const auto read = host_->ReadFile("/var/lib/kubelet/config.yaml");
  const auto took = Clock::now() - start;
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDeadlineExceeded) << read.status();
  EXPECT_NE(read.status().message().find("/var/lib/kubelet/config.yaml"), std::string::npos);
  EXPECT_GE(took, kTimeout);
  EXPECT_LT(took, kTimeout + std::chrono::seconds(2));
  EXPECT_EQ(fs_->hung_requests(), 1);

  // Not tried again while the first attempt is still blocked: no second thread is spent on it.
  const auto again = host_->ReadFile("/var/lib/kubelet/config.yaml");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(again.status().message().find("not tried"), std::string::npos) << again.status();
  EXPECT_EQ(fs_->hung_requests(), 1);

  // The same mount still answers for other files, and stat of the hung file works.
  const auto fine = host_->ReadFile("/var/lib/kubelet/fine.yaml");
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(*fine, "ok: true\n");
  EXPECT_TRUE(host_->Stat("/var/lib/kubelet/config.yaml").ok());

  const auto state = host_->State();
  EXPECT_EQ(state.timeouts, 1u);
  ASSERT_EQ(state.blocked.size(), 1u);
  EXPECT_EQ(state.blocked[0].what, "read /var/lib/kubelet/config.yaml");
  EXPECT_NE(host_->BlockedReason().find("config.yaml"), std::string::npos);
}

TEST_F(HungHostTest, AHungLookupBlocksStatAndIsAbandonedToo) {
  const auto stat = host_->Stat("/var/lib/kubelet/stuck-lookup");
  EXPECT_EQ(stat.status().code(), absl::StatusCode::kDeadlineExceeded) << stat.status();
  EXPECT_EQ(fs_->hung_requests(), 1);
}

TEST_F(HungHostTest, BeyondTheBoundOfBlockedCallsEveryCallFailsAtOnce) {
  for (const char* path :
       {"/var/lib/kubelet/config.yaml", "/var/lib/kubelet/a", "/var/lib/kubelet/b"}) {
    EXPECT_EQ(host_->ReadFile(path).status().code(), absl::StatusCode::kDeadlineExceeded) << path;
  }
  // Three calls are blocked (the bound): an ordinary file is now refused without being tried.
  const auto start = Clock::now();
  const auto read = host_->ReadFile("/etc/kubernetes/manifests/kube-apiserver.yaml");
  EXPECT_LT(Clock::now() - start, kTimeout);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kUnavailable) << read.status();
  EXPECT_NE(read.status().message().find("3 host calls are blocked"), std::string::npos);
}

TEST_F(HungHostTest, CallsComeBackWhenTheMountRecovers) {
  EXPECT_FALSE(host_->ReadFile("/var/lib/kubelet/config.yaml").ok());
  ASSERT_FALSE(host_->BlockedReason().empty());
  fs_.reset();  // the server goes away: the kernel fails the waiting request
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!host_->BlockedReason().empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(host_->BlockedReason(), "");
  // The path is tried again (and now fails quickly, or reads whatever is under the mount).
  const auto start = Clock::now();
  (void)host_->ReadFile("/var/lib/kubelet/config.yaml");
  EXPECT_LT(Clock::now() - start, kTimeout);
}

TEST_F(HungHostTest, TheScanFinishesWithErrorsOnlyWhereTheHungFileMatters) {
  auto catalog = checks::Catalog::Builtin();
  ASSERT_TRUE(catalog.ok());
  const auto start = Clock::now();
  const v1::NodeReport report = RunScan(*host_, *catalog, {}, {});
  EXPECT_LT(Clock::now() - start, 3 * kTimeout + std::chrono::seconds(5));

  int errors_naming_the_hang = 0;
  int decided = 0;
  for (const auto& r : report.results()) {
    if (r.check_id() == "kubelet.read-only-port") {
      // Set only in the config file: it cannot be known, and the result says why.
      EXPECT_EQ(r.status(), v1::STATUS_ERROR) << r.reason();
    }
    if (r.status() == v1::STATUS_ERROR &&
        r.reason().find("no answer from the kernel") != std::string::npos) {
      ++errors_naming_the_hang;
    }
    if (r.status() == v1::STATUS_PASS || r.status() == v1::STATUS_FAIL) ++decided;
    if (r.check_id() == "kubelet.config-file.mode") {
      // stat answers on the hung mount: the file's mode is still judged.
      EXPECT_NE(r.status(), v1::STATUS_ERROR) << r.reason();
    }
  }
  EXPECT_GT(errors_naming_the_hang, 0);
  EXPECT_GT(decided, 50) << "the checks that do not need the hung file still ran";
}

TEST_F(HungHostTest, TheScanCommandEndsAndReportsTheHung) {
  // The agent writes its report and returns from main, but the kernel keeps the process (a
  // zombie) until the thread blocked on the mount is let go, which only TearDown does here; so
  // the command runs in the background and the test waits for the finished report.
  const std::string out_file = dir_.path() + "/scan.json";
  const auto start = Clock::now();
  const auto launched = kspm::testing::RunCommand(
      std::string(KSPM_BIN_DIR) + "/kspm-agent scan --format json --read-timeout 0.3 --host-root " +
      root_ + " -o " + out_file + " >/dev/null 2>&1 &");
  ASSERT_EQ(launched.exit_code, 0);
  nlohmann::json doc;
  while (Clock::now() - start < std::chrono::seconds(20)) {
    std::string text;
    if (kspm::testing::ReadFileText(out_file, &text).ok()) {
      doc = nlohmann::json::parse(text, nullptr, false);
      if (!doc.is_discarded() && doc.contains("results")) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(doc.contains("results")) << "no complete report within 20 s";
  bool named = false;
  for (const auto& r : doc["results"]) {
    named |= r.value("status", "") == "ERROR" &&
             r.dump().find("/var/lib/kubelet/config.yaml") != std::string::npos &&
             r.dump().find("no answer from the kernel") != std::string::npos;
  }
  EXPECT_TRUE(named) << doc.dump().substr(0, 4000);
}

}  // namespace
}  // namespace kspm::agent

// What a pod on the node can put where the agent reads: FIFOs, devices, huge and sparse files,
// YAML bombs, odd /proc names, bytes that are not UTF-8. None may hang, exhaust or silence the
// agent; each is an ERROR naming the file and what it is.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "fixtures/host_builder.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/discovery/discovery.h"
#include "kspm/agent/host/host_view.h"
#include "kspm/agent/scan.h"
#include "kspm/common/render.h"
#include "kspm/common/safe_text.h"

namespace kspm::agent {
namespace {

using kspm::testing::TempDir;

class HostileHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("demo-kubeadm-node", root_, &owners).ok());
    auto host = host::MakeFsHostView(root_);
    ASSERT_TRUE(host.ok());
    host_ = *std::move(host);
  }
  std::string Real(const std::string& host_path) { return root_ + host_path; }

  TempDir dir_;
  std::string root_ = dir_.path() + "/root";
  std::unique_ptr<host::HostView> host_;
};

TEST_F(HostileHostTest, AFifoIsRefusedWithoutWaitingForAWriter) {
  const std::string path = "/var/lib/kubelet/config.yaml";
  std::filesystem::remove(Real(path));
  ASSERT_EQ(::mkfifo(Real(path).c_str(), 0644), 0);
  const auto read = host_->ReadFile(path);  // would block forever on a plain open
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(read.status().message().find(path + " is a FIFO"), std::string::npos) << read.status();
  // The scan goes on and says so in the result.
  auto catalog = checks::Catalog::Builtin();
  ASSERT_TRUE(catalog.ok());
  const v1::NodeReport report = RunScan(*host_, *catalog, {}, {});
  bool named = false;
  for (const auto& r : report.results()) {
    if (r.check_id() == "kubelet.read-only-port") {
      EXPECT_EQ(r.status(), v1::STATUS_ERROR) << r.reason();
      named |= r.reason().find("FIFO") != std::string::npos;
    }
  }
  EXPECT_TRUE(named);
}

TEST_F(HostileHostTest, ACharacterDeviceIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a device node";
  const std::string path = "/etc/kubernetes/kubelet.conf";
  std::filesystem::remove(Real(path));
  ASSERT_EQ(::mknod(Real(path).c_str(), S_IFCHR | 0644, makedev(1, 5)), 0);  // /dev/zero
  const auto read = host_->ReadFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("a character device"), std::string::npos) << read.status();
}

TEST_F(HostileHostTest, AHugeSparseFileIsRefusedUnread) {
  const std::string path = "/var/lib/kubelet/config.yaml";
  ASSERT_EQ(::truncate(Real(path).c_str(), 2LL << 30), 0);  // 2 GiB of holes
  const auto read = host_->ReadFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(read.status().message().find("4 MiB"), std::string::npos) << read.status();
}

TEST_F(HostileHostTest, AFileAtTheLimitIsRead) {
  const std::string path = "/var/lib/kubelet/config.yaml";
  ASSERT_EQ(::truncate(Real(path).c_str(), host::kMaxFileBytes), 0);
  const auto read = host_->ReadFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), host::kMaxFileBytes);
}

TEST_F(HostileHostTest, ASymlinkOutOfTheRootIsReadInsideIt) {
  // A relative symlink that climbs above the host root lands on the root's own /etc/passwd.
  const std::string path = "/var/lib/kubelet/config.yaml";
  std::filesystem::remove(Real(path));
  std::filesystem::create_symlink("../../../../../../../../../../etc/hostname", Real(path));
  std::ofstream(Real("/etc/hostname")) << "fixture-node\n";
  const auto read = host_->ReadFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "fixture-node\n");
}

TEST_F(HostileHostTest, AProcEntryWithTwentyDigitsIsNotAProcess) {
  const std::string bogus = Real("/proc/12345678901234567890");
  std::filesystem::create_directories(bogus);
  std::ofstream(bogus + "/cmdline") << std::string("kubelet\0--x\0", 12);
  std::ofstream(bogus + "/comm") << "kubelet\n";
  const auto procs = host_->ListProcesses();
  ASSERT_TRUE(procs.ok()) << procs.status();
  for (const auto& p : *procs) EXPECT_GT(p.pid, 0);
}

// 475 bytes that expand to 10^9 nodes when walked (the "billion laughs").
std::string YamlBomb() {
  std::string text =
      "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (char c = 'b'; c <= 'i'; ++c) {
    const char prev = static_cast<char>(c - 1);
    text += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 9; ++i) text += std::string(i ? "," : "") + "*" + prev;
    text += "]\n";
  }
  return text;
}

TEST_F(HostileHostTest, AYamlBombIsRefusedBeforeItIsLoaded) {
  const auto start = std::chrono::steady_clock::now();
  const auto parsed = discovery::ParseYaml(YamlBomb(), "/var/lib/kubelet/config.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("/var/lib/kubelet/config.yaml:"), std::string::npos);
  EXPECT_NE(parsed.status().message().find("aliases counted"), std::string::npos)
      << parsed.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(HostileHostTest, DeepNestingIsRefused) {
  const std::string deep = std::string(500, '[') + std::string(500, ']');
  const auto parsed = discovery::ParseYaml(deep, "/x.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("deeper than"), std::string::npos) << parsed.status();
}

TEST_F(HostileHostTest, OrdinaryAliasesStillParse) {
  const auto parsed = discovery::ParseYaml(
      "base: &b {enabled: true}\nauthentication:\n  anonymous: *b\n  webhook: *b\n", "/x.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE((*parsed)["authentication"]["anonymous"]["enabled"].as<bool>());
}

TEST_F(HostileHostTest, InvalidUtf8InACommandLineKeepsTheReportWhole) {
  // The fixture's kubelet gets --anonymous-auth=tru\xe9.
  std::string kubelet_pid;
  for (const auto& entry : std::filesystem::directory_iterator(Real("/proc"))) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    if (std::getline(comm, name) && name == "kubelet") kubelet_pid = entry.path().filename();
  }
  ASSERT_FALSE(kubelet_pid.empty());
  std::ofstream(Real("/proc/" + kubelet_pid + "/cmdline"), std::ios::trunc)
      << std::string("/usr/bin/kubelet\0--anonymous-auth=tru\xe9\0", 38);
  auto catalog = checks::Catalog::Builtin();
  ASSERT_TRUE(catalog.ok());
  const v1::NodeReport report = RunScan(*host_, *catalog, {}, {});
  // It serialises, parses back, renders as JSON, and the byte is visible as \xe9.
  v1::NodeReport back;
  ASSERT_TRUE(back.ParseFromString(report.SerializeAsString()));
  bool seen = false;
  for (const auto& r : back.results()) {
    EXPECT_NO_THROW((void)common::ResultToJson(r).dump());
    for (const auto& e : r.evidence()) seen |= e.value().find("tru\\xe9") != std::string::npos;
  }
  EXPECT_TRUE(seen);
}

TEST(SafeText, InvalidBytesBecomeVisibleEscapes) {
  std::string s = "ok \xc3\xa9 tru\xe9 \xed\xa0\x80 \xf4\x90\x80\x80 end";
  EXPECT_TRUE(common::MakeValidUtf8(&s));
  EXPECT_EQ(s, "ok \xc3\xa9 tru\\xe9 \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80 end");
  std::string good = "déjà vu";
  EXPECT_FALSE(common::MakeValidUtf8(&good));
}

TEST(SafeText, TerminalControlsAreShownNotSent) {
  EXPECT_EQ(common::TerminalSafe("a\x1b]0;pwned\x07z"), "a\\x1b]0;pwned\\x07z");
  EXPECT_EQ(common::TerminalSafe("csi \xc2\x9b"
                                 "2J"),
            "csi \\u009b2J");
  EXPECT_EQ(common::TerminalSafe("héllo"), "héllo");
  common::Table table({"NODE", "REASON"});
  table.AddRow({"node\x1b[2J", "line\rover"});
  std::ostringstream out;
  table.Print(out, /*colour=*/false);
  EXPECT_EQ(out.str().find('\x1b'), std::string::npos);
  EXPECT_EQ(out.str().find('\r'), std::string::npos);
  EXPECT_NE(out.str().find("node\\x1b[2J"), std::string::npos);
}

}  // namespace
}  // namespace kspm::agent

namespace kspm::agent {
namespace {

// A static pod manifest is read for its image tag (the node's Kubernetes version): a 3 MiB image
// line is read in one pass (a regular expression recursed per character and could exhaust the
// stack), and the real tag after it still counts.
TEST_F(HostileHostTest, AHugeImageLineInAManifestIsReadWithoutRecursion) {
  const std::string manifest = Real("/etc/kubernetes/manifests/kube-apiserver.yaml");
  std::string text;
  ASSERT_TRUE(kspm::testing::ReadFileText(manifest, &text).ok());
  const size_t image = text.find("image:");
  ASSERT_NE(image, std::string::npos);
  const size_t eol = text.find('\n', image);
  text = text.substr(0, image) + "# image: kube" + std::string(3 << 20, 'x') + "\n" +
         text.substr(0, 0) + "image: registry.k8s.io/kube-apiserver:v1.30.4" + text.substr(eol);
  std::ofstream(manifest, std::ios::trunc) << text;
  auto catalog = checks::Catalog::Builtin();
  ASSERT_TRUE(catalog.ok());
  const auto state = discovery::Discover(*host_, *catalog);
  const KubernetesVersion v = DetectKubernetesVersion(*host_, state);
  EXPECT_EQ(v.minor, 30) << v.where;
}

// A process whose title merely looks like a component's command line (one argument with spaces,
// as setproctitle leaves it) is not taken for that component; only k3s, which is known to do it,
// is matched that way.
TEST(ProcessTitles, OnlyAKnownTitleRewriterIsMatchedByItsTitle) {
  TempDir dir;
  bool owners = false;
  ASSERT_TRUE(kspm::testing::BuildHostRoot(R"(
processes:
  - {pid: 812, comm: kubelet, argv: ["/usr/bin/kubelet --anonymous-auth=true"]}
)",
                                           dir.path(), &owners)
                  .ok());
  auto catalog = checks::Catalog::Builtin();
  auto host = host::MakeFsHostView(dir.path());
  ASSERT_TRUE(host.ok());
  const auto state = discovery::Discover(**host, *catalog);
  EXPECT_FALSE(state.components.at("kubelet").present);
}

}  // namespace
}  // namespace kspm::agent

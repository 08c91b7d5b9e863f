// A full scan of the demo kubeadm node (tests/fixtures/hosts/demo-kubeadm-node.yaml).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "fixtures/host_builder.h"
#include "kspm/agent/scan.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/strings.h"

namespace kspm::agent {
namespace {

class DemoNodeScan : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("demo-kubeadm-node", dir_.path(), &owners_).ok());
    auto catalog = checks::Catalog::Builtin();
    ASSERT_TRUE(catalog.ok());
    auto host = host::MakeFsHostView(dir_.path());
    ASSERT_TRUE(host.ok());
    NodeSettings settings;
    settings.cluster = "demo";
    report_ = RunScan(**host, *catalog, {}, settings);
    for (const auto& r : report_.results()) by_item_[r.benchmark() + "/" + r.benchmark_id()] = r;
  }
  const v1::CheckResult& Item(const std::string& id) {
    return by_item_["cis-kubernetes-1.12/" + id];
  }

  kspm::testing::TempDir dir_;
  bool owners_ = false;
  v1::NodeReport report_;
  std::map<std::string, v1::CheckResult> by_item_;
};

TEST_F(DemoNodeScan, IdentifiesTheNode) {
  EXPECT_EQ(report_.node().node_name(), "demo-cp-1");
  EXPECT_EQ(report_.node().cluster(), "demo");
  EXPECT_EQ(report_.node().kernel(), "6.1.0-demo-amd64");
  EXPECT_EQ(report_.node().os(), "Debian GNU/Linux 12 (bookworm)");
  std::set<int> roles(report_.node().roles().begin(), report_.node().roles().end());
  EXPECT_TRUE(roles.contains(v1::NODE_ROLE_CONTROL_PLANE));
  EXPECT_TRUE(roles.contains(v1::NODE_ROLE_WORKER));
  EXPECT_TRUE(roles.contains(v1::NODE_ROLE_ETCD));
  EXPECT_FALSE(roles.contains(v1::NODE_ROLE_DOCKER_HOST));
  EXPECT_FALSE(report_.scan_id().empty());
  EXPECT_TRUE(report_.full());
}

TEST_F(DemoNodeScan, FindsTheDemoMistakesWithEvidence) {
  const auto& anon = Item("4.2.1");
  EXPECT_EQ(anon.status(), v1::STATUS_FAIL) << anon.reason();
  ASSERT_GE(anon.evidence_size(), 2);
  // The flag wins, and the overridden config value is shown too.
  EXPECT_EQ(anon.evidence(0).source_kind(), v1::SOURCE_KIND_FLAG);
  EXPECT_EQ(anon.evidence(0).pid(), 812);
  EXPECT_EQ(anon.evidence(1).source_kind(), v1::SOURCE_KIND_CONFIG_FILE);
  EXPECT_EQ(anon.evidence(1).value(), "false");
  EXPECT_EQ(anon.evidence(1).path(), "/var/lib/kubelet/config.yaml");

  EXPECT_EQ(Item("4.1.9").status(), v1::STATUS_FAIL);   // config.yaml is 0644
  EXPECT_EQ(Item("1.1.1").status(), v1::STATUS_FAIL);   // apiserver manifest 0644
  EXPECT_EQ(Item("1.1.3").status(), v1::STATUS_PASS);   // controller-manager manifest 0600
  EXPECT_EQ(Item("1.1.13").status(), v1::STATUS_FAIL);  // admin.conf 0644
  EXPECT_EQ(Item("4.2.4").status(), v1::STATUS_WARN);   // readOnlyPort 10255 (unscored)
  // kubeadm's 0s is defaulted to 4h by the kubelet (SetDefaults_KubeletConfiguration): no WARN.
  const auto& idle = Item("4.2.5");
  EXPECT_EQ(idle.status(), v1::STATUS_PASS) << idle.reason();
  ASSERT_GE(idle.evidence_size(), 2);
  EXPECT_EQ(idle.evidence(0).value(), "4h0m0s");
  EXPECT_EQ(idle.evidence(1).value(), "0s");
  EXPECT_EQ(Item("1.2.8").status(), v1::STATUS_PASS);  // Node,RBAC
  EXPECT_EQ(Item("1.2.6").status(), v1::STATUS_PASS);
  EXPECT_EQ(Item("1.2.15").status(), v1::STATUS_FAIL);  // profiling defaults to true
  EXPECT_EQ(Item("1.3.2").status(), v1::STATUS_PASS);   // --profiling=false
  EXPECT_EQ(Item("2.2").status(), v1::STATUS_PASS);
  EXPECT_EQ(Item("2.3").status(), v1::STATUS_PASS);              // ETCD_AUTO_TLS=false
  EXPECT_EQ(Item("4.3.1").status(), v1::STATUS_NOT_APPLICABLE);  // no kube-proxy process
  if (owners_) {
    EXPECT_EQ(Item("1.1.12").status(), v1::STATUS_FAIL);  // /var/lib/etcd is root:root
    EXPECT_EQ(Item("1.1.2").status(), v1::STATUS_PASS);
  }
}

TEST_F(DemoNodeScan, EveryResultExplainsItself) {
  ASSERT_GT(report_.results_size(), 100);
  for (const auto& r : report_.results()) {
    EXPECT_NE(r.status(), v1::STATUS_UNSPECIFIED) << r.check_id();
    EXPECT_FALSE(r.reason().empty()) << r.check_id();
    EXPECT_FALSE(r.title().empty()) << r.check_id();
    EXPECT_FALSE(r.benchmark_id().empty()) << r.check_id();
    if (r.status() == v1::STATUS_FAIL || r.status() == v1::STATUS_PASS) {
      EXPECT_GT(r.evidence_size(), 0) << r.check_id() << " " << r.reason();
      EXPECT_FALSE(r.expected().empty()) << r.check_id();
    }
    EXPECT_NE(r.status(), v1::STATUS_ERROR) << r.check_id() << ": " << r.reason();
  }
}

TEST_F(DemoNodeScan, DockerItemsDoNotApplyWithoutDocker) {
  for (const auto& r : report_.results()) {
    if (r.benchmark() != "cis-docker-1.6" || r.component() != "dockerd") continue;
    EXPECT_EQ(r.status(), v1::STATUS_NOT_APPLICABLE) << r.benchmark_id();
    EXPECT_NE(r.reason().find("no dockerd process"), std::string::npos) << r.reason();
  }
}

}  // namespace
}  // namespace kspm::agent

namespace kspm::agent {
namespace {

// Scans a fixture host and returns results keyed by "benchmark/item".
std::map<std::string, v1::CheckResult> ScanFixture(const std::string& name, bool* owners,
                                                   v1::NodeIdentity* node = nullptr) {
  kspm::testing::TempDir dir;
  EXPECT_TRUE(kspm::testing::BuildFixtureHost(name, dir.path(), owners).ok());
  auto catalog = checks::Catalog::Builtin();
  auto host = host::MakeFsHostView(dir.path());
  const auto report = RunScan(**host, *catalog, {}, {});
  if (node) *node = report.node();
  std::map<std::string, v1::CheckResult> out;
  for (const auto& r : report.results()) {
    EXPECT_NE(r.status(), v1::STATUS_ERROR) << name << " " << r.check_id() << ": " << r.reason();
    out[r.benchmark() + "/" + r.benchmark_id()] = r;
  }
  return out;
}

std::string Status(const std::map<std::string, v1::CheckResult>& results, const std::string& id) {
  const auto it = results.find(id);
  return it == results.end() ? "missing" : std::string(common::StatusName(it->second.status()));
}

TEST(FixtureScan, HardenedKubeadmWorkerPassesEveryScoredNodeItem) {
  bool owners = false;
  v1::NodeIdentity node;
  const auto r = ScanFixture("kubeadm-worker", &owners, &node);
  EXPECT_EQ(node.node_name(), "worker-1");
  ASSERT_EQ(node.roles_size(), 1);
  EXPECT_EQ(node.roles(0), v1::NODE_ROLE_WORKER);
  for (const auto& [id, result] : r) {
    if (!id.starts_with("cis-kubernetes-1.12/4.") || !result.scored()) continue;
    if (!owners && result.check_id().ends_with(".owner")) continue;
    EXPECT_EQ(result.status(), v1::STATUS_PASS) << id << ": " << result.reason();
  }
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.2.4"), "PASS");  // the drop-in wins
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.2.7"), "PASS");  // only kube-proxy overrides it
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.1.3"), "PASS");  // kubeconfig named in the config
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/1.1.1"), "NOT_APPLICABLE");
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/2.1"), "NOT_APPLICABLE");
}

TEST(FixtureScan, K3sServerReadsEmbeddedComponentArguments) {
  bool owners = false;
  v1::NodeIdentity node;
  const auto r = ScanFixture("k3s-server", &owners, &node);
  std::set<int> roles(node.roles().begin(), node.roles().end());
  EXPECT_TRUE(roles.contains(v1::NODE_ROLE_CONTROL_PLANE));
  EXPECT_TRUE(roles.contains(v1::NODE_ROLE_WORKER));
  // --kubelet-arg on the command line overrides k3s's built-in anonymous-auth=false.
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.2.1"), "FAIL");
  EXPECT_EQ(r.at("cis-kubernetes-1.12/4.2.1").evidence(0).pid(), 501);
  // config.yaml's kubelet-arg list applies.
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.2.4"), "WARN");
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.2.5"), "PASS");
  // The command line's audit-log-maxage=7 comes after config.yaml's 30 and wins.
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/1.2.17"), "FAIL");
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/1.2.16"), "PASS");
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/1.2.15"), "PASS");  // k3s: profiling=false
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/1.3.7"), "PASS");
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.1.5"), "PASS");  // k3s kubelet kubeconfig 0600
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.1.3"), "WARN");  // kube-proxy kubeconfig 0644
}

TEST(FixtureScan, DockerHostChecksDaemonAndFiles) {
  bool owners = false;
  v1::NodeIdentity node;
  const auto r = ScanFixture("docker-host", &owners, &node);
  ASSERT_EQ(node.roles_size(), 1);
  EXPECT_EQ(node.roles(0), v1::NODE_ROLE_DOCKER_HOST);
  EXPECT_EQ(Status(r, "cis-docker-1.6/2.2"), "PASS");   // icc false in daemon.json
  EXPECT_EQ(Status(r, "cis-docker-1.6/2.5"), "FAIL");   // an insecure registry
  EXPECT_EQ(Status(r, "cis-docker-1.6/2.7"), "PASS");   // tcp listener with tlsverify
  EXPECT_EQ(Status(r, "cis-docker-1.6/3.14"), "FAIL");  // server key 0644
  EXPECT_EQ(Status(r, "cis-docker-1.6/3.12"), "PASS");  // server cert 0444
  EXPECT_EQ(Status(r, "cis-docker-1.6/3.16"), "PASS");  // socket 0660 through /var/run -> /run
  if (owners) {
    EXPECT_EQ(Status(r, "cis-docker-1.6/3.15"), "PASS");  // root:docker
  }
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.2.1"), "NOT_APPLICABLE");
}

}  // namespace
}  // namespace kspm::agent

namespace kspm::agent {
namespace {

// Nodes built from real distributions' files (each entry cites its upstream repository, path and
// commit). Each fixture's header has a block per benchmark, `# Expected verdicts: BENCHMARK`, with
// the verdict every item should get from the components' real behaviour and the benchmark's text
// (`#   4.2.10 NOT_APPLICABLE  why`; `#   1.* NOT_APPLICABLE  why` covers a whole section). The
// scan must agree with every line, and every item the scan reports must have a line.
struct ExpectedBlock {
  std::string benchmark;
  std::map<std::string, std::string> items;     // item id -> status
  std::map<std::string, std::string> prefixes;  // "1." -> status, from `1.*`
};

std::vector<ExpectedBlock> ParseExpectedVerdicts(const std::string& text) {
  std::vector<ExpectedBlock> blocks;
  std::istringstream lines(text);
  const std::set<std::string> statuses = {"PASS",   "FAIL",           "WARN",
                                          "MANUAL", "NOT_APPLICABLE", "ERROR"};
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("#")) continue;
    if (const auto at = line.find("Expected verdicts:"); at != std::string::npos) {
      std::istringstream rest(line.substr(at + 18));
      ExpectedBlock block;
      rest >> block.benchmark;
      blocks.push_back(std::move(block));
      continue;
    }
    if (blocks.empty()) continue;
    std::istringstream words(line);
    std::string hash, item, status;
    if (!(words >> hash >> item >> status) || hash != "#" || !statuses.contains(status)) continue;
    if (item.empty() || !std::isdigit(static_cast<unsigned char>(item[0]))) continue;
    if (item.ends_with("*")) {
      blocks.back().prefixes[item.substr(0, item.size() - 1)] = status;
    } else {
      blocks.back().items[item] = status;
    }
  }
  return blocks;
}

class RealDistributionNode : public ::testing::TestWithParam<const char*> {};

TEST_P(RealDistributionNode, EveryItemGetsItsExpectedVerdictUnderEachBenchmark) {
  const std::string name = GetParam();
  std::string text;
  ASSERT_TRUE(kspm::testing::ReadFileText(
                  std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/hosts/" + name + ".yaml", &text)
                  .ok());
  const auto blocks = ParseExpectedVerdicts(text);
  ASSERT_FALSE(blocks.empty()) << name << " has no `# Expected verdicts: BENCHMARK` block";
  kspm::testing::TempDir dir;
  bool owners = false;
  ASSERT_TRUE(kspm::testing::BuildFixtureHost(name, dir.path(), &owners).ok());
  auto catalog = checks::Catalog::Builtin();
  ASSERT_TRUE(catalog.ok());
  auto host = host::MakeFsHostView(dir.path());
  ASSERT_TRUE(host.ok());
  const auto report = RunScan(**host, *catalog, {}, {});
  for (const auto& block : blocks) {
    SCOPED_TRACE(name + " under " + block.benchmark);
    std::set<std::string> seen;
    for (const auto& r : report.results()) {
      if (r.benchmark() != block.benchmark) continue;
      const std::string& item = r.benchmark_id();
      seen.insert(item);
      std::string want;
      if (const auto it = block.items.find(item); it != block.items.end()) {
        want = it->second;
      } else {
        for (const auto& [prefix, status] : block.prefixes) {
          if (item.starts_with(prefix)) want = status;
        }
      }
      if (want.empty()) {
        ADD_FAILURE() << item << " is reported (" << common::StatusName(r.status())
                      << ") but the fixture gives no verdict for it";
        continue;
      }
      // Owners are only real as root; an owner item cannot be judged otherwise.
      if (!owners && r.title().find("owned by") != std::string::npos) continue;
      EXPECT_EQ(common::StatusName(r.status()), want)
          << item << " (" << r.check_id() << "): " << r.reason() << "\n"
          << common::EvidenceSummary(r);
    }
    EXPECT_FALSE(seen.empty()) << "nothing was reported under " << block.benchmark;
    for (const auto& [item, status] : block.items) {
      EXPECT_TRUE(seen.contains(item)) << item << " is listed but not reported";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RealDistributionNode,
                         ::testing::Values("eks-al2-worker", "eks-al2023-worker", "kind-worker",
                                           "kind-control-plane", "rke2-agent", "rke2-server",
                                           "gke-cos-worker", "k3s-server-hardened"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace kspm::agent

namespace kspm::agent {
namespace {

// Auto-detection: each node says which platform it belongs to from its own files and processes,
// and why; `--benchmark auto` then keeps that platform's Kubernetes benchmark only.
TEST(PlatformDetection, EachFixtureNodeNamesItsPlatformItsBenchmarkAndWhy) {
  struct Case {
    std::string fixture, platform, benchmark;
  };
  const std::vector<Case> cases = {
      {"eks-al2-worker", "eks", "cis-eks-1.8"},
      {"eks-al2023-worker", "eks", "cis-eks-1.8"},
      {"kind-worker", "kubernetes", "cis-kubernetes-1.12"},
      {"kind-control-plane", "kubernetes", "cis-kubernetes-1.12"},  // v1.35 image tags
      {"rke2-agent", "rke2", "rke2-cis-1.12"},
      {"rke2-server", "rke2", "rke2-cis-1.12"},
      {"k3s-server", "k3s", "k3s-cis-1.12"},
      {"k3s-server-hardened", "k3s", "k3s-cis-1.12"},
      {"gke-cos-worker", "gke", "cis-gke-1.9"},
      {"demo-kubeadm-node", "kubernetes", "cis-kubernetes-1.12"},
      {"docker-host", "none", "cis-kubernetes-1.12"}};
  for (const auto& c : cases) {
    bool owners = false;
    v1::NodeIdentity node;
    (void)ScanFixture(c.fixture, &owners, &node);
    EXPECT_EQ(node.platform(), c.platform) << c.fixture << ": " << node.platform_reason();
    EXPECT_EQ(node.platform_benchmark(), c.benchmark)
        << c.fixture << ": " << node.platform_reason();
    EXPECT_FALSE(node.platform_reason().empty()) << c.fixture;
  }
}

// On a managed platform the control plane is the provider's: its items say so, and a
// self-managed node's say only that the component is not there.
TEST(PlatformDetection, ControlPlaneItemsOnAManagedNodeAreTheProviders) {
  for (const auto& [fixture, provider] : std::vector<std::pair<std::string, std::string>>{
           {"eks-al2-worker", "Amazon EKS"}, {"kind-worker", ""}}) {
    bool owners = false;
    const auto r = ScanFixture(fixture, &owners);
    for (const char* item :
         {"cis-kubernetes-1.12/1.2.1", "cis-kubernetes-1.12/2.1", "cis-kubernetes-1.12/1.3.2"}) {
      const auto it = r.find(item);
      ASSERT_NE(it, r.end()) << item;
      EXPECT_EQ(it->second.status(), v1::STATUS_NOT_APPLICABLE);
      const bool managed = it->second.reason().starts_with("managed by the provider: " + provider);
      EXPECT_EQ(managed, !provider.empty())
          << fixture << " " << item << ": " << it->second.reason();
    }
    // Node items are judged whatever the platform.
    EXPECT_NE(r.at("cis-kubernetes-1.12/4.2.1").reason().find("managed"), 0u);
  }
}

// The CIS Kubernetes version follows the node's Kubernetes version (kube-bench's version
// mapping): 1.29-1.31 are audited against 1.11, 1.32 and later against 1.12; the version is read
// from a static pod's image tag, the kubelet's dpkg package or kind's /kind/version.
TEST(PlatformDetection, TheCisVersionFollowsTheKubernetesVersion) {
  struct Case {
    std::string files;
    std::string benchmark;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"  - {path: /etc/kubernetes/manifests/kube-apiserver.yaml, content: \"spec:\\n  "
       "containers:\\n"
       "    - image: registry.k8s.io/kube-apiserver:v1.30.4\\n      command: "
       "[kube-apiserver]\\n\"}\n",
       "cis-kubernetes-1.11", "Kubernetes v1.30 (the image tag in /etc/kubernetes/manifests/"},
      {"  - {path: /var/lib/dpkg/status, content: \"Package: kubeadm\\nVersion: 1.33.0-1.1\\n\\n"
       "Package: kubelet\\nStatus: install ok installed\\nVersion: 1.31.2-1.1\\n\\n\"}\n",
       "cis-kubernetes-1.11", "Kubernetes v1.31 (the kubelet package in /var/lib/dpkg/status)"},
      {"  - {path: /kind/version, content: \"v1.34.0\\n\"}\n", "cis-kubernetes-1.12",
       "Kubernetes v1.34 (/kind/version)"},
      {"  - {path: /kind/version, content: \"v1.27.3\\n\"}\n", "cis-kubernetes-1.11",
       "older than any benchmark kspm has"},
      {"", "cis-kubernetes-1.12", "hand-made)"},
  };
  for (const auto& c : cases) {
    kspm::testing::TempDir dir;
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildHostRoot(
                    "entries:\n"
                    "  - {path: /var/lib/kubelet/config.yaml, content: \"readOnlyPort: 0\\n\"}\n" +
                        c.files +
                        "processes:\n"
                        "  - {pid: 700, comm: kubelet, argv: [/usr/bin/kubelet, "
                        "--config=/var/lib/kubelet/config.yaml]}\n",
                    dir.path(), &owners)
                    .ok())
        << c.files;
    auto catalog = checks::Catalog::Builtin();
    auto host = host::MakeFsHostView(dir.path());
    checks::Selection selection;
    selection.auto_platform = true;
    const auto report = RunScan(**host, *catalog, selection, {});
    EXPECT_EQ(report.node().platform_benchmark(), c.benchmark) << report.node().platform_reason();
    EXPECT_NE(report.node().platform_reason().find(c.why), std::string::npos)
        << report.node().platform_reason();
    for (const auto& r : report.results()) {
      if (checks::IsKubernetesBenchmark(r.benchmark())) {
        EXPECT_EQ(r.benchmark(), c.benchmark);
      }
    }
  }
}

TEST(PlatformDetection, AutoKeepsOnlyThePlatformsKubernetesBenchmark) {
  kspm::testing::TempDir dir;
  bool owners = false;
  ASSERT_TRUE(kspm::testing::BuildFixtureHost("eks-al2-worker", dir.path(), &owners).ok());
  auto catalog = checks::Catalog::Builtin();
  auto host = host::MakeFsHostView(dir.path());
  checks::Selection selection;
  selection.auto_platform = true;
  const auto report = RunScan(**host, *catalog, selection, {});
  std::set<std::string> benchmarks;
  for (const auto& r : report.results()) benchmarks.insert(r.benchmark());
  EXPECT_TRUE(benchmarks.contains(report.node().platform_benchmark()));
  for (const auto& b : benchmarks) {
    if (checks::IsKubernetesBenchmark(b)) {
      EXPECT_EQ(b, report.node().platform_benchmark());
    }
  }
  EXPECT_TRUE(benchmarks.contains("kspm-1"));
}

}  // namespace
}  // namespace kspm::agent

namespace kspm::agent {
namespace {

// An AKS node shows its cloud-provider file; the catalogue has the AKS benchmark, and its
// azure.json items judge that file.
TEST(PlatformDetection, AnAksNodeIsJudgedByTheAksBenchmark) {
  kspm::testing::TempDir dir;
  bool owners = false;
  ASSERT_TRUE(kspm::testing::BuildHostRoot(R"(
entries:
  - {path: /etc/kubernetes/azure.json, mode: "0644", content: "{\"cloud\": \"AzurePublicCloud\"}"}
  - {path: /etc/default/kubeletconfig.json, mode: "0644", content: "{\"readOnlyPort\": 0}"}
processes:
  - {pid: 812, comm: kubelet, argv: [/usr/local/bin/kubelet, --config=/etc/default/kubeletconfig.json]}
)",
                                           dir.path(), &owners)
                  .ok());
  auto catalog = checks::Catalog::Builtin();
  auto host = host::MakeFsHostView(dir.path());
  checks::Selection selection;
  selection.auto_platform = true;
  const auto report = RunScan(**host, *catalog, selection, {});
  EXPECT_EQ(report.node().platform(), "aks") << report.node().platform_reason();
  EXPECT_EQ(report.node().platform_benchmark(), "cis-aks-1.8");
  std::map<std::string, std::string> status;
  for (const auto& r : report.results()) {
    status[r.benchmark() + "/" + r.benchmark_id()] = common::StatusName(r.status());
  }
  EXPECT_EQ(status["cis-aks-1.8/3.1.3"], "PASS");  // 0644
  EXPECT_EQ(status["cis-aks-1.8/3.2.4"], "PASS");  // readOnlyPort 0, scored in AKS
  EXPECT_EQ(status.count("cis-kubernetes-1.12/4.2.4"), 0u);
}

}  // namespace
}  // namespace kspm::agent

namespace kspm::agent {
namespace {

// k3s hides its flags (setproctitle leaves `/usr/local/bin/k3s server` as one argument), so its
// options come from config.yaml, then config.yaml.d (a later file replaces a key, `key+`
// appends), then the unit's ExecStart; the components' arguments merge the built-ins with them
// (`key+=value` appends to a built-in list); embedded etcd runs only when k3s says so.
TEST(K3sModel, OptionsComeFromTheConfigItsDropInsAndTheUnitsExecStart) {
  const std::string common = R"(
  - path: /etc/rancher/k3s/config.yaml
    content: "secrets-encryption: false\nkube-apiserver-arg:\n  - audit-log-maxage=30\n"
  - path: /etc/rancher/k3s/config.yaml.d/10-audit.yaml
    content: "secrets-encryption: true\nkube-apiserver-arg+:\n  - audit-log-path=/var/log/k3s-audit.log\n"
  - path: /etc/rancher/k3s/config.yaml.d/README.txt
    content: "secrets-encryption: false\n"
  - path: /var/lib/rancher/k3s/server/db/etcd/config
    mode: "0600"
    content: |
      data-dir: /var/lib/rancher/k3s/server/db/etcd
      client-transport-security:
        cert-file: /var/lib/rancher/k3s/server/tls/etcd/server-client.crt
        key-file: /var/lib/rancher/k3s/server/tls/etcd/server-client.key
        client-cert-auth: true
        trusted-ca-file: /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt
  - {path: /var/lib/rancher/k3s/server/db/etcd/name, mode: "0600", content: "k3s-1\n"}
processes:
  - {pid: 501, comm: k3s-server, argv: ["/usr/local/bin/k3s server"]}
)";
  auto scan = [](const std::string& unit_flags, const std::string& more) {
    kspm::testing::TempDir dir;
    bool owners = false;
    const std::string unit =
        "[Service]\nExecStart=/usr/local/bin/k3s \\\n    server \\\n" + unit_flags + "\n";
    std::string yaml = "entries:\n  - path: /etc/systemd/system/k3s.service\n    content: |\n";
    for (std::string_view line : common::Split(unit, '\n')) {
      yaml += "      " + std::string(line) + "\n";
    }
    EXPECT_TRUE(kspm::testing::BuildHostRoot(yaml + more, dir.path(), &owners).ok()) << yaml;
    auto catalog = checks::Catalog::Builtin();
    auto host = host::MakeFsHostView(dir.path());
    const auto report = RunScan(**host, *catalog, {}, {});
    std::map<std::string, v1::CheckResult> out;
    for (const auto& r : report.results()) out[r.benchmark() + "/" + r.benchmark_id()] = r;
    return out;
  };
  auto r = scan(
      "\t'--kube-apiserver-arg' 'enable-admission-plugins+=EventRateLimit' \\\n"
      "\t'--cluster-init'",
      common);
  EXPECT_EQ(Status(r, "k3s-cis-1.12/1.2.17"), "PASS") << r["k3s-cis-1.12/1.2.17"].reason();
  EXPECT_EQ(Status(r, "k3s-cis-1.12/1.2.16"), "PASS") << r["k3s-cis-1.12/1.2.16"].reason();
  // secrets-encryption: the drop-in's true replaced config.yaml's false; README.txt is no drop-in.
  EXPECT_EQ(Status(r, "k3s-cis-1.12/1.2.27"), "PASS") << r["k3s-cis-1.12/1.2.27"].reason();
  // The unit's `+=` appended to the built-in NodeRestriction.
  EXPECT_EQ(Status(r, "k3s-cis-1.12/1.2.9"), "PASS") << r["k3s-cis-1.12/1.2.9"].reason();
  EXPECT_EQ(Status(r, "k3s-cis-1.12/1.2.14"), "PASS") << r["k3s-cis-1.12/1.2.14"].reason();
  // --cluster-init in the unit: etcd runs embedded and is judged from its config file.
  EXPECT_EQ(Status(r, "k3s-cis-1.12/2.1"), "PASS") << r["k3s-cis-1.12/2.1"].reason();
  EXPECT_EQ(Status(r, "k3s-cis-1.12/2.2"), "PASS") << r["k3s-cis-1.12/2.2"].reason();
  EXPECT_EQ(Status(r, "k3s-cis-1.12/1.2.26"), "PASS") << r["k3s-cis-1.12/1.2.26"].reason();
  const std::string evidence = common::EvidenceSummary(r["k3s-cis-1.12/1.2.16"]);
  EXPECT_NE(evidence.find("ExecStart of /etc/systemd/system/k3s.service"), std::string::npos)
      << evidence;
  EXPECT_NE(evidence.find("/etc/rancher/k3s/config.yaml.d/10-audit.yaml"), std::string::npos)
      << evidence;

  // Without cluster-init, a server URL or an etcd database, k3s keeps its state in sqlite (kine):
  // no etcd, and the item says why.
  r = scan("\t'--write-kubeconfig-mode' '0600'", common);
  EXPECT_EQ(Status(r, "k3s-cis-1.12/2.1"), "NOT_APPLICABLE");
  EXPECT_NE(r["k3s-cis-1.12/2.1"].reason().find("runs without an embedded etcd"), std::string::npos)
      << r["k3s-cis-1.12/2.1"].reason();
  // --disable-kube-proxy in the unit: no kube-proxy to judge.
  r = scan("\t--cluster-init --disable-kube-proxy", common);
  EXPECT_EQ(Status(r, "k3s-cis-1.12/2.1"), "PASS");
  EXPECT_EQ(Status(r, "k3s-cis-1.12/4.3.1"), "NOT_APPLICABLE");
}

}  // namespace
}  // namespace kspm::agent

namespace kspm::agent {
namespace {

// Without hostPID (or before the pod starts) kube-proxy's process is not visible; RKE2's static
// pod manifest stands in for it, so its kubeconfig and metrics items are still judged.
TEST(FixtureScan, KubeProxyIsReadFromItsStaticPodWhenTheProcessIsNotVisible) {
  std::string text;
  ASSERT_TRUE(kspm::testing::ReadFileText(
                  std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/hosts/rke2-agent.yaml", &text)
                  .ok());
  const size_t at = text.find("  - pid: 2210\n    comm: kube-proxy\n");
  ASSERT_NE(at, std::string::npos);
  text = text.substr(0, at);  // the kube-proxy process is the last entry
  kspm::testing::TempDir dir;
  bool owners = false;
  ASSERT_TRUE(kspm::testing::BuildHostRoot(text, dir.path(), &owners).ok());
  auto catalog = checks::Catalog::Builtin();
  auto host = host::MakeFsHostView(dir.path());
  const auto report = RunScan(**host, *catalog, {}, {});
  std::map<std::string, v1::CheckResult> r;
  for (const auto& x : report.results()) r[x.benchmark() + "/" + x.benchmark_id()] = x;
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.1.3"), "PASS")
      << r["cis-kubernetes-1.12/4.1.3"].reason();
  EXPECT_EQ(Status(r, "cis-kubernetes-1.12/4.3.1"), "PASS")
      << r["cis-kubernetes-1.12/4.3.1"].reason();
  EXPECT_NE(common::EvidenceSummary(r["cis-kubernetes-1.12/4.1.3"])
                .find("/var/lib/rancher/rke2/agent/pod-manifests/kube-proxy.yaml"),
            std::string::npos)
      << common::EvidenceSummary(r["cis-kubernetes-1.12/4.1.3"]);
}

}  // namespace
}  // namespace kspm::agent

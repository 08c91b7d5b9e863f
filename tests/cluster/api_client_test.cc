// The Kubernetes API client against a local HTTPS server that follows the API's conventions
// (tests/cluster/fake_apiserver.py) and serves the objects of a stock kubeadm cluster: token and
// client-certificate authentication, paging, 401, 403 naming the permission, 429 and 500
// retried, an expired continue token, kubeconfig and in-cluster set-up, the CLI and the
// collector's periodic scan.
#include "kspm/collector/k8s/api_client.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "cluster_test_util.h"
#include "fake_apiserver.h"
#include "fixtures/host_builder.h"
#include "kspm/collector/cluster/report.h"
#include "kspm/collector/cluster/scanner.h"
#include "kspm/common/certs.h"

extern char** environ;

namespace kspm::cluster_test {
namespace {

using collector::k8s::ClientOptions;
using collector::k8s::Connection;

// How many fixture objects the client lists: those of the kinds kspm reads.
size_t ApiObjects() {
  const auto files = KubeadmSnapshot();
  size_t n = 0;
  for (const auto& type : collector::k8s::ReadResources()) n += files.Of(type.kind).size();
  return n;
}

class ApiClientTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> extra = {}) {
    server_ = std::make_unique<FakeApiServer>(dir_.path(), pki_, std::move(extra));
    ASSERT_GT(server_->port(), 0) << "the fake API server did not start";
  }
  Connection TokenConnection(const std::string& token = kToken) const {
    return TokenConnectionTo(*server_, pki_, token);
  }
  ClientOptions FastOptions() {
    ClientOptions o;
    o.page_size = 10;
    o.timeout = std::chrono::seconds(10);
    o.sleep = [this](std::chrono::milliseconds d) { slept_.push_back(d); };
    return o;
  }
  absl::Status Fetch(const Connection& c, const ClientOptions& o, k8s::Snapshot& out) {
    auto client = collector::k8s::MakeApiClient(c, o);
    if (!client.ok()) return client.status();
    auto stats = collector::k8s::FetchSnapshot(**client, out);
    return stats.status();
  }

  kspm::testing::TempDir dir_;
  Pki pki_ = MakePki();
  std::unique_ptr<FakeApiServer> server_;
  std::vector<std::chrono::milliseconds> slept_;
};

TEST_F(ApiClientTest, ListsEveryResourcePageByPageAndAStockClusterHasNoFindings) {
  Start();
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(TokenConnection(), FastOptions(), s).ok());
  EXPECT_TRUE(s.failed_kinds().empty());
  EXPECT_TRUE(s.errors().empty()) << s.errors().front();
  // The same objects as the files, kinds restored from the List kinds.
  const auto files = KubeadmSnapshot();
  for (const auto& type : collector::k8s::ReadResources()) {
    EXPECT_EQ(s.Of(type.kind).size(), files.Of(type.kind).size()) << type.kind;
  }
  EXPECT_TRUE(s.Of("Endpoints").empty());  // not read: no check needs it
  EXPECT_EQ(s.Of("ClusterRole").size(), 66u);

  // 66 ClusterRoles in pages of 10: seven requests, the later ones with a continue token.
  size_t pages = 0, continued = 0;
  for (const auto& r : server_->Requests()) {
    EXPECT_EQ(r["auth"], "token");
    if (r["path"] != "/apis/rbac.authorization.k8s.io/v1/clusterroles") continue;
    ++pages;
    EXPECT_EQ(r["query"]["limit"], "10");
    if (r["query"].contains("continue")) ++continued;
  }
  EXPECT_EQ(pages, 7u);
  EXPECT_EQ(continued, 6u);

  // Defaults proven quiet through the API as through files.
  const auto scan = Scan(s);
  for (const auto& r : scan.results) {
    if (IsStockDefaultAccountFinding(r)) continue;
    EXPECT_TRUE(r.status() == v1::STATUS_PASS || r.status() == v1::STATUS_NOT_APPLICABLE)
        << r.check_id() << ": " << r.reason();
  }
}

// Custom policy kinds are listed where discovery (GET /apis) shows their group, and nowhere else:
// no request, no 404, no error for a CNI that is not installed.
TEST_F(ApiClientTest, CustomPolicyKindsAreListedOnlyWhereDiscoveryShowsThem) {
  const std::string upstream = SourceDir() + "/tests/fixtures/cluster/netpol-upstream";
  Start({"--fixtures", upstream, "--crd", "cilium.io", "--crd", "policy.networking.k8s.io"});
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(TokenConnection(), FastOptions(), s).ok());
  EXPECT_TRUE(s.failed_kinds().empty());
  EXPECT_EQ(s.Of("CiliumNetworkPolicy").size(), 4u);
  EXPECT_EQ(s.Of("CiliumClusterwideNetworkPolicy").size(), 3u);
  EXPECT_EQ(s.Of("AdminNetworkPolicy").size(), 3u);
  // Both upstream BaselineAdminNetworkPolicies are named `default` (the one allowed name).
  EXPECT_EQ(s.Of("BaselineAdminNetworkPolicy").size(), 1u);
  EXPECT_TRUE(s.Of("GlobalNetworkPolicy").empty());
  size_t discovery = 0;
  for (const auto& r : server_->Requests()) {
    const std::string path = r["path"];
    discovery += path == "/apis";
    EXPECT_EQ(path.find("projectcalico"), std::string::npos) << path;
    // The one 404 is a built-in kind this server is too old for.
    if (r["status"] == 404) {
      EXPECT_TRUE(path.ends_with("validatingadmissionpolicybindings")) << path;
    }
  }
  EXPECT_EQ(discovery, 1u);

  // Calico through its CRDs only (no API server): read from crd.projectcalico.org, once.
  server_.reset();
  std::filesystem::remove(dir_.path() + "/port");
  std::filesystem::remove(dir_.path() + "/requests.log");
  Start({"--fixtures", upstream, "--crd", "crd.projectcalico.org"});
  k8s::Snapshot calico;
  ASSERT_TRUE(Fetch(TokenConnection(), FastOptions(), calico).ok());
  EXPECT_EQ(calico.Of("GlobalNetworkPolicy").size(), 7u);
  EXPECT_EQ(calico.Of("NetworkPolicy.projectcalico.org").size(), 2u);
  EXPECT_TRUE(calico.Of("CiliumNetworkPolicy").empty());
  for (const auto& r : server_->Requests()) {
    const std::string path = r["path"];
    EXPECT_EQ(path.find("cilium"), std::string::npos) << path;
    EXPECT_EQ(path.find("/apis/projectcalico.org"), std::string::npos) << path;
  }
}

TEST_F(ApiClientTest, WrongCredentialsAre401AndSaySo) {
  Start();
  k8s::Snapshot s;
  const auto status = Fetch(TokenConnection("expired-token"), FastOptions(), s);
  ASSERT_TRUE(absl::IsUnauthenticated(status)) << status;
  EXPECT_NE(status.message().find("401 Unauthorized"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("refused the credentials of test token"), std::string::npos);
  EXPECT_TRUE(slept_.empty());  // not retried: retrying cannot fix a credential
}

TEST_F(ApiClientTest, AForbiddenResourceNamesThePermissionAndItsChecksAreErrors) {
  Start({"--forbid", "clusterrolebindings"});
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(TokenConnection(), FastOptions(), s).ok());
  ASSERT_TRUE(s.failed_kinds().contains("ClusterRoleBinding"));
  const std::string& why = s.failed_kinds().at("ClusterRoleBinding");
  EXPECT_NE(why.find("kspm needs 'list' on clusterrolebindings.rbac.authorization.k8s.io in all "
                     "namespaces"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("cannot list resource \"clusterrolebindings\" in API group "
                     "\"rbac.authorization.k8s.io\""),
            std::string::npos)
      << why;
  EXPECT_EQ(s.Of("ClusterRole").size(), 66u);  // everything else was read

  const auto scan = Scan(s);
  for (const auto* r : ResultsOf(scan, "rbac.secrets-read")) {
    EXPECT_EQ(r->status(), v1::STATUS_ERROR);
    EXPECT_NE(r->reason().find("clusterrolebindings"), std::string::npos);
  }
  for (const auto* r : ResultsOf(scan, "namespace.default-unused")) {
    EXPECT_EQ(r->status(), v1::STATUS_PASS);
  }
}

TEST_F(ApiClientTest, TooManyRequestsHonoursRetryAfterAndServerErrorsBackOff) {
  Start({"--throttle", "roles=1", "--fail", "rolebindings=2"});
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(TokenConnection(), FastOptions(), s).ok());
  EXPECT_TRUE(s.failed_kinds().empty());
  EXPECT_EQ(s.Of("Role").size(), 11u);
  EXPECT_EQ(s.Of("RoleBinding").size(), 11u);
  ASSERT_EQ(slept_.size(), 3u);
  // The 429 asked for one second; the two 500s back off from 250 ms, doubling, with jitter.
  EXPECT_EQ(slept_[0], std::chrono::milliseconds(1000));
  EXPECT_GE(slept_[1], std::chrono::milliseconds(250));
  EXPECT_LE(slept_[1], std::chrono::milliseconds(313));
  EXPECT_GE(slept_[2], std::chrono::milliseconds(500));
  EXPECT_LE(slept_[2], std::chrono::milliseconds(625));
  size_t throttled = 0, failed = 0;
  for (const auto& r : server_->Requests()) {
    throttled += r["status"] == 429;
    failed += r["status"] == 500;
  }
  EXPECT_EQ(throttled, 1u);
  EXPECT_EQ(failed, 2u);
}

TEST_F(ApiClientTest, RetriesGiveUpWithTheLastAnswer) {
  Start({"--fail", "pods=10"});
  auto options = FastOptions();
  options.max_attempts = 3;
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(TokenConnection(), options, s).ok());
  ASSERT_TRUE(s.failed_kinds().contains("Pod"));
  EXPECT_NE(s.failed_kinds().at("Pod").find(
                "gave up after 3 attempts; last: HTTP 500: etcdserver: request timed out"),
            std::string::npos)
      << s.failed_kinds().at("Pod");
}

TEST_F(ApiClientTest, AnExpiredContinueTokenRestartsTheList) {
  Start({"--expire", "clusterroles"});
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(TokenConnection(), FastOptions(), s).ok());
  EXPECT_EQ(s.Of("ClusterRole").size(), 66u);
  EXPECT_EQ(s.duplicates(), 0u);  // the pages read before the restart were dropped
  bool gone = false;
  for (const auto& r : server_->Requests()) gone = gone || r["status"] == 410;
  EXPECT_TRUE(gone);
}

TEST_F(ApiClientTest, KubeconfigWithInlineClientCertificate) {
  Start();
  const std::string kubeconfig = dir_.path() + "/kubeconfig";
  WriteFile(kubeconfig,
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
            "clusters:\n- name: lab\n  cluster:\n    server: " +
                server_->url() +
                "/\n    certificate-authority-data: " + absl::Base64Escape(pki_.ca.cert_pem) +
                "\nusers:\n- name: reader\n  user:\n    client-certificate-data: " +
                absl::Base64Escape(pki_.client.cert_pem) +
                "\n    client-key-data: " + absl::Base64Escape(pki_.client.key_pem) +
                "\ncontexts:\n- name: lab\n  context: {cluster: lab, user: reader}\n");
  auto c = collector::k8s::LoadKubeconfig(kubeconfig);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->server, server_->url());  // the trailing slash is dropped
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(*c, FastOptions(), s).ok());
  EXPECT_EQ(s.size(), ApiObjects());
  for (const auto& r : server_->Requests()) EXPECT_EQ(r["auth"], "certificate");
}

TEST_F(ApiClientTest, KubeconfigFilesAreRelativeToItAndContextsAreSelectable) {
  Start();
  ::mkdir((dir_.path() + "/kube").c_str(), 0755);
  WriteFile(dir_.path() + "/kube/ca.pem", pki_.ca.cert_pem);
  WriteFile(dir_.path() + "/kube/token", std::string(kToken) + "\n");
  const std::string kubeconfig = dir_.path() + "/kube/config";
  WriteFile(kubeconfig,
            "current-context: broken\nclusters:\n- name: lab\n  cluster:\n"
            "    server: " +
                server_->url() +
                "\n    certificate-authority: ca.pem\n"
                "users:\n- name: sa\n  user: {tokenFile: token}\n"
                "- name: eks\n  user:\n    exec: {command: aws}\n"
                "contexts:\n- name: lab\n  context: {cluster: lab, user: sa}\n"
                "- name: broken\n  context: {cluster: lab, user: eks}\n");
  const auto current = collector::k8s::LoadKubeconfig(kubeconfig);
  ASSERT_FALSE(current.ok());  // an exec plugin without its apiVersion
  EXPECT_NE(current.status().message().find("user eks: exec apiVersion ''"), std::string::npos)
      << current.status();
  const auto missing = collector::k8s::LoadKubeconfig(kubeconfig, "nope");
  EXPECT_NE(missing.status().message().find("no context named 'nope'"), std::string::npos);
  auto lab = collector::k8s::LoadKubeconfig(kubeconfig, "lab");
  ASSERT_TRUE(lab.ok()) << lab.status().message();
  EXPECT_EQ(lab->token_file, dir_.path() + "/kube/token");
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(*lab, FastOptions(), s).ok());
  EXPECT_EQ(s.size(), ApiObjects());
}

// A credential plugin as a kubeconfig names it: a script that logs each run and the request it
// got, and prints the token it was given (the first `wrong_runs` runs print a revoked one).
std::string WritePlugin(const std::string& dir, int wrong_runs) {
  const std::string path = dir + "/kube/get-token.sh";
  WriteFile(path, R"(#!/bin/sh
echo run >> "$PLUGIN_LOG"
printf '%s' "$KUBERNETES_EXEC_INFO" > "$PLUGIN_LOG.request"
runs=$(wc -l < "$PLUGIN_LOG")
token="$1"
if [ "$runs" -le )" + std::to_string(wrong_runs) +
                      R"( ]; then token=revoked; fi
if [ "$1" = fail ]; then echo 'the SSO session expired; run: aws sso login' >&2; exit 3; fi
printf '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {"token": "%s", "expirationTimestamp": "2099-01-01T00:00:00Z"}}' "$token"
)");
  ::chmod(path.c_str(), 0755);
  return path;
}

// A kubeconfig whose only user authenticates with `exec` (YAML lines indented by six spaces).
std::string ExecKubeconfig(const std::string& dir, const std::string& server,
                           const std::string& exec) {
  const std::string path = dir + "/kube/config";
  WriteFile(path, "current-context: eks\nclusters:\n- name: eks\n  cluster: {server: '" + server +
                      "', certificate-authority: ca.pem}\nusers:\n- name: eks\n  user:\n"
                      "    exec:\n" +
                      exec + "contexts:\n- name: eks\n  context: {cluster: eks, user: eks}\n");
  return path;
}

TEST_F(ApiClientTest, AnExecPluginProvidesTheTokenOncePerExpiryAndAgainAfterA401) {
  Start();
  ::mkdir((dir_.path() + "/kube").c_str(), 0755);
  WriteFile(dir_.path() + "/kube/ca.pem", pki_.ca.cert_pem);
  WritePlugin(dir_.path(), 1);  // the first token it prints was revoked
  const std::string log = dir_.path() + "/plugin.log";
  const auto kubeconfig = ExecKubeconfig(dir_.path(), server_->url(),
                                         "      apiVersion: client.authentication.k8s.io/v1\n"
                                         "      command: ./get-token.sh\n"
                                         "      args: [" +
                                             std::string(kToken) +
                                             "]\n"
                                             "      env: [{name: PLUGIN_LOG, value: '" +
                                             log +
                                             "'}]\n"
                                             "      interactiveMode: Never\n"
                                             "      provideClusterInfo: true\n");
  auto c = collector::k8s::LoadKubeconfig(kubeconfig);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->exec.has_value());
  EXPECT_EQ(c->exec->command, dir_.path() + "/kube/./get-token.sh");  // relative to the kubeconfig
  k8s::Snapshot s;
  const auto fetched = Fetch(*c, FastOptions(), s);
  ASSERT_TRUE(fetched.ok()) << fetched;
  EXPECT_EQ(s.size(), ApiObjects());
  // Two runs for dozens of requests: the revoked token's 401, then one token kept to the end.
  EXPECT_EQ(ReadAll(log), "run\nrun\n");
  size_t refused = 0;
  for (const auto& r : server_->Requests()) refused += r["status"] == 401;
  EXPECT_EQ(refused, 1u);
  // The request the plugin got: non-interactive, with the cluster it is for.
  const auto request = nlohmann::json::parse(ReadAll(log + ".request"));
  EXPECT_EQ(request["kind"], "ExecCredential");
  EXPECT_EQ(request["spec"]["interactive"], false);
  EXPECT_EQ(request["spec"]["cluster"]["server"], server_->url());
}

TEST_F(ApiClientTest, ExecPluginFailuresSayWhatThePluginSaid) {
  Start();
  ::mkdir((dir_.path() + "/kube").c_str(), 0755);
  WriteFile(dir_.path() + "/kube/ca.pem", pki_.ca.cert_pem);
  WritePlugin(dir_.path(), 0);
  const std::string env =
      "      env: [{name: PLUGIN_LOG, value: '" + dir_.path() + "/plugin.log'}]\n";
  auto fetch = [&](const std::string& exec) {
    auto c = collector::k8s::LoadKubeconfig(ExecKubeconfig(dir_.path(), server_->url(), exec));
    if (!c.ok()) return c.status();
    k8s::Snapshot s;
    return Fetch(*c, FastOptions(), s);
  };
  const auto failed = fetch(
      "      apiVersion: client.authentication.k8s.io/v1beta1\n"
      "      command: ./get-token.sh\n"
      "      args: [fail]\n" +
      env);
  EXPECT_NE(
      failed.message().find("exited with status 3: the SSO session expired; run: aws sso login"),
      std::string::npos)
      << failed;
  const auto missing = fetch(
      "      apiVersion: client.authentication.k8s.io/v1beta1\n"
      "      command: kspm-no-such-plugin\n"
      "      installHint: install it with apt-get install kspm-no-such-plugin\n");
  EXPECT_NE(missing.message().find("cannot run it"), std::string::npos) << missing;
  EXPECT_NE(missing.message().find("install it with apt-get"), std::string::npos) << missing;
  // The plugin answers with another apiVersion than the kubeconfig asked for.
  const auto mismatch = fetch(
      "      apiVersion: client.authentication.k8s.io/v1beta1\n"
      "      command: ./get-token.sh\n"
      "      args: [x]\n" +
      env);
  EXPECT_NE(mismatch.message().find("answered with apiVersion 'client.authentication.k8s.io/v1'"),
            std::string::npos)
      << mismatch;
  const auto interactive = fetch(
      "      apiVersion: client.authentication.k8s.io/v1\n"
      "      command: ./get-token.sh\n"
      "      interactiveMode: Always\n");
  EXPECT_NE(interactive.message().find("needs a terminal"), std::string::npos) << interactive;
  const std::string legacy = dir_.path() + "/kube/legacy";
  WriteFile(legacy, "current-context: gke\nclusters:\n- name: gke\n  cluster: {server: '" +
                        server_->url() +
                        "'}\nusers:\n- name: gke\n  user:\n    auth-provider: {name: gcp}\n"
                        "contexts:\n- name: gke\n  context: {cluster: gke, user: gke}\n");
  const auto removed = collector::k8s::LoadKubeconfig(legacy);
  EXPECT_NE(removed.status().message().find("removed in 1.26"), std::string::npos)
      << removed.status();
}

TEST_F(ApiClientTest, InClusterUsesTheServiceAccountAndTheServiceAddress) {
  Start();
  const std::string account = dir_.path() + "/serviceaccount";
  ::mkdir(account.c_str(), 0755);
  WriteFile(account + "/ca.crt", pki_.ca.cert_pem);
  WriteFile(account + "/token", kToken);
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_TRUE(absl::IsUnavailable(collector::k8s::InClusterConnection(account).status()));
  ::setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", std::to_string(server_->port()).c_str(), 1);
  auto c = collector::k8s::InClusterConnection(account);
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");
  ASSERT_TRUE(c.ok()) << c.status().message();
  k8s::Snapshot s;
  ASSERT_TRUE(Fetch(*c, FastOptions(), s).ok());
  EXPECT_EQ(s.size(), ApiObjects());
}

TEST_F(ApiClientTest, AnUntrustedServerAndAnUnreachableOneAreErrors) {
  Start();
  auto untrusted = TokenConnection();
  untrusted.ca_pem = (*common::MakeCa("someone-else", 1)).cert_pem;
  k8s::Snapshot s;
  const auto tls = Fetch(untrusted, FastOptions(), s);
  EXPECT_FALSE(tls.ok());
  EXPECT_NE(tls.message().find("certificate"), std::string::npos) << tls.message();

  auto closed = TokenConnection();
  closed.server = "https://127.0.0.1:1";
  auto options = FastOptions();
  options.max_attempts = 2;
  const auto down = Fetch(closed, options, s);
  EXPECT_TRUE(absl::IsUnavailable(down)) << down;
  EXPECT_NE(down.message().find("gave up after 2 attempts"), std::string::npos);
}

// `kspm-collector scan-cluster --kubeconfig` end to end.
TEST_F(ApiClientTest, ScanClusterReadsTheApiThroughAKubeconfig) {
  Start({"--forbid", "networkpolicies"});
  WriteFile(dir_.path() + "/ca.pem", pki_.ca.cert_pem);
  auto kubeconfig = [&](const std::string& token) {
    const std::string path = dir_.path() + "/kubeconfig-" + token;
    WriteFile(path, "current-context: lab\nclusters:\n- name: lab\n  cluster: {server: '" +
                        server_->url() +
                        "', certificate-authority: ca.pem}\n"
                        "users:\n- name: sa\n  user: {token: " +
                        token + "}\ncontexts:\n- name: lab\n  context: {cluster: lab, user: sa}\n");
    return path;
  };
  auto run = [&](const std::string& args, int* code) {
    std::string out;
    FILE* p = ::popen(
        (std::string(KSPM_BIN_DIR) + "/kspm-collector scan-cluster " + args + " 2>&1").c_str(),
        "r");
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    const int status = ::pclose(p);
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
  };
  int code = -1;
  const auto ok =
      run("--kubeconfig " + kubeconfig(kToken) + " --format json -o " + dir_.path() + "/out.json",
          &code);
  ASSERT_EQ(code, 0) << ok;
  EXPECT_NE(ok.find("kspm needs 'list' on networkpolicies.networking.k8s.io"), std::string::npos)
      << ok;
  const auto doc = nlohmann::json::parse(ReadAll(dir_.path() + "/out.json"));
  EXPECT_NE(doc["cluster"]["source"].get<std::string>().find("(Kubernetes v1.30.2)"),
            std::string::npos);
  EXPECT_TRUE(doc["cluster"]["unreadable_kinds"].contains("NetworkPolicy"));

  const auto refused = run("--kubeconfig " + kubeconfig("wrong"), &code);
  EXPECT_EQ(code, 2);
  EXPECT_NE(refused.find("401 Unauthorized"), std::string::npos) << refused;
}

// The collector's periodic scan: API objects to the store, as the pseudo-node `cluster`.
TEST_F(ApiClientTest, ThePeriodicScanCommitsTheClusterReport) {
  Start();
  auto store = collector::store::OpenSqliteStore(dir_.path() + "/kspm.db");
  ASSERT_TRUE(store.ok());
  collector::cluster::ClusterScanSettings settings;
  settings.cluster = "lab";
  settings.interval = std::chrono::seconds(3600);
  auto scan = collector::cluster::PeriodicClusterScan::Create(
      collector::cluster::ApiSource(TokenConnection(), FastOptions()), settings, **store);
  ASSERT_TRUE(scan.ok());
  ASSERT_TRUE((*scan)->RunOnce().ok());
  const auto nodes = (*store)->Nodes("lab", common::Clock::now());
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].identity().node_name(), "cluster");
  EXPECT_EQ((*nodes)[0].identity().kubelet_version(), "v1.30.2");
  // The stock cluster's one finding (CIS 5.1.5 on default/default), nothing else.
  EXPECT_EQ((*nodes)[0].counts().fail(), 0u);
  EXPECT_EQ((*nodes)[0].counts().warn(), 1u);
  // The stock cluster's control plane runs on its own node (static pods): sections 1 and 2 are
  // its agent's to report, not "not applicable".
  collector::store::FindingFilter filter;
  filter.id = "1.1.1";
  filter.statuses = {v1::STATUS_NOT_APPLICABLE};
  EXPECT_TRUE((*store)->Findings(filter)->empty());
}

TEST(PeriodicScan, AManagedControlPlaneGetsSectionsOneAndTwoAsNotApplicable) {
  kspm::testing::TempDir dir;
  ::mkdir((dir.path() + "/snapshot").c_str(), 0755);
  WriteFile(dir.path() + "/snapshot/apps.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
  auto store = collector::store::OpenSqliteStore(dir.path() + "/kspm.db");
  ASSERT_TRUE(store.ok());
  collector::cluster::ClusterScanSettings settings;
  settings.cluster = "eks-prod";
  auto scan = collector::cluster::PeriodicClusterScan::Create(
      collector::cluster::DirectorySource(dir.path() + "/snapshot"), settings, **store);
  ASSERT_TRUE(scan.ok());
  ASSERT_TRUE((*scan)->RunOnce().ok());
  collector::store::FindingFilter filter;
  filter.cluster = "eks-prod";
  filter.statuses = {v1::STATUS_NOT_APPLICABLE};
  filter.id = "1.2.1";
  auto na = (*store)->Findings(filter);
  ASSERT_TRUE(na.ok());
  ASSERT_EQ(na->size(), 1u);
  EXPECT_NE((*na)[0].result().reason().find("no node reporting to kspm runs the control plane"),
            std::string::npos);
  filter.id = "2.1";
  EXPECT_EQ((*store)->Findings(filter)->size(), 1u);

  // A broken exceptions file is a start-up error naming it.
  WriteFile(dir.path() + "/exceptions.yaml", "exceptions:\n  - {name: x}\n");
  settings.exceptions_file = dir.path() + "/exceptions.yaml";
  auto bad = collector::cluster::PeriodicClusterScan::Create(
      collector::cluster::DirectorySource(dir.path() + "/snapshot"), settings, **store);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("exceptions.yaml:2"), std::string::npos);
}

}  // namespace
}  // namespace kspm::cluster_test

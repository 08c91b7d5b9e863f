// Fleet identity end to end, with the real binaries: a collector (`kspm-collector serve
// --enroll-ca-key`) that verifies projected service-account tokens against the fake API server
// (TokenReview and pods, tests/cluster/fake_apiserver.py), agents (`kspm-agent run
// --enroll-token-file`) that enrol with no certificate given, report, renew their short-lived
// certificates and are revoked; VMs enrolling with join tokens pinned by CA hash; and every
// refusal the issue lists, each as its own case, answered with a clear status.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <thread>

#include "cluster_test_util.h"
#include "fake_apiserver.h"
#include "fixtures/host_builder.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "kspm/common/certs.h"
#include "kspm/common/identity.h"
#include "kspm/v1/fleet.grpc.pb.h"
#include "kspm/v1/query.grpc.pb.h"

namespace kspm::cluster_test {
namespace {

using namespace std::chrono_literals;
const std::string kBin = KSPM_BIN_DIR;

bool WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 30s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return done();
}

// A child process with its output in a log file; stopped with SIGTERM by the destructor.
class Child {
 public:
  Child(std::vector<std::string> args, const std::string& log) : log_(log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Child() { Stop(); }
  int Stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::string Log() const { return ReadAll(log_); }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

nlohmann::json AgentPod(const std::string& node, const std::string& owner_kind = "DaemonSet",
                        const std::string& owner = "kspm-agent",
                        const std::string& service_account = "kspm-agent") {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", "kspm-agent-" + node},
            {"namespace", "kspm"},
            {"uid", "uid-" + node},
            {"ownerReferences",
             {{{"apiVersion", "apps/v1"},
               {"kind", owner_kind},
               {"name", owner},
               {"uid", "owner-uid"},
               {"controller", true}}}}}},
          {"spec", {{"nodeName", node}, {"serviceAccountName", service_account}}},
          {"status", {{"phase", "Running"}}}};
}

nlohmann::json PodToken(const std::string& pod, const std::string& node,
                        const std::string& sa = "system:serviceaccount:kspm:kspm-agent") {
  nlohmann::json t = {{"username", sa},
                      {"uid", "sa-uid"},
                      {"audiences", {"kspm-collector"}},
                      {"pod", {{"name", pod}, {"uid", "uid-" + pod.substr(11)}}}};
  if (!node.empty()) t["node"] = {{"name", node}, {"uid", "node-uid-" + node}};
  return t;
}

class EnrollmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("kubeadm-worker", root_, &owners).ok());
    api_ = std::make_unique<FakeApiServer>(dir_.path(), api_pki_,
                                           std::vector<std::string>{"--identities", ids_});
    ASSERT_GT(api_->port(), 0);
    WriteFile(kubeconfig_,
              "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n"
              "    server: " +
                  api_->url() + "\n    certificate-authority: " + dir_.path() +
                  "/ca.crt\nusers:\n- name: c\n  user:\n    token: " + kToken +
                  "\ncontexts:\n- name: lab\n  context: {cluster: lab, "
                  "user: c}\ncurrent-context: lab\n");
    auto files = common::InitCertificateDirectory(certs_, {"static-node"}, {"localhost"},
                                                  {"127.0.0.1"}, false, "lab");
    ASSERT_TRUE(files.ok()) << files.status().message();
    // A reader, for the role checks.
    auto ca = Pair("ca");
    common::CertificateRequest reader;
    reader.common_name = "auditor";
    reader.uris = {common::IdentityUri({common::Role::kReader, "lab", "auditor"})};
    ASSERT_TRUE(common::WriteKeyPair(*common::IssueCertificate(ca, reader), certs_ + "/auditor.crt",
                                     certs_ + "/auditor.key")
                    .ok());
    for (int n = 1; n <= 4; ++n) AddNode("node-" + std::to_string(n), n <= 3);
    SaveIdentities();
    WriteFile(dir_.path() + "/none.yaml", "");
    // Every agent here enrols from 127.0.0.1: the per-address bound is raised for them, except
    // in the storm test, which keeps the default.
    StartCollector({"--enroll-burst", "1000"});
  }

  common::KeyPair Pair(const std::string& stem) {
    return {ReadAll(certs_ + "/" + stem + ".crt"), ReadAll(certs_ + "/" + stem + ".key")};
  }

  // A pod and its token; the token file is written at once, the pod only when `present`.
  void AddNode(const std::string& node, bool present) {
    if (present) pods_.push_back(AgentPod(node));
    tokens_["tok-" + node] = PodToken("kspm-agent-" + node, node);
    WriteFile(TokenFile(node), "tok-" + node + "\n");
  }
  std::string TokenFile(const std::string& node) { return dir_.path() + "/token-" + node; }

  void SaveIdentities() {
    WriteFile(ids_ + ".tmp", nlohmann::json{{"tokens", tokens_}, {"pods", pods_}}.dump());
    std::rename((ids_ + ".tmp").c_str(), ids_.c_str());
  }

  void StartCollector(const std::vector<std::string>& extra) {
    std::remove(port_file_.c_str());
    collector_.reset();
    std::vector<std::string> args{kBin + "/kspm-collector",
                                  "--log-level",
                                  "info",
                                  "serve",
                                  "--listen",
                                  "127.0.0.1:" + std::to_string(port_),
                                  "--port-file",
                                  port_file_,
                                  "--db",
                                  db_,
                                  "--tls-ca",
                                  certs_ + "/ca.crt",
                                  "--tls-cert",
                                  certs_ + "/collector.crt",
                                  "--tls-key",
                                  certs_ + "/collector.key",
                                  "--enroll-ca-key",
                                  certs_ + "/ca.key",
                                  "--enroll-cert-seconds",
                                  "9",
                                  "--kubeconfig",
                                  kubeconfig_,
                                  "--no-cluster-scan",
                                  "--cluster-name",
                                  "lab",
                                  "--agent-namespace",
                                  "kspm"};
    args.insert(args.end(), extra.begin(), extra.end());
    collector_ = std::make_unique<Child>(args, dir_.path() + "/collector.log");
    ASSERT_TRUE(WaitUntil([&] { return !ReadAll(port_file_).empty(); }, 10s))
        << ReadAll(dir_.path() + "/collector.log");
    port_ = std::stoi(ReadAll(port_file_));
    address_ = "localhost:" + std::to_string(port_);
  }

  std::unique_ptr<Child> StartAgent(const std::string& node) {
    return std::make_unique<Child>(std::vector<std::string>{kBin + "/kspm-agent",
                                                            "--log-level",
                                                            "info",
                                                            "run",
                                                            "--collector",
                                                            address_,
                                                            "--node-name",
                                                            node,
                                                            "--cluster",
                                                            "lab",
                                                            "--host-root",
                                                            root_,
                                                            "--interval",
                                                            "2",
                                                            "--drift-mode",
                                                            "rescan",
                                                            "--state-dir",
                                                            dir_.path() + "/state-" + node,
                                                            "--tls-ca",
                                                            certs_ + "/ca.crt",
                                                            "--enroll-token-file",
                                                            TokenFile(node),
                                                            "--config",
                                                            dir_.path() + "/none.yaml"},
                                   dir_.path() + "/agent-" + node + ".log");
  }

  // kspmctl with the operator's certificate (or another), JSON parsed when asked.
  kspm::testing::CommandOutput Ctl(const std::string& args, const std::string& cert = "kspmctl") {
    return kspm::testing::RunCommand(kBin + "/kspmctl --collector " + address_ + " --tls-ca " +
                                         certs_ + "/ca.crt --tls-cert " + certs_ + "/" + cert +
                                         ".crt --tls-key " + certs_ + "/" + cert + ".key " + args,
                                     true);
  }
  nlohmann::json Nodes() {
    const auto out = Ctl("--cluster lab nodes --format json");
    if (out.exit_code != 0) return nlohmann::json::object();
    return nlohmann::json::parse(out.out, nullptr, false);
  }
  std::optional<nlohmann::json> NodeInfo(const std::string& name) {
    const auto nodes = Nodes();
    if (!nodes.contains("nodes")) return std::nullopt;
    for (const auto& n : nodes["nodes"]) {
      if (n.value("name", "") == name) return n;
    }
    return std::nullopt;
  }
  // Certificates enrolment issued to `node`, from the store's audit table.
  int Issued(const std::string& node) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(db_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return -1;
    }
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* stmt = nullptr;
    int n = -1;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM issued_certificates WHERE node = ?", -1, &stmt,
                           nullptr) == SQLITE_OK) {
      sqlite3_bind_text(stmt, 1, node.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(stmt) == SQLITE_ROW) n = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
  }

  // One Enroll call without a client certificate.
  grpc::Status Enroll(const v1::EnrollRequest& request, v1::EnrollResponse* response = nullptr) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadAll(certs_ + "/ca.crt");
    auto stub =
        v1::EnrollmentService::NewStub(grpc::CreateChannel(address_, grpc::SslCredentials(tls)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 20s);
    v1::EnrollResponse ignored;
    return stub->Enroll(&context, request, response ? response : &ignored);
  }
  // A renewal: no token, the node's current certificate as the TLS client certificate.
  grpc::Status Renew(const std::string& node, const std::string& cert_pem,
                     const std::string& key_pem) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadAll(certs_ + "/ca.crt");
    tls.pem_cert_chain = cert_pem;
    tls.pem_private_key = key_pem;
    auto stub =
        v1::EnrollmentService::NewStub(grpc::CreateChannel(address_, grpc::SslCredentials(tls)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 20s);
    v1::EnrollRequest request;
    request.set_node_name(node);
    request.set_csr_pem(common::MakeSigningRequest(node)->csr_pem);
    v1::EnrollResponse response;
    return stub->Enroll(&context, request, &response);
  }
  v1::EnrollRequest TokenRequest(const std::string& node, const std::string& token,
                                 const std::string& cn = "") {
    v1::EnrollRequest r;
    r.set_node_name(node);
    r.set_csr_pem(common::MakeSigningRequest(cn.empty() ? node : cn)->csr_pem);
    r.set_service_account_token(token);
    return r;
  }

  kspm::testing::TempDir dir_;
  std::string root_ = dir_.path() + "/root";
  std::string certs_ = dir_.path() + "/certs";
  std::string ids_ = dir_.path() + "/identities.json";
  std::string kubeconfig_ = dir_.path() + "/kubeconfig";
  std::string db_ = dir_.path() + "/kspm.db";
  std::string port_file_ = dir_.path() + "/port";
  Pki api_pki_ = MakePki();
  std::unique_ptr<FakeApiServer> api_;
  nlohmann::json tokens_ = nlohmann::json::object();
  nlohmann::json pods_ = nlohmann::json::array();
  std::unique_ptr<Child> collector_;
  int port_ = 0;
  std::string address_;
};

// The issue's "done when": three nodes run, a fourth joins and reports with nobody touching a
// certificate, renews its 9-second certificate while it keeps reporting, is revoked (its stream
// closed, its enrolment refused, across a collector restart) and, once allowed, comes back.
TEST_F(EnrollmentTest, ANewNodeEnrolsReportsRenewsAndIsRevoked) {
  std::vector<std::unique_ptr<Child>> agents;
  for (int n = 1; n <= 3; ++n) agents.push_back(StartAgent("node-" + std::to_string(n)));
  ASSERT_TRUE(WaitUntil([&] {
    const auto nodes = Nodes();
    return nodes.contains("nodes") && nodes["nodes"].size() == 3;
  })) << Nodes().dump()
      << ReadAll(dir_.path() + "/collector.log");

  // node-4 joins: its pod appears (the DaemonSet schedules it), then its agent starts.
  pods_.push_back(AgentPod("node-4"));
  SaveIdentities();
  const auto joined = std::chrono::steady_clock::now();
  agents.push_back(StartAgent("node-4"));
  ASSERT_TRUE(WaitUntil([&] {
    const auto n = NodeInfo("node-4");
    return n && n->contains("counts") &&
           (*n)["counts"].value("FAIL", 0) + (*n)["counts"].value("PASS", 0) > 0;
  })) << agents.back()->Log();
  EXPECT_LT(std::chrono::steady_clock::now() - joined, 15s) << "within a few 2 s intervals";
  // The platform the agent detected travels with the node (kubeadm-worker: plain kubeadm).
  const auto joined_node = NodeInfo("node-4");
  ASSERT_TRUE(joined_node.has_value());
  EXPECT_EQ((*joined_node)["platform"].value("name", ""), "kubernetes") << joined_node->dump();
  EXPECT_EQ((*joined_node)["platform"].value("benchmark", ""), "cis-kubernetes-1.12");
  struct stat key {};
  ASSERT_EQ(::stat((dir_.path() + "/state-node-4/identity/node.key").c_str(), &key), 0);
  EXPECT_EQ(key.st_mode & 0777, 0600u);

  // Renewal: at two thirds of 9 s; reports keep arriving after it with the new certificate.
  ASSERT_TRUE(WaitUntil([&] { return Issued("node-4") >= 2; }, 20s)) << agents.back()->Log();
  const std::string renewed_expiry = NodeInfo("node-4")->value("certificate_not_after", "");
  EXPECT_TRUE(WaitUntil(
      [&] {
        const auto n = NodeInfo("node-4");
        return n && n->value("certificate_not_after", "") != renewed_expiry;
      },
      20s))
      << "a later stream presents a renewed certificate";
  EXPECT_EQ(agents.back()->Log().find("renewing the certificate"), std::string::npos)
      << agents.back()->Log();

  // Revocation: the stream closes at once and nothing more arrives.
  const auto revoke = Ctl("--cluster lab nodes revoke node-4");
  ASSERT_EQ(revoke.exit_code, 0) << revoke.out;
  EXPECT_NE(revoke.out.find("1 open streams closed"), std::string::npos) << revoke.out;
  std::this_thread::sleep_for(1s);
  const std::string last_seen = NodeInfo("node-4")->value("last_seen", "");
  EXPECT_TRUE(NodeInfo("node-4")->value("revoked", false));
  std::this_thread::sleep_for(5s);
  EXPECT_EQ(NodeInfo("node-4")->value("last_seen", ""), last_seen) << "no report after revoke";
  EXPECT_NE(NodeInfo("node-3")->value("last_seen", ""), last_seen) << "the others go on";

  // Survives a restart: enrolment with a valid token is still refused.
  collector_->Stop();
  StartCollector({"--enroll-burst", "1000"});
  const auto refused = Enroll(TokenRequest("node-4", "tok-node-4"));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(refused.error_message().find("revoked"), std::string::npos) << refused.error_message();

  // Allowed again, the agent gets a new certificate with its token and reports again.
  ASSERT_EQ(Ctl("--cluster lab nodes allow node-4").exit_code, 0);
  EXPECT_TRUE(WaitUntil(
      [&] {
        const auto n = NodeInfo("node-4");
        return n && !n->value("revoked", true) && n->value("last_seen", "") > last_seen;
      },
      60s))
      << agents.back()->Log();
}

// Every refusal is its own case: a clear status, nothing issued, the collector still serving.
TEST_F(EnrollmentTest, BadCredentialsAreRefusedWithTheirReason) {
  tokens_["tok-vault"] = PodToken("kspm-agent-node-1", "node-1");
  tokens_["tok-vault"]["audiences"] = {"vault"};
  tokens_["tok-expired"] = PodToken("kspm-agent-node-1", "node-1");
  tokens_["tok-expired"]["expired"] = true;
  pods_.push_back(AgentPod("node-8", "Deployment", "not-the-agent"));
  tokens_["tok-other-pod"] = PodToken("kspm-agent-node-8", "node-8");
  pods_.push_back(AgentPod("node-9", "DaemonSet", "kspm-agent", "default"));
  tokens_["tok-other-sa"] =
      PodToken("kspm-agent-node-9", "node-9", "system:serviceaccount:kspm:default");
  tokens_["tok-no-node-claim"] = PodToken("kspm-agent-node-1", "");
  tokens_["tok-gone"] = PodToken("kspm-agent-node-4", "node-4");  // node-4's pod is not there
  SaveIdentities();

  struct Case {
    const char* what;
    v1::EnrollRequest request;
    grpc::StatusCode code;
    const char* says;
  };
  std::vector<Case> cases = {
      {"another audience", TokenRequest("node-1", "tok-vault"), grpc::PERMISSION_DENIED,
       "invalid for the target audiences"},
      {"expired", TokenRequest("node-1", "tok-expired"), grpc::PERMISSION_DENIED, "expired"},
      {"forged", TokenRequest("node-1", "eyJhbGciOiJSUzI1NiJ9.forged.sig"), grpc::PERMISSION_DENIED,
       "invalid bearer token"},
      {"pod of another owner", TokenRequest("node-8", "tok-other-pod"), grpc::PERMISSION_DENIED,
       "not a pod of DaemonSet kspm/kspm-agent"},
      {"another service account", TokenRequest("node-9", "tok-other-sa"), grpc::PERMISSION_DENIED,
       "not to the agent's service account"},
      {"token of a pod on another node", TokenRequest("node-2", "tok-node-1"),
       grpc::PERMISSION_DENIED, "issued to a pod on node 'node-1'"},
      {"pod on another node (no node claim)", TokenRequest("node-2", "tok-no-node-claim"),
       grpc::PERMISSION_DENIED, "runs on node 'node-1', not on 'node-2'"},
      {"pod gone", TokenRequest("node-4", "tok-gone"), grpc::PERMISSION_DENIED, "invalidated"},
      {"CSR names another node", TokenRequest("node-1", "tok-node-1", "node-2"),
       grpc::INVALID_ARGUMENT, "names 'node-2', not node 'node-1'"},
      {"reserved node name", TokenRequest("cluster", "tok-node-1"), grpc::INVALID_ARGUMENT,
       "reserved"},
      {"no credential", TokenRequest("node-1", ""), grpc::UNAUTHENTICATED, "no credential"},
  };
  cases.back().request.clear_service_account_token();
  {
    v1::EnrollRequest garbage = TokenRequest("node-1", "tok-node-1");
    garbage.set_csr_pem(
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    cases.push_back({"garbage CSR", garbage, grpc::INVALID_ARGUMENT, "certificate request"});
    // A weak key, made by the openssl tool rather than by kspm.
    const auto weak = kspm::testing::RunCommand(
        "openssl req -new -newkey rsa:1024 -nodes -keyout /dev/null -subj /CN=node-1 2>/dev/null");
    ASSERT_EQ(weak.exit_code, 0);
    v1::EnrollRequest r = TokenRequest("node-1", "tok-node-1");
    r.set_csr_pem(weak.out);
    cases.push_back({"RSA 1024 key", r, grpc::INVALID_ARGUMENT, "2048 or more"});
  }
  for (const auto& c : cases) {
    const auto s = Enroll(c.request);
    EXPECT_EQ(s.error_code(), c.code) << c.what << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.says), std::string::npos)
        << c.what << ": " << s.error_message();
  }
  EXPECT_EQ(Issued("node-1") + Issued("node-2") + Issued("node-8") + Issued("node-9"), 0);
  // The good token still works afterwards, and the certificate says who and what it is.
  v1::EnrollResponse ok;
  auto csr = common::MakeSigningRequest("node-1");
  v1::EnrollRequest good = TokenRequest("node-1", "tok-node-1");
  good.set_csr_pem(csr->csr_pem);
  ASSERT_TRUE(Enroll(good, &ok).ok());
  // A node that enrols with its token renews with it: its certificate alone is not enough, so a
  // key stolen from it dies with its certificate.
  const auto renewal = Renew("node-1", ok.certificate_pem(), csr->key_pem);
  EXPECT_EQ(renewal.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(renewal.error_message().find("renews with one"), std::string::npos)
      << renewal.error_message();
  const auto facts = common::ReadCertificate(ok.certificate_pem());
  ASSERT_TRUE(facts.ok());
  EXPECT_EQ(facts->common_name, "node-1");
  EXPECT_EQ(facts->uris, std::vector<std::string>{"spiffe://kspm/lab/node/node-1"});
  EXPECT_LE(facts->not_after - std::chrono::system_clock::now(), 10s);
}

// An enrolment storm from one address is cut after its burst; queries are answered meanwhile.
TEST_F(EnrollmentTest, AnEnrolmentStormIsRateLimitedAndQueriesGoOn) {
  collector_->Stop();
  StartCollector({});  // the default bound: a burst of 10 per address
  std::vector<std::thread> threads;
  std::atomic<int> exhausted{0}, other{0};
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([&] {
      const auto s = Enroll(TokenRequest("node-1", "no-such-token"));
      (s.error_code() == grpc::RESOURCE_EXHAUSTED ? exhausted : other)++;
    });
  }
  const auto before = std::chrono::steady_clock::now();
  const auto summary = Ctl("--cluster lab summary");
  const auto took = std::chrono::steady_clock::now() - before;
  for (auto& t : threads) t.join();
  EXPECT_EQ(summary.exit_code, 0) << summary.out;
  EXPECT_LT(took, 5s);
  // The burst of 10 is processed (and refused for its bad token); the rate refills one every
  // 5 s, so a slow machine may let one or two more through.
  EXPECT_GE(other.load(), 10);
  EXPECT_LE(other.load(), 12);
  EXPECT_EQ(exhausted.load() + other.load(), 40);
}

// A VM: an operator makes a join token with kspmctl (reading a settings file), the node enrols
// with it and the CA pinned by hash; a wrong hash, a reused token and a token for another node
// are refused.
TEST_F(EnrollmentTest, AVmEnrolsWithAJoinTokenAndThePinnedCaHash) {
  const std::string config = dir_.path() + "/ops/config.yaml";
  const auto issue = kspm::testing::RunCommand(
      "KSPM_CONFIG=" + config + " " + kBin + "/kspmctl --collector " + address_ +
          " certs client ops --ca " + certs_ + " --role operator --cluster lab",
      true);
  ASSERT_EQ(issue.exit_code, 0) << issue.out;
  const auto created = kspm::testing::RunCommand(
      "KSPM_CONFIG=" + config + " " + kBin + "/kspmctl tokens create --node vm-1 --format json");
  ASSERT_EQ(created.exit_code, 0) << created.out;
  const auto token = nlohmann::json::parse(created.out);
  // The settings file names what is wrong in it, and a flag wins over it.
  WriteFile(dir_.path() + "/bad.yaml", "collector: x:1\ncolour: red\n");
  const auto bad = kspm::testing::RunCommand(
      kBin + "/kspmctl --config " + dir_.path() + "/bad.yaml summary", true);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.out.find("bad.yaml:2: unknown setting 'colour'"), std::string::npos) << bad.out;
  const auto flag_wins = kspm::testing::RunCommand("KSPM_CONFIG=" + config + " " + kBin +
                                                       "/kspmctl --timeout 1 --collector "
                                                       "127.0.0.1:1 summary",
                                                   true);
  EXPECT_EQ(flag_wins.exit_code, 1);
  EXPECT_NE(flag_wins.out.find("collector 127.0.0.1:1"), std::string::npos) << flag_wins.out;
  // The hash is what kubeadm users compute from the CA file with openssl.
  const auto openssl = kspm::testing::RunCommand(
      "openssl x509 -pubkey -noout -in " + certs_ +
      "/ca.crt | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1");
  EXPECT_EQ(token["ca_hash"], "sha256:" + openssl.out.substr(0, 64));

  auto enroll = [&](const std::string& node, const std::string& hash, const std::string& state) {
    return kspm::testing::RunCommand(kBin + "/kspm-agent enroll --collector " + address_ +
                                         " --node-name " + node + " --token " +
                                         token["token"].get<std::string>() + " --ca-hash " + hash +
                                         " --state-dir " + dir_.path() + "/" + state,
                                     true);
  };
  const std::string wrong = "sha256:" + std::string(64, '0');
  const auto mismatch = enroll("vm-1", wrong, "vm-a");
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_NE(mismatch.out.find("does not match --ca-hash"), std::string::npos) << mismatch.out;
  const auto other_node = enroll("vm-2", token["ca_hash"], "vm-b");
  EXPECT_EQ(other_node.exit_code, 1);
  EXPECT_NE(other_node.out.find("is for node 'vm-1'"), std::string::npos) << other_node.out;
  const auto good = enroll("vm-1", token["ca_hash"], "vm-c");
  ASSERT_EQ(good.exit_code, 0) << good.out;
  EXPECT_EQ(ReadAll(dir_.path() + "/vm-c/identity/ca.crt"), ReadAll(certs_ + "/ca.crt"));
  const auto reused = enroll("vm-1", token["ca_hash"], "vm-d");
  EXPECT_EQ(reused.exit_code, 1);
  EXPECT_NE(reused.out.find("used up"), std::string::npos) << reused.out;
  // A VM renews with its current certificate (its join token is spent), and only for itself.
  const std::string vm_cert = ReadAll(dir_.path() + "/vm-c/identity/node.crt");
  const std::string vm_key = ReadAll(dir_.path() + "/vm-c/identity/node.key");
  EXPECT_TRUE(Renew("vm-1", vm_cert, vm_key).ok());
  EXPECT_EQ(Renew("vm-2", vm_cert, vm_key).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Issued("vm-1"), 2);
  // The enrolled VM reports through `run`, which finds its identity and renews it.
  Child agent({kBin + "/kspm-agent",
               "--log-level",
               "info",
               "run",
               "--collector",
               address_,
               "--node-name",
               "vm-1",
               "--cluster",
               "lab",
               "--host-root",
               root_,
               "--interval",
               "2",
               "--drift-mode",
               "rescan",
               "--state-dir",
               dir_.path() + "/vm-c",
               "--config",
               dir_.path() + "/none.yaml"},
              dir_.path() + "/vm.log");
  EXPECT_TRUE(WaitUntil([&] { return NodeInfo("vm-1").has_value(); })) << agent.Log();
}

// The role table over the enrolment and fleet RPCs, and a caller without a certificate: it may
// enrol and fetch the CA bundle, and nothing else.
TEST_F(EnrollmentTest, OnlyOperatorsManageTheFleetAndAnonymousCallersOnlyEnrol) {
  for (const auto& [cert, allowed] : std::vector<std::pair<std::string, bool>>{
           {"kspmctl", true}, {"auditor", false}, {"nodes/static-node", false}}) {
    const auto out = Ctl("tokens create", cert);
    EXPECT_EQ(out.exit_code == 0, allowed) << cert << ": " << out.out;
    if (!allowed) {
      EXPECT_NE(out.out.find("needs the operator role"), std::string::npos) << out.out;
    }
    const auto revoke = Ctl("nodes revoke node-7", cert);
    EXPECT_EQ(revoke.exit_code == 0, allowed) << cert << ": " << revoke.out;
  }
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadAll(certs_ + "/ca.crt");
  auto channel = grpc::CreateChannel(address_, grpc::SslCredentials(tls));
  {
    auto query = v1::QueryService::NewStub(channel);
    grpc::ClientContext context;
    v1::SummaryRequest request;
    v1::SummaryResponse response;
    const auto s = query->Summary(&context, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  }
  {
    auto fleet = v1::FleetService::NewStub(channel);
    grpc::ClientContext context;
    v1::CreateJoinTokenRequest request;
    v1::CreateJoinTokenResponse response;
    EXPECT_EQ(fleet->CreateJoinToken(&context, request, &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto enrol = v1::EnrollmentService::NewStub(channel);
    grpc::ClientContext context;
    v1::TrustBundleRequest request;
    v1::TrustBundleResponse response;
    ASSERT_TRUE(enrol->GetTrustBundle(&context, request, &response).ok());
    EXPECT_EQ(response.ca_pem(), ReadAll(certs_ + "/ca.crt"));
  }
}

}  // namespace
}  // namespace kspm::cluster_test

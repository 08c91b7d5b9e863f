#pragma once

// The enrolment fixture, with the real binaries: a fake API server answering TokenReview and pods
// (tests/cluster/fake_apiserver.py), a collector (`kspm-collector serve --enroll-ca-key`) over a
// fresh certificate directory, agents (`kspm-agent run --enroll-token-file`) started on demand,
// each a child process with its own log; and kspmctl, Enroll and renewal calls against them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster_test_util.h"
#include "fake_apiserver.h"
#include "fixtures/host_builder.h"
#include "fixtures/process.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "kspm/common/certs.h"
#include "kspm/common/identity.h"
#include "kspm/v1/fleet.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace kspm::cluster_test {

using namespace std::chrono_literals;
inline const std::string kBin = KSPM_BIN_DIR;

inline bool WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 30s) {
  return kspm::testing::WaitUntil(done, timeout, 100ms);
}

// A child process with its output in a log file; stopped with SIGTERM by the destructor.
class Child : public kspm::testing::Process {
 public:
  Child(std::vector<std::string> args, const std::string& log)
      : Process(std::move(args), {.log = log, .search_path = false}) {}
};

inline nlohmann::json AgentPod(const std::string& node, const std::string& owner_kind = "DaemonSet",
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

inline nlohmann::json PodToken(const std::string& pod, const std::string& node,
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

}  // namespace kspm::cluster_test

#pragma once

// The fake API server (tests/cluster/fake_apiserver.py) as a test fixture: certificates made at
// test time, the server process started with them and stopped by the destructor.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster_test_util.h"
#include "fixtures/process.h"
#include "kspm/collector/k8s/api_client.h"
#include "kspm/common/certs.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace kspm::cluster_test {

inline constexpr char kToken[] = "kspm-test-token-7f3a";

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Certificates made at test time: a CA, the server's (127.0.0.1), a client's.
struct Pki {
  common::KeyPair ca, server, client;
};

inline Pki MakePki() {
  Pki p;
  auto ca = common::MakeCa("kspm-test-apiserver-ca", 2);
  EXPECT_TRUE(ca.ok()) << ca.status().message();
  p.ca = *ca;
  common::CertificateRequest server;
  server.common_name = "kube-apiserver";
  server.dns_names = {"localhost"};
  server.ip_addresses = {"127.0.0.1"};
  server.server = true;
  server.client = false;
  server.days = 1;
  p.server = *common::IssueCertificate(p.ca, server);
  common::CertificateRequest client;
  client.common_name = "kspm-reader";
  client.days = 1;
  p.client = *common::IssueCertificate(p.ca, client);
  return p;
}

// One fake API server process, started by the test and stopped by its destructor.
class FakeApiServer {
 public:
  FakeApiServer(const std::string& dir, const Pki& pki, std::vector<std::string> extra) {
    WriteFile(dir + "/server.crt", pki.server.cert_pem);
    WriteFile(dir + "/server.key", pki.server.key_pem);
    WriteFile(dir + "/ca.crt", pki.ca.cert_pem);
    log_ = dir + "/requests.log";
    const std::string port_file = dir + "/port";
    std::vector<std::string> args = {
        "python3",     SourceDir() + "/tests/cluster/fake_apiserver.py",
        "--fixtures",  SourceDir() + "/tests/fixtures/cluster/kubeadm",
        "--cert",      dir + "/server.crt",
        "--key",       dir + "/server.key",
        "--client-ca", dir + "/ca.crt",
        "--token",     kToken,
        "--port-file", port_file,
        "--log",       log_};
    args.insert(args.end(), extra.begin(), extra.end());
    server_ = std::make_unique<kspm::testing::Process>(
        std::move(args), kspm::testing::Process::Options{.log = "", .search_path = true});
    for (int i = 0; i < 200 && server_->started(); ++i) {
      const std::string port = ReadAll(port_file);
      if (!port.empty()) {
        port_ = std::stoi(port);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  int port() const { return port_; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  // The requests the server saw, one JSON object each.
  std::vector<nlohmann::json> Requests() const {
    std::vector<nlohmann::json> out;
    std::ifstream in(log_);
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }

 private:
  std::unique_ptr<kspm::testing::Process> server_;
  int port_ = 0;
  std::string log_;
};

// A connection to `server` with a bearer token, trusting the test CA.
inline collector::k8s::Connection TokenConnectionTo(const FakeApiServer& server, const Pki& pki,
                                                    const std::string& token = kToken) {
  collector::k8s::Connection c;
  c.server = server.url();
  c.ca_pem = pki.ca.cert_pem;
  c.token = token;
  c.description = "test token";
  return c;
}

}  // namespace kspm::cluster_test

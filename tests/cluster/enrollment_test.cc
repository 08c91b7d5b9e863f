// Fleet identity end to end, with the real binaries: a collector (`kspm-collector serve
// --enroll-ca-key`) that verifies projected service-account tokens against the fake API server
// (TokenReview and pods, tests/cluster/fake_apiserver.py), agents (`kspm-agent run
// --enroll-token-file`) that enrol with no certificate given, report, renew their short-lived
// certificates and are revoked; VMs enrolling with join tokens pinned by CA hash; and every
// refusal the issue lists, each as its own case, answered with a clear status.
// The refusals are in enrollment_refusals_test.cc, the fixture in enrollment_test_support.h.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "enrollment_test_support.h"
#include "fake_apiserver.h"
#include "fixtures/host_builder.h"
#include "grpcpp/support/status.h"
#include "nlohmann/json.hpp"

namespace kspm::cluster_test {
namespace {

using namespace std::chrono_literals;

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

}  // namespace
}  // namespace kspm::cluster_test

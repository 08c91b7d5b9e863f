// Enrolment refused, with the real binaries (enrollment_test_support.h): bad credentials, each
// refusal its own case with its reason; an enrolment storm cut by the rate limit while queries go
// on; and the role table over the enrolment and fleet RPCs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "enrollment_test_support.h"
#include "fake_apiserver.h"
#include "fixtures/host_builder.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/status.h"
#include "kspm/common/certs.h"
#include "kspm/v1/fleet.grpc.pb.h"
#include "kspm/v1/query.grpc.pb.h"

namespace kspm::cluster_test {
namespace {

using namespace std::chrono_literals;

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

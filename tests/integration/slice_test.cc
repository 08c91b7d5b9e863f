// End to end over real gRPC on loopback: the kspm-agent binary scans the demo node and sends the
// report to an in-process collector (port 0, real sqlite file); the kspmctl binary reads it back.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <set>
#include <thread>

#include "fixtures/consumers.h"
#include "fixtures/host_builder.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "kspm/collector/server/server.h"
#include "kspm/common/names.h"
#include "kspm/common/time.h"
#include "kspm/v1/agent.grpc.pb.h"
#include "kspm/v1/query.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace kspm {
namespace {

// Standard error is dropped: these tests read what the commands print for scripts.
kspm::testing::CommandOutput Shell(const std::string& command) {
  return kspm::testing::RunCommand(command);
}

const std::string kBin = KSPM_BIN_DIR;

class SliceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    collector::server::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = dir_.path() + "/kspm.db";
    options.tls.insecure = true;
    Adjust(options);
    auto server = collector::server::CollectorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    address_ = "127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::seconds(2));
  }
  virtual void Adjust(collector::server::ServerOptions&) {}
  std::string Ctl(const std::string& args) {
    return kBin + "/kspmctl --insecure --collector " + address_ + " " + args;
  }

  kspm::testing::TempDir dir_;
  std::unique_ptr<collector::server::CollectorServer> server_;
  std::string address_;
};

TEST_F(SliceTest, AgentScanReachesKspmctlThroughCollectorAndSqlite) {
  const std::string root = dir_.path() + "/demo";
  ASSERT_EQ(Shell(kBin + "/kspm-fixture build " + KSPM_SOURCE_DIR +
                  "/tests/fixtures/hosts/demo-kubeadm-node.yaml " + root)
                .exit_code,
            0);
  const auto sent = Shell(kBin + "/kspm-agent send --insecure --collector " + address_ +
                          " --host-root " + root + " --cluster demo");
  ASSERT_EQ(sent.exit_code, 0);

  const auto findings = Shell(Ctl("findings --format json --id 4.2.1"));
  ASSERT_EQ(findings.exit_code, 0) << findings.out;
  const auto doc = nlohmann::json::parse(findings.out);
  ASSERT_EQ(doc["findings"].size(), 1u) << findings.out;
  const auto& f = doc["findings"][0];
  EXPECT_EQ(f["node"], "demo-cp-1");
  EXPECT_EQ(f["cluster"], "demo");
  EXPECT_EQ(f["status"], "FAIL");
  EXPECT_EQ(f["evidence"][0]["source_kind"], "flag");
  EXPECT_EQ(f["evidence"][0]["pid"], 812);
  EXPECT_EQ(f["evidence"][0]["value"], "true");

  const auto summary = Shell(Ctl("summary --format json"));
  ASSERT_EQ(summary.exit_code, 0);
  const auto s = nlohmann::json::parse(summary.out);
  EXPECT_GT(s["overall"]["counts"]["FAIL"].template get<int>(), 5);
  EXPECT_GT(s["overall"]["counts"]["PASS"].template get<int>(), 20);
  EXPECT_LT(s["overall"]["score"].template get<double>(), 100.0);
  EXPECT_EQ(s["nodes"][0]["scope"], "demo-cp-1");

  // A triage list: NOT_APPLICABLE only when asked for, most severe first, items in natural order.
  const auto triage = nlohmann::json::parse(Shell(Ctl("findings --format json")).out)["findings"];
  ASSERT_GT(triage.size(), 5u);
  for (size_t i = 0; i < triage.size(); ++i) {
    EXPECT_NE(triage[i]["status"], "NOT_APPLICABLE");
    EXPECT_NE(triage[i]["status"], "PASS");
    if (i > 0) {
      const int before = *kspm::common::ParseSeverity(triage[i - 1]["severity"].get<std::string>());
      const int now = *kspm::common::ParseSeverity(triage[i]["severity"].get<std::string>());
      EXPECT_GE(before, now) << triage[i - 1]["id"] << " then " << triage[i]["id"];
    }
  }
  EXPECT_GT(nlohmann::json::parse(
                Shell(Ctl("findings --format json --status NOT_APPLICABLE")).out)["findings"]
                .size(),
            0u);
  const auto text = Shell(Ctl("findings --id 4.2.1 -v"));
  EXPECT_NE(text.out.find("fix:"), std::string::npos) << text.out;
  EXPECT_EQ(Shell(Ctl("findings --id 4.2.1")).out.find("fix:"), std::string::npos);

  // --fail-on gates pipelines: a critical FAIL exists (4.2.1).
  EXPECT_EQ(Shell(Ctl("findings --fail-on critical")).exit_code, 3);
  EXPECT_EQ(Shell(Ctl("findings --id 1.1.3 --fail-on low")).exit_code, 0);  // 1.1.3 passes

  const auto nodes = Shell(Ctl("nodes --format json"));
  ASSERT_EQ(nodes.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(nodes.out)["nodes"][0]["name"], "demo-cp-1");

  const auto sarif = Shell(Ctl("export --format sarif"));
  ASSERT_EQ(sarif.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(sarif.out)["version"], "2.1.0");
  // What GitHub code scanning and Jenkins accept, from the stored posture.
  for (const std::string format : {"sarif", "junit"}) {
    const auto exported = Shell(Ctl("export --format " + format));
    ASSERT_EQ(exported.exit_code, 0);
    const auto check = kspm::testing::CheckWithConsumer(format, exported.out, dir_.path());
    EXPECT_EQ(check.exit_code, 0) << format << ":\n" << check.out;
  }
  // Every JSON document kspmctl prints has the documented shape (schemas/).
  for (const auto& [command, definition] :
       std::vector<std::pair<std::string, std::string>>{{"summary --format json", "ctlSummary"},
                                                        {"findings --format json", "ctlFindings"},
                                                        {"nodes --format json", "ctlNodes"},
                                                        {"export --format json", "ctlExport"},
                                                        {"history --format json", "ctlHistory"},
                                                        {"drift --format json", "ctlDrift"}}) {
    const auto o = Shell(Ctl(command));
    ASSERT_EQ(o.exit_code, 0) << command << "\n" << o.out;
    const auto check = kspm::testing::CheckJsonSchema(definition, o.out, dir_.path());
    EXPECT_EQ(check.exit_code, 0) << command << ":\n" << check.out;
  }
}

// 5,000 nodes with 20 findings each (100,000, about 30 MiB of findings): far past gRPC's 4 MiB
// message limit, which a single response hit at about 110 nodes of real results. kspmctl pages.
TEST_F(SliceTest, KspmctlReadsFiveThousandNodesPageByPage) {
  constexpr int kNodes = 5000, kPerNode = 20;
  std::vector<v1::NodeReport> reports(kNodes);
  std::vector<const v1::NodeReport*> batch;
  for (int n = 0; n < kNodes; ++n) {
    auto& rep = reports[static_cast<size_t>(n)];
    rep.set_scan_id("scan-" + std::to_string(n));
    rep.mutable_node()->set_node_name("node-" + std::to_string(n));
    rep.mutable_node()->set_cluster("big");
    rep.set_full(true);
    for (int i = 0; i < kPerNode; ++i) {
      auto* r = rep.add_results();
      r->set_check_id("kubelet.check-" + std::to_string(i));
      r->set_benchmark("cis-kubernetes-1.12");
      r->set_benchmark_id("4.2." + std::to_string(i));
      r->set_status(v1::STATUS_FAIL);
      r->set_severity(i % 2 ? v1::SEVERITY_HIGH : v1::SEVERITY_MEDIUM);
      r->set_reason(std::string(200, 'r'));  // realistic size: evidence and reasons
      r->set_remediation(std::string(100, 'm'));
    }
    batch.push_back(&rep);
  }
  for (const auto& outcome : server_->store().CommitBatch(batch, common::Clock::now())) {
    ASSERT_TRUE(outcome.ok()) << outcome.status();
  }
  const auto out = Shell(Ctl("--cluster big findings --format json"));
  ASSERT_EQ(out.exit_code, 0) << out.out.substr(0, 500);
  const auto findings = nlohmann::json::parse(out.out)["findings"];
  ASSERT_EQ(findings.size(), static_cast<size_t>(kNodes * kPerNode));
  // Every finding exactly once, in order: by node name, then the most severe first.
  std::set<std::string> seen;
  for (const auto& f : findings) {
    seen.insert(f["node"].get<std::string>() + "/" + f["check_id"].get<std::string>());
  }
  EXPECT_EQ(seen.size(), findings.size());
  EXPECT_EQ(findings[0]["node"], "node-0");
  EXPECT_EQ(findings[0]["severity"], "high");
  EXPECT_EQ(findings.back()["node"], "node-999");
  // --limit across pages stops where asked.
  const auto some = Shell(Ctl("--cluster big findings --format json --limit 2500"));
  ASSERT_EQ(some.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(some.out)["findings"].size(), 2500u);
  // Exports page too.
  const auto csv = Shell(Ctl("--cluster big export --format csv"));
  ASSERT_EQ(csv.exit_code, 0);
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), kNodes * kPerNode + 1);
}

TEST_F(SliceTest, AMalformedPageTokenIsRefused) {
  auto stub =
      v1::QueryService::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::FindingsRequest req;
  req.set_page_token("not a token");
  v1::FindingsResponse resp;
  const auto s = stub->ListFindings(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("page token"), std::string::npos);
}

TEST_F(SliceTest, KspmctlExitsNonZeroWhenTheCollectorIsUnreachable) {
  const auto out = Shell(kBin + "/kspmctl --insecure --timeout 1 --collector 127.0.0.1:1 summary");
  EXPECT_EQ(out.exit_code, 1);
}

TEST_F(SliceTest, AgentSendFailsClearlyWithoutACollector) {
  const auto out = Shell(kBin +
                         "/kspm-agent send --insecure --timeout 2 --collector 127.0.0.1:1 "
                         "--host-root " +
                         dir_.path());
  EXPECT_EQ(out.exit_code, 1);
}

TEST(CollectorFlags, InsecureIsRefusedOffLoopback) {
  kspm::testing::TempDir dir;
  const auto out = kspm::testing::RunCommand(
      kBin + "/kspm-collector serve --insecure --listen 0.0.0.0:0 --db " + dir.path() + "/kspm.db",
      /*merge_stderr=*/true);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.out.find("--insecure-any-address"), std::string::npos) << out.out;
  // Loopback in either family is fine: the collector starts (and is stopped by the timeout).
  for (const std::string listen : {"127.0.0.1:0", "[::1]:0"}) {
    const auto ok = kspm::testing::RunCommand(
        "timeout 1 " + kBin + "/kspm-collector --log-level off serve --insecure --listen " +
            listen + " --db " + dir.path() + "/kspm.db",
        /*merge_stderr=*/true);
    EXPECT_EQ(ok.exit_code, 124) << listen << ": " << ok.out;
  }
}

// Bad input on the agent stream, sent with the generated client directly.
class StreamTest : public SliceTest {
 protected:
  grpc::Status Exchange(const std::vector<v1::AgentMessage>& messages,
                        std::vector<v1::CollectorMessage>* replies = nullptr) {
    auto stub = v1::AgentService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    auto stream = stub->Connect(&ctx);
    for (const auto& m : messages) {
      if (!stream->Write(m)) break;
    }
    stream->WritesDone();
    v1::CollectorMessage reply;
    while (stream->Read(&reply)) {
      if (replies) replies->push_back(reply);
    }
    return stream->Finish();
  }
  static v1::AgentMessage Hello(const std::string& node) {
    v1::AgentMessage m;
    m.mutable_hello()->mutable_node()->set_node_name(node);
    return m;
  }
  static v1::AgentMessage Report(const std::string& node, const std::string& scan_id,
                                 v1::Status status = v1::STATUS_FAIL) {
    v1::AgentMessage m;
    auto* r = m.mutable_report();
    r->set_scan_id(scan_id);
    r->mutable_node()->set_node_name(node);
    r->set_full(true);
    auto* res = r->add_results();
    res->set_check_id("kubelet.anonymous-auth");
    res->set_benchmark("cis-kubernetes-1.12");
    res->set_benchmark_id("4.2.1");
    res->set_status(status);
    return m;
  }
  size_t Stored() {
    collector::store::FindingFilter filter;
    filter.statuses = {v1::STATUS_FAIL};
    return server_->store().Findings(filter)->size();
  }
};

// A client that sends reports without waiting for acks: the collector stops reading the stream
// while four are in flight (back-pressure), and still answers every one, once.
TEST_F(StreamTest, AFloodWithoutWaitingForAcksIsReadAtTheCollectorsPace) {
  std::vector<v1::AgentMessage> messages = {Hello("node-a")};
  for (int i = 0; i < 200; ++i) messages.push_back(Report("node-a", "scan-" + std::to_string(i)));
  std::vector<v1::CollectorMessage> replies;
  EXPECT_TRUE(Exchange(messages, &replies).ok());
  std::set<std::string> acked;
  for (const auto& r : replies) {
    if (r.has_ack() && r.ack().accepted()) acked.insert(r.ack().scan_id());
  }
  EXPECT_EQ(acked.size(), 200u);
  EXPECT_GT(server_->agent_stats().reads_paused.load(), 0u);
}

// Many streams flooding at once: besides each stream's own limit, all streams together hold at
// most the collector's in-flight budget (plus the one message each stream may have been reading
// when the budget filled), and every report is still answered once.
class BudgetTest : public StreamTest {
 protected:
  static constexpr size_t kBudget = 256 << 10;
  void Adjust(collector::server::ServerOptions& options) override {
    options.max_in_flight_bytes = kBudget;
  }
};

TEST_F(BudgetTest, ManyFloodingStreamsStayWithinTheCollectorsBudget) {
  constexpr int kStreams = 8;
  constexpr int kReports = 40;
  v1::AgentMessage sample = Report("x", "x");
  sample.mutable_report()->mutable_results(0)->set_reason(std::string(40 << 10, 'r'));
  const size_t report_bytes = sample.report().ByteSizeLong();
  std::vector<std::thread> threads;
  std::atomic<int> acked{0};
  for (int t = 0; t < kStreams; ++t) {
    threads.emplace_back([&, t] {
      const std::string node = "flood-" + std::to_string(t);
      std::vector<v1::AgentMessage> messages = {Hello(node)};
      for (int i = 0; i < kReports; ++i) {
        v1::AgentMessage m = sample;
        m.mutable_report()->set_scan_id(node + "-" + std::to_string(i));
        m.mutable_report()->mutable_node()->set_node_name(node);
        messages.push_back(std::move(m));
      }
      grpc::ChannelArguments args;
      args.SetInt("grpc.channel_id", t);  // one connection per stream, as agents have
      auto stub = v1::AgentService::NewStub(
          grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      auto stream = stub->Connect(&ctx);
      std::thread writer([&] {
        for (const auto& m : messages) {
          if (!stream->Write(m)) break;
        }
        stream->WritesDone();
      });
      v1::CollectorMessage reply;
      while (stream->Read(&reply)) {
        if (reply.has_ack() && reply.ack().accepted()) ++acked;
      }
      writer.join();
      EXPECT_TRUE(stream->Finish().ok());
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(acked.load(), kStreams * kReports);
  const auto& budget = server_->in_flight_budget();
  EXPECT_GT(budget.waits(), 0u) << "the flood never reached the budget: the test proves nothing";
  EXPECT_LE(budget.peak(), kBudget + kStreams * report_bytes);
  EXPECT_EQ(budget.in_flight(), 0u);
  EXPECT_EQ(budget.waiting(), 0u);
}

// Bytes that are not an AgentMessage (garbage, or a report whose text is not UTF-8, as an agent
// before the UTF-8 escaping sent it): refused with INVALID_ARGUMENT naming the message, not
// ended with OK as if the client had said goodbye.
TEST_F(StreamTest, AMessageThatCannotBeParsedIsRefusedWithAReason) {
  v1::AgentMessage report = Report("n1", "scan-\xe9");
  std::string not_utf8;
  report.SerializeToString(&not_utf8);
  for (const std::string& bytes : {std::string("\xff\xff\xff\xff\xff\x01", 6), not_utf8}) {
    auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::CompletionQueue cq;
    auto call = stub.PrepareCall(&ctx, "/kspm.v1.AgentService/Connect", &cq);
    auto step = [&cq](auto start) {
      void* tag = nullptr;
      bool ok = false;
      start();
      return cq.Next(&tag, &ok) && ok;
    };
    auto buffer = [](const std::string& raw) {
      grpc::Slice slice(raw);
      return grpc::ByteBuffer(&slice, 1);
    };
    std::string hello;
    Hello("n1").SerializeToString(&hello);
    ASSERT_TRUE(step([&] { call->StartCall(reinterpret_cast<void*>(1)); }));
    const grpc::ByteBuffer hello_buffer = buffer(hello), bad_buffer = buffer(bytes);
    ASSERT_TRUE(step([&] { call->Write(hello_buffer, reinterpret_cast<void*>(2)); }));
    (void)step([&] { call->Write(bad_buffer, reinterpret_cast<void*>(3)); });
    (void)step([&] { call->WritesDone(reinterpret_cast<void*>(4)); });
    grpc::Status status;
    (void)step([&] { call->Finish(&status, reinterpret_cast<void*>(5)); });
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_NE(status.error_message().find("message 2 could not be parsed"), std::string::npos)
        << status.error_message();
  }
  EXPECT_EQ(Stored(), 0u);
}

TEST_F(StreamTest, AcksAReportOnlyAfterItIsStored) {
  std::vector<v1::CollectorMessage> replies;
  auto s = Exchange({Hello("n1"), Report("n1", "scan-1")}, &replies);
  EXPECT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].ack().scan_id(), "scan-1");
  EXPECT_TRUE(replies[0].ack().accepted());
  EXPECT_EQ(Stored(), 1u);
  // Redelivery of the same scan is acked again and changes nothing.
  replies.clear();
  EXPECT_TRUE(Exchange({Hello("n1"), Report("n1", "scan-1")}, &replies).ok());
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_TRUE(replies[0].ack().accepted());
  EXPECT_EQ(Stored(), 1u);
  EXPECT_EQ(server_->agent_stats().duplicates.load(), 1u);
}

TEST_F(StreamTest, RejectsAReportBeforeHello) {
  auto s = Exchange({Report("n1", "scan-1")});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Stored(), 0u);
}

TEST_F(StreamTest, RejectsAReportForAnotherNode) {
  auto s = Exchange({Hello("n1"), Report("n2", "scan-1")});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("n2"), std::string::npos);
  EXPECT_EQ(Stored(), 0u);
}

TEST_F(StreamTest, RejectsAResultWithoutStatus) {
  auto s = Exchange({Hello("n1"), Report("n1", "scan-1", v1::STATUS_UNSPECIFIED)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Stored(), 0u);
}

TEST_F(StreamTest, RejectsGarbageBytesOnTheWire) {
  // A raw HTTP/2 client is out of reach here; an oversized message stands in for garbage that
  // exceeds the limits: the collector refuses it without storing anything.
  v1::AgentMessage big = Report("n1", "scan-big");
  big.mutable_report()->mutable_results(0)->set_reason(std::string(17 << 20, 'x'));
  auto s = Exchange({Hello("n1"), big});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Stored(), 0u);
}

}  // namespace
}  // namespace kspm

// The pipeline over real mutual TLS on loopback, with certificates generated at test time:
// node identity bound to the certificate, bad clients refused, and delivery that survives a
// collector restart in the middle of a stream and an agent restart with a full spool.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "fixtures/host_builder.h"
#include "fixtures/process.h"
#include "grpcpp/create_channel.h"
#include "kspm/agent/daemon.h"
#include "kspm/agent/transport/collector_stream.h"
#include "kspm/collector/server/server.h"
#include "kspm/common/certs.h"
#include "kspm/common/tls.h"
#include "kspm/v1/agent.grpc.pb.h"
#include "kspm/v1/query.grpc.pb.h"

namespace kspm {
namespace {

using namespace std::chrono_literals;

// Polls `pred` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s) {
  return kspm::testing::WaitUntil(pred, timeout);
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto files = common::InitCertificateDirectory(certs_, {"node-a", "node-b"}, {"localhost"},
                                                  {"127.0.0.1"}, false, "test");
    ASSERT_TRUE(files.ok()) << files.status();
    bool owners = false;
    ASSERT_TRUE(kspm::testing::BuildFixtureHost("kubeadm-worker", root_, &owners).ok());
    StartCollector("127.0.0.1:0");
  }
  void TearDown() override {
    if (server_) server_->Shutdown(1s);
  }

  void StartCollector(const std::string& listen,
                      std::chrono::milliseconds min_ping = std::chrono::seconds(10),
                      unsigned tls_reload_seconds = 60, int reports_per_minute = 120) {
    collector::server::ServerOptions options;
    options.max_reports_per_minute = reports_per_minute;
    options.tls_reload_seconds = tls_reload_seconds;
    options.listen = listen;
    options.min_agent_ping_interval = min_ping;
    options.db_path = db_;
    options.tls = {certs_ + "/ca.crt", certs_ + "/collector.crt", certs_ + "/collector.key"};
    options.health_listen = "127.0.0.1:0";
    auto server = collector::server::CollectorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    address_ = "127.0.0.1:" + std::to_string(server_->port());
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& who,
                                         std::chrono::milliseconds keepalive = 30s) {
    common::TlsFiles tls{certs_ + "/ca.crt", certs_ + "/" + who + ".crt",
                         certs_ + "/" + who + ".key"};
    auto creds = common::MakeClientCredentials(tls);
    EXPECT_TRUE(creds.ok()) << creds.status();
    grpc::ChannelArguments args = agent::transport::AgentChannelArguments(keepalive);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
    return grpc::CreateCustomChannel(address_, *creds, args);
  }

  // One hello and one report on a fresh stream; returns the stream's final status. `edit`
  // changes the one result before it is sent.
  grpc::Status SendOne(const std::shared_ptr<grpc::Channel>& channel, const std::string& hello_as,
                       const std::string& scan_id,
                       const std::function<void(v1::CheckResult*)>& edit = {},
                       const std::string& cluster = "test") {
    auto stub = v1::AgentService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    auto stream = stub->Connect(&ctx);
    v1::AgentMessage hello;
    hello.mutable_hello()->mutable_node()->set_node_name(hello_as);
    v1::AgentMessage report;
    report.mutable_report()->set_scan_id(scan_id);
    report.mutable_report()->mutable_node()->set_node_name(hello_as);
    report.mutable_report()->mutable_node()->set_cluster(cluster);
    auto* r = report.mutable_report()->add_results();
    r->set_check_id("kubelet.anonymous-auth");
    r->set_benchmark("cis-kubernetes-1.12");
    r->set_status(v1::STATUS_FAIL);
    if (edit) edit(r);
    if (stream->Write(hello)) (void)stream->Write(report);
    stream->WritesDone();
    v1::CollectorMessage reply;
    while (stream->Read(&reply)) {
    }
    return stream->Finish();
  }

  int Count(const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(db_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* stmt = nullptr;
    int n = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      n = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
  }

  agent::DaemonSettings FastSettings(const std::string& node) {
    agent::DaemonSettings s;
    s.node.node_name = node;
    s.node.cluster = "test";
    s.interval = std::chrono::seconds(1);
    s.jitter = 0.0;
    s.resync = 3s;
    s.backoff_min = 50ms;
    s.backoff_max = 200ms;
    s.ack_timeout = 5s;
    return s;
  }

  // An agent whose only traffic after its first report is keepalive pings (asked every 200 ms),
  // against a collector that accepts one ping per `accepted`: how often it connected in `wait`,
  // or as soon as it has connected `enough` times (the server's GOAWAY and the reconnect after it
  // take a moment beyond the ping that triggers them, so a fixed window is racy).
  uint64_t IdleConnects(std::chrono::milliseconds accepted, std::chrono::milliseconds wait,
                        uint64_t enough = UINT64_MAX) {
    server_->Shutdown(0ms);
    server_.reset();
    StartCollector("127.0.0.1:0", accepted);
    auto catalog = agent::checks::Catalog::Builtin();
    auto host = agent::host::MakeFsHostView(root_);
    auto spool = agent::transport::Spool::Open(dir_.path() + "/spool", 64 << 20, 10000);
    EXPECT_TRUE(catalog.ok() && host.ok() && spool.ok());
    auto settings = FastSettings("node-a");
    settings.interval = 3600s;
    agent::AgentDaemon daemon(**host, *catalog, {}, settings, **spool,
                              [&] { return Channel("nodes/node-a", 200ms); });
    daemon.Start();
    EXPECT_TRUE(WaitFor([&] { return daemon.stats().delivered.load() >= 1; }));
    (void)WaitFor([&] { return daemon.stats().connects.load() >= enough; }, wait);
    daemon.Stop();
    return daemon.stats().connects.load();
  }

  kspm::testing::TempDir dir_;
  std::string certs_ = dir_.path() + "/certs";
  std::string root_ = dir_.path() + "/root";
  std::string db_ = dir_.path() + "/kspm.db";
  std::unique_ptr<collector::server::CollectorServer> server_;
  std::string address_;
};

TEST_F(PipelineTest, NodeReportsUnderItsCertificateName) {
  EXPECT_TRUE(SendOne(Channel("nodes/node-a"), "node-a", "scan-1").ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 1);
}

TEST_F(PipelineTest, NodeCannotReportAsAnotherNode) {
  const auto s = SendOne(Channel("nodes/node-a"), "node-b", "scan-1");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("node-a"), std::string::npos);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 0);
}

TEST_F(PipelineTest, ClientWithoutCertificateIsRefused) {
  grpc::SslCredentialsOptions opts;
  std::string ca;
  ASSERT_TRUE(kspm::testing::ReadFileText(certs_ + "/ca.crt", &ca).ok());
  opts.pem_root_certs = ca;
  const auto s =
      SendOne(grpc::CreateChannel(address_, grpc::SslCredentials(opts)), "node-a", "scan-1");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 0);
}

TEST_F(PipelineTest, CertificateFromAnotherCaIsRefused) {
  const std::string other = dir_.path() + "/other";
  ASSERT_TRUE(common::InitCertificateDirectory(other, {"node-a"}, {"localhost"}, {}).ok());
  common::TlsFiles tls{certs_ + "/ca.crt", other + "/nodes/node-a.crt",
                       other + "/nodes/node-a.key"};
  auto creds = common::MakeClientCredentials(tls);
  ASSERT_TRUE(creds.ok());
  const auto s = SendOne(grpc::CreateChannel(address_, *creds), "node-a", "scan-1");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 0);
}

// Every RPC against every role: a certificate of the CA is not a key to everything. The role
// travels in the certificate (a spiffe://kspm/<cluster>/... URI) and is checked on each call.
TEST_F(PipelineTest, EachRoleMayDoExactlyWhatItsRoleAllows) {
  common::KeyPair ca;
  ASSERT_TRUE(kspm::testing::ReadFileText(certs_ + "/ca.crt", &ca.cert_pem).ok());
  ASSERT_TRUE(kspm::testing::ReadFileText(certs_ + "/ca.key", &ca.key_pem).ok());
  auto issue = [&](const std::string& stem, const std::string& cn, std::vector<std::string> uris) {
    common::CertificateRequest request;
    request.common_name = cn;
    request.uris = std::move(uris);
    auto pair = common::IssueCertificate(ca, request);
    ASSERT_TRUE(pair.ok()) << pair.status();
    ASSERT_TRUE(
        common::WriteKeyPair(*pair, certs_ + "/" + stem + ".crt", certs_ + "/" + stem + ".key")
            .ok());
  };
  issue("reader", "alice", {"spiffe://kspm/test/client/reader/alice"});
  issue("legacy", "node-a", {});  // made before roles: CN only
  issue("elsewhere", "node-z", {"spiffe://kspm/prod/node/node-z"});

  enum Outcome { kOk, kDenied, kNotScanning };
  struct Case {
    std::string who;
    std::string node;  // the node it reports as
    Outcome summary, scan, report;
    std::string says;  // in the refusal of the report
  };
  const std::vector<Case> cases = {
      {"nodes/node-a", "node-a", kDenied, kDenied, kOk, ""},
      {"reader", "alice", kOk, kDenied, kDenied, "reader certificate"},
      // kspmctl's certificate from certs init is an operator's: it may scan (this collector has
      // no cluster to scan, so the call gets as far as saying so).
      {"kspmctl", "kspmctl", kOk, kNotScanning, kDenied, "operator certificate"},
      {"collector", "localhost", kDenied, kDenied, kDenied, "server certificate"},
      {"legacy", "node-a", kDenied, kDenied, kDenied, "carries no kspm identity"},
      {"elsewhere", "node-z", kDenied, kDenied, kDenied, "belongs to cluster 'prod'"},
  };
  auto code = [](Outcome o) {
    return o == kOk       ? grpc::StatusCode::OK
           : o == kDenied ? grpc::StatusCode::PERMISSION_DENIED
                          : grpc::StatusCode::FAILED_PRECONDITION;
  };
  int scan = 0;
  for (const auto& c : cases) {
    auto channel = Channel(c.who);
    auto query = v1::QueryService::NewStub(channel);
    {
      grpc::ClientContext ctx;
      v1::SummaryRequest req;
      v1::SummaryResponse resp;
      EXPECT_EQ(query->Summary(&ctx, req, &resp).error_code(), code(c.summary)) << c.who;
    }
    {
      grpc::ClientContext ctx;
      v1::FindingsRequest req;
      v1::FindingsResponse resp;
      EXPECT_EQ(query->ListFindings(&ctx, req, &resp).error_code(), code(c.summary)) << c.who;
    }
    {
      grpc::ClientContext ctx;
      v1::ScanClusterRequest req;
      v1::ScanClusterResponse resp;
      const auto s = query->ScanCluster(&ctx, req, &resp);
      EXPECT_EQ(s.error_code(), code(c.scan)) << c.who << ": " << s.error_message();
      if (c.scan == kDenied && c.summary == kOk) {
        EXPECT_NE(s.error_message().find("needs the operator role"), std::string::npos);
      }
    }
    const auto s = SendOne(channel, c.node, "scan-" + std::to_string(++scan));
    EXPECT_EQ(s.error_code(), code(c.report)) << c.who << ": " << s.error_message();
    if (!c.says.empty()) {
      EXPECT_NE(s.error_message().find(c.says), std::string::npos)
          << c.who << ": " << s.error_message();
    }
  }
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 1);  // node-a's only
}

// cert-manager (or an operator with kspmctl certs issue) replaces the collector's certificate:
// new handshakes get the new one within the reload interval, and a stream opened before keeps
// reporting; nobody restarts the collector.
TEST_F(PipelineTest, ARenewedCollectorCertificateIsServedWithoutDroppingStreams) {
  server_->Shutdown(0ms);
  server_.reset();
  StartCollector("127.0.0.1:0", std::chrono::seconds(10), /*tls_reload_seconds=*/1);
  auto served_cert = [&] {
    auto stub = v1::QueryService::NewStub(Channel("kspmctl"));  // a fresh connection
    grpc::ClientContext ctx;
    v1::SummaryRequest req;
    v1::SummaryResponse resp;
    EXPECT_TRUE(stub->Summary(&ctx, req, &resp).ok());
    const auto pem = ctx.auth_context()->FindPropertyValues("x509_pem_cert");
    return pem.empty() ? std::string() : std::string(pem.front().data(), pem.front().size());
  };
  std::string before;
  ASSERT_TRUE(kspm::testing::ReadFileText(certs_ + "/collector.crt", &before).ok());
  EXPECT_EQ(served_cert(), before);

  // A stream opened on the old certificate.
  auto stub = v1::AgentService::NewStub(Channel("nodes/node-a"));
  grpc::ClientContext ctx;
  auto stream = stub->Connect(&ctx);
  v1::AgentMessage hello;
  hello.mutable_hello()->mutable_node()->set_node_name("node-a");
  ASSERT_TRUE(stream->Write(hello));

  common::KeyPair ca;
  ASSERT_TRUE(kspm::testing::ReadFileText(certs_ + "/ca.crt", &ca.cert_pem).ok());
  ASSERT_TRUE(kspm::testing::ReadFileText(certs_ + "/ca.key", &ca.key_pem).ok());
  common::CertificateRequest request;
  request.common_name = "localhost";
  request.dns_names = {"localhost"};
  request.ip_addresses = {"127.0.0.1"};
  request.server = true;
  request.uris = {"spiffe://kspm/test/server/collector"};
  auto renewed = common::IssueCertificate(ca, request);
  ASSERT_TRUE(renewed.ok());
  ASSERT_TRUE(common::WriteKeyPair(*renewed, certs_ + "/collector.crt", certs_ + "/collector.key",
                                   /*overwrite=*/true)
                  .ok());
  EXPECT_TRUE(WaitFor([&] { return served_cert() == renewed->cert_pem; }, 10s))
      << "the renewed certificate was not served";

  v1::AgentMessage report;
  report.mutable_report()->set_scan_id("after-renewal");
  report.mutable_report()->mutable_node()->set_node_name("node-a");
  report.mutable_report()->mutable_node()->set_cluster("test");
  auto* r = report.mutable_report()->add_results();
  r->set_check_id("kubelet.anonymous-auth");
  r->set_benchmark("cis-kubernetes-1.12");
  r->set_status(v1::STATUS_FAIL);
  ASSERT_TRUE(stream->Write(report)) << "the old stream was dropped";
  v1::CollectorMessage reply;
  ASSERT_TRUE(stream->Read(&reply));
  EXPECT_TRUE(reply.ack().accepted());
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// What no node may write: results about Kubernetes objects, accepted findings, another cluster.
TEST_F(PipelineTest, ANodeReportsOnlyItsOwnHostResults) {
  auto channel = Channel("nodes/node-a");
  const auto object = SendOne(channel, "node-a", "scan-1", [](v1::CheckResult* r) {
    r->mutable_resource()->set_kind("Namespace");
    r->mutable_resource()->set_name("prod");
  });
  EXPECT_EQ(object.error_code(), grpc::StatusCode::PERMISSION_DENIED) << object.error_message();
  EXPECT_NE(object.error_message().find("host results only"), std::string::npos);
  const auto accepted = SendOne(channel, "node-a", "scan-2", [](v1::CheckResult* r) {
    r->mutable_accepted()->set_reason("trust me");
  });
  EXPECT_EQ(accepted.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(accepted.error_message().find("accepted"), std::string::npos);
  const auto other_cluster = SendOne(channel, "node-a", "scan-3", {}, "prod");
  EXPECT_EQ(other_cluster.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 0);
}

TEST_F(PipelineTest, UnknownSeverityIsRejected) {
  const auto s = SendOne(Channel("nodes/node-a"), "node-a", "scan-1", [](v1::CheckResult* r) {
    r->set_severity(static_cast<v1::Severity>(99));
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("unknown severity (99)"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 0);
}

TEST_F(PipelineTest, UnknownCheckIdIsRejected) {
  auto stub = v1::AgentService::NewStub(Channel("nodes/node-a"));
  grpc::ClientContext ctx;
  auto stream = stub->Connect(&ctx);
  v1::AgentMessage hello;
  hello.mutable_hello()->mutable_node()->set_node_name("node-a");
  v1::AgentMessage report;
  report.mutable_report()->set_scan_id("scan-x");
  report.mutable_report()->mutable_node()->set_node_name("node-a");
  report.mutable_report()->mutable_node()->set_cluster("test");
  auto* r = report.mutable_report()->add_results();
  r->set_check_id("no.such.check");
  r->set_benchmark("cis-kubernetes-1.12");
  r->set_status(v1::STATUS_FAIL);
  ASSERT_TRUE(stream->Write(hello));
  (void)stream->Write(report);
  stream->WritesDone();
  v1::CollectorMessage reply;
  while (stream->Read(&reply)) {
  }
  const auto s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("no.such.check"), std::string::npos);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 0);
}

TEST_F(PipelineTest, KspmctlQueriesOverMutualTls) {
  ASSERT_TRUE(SendOne(Channel("nodes/node-a"), "node-a", "scan-1").ok());
  const std::string ctl = std::string(KSPM_BIN_DIR) + "/kspmctl --collector " + address_ +
                          " --tls-ca " + certs_ + "/ca.crt --tls-cert " + certs_ +
                          "/kspmctl.crt --tls-key " + certs_ + "/kspmctl.key";
  EXPECT_EQ(WEXITSTATUS(std::system((ctl + " nodes >/dev/null").c_str())), 0);
  // Without a client certificate kspmctl cannot connect: exit 1.
  const std::string no_cert = std::string(KSPM_BIN_DIR) + "/kspmctl --timeout 2 --collector " +
                              address_ + " --tls-ca " + certs_ + "/ca.crt summary 2>/dev/null";
  EXPECT_NE(WEXITSTATUS(std::system(no_cert.c_str())), 0);
}

TEST_F(PipelineTest, HealthEndpointsAnswer) {
  auto get = [&](const std::string& path) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->health_port()));
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    std::string out;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
      (void)!::write(fd, req.data(), req.size());
      char buf[512];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  };
  EXPECT_EQ(get("/healthz").rfind("HTTP/1.1 200", 0), 0u);
  const std::string ready = get("/readyz");
  EXPECT_EQ(ready.rfind("HTTP/1.1 200", 0), 0u);
  // The store's free space and log size are shown to the operator.
  EXPECT_NE(ready.find(" MiB free, log "), std::string::npos) << ready;
  // And the collector's certificate with its expiry (a year: no warning).
  EXPECT_NE(ready.find("collector.crt: valid until "), std::string::npos) << ready;
  EXPECT_EQ(ready.find("WARNING"), std::string::npos) << ready;
  EXPECT_EQ(get("/nope").rfind("HTTP/1.1 404", 0), 0u);
}

// Keepalive, time compressed: a ping every second on an idle stream (gRPC's own floor; asked
// for every 200 ms), accepted every 100 ms, for 6 s.
TEST_F(PipelineTest, IdleStreamOutlivesTheAgentsKeepalivePings) {
  EXPECT_EQ(IdleConnects(100ms, 6s), 1u) << "the idle stream was closed and reopened";
}

// The control: a collector that accepts fewer pings than the agent sends (gRPC's default is one
// per 5 minutes) closes the idle stream (GOAWAY too_many_pings) and the agent reconnects.
TEST_F(PipelineTest, MismatchedKeepaliveClosesIdleStreams) {
  EXPECT_GE(IdleConnects(5s, 30s, 2), 2u);
}

// A node may burst up to its per-minute bound, then its reports are refused (and stay with the
// agent) while other nodes go on.
TEST_F(PipelineTest, ANodeBeyondItsReportRateIsRefusedAndOthersAreNot) {
  server_->Shutdown(0ms);
  server_.reset();
  StartCollector("127.0.0.1:0", 10s, 60, 3);
  auto channel_a = Channel("nodes/node-a");
  for (int i = 0; i < 3; ++i) {
    const auto s = SendOne(channel_a, "node-a", "a-" + std::to_string(i));
    EXPECT_TRUE(s.ok()) << i << ": " << s.error_message();
  }
  const auto refused = SendOne(channel_a, "node-a", "a-3");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("more than 3 reports in a minute"), std::string::npos)
      << refused.error_message();
  EXPECT_TRUE(SendOne(Channel("nodes/node-b"), "node-b", "b-0").ok());
  EXPECT_EQ(server_->agent_stats().reports_rate_limited.load(), 1u);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 4);
}

TEST_F(PipelineTest, CollectorRestartMidStreamLosesAndDuplicatesNothing) {
  auto catalog = agent::checks::Catalog::Builtin();
  auto host = agent::host::MakeFsHostView(root_);
  ASSERT_TRUE(catalog.ok() && host.ok());
  auto spool = agent::transport::Spool::Open(dir_.path() + "/spool", 64 << 20, 10000);
  ASSERT_TRUE(spool.ok());
  std::string address = address_;
  agent::AgentDaemon daemon(**host, *catalog, {}, FastSettings("node-a"), **spool,
                            [&] { return Channel("nodes/node-a"); });
  daemon.Start();
  ASSERT_TRUE(WaitFor([&] { return daemon.stats().delivered.load() >= 2; }));

  // Kill the collector with streams open: no grace for in-flight work.
  const int port = server_->port();
  server_->Shutdown(0ms);
  server_.reset();
  // Scans go on while it is away; they wait in the spool.
  ASSERT_TRUE(WaitFor([&] { return (*spool)->size() >= 2; }));
  StartCollector("127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(WaitFor([&] { return (*spool)->size() == 0 && daemon.stats().connected.load(); }));
  daemon.Stop();

  const auto queued = daemon.stats().queued.load();
  EXPECT_GE(queued, 4u);
  EXPECT_EQ((*spool)->size(), 0u);
  // Every queued report is stored exactly once (heartbeats only touch the node: no scan row).
  const auto stored = static_cast<int>(queued - daemon.stats().heartbeats.load());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), stored);
  EXPECT_EQ(Count("SELECT COUNT(DISTINCT scan_id) FROM scans"), stored);
  EXPECT_GT(Count("SELECT COUNT(*) FROM results"), 20);
  EXPECT_GE(daemon.stats().connects.load(), 2u);
}

TEST_F(PipelineTest, AgentRestartedWithAFullSpoolDeliversEverythingInOrder) {
  auto catalog = agent::checks::Catalog::Builtin();
  auto host = agent::host::MakeFsHostView(root_);
  ASSERT_TRUE(catalog.ok() && host.ok());
  const std::string spool_dir = dir_.path() + "/spool";
  // First life: the collector is unreachable, so every scan stays in the spool.
  const int port = server_->port();
  server_->Shutdown(0ms);
  server_.reset();
  uint64_t queued = 0, heartbeats = 0;
  {
    auto spool = agent::transport::Spool::Open(spool_dir, 64 << 20, 10000);
    ASSERT_TRUE(spool.ok());
    agent::AgentDaemon daemon(**host, *catalog, {}, FastSettings("node-b"), **spool,
                              [&] { return Channel("nodes/node-b"); });
    daemon.Start();
    ASSERT_TRUE(WaitFor([&] { return (*spool)->size() >= 3; }));
    daemon.Stop();
    queued = daemon.stats().queued.load();
    heartbeats = daemon.stats().heartbeats.load();
    EXPECT_EQ((*spool)->size(), queued);
  }
  // Second life: a new agent process on the same spool, collector back.
  StartCollector("127.0.0.1:" + std::to_string(port));
  auto spool = agent::transport::Spool::Open(spool_dir, 64 << 20, 10000);
  ASSERT_TRUE(spool.ok());
  ASSERT_EQ((*spool)->size(), queued);
  const std::string oldest = (*spool)->Front()->report.scan_id();
  agent::AgentDaemon daemon(**host, *catalog, {}, FastSettings("node-b"), **spool,
                            [&] { return Channel("nodes/node-b"); });
  daemon.Start();
  ASSERT_TRUE(WaitFor([&] { return daemon.stats().delivered.load() >= queued + 1; }));
  daemon.Stop();
  // Each spooled report with content is a scan row (heartbeats only touch the node), and the
  // second life's first report is a full one.
  EXPECT_GE(Count("SELECT COUNT(*) FROM scans"), static_cast<int>(queued - heartbeats + 1));
  // Drained oldest first: the first report the collector received is the oldest spooled one.
  sqlite3* db = nullptr;
  sqlite3_open_v2(db_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "SELECT scan_id FROM scans ORDER BY rowid LIMIT 1", -1, &stmt, nullptr);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), oldest);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(Spool, BoundDropsOldestAndAsksForAFullReport) {
  kspm::testing::TempDir dir;
  auto spool = agent::transport::Spool::Open(dir.path() + "/s", 1 << 20, 3);
  ASSERT_TRUE(spool.ok());
  for (int i = 0; i < 5; ++i) {
    v1::NodeReport r;
    r.set_scan_id("scan-" + std::to_string(i));
    ASSERT_TRUE((*spool)->Append(r).ok());
  }
  EXPECT_EQ((*spool)->size(), 3u);
  EXPECT_EQ((*spool)->Front()->report.scan_id(), "scan-2");
  EXPECT_TRUE((*spool)->TakeDropped());
  EXPECT_FALSE((*spool)->TakeDropped());
}

TEST(Spool, CorruptFileIsSetAsideAndTheQueueGoesOn) {
  kspm::testing::TempDir dir;
  {
    auto spool = agent::transport::Spool::Open(dir.path() + "/s", 1 << 20, 100);
    ASSERT_TRUE(spool.ok());
    v1::NodeReport r;
    r.set_scan_id("good");
    ASSERT_TRUE((*spool)->Append(r).ok());
  }
  FILE* f = fopen((dir.path() + "/s/00000000000000000000.report").c_str(), "w");
  fputs("\xff\xff\xff garbage", f);
  fclose(f);
  auto spool = agent::transport::Spool::Open(dir.path() + "/s", 1 << 20, 100);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->size(), 2u);
  EXPECT_EQ((*spool)->Front()->report.scan_id(), "good");
  EXPECT_EQ(::access((dir.path() + "/s/00000000000000000000.report.corrupt").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace kspm

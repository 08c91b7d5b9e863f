// Metrics and alerts against real consumers: the collector's and the agent's /metrics checked by
// promtool and scraped by a real Prometheus server on loopback; webhooks delivered over real HTTP
// to a receiver on loopback, with a real sqlite store behind the collector.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "fixtures/host_builder.h"
#include "fixtures/http.h"
#include "fixtures/process.h"
#include "kspm/collector/server/server.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/html_report.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "nlohmann/json.hpp"

namespace kspm {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

v1::CheckResult Result(const std::string& id, v1::Status status,
                       v1::Severity severity = v1::SEVERITY_CRITICAL) {
  v1::CheckResult r;
  r.set_check_id(id);
  r.set_benchmark("cis-kubernetes-1.12");
  r.set_benchmark_id("4.2." + std::to_string(id.size()));
  r.set_title("title of " + id);
  r.set_status(status);
  r.set_severity(severity);
  r.set_scored(true);
  r.set_reason(status == v1::STATUS_FAIL ? "--anonymous-auth=true (flag)" : "");
  auto* e = r.add_evidence();
  e->set_key("--anonymous-auth");
  e->set_value("true");
  e->set_present(true);
  e->set_source("flag of pid 812 (kubelet)");
  return r;
}

v1::NodeReport Report(const std::string& node, std::vector<v1::CheckResult> results,
                      uint32_t interval = 300) {
  v1::NodeReport rep;
  rep.set_scan_id(common::NewUuid());
  rep.mutable_node()->set_node_name(node);
  rep.mutable_node()->set_cluster("prod");
  rep.set_full(true);
  rep.set_scan_interval_seconds(interval);
  for (auto& r : results) *rep.add_results() = std::move(r);
  return rep;
}

// The value of the one sample of `series` (name and labels exactly as exposed), or -1.
double Sample(const std::string& exposition, const std::string& series) {
  size_t at = 0;
  while ((at = exposition.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || exposition[at - 1] == '\n') {
      return std::stod(exposition.substr(at + series.size() + 1));
    }
    ++at;
  }
  return -1;
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void StartCollector(collector::server::AlertOptions alerts = {}) {
    collector::server::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.tls.insecure = true;
    options.db_path = dir_.path() + "/kspm.db";
    options.health_listen = "127.0.0.1:0";
    options.metrics_posture_ttl = 0ms;
    options.alerts = std::move(alerts);
    auto server = collector::server::CollectorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(1s);
  }
  std::string MetricsUrl() const {
    return "http://127.0.0.1:" + std::to_string(server_->health_port()) + "/metrics";
  }
  void Commit(const v1::NodeReport& report) {
    auto stats = server_->store().CommitReport(report, common::Clock::now());
    ASSERT_TRUE(stats.ok()) << stats.status();
  }
  collector::server::AlertOptions Alerts(const std::string& url, const std::string& format = "json",
                                         const std::string& severity = "high") {
    auto o = collector::server::MakeAlertOptions({url}, severity, format);
    EXPECT_TRUE(o.ok()) << o.status();
    o->retry_min = 50ms;
    o->retry_max = 200ms;
    o->attempts = 3;
    o->stale_every = 100ms;
    return *o;
  }
  // The receiver's URL without its path, as metrics name the webhook.
  std::string Origin() const { return receiver_.url().substr(0, receiver_.url().find("/hook")); }
  // The alerts of every batch received so far, in order.
  std::vector<Json> Received() const {
    std::vector<Json> out;
    for (const auto& r : receiver_.received()) {
      const Json payload = Json::parse(r.body);
      for (const auto& a : payload["alerts"]) out.push_back(a);
    }
    return out;
  }

  kspm::testing::TempDir dir_;
  kspm::testing::HttpReceiver receiver_;
  std::unique_ptr<collector::server::CollectorServer> server_;
};

// ---- metrics ----

TEST_F(ObservabilityTest, MetricsAreValidExpositionAndFollowTheStore) {
  StartCollector();
  Commit(Report("node-a", {Result("kubelet.anonymous-auth", v1::STATUS_FAIL),
                           Result("kubelet.read-only-port", v1::STATUS_PASS, v1::SEVERITY_HIGH),
                           Result("kubelet.protect-kernel", v1::STATUS_FAIL, v1::SEVERITY_LOW)}));
  Commit(Report("node-b", {Result("kubelet.anonymous-auth", v1::STATUS_FAIL),
                           Result("kubelet.read-only-port", v1::STATUS_PASS, v1::SEVERITY_HIGH)}));
  const auto got = kspm::testing::HttpGet(MetricsUrl());
  ASSERT_EQ(got.code, 200);
  EXPECT_EQ(got.content_type, "text/plain; version=0.0.4; charset=utf-8");

  // Prometheus' own linter accepts the whole exposition (names, units, HELP/TYPE, _total).
  const std::string file = dir_.path() + "/metrics.txt";
  std::ofstream(file) << got.body;
  if (kspm::testing::RunCommand("command -v promtool", true).exit_code == 0) {
    const auto lint = kspm::testing::RunCommand("promtool check metrics < " + file, true);
    EXPECT_EQ(lint.exit_code, 0) << lint.out << "\n" << got.body;
  } else {
    ADD_FAILURE() << "promtool is not installed (Debian: prometheus); make deps installs it";
  }

  // The score is the store's summary score, as a ratio.
  auto summary = server_->store().Summary("prod", common::Clock::now());
  ASSERT_TRUE(summary.ok());
  EXPECT_NEAR(Sample(got.body, R"(kspm_posture_score_ratio{cluster="prod"})"),
              summary->overall().score() / 100.0, 1e-9);
  // Two nodes fail the critical check, one the low one: one series per check, not per node.
  EXPECT_EQ(Sample(got.body,
                   R"(kspm_failing_check_results{cluster="prod",benchmark="cis-kubernetes-1.12",)"
                   R"(id="4.2.22",check_id="kubelet.anonymous-auth",severity="critical"})"),
            2);
  EXPECT_EQ(Sample(got.body, R"(kspm_results{cluster="prod",status="fail",severity="critical"})"),
            2);
  EXPECT_EQ(Sample(got.body, R"(kspm_results{cluster="prod",status="pass",severity="high"})"), 2);
  EXPECT_EQ(Sample(got.body, R"(kspm_nodes{cluster="prod"})"), 2);
  EXPECT_EQ(Sample(got.body, R"(kspm_stale_nodes{cluster="prod"})"), 0);
  EXPECT_EQ(Sample(got.body, "kspm_store_up"), 1);

  // node-a fixes the critical check: its series drops to one at the next scrape.
  Commit(Report("node-a", {Result("kubelet.anonymous-auth", v1::STATUS_PASS),
                           Result("kubelet.read-only-port", v1::STATUS_PASS, v1::SEVERITY_HIGH),
                           Result("kubelet.protect-kernel", v1::STATUS_FAIL, v1::SEVERITY_LOW)}));
  const auto after = kspm::testing::HttpGet(MetricsUrl());
  EXPECT_EQ(Sample(after.body,
                   R"(kspm_failing_check_results{cluster="prod",benchmark="cis-kubernetes-1.12",)"
                   R"(id="4.2.22",check_id="kubelet.anonymous-auth",severity="critical"})"),
            1);
  EXPECT_EQ(Sample(after.body, R"(kspm_verdict_changes_total{status="pass"})"), 1);
  // The same drift event delivered twice (same id) is stored and counted once; a source an
  // agent made up is not a label of its own.
  auto drift = Report("node-a", {}, 300);
  drift.set_full(false);
  auto* e = drift.add_drift();
  e->set_event_id(common::NewUuid());
  e->set_source("made-up-source");
  Commit(drift);
  drift.set_scan_id(common::NewUuid());
  Commit(drift);
  const auto drifted = kspm::testing::HttpGet(MetricsUrl()).body;
  EXPECT_EQ(Sample(drifted, R"(kspm_drift_events_total{source="other"})"), 1) << drifted;
  EXPECT_EQ(drifted.find("made-up-source"), std::string::npos);
  EXPECT_GT(Sample(after.body, R"(kspm_posture_score_ratio{cluster="prod"})"),
            Sample(got.body, R"(kspm_posture_score_ratio{cluster="prod"})"));
}

TEST_F(ObservabilityTest, HealthServerAnswersProbesAndRefusesTheRest) {
  StartCollector();
  const std::string base = "http://127.0.0.1:" + std::to_string(server_->health_port());
  EXPECT_EQ(kspm::testing::HttpGet(base + "/healthz").body, "ok\n");
  EXPECT_EQ(kspm::testing::HttpGet(base + "/readyz").code, 200);
  const auto missing = kspm::testing::HttpGet(base + "/metrics/extra");
  EXPECT_EQ(missing.code, 404);
  EXPECT_NE(missing.body.find("/metrics"), std::string::npos);
  EXPECT_EQ(kspm::testing::HttpGet(base + "/").code, 404);
  // A second server on the same port is refused with the address named.
  auto clash =
      common::HealthServer::Start("127.0.0.1:" + std::to_string(server_->health_port()), nullptr);
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find("127.0.0.1:"), std::string::npos);
  EXPECT_FALSE(common::HealthServer::Start("127.0.0.1:99999", nullptr).ok());
  EXPECT_FALSE(common::HealthServer::Start("nowhere:80", nullptr).ok());
}

// Metric family names of an exposition (from its TYPE lines).
std::set<std::string> Families(const std::string& exposition) {
  std::set<std::string> out;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) out.insert(line.substr(7, line.find(' ', 7) - 7));
  }
  return out;
}

// A real Prometheus server scrapes the real binaries (`kspm-collector serve` with a cluster scan
// and an alert webhook, `kspm-agent run`) and answers PromQL over what it scraped; the Grafana
// dashboard's every query is valid PromQL on that server and names only metrics that exist; the
// README lists every metric.
TEST_F(ObservabilityTest, PrometheusScrapesCollectorAndAgent) {
  const auto which = kspm::testing::RunCommand("command -v prometheus", true);
  if (which.exit_code != 0) GTEST_SKIP() << "prometheus is not installed (Debian: prometheus)";
  const std::string bin = KSPM_BIN_DIR;
  const std::string db = dir_.path() + "/collector.db";
  const int collector_health = kspm::testing::FreeLoopbackPort();
  kspm::testing::Process collector(
      {bin + "/kspm-collector", "--log-level", "warn", "serve", "--insecure", "--listen",
       "127.0.0.1:0", "--port-file", dir_.path() + "/port", "--db", db, "--health-listen",
       "127.0.0.1:" + std::to_string(collector_health), "--cluster-name", "prod",
       "--cluster-snapshot", std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/cluster/demo",
       "--alert-webhook", receiver_.url()},
      {.log = dir_.path() + "/collector.log"});
  std::string port;
  ASSERT_TRUE(kspm::testing::WaitUntil([&] {
    return kspm::testing::ReadFileText(dir_.path() + "/port", &port).ok() && !port.empty();
  })) << collector.Log();
  bool owners = false;
  const std::string root = dir_.path() + "/host";
  ASSERT_TRUE(kspm::testing::BuildFixtureHost("kubeadm-worker", root, &owners).ok());
  const int agent_port = kspm::testing::FreeLoopbackPort();
  kspm::testing::Process agent(
      {bin + "/kspm-agent", "--log-level", "warn", "run", "--insecure", "--collector",
       "127.0.0.1:" + port.substr(0, port.find('\n')), "--cluster", "prod", "--node-name",
       "worker-1", "--host-root", root, "--state-dir", dir_.path() + "/state", "--drift-mode",
       "rescan", "--health-listen", "127.0.0.1:" + std::to_string(agent_port)},
      {.log = dir_.path() + "/agent.log"});

  const int prom_port = kspm::testing::FreeLoopbackPort();
  const std::string config = dir_.path() + "/prometheus.yml";
  std::ofstream(config) << "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                        << "scrape_configs:\n"
                        << "  - job_name: kspm-collector\n"
                        << "    static_configs: [{targets: ['127.0.0.1:" << collector_health
                        << "']}]\n"
                        << "  - job_name: kspm-agent\n"
                        << "    static_configs: [{targets: ['127.0.0.1:" << agent_port << "']}]\n";
  kspm::testing::Process prometheus(
      {"prometheus", "--config.file=" + config, "--storage.tsdb.path=" + dir_.path() + "/tsdb",
       "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
      {.log = dir_.path() + "/prometheus.log", .search_path = true});
  const std::string api = "http://127.0.0.1:" + std::to_string(prom_port) + "/api/v1/query?query=";
  auto query = [&](const std::string& promql) -> Json {
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    char* escaped = curl_easy_escape(curl.get(), promql.c_str(), static_cast<int>(promql.size()));
    const auto got = kspm::testing::HttpGet(api + escaped);
    curl_free(escaped);
    // Prometheus answers "Service Unavailable" in plain text until it is ready: not yet.
    Json body = Json::parse(got.body, nullptr, /*allow_exceptions=*/false);
    return body.is_discarded() ? Json::object() : body;
  };
  // Both targets up, the agent's scan results and the collector's score of the agent's node.
  Json up, results, score, mode;
  const bool scraped = kspm::testing::WaitUntil(
      [&] {
        up = query("sum(up)")["data"]["result"];
        results = query("sum(kspm_agent_results)")["data"]["result"];
        score = query("kspm_node_score_ratio{node=\"worker-1\"}")["data"]["result"];
        mode = query("kspm_agent_drift_mode_info")["data"]["result"];
        return up.size() == 1 && up[0]["value"][1] == "2" && results.size() == 1 &&
               results[0]["value"][1] != "0" && score.size() == 1 && mode.size() == 1;
      },
      60s, 250ms);
  ASSERT_TRUE(scraped) << "up=" << up.dump() << " results=" << results.dump()
                       << " score=" << score.dump() << "\n"
                       << prometheus.Log() << agent.Log() << collector.Log();
  // What Prometheus holds is what the store says: the agent's results, the node's score.
  auto store = collector::store::OpenSqliteStore(db, 1);
  ASSERT_TRUE(store.ok()) << store.status();
  auto nodes = (*store)->Nodes("prod", common::Clock::now());
  ASSERT_TRUE(nodes.ok());
  uint32_t stored = 0;
  for (const auto& n : *nodes) {
    if (n.identity().node_name() != "worker-1") continue;
    const auto& c = n.counts();
    stored = c.pass() + c.fail() + c.warn() + c.manual() + c.not_applicable() + c.error();
  }
  EXPECT_EQ(std::stod(results[0]["value"][1].get<std::string>()), stored);
  auto summary = (*store)->Summary("prod", common::Clock::now());
  ASSERT_TRUE(summary.ok());
  bool found = false;
  for (const auto& n : summary->nodes()) {
    if (n.scope() != "worker-1") continue;
    found = true;
    EXPECT_NEAR(std::stod(score[0]["value"][1].get<std::string>()), n.score() / 100.0, 1e-9);
  }
  EXPECT_TRUE(found) << "worker-1 is not in the store's summary";
  EXPECT_EQ(mode[0]["metric"]["mode"], "rescan");

  // Every family either binary exposes (the collector with its cluster scan and a webhook).
  std::set<std::string> families = Families(
      kspm::testing::HttpGet("http://127.0.0.1:" + std::to_string(collector_health) + "/metrics")
          .body);
  const auto agent_families = Families(
      kspm::testing::HttpGet("http://127.0.0.1:" + std::to_string(agent_port) + "/metrics").body);
  families.insert(agent_families.begin(), agent_families.end());
  for (const char* expected : {"kspm_cluster_scan_duration_seconds", "kspm_alerts_total",
                               "kspm_agent_scan_duration_seconds", "kspm_posture_score_ratio"}) {
    EXPECT_TRUE(families.contains(expected)) << expected;
  }
  // The dashboard: valid PromQL on a real server, and only metrics that exist.
  std::string text;
  ASSERT_TRUE(kspm::testing::ReadFileText(
                  std::string(KSPM_SOURCE_DIR) + "/packaging/grafana/kspm-dashboard.json", &text)
                  .ok());
  const Json dashboard = Json::parse(text);
  size_t queries = 0;
  for (const auto& panel : dashboard["panels"]) {
    for (const auto& target : panel.value("targets", Json::array())) {
      std::string expr = target["expr"];
      for (size_t at; (at = expr.find("$cluster")) != std::string::npos;) {
        expr.replace(at, 8, ".*");
      }
      const Json answer = query(expr);
      EXPECT_EQ(answer.value("status", ""), "success")
          << panel["title"] << ": " << expr << " -> " << answer.dump();
      ++queries;
      static const std::regex kName("kspm_[a-z0-9_]+");
      for (std::sregex_iterator it(expr.begin(), expr.end(), kName), end; it != end; ++it) {
        std::string name = it->str();
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          const std::string s = suffix;
          if (!families.contains(name) && name.ends_with(s)) {
            name = name.substr(0, name.size() - s.size());
          }
        }
        EXPECT_TRUE(families.contains(name))
            << panel["title"] << " uses " << it->str() << ", which neither binary exposes";
      }
    }
  }
  EXPECT_GE(queries, 20u);
  // The README names every family.
  std::string readme;
  ASSERT_TRUE(
      kspm::testing::ReadFileText(std::string(KSPM_SOURCE_DIR) + "/README.md", &readme).ok());
  for (const auto& name : families) {
    EXPECT_NE(readme.find("`" + name + "`"), std::string::npos) << name << " is not in the README";
  }
}

// ---- alerts ----

TEST_F(ObservabilityTest, NewCriticalFailIsAlertedAndItsFixIsResolved) {
  StartCollector(Alerts(receiver_.url()));
  // A node's first report is its baseline: a FAIL in it is not news.
  Commit(Report("node-a", {Result("kubelet.anonymous-auth", v1::STATUS_PASS),
                           Result("kubelet.protect-kernel", v1::STATUS_FAIL)}));
  Commit(Report("node-a", {Result("kubelet.anonymous-auth", v1::STATUS_FAIL),
                           Result("kubelet.protect-kernel", v1::STATUS_FAIL)}));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() == 1; }));
  const auto request = receiver_.received()[0];
  EXPECT_EQ(request.content_type, "application/json");
  const Json payload = Json::parse(request.body);
  EXPECT_EQ(payload["version"], "kspm.alerts/v1");
  ASSERT_EQ(payload["alerts"].size(), 1u) << payload.dump(2);
  const Json& a = payload["alerts"][0];
  EXPECT_EQ(a["kind"], "failing");
  EXPECT_EQ(a["check_id"], "kubelet.anonymous-auth");
  EXPECT_EQ(a["severity"], "critical");
  EXPECT_EQ(a["status"], "FAIL");
  EXPECT_EQ(a["previous_status"], "PASS");
  EXPECT_EQ(a["cluster"], "prod");
  EXPECT_EQ(a["node"], "node-a");
  EXPECT_EQ(a["reason"], "--anonymous-auth=true (flag)");
  EXPECT_EQ(a["evidence"][0]["source"], "flag of pid 812 (kubelet)");

  Commit(Report("node-a", {Result("kubelet.anonymous-auth", v1::STATUS_PASS),
                           Result("kubelet.protect-kernel", v1::STATUS_FAIL)}));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return Received().size() == 2; }));
  EXPECT_EQ(Received()[1]["kind"], "resolved");
  EXPECT_EQ(Received()[1]["check_id"], "kubelet.anonymous-auth");
}

TEST_F(ObservabilityTest, OneCommitIsOneBatchAndUnchangedResultsAreNotAlerted) {
  StartCollector(Alerts(receiver_.url()));
  Commit(Report("node-a", {Result("a", v1::STATUS_PASS), Result("bb", v1::STATUS_PASS),
                           Result("ccc", v1::STATUS_PASS)}));
  const auto failing =
      Report("node-a", {Result("a", v1::STATUS_FAIL), Result("bb", v1::STATUS_FAIL),
                        Result("ccc", v1::STATUS_FAIL)});
  Commit(failing);
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() == 1; }));
  EXPECT_EQ(Received().size(), 3u);
  // The same verdicts again (a new scan) and the same scan again (a redelivery): nothing new.
  auto again = failing;
  again.set_scan_id(common::NewUuid());
  Commit(again);
  Commit(failing);
  // A marker commit after them: once its alert arrives, anything the others caused would have.
  Commit(Report("node-b", {Result("a", v1::STATUS_PASS)}));
  Commit(Report("node-b", {Result("a", v1::STATUS_FAIL)}));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() >= 2; }));
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(receiver_.received().size(), 2u);
  EXPECT_EQ(Received().back()["node"], "node-b");

  // A commit that changes 250 verdicts is posted 100 alerts at a time.
  std::vector<v1::CheckResult> many_pass, many_fail;
  for (int i = 0; i < 250; ++i) {
    many_pass.push_back(Result("check-" + std::to_string(i), v1::STATUS_PASS));
    many_fail.push_back(Result("check-" + std::to_string(i), v1::STATUS_FAIL));
  }
  Commit(Report("node-c", many_pass));
  Commit(Report("node-c", many_fail));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() == 5; }));
  EXPECT_EQ(Json::parse(receiver_.received()[2].body)["alerts"].size(), 100u);
  EXPECT_EQ(Json::parse(receiver_.received()[4].body)["alerts"].size(), 50u);
  EXPECT_EQ(Received().size(), 254u);  // 3 + 1 before
}

TEST_F(ObservabilityTest, AcceptedAndLowSeverityFindingsAreNotAlerted) {
  StartCollector(Alerts(receiver_.url()));
  Commit(Report("node-a", {Result("accepted", v1::STATUS_PASS),
                           Result("low", v1::STATUS_PASS, v1::SEVERITY_MEDIUM),
                           Result("marker", v1::STATUS_PASS)}));
  auto accepted = Result("accepted", v1::STATUS_FAIL);
  accepted.mutable_accepted()->set_exception("legacy-kubelet");
  accepted.mutable_accepted()->set_reason("replaced in Q3");
  Commit(Report("node-a", {accepted, Result("low", v1::STATUS_FAIL, v1::SEVERITY_MEDIUM),
                           Result("marker", v1::STATUS_FAIL)}));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() == 1; }));
  ASSERT_EQ(Received().size(), 1u) << receiver_.received()[0].body;
  EXPECT_EQ(Received()[0]["check_id"], "marker");
}

TEST_F(ObservabilityTest, DeliveryIsRetriedAfterA500AndGivenUpOnA400) {
  StartCollector(Alerts(receiver_.url()));
  receiver_.FailNext(2, 500);
  Commit(Report("node-a", {Result("a", v1::STATUS_PASS)}));
  Commit(Report("node-a", {Result("a", v1::STATUS_FAIL)}));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() == 1; }));
  EXPECT_EQ(receiver_.attempts(), 3u);
  // A 400 will not change with retries: a dead letter at once, counted in metrics.
  receiver_.FailNext(1, 400);
  Commit(Report("node-a", {Result("a", v1::STATUS_PASS)}));
  std::string metrics;
  ASSERT_TRUE(kspm::testing::WaitUntil([&] {
    metrics = kspm::testing::HttpGet(MetricsUrl()).body;
    return metrics.find("kspm_alert_dead_letters_total") != std::string::npos &&
           Sample(metrics, "kspm_alert_dead_letters_total{webhook=\"0 " + Origin() + "\"}") == 1;
  })) << metrics;
  EXPECT_EQ(receiver_.attempts(), 4u);
  EXPECT_EQ(receiver_.received().size(), 1u);
  // The webhook's path (a Slack URL's secret) never appears in metrics.
  EXPECT_EQ(metrics.find("/hook"), std::string::npos);
}

TEST_F(ObservabilityTest, RetriesEndInADeadLetter) {
  StartCollector(Alerts(receiver_.url()));
  receiver_.FailNext(100, 503);
  Commit(Report("node-a", {Result("a", v1::STATUS_PASS)}));
  Commit(Report("node-a", {Result("a", v1::STATUS_FAIL)}));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] {
    return Sample(kspm::testing::HttpGet(MetricsUrl()).body,
                  "kspm_alert_dead_letters_total{webhook=\"0 " + Origin() + "\"}") == 1;
  }));
  EXPECT_EQ(receiver_.attempts(), 3u);  // `attempts` in all
}

// A receiver that hangs holds its own queue, never the store's writer.
TEST_F(ObservabilityTest, AHungReceiverNeverHoldsCommits) {
  StartCollector(Alerts(receiver_.url()));
  receiver_.Hold();
  Commit(Report("node-a", {Result("a", v1::STATUS_PASS)}));
  auto commits = std::async(std::launch::async, [&] {
    for (int i = 0; i < 50; ++i) {
      Commit(Report("node-a", {Result("a", i % 2 == 0 ? v1::STATUS_FAIL : v1::STATUS_PASS)}));
    }
  });
  // Every commit returns while the receiver holds the first POST (a commit waiting on the
  // network would never finish here: the receiver is released only after this).
  const bool returned = commits.wait_for(30s) == std::future_status::ready;
  EXPECT_TRUE(returned) << "commits waited on the held webhook";
  EXPECT_LE(receiver_.attempts(), 1u);
  receiver_.Release();
  commits.wait();
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() == 50; }));
  EXPECT_EQ(Received().front()["kind"], "failing");
  EXPECT_EQ(Received().back()["kind"], "resolved");
}

TEST_F(ObservabilityTest, DriftAndStaleNodesAreAlerted) {
  StartCollector(Alerts(receiver_.url()));
  // A node scanning every second is stale after 3 s without a report.
  Commit(Report("node-a", {Result("a", v1::STATUS_PASS)}, 1));
  auto drift = Report("node-a", {Result("a", v1::STATUS_FAIL)}, 1);
  drift.set_full(false);
  auto* e = drift.add_drift();
  e->set_event_id(common::NewUuid());
  e->set_node_name("node-a");
  e->set_source("ebpf");
  e->set_operation("chmod");
  e->set_path("/var/lib/kubelet/config.yaml");
  e->set_comm("chmod");
  e->set_pid(4242);
  auto* change = e->add_changes();
  change->set_check_id("a");
  change->set_old_status(v1::STATUS_PASS);
  change->set_new_status(v1::STATUS_FAIL);
  *change->mutable_result() = Result("a", v1::STATUS_FAIL);
  Commit(drift);
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return Received().size() >= 2; }));
  const auto alerts = Received();
  EXPECT_EQ(alerts[0]["kind"], "failing");
  EXPECT_EQ(alerts[1]["kind"], "drift");
  EXPECT_EQ(alerts[1]["path"], "/var/lib/kubelet/config.yaml");
  EXPECT_EQ(alerts[1]["process"]["pid"], 4242);
  EXPECT_EQ(alerts[1]["changes"][0]["status"], "FAIL");
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return Received().size() >= 3; }, 10s));
  EXPECT_EQ(Received()[2]["kind"], "stale");
  EXPECT_EQ(Received()[2]["node"], "node-a");
  // Once: a node that stays stale is not alerted again.
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(Received().size(), 3u);
}

TEST_F(ObservabilityTest, SlackFormatIsOneTextMessage) {
  StartCollector(Alerts(receiver_.url(), "slack"));
  Commit(Report("node-a", {Result("kubelet.anonymous-auth", v1::STATUS_PASS)}));
  auto failing = Result("kubelet.anonymous-auth", v1::STATUS_FAIL);
  failing.set_reason("value <true> & more");
  Commit(Report("node-a", {failing}));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() == 1; }));
  const Json payload = Json::parse(receiver_.received()[0].body);
  ASSERT_TRUE(payload.contains("text")) << payload.dump();
  const std::string text = payload["text"];
  EXPECT_NE(text.find(":rotating_light: *FAIL* [critical] cis-kubernetes-1.12"), std::string::npos)
      << text;
  // Slack's control characters are escaped.
  EXPECT_NE(text.find("value &lt;true&gt; &amp; more"), std::string::npos) << text;
}

// A redelivered drift event (same id, e.g. after a lost ack) is one alert, not two.
TEST_F(ObservabilityTest, ARedeliveredDriftEventIsAlertedOnce) {
  StartCollector(Alerts(receiver_.url()));
  Commit(Report("node-a", {Result("a", v1::STATUS_PASS)}));
  auto drift = Report("node-a", {}, 300);
  drift.set_full(false);
  auto* e = drift.add_drift();
  e->set_event_id(common::NewUuid());
  // Seen now: an event from 1970 is older than any retention, and the collector's first pruning
  // (at start, racing with these commits) would delete it before the second delivery.
  *e->mutable_observed_at() = common::ToProto(common::Clock::now());
  e->set_source("inotify");
  e->set_path("/etc/kubernetes/manifests/kube-apiserver.yaml");
  auto* change = e->add_changes();
  change->set_check_id("a");
  change->set_old_status(v1::STATUS_PASS);
  change->set_new_status(v1::STATUS_FAIL);
  Commit(drift);
  drift.set_scan_id(common::NewUuid());  // the agent sends it again in a new report
  Commit(drift);
  Commit(Report("node-a", {Result("a", v1::STATUS_FAIL)}));  // a marker
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return Received().size() >= 2; }));
  std::this_thread::sleep_for(200ms);
  const auto alerts = Received();
  std::string kinds;
  for (const auto& r : receiver_.received()) kinds += r.body + "\n";
  ASSERT_EQ(alerts.size(), 2u) << kinds;
  EXPECT_EQ(alerts[0]["kind"], "drift");
  EXPECT_EQ(alerts[1]["kind"], "failing");
}

// Credentials in a webhook URL (user info, a Slack path) appear neither in metrics nor in logs'
// webhook names.
TEST_F(ObservabilityTest, WebhookCredentialsStayOutOfMetrics) {
  const std::string url = receiver_.url();
  auto alerts = Alerts("http://bot:s3cret@" + url.substr(7, url.find("/hook") - 7) +
                       "/services/T000/B000/TOKEN");
  StartCollector(alerts);
  Commit(Report("node-a", {Result("a", v1::STATUS_PASS)}));
  Commit(Report("node-a", {Result("a", v1::STATUS_FAIL)}));
  ASSERT_TRUE(kspm::testing::WaitUntil([&] { return receiver_.received().size() == 1; }));
  EXPECT_EQ(receiver_.received()[0].path, "/services/T000/B000/TOKEN");
  const auto metrics = kspm::testing::HttpGet(MetricsUrl()).body;
  EXPECT_NE(metrics.find("kspm_alerts_total{webhook=\"0 " + Origin() + "\"} 1"), std::string::npos)
      << metrics;
  EXPECT_EQ(metrics.find("s3cret"), std::string::npos);
  EXPECT_EQ(metrics.find("TOKEN"), std::string::npos);
}

TEST_F(ObservabilityTest, AlertFlagsAreCheckedAndReadFromAConfigFile) {
  EXPECT_FALSE(collector::server::MakeAlertOptions({"ftp://x"}, "high", "json").ok());
  EXPECT_FALSE(collector::server::MakeAlertOptions({"http://x"}, "severe", "json").ok());
  EXPECT_FALSE(collector::server::MakeAlertOptions({"http://x"}, "high", "teams").ok());
  // From a file: a bad value there is refused with its name, like on the command line.
  const std::string config = dir_.path() + "/collector.toml";
  std::ofstream(config) << "[serve]\nalert-webhook = [\"" << receiver_.url()
                        << "\"]\nalert-min-severity = \"severe\"\n";
  const auto out =
      kspm::testing::RunCommand(std::string(KSPM_BIN_DIR) + "/kspm-collector --config " + config +
                                    " serve --insecure --db " + dir_.path() + "/x.db",
                                true);
  EXPECT_EQ(out.exit_code, 2) << out.out;
  EXPECT_NE(out.out.find("--alert-min-severity 'severe'"), std::string::npos) << out.out;
}

// ---- the HTML report ----

// Chromium's console messages (errors, CSP refusals, uncaught exceptions) on stderr.
std::vector<std::string> ConsoleLines(const std::string& log) {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = log.find(":CONSOLE", at)) != std::string::npos) {
    const size_t start = log.rfind('\n', at);
    const size_t end = log.find('\n', at);
    out.push_back(log.substr(start == std::string::npos ? 0 : start + 1,
                             end == std::string::npos ? std::string::npos : end - start - 1));
    at = end == std::string::npos ? log.size() : end;
  }
  return out;
}

kspm::testing::CommandOutput Chromium(const std::string& args) {
  return kspm::testing::RunCommand(
      "chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars "
      "--enable-logging=stderr --v=0 " +
          args,
      true);
}

// The score trend replays stored changes back from now: the score it gives before a change is
// the score the store gave then.
TEST_F(ObservabilityTest, TrendReplaysTheScoresTheStoreGave) {
  StartCollector();
  std::vector<double> scores;  // the store's score after each commit
  auto commit = [&](std::vector<v1::CheckResult> results) {
    std::this_thread::sleep_for(5ms);  // changes are kept to the millisecond
    Commit(Report("node-a", std::move(results)));
    auto summary = server_->store().Summary("", common::Clock::now());
    ASSERT_TRUE(summary.ok());
    scores.push_back(summary->benchmarks(0).score());
  };
  commit({Result("a", v1::STATUS_PASS), Result("bb", v1::STATUS_FAIL),
          Result("ccc", v1::STATUS_PASS, v1::SEVERITY_LOW)});
  commit({Result("a", v1::STATUS_FAIL), Result("bb", v1::STATUS_FAIL),
          Result("ccc", v1::STATUS_FAIL, v1::SEVERITY_LOW)});  // two changes at once
  commit({Result("a", v1::STATUS_PASS), Result("bb", v1::STATUS_FAIL),
          Result("ccc", v1::STATUS_FAIL, v1::SEVERITY_LOW)});
  commit({Result("a", v1::STATUS_PASS), Result("bb", v1::STATUS_PASS),
          Result("ccc", v1::STATUS_ERROR, v1::SEVERITY_LOW)});
  auto last = server_->store().Summary("", common::Clock::now());
  ASSERT_TRUE(last.ok());
  auto history = server_->store().History({});
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 5u);
  const auto trend = common::ReplayTrend(last->benchmarks(), *history, common::Clock::now() - 1h);
  ASSERT_EQ(trend.size(), 1u);
  const auto& points = trend.begin()->second;
  // The window's start, then one point per commit that changed something: each the score the
  // store gave right after that commit.
  ASSERT_EQ(points.size(), scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    EXPECT_NEAR(points[i].score, scores[i], 1e-9) << "point " << i;
  }
  // Only the latest changes given (a truncated history): the line starts at the oldest of them.
  const std::vector<v1::Transition> latest(history->begin(), history->begin() + 2);
  const auto cut = common::ReplayTrend(last->benchmarks(), latest, common::Clock::now() - 1h, true);
  EXPECT_EQ(cut.begin()->second.front().at, common::FromProto(latest.back().at()));
}

// An object deleted and created again keeps its key but not its history: the changes of its
// earlier life are not undone on the weights of its present one.
TEST_F(ObservabilityTest, TrendIgnoresChangesOfAnEarlierLife) {
  StartCollector();
  Commit(Report("node-a", {Result("x", v1::STATUS_PASS), Result("y", v1::STATUS_FAIL)}));
  std::this_thread::sleep_for(5ms);
  Commit(Report("node-a", {Result("x", v1::STATUS_FAIL), Result("y", v1::STATUS_FAIL)}));
  std::this_thread::sleep_for(5ms);
  Commit(Report("node-a", {Result("y", v1::STATUS_FAIL)}));  // x is gone
  std::this_thread::sleep_for(5ms);
  Commit(Report("node-a", {Result("x", v1::STATUS_PASS), Result("y", v1::STATUS_FAIL)}));
  auto now = server_->store().Summary("", common::Clock::now());
  ASSERT_TRUE(now.ok());
  auto history = server_->store().History({});
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);  // x PASS -> FAIL, of its first life
  const auto trend = common::ReplayTrend(now->benchmarks(), *history, common::Clock::now() - 1h);
  const auto& points = trend.begin()->second;
  ASSERT_EQ(points.size(), 1u) << "a change of the first life was replayed";
  EXPECT_NEAR(points[0].score, now->benchmarks(0).score(), 1e-9);
}

// `kspmctl report` renders in a real browser: no console error (no script error, nothing the
// page's CSP refused to fetch), the score the store gives, hostile evidence shown as text.
TEST_F(ObservabilityTest, HtmlReportRendersInChromiumWithoutConsoleErrors) {
  if (kspm::testing::RunCommand("command -v chromium", true).exit_code != 0) {
    GTEST_SKIP() << "chromium is not installed (Debian: chromium)";
  }
  // The check itself works on this Chromium: a page with an error is caught.
  const std::string bad = dir_.path() + "/bad.html";
  std::ofstream(bad) << "<html><body><script>undefinedFunction();</script></body></html>";
  EXPECT_FALSE(ConsoleLines(Chromium("--dump-dom file://" + bad).out).empty());

  StartCollector();
  auto hostile = Result("kubelet.anonymous-auth", v1::STATUS_FAIL);
  hostile.mutable_evidence(0)->set_value("<script>window.pwned=1</script>\"'&");
  auto accepted = Result("kubelet.protect-kernel", v1::STATUS_FAIL, v1::SEVERITY_MEDIUM);
  accepted.mutable_accepted()->set_exception("legacy-kernel");
  accepted.mutable_accepted()->set_reason("vendor kernel until Q3");
  Commit(Report("node-a", {Result("kubelet.anonymous-auth", v1::STATUS_PASS), accepted}));
  Commit(Report("node-a", {hostile, accepted}));
  Commit(Report("node-b", {Result("kubelet.anonymous-auth", v1::STATUS_PASS), accepted}));
  const std::string html = dir_.path() + "/posture.html";
  const auto made = kspm::testing::RunCommand(
      std::string(KSPM_BIN_DIR) + "/kspmctl --insecure --collector 127.0.0.1:" +
          std::to_string(server_->port()) + " report --since 1h -o " + html,
      true);
  ASSERT_EQ(made.exit_code, 0) << made.out;
  std::string page;
  ASSERT_TRUE(kspm::testing::ReadFileText(html, &page).ok());
  // Self-contained: nothing is loaded from anywhere.
  EXPECT_EQ(page.find("src=\"http"), std::string::npos);
  EXPECT_EQ(page.find("href=\"http"), std::string::npos);

  const auto dom = Chromium("--dump-dom file://" + html);
  EXPECT_TRUE(ConsoleLines(dom.out).empty()) << ConsoleLines(dom.out)[0];
  auto summary = server_->store().Summary("", common::Clock::now());
  ASSERT_TRUE(summary.ok());
  EXPECT_NE(
      dom.out.find("id=\"overall-score\">" + common::FormatScore(summary->overall().score()) + "<"),
      std::string::npos)
      << dom.out.substr(0, 3000);
  // The hostile value is text in the page, not a script that ran.
  EXPECT_NE(dom.out.find("&lt;script&gt;window.pwned=1&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(dom.out.find("<script>window.pwned"), std::string::npos);
  EXPECT_NE(dom.out.find("accepted by exception <b>legacy-kernel</b>: vendor kernel until Q3"),
            std::string::npos);
  EXPECT_NE(dom.out.find("1 stored verdict change "), std::string::npos);  // the trend's note

  const std::string png = dir_.path() + "/posture.png";
  const auto shot = Chromium("--window-size=1280,2000 --screenshot=" + png + " file://" + html);
  EXPECT_TRUE(ConsoleLines(shot.out).empty()) << shot.out;
  std::string image;
  ASSERT_TRUE(kspm::testing::ReadFileText(png, &image).ok()) << shot.out;
  EXPECT_EQ(image.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_GT(image.size(), 20000u);  // a rendered page, not a blank one

  // One node without a collector: `kspm-agent scan --format html` of a misconfigured node shows
  // every FAIL its JSON output has, and renders without a console message.
  bool owners = false;
  const std::string root = dir_.path() + "/node";
  ASSERT_TRUE(kspm::testing::BuildFixtureHost("demo-kubeadm-node", root, &owners).ok());
  const std::string agent = std::string(KSPM_BIN_DIR) + "/kspm-agent scan --host-root " + root;
  const auto json = kspm::testing::RunCommand(agent + " --format json 2>/dev/null");
  const auto node_html = dir_.path() + "/node.html";
  ASSERT_EQ(kspm::testing::RunCommand(agent + " --format html -o " + node_html, true).exit_code, 0);
  const auto node_dom = Chromium("--dump-dom file://" + node_html);
  EXPECT_TRUE(ConsoleLines(node_dom.out).empty()) << node_dom.out.substr(0, 2000);
  size_t fails = 0;
  const Json scan = Json::parse(json.out);
  for (const auto& r : scan["results"]) {
    if (r["status"] != "FAIL") continue;
    ++fails;
    EXPECT_NE(node_dom.out.find(r["check_id"].get<std::string>()), std::string::npos)
        << r["check_id"];
  }
  EXPECT_GT(fails, 0u);
  EXPECT_NE(node_dom.out.find("Failing checks (" + std::to_string(fails) + ")"), std::string::npos);
}

}  // namespace
}  // namespace kspm

// kspmctl: queries a kspm collector.
//   kspmctl summary | findings | nodes | history | drift | export --format json|csv|junit|sarif
//   kspmctl scan-cluster   (a cluster scan now, answered once committed)
// Exit codes: 0 success; 1 the collector could not be reached or refused the query; 2 usage;
// 3 --fail-on matched a failing finding.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>

#include "CLI/CLI.hpp"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "kspm/common/certs.h"
#include "kspm/common/export.h"
#include "kspm/common/identity.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "kspm/common/tls.h"
#include "kspm/v1/query.grpc.pb.h"

namespace {

constexpr int kExitUnavailable = 1;
constexpr int kExitUsage = 2;
constexpr int kExitFailOn = 3;

struct Options {
  std::string collector = "127.0.0.1:7443";
  kspm::common::TlsFiles tls;
  std::string format = "table";
  std::string cluster;
  std::string node;
  std::vector<std::string> statuses;
  std::string severity;
  std::string benchmark;
  std::string id;
  std::string fail_on;
  std::string since;
  std::string ns;
  int limit = 0;
  int timeout_seconds = 10;
  int scan_wait_seconds = 300;
};

[[noreturn]] void Die(int code, const std::string& message) {
  std::cerr << "kspmctl: " << message << "\n";
  std::exit(code);
}

// `--since`: a duration back from now (30m, 24h, 7d) or an RFC 3339 time in UTC.
std::optional<google::protobuf::Timestamp> ParseSince(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const auto now = kspm::common::Clock::now();
  char unit = text.back();
  const std::string number = text.substr(0, text.size() - 1);
  if (!number.empty() && number.find_first_not_of("0123456789") == std::string::npos) {
    const long n = std::stol(number);
    std::chrono::seconds back{0};
    if (unit == 's') back = std::chrono::seconds(n);
    if (unit == 'm') back = std::chrono::minutes(n);
    if (unit == 'h') back = std::chrono::hours(n);
    if (unit == 'd') back = std::chrono::hours(24 * n);
    if (back.count() > 0) return kspm::common::ToProto(now - back);
  }
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end != nullptr && (*end == '\0' || *end == 'Z')) {
    return kspm::common::ToProto(kspm::common::Clock::from_time_t(timegm(&tm)));
  }
  Die(2, "--since '" + text +
             "': use a duration such as 30m, 24h, 7d or a time such as "
             "2026-11-26T08:00:00Z");
}

std::unique_ptr<kspm::v1::QueryService::Stub> Connect(const Options& o) {
  auto creds = kspm::common::MakeClientCredentials(o.tls);
  if (!creds.ok()) Die(kExitUsage, std::string(creds.status().message()));
  return kspm::v1::QueryService::NewStub(grpc::CreateChannel(o.collector, *creds));
}

void Check(const grpc::Status& s, const Options& o) {
  if (s.ok()) return;
  Die(kExitUnavailable, "collector " + o.collector + ": " + s.error_message() + " (" +
                            std::to_string(s.error_code()) + ")");
}

std::unique_ptr<grpc::ClientContext> Context(const Options& o) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(o.timeout_seconds));
  return ctx;
}

bool Colour() { return ::isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr; }

std::vector<std::string> CountsRow(const kspm::v1::Score& s) {
  const auto& c = s.counts();
  return {s.scope(),
          kspm::common::FormatScore(s.score()),
          std::to_string(c.pass()),
          std::to_string(c.fail()),
          std::to_string(c.warn()),
          std::to_string(c.manual()),
          std::to_string(c.not_applicable()),
          std::to_string(c.error())};
}

int Summary(const Options& o) {
  auto stub = Connect(o);
  kspm::v1::SummaryRequest req;
  req.set_cluster(o.cluster);
  kspm::v1::SummaryResponse resp;
  Check(stub->Summary(Context(o).get(), req, &resp), o);
  if (o.format == "json") {
    auto score = [](const kspm::v1::Score& s) {
      return nlohmann::json{{"scope", s.scope()},
                            {"score", s.score()},
                            {"counts", kspm::common::StatusCountsJson(s.counts())}};
    };
    nlohmann::json nodes = nlohmann::json::array(), benchmarks = nlohmann::json::array(),
                   sections = nlohmann::json::array(), namespaces = nlohmann::json::array();
    for (const auto& s : resp.nodes()) nodes.push_back(score(s));
    for (const auto& s : resp.benchmarks()) benchmarks.push_back(score(s));
    for (const auto& s : resp.sections()) sections.push_back(score(s));
    for (const auto& s : resp.namespaces()) namespaces.push_back(score(s));
    nlohmann::json failed = nlohmann::json::object();
    for (const auto& [k, v] : resp.failed_by_severity()) failed[k] = v;
    std::cout << nlohmann::json{{"overall", score(resp.overall())},
                                {"nodes", nodes},
                                {"benchmarks", benchmarks},
                                {"sections", sections},
                                {"namespaces", namespaces},
                                {"failed_by_severity", failed},
                                {"node_count", resp.node_count()},
                                {"stale_node_count", resp.stale_node_count()}}
                     .dump(2)
              << "\n";
    return 0;
  }
  // The collector stores cluster results as the reserved pseudo-node `cluster`: not a machine.
  const bool cluster = std::any_of(resp.nodes().begin(), resp.nodes().end(),
                                   [](const kspm::v1::Score& n) { return n.scope() == "cluster"; });
  const uint32_t machines = resp.node_count() - (cluster ? 1 : 0);
  std::cout << "Posture score " << kspm::common::FormatScore(resp.overall().score())
            << " / 100 over " << machines << " node" << (machines == 1 ? "" : "s")
            << (cluster ? " and the cluster's objects" : "");
  if (resp.stale_node_count() > 0) {
    std::cout << " (" << resp.stale_node_count() << " stale: no report for 3 intervals)";
  }
  std::cout << "\n\n";
  kspm::common::Table table({"SCOPE", "SCORE", "PASS", "FAIL", "WARN", "MANUAL", "N/A", "ERROR"});
  table.AddRow(CountsRow(resp.overall()));
  for (const auto& s : resp.benchmarks()) table.AddRow(CountsRow(s));
  for (const auto& s : resp.nodes()) {
    auto row = CountsRow(s);
    row[0] = "node/" + row[0];
    table.AddRow(row);
  }
  table.Print(std::cout, false);
  // Section and namespace scores, each a table of its own when there are any.
  for (const auto& [title, scores] :
       {std::pair{"SECTION", &resp.sections()}, std::pair{"NAMESPACE", &resp.namespaces()}}) {
    if (scores->empty()) continue;
    std::cout << "\n";
    kspm::common::Table more({title, "SCORE", "PASS", "FAIL", "WARN", "MANUAL", "N/A", "ERROR"});
    for (const auto& s : *scores) more.AddRow(CountsRow(s));
    more.Print(std::cout, false);
  }
  if (!resp.failed_by_severity().empty()) {
    std::cout << "\nFailed by severity:";
    for (const char* sev : {"critical", "high", "medium", "low", "info"}) {
      auto it = resp.failed_by_severity().find(sev);
      if (it != resp.failed_by_severity().end()) std::cout << " " << sev << "=" << it->second;
    }
    std::cout << "\n";
  }
  return 0;
}

kspm::v1::FindingsResponse QueryFindings(const Options& o, bool all_statuses) {
  auto stub = Connect(o);
  kspm::v1::FindingsRequest req;
  req.set_cluster(o.cluster);
  req.set_node(o.node);
  req.set_benchmark(o.benchmark);
  req.set_id(o.id);
  req.set_namespace_(o.ns);
  req.set_limit(static_cast<uint32_t>(o.limit));
  if (auto since = ParseSince(o.since)) *req.mutable_since() = *since;
  for (const auto& s : o.statuses) {
    auto parsed = kspm::common::ParseStatus(s);
    if (!parsed) Die(kExitUsage, "unknown status '" + s + "'");
    req.add_statuses(*parsed);
  }
  if (all_statuses && o.statuses.empty()) {
    for (int s = kspm::v1::STATUS_PASS; s <= kspm::v1::STATUS_ERROR; ++s)
      req.add_statuses(static_cast<kspm::v1::Status>(s));
  }
  if (!o.severity.empty()) {
    auto parsed = kspm::common::ParseSeverity(o.severity);
    if (!parsed) Die(kExitUsage, "unknown severity '" + o.severity + "'");
    req.set_min_severity(*parsed);
  }
  // Page by page (each fits gRPC's message limit), until no token or the limit is reached.
  kspm::v1::FindingsResponse all;
  for (;;) {
    if (o.limit > 0) {
      req.set_limit(static_cast<uint32_t>(o.limit - all.findings_size()));
      if (req.limit() == 0) break;
    }
    kspm::v1::FindingsResponse page;
    Check(stub->ListFindings(Context(o).get(), req, &page), o);
    for (auto& f : *page.mutable_findings()) *all.add_findings() = std::move(f);
    if (page.next_page_token().empty()) break;
    req.set_page_token(page.next_page_token());
  }
  return all;
}

// --fail-on SEVERITY: exit 3 when a FAIL at or above it is among the findings.
int FailOn(const Options& o, const kspm::v1::FindingsResponse& resp) {
  if (o.fail_on.empty()) return 0;
  auto threshold = kspm::common::ParseSeverity(o.fail_on);
  if (!threshold) Die(kExitUsage, "unknown severity '" + o.fail_on + "'");
  for (const auto& f : resp.findings()) {
    if (f.result().status() == kspm::v1::STATUS_FAIL && f.result().severity() >= *threshold) {
      return kExitFailOn;
    }
  }
  return 0;
}

int Findings(const Options& o) {
  const auto resp = QueryFindings(o, false);
  if (o.format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& f : resp.findings()) {
      auto j = kspm::common::ResultToJson(f.result());
      j["cluster"] = f.cluster();
      j["node"] = f.node();
      j["reported_at"] = kspm::common::FormatRfc3339(kspm::common::FromProto(f.reported_at()));
      j["changed_at"] = kspm::common::FormatRfc3339(kspm::common::FromProto(f.changed_at()));
      j["stale"] = f.stale();
      list.push_back(std::move(j));
    }
    std::cout << nlohmann::json{{"findings", list}}.dump(2) << "\n";
  } else {
    std::vector<kspm::common::ResultRow> rows;
    for (const auto& f : resp.findings()) rows.push_back({f.cluster(), f.node(), &f.result()});
    if (rows.empty()) {
      std::cout << "no findings match\n";
    } else {
      kspm::common::WriteText(rows, std::cout, Colour(), true);
    }
  }
  return FailOn(o, resp);
}

int Nodes(const Options& o) {
  auto stub = Connect(o);
  kspm::v1::NodesRequest req;
  req.set_cluster(o.cluster);
  kspm::v1::NodesResponse resp;
  Check(stub->ListNodes(Context(o).get(), req, &resp), o);
  if (o.format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& n : resp.nodes()) {
      auto j = kspm::common::NodeToJson(n.identity());
      j["last_seen"] = kspm::common::FormatRfc3339(kspm::common::FromProto(n.last_seen()));
      j["last_scan_id"] = n.last_scan_id();
      j["counts"] = kspm::common::StatusCountsJson(n.counts());
      j["stale"] = n.stale();
      j["scan_interval_seconds"] = n.scan_interval_seconds();
      list.push_back(std::move(j));
    }
    std::cout << nlohmann::json{{"nodes", list}}.dump(2) << "\n";
    return 0;
  }
  kspm::common::Table table(
      {"NODE", "CLUSTER", "ROLES", "LAST SEEN", "HEALTH", "FAIL", "WARN", "AGENT"});
  for (const auto& n : resp.nodes()) {
    std::string roles;
    for (int r : n.identity().roles()) {
      roles += (roles.empty() ? "" : ",") +
               std::string(kspm::common::RoleName(static_cast<kspm::v1::NodeRole>(r)));
    }
    table.AddRow({n.identity().node_name(), n.identity().cluster(), roles.empty() ? "-" : roles,
                  kspm::common::FormatRfc3339(kspm::common::FromProto(n.last_seen())),
                  n.stale() ? "STALE" : "ok", std::to_string(n.counts().fail()),
                  std::to_string(n.counts().warn()), n.identity().agent_version()});
  }
  table.Print(std::cout, false);
  return 0;
}

int Export(const Options& o) {
  kspm::common::Format format;
  if (auto s = kspm::common::ParseFormat(o.format == "table" ? "json" : o.format, &format);
      !s.ok()) {
    Die(kExitUsage, std::string(s.message()));
  }
  const auto resp = QueryFindings(o, true);
  std::vector<kspm::common::ResultRow> rows;
  for (const auto& f : resp.findings()) rows.push_back({f.cluster(), f.node(), &f.result()});
  switch (format) {
    case kspm::common::Format::kCsv:
      kspm::common::WriteCsv(rows, std::cout);
      break;
    case kspm::common::Format::kJunit:
      kspm::common::WriteJunit(rows, std::cout);
      break;
    case kspm::common::Format::kSarif:
      kspm::common::WriteSarif(rows, std::cout);
      break;
    case kspm::common::Format::kText:
      kspm::common::WriteText(rows, std::cout, false, true);
      break;
    case kspm::common::Format::kJson: {
      nlohmann::json list = nlohmann::json::array();
      for (const auto& row : rows) {
        auto j = kspm::common::ResultToJson(*row.result);
        j["cluster"] = row.cluster;
        j["node"] = row.node;
        list.push_back(std::move(j));
      }
      std::cout << nlohmann::json{{"results", list}}.dump(2) << "\n";
      break;
    }
  }
  return FailOn(o, resp);
}

// The filters that history and drift share: cluster, node, check or item id, since.
template <typename Request>
Request ScopedRequest(const Options& o) {
  Request req;
  req.set_cluster(o.cluster);
  req.set_node(o.node);
  req.set_id(o.id);
  if (auto since = ParseSince(o.since)) *req.mutable_since() = *since;
  return req;
}

// A previous verdict: its name, or `when_new` for a result seen for the first time.
std::string OldStatusName(kspm::v1::Status s, const char* when_new = "(new)") {
  return s == kspm::v1::STATUS_UNSPECIFIED ? when_new : std::string(kspm::common::StatusName(s));
}

int History(const Options& o) {
  auto stub = Connect(o);
  const auto req = ScopedRequest<kspm::v1::HistoryRequest>(o);
  kspm::v1::HistoryResponse resp;
  Check(stub->History(Context(o).get(), req, &resp), o);
  auto name = [](kspm::v1::Status s) { return OldStatusName(s); };
  if (o.format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& t : resp.transitions()) {
      list.push_back({{"at", kspm::common::FormatRfc3339(kspm::common::FromProto(t.at()))},
                      {"cluster", t.cluster()},
                      {"node", t.node()},
                      {"check_id", t.check_id()},
                      {"object", t.object()},
                      {"benchmark", t.benchmark()},
                      {"id", t.benchmark_id()},
                      {"from", name(t.old_status())},
                      {"to", name(t.new_status())},
                      {"scan_id", t.scan_id()}});
    }
    std::cout << nlohmann::json{{"transitions", list}}.dump(2) << "\n";
    return 0;
  }
  kspm::common::Table table({"TIME", "NODE", "BENCHMARK", "ID", "CHECK", "FROM", "TO"});
  for (const auto& t : resp.transitions()) {
    table.AddRow({kspm::common::FormatRfc3339(kspm::common::FromProto(t.at())), t.node(),
                  t.benchmark(), t.benchmark_id(),
                  t.check_id() + (t.object().empty() ? "" : " [" + t.object() + "]"),
                  name(t.old_status()), name(t.new_status())});
  }
  if (table.size() == 0) {
    std::cout << "no changes match\n";
  } else {
    table.Print(std::cout, false);
  }
  return 0;
}

// `kspmctl scan-cluster`: a cluster scan now; answers once its results are committed.
int ScanCluster(const Options& o) {
  auto stub = Connect(o);
  kspm::v1::ScanClusterRequest req;
  req.set_cluster(o.cluster);
  kspm::v1::ScanClusterResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(o.scan_wait_seconds));
  Check(stub->ScanCluster(&ctx, req, &resp), o);
  const auto started = kspm::common::FromProto(resp.started_at());
  const auto finished = kspm::common::FromProto(resp.finished_at());
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(finished - started);
  const auto& c = resp.counts();
  if (o.format == "json") {
    std::cout << nlohmann::json{{"cluster", resp.cluster()},
                                {"source", resp.source()},
                                {"scan_id", resp.scan_id()},
                                {"started_at", kspm::common::FormatRfc3339(started)},
                                {"finished_at", kspm::common::FormatRfc3339(finished)},
                                {"objects", resp.objects()},
                                {"results", resp.results()},
                                {"counts", kspm::common::StatusCountsJson(c)},
                                {"accepted", resp.accepted()},
                                {"warnings", resp.warnings()}}
                     .dump(2)
              << "\n";
    return 0;
  }
  std::cout << "cluster " << resp.cluster() << " scanned (" << resp.source() << ") in "
            << ms.count() << " ms: " << resp.objects() << " objects, " << resp.results()
            << " results committed as scan " << resp.scan_id() << "\n"
            << c.pass() << " pass, " << c.fail() << " fail, " << c.warn() << " warn, " << c.manual()
            << " manual, " << c.not_applicable() << " not applicable, " << c.error() << " error ("
            << resp.accepted() << " accepted)\n";
  for (const auto& w : resp.warnings()) std::cout << "warning: " << w << "\n";
  std::cout << "findings: kspmctl findings --node cluster\n";
  return 0;
}

struct CertsOptions {
  std::string dir;
  std::vector<std::string> nodes;
  std::vector<std::string> dns;
  std::vector<std::string> ips;
  bool overwrite = false;
  std::string cluster = "default";
  // certs issue
  std::string ca_dir;
  std::string node;
  std::string client;
  std::string role = "reader";
  std::string out_dir;
  int days = 365;
};

// `kspmctl certs issue --ca DIR (--node NAME | --client NAME --role reader|operator)`: one more
// certificate from the existing CA in DIR (ca.crt, ca.key), which stays as it is, so the new
// certificate verifies against the CA already deployed.
int CertsIssue(const CertsOptions& c) {
  if (c.node.empty() == c.client.empty()) {
    Die(kExitUsage, "certs issue: give exactly one of --node NAME or --client NAME");
  }
  kspm::common::Identity id;
  id.cluster = c.cluster;
  if (!c.node.empty()) {
    if (auto s = kspm::common::CheckNodeName(c.node); !s.ok())
      Die(kExitUsage, std::string(s.message()));
    id.role = kspm::common::Role::kNode;
    id.name = c.node;
  } else {
    if (c.role != "reader" && c.role != "operator") {
      Die(kExitUsage, "certs issue: --role must be reader or operator, not '" + c.role + "'");
    }
    if (auto s = kspm::common::CheckIdentityName("client name", c.client); !s.ok()) {
      Die(kExitUsage, std::string(s.message()));
    }
    id.role = c.role == "operator" ? kspm::common::Role::kOperator : kspm::common::Role::kReader;
    id.name = c.client;
  }
  if (auto s = kspm::common::CheckIdentityName("cluster name", c.cluster); !s.ok()) {
    Die(kExitUsage, std::string(s.message()));
  }
  kspm::common::KeyPair ca;
  for (const auto& [path, out] : {std::pair{c.ca_dir + "/ca.crt", &ca.cert_pem},
                                  std::pair{c.ca_dir + "/ca.key", &ca.key_pem}}) {
    std::ifstream in(path);
    if (!in) Die(kExitUsage, "certs issue: cannot read " + path);
    *out = std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  kspm::common::CertificateRequest request;
  request.common_name = id.name;
  request.uris = {kspm::common::IdentityUri(id)};
  request.days = c.days;
  auto pair = kspm::common::IssueCertificate(ca, request);
  if (!pair.ok()) Die(kExitUsage, "certs issue: " + std::string(pair.status().message()));
  const std::string dir =
      c.out_dir.empty() ? (c.node.empty() ? c.ca_dir : c.ca_dir + "/nodes") : c.out_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string stem = dir + "/" + id.name;
  if (auto s = kspm::common::WriteKeyPair(*pair, stem + ".crt", stem + ".key", c.overwrite);
      !s.ok()) {
    Die(1, std::string(s.message()));
  }
  std::cout << stem << ".crt\n" << stem << ".key\n";
  std::cerr << "kspmctl: " << kspm::common::IdentityUri(id) << ", signed by " << c.ca_dir
            << "/ca.crt\n";
  return 0;
}

// `kspmctl certs init DIR`: a CA, the collector's certificate, kspmctl's, and one per node.
int CertsInit(const CertsOptions& c) {
  auto files =
      kspm::common::InitCertificateDirectory(c.dir, c.nodes, c.dns, c.ips, c.overwrite, c.cluster);
  if (!files.ok()) Die(kExitUsage, std::string(files.status().message()));
  for (const auto& f : *files) std::cout << f << "\n";
  std::cerr << "kspmctl: keep " << c.dir << "/ca.key offline; give each node only ca.crt and its "
            << "own nodes/<node>.crt and .key\n";
  return 0;
}

int Drift(const Options& o) {
  auto stub = Connect(o);
  const auto req = ScopedRequest<kspm::v1::DriftRequest>(o);
  kspm::v1::DriftResponse resp;
  Check(stub->ListDrift(Context(o).get(), req, &resp), o);
  auto changes = [](const kspm::v1::DriftEvent& e) {
    std::string out;
    for (const auto& c : e.changes()) {
      if (!out.empty()) out += ", ";
      out += c.result().benchmark_id() + " " + OldStatusName(c.old_status()) + "->" +
             std::string(kspm::common::StatusName(c.new_status()));
    }
    return out;
  };
  if (o.format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& r : resp.events()) {
      const auto& e = r.event();
      nlohmann::json ch = nlohmann::json::array();
      for (const auto& c : e.changes()) {
        auto j = kspm::common::ResultToJson(c.result());
        j["old_status"] = OldStatusName(c.old_status(), "NEW");
        ch.push_back(std::move(j));
      }
      list.push_back(
          {{"event_id", e.event_id()},
           {"cluster", r.cluster()},
           {"node", e.node_name()},
           {"observed_at", kspm::common::FormatRfc3339(kspm::common::FromProto(e.observed_at()))},
           {"operation", e.operation()},
           {"path", e.path()},
           {"pid", e.pid()},
           {"comm", e.comm()},
           {"uid", e.uid()},
           {"source", e.source()},
           {"changes", std::move(ch)}});
    }
    std::cout << nlohmann::json{{"drift", list}}.dump(2) << "\n";
    return 0;
  }
  kspm::common::Table table({"TIME", "NODE", "WHAT", "PATH", "BY", "SEEN BY", "CHANGES"});
  for (const auto& r : resp.events()) {
    const auto& e = r.event();
    table.AddRow({kspm::common::FormatRfc3339(kspm::common::FromProto(e.observed_at())),
                  e.node_name(), e.operation(), e.path(),
                  e.pid() ? e.comm() + " (pid " + std::to_string(e.pid()) + ", uid " +
                                std::to_string(e.uid()) + ")"
                          : "-",
                  e.source(), changes(e)});
  }
  if (table.size() == 0) {
    std::cout << "no drift events match\n";
  } else {
    table.Print(std::cout, false);
  }
  return 0;
}

void AddFilters(CLI::App* cmd, Options& o) {
  cmd->add_option("--node", o.node, "Only this node");
  cmd->add_option(
         "--status", o.statuses,
         "Statuses (PASS, FAIL, WARN, MANUAL, NOT_APPLICABLE, ERROR); default all but PASS")
      ->delimiter(',');
  cmd->add_option("--severity", o.severity, "Minimum severity (info, low, medium, high, critical)");
  cmd->add_option("--benchmark", o.benchmark, "Only this benchmark");
  cmd->add_option("--id", o.id, "Check id or benchmark item id (4.2.1, or a prefix such as 4.2)");
  cmd->add_option("--limit", o.limit, "At most this many findings (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--namespace", o.ns,
                  "Only cluster results of this namespace ((cluster): cluster-scoped objects)");
  cmd->add_option("--fail-on", o.fail_on, "Exit 3 when a FAIL of this severity or higher exists");
  cmd->add_option("--since", o.since,
                  "Only verdicts that changed since (30m, 24h, 7d, or RFC 3339)");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("KSPM_COLLECTOR")) o.collector = env;
  CLI::App app{"kspmctl: query a kspm collector"};
  app.set_version_flag("--version", std::string("kspmctl ") + KSPM_VERSION);
  app.require_subcommand(1);
  app.add_option("--collector", o.collector, "Collector HOST:PORT (env KSPM_COLLECTOR)")
      ->capture_default_str();
  app.add_option("--tls-ca", o.tls.ca, "CA that signed the collector's certificate");
  app.add_option("--tls-cert", o.tls.cert, "Client certificate");
  app.add_option("--tls-key", o.tls.key, "Client key");
  app.add_flag("--insecure", o.tls.insecure, "Plaintext (loopback development only)");
  app.add_option("--cluster", o.cluster, "Only this cluster");
  app.add_option("--timeout", o.timeout_seconds, "Seconds to wait for the collector")
      ->capture_default_str();

  CLI::App* summary = app.add_subcommand("summary", "Posture score and counts");
  CLI::App* findings = app.add_subcommand("findings", "Current results that do not pass");
  CLI::App* nodes = app.add_subcommand("nodes", "Known nodes and their health");
  CLI::App* exp = app.add_subcommand("export", "Every current result as json, csv, junit, sarif");
  CLI::App* drift = app.add_subcommand("drift", "Changes seen between scans (drift events)");
  drift->add_option("--node", o.node, "Only this node");
  drift->add_option("--id", o.id, "Only events that changed this check id or item id");
  drift->add_option("--since", o.since, "Only events since (30m, 24h, 7d, or RFC 3339)");
  drift->add_option("--format", o.format, "table or json")->capture_default_str();
  CertsOptions certs_options;
  CLI::App* certs = app.add_subcommand("certs", "Certificates for mutual TLS");
  certs->require_subcommand(1);
  CLI::App* certs_init = certs->add_subcommand(
      "init", "Create a CA, the collector's, kspmctl's and nodes' certificates");
  certs_init->add_option("dir", certs_options.dir, "Directory to write")->required();
  certs_init->add_option("--node", certs_options.nodes, "A node name (repeat, or comma-separated)")
      ->delimiter(',');
  certs_init
      ->add_option("--collector-dns", certs_options.dns,
                   "DNS names of the collector (default: kspm-collector, localhost)")
      ->delimiter(',');
  certs_init
      ->add_option("--collector-ip", certs_options.ips,
                   "IP addresses of the collector (default: 127.0.0.1)")
      ->delimiter(',');
  certs_init->add_flag("--overwrite", certs_options.overwrite, "Replace existing files");
  certs_init->add_option("--cluster", certs_options.cluster, "Cluster the certificates belong to")
      ->capture_default_str();
  CLI::App* certs_issue = certs->add_subcommand(
      "issue", "One more node or client certificate from an existing CA (the CA is kept)");
  certs_issue->add_option("--ca", certs_options.ca_dir, "Directory holding ca.crt and ca.key")
      ->required();
  certs_issue->add_option("--node", certs_options.node, "Node name (the node role: may report)");
  certs_issue->add_option("--client", certs_options.client, "Client name (for kspmctl)");
  certs_issue->add_option("--role", certs_options.role, "reader (queries) or operator (also scans)")
      ->capture_default_str();
  certs_issue->add_option("--cluster", certs_options.cluster, "Cluster the certificate belongs to")
      ->capture_default_str();
  certs_issue->add_option("--out", certs_options.out_dir,
                          "Directory to write NAME.crt and NAME.key (default: the CA's, nodes/ "
                          "for a node)");
  certs_issue->add_option("--days", certs_options.days, "Validity in days")->capture_default_str();
  certs_issue->add_flag("--overwrite", certs_options.overwrite, "Replace existing files");
  CLI::App* history =
      app.add_subcommand("history", "Verdict changes of a node or a check over time");
  history->add_option("--node", o.node, "Only this node");
  history->add_option("--id", o.id, "Only this check id or benchmark item id");
  history->add_option("--since", o.since, "Only changes since (30m, 24h, 7d, or RFC 3339)");
  history->add_option("--format", o.format, "table or json")->capture_default_str();
  CLI::App* scan_cluster =
      app.add_subcommand("scan-cluster", "Run a cluster scan now and wait for its results");
  scan_cluster
      ->add_option("--wait", o.scan_wait_seconds, "Seconds to wait for the scan to be committed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  for (CLI::App* cmd : {summary, findings, nodes, scan_cluster}) {
    cmd->add_option("--format", o.format, "table or json")->capture_default_str();
  }
  exp->add_option("--format", o.format, "json, csv, junit, sarif")->capture_default_str();
  AddFilters(findings, o);
  AddFilters(exp, o);

  CLI11_PARSE(app, argc, argv);
  if (o.format != "table" && o.format != "json" && !exp->parsed()) {
    Die(kExitUsage, "unknown format '" + o.format + "' (table, json)");
  }
  if (summary->parsed()) return Summary(o);
  if (findings->parsed()) return Findings(o);
  if (nodes->parsed()) return Nodes(o);
  if (exp->parsed()) return Export(o);
  if (history->parsed()) return History(o);
  if (drift->parsed()) return Drift(o);
  if (scan_cluster->parsed()) return ScanCluster(o);
  if (certs_issue->parsed()) return CertsIssue(certs_options);
  if (certs_init->parsed()) {
    if (certs_options.dns.empty() && certs_options.ips.empty()) {
      certs_options.dns = {"kspm-collector", "localhost"};
      certs_options.ips = {"127.0.0.1"};
    }
    return CertsInit(certs_options);
  }
  return kExitUsage;
}

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
#include <map>
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
#include "kspm/v1/fleet.grpc.pb.h"
#include "kspm/v1/query.grpc.pb.h"
#include "yaml-cpp/yaml.h"

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
      if (n.has_certificate_not_after()) {
        j["certificate_not_after"] =
            kspm::common::FormatRfc3339(kspm::common::FromProto(n.certificate_not_after()));
      }
      j["revoked"] = n.revoked();
      list.push_back(std::move(j));
    }
    std::cout << nlohmann::json{{"nodes", list}}.dump(2) << "\n";
    return 0;
  }
  kspm::common::Table table({"NODE", "CLUSTER", "ROLES", "PLATFORM", "LAST SEEN", "HEALTH", "FAIL",
                             "WARN", "AGENT", "CERT EXPIRES"});
  const auto now = kspm::common::Clock::now();
  for (const auto& n : resp.nodes()) {
    std::string roles;
    for (int r : n.identity().roles()) {
      roles += (roles.empty() ? "" : ",") +
               std::string(kspm::common::RoleName(static_cast<kspm::v1::NodeRole>(r)));
    }
    std::string expires = "-";
    if (n.has_certificate_not_after()) {
      const auto at = kspm::common::FromProto(n.certificate_not_after());
      expires = kspm::common::FormatRfc3339(at);
      if (at <= now) {
        expires += " (EXPIRED)";
      } else if (at - now < std::chrono::hours(24 * 30)) {
        expires +=
            " (in " +
            std::to_string(std::chrono::duration_cast<std::chrono::hours>(at - now).count()) +
            " h)";
      }
    }
    const std::string platform =
        n.identity().platform().empty()
            ? "-"
            : n.identity().platform() + " (" + n.identity().platform_benchmark() + ")";
    table.AddRow({n.identity().node_name(), n.identity().cluster(), roles.empty() ? "-" : roles,
                  platform, kspm::common::FormatRfc3339(kspm::common::FromProto(n.last_seen())),
                  n.revoked() ? "REVOKED" : (n.stale() ? "STALE" : "ok"),
                  std::to_string(n.counts().fail()), std::to_string(n.counts().warn()),
                  n.identity().agent_version(), expires});
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
  std::string write_config;  // client certificates: a settings file naming them
  std::string collector;
};

void WriteConfigFile(const std::string& path, const std::string& collector, const std::string& ca,
                     const std::string& cert, const std::string& key, const std::string& cluster,
                     bool overwrite);

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
  if (!c.write_config.empty()) {
    if (!c.node.empty()) Die(kExitUsage, "--write-config is for client certificates");
    WriteConfigFile(c.write_config, c.collector, c.ca_dir + "/ca.crt", stem + ".crt", stem + ".key",
                    c.cluster, c.overwrite);
  }
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

std::unique_ptr<kspm::v1::FleetService::Stub> ConnectFleet(const Options& o) {
  auto creds = kspm::common::MakeClientCredentials(o.tls);
  if (!creds.ok()) Die(kExitUsage, std::string(creds.status().message()));
  return kspm::v1::FleetService::NewStub(grpc::CreateChannel(o.collector, *creds));
}

// `1h`, `30m`, `7d`, `90s` or plain seconds.
uint32_t ParseDuration(const std::string& text, const char* flag) {
  if (text.empty()) Die(kExitUsage, std::string(flag) + " is empty");
  const char unit = text.back();
  const bool has_unit = unit == 's' || unit == 'm' || unit == 'h' || unit == 'd';
  const std::string number = has_unit ? text.substr(0, text.size() - 1) : text;
  if (number.empty() || number.size() > 7 ||
      number.find_first_not_of("0123456789") != std::string::npos) {
    Die(kExitUsage, std::string(flag) + " '" + text + "': use a duration such as 90s, 30m, 1h, 7d");
  }
  const uint64_t n = std::stoull(number);
  const uint64_t mult = unit == 'm' ? 60 : unit == 'h' ? 3600 : unit == 'd' ? 86400 : 1;
  if (n * mult == 0 || n * mult > 0xffffffffull) {
    Die(kExitUsage, std::string(flag) + " '" + text + "' is out of range");
  }
  return static_cast<uint32_t>(n * mult);
}

int TokensCreate(const Options& o, const std::string& node, const std::string& ttl, int uses) {
  if (uses < 1) Die(kExitUsage, "--uses must be at least 1");
  auto stub = ConnectFleet(o);
  kspm::v1::CreateJoinTokenRequest req;
  req.set_node_name(node);
  req.set_ttl_seconds(ParseDuration(ttl, "--ttl"));
  req.set_uses(static_cast<uint32_t>(uses));
  req.set_cluster(o.cluster);
  kspm::v1::CreateJoinTokenResponse resp;
  Check(stub->CreateJoinToken(Context(o).get(), req, &resp), o);
  const std::string expires = kspm::common::FormatRfc3339(kspm::common::FromProto(resp.expires()));
  if (o.format == "json") {
    std::cout << nlohmann::json{{"token", resp.token()},
                                {"expires", expires},
                                {"ca_hash", resp.ca_hash()},
                                {"node", node},
                                {"uses", uses}}
                     .dump(2)
              << "\n";
    return 0;
  }
  std::cout << resp.token() << "\n";
  std::cerr << "kspmctl: join token for " << (node.empty() ? "any node" : "node " + node) << ", "
            << uses << (uses == 1 ? " use" : " uses") << ", expires " << expires
            << "\nkspmctl: on the node: kspm-agent enroll --collector " << o.collector
            << " --token " << resp.token() << " --ca-hash " << resp.ca_hash() << "\n";
  return 0;
}

int NodeAccess(const Options& o, const std::string& node, bool revoke) {
  auto stub = ConnectFleet(o);
  kspm::v1::NodeAccessRequest req;
  req.set_cluster(o.cluster);
  req.set_node_name(node);
  kspm::v1::NodeAccessResponse resp;
  Check(revoke ? stub->RevokeNode(Context(o).get(), req, &resp)
               : stub->AllowNode(Context(o).get(), req, &resp),
        o);
  if (revoke) {
    std::cout << "node " << node << " revoked; " << resp.streams_closed()
              << " open streams closed; its reports and enrolment are refused until "
              << "kspmctl nodes allow " << node << "\n";
  } else {
    std::cout << "node " << node << " may enrol again (certificates issued before its "
              << "revocation stay refused)\n";
  }
  return 0;
}

// The settings file: `--config`, else $KSPM_CONFIG, else $XDG_CONFIG_HOME/kspm/config.yaml
// (~/.config/kspm/config.yaml). Keys: collector, tls-ca, tls-cert, tls-key, cluster, insecure.
// Flags win over the environment, which wins over the file.
std::string DefaultConfigPath() {
  if (const char* env = std::getenv("KSPM_CONFIG"); env != nullptr && *env != '\0') return env;
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/kspm/config.yaml";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.config/kspm/config.yaml";
  }
  return "";
}

void ApplyConfigFile(const std::string& path, bool required, CLI::App& app, Options& o) {
  if (path.empty()) return;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (required) Die(kExitUsage, "cannot read settings file " + path);
    return;
  }
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    Die(kExitUsage, path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root || root.IsNull()) return;
  if (!root.IsMap()) Die(kExitUsage, path + ": expected a map of settings");
  const auto dir = std::filesystem::path(path).parent_path();
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (!kv.second.IsScalar()) {
      Die(kExitUsage, path + ":" + std::to_string(kv.first.Mark().line + 1) + ": '" + key +
                          "' must be a single value");
    }
    std::string value = kv.second.Scalar();
    // File names relative to the settings file, as kubeconfig does.
    if ((key == "tls-ca" || key == "tls-cert" || key == "tls-key") && !value.empty() &&
        value.front() != '/') {
      value = (dir / value).string();
    }
    static const std::map<std::string, std::string> kFlags = {
        {"collector", "--collector"}, {"tls-ca", "--tls-ca"},   {"tls-cert", "--tls-cert"},
        {"tls-key", "--tls-key"},     {"cluster", "--cluster"}, {"insecure", "--insecure"}};
    const auto flag = kFlags.find(key);
    if (flag == kFlags.end()) {
      Die(kExitUsage, path + ":" + std::to_string(kv.first.Mark().line + 1) +
                          ": unknown setting '" + key +
                          "' (collector, tls-ca, tls-cert, tls-key, cluster, insecure)");
    }
    if (app.get_option(flag->second)->count() > 0) continue;  // the flag wins
    if (key == "collector") {
      if (std::getenv("KSPM_COLLECTOR") == nullptr) o.collector = value;
    } else if (key == "tls-ca") {
      o.tls.ca = value;
    } else if (key == "tls-cert") {
      o.tls.cert = value;
    } else if (key == "tls-key") {
      o.tls.key = value;
    } else if (key == "cluster") {
      o.cluster = value;
    } else {
      o.tls.insecure = value == "true";
    }
  }
}

// Writes a settings file for a client certificate just issued; refuses to replace one.
void WriteConfigFile(const std::string& path, const std::string& collector, const std::string& ca,
                     const std::string& cert, const std::string& key, const std::string& cluster,
                     bool overwrite) {
  std::error_code ec;
  if (!overwrite && std::filesystem::exists(path, ec)) {
    Die(1, "settings file " + path + " exists; pass --overwrite to replace it");
  }
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  auto abs = [](const std::string& p) { return std::filesystem::absolute(p).string(); };
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "collector" << YAML::Value << collector << YAML::Key
      << "tls-ca" << YAML::Value << abs(ca) << YAML::Key << "tls-cert" << YAML::Value << abs(cert)
      << YAML::Key << "tls-key" << YAML::Value << abs(key) << YAML::Key << "cluster" << YAML::Value
      << cluster << YAML::EndMap;
  std::ofstream file(path, std::ios::trunc);
  file << "# kspmctl settings (written by kspmctl certs issue)\n" << out.c_str() << "\n";
  if (!file.flush()) Die(1, "cannot write " + path);
  std::cerr << "kspmctl: settings written to " << path << "\n";
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
  std::string access_node;
  CLI::App* nodes_revoke = nodes->add_subcommand(
      "revoke", "Refuse a node's certificates, stream and enrolment (operator)");
  nodes_revoke->add_option("name", access_node, "Node name")->required();
  CLI::App* nodes_allow =
      nodes->add_subcommand("allow", "Let a revoked node enrol again (operator)");
  nodes_allow->add_option("name", access_node, "Node name")->required();
  CLI::App* tokens = app.add_subcommand("tokens", "Join tokens for enrolling VMs (operator)");
  tokens->require_subcommand(1);
  CLI::App* tokens_create = tokens->add_subcommand("create", "Make a join token");
  std::string token_node, token_ttl = "1h";
  int token_uses = 1;
  tokens_create->add_option("--node", token_node, "Only this node may use it (default: any)");
  tokens_create->add_option("--ttl", token_ttl, "Lifetime (90s, 30m, 1h, 7d at most)")
      ->capture_default_str();
  tokens_create->add_option("--uses", token_uses, "Enrolments it allows")->capture_default_str();
  tokens_create->add_option("--format", o.format, "table or json")->capture_default_str();
  std::string config_path;
  app.add_option("--config", config_path,
                 "Settings file (default: $KSPM_CONFIG, else ~/.config/kspm/config.yaml)");
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
  certs_issue->add_option(
      "--write-config", certs_options.write_config,
      "With --client: also write a kspmctl settings file naming the collector and "
      "these files (e.g. ~/.config/kspm/config.yaml)");
  CLI::App* certs_client = certs->add_subcommand(
      "client",
      "A kspmctl certificate from an existing CA, and a settings file naming it (default "
      "~/.config/kspm/config.yaml)");
  certs_client->add_option("name", certs_options.client, "Client name")->required();
  certs_client->add_option("--ca", certs_options.ca_dir, "Directory holding ca.crt and ca.key")
      ->required();
  certs_client->add_option("--role", certs_options.role, "reader or operator")
      ->capture_default_str();
  certs_client->add_option("--cluster", certs_options.cluster, "Cluster")->capture_default_str();
  certs_client->add_option("--out", certs_options.out_dir, "Directory for NAME.crt and NAME.key");
  certs_client->add_option("--days", certs_options.days, "Validity in days")->capture_default_str();
  certs_client->add_option("--write-config", certs_options.write_config,
                           "Settings file to write (default: $KSPM_CONFIG or "
                           "~/.config/kspm/config.yaml)");
  certs_client->add_flag("--overwrite", certs_options.overwrite, "Replace existing files");
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
  if (!certs->parsed()) {
    const bool given = !config_path.empty();
    ApplyConfigFile(given ? config_path : DefaultConfigPath(), given, app, o);
  }
  certs_options.collector = o.collector;
  if (tokens_create->parsed()) return TokensCreate(o, token_node, token_ttl, token_uses);
  if (nodes_revoke->parsed()) return NodeAccess(o, access_node, true);
  if (nodes_allow->parsed()) return NodeAccess(o, access_node, false);
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
  if (certs_client->parsed()) {
    if (certs_options.write_config.empty()) certs_options.write_config = DefaultConfigPath();
    if (certs_options.write_config.empty()) {
      Die(kExitUsage, "certs client: no HOME; give --write-config PATH");
    }
    return CertsIssue(certs_options);
  }
  if (certs_init->parsed()) {
    if (certs_options.dns.empty() && certs_options.ips.empty()) {
      certs_options.dns = {"kspm-collector", "localhost"};
      certs_options.ips = {"127.0.0.1"};
    }
    return CertsInit(certs_options);
  }
  return kExitUsage;
}

// kspmctl's queries of current results: summary, findings, nodes, export; and scan-cluster, a
// cluster scan now whose results the other queries then show.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "cli/kspmctl.h"
#include "grpcpp/client_context.h"
#include "kspm/common/export.h"
#include "kspm/common/html_report.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "kspm/v1/query.pb.h"
#include "nlohmann/json.hpp"

namespace kspm::collector::cli {
namespace {

std::vector<std::string> CountsRow(const kspm::v1::Score& s) {
  const auto& c = s.counts();
  return {s.scope(),
          kspm::common::FormatScore(s.score(), s.evaluated(), s.counts()),
          std::to_string(c.pass()),
          std::to_string(c.fail()),
          std::to_string(c.warn()),
          std::to_string(c.manual()),
          std::to_string(c.not_applicable()),
          std::to_string(c.error())};
}

}  // namespace

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
                            {"evaluated", s.evaluated()},
                            {"counts", kspm::common::StatusCountsJson(s.counts())}};
    };
    nlohmann::json nodes = nlohmann::json::array(), benchmarks = nlohmann::json::array(),
                   sections = nlohmann::json::array(), namespaces = nlohmann::json::array();
    for (const auto& s : resp.nodes()) nodes.push_back(score(s));
    for (const auto& s : resp.benchmarks()) benchmarks.push_back(score(s));
    for (const auto& s : resp.sections()) sections.push_back(score(s));
    for (const auto& s : resp.namespaces()) namespaces.push_back(score(s));
    nlohmann::json clusters = nlohmann::json::array();
    for (const auto& s : resp.clusters()) clusters.push_back(score(s));
    nlohmann::json failed = nlohmann::json::object();
    for (const auto& [k, v] : resp.failed_by_severity()) failed[k] = v;
    std::cout << nlohmann::json{{"schemaVersion", kspm::common::kJsonSchemaVersion},
                                {"overall", score(resp.overall())},
                                {"nodes", nodes},
                                {"benchmarks", benchmarks},
                                {"sections", sections},
                                {"namespaces", namespaces},
                                {"clusters", clusters},
                                {"failed_by_severity", failed},
                                {"node_count", resp.node_count()},
                                {"stale_node_count", resp.stale_node_count()}}
                     .dump(2)
              << "\n";
    return 0;
  }
  // The collector stores cluster results as the reserved pseudo-node `cluster` (`<name>/cluster`
  // with several clusters): not a machine.
  const auto is_cluster_node = [](const kspm::v1::Score& n) {
    const std::string& s = n.scope();
    return s == "cluster" || (s.size() > 8 && s.compare(s.size() - 8, 8, "/cluster") == 0);
  };
  const auto cluster_nodes = static_cast<uint32_t>(
      std::count_if(resp.nodes().begin(), resp.nodes().end(), is_cluster_node));
  const bool cluster = cluster_nodes > 0;
  const uint32_t machines = resp.node_count() - cluster_nodes;
  std::cout << "Posture score "
            << (resp.overall().evaluated()
                    ? kspm::common::FormatScore(resp.overall().score()) + " / 100"
                    : std::string("n/a (nothing scored was evaluated)"))
            << " over " << machines << " node" << (machines == 1 ? "" : "s")
            << (cluster ? " and the cluster's objects" : "");
  if (resp.stale_node_count() > 0) {
    std::cout << " (" << resp.stale_node_count() << " stale: no report for 3 intervals)";
  }
  if (resp.clusters_size() > 1) std::cout << " in " << resp.clusters_size() << " clusters";
  std::cout << "\n\n";
  kspm::common::Table table({"SCOPE", "SCORE", "PASS", "FAIL", "WARN", "MANUAL", "N/A", "ERROR"});
  table.AddRow(CountsRow(resp.overall()));
  if (resp.clusters_size() > 1) {
    for (const auto& s : resp.clusters()) {
      auto row = CountsRow(s);
      row[0] = "cluster/" + row[0];
      table.AddRow(row);
    }
  }
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

namespace {

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
  } else if (o.statuses.empty()) {
    // A triage list: what needs a look. NOT_APPLICABLE (and PASS) only when asked for.
    for (auto s : {kspm::v1::STATUS_FAIL, kspm::v1::STATUS_WARN, kspm::v1::STATUS_MANUAL,
                   kspm::v1::STATUS_ERROR}) {
      req.add_statuses(s);
    }
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

// A stored finding as JSON: the result's own object (as `kspm-agent scan` writes it) with where
// and when it was reported. The same in `findings` and `export`.
nlohmann::json FindingToJson(const kspm::v1::Finding& f) {
  auto j = kspm::common::ResultToJson(f.result());
  j["cluster"] = f.cluster();
  j["node"] = f.node();
  j["reported_at"] = kspm::common::FormatRfc3339(kspm::common::FromProto(f.reported_at()));
  j["changed_at"] = kspm::common::FormatRfc3339(kspm::common::FromProto(f.changed_at()));
  j["stale"] = f.stale();
  return j;
}

// Most severe first; then FAIL, ERROR, WARN, MANUAL; then by benchmark and item in natural order
// (5.1.2 before 5.1.10), node and object.
void SortForTriage(google::protobuf::RepeatedPtrField<kspm::v1::Finding>& findings) {
  auto rank = [](kspm::v1::Status s) {
    switch (s) {
      case kspm::v1::STATUS_FAIL:
        return 0;
      case kspm::v1::STATUS_ERROR:
        return 1;
      case kspm::v1::STATUS_WARN:
        return 2;
      case kspm::v1::STATUS_MANUAL:
        return 3;
      default:
        return 4;
    }
  };
  std::stable_sort(findings.begin(), findings.end(),
                   [&](const kspm::v1::Finding& a, const kspm::v1::Finding& b) {
                     const auto& ra = a.result();
                     const auto& rb = b.result();
                     if (ra.severity() != rb.severity()) return ra.severity() > rb.severity();
                     if (rank(ra.status()) != rank(rb.status())) {
                       return rank(ra.status()) < rank(rb.status());
                     }
                     if (ra.benchmark() != rb.benchmark()) return ra.benchmark() < rb.benchmark();
                     if (ra.benchmark_id() != rb.benchmark_id()) {
                       return kspm::common::NaturalLess(ra.benchmark_id(), rb.benchmark_id());
                     }
                     if (a.node() != b.node()) return a.node() < b.node();
                     return kspm::common::ResourceKey(ra.resource()) <
                            kspm::common::ResourceKey(rb.resource());
                   });
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

}  // namespace

int Findings(const Options& o) {
  auto resp = QueryFindings(o, false);
  SortForTriage(*resp.mutable_findings());
  if (o.format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& f : resp.findings()) list.push_back(FindingToJson(f));
    std::cout << nlohmann::json{{"schemaVersion", kspm::common::kJsonSchemaVersion},
                                {"findings", list}}
                     .dump(2)
              << "\n";
  } else {
    std::vector<kspm::common::ResultRow> rows;
    for (const auto& f : resp.findings()) {
      rows.push_back({f.cluster(), f.node(), &f.result(),
                      kspm::common::FormatRfc3339(kspm::common::FromProto(f.reported_at()))});
    }
    if (rows.empty()) {
      std::cout << "no findings match\n";
    } else {
      kspm::common::WriteText(rows, std::cout,
                              kspm::common::TextOptions{kspm::common::StdoutWantsColour(), true,
                                                        o.verbose, kspm::common::TerminalWidth()});
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
    std::cout << nlohmann::json{{"schemaVersion", kspm::common::kJsonSchemaVersion},
                                {"nodes", list}}
                     .dump(2)
              << "\n";
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
  for (const auto& f : resp.findings()) {
    rows.push_back({f.cluster(), f.node(), &f.result(),
                    kspm::common::FormatRfc3339(kspm::common::FromProto(f.reported_at()))});
  }
  switch (format) {
    case kspm::common::Format::kCsv:
    case kspm::common::Format::kJunit:
    case kspm::common::Format::kSarif:
      kspm::common::WriteCiFormat(format, rows, std::cout);
      break;
    case kspm::common::Format::kText:
      kspm::common::WriteText(rows, std::cout, false, true);
      break;
    case kspm::common::Format::kHtml:
      Die(kExitUsage, "export writes json, csv, junit or sarif; for HTML: kspmctl report");
    case kspm::common::Format::kJson: {
      nlohmann::json list = nlohmann::json::array();
      for (const auto& f : resp.findings()) list.push_back(FindingToJson(f));
      std::cout << nlohmann::json{{"schemaVersion", kspm::common::kJsonSchemaVersion},
                                  {"results", list}}
                       .dump(2)
                << "\n";
      break;
    }
  }
  return FailOn(o, resp);
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
    std::cout << nlohmann::json{{"schemaVersion", kspm::common::kJsonSchemaVersion},
                                {"cluster", resp.cluster()},
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

// `kspmctl report`: the posture as one self-contained HTML file, with the score's trend over
// `--since` replayed from the stored verdict changes.
int Report(const Options& o, const std::string& output, size_t max_findings) {
  if (o.format != "html" && o.format != "table") {
    Die(kExitUsage, "report writes html (--format html); for data: kspmctl export");
  }
  const std::string window = o.since.empty() ? "30d" : o.since;
  const auto since = ParseSince(window);
  if (!since) Die(kExitUsage, "--since '" + window + "': expected 30m, 24h, 7d or RFC 3339");
  auto stub = Connect(o);
  kspm::common::HtmlReport html;
  html.scope = o.cluster.empty() ? "all clusters" : "cluster " + o.cluster;
  html.source = "collector " + o.collector;
  html.max_findings = max_findings;
  {
    kspm::v1::SummaryRequest req;
    req.set_cluster(o.cluster);
    Check(stub->Summary(Context(o).get(), req, &html.summary), o);
  }
  Options failing = o;
  failing.statuses = {"FAIL", "ERROR"};
  failing.since.clear();
  auto found = QueryFindings(failing, false);
  html.findings.assign(std::make_move_iterator(found.mutable_findings()->begin()),
                       std::make_move_iterator(found.mutable_findings()->end()));
  {
    kspm::v1::NodesRequest req;
    req.set_cluster(o.cluster);
    kspm::v1::NodesResponse resp;
    Check(stub->ListNodes(Context(o).get(), req, &resp), o);
    html.nodes.assign(resp.nodes().begin(), resp.nodes().end());
  }
  // The latest changes only: each is ~150 bytes, and gRPC's default message bound is 4 MiB.
  constexpr uint32_t kTrendChanges = 20000;
  kspm::v1::HistoryRequest req;
  req.set_cluster(o.cluster);
  *req.mutable_since() = *since;
  req.set_limit(kTrendChanges);
  kspm::v1::HistoryResponse history;
  Check(stub->History(Context(o).get(), req, &history), o);
  const std::vector<kspm::v1::Transition> changes(history.transitions().begin(),
                                                  history.transitions().end());
  html.trend_window = window;
  html.trend =
      kspm::common::ReplayTrend(html.summary.benchmarks(), changes, kspm::common::FromProto(*since),
                                changes.size() == kTrendChanges);
  html.trend_note =
      "Each benchmark's score is replayed back from now through the " +
      std::to_string(changes.size()) + " stored verdict change" + (changes.size() == 1 ? "" : "s") +
      " of the window" +
      (changes.size() == kTrendChanges ? " (the latest " + std::to_string(kTrendChanges) + ")"
                                       : std::string()) +
      ". Objects and nodes added or removed in between count as they are now; pruned history "
      "(--history-retention-days) is flat.";
  const std::string page = kspm::common::RenderHtmlReport(html);
  if (output.empty() || output == "-") {
    std::cout << page;
    return 0;
  }
  const std::string tmp = output + ".tmp";
  {
    std::ofstream file(tmp, std::ios::trunc);
    file << page;
    if (!file.flush()) Die(kExitUnavailable, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), output.c_str()) != 0) {
    Die(kExitUnavailable, "cannot write " + output + ": " + std::strerror(errno));
  }
  std::cerr << "kspmctl: report written to " << output << " (" << page.size() / 1024
            << " KiB, score " << kspm::common::FormatScore(html.summary.overall().score()) << ")\n";
  return 0;
}

}  // namespace kspm::collector::cli

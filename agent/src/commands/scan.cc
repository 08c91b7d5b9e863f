#include <unistd.h>

#include <fstream>
#include <iostream>
#include <set>

#include "commands/commands.h"
#include "kspm/common/export.h"
#include "kspm/common/gate.h"
#include "kspm/common/html_report.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/safe_text.h"
#include "kspm/common/strings.h"
#include "kspm/common/time.h"

// `kspm-agent scan` (one scan, results on stdout or a file) and `kspm-agent checks` (the
// catalogue).
namespace kspm::agent::commands {

int RunScanCommand(const Options& o) {
  common::Format format;
  if (auto s = common::ParseFormat(o.format, &format); !s.ok()) Die(std::string(s.message()));
  const auto gate = common::ParseGate(o.fail_on, o.min_score);
  if (!gate.ok()) Die(std::string(gate.status().message()));
  const checks::Catalog catalog = LoadCatalog(o.rules_dir);
  const checks::Selection selection = MakeSelection(catalog, o.benchmarks, o.only, o.skip);
  auto host = MakeHost(o.host_root, o.proc_root, o.read_timeout_seconds);
  const v1::NodeReport report = RunScan(*host, catalog, selection, o.node);

  std::ofstream file;
  if (!o.output.empty()) {
    file.open(o.output);
    if (!file) Die("cannot write " + o.output);
  }
  std::ostream& out = o.output.empty() ? std::cout : file;
  std::vector<common::ResultRow> rows;
  const std::string observed = common::FormatRfc3339(common::FromProto(report.finished_at()));
  for (const auto& r : report.results()) {
    rows.push_back({report.node().cluster(), report.node().node_name(), &r, observed});
  }
  std::map<v1::Status, int> counts;
  for (const auto& r : report.results()) counts[r.status()]++;
  switch (format) {
    case common::Format::kJson: {
      nlohmann::json results = nlohmann::json::array();
      for (const auto& r : report.results()) results.push_back(common::ResultToJson(r));
      nlohmann::json totals;
      for (auto s : {v1::STATUS_PASS, v1::STATUS_FAIL, v1::STATUS_WARN, v1::STATUS_MANUAL,
                     v1::STATUS_NOT_APPLICABLE, v1::STATUS_ERROR}) {
        totals[std::string(common::StatusName(s))] = counts[s];
      }
      nlohmann::json doc = {{"schemaVersion", common::kJsonSchemaVersion},
                            {"scan_id", report.scan_id()},
                            {"host_root", report.host_root()},
                            {"node", common::NodeToJson(report.node())},
                            {"totals", totals},
                            {"results", std::move(results)}};
      out << doc.dump(2) << "\n";
      break;
    }
    case common::Format::kCsv:
    case common::Format::kJunit:
    case common::Format::kSarif:
      common::WriteCiFormat(format, rows, out);
      break;
    case common::Format::kHtml: {
      std::vector<const v1::CheckResult*> results;
      for (const auto& r : report.results()) results.push_back(&r);
      common::HtmlReport html;
      html.scope = "node " + report.node().node_name();
      html.source = "kspm-agent " KSPM_VERSION " scan of " + report.host_root();
      html.summary = common::SummarizeResults(results, report.node().node_name(),
                                              report.node().platform_benchmark());
      html.findings =
          common::FindingsOf(results, report.node().cluster(), report.node().node_name());
      out << common::RenderHtmlReport(html);
      break;
    }
    case common::Format::kText: {
      // A host without any component of the catalogue: one line and why, not a table of
      // NOT_APPLICABLE rows.
      if (!o.verbose && report.results_size() > 0 &&
          counts[v1::STATUS_NOT_APPLICABLE] == report.results_size()) {
        std::set<std::string> components;
        for (const auto& r : report.results()) {
          if (!r.component().empty()) components.insert(r.component());
        }
        out << "nothing to check on " << report.node().node_name() << ": no Kubernetes or Docker "
            << "component was found under " << report.host_root() << " (no process, static pod "
            << "manifest or config file of " << common::Join(components, ", ") << "); "
            << report.results_size() << " checks are not applicable (-v lists them)\n";
        break;
      }
      const bool colour = o.output.empty() && common::StdoutWantsColour();
      std::string roles;
      for (int r : report.node().roles()) {
        roles += (roles.empty() ? "" : ",") +
                 std::string(common::RoleName(static_cast<v1::NodeRole>(r)));
      }
      out << "node " << report.node().node_name() << " (" << (roles.empty() ? "no roles" : roles)
          << ") host root " << report.host_root() << "\n";
      if (!report.node().platform().empty()) {
        out << "platform " << report.node().platform() << ": "
            << common::TerminalSafe(report.node().platform_reason()) << "; benchmark "
            << report.node().platform_benchmark() << "\n";
      }
      common::WriteText(rows, out, colour, o.verbose);
      out << "\n"
          << counts[v1::STATUS_PASS] << " pass, " << counts[v1::STATUS_FAIL] << " fail, "
          << counts[v1::STATUS_WARN] << " warn, " << counts[v1::STATUS_MANUAL] << " manual, "
          << counts[v1::STATUS_NOT_APPLICABLE] << " not applicable, " << counts[v1::STATUS_ERROR]
          << " error\n";
      break;
    }
  }
  std::vector<const v1::CheckResult*> results;
  for (const auto& r : report.results()) results.push_back(&r);
  if (const int gated = common::CheckGate("kspm-agent", *gate, results)) return gated;
  if (o.exit_code != 0 && counts[v1::STATUS_FAIL] > 0) return o.exit_code;
  return 0;
}

int RunChecksCommand(const Options& o) {
  if (o.format != "text" && o.format != "json" && o.format != "csv") {
    Die("unknown format '" + o.format + "' (text, json, csv)");
  }
  const checks::Catalog catalog = LoadCatalog(o.rules_dir);
  const checks::Selection selection = MakeSelection(catalog, o.benchmarks, o.only, o.skip, false);
  common::Table table({"BENCHMARK", "ID", "CHECK", "SCORED", "SEVERITY", "TITLE"});
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : catalog.checks()) {
    for (const auto& [benchmark, item] : c.benchmarks) {
      if (!selection.benchmarks.empty() && !selection.benchmarks.contains(benchmark)) continue;
      const std::string severity(common::SeverityName(c.severity));
      table.AddRow(
          {benchmark, item, c.id, c.ScoredIn(benchmark) ? "yes" : "no", severity, c.title});
      list.push_back({{"benchmark", benchmark},
                      {"id", item},
                      {"check_id", c.id},
                      {"scored", c.ScoredIn(benchmark)},
                      {"severity", severity},
                      {"title", c.title},
                      {"component", c.component},
                      {"manual", !c.manual.empty()}});
    }
  }
  if (o.format == "json") {
    std::cout
        << nlohmann::json{{"schemaVersion", common::kJsonSchemaVersion}, {"checks", list}}.dump(2)
        << "\n";
  } else if (o.format == "csv") {
    std::cout << "benchmark,id,check_id,scored,severity,title,component,manual\n";
    for (const auto& c : list) {
      std::cout << common::CsvCell(c["benchmark"]) << ',' << common::CsvCell(c["id"]) << ','
                << common::CsvCell(c["check_id"]) << ','
                << (c["scored"].get<bool>() ? "true" : "false") << ','
                << common::CsvCell(c["severity"]) << ',' << common::CsvCell(c["title"]) << ','
                << common::CsvCell(c["component"]) << ','
                << (c["manual"].get<bool>() ? "true" : "false") << "\n";
    }
  } else {
    table.Print(std::cout, false, 48);
    std::cout << "\n" << table.size() << " checks, catalogue " << catalog.version() << "\n";
  }
  return 0;
}

}  // namespace kspm::agent::commands

#include "kspm/common/export.h"

#include <algorithm>
#include <map>
#include <set>

#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "nlohmann/json.hpp"

namespace kspm::common {
namespace {

// ` [DaemonSet monitoring/node-exporter]` for a cluster result, nothing for a node result.
std::string ObjectSuffix(const v1::CheckResult& r) {
  const std::string object = ResourceKey(r.resource());
  return object.empty() ? "" : " [" + object + "]";
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string Xml(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string Headline(const v1::CheckResult& r) {
  return r.benchmark_id() + " " + r.title() + ": " + r.reason();
}

}  // namespace

absl::Status ParseFormat(std::string_view name, Format* out) {
  static const std::map<std::string, Format, std::less<>> kFormats = {{"text", Format::kText},
                                                                      {"json", Format::kJson},
                                                                      {"csv", Format::kCsv},
                                                                      {"junit", Format::kJunit},
                                                                      {"sarif", Format::kSarif}};
  const auto it = kFormats.find(name);
  if (it == kFormats.end()) {
    return absl::InvalidArgumentError("unknown format '" + std::string(name) +
                                      "' (text, json, csv, junit, sarif)");
  }
  *out = it->second;
  return absl::OkStatus();
}

void WriteCsv(const std::vector<ResultRow>& rows, std::ostream& out) {
  out << "cluster,node,benchmark,id,check_id,status,severity,scored,title,evidence,expected,"
         "reason,resource,accepted\n";
  for (const auto& row : rows) {
    const auto& r = *row.result;
    out << CsvField(row.cluster) << ',' << CsvField(row.node) << ',' << CsvField(r.benchmark())
        << ',' << CsvField(r.benchmark_id()) << ',' << CsvField(r.check_id()) << ','
        << StatusName(r.status()) << ',' << SeverityName(r.severity()) << ','
        << (r.scored() ? "true" : "false") << ',' << CsvField(r.title()) << ','
        << CsvField(EvidenceSummary(r)) << ',' << CsvField(r.expected()) << ','
        << CsvField(r.reason()) << ',' << CsvField(ResourceKey(r.resource())) << ','
        << CsvField(r.has_accepted() ? r.accepted().exception() : "") << '\n';
  }
}

void WriteJunit(const std::vector<ResultRow>& rows, std::ostream& out) {
  std::map<std::string, std::vector<const ResultRow*>> suites;
  for (const auto& row : rows) suites[row.node].push_back(&row);
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"kspm\">\n";
  for (const auto& [node, members] : suites) {
    size_t failures = 0, errors = 0, skipped = 0;
    for (const auto* row : members) {
      switch (row->result->status()) {
        case v1::STATUS_FAIL:
        case v1::STATUS_WARN:
          ++failures;
          break;
        case v1::STATUS_ERROR:
          ++errors;
          break;
        case v1::STATUS_PASS:
          break;
        default:
          ++skipped;
      }
    }
    out << "  <testsuite name=\"" << Xml(node) << "\" tests=\"" << members.size()
        << "\" failures=\"" << failures << "\" errors=\"" << errors << "\" skipped=\"" << skipped
        << "\">\n";
    for (const auto* row : members) {
      const auto& r = *row->result;
      out << "    <testcase classname=\"" << Xml(r.benchmark()) << "\" name=\""
          << Xml(r.benchmark_id() + " " + r.title() + ObjectSuffix(r)) << "\">";
      const std::string body = Xml(r.reason() + "\nevidence: " + EvidenceSummary(r) +
                                   "\nremediation: " + r.remediation());
      switch (r.status()) {
        case v1::STATUS_FAIL:
        case v1::STATUS_WARN:
          out << "<failure type=\"" << StatusName(r.status()) << "\" message=\"" << Xml(r.reason())
              << "\">" << body << "</failure>";
          break;
        case v1::STATUS_ERROR:
          out << "<error message=\"" << Xml(r.reason()) << "\">" << body << "</error>";
          break;
        case v1::STATUS_PASS:
          break;
        default:
          out << "<skipped message=\"" << StatusName(r.status()) << ": " << Xml(r.reason())
              << "\"/>";
      }
      out << "</testcase>\n";
    }
    out << "  </testsuite>\n";
  }
  out << "</testsuites>\n";
}

void WriteSarif(const std::vector<ResultRow>& rows, std::ostream& out) {
  nlohmann::json rules = nlohmann::json::array();
  nlohmann::json results = nlohmann::json::array();
  std::set<std::string> seen;
  for (const auto& row : rows) {
    const auto& r = *row.result;
    if (seen.insert(r.check_id()).second) {
      rules.push_back({{"id", r.check_id()},
                       {"name", r.benchmark() + " " + r.benchmark_id()},
                       {"shortDescription", {{"text", r.title()}}},
                       {"help", {{"text", r.remediation()}}},
                       {"properties", {{"severity", SeverityName(r.severity())}}}});
    }
    const char* level = nullptr;
    switch (r.status()) {
      case v1::STATUS_FAIL:
      case v1::STATUS_ERROR:
        level = "error";
        break;
      case v1::STATUS_WARN:
        level = "warning";
        break;
      default:
        break;
    }
    if (level == nullptr) continue;
    nlohmann::json result = {
        {"ruleId", r.check_id()},
        {"level", level},
        {"message", {{"text", Headline(r) + " [" + EvidenceSummary(r) + "]"}}},
        {"properties",
         {{"node", row.node}, {"cluster", row.cluster}, {"status", StatusName(r.status())}}}};
    const std::string object = ResourceKey(r.resource());
    if (!object.empty()) result["properties"]["resource"] = object;
    // An accepted finding is still reported, marked the way SARIF viewers understand.
    if (r.has_accepted()) {
      result["suppressions"] = {
          {{"kind", "external"}, {"status", "accepted"}, {"justification", r.accepted().reason()}}};
    }
    std::string path;
    for (const auto& e : r.evidence()) {
      if (!e.path().empty()) {
        path = e.path();
        break;
      }
    }
    if (!path.empty()) {
      result["locations"] = {
          {{"physicalLocation", {{"artifactLocation", {{"uri", "file://" + path}}}}}}};
    } else if (!object.empty()) {
      result["locations"] = {
          {{"logicalLocations", {{{"name", row.cluster + "/" + object}, {"kind", "object"}}}}}};
    } else {
      result["locations"] = {
          {{"logicalLocations", {{{"name", row.node + "/" + r.component()}, {"kind", "module"}}}}}};
    }
    results.push_back(std::move(result));
  }
  nlohmann::json doc = {
      {"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
      {"version", "2.1.0"},
      {"runs",
       {{{"tool",
          {{"driver", {{"name", "kspm"}, {"version", KSPM_VERSION}, {"rules", std::move(rules)}}}}},
         {"results", std::move(results)}}}}};
  out << doc.dump(2) << '\n';
}

void WriteText(const std::vector<ResultRow>& rows, std::ostream& out, bool colour, bool verbose) {
  // The RESOURCE column only when cluster results are among the rows.
  const bool objects = std::any_of(rows.begin(), rows.end(), [](const ResultRow& row) {
    return !ResourceKey(row.result->resource()).empty();
  });
  std::vector<std::string> columns = {"NODE", "STATUS", "BENCHMARK", "ID", "SEVERITY", "TITLE"};
  if (objects) columns.insert(columns.begin() + 5, "RESOURCE");
  Table table(columns);
  size_t shown = 0;
  for (const auto& row : rows) {
    const auto& r = *row.result;
    // People first need what fails; the rest is counted in the totals line.
    if (!verbose && r.status() != v1::STATUS_FAIL && r.status() != v1::STATUS_WARN &&
        r.status() != v1::STATUS_ERROR) {
      continue;
    }
    // The table colours a cell that is exactly a status name; "FAIL (accepted)" stays plain.
    std::vector<std::string> cells = {
        row.node,
        std::string(StatusName(r.status())) + (r.has_accepted() ? " (accepted)" : ""),
        r.benchmark(),
        r.benchmark_id(),
        std::string(SeverityName(r.severity())),
        r.title()};
    if (objects) cells.insert(cells.begin() + 5, ResourceKey(r.resource()));
    table.AddRow(std::move(cells));
    ++shown;
  }
  if (shown > 0) table.Print(out, colour);
  // Evidence for every failing, warning and erroring result.
  bool header = false;
  for (const auto& row : rows) {
    const auto& r = *row.result;
    if (r.status() != v1::STATUS_FAIL && r.status() != v1::STATUS_WARN &&
        r.status() != v1::STATUS_ERROR) {
      continue;
    }
    if (!header) {
      out << "\n";
      header = true;
    }
    const std::string status(StatusName(r.status()));
    const std::string object = ResourceKey(r.resource());
    out << (colour ? Colourise(status) : status) << (r.has_accepted() ? " (accepted)" : "") << " "
        << r.benchmark_id() << " " << r.title() << " [" << row.node
        << (object.empty() ? "" : ": " + object) << "]\n";
    for (const auto& e : r.evidence()) out << "    read:     " << EvidenceText(e) << "\n";
    out << "    expected: " << r.expected() << "\n";
    out << "    reason:   " << r.reason() << "\n";
    if (r.has_accepted()) {
      const auto& a = r.accepted();
      out << "    accepted: until " << FormatRfc3339(FromProto(a.expires_at())) << " by '"
          << a.exception() << "'" << (a.source().empty() ? "" : " (" + a.source() + ")") << ": "
          << a.reason() << "\n";
    }
    if (verbose) out << "    fix:      " << r.remediation() << "\n";
  }
}

}  // namespace kspm::common

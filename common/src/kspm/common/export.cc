#include "kspm/common/export.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

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

std::string Headline(const v1::CheckResult& r) {
  return r.benchmark_id() + " " + r.title() + ": " + r.reason();
}

}  // namespace

std::string CsvCell(const std::string& text) {
  std::string s = text;
  if (!s.empty() &&
      (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r')) {
    s.insert(0, 1, '\'');
  }
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

absl::Status ParseFormat(std::string_view name, Format* out) {
  static const std::map<std::string, Format, std::less<>> kFormats = {
      {"text", Format::kText},   {"json", Format::kJson},   {"csv", Format::kCsv},
      {"junit", Format::kJunit}, {"sarif", Format::kSarif}, {"html", Format::kHtml}};
  const auto it = kFormats.find(name);
  if (it == kFormats.end()) {
    return absl::InvalidArgumentError("unknown format '" + std::string(name) +
                                      "' (text, json, csv, junit, sarif, html)");
  }
  *out = it->second;
  return absl::OkStatus();
}

void WriteCsv(const std::vector<ResultRow>& rows, std::ostream& out) {
  out << "cluster,node,benchmark,id,check_id,status,severity,scored,title,evidence,expected,"
         "reason,resource,accepted,remediation,observed_at\n";
  for (const auto& row : rows) {
    const auto& r = *row.result;
    out << CsvCell(row.cluster) << ',' << CsvCell(row.node) << ',' << CsvCell(r.benchmark()) << ','
        << CsvCell(r.benchmark_id()) << ',' << CsvCell(r.check_id()) << ','
        << StatusName(r.status()) << ',' << SeverityName(r.severity()) << ','
        << (r.scored() ? "true" : "false") << ',' << CsvCell(r.title()) << ','
        << CsvCell(EvidenceSummary(r)) << ',' << CsvCell(r.expected()) << ',' << CsvCell(r.reason())
        << ',' << CsvCell(ResourceKey(r.resource())) << ','
        << CsvCell(r.has_accepted() ? r.accepted().exception() : "") << ','
        << CsvCell(r.remediation()) << ',' << CsvCell(row.observed_at) << '\n';
  }
}

void WriteJunit(const std::vector<ResultRow>& rows, std::ostream& out) {
  std::map<std::string, std::vector<const ResultRow*>> suites;
  for (const auto& row : rows) suites[row.node].push_back(&row);
  const std::string now = FormatRfc3339(Clock::now());
  size_t total = 0, total_failures = 0, total_errors = 0;
  std::ostringstream body;
  int id = 0;
  for (const auto& [node, members] : suites) {
    size_t failures = 0, errors = 0, skipped = 0;
    std::string observed;
    for (const auto* row : members) {
      observed = std::max(observed, row->observed_at);
      switch (row->result->status()) {
        case v1::STATUS_FAIL:
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
    total += members.size();
    total_failures += failures;
    total_errors += errors;
    // The XSD's timestamp is an ISO 8601 date-time without a zone designator.
    std::string timestamp = observed.empty() ? now : observed;
    if (!timestamp.empty() && timestamp.back() == 'Z') timestamp.pop_back();
    body << "  <testsuite name=\"" << EscapeMarkup(node.empty() ? "cluster" : node) << "\" tests=\""
         << members.size() << "\" failures=\"" << failures << "\" errors=\"" << errors
         << "\" skipped=\"" << skipped << "\" time=\"0\" timestamp=\"" << EscapeMarkup(timestamp)
         << "\" hostname=\"" << EscapeMarkup(node.empty() ? "cluster" : node) << "\" id=\"" << id++
         << "\" package=\"kspm\">\n";
    for (const auto* row : members) {
      const auto& r = *row->result;
      body << "    <testcase classname=\"" << EscapeMarkup(r.benchmark()) << "\" name=\""
           << EscapeMarkup(r.benchmark_id() + " " + r.title() + ObjectSuffix(r))
           << "\" time=\"0\">";
      const std::string text = EscapeMarkup(r.reason() + "\nevidence: " + EvidenceSummary(r) +
                                            "\nremediation: " + r.remediation());
      switch (r.status()) {
        case v1::STATUS_FAIL:
          body << "<failure type=\"FAIL\" message=\"" << EscapeMarkup(r.reason()) << "\">" << text
               << "</failure>";
          break;
        case v1::STATUS_ERROR:
          body << "<error type=\"ERROR\" message=\"" << EscapeMarkup(r.reason()) << "\">" << text
               << "</error>";
          break;
        case v1::STATUS_PASS:
          break;
        case v1::STATUS_WARN:
          body << "<skipped message=\"WARN (not scored): " << EscapeMarkup(r.reason()) << "\"/>";
          break;
        default:
          body << "<skipped message=\"" << StatusName(r.status()) << ": "
               << EscapeMarkup(r.reason()) << "\"/>";
      }
      body << "</testcase>\n";
    }
    body << "    <system-out/>\n    <system-err/>\n  </testsuite>\n";
  }
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"kspm\" tests=\"" << total
      << "\" failures=\"" << total_failures << "\" errors=\"" << total_errors << "\" time=\"0\">\n"
      << body.str() << "</testsuites>\n";
}

namespace {

// GitHub's security-severity scale: over 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low.
const char* SecuritySeverity(v1::Severity severity) {
  switch (severity) {
    case v1::SEVERITY_CRITICAL:
      return "9.5";
    case v1::SEVERITY_HIGH:
      return "8.0";
    case v1::SEVERITY_MEDIUM:
      return "5.5";
    case v1::SEVERITY_LOW:
      return "3.0";
    default:
      return "1.0";
  }
}

std::string Sha256Hex(const std::string& text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

// A path segment of an artifact URI: percent-encoded where a URI needs it.
std::string UriSegment(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// Where a result points: the file read on the node, the component, or the cluster object.
std::string ArtifactUri(const ResultRow& row) {
  const auto& r = *row.result;
  const auto& res = r.resource();
  if (!res.kind().empty() && res.kind() != "Cluster") {
    return "k8s/" + UriSegment(res.namespace_().empty() ? "_cluster" : res.namespace_()) + "/" +
           UriSegment(res.kind()) + "/" + UriSegment(res.name());
  }
  const std::string node = row.node.empty() ? "cluster" : row.node;
  for (const auto& e : r.evidence()) {
    if (e.path().empty() || e.path().front() != '/') continue;
    // A file read through a process's view (`/proc/1519/root/var/lib/...`) is named by its path
    // in that view: the pid changes between runs and would make a new alert of the same one.
    std::string_view path = e.path();
    if (path.starts_with("/proc/")) {
      const size_t root = path.find("/root/");
      const std::string_view pid = path.substr(6, root == std::string_view::npos ? 0 : root - 6);
      if (!pid.empty() && std::all_of(pid.begin(), pid.end(), ::isdigit)) {
        path = path.substr(root + 5);
      }
    }
    return "nodes/" + UriSegment(node) + UriSegment(path);
  }
  if (res.kind() == "Cluster" || r.component().empty()) return "k8s/_cluster";
  return "nodes/" + UriSegment(node) + "/" + UriSegment(r.component());
}

}  // namespace

void WriteSarif(const std::vector<ResultRow>& rows, std::ostream& out) {
  nlohmann::json rules = nlohmann::json::array();
  nlohmann::json results = nlohmann::json::array();
  std::map<std::string, size_t> rule_index;
  std::set<std::string> clusters;
  for (const auto& row : rows) {
    const auto& r = *row.result;
    const char* level = nullptr;
    switch (r.status()) {
      case v1::STATUS_FAIL:
        level = "error";
        break;
      case v1::STATUS_WARN:
      case v1::STATUS_ERROR:
        level = "warning";
        break;
      default:
        break;
    }
    if (level == nullptr) continue;
    clusters.insert(row.cluster);
    // One rule per benchmark item: CIS 5.1.1 and NSA's item never share a rule.
    const std::string rule_id = r.benchmark() + "/" + r.benchmark_id();
    auto [it, added] = rule_index.emplace(rule_id, rules.size());
    if (added) {
      nlohmann::json tags = {"security", r.benchmark()};
      if (r.benchmark().starts_with("cis-")) tags.push_back("cis");
      tags.push_back(r.scored() ? "automated" : "manual");
      rules.push_back(
          {{"id", rule_id},
           {"name", r.check_id()},
           {"shortDescription", {{"text", r.benchmark_id() + " " + r.title()}}},
           {"fullDescription",
            {{"text", r.title() + " (" + r.benchmark() + " " + r.benchmark_id() + ", " +
                          (r.scored() ? "automated" : "manual") + ")"}}},
           {"help",
            {{"text", r.remediation().empty() ? r.title() : r.remediation()},
             {"markdown",
              "**Remediation:** " + (r.remediation().empty() ? r.title() : r.remediation())}}},
           {"defaultConfiguration", {{"level", r.scored() ? "error" : "warning"}}},
           {"properties",
            {{"tags", std::move(tags)},
             {"precision", "very-high"},
             {"security-severity", SecuritySeverity(r.severity())},
             {"problem.severity", r.scored() ? "error" : "warning"}}}});
    }
    const std::string object = ResourceKey(r.resource());
    const std::string uri = ArtifactUri(row);
    const std::string fingerprint = Sha256Hex(row.cluster + '\x1f' + row.node + '\x1f' + rule_id +
                                              '\x1f' + r.check_id() + '\x1f' + object);
    const std::string logical =
        object.empty() ? (row.node.empty() ? "cluster" : row.node) + "/" + r.component()
                       : row.cluster + "/" + object;
    nlohmann::json result = {
        {"ruleId", rule_id},
        {"ruleIndex", it->second},
        {"level", level},
        {"message", {{"text", Headline(r) + " [" + EvidenceSummary(r) + "]"}}},
        {"locations",
         {{{"physicalLocation",
            {{"artifactLocation", {{"uri", uri}}}, {"region", {{"startLine", 1}}}}},
           {"logicalLocations",
            {{{"fullyQualifiedName", logical}, {"kind", object.empty() ? "module" : "object"}}}}}}},
        // The same finding keeps its fingerprint across runs, so its alert survives re-scans;
        // code scanning matches alerts by primaryLocationLineHash (`HASH:OCCURRENCE`).
        {"partialFingerprints",
         {{"primaryLocationLineHash", fingerprint.substr(0, 16) + ":1"},
          {"kspmFinding/v1", fingerprint}}},
        {"properties",
         {{"node", row.node},
          {"cluster", row.cluster},
          {"check_id", r.check_id()},
          {"status", StatusName(r.status())},
          {"severity", SeverityName(r.severity())}}}};
    if (!object.empty()) result["properties"]["resource"] = object;
    // An accepted finding is still reported, marked the way SARIF viewers understand.
    if (r.has_accepted()) {
      result["suppressions"] = {
          {{"kind", "external"}, {"status", "accepted"}, {"justification", r.accepted().reason()}}};
    }
    results.push_back(std::move(result));
  }
  nlohmann::json run = {{"tool",
                         {{"driver",
                           {{"name", "kspm"},
                            {"version", KSPM_VERSION},
                            {"semanticVersion", KSPM_VERSION},
                            {"rules", std::move(rules)}}}}},
                        {"results", std::move(results)}};
  // GitHub keeps one analysis per category: a cluster's uploads replace each other.
  if (clusters.size() == 1 && !clusters.begin()->empty()) {
    run["automationDetails"] = {{"id", "kspm/" + *clusters.begin() + "/"}};
  }
  nlohmann::json doc = {{"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
                        {"version", "2.1.0"},
                        {"runs", nlohmann::json::array({std::move(run)})}};
  out << doc.dump(2) << '\n';
}

bool WriteCiFormat(Format format, const std::vector<ResultRow>& rows, std::ostream& out) {
  switch (format) {
    case Format::kCsv:
      WriteCsv(rows, out);
      return true;
    case Format::kJunit:
      WriteJunit(rows, out);
      return true;
    case Format::kSarif:
      WriteSarif(rows, out);
      return true;
    default:
      return false;
  }
}

void WriteText(const std::vector<ResultRow>& rows, std::ostream& out, const TextOptions& options) {
  const bool colour = options.colour;
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
    if (!options.all_rows && r.status() != v1::STATUS_FAIL && r.status() != v1::STATUS_WARN &&
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
  if (shown > 0) table.Print(out, colour, 60, options.wrap_width);
  // A labelled line of evidence, wrapped under its label.
  auto labelled = [&](std::string_view label, const std::string& text) {
    const size_t width = options.wrap_width > 34 ? options.wrap_width - 14 : 0;
    const auto lines = WrapText(text, width);
    for (size_t i = 0; i < lines.size(); ++i) {
      out << "    " << (i == 0 ? label : std::string_view("          ")) << lines[i] << "\n";
    }
  };
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
    for (const auto& e : r.evidence()) labelled("read:     ", EvidenceText(e));
    labelled("expected: ", r.expected());
    labelled("reason:   ", r.reason());
    if (r.has_accepted()) {
      const auto& a = r.accepted();
      out << "    accepted: until " << FormatRfc3339(FromProto(a.expires_at())) << " by '"
          << a.exception() << "'" << (a.source().empty() ? "" : " (" + a.source() + ")") << ": "
          << a.reason() << "\n";
    }
    if (options.remediation) labelled("fix:      ", r.remediation());
  }
}

}  // namespace kspm::common

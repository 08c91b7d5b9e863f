#include "kspm/common/render.h"

#include <algorithm>
#include <cstdio>

#include "kspm/common/names.h"
#include "kspm/common/safe_text.h"
#include "kspm/common/time.h"

namespace kspm::common {

nlohmann::json ResultToJson(const v1::CheckResult& result) {
  nlohmann::json evidence = nlohmann::json::array();
  for (const auto& e : result.evidence()) {
    nlohmann::json item = {{"key", e.key()},
                           {"present", e.present()},
                           {"source", e.source()},
                           {"source_kind", SourceKindName(e.source_kind())}};
    if (e.present()) item["value"] = e.value();
    if (!e.path().empty()) item["path"] = e.path();
    if (e.pid() != 0) item["pid"] = e.pid();
    evidence.push_back(std::move(item));
  }
  nlohmann::json out = {
      {"benchmark", result.benchmark()}, {"id", result.benchmark_id()},
      {"check_id", result.check_id()},   {"status", StatusName(result.status())},
      {"scored", result.scored()},       {"severity", SeverityName(result.severity())},
      {"title", result.title()},         {"component", result.component()},
      {"evidence", std::move(evidence)}, {"expected", result.expected()},
      {"reason", result.reason()},       {"remediation", result.remediation()},
  };
  if (result.has_resource()) {
    const auto& r = result.resource();
    out["resource"] = {{"kind", r.kind()},
                       {"namespace", r.namespace_()},
                       {"name", r.name()},
                       {"container", r.container()}};
  }
  if (result.has_accepted()) {
    const auto& a = result.accepted();
    out["accepted"] = {{"exception", a.exception()},
                       {"reason", a.reason()},
                       {"expires_at", FormatRfc3339(FromProto(a.expires_at()))},
                       {"source", a.source()},
                       {"approved_by", a.approved_by()}};
  }
  return out;
}

nlohmann::json StatusCountsJson(const v1::StatusCounts& c) {
  return {{"PASS", c.pass()},
          {"FAIL", c.fail()},
          {"WARN", c.warn()},
          {"MANUAL", c.manual()},
          {"NOT_APPLICABLE", c.not_applicable()},
          {"ERROR", c.error()}};
}

std::string FormatScore(double score) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", score);
  return buf;
}

std::string ResourceKey(const v1::Resource& r) {
  if (r.kind().empty() || r.kind() == "Cluster") return "";
  std::string out =
      r.kind() + " " + (r.namespace_().empty() ? "" : r.namespace_() + "/") + r.name();
  if (!r.container().empty()) out += " [" + r.container() + "]";
  return out;
}

std::string ResourceScope(const v1::CheckResult& result) {
  if (!result.has_resource() || result.resource().kind().empty()) return "";
  const auto& r = result.resource();
  if (r.kind() == "Namespace") return r.name();
  if (!r.namespace_().empty()) return r.namespace_();
  return "(cluster)";
}

nlohmann::json NodeToJson(const v1::NodeIdentity& node) {
  nlohmann::json roles = nlohmann::json::array();
  for (int r : node.roles()) roles.push_back(RoleName(static_cast<v1::NodeRole>(r)));
  nlohmann::json out = {{"name", node.node_name()},
                        {"cluster", node.cluster()},
                        {"roles", std::move(roles)},
                        {"os", node.os()},
                        {"kernel", node.kernel()},
                        {"kubelet_version", node.kubelet_version()},
                        {"container_runtime", node.container_runtime()},
                        {"agent_version", node.agent_version()},
                        {"drift_mode", node.drift_mode()}};
  if (!node.platform().empty()) {
    out["platform"] = {{"name", node.platform()},
                       {"benchmark", node.platform_benchmark()},
                       {"reason", node.platform_reason()}};
  }
  return out;
}

std::string EvidenceText(const v1::Evidence& e) {
  std::string out = e.key();
  if (e.present()) {
    out += (e.key().starts_with("--") ? "=" : ": ");
    out += e.value();
  } else {
    out += " not set";
  }
  out += " (" + e.source() + ")";
  return out;
}

std::string EvidenceSummary(const v1::CheckResult& result) {
  std::string out;
  for (const auto& e : result.evidence()) {
    if (!out.empty()) out += "; ";
    out += EvidenceText(e);
  }
  return out;
}

std::string Colourise(const std::string& status) {
  const char* code = "";
  if (status == "PASS") {
    code = "\033[32m";
  } else if (status == "FAIL") {
    code = "\033[31m";
  } else if (status == "WARN") {
    code = "\033[33m";
  } else if (status == "ERROR") {
    code = "\033[35m";
  } else {
    return status;
  }
  return std::string(code) + status + "\033[0m";
}

void Table::Print(std::ostream& out, bool colour, size_t max_width) const {
  const size_t columns = header_.size();
  std::vector<size_t> width(columns, 0);
  // Cells may hold node-supplied text: control characters are shown, never sent.
  auto cell = [&](const std::vector<std::string>& row, size_t i) -> std::string {
    if (i >= row.size()) return "";
    std::string text = TerminalSafe(row[i]);
    if (i + 1 < columns && text.size() > max_width) return text.substr(0, max_width - 3) + "...";
    return text;
  };
  for (size_t i = 0; i < columns; ++i) {
    width[i] = cell(header_, i).size();
    for (const auto& row : rows_) width[i] = std::max(width[i], cell(row, i).size());
  }
  auto print_row = [&](const std::vector<std::string>& row, bool is_header) {
    std::string line;
    for (size_t i = 0; i < columns; ++i) {
      std::string text = cell(row, i);
      const size_t pad = width[i] - text.size();
      if (!is_header && colour && header_[i] == "STATUS") text = Colourise(text);
      line += text;
      if (i + 1 < columns) line += std::string(pad + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  print_row(header_, true);
  for (const auto& row : rows_) print_row(row, false);
}

}  // namespace kspm::common

#include "kspm/common/render.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kspm/common/names.h"
#include "kspm/common/safe_text.h"
#include "kspm/common/time.h"

namespace kspm::common {

bool StdoutWantsColour() { return ::isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr; }

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

std::string FormatScore(double score, bool evaluated, const v1::StatusCounts& counts) {
  if (evaluated) return FormatScore(score);
  const uint64_t any = counts.pass() + counts.fail() + counts.warn() + counts.manual() +
                       counts.not_applicable() + counts.error();
  const uint64_t only_na = counts.not_applicable();
  return any == 0 || any == only_na ? "n/a" : "n/a (not scored)";
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

std::string EscapeMarkup(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
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
      case '\'':
        out += "&#39;";
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

std::vector<std::string> WrapText(std::string_view text, size_t width) {
  std::vector<std::string> lines;
  if (width == 0 || text.size() <= width) return {std::string(text)};
  std::string line;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find(' ', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(at, end - at);
    at = end + 1;
    while (word.size() > width) {  // a word longer than a line: cut it
      if (!line.empty()) lines.push_back(std::move(line)), line.clear();
      lines.emplace_back(word.substr(0, width));
      word.remove_prefix(width);
    }
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      lines.push_back(std::move(line));
      line.clear();
    }
    if (!line.empty()) line += ' ';
    line += word;
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

bool NaturalLess(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      size_t ei = i, ej = j;
      while (ei < a.size() && digit(a[ei])) ++ei;
      while (ej < b.size() && digit(b[ej])) ++ej;
      std::string_view na = a.substr(i, ei - i), nb = b.substr(j, ej - j);
      while (na.size() > 1 && na.front() == '0') na.remove_prefix(1);
      while (nb.size() > 1 && nb.front() == '0') nb.remove_prefix(1);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ei;
      j = ej;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

size_t TerminalWidth() {
  winsize ws{};
  if (::isatty(STDOUT_FILENO) && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return 0;
}

void Table::Print(std::ostream& out, bool colour, size_t max_width, size_t wrap_width) const {
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
  size_t indent = 0;  // where the last column starts
  for (size_t i = 0; i + 1 < columns; ++i) indent += width[i] + 2;
  // The last column wraps only when enough of the line is left for it.
  const size_t last_width = wrap_width > indent + 20 ? wrap_width - indent : 0;
  auto print_row = [&](const std::vector<std::string>& row, bool is_header) {
    std::string line;
    for (size_t i = 0; i + 1 < columns; ++i) {
      std::string text = cell(row, i);
      const size_t pad = width[i] - text.size();
      if (!is_header && colour && header_[i] == "STATUS") text = Colourise(text);
      line += text;
      line += std::string(pad + 2, ' ');
    }
    const auto last = WrapText(cell(row, columns - 1), last_width);
    for (size_t k = 0; k < last.size(); ++k) {
      std::string text = (k == 0 ? line : std::string(indent, ' ')) + last[k];
      while (!text.empty() && text.back() == ' ') text.pop_back();
      out << text << '\n';
    }
  };
  print_row(header_, true);
  for (const auto& row : rows_) print_row(row, false);
}

}  // namespace kspm::common

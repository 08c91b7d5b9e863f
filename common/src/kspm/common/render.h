#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "kspm/v1/query.pb.h"
#include "kspm/v1/results.pb.h"
#include "nlohmann/json.hpp"

namespace kspm::common {

// The version of every JSON document kspm prints (`schemaVersion`), described by
// schemas/kspm-output.schema.json; raised when a field changes meaning or goes away.
inline constexpr int kJsonSchemaVersion = 1;

// The JSON shape of one result, shared by `kspm-agent scan --format json` and kspmctl:
// benchmark, id, check_id, status, scored, severity, title, component, evidence[], expected,
// reason, remediation and, for cluster findings, resource.
// `accepted` (exception, reason, expires_at, source, approved_by) when an exception accepted it.
nlohmann::json ResultToJson(const v1::CheckResult& result);
nlohmann::json NodeToJson(const v1::NodeIdentity& node);
// `{"PASS": n, "FAIL": n, "WARN": n, "MANUAL": n, "NOT_APPLICABLE": n, "ERROR": n}`.
nlohmann::json StatusCountsJson(const v1::StatusCounts& counts);
// A score as shown in tables: one decimal (`82.9`).
std::string FormatScore(double score);
// A scope's score for people: one decimal when something scored was evaluated; else `n/a`, and
// `n/a (not scored)` when the scope has results but none of them is scored.
std::string FormatScore(double score, bool evaluated, const v1::StatusCounts& counts);

// The object a cluster result is about, for people and as part of its key in the store:
// `DaemonSet monitoring/node-exporter [node-exporter]`, `ClusterRoleBinding ops-admin`; empty for
// node results and for results about the cluster as a whole (kind `Cluster` or none).
std::string ResourceKey(const v1::Resource& resource);
// The namespace a cluster result is scored under: a Namespace object's own name, a namespaced
// object's namespace, `(cluster)` for cluster-scoped objects; empty for node results.
std::string ResourceScope(const v1::CheckResult& result);

// Text for XML and HTML, in content or a quoted attribute: & < > " ' escaped, control
// characters other than newline and tab (not allowed in XML 1.0) made spaces.
std::string EscapeMarkup(std::string_view text);

// One line of evidence for people: `--anonymous-auth=true (flag, pid 812)`.
std::string EvidenceText(const v1::Evidence& evidence);
// All evidence of a result joined by "; ".
std::string EvidenceSummary(const v1::CheckResult& result);

// Whether text written to standard output may be coloured: it is a terminal and NO_COLOR
// (no-color.org) is not set. Output to a file (`-o`) is never coloured.
bool StdoutWantsColour();

// A column-aligned table for terminals. Colour (ANSI) only when asked, for the status column.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Columns wider than `max_width` are cut with an ellipsis; the last column is never cut, and
  // with `wrap_width` (a terminal's width) it wraps at spaces, continuing under itself.
  void Print(std::ostream& out, bool colour, size_t max_width = 60, size_t wrap_width = 0) const;
  size_t size() const { return rows_.size(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Splits `text` into lines of at most `width` characters at spaces (a word longer than the line
// is cut); `width` 0 leaves it whole.
std::vector<std::string> WrapText(std::string_view text, size_t width);

// Orders ids as people count: `5.1.2` before `5.1.10`, `4.2` before `4.2.1` (runs of digits
// compare by value).
bool NaturalLess(std::string_view a, std::string_view b);

// The width of the terminal on standard output, or 0 when it is not a terminal.
size_t TerminalWidth();

// ANSI colour for a status name (PASS green, FAIL red, WARN yellow, ERROR magenta).
std::string Colourise(const std::string& status_name);

}  // namespace kspm::common

#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "kspm/v1/results.pb.h"

namespace kspm::common {

// One result of one node, as exported.
struct ResultRow {
  std::string cluster;
  std::string node;
  const v1::CheckResult* result = nullptr;
  // When the verdict was read (RFC 3339), if known: the scan's time or the store's.
  std::string observed_at;
};

// Output formats shared by `kspm-agent scan` and `kspmctl export`.
enum class Format { kText, kJson, kCsv, kJunit, kSarif, kHtml };
[[nodiscard]] absl::Status ParseFormat(std::string_view name, Format* out);

// One CSV cell: RFC 4180 quoting, and a cell a spreadsheet would run as a formula (starting
// with =, +, -, @, a tab or a carriage return) is prefixed with ' (OWASP's advice on CSV
// injection), so evidence read from a hostile host cannot run in the reader's spreadsheet.
std::string CsvCell(const std::string& text);
// CSV with a header: cluster,node,benchmark,id,check_id,status,severity,scored,title,evidence,
// expected,reason,resource,accepted,remediation,observed_at.
void WriteCsv(const std::vector<ResultRow>& rows, std::ostream& out);
// JUnit XML as Jenkins and GitLab read it: one test suite per node (hostname, timestamp, time),
// one test case per result. FAIL is a failure and ERROR an error; WARN (an unscored item, as
// kube-bench writes it), MANUAL and NOT_APPLICABLE are skipped, so a pipeline moving from
// kube-bench does not fail on Manual items.
void WriteJunit(const std::vector<ResultRow>& rows, std::ostream& out);
// SARIF 2.1.0 for GitHub code scanning: one rule per (benchmark, item), with its
// security-severity and tags; one result per FAIL, WARN and ERROR, each with a physical
// location (the file read on the node, `nodes/NODE/PATH`; else `nodes/NODE/COMPONENT`; a
// cluster object `k8s/NAMESPACE/KIND/NAME`), a logical location and a partial fingerprint that
// stays the same across runs.
void WriteSarif(const std::vector<ResultRow>& rows, std::ostream& out);
// Writes `rows` in a CI format (csv, junit or sarif) and returns true; false (nothing written)
// for text and json, which each command writes in its own shape.
bool WriteCiFormat(Format format, const std::vector<ResultRow>& rows, std::ostream& out);

// The plain text report for people: a table of failing, warning and erroring results (every
// row given with `all_rows`), then the evidence of each of them, with the remediation when
// asked; long text wraps at `wrap_width` (a terminal's width; 0: no wrapping).
struct TextOptions {
  bool colour = false;
  bool all_rows = false;
  bool remediation = false;
  size_t wrap_width = 0;
};
void WriteText(const std::vector<ResultRow>& rows, std::ostream& out, const TextOptions& options);
// `verbose`: every row and the remediation.
inline void WriteText(const std::vector<ResultRow>& rows, std::ostream& out, bool colour,
                      bool verbose) {
  WriteText(rows, out, TextOptions{colour, verbose, verbose, 0});
}

}  // namespace kspm::common

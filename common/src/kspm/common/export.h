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
};

// Output formats shared by `kspm-agent scan` and `kspmctl export`.
enum class Format { kText, kJson, kCsv, kJunit, kSarif };
[[nodiscard]] absl::Status ParseFormat(std::string_view name, Format* out);

// CSV with a header: cluster,node,benchmark,id,check_id,status,severity,scored,title,evidence,
// expected,reason. RFC 4180 quoting.
void WriteCsv(const std::vector<ResultRow>& rows, std::ostream& out);
// JUnit XML: one test suite per node, one test case per result; FAIL is a failure, ERROR an
// error, WARN a failure of an unscored item, NOT_APPLICABLE and MANUAL are skipped.
void WriteJunit(const std::vector<ResultRow>& rows, std::ostream& out);
// SARIF 2.1.0: one rule per check, one result per FAIL/WARN/ERROR with the evidence as message
// and the first file path read as location.
void WriteSarif(const std::vector<ResultRow>& rows, std::ostream& out);
// The plain text report for people: a table of failing, warning and erroring results (every
// result when `verbose`), then the evidence of each of them.
void WriteText(const std::vector<ResultRow>& rows, std::ostream& out, bool colour, bool verbose);

}  // namespace kspm::common

#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/v1/results.pb.h"

// The gates a CI run puts on a scan: `--fail-on SEVERITY` and `--min-score N`, the same on
// `kspm-agent scan`, `kspm-collector scan-cluster` and kspmctl.
namespace kspm::common {

// The exit code of a scan that fails its gate (as kspmctl's --fail-on).
inline constexpr int kExitGate = 3;

struct Gate {
  std::optional<v1::Severity> fail_on;  // a FAIL at or above this severity fails the gate
  std::optional<double> min_score;      // a score below this fails the gate
  bool empty() const { return !fail_on && !min_score; }
};

// Reads the flags' values ("" when not given). The error names the flag and what it takes.
[[nodiscard]] absl::StatusOr<Gate> ParseGate(const std::string& fail_on,
                                             const std::string& min_score);

// Why `results` fail the gate ("2 FAIL at high or above: 4.2.1, 1.2.29"; "score 61.5 is below
// 80"), or empty when they pass. Accepted results (exceptions) never fail it; a score with
// nothing scored evaluated is n/a and passes, said by `note` when given.
std::string GateFailure(const Gate& gate, const std::vector<const v1::CheckResult*>& results,
                        std::string* note = nullptr);

// Applies the gate (when set) for `program`: says on stderr why the results fail it (and the
// n/a note), and returns kExitGate then, else 0.
int CheckGate(std::string_view program, const Gate& gate,
              const std::vector<const v1::CheckResult*>& results);

}  // namespace kspm::common

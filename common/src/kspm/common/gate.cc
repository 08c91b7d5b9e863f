#include "kspm/common/gate.h"

#include <algorithm>
#include <charconv>
#include <iostream>

#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"
#include "kspm/common/strings.h"

namespace kspm::common {

absl::StatusOr<Gate> ParseGate(const std::string& fail_on, const std::string& min_score) {
  Gate gate;
  if (!fail_on.empty()) {
    gate.fail_on = ParseSeverity(fail_on);
    if (!gate.fail_on) {
      return absl::InvalidArgumentError("--fail-on: unknown severity '" + fail_on +
                                        "' (critical, high, medium, low, info)");
    }
  }
  if (!min_score.empty()) {
    double value = 0;
    const auto [end, ec] =
        std::from_chars(min_score.data(), min_score.data() + min_score.size(), value);
    if (ec != std::errc() || end != min_score.data() + min_score.size() || value < 0 ||
        value > 100) {
      return absl::InvalidArgumentError("--min-score: '" + min_score +
                                        "' is not a score between 0 and 100");
    }
    gate.min_score = value;
  }
  return gate;
}

std::string GateFailure(const Gate& gate, const std::vector<const v1::CheckResult*>& results,
                        std::string* note) {
  std::vector<std::string> why;
  if (gate.fail_on) {
    std::vector<std::string> items;
    size_t n = 0;
    for (const auto* r : results) {
      if (r->status() == v1::STATUS_FAIL && !r->has_accepted() && r->severity() >= *gate.fail_on) {
        ++n;
        const std::string id = r->benchmark_id().empty() ? r->check_id() : r->benchmark_id();
        if (std::find(items.begin(), items.end(), id) == items.end()) items.push_back(id);
      }
    }
    if (n > 0) {
      const bool more = items.size() > 10;
      if (more) items.resize(10);
      why.push_back(std::to_string(n) + " FAIL at " + std::string(SeverityName(*gate.fail_on)) +
                    " or above: " + Join(items, ", ") + (more ? ", ..." : ""));
    }
  }
  if (gate.min_score) {
    ScoreAccumulator score;
    for (const auto* r : results) {
      // An accepted FAIL counts as settled, the way the exception says.
      const v1::Status status =
          r->has_accepted() && r->status() == v1::STATUS_FAIL ? v1::STATUS_PASS : r->status();
      score.Add(status, r->severity(), r->scored());
    }
    if (!score.evaluated()) {
      if (note != nullptr) *note = "score n/a: nothing scored was evaluated";
    } else if (score.Score() < *gate.min_score) {
      why.push_back("score " + FormatScore(score.Score()) + " is below " +
                    FormatScore(*gate.min_score));
    }
  }
  return Join(why, "; ");
}

int CheckGate(std::string_view program, const Gate& gate,
              const std::vector<const v1::CheckResult*>& results) {
  if (gate.empty()) return 0;
  std::string note;
  const std::string failed = GateFailure(gate, results, &note);
  if (!note.empty()) std::cerr << program << ": " << note << "\n";
  if (failed.empty()) return 0;
  std::cerr << program << ": gate failed: " << failed << "\n";
  return kExitGate;
}

}  // namespace kspm::common

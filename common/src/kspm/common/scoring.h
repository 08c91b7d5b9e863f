#pragma once

#include <cstdint>
#include <string>

#include "kspm/v1/query.pb.h"
#include "kspm/v1/results.pb.h"

// The one home of kspm's score, used by the store's summary, the cluster scan's per-namespace
// scores and the gates of `kspm-agent scan` and `scan-cluster` (README "Scores").
namespace kspm::common {

// The part of a benchmark item id a section score groups by: `1.2.3` -> `1`, `pod.privileged` ->
// `pod` (the store's summaries, its migration 5, and reports made without a collector).
inline std::string SectionOf(const std::string& benchmark_id) {
  return benchmark_id.substr(0, benchmark_id.find('.'));
}

// Severity weight used by scores: info 1, low 2, medium 4, high 7, critical 10.
int SeverityWeight(v1::Severity severity);

// Score = 100 * weight of passing scored results / weight of scored results that were evaluated
// (PASS, FAIL, ERROR). Unscored, manual and not-applicable results do not count; with nothing
// scored evaluated the score is 100. Counts take every result.
class ScoreAccumulator {
 public:
  // Adds `n` results of one status, severity and scoring.
  void Add(v1::Status status, v1::Severity severity, bool scored, uint32_t n = 1);
  double Score() const { return total_weight_ == 0 ? 100.0 : 100.0 * pass_weight_ / total_weight_; }
  const v1::StatusCounts& counts() const { return counts_; }
  // Whether any scored result was evaluated (PASS, FAIL or ERROR); without one the score is
  // n/a, shown as such, though Score() answers 100.
  bool evaluated() const { return total_weight_ > 0; }
  v1::Score ToScore(const std::string& scope) const;

 private:
  v1::StatusCounts counts_;
  double pass_weight_ = 0;
  double total_weight_ = 0;
};

}  // namespace kspm::common

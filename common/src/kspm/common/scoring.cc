#include "kspm/common/scoring.h"

#include "kspm/common/names.h"

namespace kspm::common {

int SeverityWeight(v1::Severity severity) {
  switch (severity) {
    case v1::SEVERITY_CRITICAL:
      return 10;
    case v1::SEVERITY_HIGH:
      return 7;
    case v1::SEVERITY_MEDIUM:
      return 4;
    case v1::SEVERITY_LOW:
      return 2;
    default:
      return 1;
  }
}

void ScoreAccumulator::Add(v1::Status status, v1::Severity severity, bool scored, uint32_t n) {
  common::AddStatusCount(counts_, status, n);
  if (!scored) return;
  const double w = SeverityWeight(severity) * static_cast<double>(n);
  if (status == v1::STATUS_PASS) {
    pass_weight_ += w;
    total_weight_ += w;
  } else if (status == v1::STATUS_FAIL || status == v1::STATUS_ERROR) {
    total_weight_ += w;
  }
}

v1::Score ScoreAccumulator::ToScore(const std::string& scope) const {
  v1::Score s;
  s.set_scope(scope);
  s.set_score(Score());
  s.set_evaluated(evaluated());
  s.set_pass_weight(pass_weight_);
  s.set_total_weight(total_weight_);
  *s.mutable_counts() = counts_;
  return s;
}

}  // namespace kspm::common

#pragma once

// Accepted findings: a user decides that a finding is known and tolerated, for a reason and until
// a date. An accepted finding keeps its verdict (FAIL stays FAIL and keeps its weight in scores)
// and carries the acceptance; it is never shown as PASS. Expired exceptions no longer apply and
// say so in the finding's reason.
//
// File format (YAML):
//   exceptions:
//     - name: node-exporter-host-access        # required, unique
//       checks: [pod.host-pid, pod.host-path, 5.2.3]   # check ids or item ids; required
//       namespaces: [monitoring]                # optional; `*` globs allowed in every list
//       kinds: [DaemonSet]                      # optional
//       names: [node-exporter]                  # optional
//       containers: [node-exporter]             # optional: every container at fault must match
//       labels: {app.kubernetes.io/name: node-exporter}   # optional: object or pod labels
//       reason: reads /proc and / of the node to export host metrics   # required
//       expires: 2027-06-30                     # required: a date (end of day, UTC) or RFC 3339
//       approved_by: platform-team              # optional
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/collector/cluster/catalog.h"
#include "kspm/collector/cluster/evaluators.h"
#include "kspm/common/time.h"

namespace kspm::collector::cluster {

struct ExceptionRule {
  std::string name;
  std::vector<std::string> checks;  // check ids or benchmark item ids ("*": every check)
  std::vector<std::string> namespaces, kinds, names, containers;
  std::map<std::string, std::string> labels;
  std::string reason;
  std::string approved_by;
  common::Clock::time_point expires;
  std::string expires_text;  // as written
  std::string source;        // `file:line`
};

class ExceptionSet {
 public:
  ExceptionSet() = default;
  explicit ExceptionSet(std::vector<ExceptionRule> rules) : rules_(std::move(rules)) {}

  // Parses a file's text; errors name `name` and the line. Unknown keys are errors (a typo in
  // `namespaces` must not widen an exception to every namespace).
  [[nodiscard]] static absl::StatusOr<ExceptionSet> Parse(const std::string& text,
                                                          const std::string& name);
  [[nodiscard]] static absl::StatusOr<ExceptionSet> Load(const std::string& path);

  // The rule that accepts `finding` of `check` at `now`, or null. `expired` is set to the first
  // matching rule that has expired, when no valid rule matches.
  const ExceptionRule* Match(const CheckDef& check, const Finding& finding,
                             common::Clock::time_point now, const ExceptionRule** expired) const;

  const std::vector<ExceptionRule>& rules() const { return rules_; }
  bool empty() const { return rules_.empty(); }

 private:
  std::vector<ExceptionRule> rules_;
};

// `*` matches any run of characters; everything else literally.
bool GlobMatch(std::string_view pattern, std::string_view text);

}  // namespace kspm::collector::cluster

#pragma once

#include <map>
#include <string>
#include <vector>

#include "kspm/common/time.h"
#include "kspm/v1/query.pb.h"
#include "kspm/v1/results.pb.h"

// The HTML posture report (`kspmctl report --format html`, `kspm-agent scan --format html`): one
// self-contained file, charts drawn as inline SVG by this code, no script or style from the
// network, so it opens offline and can be attached to an audit as it is.
namespace kspm::common {

struct TrendPoint {
  Clock::time_point at;
  double score = 0;  // 0..100
};

struct HtmlReport {
  std::string scope;   // what the report covers: "cluster prod", "node worker-1"
  std::string source;  // where it was read: "collector 10.0.0.5:7443", "kspm-agent scan of /"
  Clock::time_point generated = Clock::now();
  v1::SummaryResponse summary;
  // Results that need a look (FAIL and ERROR; others are dropped), any order: shown by severity.
  std::vector<v1::Finding> findings;
  size_t max_findings = 2000;  // detail rows; the rest are counted, not shown
  std::vector<v1::NodeInfo> nodes;
  // Score per benchmark over the window, oldest first (ReplayTrend).
  std::map<std::string, std::vector<TrendPoint>> trend;
  std::string trend_window;  // "30d"; empty: no trend section
  std::string trend_note;    // how the trend was made and what it leaves out
};

std::string RenderHtmlReport(const HtmlReport& report);

// One node's results scored as the collector's summary scores them (overall, per benchmark,
// section and namespace; one node). `judged_by`: the Kubernetes benchmark the node is judged by
// (its platform's); results under other Kubernetes benchmarks (`--benchmark all`) count for
// their benchmark's score only, not the overall one. Empty: every result counts.
v1::SummaryResponse SummarizeResults(const std::vector<const v1::CheckResult*>& results,
                                     const std::string& node, const std::string& judged_by = "");
// The results as findings of one node, for a report made without a collector.
std::vector<v1::Finding> FindingsOf(const std::vector<const v1::CheckResult*>& results,
                                    const std::string& cluster, const std::string& node);

// The score of each benchmark in `benchmarks` (current weights) back through `history` (verdict
// changes, newest first, with severity, scoring and the result's current status): each change
// undone gives the score before it. Points oldest first, from `since` (or, when `truncated`:
// the history holds only the latest changes, from the oldest change given). A result's chain of
// changes is followed back from its current status; a change that does not lead to the status
// after it (the object was deleted and created again, or the result is gone) ends that result's
// replay, since the current weights hold only its present life.
std::map<std::string, std::vector<TrendPoint>> ReplayTrend(
    const google::protobuf::RepeatedPtrField<v1::Score>& benchmarks,
    const std::vector<v1::Transition>& history, Clock::time_point since, bool truncated = false);

}  // namespace kspm::common

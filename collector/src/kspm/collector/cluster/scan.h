#pragma once

// One evaluation of a cluster: every check of the catalogue over a snapshot, exceptions applied,
// one CheckResult per (finding, benchmark).
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/collector/cluster/catalog.h"
#include "kspm/collector/cluster/exceptions.h"
#include "kspm/collector/cluster/system_policy.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/object.h"
#include "kspm/common/time.h"
#include "kspm/v1/results.pb.h"

namespace kspm::collector::cluster {

class Rbac;

// Part of an evaluation, for a watched cluster (watch.h): some checks over everything, checks
// judged per workload for some workloads only, and checks judged per namespace for some
// namespaces only. Their results replace only those workloads' or namespaces' results
// (store::ResultScope).
struct Focus {
  std::set<std::string> checks;            // check ids evaluated over the whole snapshot
  std::set<std::string> workload_checks;   // check ids evaluated for `workloads` alone
  std::set<WorkloadKey> workloads;         // as reported (kind, namespace, name)
  std::set<std::string> namespace_checks;  // check ids evaluated for `namespaces` alone
  std::set<std::string> namespaces;
};

struct ScanOptions {
  SystemPolicy policy;
  const ExceptionSet* exceptions = nullptr;  // not owned; may be null
  // Only these benchmarks (empty: all).
  std::set<std::string> benchmarks;
  common::Clock::time_point now = common::Clock::now();
  // Checks run on this many threads; 0: one per core, at most 4. The results are the same, in
  // the same order, whatever the number.
  unsigned threads = 0;
  // Only part of the catalogue (not owned; null: everything). Workload checks in focus leave out
  // their cluster-wide NOT_APPLICABLE ("no workloads"): the caller evaluates them whole when the
  // cluster has no workload left.
  const Focus* focus = nullptr;
  // RBAC already indexed for this snapshot (not owned; null: built here).
  const Rbac* rbac = nullptr;
  // A check judged per workload, evaluated whole, is evaluated and handed over this many
  // workloads at a time (0: all at once).
  size_t workloads_per_part = 4096;
};

struct ScanStats {
  size_t objects = 0;
  size_t workloads = 0;         // evaluated, at their controller
  size_t owned = 0;             // Pods/ReplicaSets/Jobs reported through their controller
  size_t system_workloads = 0;  // in system namespaces, not evaluated
  size_t roles = 0;
  size_t bindings = 0;
  size_t accepted = 0;  // results accepted by an exception (one per benchmark reported)
  size_t expired = 0;   // results an expired exception would have accepted
};

struct ClusterScan {
  std::vector<v1::CheckResult> results;
  ScanStats stats;
};

// Evaluates `snapshot`. Never fails: a kind that could not be read turns the verdicts that would
// rely on it into ERROR, and a check that finds nothing to judge is NOT_APPLICABLE with the
// reason. Results are ordered by check (catalogue order), then object.
ClusterScan EvaluateCluster(const k8s::Snapshot& snapshot, const ScanOptions& options);

// The same results, handed to `part` one check at a time (every result of the check, under each
// of its benchmarks), in catalogue order, while later checks are evaluated: memory holds a few
// checks' results, never all of a large cluster's. A check judged per workload over more than
// `workloads_per_part` workloads comes in several calls: `more` is true on each but the last,
// which may carry no results (it says the check is complete). An error from `part` stops the
// evaluation and is returned.
using ResultSink = std::function<absl::Status(std::vector<v1::CheckResult>&& results, bool more)>;
[[nodiscard]] absl::StatusOr<ScanStats> EvaluateClusterInParts(const k8s::Snapshot& snapshot,
                                                               const ScanOptions& options,
                                                               const ResultSink& part);

// Whether checks of evaluator `evaluate` judge each workload on its own (a Focus may name them in
// workload_checks, and a whole evaluation hands them over in slices of workloads). Such an
// evaluator makes findings about the workloads it is given only, one per workload, so that no
// two slices carry the same result.
bool JudgedPerWorkload(const std::string& evaluate);

// Whether checks of evaluator `evaluate` judge each namespace on its own, from what is in it:
// a change of an object of `kind` changes only the verdict of the namespace it is in (of the
// Namespace itself for kind Namespace). False for kinds whose objects reach other namespaces.
bool JudgedPerNamespace(const std::string& evaluate, std::string_view kind);

// Whether a change to an object of `kind` in namespace `ns` can change the results of checks of
// evaluator `evaluate` (the kinds it reads; `default-namespace` reads every kind in `default`,
// and nothing outside it but Namespaces).
bool ChangeCanAffect(const std::string& evaluate, std::string_view kind, std::string_view ns);

// `Kind ns/name [container]`, or `Kind name` for cluster-scoped objects, `cluster` for
// cluster-wide verdicts.
std::string DescribeResource(const v1::Resource& r);

}  // namespace kspm::collector::cluster

#pragma once

// The evaluators that judge cluster checks. Each takes a CheckDef (its parameters are data) and
// the cluster, and returns one Finding per object it applies to: PASS or FAIL with the fields it
// read as evidence, or a single NOT_APPLICABLE finding saying why nothing applies.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kspm/collector/cluster/catalog.h"
#include "kspm/collector/cluster/rbac.h"
#include "kspm/collector/cluster/system_policy.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/object.h"
#include "kspm/v1/results.pb.h"

namespace kspm::collector::cluster {

// Everything evaluators read, built once per scan.
struct Context {
  const k8s::Snapshot& snapshot;
  const SystemPolicy& policy;
  const Rbac& rbac;
  WorkloadRange workloads;
};

// One verdict about one object, before it is reported under each benchmark (where FAIL becomes
// WARN for unscored items) and before exceptions.
struct Finding {
  v1::Status status = v1::STATUS_UNSPECIFIED;  // PASS, FAIL, MANUAL, NOT_APPLICABLE or ERROR
  v1::Resource resource;                       // kind `Cluster` for cluster-wide verdicts
  std::string reason;                          // one line
  std::vector<v1::Evidence> evidence;
  // For exceptions: the containers at fault (empty for pod- or object-level findings), and the
  // labels of the object and of its pod template.
  std::vector<std::string> containers;
  const k8s::Value* labels = nullptr;
  const k8s::Value* pod_labels = nullptr;
};

using Evaluator = std::function<std::vector<Finding>(const CheckDef&, const Context&)>;

struct EvaluatorInfo {
  Evaluator run;
  // Kinds the evaluator reads, all of them: a watched cluster re-evaluates it when one changes,
  // and when one could not be read, its PASS and NOT_APPLICABLE
  // findings are replaced by one ERROR naming the kind.
  std::vector<std::string> reads;
};

// Evaluator name (a CheckDef's `evaluate`) -> evaluator. Registered explicitly, once.
const std::map<std::string, EvaluatorInfo, std::less<>>& Evaluators();

// Whether `name` is a rule of the `pod` evaluator (pod_checks.cc holds the one table of them).
bool IsPodRule(std::string_view name);

// An evidence entry for an API object field.
v1::Evidence ApiEvidence(std::string key, std::string source, std::optional<std::string> value);

}  // namespace kspm::collector::cluster

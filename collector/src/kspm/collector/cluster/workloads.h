#pragma once

// Workloads as people think of them: a Deployment, DaemonSet, StatefulSet, CronJob or Job is
// reported once, at the controller, not once per ReplicaSet or replica. Pods and ReplicaSets
// whose owner is in the snapshot are left to the owner; an owner that is missing is reported in
// their place (a Pod's ReplicaSet resolved to its Deployment through the pod-template-hash
// label). Bare Pods are reported on their own.
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "kspm/collector/cluster/system_policy.h"
#include "kspm/collector/k8s/object.h"

namespace kspm::collector::cluster {

struct Workload {
  std::string kind;  // the kind reported (the controller's)
  std::string ns;
  std::string name;
  const k8s::Object* source = nullptr;            // the object whose pod spec was read
  const k8s::Value* spec = nullptr;               // the pod spec inside `source`
  const k8s::Value* template_metadata = nullptr;  // pod template metadata (may be null)
  std::string spec_path;                          // e.g. `spec.template.spec`
  std::string metadata_path;                      // e.g. `spec.template.metadata`
  // `Deployment shop/web`, or `Pod shop/web-5d9f-x (ReplicaSet web-5d9f, not in the snapshot)`
  // when the spec was read from a descendant: the `source` of every evidence entry.
  std::string evidence_source;

  // Labels of the object as reported (the controller's when present, else the source's).
  const k8s::Value& labels() const;
  // Labels of the pod template (or of the Pod), possibly empty.
  const k8s::Value& pod_labels() const;
};

struct WorkloadSet {
  std::vector<Workload> workloads;
  size_t system_skipped = 0;  // workloads in system namespaces, not evaluated
  size_t owned = 0;           // Pods and ReplicaSets/Jobs left to their controller
};

// All or part of a WorkloadSet, as an evaluator reads it: a check judged per workload is
// evaluated a slice of workloads at a time, so that a large cluster's results are never all in
// memory at once.
struct WorkloadRange {
  std::span<const Workload> workloads;
  size_t system_skipped = 0;
  WorkloadRange(const WorkloadSet& set)  // NOLINT(google-explicit-constructor): a view of it
      : workloads(set.workloads), system_skipped(set.system_skipped) {}
  WorkloadRange(std::span<const Workload> part, size_t skipped)
      : workloads(part), system_skipped(skipped) {}
};

// Kinds that carry a pod spec and are read by workload checks.
const std::vector<std::string>& WorkloadKinds();

// A workload as reported: kind, namespace, name.
using WorkloadKey = std::tuple<std::string, std::string, std::string>;

// With `only`, the workloads of those keys alone; with `namespaces`, those of these namespaces
// alone (objects in other namespaces are not looked at).
WorkloadSet CollectWorkloads(const k8s::Snapshot& snapshot, const SystemPolicy& policy,
                             const std::set<WorkloadKey>* only = nullptr,
                             const std::set<std::string>* namespaces = nullptr);

// The workload an object of a WorkloadKinds() kind is reported at (its controller's, through
// owners present in `snapshot`, as CollectWorkloads decides); nothing for other kinds.
std::optional<WorkloadKey> ReportedAt(const k8s::Snapshot& snapshot, const k8s::Object& object);

// Drops the pod spec of every Pod, ReplicaSet and Job whose controlling owner is in the snapshot:
// checks read the owner's template instead, and in a large cluster these replicas are most of
// the memory. Metadata stays (owners, labels, names). Returns how many were compacted.
size_t CompactOwnedObjects(k8s::Snapshot& snapshot);

}  // namespace kspm::collector::cluster

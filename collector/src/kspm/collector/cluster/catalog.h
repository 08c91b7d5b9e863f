#pragma once

// The cluster check catalogue: data (collector/catalog/cluster.yaml, embedded at build time),
// read once into CheckDefs. Each check names the evaluator that judges it and that evaluator's
// parameters; adding an RBAC "who can" check or a namespace PSA check adds data, not code.
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/v1/results.pb.h"

namespace kspm::collector::cluster {

// Where a check is reported: benchmark item id and whether that benchmark scores it.
struct BenchmarkItem {
  std::string benchmark;  // e.g. `cis-kubernetes-1.12`
  std::string item;       // e.g. `5.1.1`
  bool scored = false;    // false: CIS "Manual"; a failure is WARN there
};

// One (API group, resource, verb) question asked of RBAC rules: any of `verbs` on any of
// `resources` (a subresource as `pods/exec`; `userextras/*` for every subresource) in any of
// `groups`. A cluster-scoped resource is granted only by ClusterRoleBindings.
struct GrantSpec {
  std::vector<std::string> groups;
  std::vector<std::string> resources;
  std::vector<std::string> verbs;
  bool cluster_scoped = false;
  // Only where these namespaces are reached: a RoleBinding in one of them, or any
  // ClusterRoleBinding (empty: everywhere).
  std::vector<std::string> namespaces;
};

// A subject a check looks for, and the bindings that name it by default.
struct SubjectSpec {
  std::string kind;  // User, Group, ServiceAccount
  std::string name;
};
struct DefaultBinding {
  std::string kind;  // ClusterRoleBinding or RoleBinding
  std::string ns;
  std::string name;
  std::string role;
};

struct CheckDef {
  std::string id;  // stable: never changes between benchmark versions
  std::vector<BenchmarkItem> benchmarks;
  std::string title;
  v1::Severity severity = v1::SEVERITY_MEDIUM;
  std::string component;
  std::string evaluate;  // evaluator name, see evaluators.h
  std::string expected;
  std::string remediation;
  // Evaluator parameters; each evaluator reads only its own.
  std::string rule;                      // evaluate: pod
  std::vector<GrantSpec> grants;         // evaluate: rbac-grant
  std::vector<SubjectSpec> subjects;     // evaluate: rbac-subjects
  std::vector<DefaultBinding> defaults;  // evaluate: rbac-subjects
  std::string level;                     // evaluate: psa-level (baseline | restricted)
  std::string control;                   // evaluate: psa-level, what the level refuses
};

// Parses a catalogue file's text. Errors name `name`, the line and the check.
[[nodiscard]] absl::StatusOr<std::vector<CheckDef>> ParseCatalog(const std::string& text,
                                                                 const std::string& name);

// The built-in catalogue, parsed once (thread-safe). The embedded text is tested to parse.
const std::vector<CheckDef>& BuiltinCatalog();

// Check id -> definition over BuiltinCatalog().
const CheckDef* FindCheck(const std::string& id);

}  // namespace kspm::collector::cluster

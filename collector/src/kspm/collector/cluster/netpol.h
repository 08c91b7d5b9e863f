#pragma once

// Network policies of every kind that selects pods, and which of them select a given pod:
//   NetworkPolicy (networking.k8s.io)        spec.podSelector, in its namespace
//   CiliumNetworkPolicy                      spec.endpointSelector / specs[].endpointSelector
//   CiliumClusterwideNetworkPolicy           the same, across namespaces
//   NetworkPolicy.projectcalico.org          spec.selector (Calico's selector language)
//   GlobalNetworkPolicy (Calico)             spec.selector and spec.namespaceSelector
//   AdminNetworkPolicy / BaselineAdminNetworkPolicy   spec.subject (namespaces or pods)
// A policy that selects nothing covers nothing: coverage is decided per pod, not per namespace.
#include <string>
#include <string_view>
#include <vector>

#include "kspm/collector/k8s/object.h"
#include "nlohmann/json.hpp"

namespace kspm::collector::cluster {

// Every policy kind above, as the snapshot names them.
const std::vector<std::string>& NetworkPolicyKinds();

// A pod as policies see it.
struct PodView {
  std::string_view ns;
  const k8s::Value* ns_labels = nullptr;   // the Namespace's labels (null when unknown)
  const k8s::Value* pod_labels = nullptr;  // the pod template's labels
  std::string_view service_account;        // `default` when the spec names none
};

// Whether a Kubernetes LabelSelector (matchLabels, matchExpressions) matches `labels`. An empty
// selector matches everything; a null one nothing. `error` gets a message for a malformed one.
bool LabelSelectorMatches(const k8s::Value* selector, const k8s::Value& labels,
                          std::string* error = nullptr);

// Whether a Calico selector expression (`app == 'web' && has(tier)`, `all()`, `k in {'a'}`,
// `!has(k)`, `k contains 's'`, `k starts with 's'`, `k ends with 's'`, `global()`) matches
// `labels`. An empty expression is all(). Unparsable: false, with `error` set.
bool CalicoSelectorMatches(std::string_view expr, const k8s::Value& labels,
                           std::string* error = nullptr);

// What one policy decides about one pod.
struct Selection {
  bool selects = false;
  std::string error;  // the policy's selector could not be read (then selects is false)
};
Selection PolicySelects(const k8s::Object& policy, const PodView& pod);

// Cluster-wide kinds (their policies are not in the pod's namespace).
bool IsClusterWidePolicyKind(std::string_view kind);

}  // namespace kspm::collector::cluster

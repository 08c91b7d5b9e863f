#pragma once

// Shared by the evaluator files; not part of the module's interface.
#include <string>
#include <vector>

#include "kspm/collector/cluster/evaluators.h"

namespace kspm::collector::cluster::internal {

// RBAC and service accounts (rbac_checks.cc).
std::vector<Finding> RbacGrant(const CheckDef& c, const Context& ctx);
std::vector<Finding> RbacClusterAdmin(const CheckDef& c, const Context& ctx);
std::vector<Finding> RbacWildcard(const CheckDef& c, const Context& ctx);
std::vector<Finding> RbacSubjects(const CheckDef& c, const Context& ctx);
std::vector<Finding> RbacMissingRole(const CheckDef& c, const Context& ctx);
std::vector<Finding> SaDefault(const CheckDef& c, const Context& ctx);
std::vector<Finding> SaTokenAutomount(const CheckDef& c, const Context& ctx);

// Whether a workload's pods get their service account's token (the pod's
// automountServiceAccountToken over the account's, true by default; static pods never), with
// the fields read added to `evidence`.
struct TokenMount {
  std::string service_account;  // the account's name (`default` when the spec names none)
  std::string sa_source;        // `ServiceAccount ns/name`
  bool mounted = true;
  bool static_pod = false;
  std::string decided_by = "the default (true)";
};
TokenMount DecideTokenMount(const Workload& w, const Context& ctx,
                            std::vector<v1::Evidence>& evidence);

// Takeover paths: a workload whose mounted token is bound to a risky grant (takeover_checks.cc).
std::vector<Finding> WorkloadTakeover(const CheckDef& c, const Context& ctx);

// Pod specs of workloads (pod_checks.cc).
std::vector<Finding> PodRule(const CheckDef& c, const Context& ctx);

// Namespaces (namespace_checks.cc).
std::vector<Finding> PsaLevel(const CheckDef& c, const Context& ctx);
std::vector<Finding> PolicyControl(const CheckDef& c, const Context& ctx);
std::vector<Finding> DefaultNamespace(const CheckDef& c, const Context& ctx);
std::vector<Finding> NamespaceResourcePolicies(const CheckDef& c, const Context& ctx);
// Objects Kubernetes itself keeps in `default`, by exact kind and name.
bool IsKubernetesOwnObject(const k8s::Object& o);

// Network policies of every kind (netpol_checks.cc).
std::vector<Finding> NetpolCoverage(const CheckDef& c, const Context& ctx);
std::vector<Finding> NetpolWorkloadCoverage(const CheckDef& c, const Context& ctx);
// ConfigMaps whose keys hold credentials, when their contents were read (pod_checks.cc).
std::vector<Finding> ConfigMapCredentials(const CheckDef& c, const Context& ctx);
// Ingresses whose hosts are not all in spec.tls (netpol_checks.cc).
std::vector<Finding> IngressTls(const CheckDef& c, const Context& ctx);

// Helpers.
v1::Resource MakeResource(const std::string& kind, const std::string& ns, const std::string& name,
                          const std::string& container = "");
Finding NotApplicable(std::string reason);
// The NOT_APPLICABLE of a workload check when no workload outside the system namespaces runs.
Finding NoWorkloads(const Context& ctx);
// A workload's finding before its verdict: its resource, and the labels exceptions match.
Finding WorkloadFinding(const Workload& w);
// A cluster-wide verdict (resource kind `Cluster`).
Finding ClusterVerdict(v1::Status status, std::string reason,
                       std::vector<v1::Evidence> evidence = {});
// A JSON value as evidence text: strings bare, everything else as compact JSON.
std::string ValueText(const k8s::Value& v);
// `(N system objects not evaluated; --include-system evaluates them)`, or "" when N is 0.
std::string SkipNote(size_t skipped, const char* what);
// Member lookup that tolerates non-objects: null when absent.
const k8s::Value* Field(const k8s::Value& j, const char* key);
std::string StrField(const k8s::Value& j, const char* key);
// Namespaces that run at least one evaluated workload.
std::set<std::string> NamespacesWithWorkloads(const Context& ctx);

}  // namespace kspm::collector::cluster::internal

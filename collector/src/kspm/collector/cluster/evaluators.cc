#include "kspm/collector/cluster/evaluators.h"

#include <set>

#include "kspm/collector/cluster/checks_internal.h"
#include "kspm/collector/cluster/netpol.h"

namespace kspm::collector::cluster {

v1::Evidence ApiEvidence(std::string key, std::string source, std::optional<std::string> value) {
  v1::Evidence e;
  e.set_key(std::move(key));
  e.set_source_kind(v1::SOURCE_KIND_API_OBJECT);
  e.set_source(std::move(source));
  e.set_present(value.has_value());
  if (value) e.set_value(std::move(*value));
  return e;
}

const std::map<std::string, EvaluatorInfo, std::less<>>& Evaluators() {
  static const std::map<std::string, EvaluatorInfo, std::less<>> kEvaluators = [] {
    const std::vector<std::string> rbac = {"ClusterRole", "Role", "ClusterRoleBinding",
                                           "RoleBinding"};
    std::vector<std::string> workloads = WorkloadKinds();
    std::vector<std::string> service_accounts = rbac;
    service_accounts.push_back("ServiceAccount");
    service_accounts.insert(service_accounts.end(), workloads.begin(), workloads.end());
    std::vector<std::string> admission = {"Namespace", "ValidatingWebhookConfiguration",
                                          "MutatingWebhookConfiguration",
                                          "ValidatingAdmissionPolicyBinding"};
    admission.insert(admission.end(), workloads.begin(), workloads.end());
    std::vector<std::string> netpol = {"Namespace"};
    netpol.insert(netpol.end(), NetworkPolicyKinds().begin(), NetworkPolicyKinds().end());
    netpol.insert(netpol.end(), workloads.begin(), workloads.end());
    // Only namespaces that run workloads are judged.
    std::vector<std::string> resource_policies = {"Namespace", "LimitRange", "ResourceQuota"};
    resource_policies.insert(resource_policies.end(), workloads.begin(), workloads.end());
    std::vector<std::string> default_ns = {"Namespace",      "Service", "ConfigMap",
                                           "ServiceAccount", "Role",    "RoleBinding"};
    default_ns.insert(default_ns.end(), workloads.begin(), workloads.end());
    return std::map<std::string, EvaluatorInfo, std::less<>>{
        {"rbac-grant", {internal::RbacGrant, rbac}},
        {"rbac-cluster-admin", {internal::RbacClusterAdmin, rbac}},
        {"rbac-wildcard", {internal::RbacWildcard, rbac}},
        {"rbac-subjects", {internal::RbacSubjects, rbac}},
        {"rbac-missing-role", {internal::RbacMissingRole, rbac}},
        {"sa-default", {internal::SaDefault, service_accounts}},
        {"sa-token-automount", {internal::SaTokenAutomount, service_accounts}},
        {"workload-takeover", {internal::WorkloadTakeover, service_accounts}},
        {"pod", {internal::PodRule, workloads}},
        {"psa-level", {internal::PsaLevel, admission}},
        {"policy-control", {internal::PolicyControl, admission}},
        {"netpol-coverage", {internal::NetpolCoverage, netpol}},
        {"netpol-workload-coverage", {internal::NetpolWorkloadCoverage, netpol}},
        {"default-namespace", {internal::DefaultNamespace, default_ns}},
        {"ingress-tls", {internal::IngressTls, {"Ingress"}}},
        {"configmap-credentials", {internal::ConfigMapCredentials, {"ConfigMap"}}},
        {"namespace-resource-policies", {internal::NamespaceResourcePolicies, resource_policies}},
    };
  }();
  return kEvaluators;
}

namespace internal {

v1::Resource MakeResource(const std::string& kind, const std::string& ns, const std::string& name,
                          const std::string& container) {
  v1::Resource r;
  r.set_kind(kind);
  r.set_namespace_(ns);
  r.set_name(name);
  r.set_container(container);
  return r;
}

Finding NotApplicable(std::string reason) {
  Finding f;
  f.status = v1::STATUS_NOT_APPLICABLE;
  f.resource = MakeResource("Cluster", "", "");
  f.reason = std::move(reason);
  return f;
}

Finding ClusterVerdict(v1::Status status, std::string reason, std::vector<v1::Evidence> evidence) {
  Finding f;
  f.status = status;
  f.resource = MakeResource("Cluster", "", "");
  f.reason = std::move(reason);
  f.evidence = std::move(evidence);
  return f;
}

std::string ValueText(const k8s::Value& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string SkipNote(size_t skipped, const char* what) {
  if (skipped == 0) return "";
  return " (" + std::to_string(skipped) + " system " + what +
         " not evaluated; --include-system evaluates them)";
}

const k8s::Value* Field(const k8s::Value& j, const char* key) {
  if (!j.is_object()) return nullptr;
  const auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string StrField(const k8s::Value& j, const char* key) {
  const auto* v = Field(j, key);
  return v && v->is_string() ? v->get<std::string>() : "";
}

Finding NoWorkloads(const Context& ctx) {
  return NotApplicable("no workload outside the system namespaces" +
                       SkipNote(ctx.workloads.system_skipped, "workloads"));
}

Finding WorkloadFinding(const Workload& w) {
  Finding f;
  f.resource = MakeResource(w.kind, w.ns, w.name);
  f.labels = &w.labels();
  f.pod_labels = &w.pod_labels();
  return f;
}

std::set<std::string> NamespacesWithWorkloads(const Context& ctx) {
  std::set<std::string> out;
  for (const auto& w : ctx.workloads.workloads) out.insert(w.ns);
  return out;
}

}  // namespace internal
}  // namespace kspm::collector::cluster

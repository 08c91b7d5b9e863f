#include "kspm/collector/cluster/system_policy.h"

namespace kspm::collector::cluster {
namespace {

bool Bootstrapped(const k8s::Object& o) {
  const auto& labels = o.labels();
  const auto it = labels.find("kubernetes.io/bootstrapping");
  return it != labels.end() && it->is_string() && it->get<std::string>() == "rbac-defaults";
}

bool SystemName(std::string_view name) {
  return name.starts_with("system:") || name.starts_with("kubeadm:");
}

}  // namespace

bool SystemPolicy::IsSystemSubject(const Subject& s) const {
  if (s.kind == "ServiceAccount") return IsSystemNamespace(s.ns);
  if (s.kind == "Group" && groups.contains(s.name)) return true;
  // Service account identities as users and groups: system only for system namespaces.
  constexpr std::string_view kSaUser = "system:serviceaccount:";
  constexpr std::string_view kSaGroup = "system:serviceaccounts:";
  std::string_view name = s.name;
  if (name.starts_with(kSaUser)) {
    name.remove_prefix(kSaUser.size());
    return IsSystemNamespace(name.substr(0, name.find(':')));
  }
  if (name.starts_with(kSaGroup)) {
    name.remove_prefix(kSaGroup.size());
    return IsSystemNamespace(name);
  }
  return name.starts_with("system:");
}

bool SystemPolicy::IsSystemRole(const k8s::Object& role) const {
  if (Bootstrapped(role) || SystemName(role.name)) return true;
  if (role.kind == "ClusterRole" && (role.name == "cluster-admin" || role.name == "admin" ||
                                     role.name == "edit" || role.name == "view")) {
    return true;
  }
  return !role.ns.empty() && IsSystemNamespace(role.ns);
}

bool SystemPolicy::IsSystemBinding(const k8s::Object& binding,
                                   const std::vector<Subject>& subjects) const {
  const bool looks_system = Bootstrapped(binding) || SystemName(binding.name) ||
                            (!binding.ns.empty() && IsSystemNamespace(binding.ns));
  if (!looks_system) return false;
  for (const auto& s : subjects) {
    if (!IsSystemSubject(s)) return false;
  }
  return true;
}

}  // namespace kspm::collector::cluster

#pragma once

// Which subjects, roles, bindings and namespaces belong to Kubernetes itself (the bootstrap RBAC
// policy, kubeadm's objects, kube-system). Checks skip them unless asked, so that a stock cluster
// produces no findings; every skip is counted and named in the result's reason.
#include <set>
#include <string>
#include <string_view>

#include "kspm/collector/k8s/object.h"

namespace kspm::collector::cluster {

struct Subject {
  std::string kind;  // User, Group or ServiceAccount
  std::string name;
  std::string ns;  // ServiceAccount only
};

struct SystemPolicy {
  // Evaluate system objects like any other (`--include-system`).
  bool include_system = false;
  // Namespaces whose objects are Kubernetes' own. The collector adds its own namespace when it
  // runs in the cluster.
  std::set<std::string, std::less<>> namespaces = {"kube-system", "kube-public", "kube-node-lease"};
  // Groups kubeadm creates outside the `system:` prefix (admin.conf's group since v1.29).
  std::set<std::string, std::less<>> groups = {"kubeadm:cluster-admins"};

  bool IsSystemNamespace(std::string_view ns) const { return namespaces.contains(ns); }

  // `system:` users and groups (a service account's user or group only when its namespace is a
  // system namespace), kubeadm's groups, and service accounts of system namespaces.
  bool IsSystemSubject(const Subject& s) const;

  // A Role or ClusterRole of the bootstrap policy (label kubernetes.io/bootstrapping=
  // rbac-defaults), named `system:...` or `kubeadm:...`, one of the user-facing defaults
  // (cluster-admin, admin, edit, view), or living in a system namespace.
  bool IsSystemRole(const k8s::Object& role) const;

  // A binding that looks like a system one (bootstrap label, `system:`/`kubeadm:` name, or a
  // system namespace) AND whose every subject is a system subject: a binding to a person or to
  // a workload of a user namespace is never skipped, whatever its name.
  bool IsSystemBinding(const k8s::Object& binding, const std::vector<Subject>& subjects) const;

  // Whether skipping applies at all (false with include_system).
  bool skip() const { return !include_system; }
};

}  // namespace kspm::collector::cluster

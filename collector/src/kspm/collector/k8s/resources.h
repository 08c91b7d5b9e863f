#pragma once

// The API resources kspm reads, and nothing else: the collector's ClusterRole needs `list` on
// exactly these (and `get` on /version). Secrets and ConfigMaps are never read (listing them
// grants their contents): checks need only the pod-spec fields that name them, and 5.6.4 judges
// ConfigMaps in `default` only when an offline snapshot holds them.
#include <string>
#include <vector>

namespace kspm::collector::k8s {

struct ResourceType {
  std::string kind;      // e.g. `ClusterRoleBinding`
  std::string group;     // "" for the core group
  std::string version;   // e.g. `v1`
  std::string resource;  // plural, e.g. `clusterrolebindings`
  bool namespaced = true;
  // A custom resource (CRD) kind: listed only when API discovery shows its group and version, and
  // silently absent otherwise. Built-in kinds are always listed (404: an older server).
  bool custom = false;
  // The list path: /api/v1/pods or /apis/rbac.authorization.k8s.io/v1/clusterrolebindings.
  std::string Path() const {
    return group.empty() ? "/api/" + version + "/" + resource
                         : "/apis/" + group + "/" + version + "/" + resource;
  }
  // `clusterrolebindings.rbac.authorization.k8s.io`, as RBAC and error messages name it.
  std::string Qualified() const { return group.empty() ? resource : resource + "." + group; }
  std::string GroupVersion() const { return group.empty() ? version : group + "/" + version; }
};

// The kind under which an object of `api_version` and `kind` is kept in a snapshot: the kind
// itself, or `Kind.group` when a custom resource reuses the name of a kind read above from
// another group (Calico's NetworkPolicy is `NetworkPolicy.projectcalico.org`, whether read
// through projectcalico.org or crd.projectcalico.org). Defined in object.cc.
std::string SnapshotKind(const std::string& api_version, const std::string& kind);

// ConfigMaps: not in ReadResources(), since listing them reads their contents. Listed only with
// --scan-configmaps (Snapshot::set_inspect_config_data), under a ClusterRole of their own.
inline const ResourceType& ConfigMapResource() {
  static const ResourceType kConfigMaps = {"ConfigMap", "", "v1", "configmaps", true};
  return kConfigMaps;
}

inline const std::vector<ResourceType>& ReadResources() {
  static const std::vector<ResourceType> kResources = {
      {"Namespace", "", "v1", "namespaces", false},
      // Node labels tell a self-hosted control plane from a managed one.
      {"Node", "", "v1", "nodes", false},
      {"Pod", "", "v1", "pods", true},
      {"ServiceAccount", "", "v1", "serviceaccounts", true},
      {"Service", "", "v1", "services", true},
      {"ReplicationController", "", "v1", "replicationcontrollers", true},
      {"LimitRange", "", "v1", "limitranges", true},
      {"ResourceQuota", "", "v1", "resourcequotas", true},
      {"Deployment", "apps", "v1", "deployments", true},
      {"ReplicaSet", "apps", "v1", "replicasets", true},
      {"StatefulSet", "apps", "v1", "statefulsets", true},
      {"DaemonSet", "apps", "v1", "daemonsets", true},
      {"Job", "batch", "v1", "jobs", true},
      {"CronJob", "batch", "v1", "cronjobs", true},
      {"Role", "rbac.authorization.k8s.io", "v1", "roles", true},
      {"RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings", true},
      {"ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", false},
      {"ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings", false},
      {"NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", true},
      {"Ingress", "networking.k8s.io", "v1", "ingresses", true},
      {"ValidatingWebhookConfiguration", "admissionregistration.k8s.io", "v1",
       "validatingwebhookconfigurations", false},
      {"MutatingWebhookConfiguration", "admissionregistration.k8s.io", "v1",
       "mutatingwebhookconfigurations", false},
      // v1 since Kubernetes 1.30; older servers answer 404 and the kind is simply absent.
      {"ValidatingAdmissionPolicyBinding", "admissionregistration.k8s.io", "v1",
       "validatingadmissionpolicybindings", false},
      // Policy kinds of the CNIs and of the AdminNetworkPolicy API: each selects pods that a
      // NetworkPolicy would otherwise have to (netpol.h). Calico's are served either by its API
      // server (projectcalico.org/v3) or, without it, as the CRDs behind it
      // (crd.projectcalico.org/v1); the first is read when served. A Calico NetworkPolicy is
      // `NetworkPolicy.projectcalico.org` in the snapshot, apart from networking.k8s.io's.
      {"CiliumNetworkPolicy", "cilium.io", "v2", "ciliumnetworkpolicies", true, true},
      {"CiliumClusterwideNetworkPolicy", "cilium.io", "v2", "ciliumclusterwidenetworkpolicies",
       false, true},
      {"NetworkPolicy.projectcalico.org", "projectcalico.org", "v3", "networkpolicies", true, true},
      {"GlobalNetworkPolicy", "projectcalico.org", "v3", "globalnetworkpolicies", false, true},
      {"NetworkPolicy.projectcalico.org", "crd.projectcalico.org", "v1", "networkpolicies", true,
       true},
      {"GlobalNetworkPolicy", "crd.projectcalico.org", "v1", "globalnetworkpolicies", false, true},
      {"AdminNetworkPolicy", "policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies", false,
       true},
      {"BaselineAdminNetworkPolicy", "policy.networking.k8s.io", "v1alpha1",
       "baselineadminnetworkpolicies", false, true},
  };
  return kResources;
}

}  // namespace kspm::collector::k8s

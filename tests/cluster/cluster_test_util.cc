#include "cluster_test_util.h"

#include <gtest/gtest.h>

#include "kspm/collector/k8s/snapshot_dir.h"

namespace kspm::cluster_test {

json Namespace(const std::string& name, json labels) {
  labels["kubernetes.io/metadata.name"] = name;
  return {{"apiVersion", "v1"},
          {"kind", "Namespace"},
          {"metadata", {{"name", name}, {"labels", labels}}}};
}

json Container(const std::string& name, json security_context, json extra) {
  json c = {{"name", name}, {"image", "registry.example.com/" + name + ":1.0"}};
  if (!security_context.is_null()) c["securityContext"] = security_context;
  for (auto& [k, v] : extra.items()) c[k] = v;
  return c;
}

json PodSpec(std::vector<json> containers, json extra) {
  json spec = {{"containers", containers}};
  for (auto& [k, v] : extra.items()) spec[k] = v;
  return spec;
}

json Deployment(const std::string& ns, const std::string& name, json pod_spec, json labels) {
  labels["app"] = name;
  return {{"apiVersion", "apps/v1"},
          {"kind", "Deployment"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}},
          {"spec",
           {{"replicas", 2},
            {"selector", {{"matchLabels", {{"app", name}}}}},
            {"template", {{"metadata", {{"labels", {{"app", name}}}}}, {"spec", pod_spec}}}}}};
}

json NetworkPolicy(const std::string& ns, const std::string& name, json pod_selector) {
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"spec", {{"podSelector", pod_selector}, {"policyTypes", {"Ingress", "Egress"}}}}};
}

json Pod(const std::string& ns, const std::string& name, json spec, json owner, json labels) {
  json meta = {{"name", name}, {"namespace", ns}, {"labels", labels}};
  if (!owner.is_null()) meta["ownerReferences"] = json::array({owner});
  return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", meta}, {"spec", spec}};
}

json ServiceAccount(const std::string& ns, const std::string& name, json automount) {
  json sa = {{"apiVersion", "v1"},
             {"kind", "ServiceAccount"},
             {"metadata", {{"name", name}, {"namespace", ns}}}};
  if (!automount.is_null()) sa["automountServiceAccountToken"] = automount;
  return sa;
}

json Rule(std::vector<std::string> groups, std::vector<std::string> resources,
          std::vector<std::string> verbs, std::vector<std::string> names) {
  json r = {{"apiGroups", groups}, {"resources", resources}, {"verbs", verbs}};
  if (!names.empty()) r["resourceNames"] = names;
  return r;
}

json ClusterRole(const std::string& name, std::vector<json> rules, json labels, json aggregation) {
  json r = {{"apiVersion", "rbac.authorization.k8s.io/v1"},
            {"kind", "ClusterRole"},
            {"metadata", {{"name", name}, {"labels", labels}}},
            {"rules", rules}};
  if (!aggregation.is_null()) r["aggregationRule"] = aggregation;
  return r;
}

json Role(const std::string& ns, const std::string& name, std::vector<json> rules) {
  return {{"apiVersion", "rbac.authorization.k8s.io/v1"},
          {"kind", "Role"},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"rules", rules}};
}

json Subject(const std::string& kind, const std::string& name, const std::string& ns) {
  json s = {{"kind", kind}, {"name", name}};
  if (kind == "ServiceAccount") {
    s["namespace"] = ns;
  } else {
    s["apiGroup"] = "rbac.authorization.k8s.io";
  }
  return s;
}

json ClusterRoleBinding(const std::string& name, const std::string& role,
                        std::vector<json> subjects, json labels) {
  return {{"apiVersion", "rbac.authorization.k8s.io/v1"},
          {"kind", "ClusterRoleBinding"},
          {"metadata", {{"name", name}, {"labels", labels}}},
          {"roleRef",
           {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "ClusterRole"}, {"name", role}}},
          {"subjects", subjects}};
}

json RoleBinding(const std::string& ns, const std::string& name, const std::string& role_kind,
                 const std::string& role, std::vector<json> subjects) {
  return {
      {"apiVersion", "rbac.authorization.k8s.io/v1"},
      {"kind", "RoleBinding"},
      {"metadata", {{"name", name}, {"namespace", ns}}},
      {"roleRef", {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", role_kind}, {"name", role}}},
      {"subjects", subjects}};
}

k8s::Snapshot Snapshot(const std::vector<json>& objects) {
  k8s::Snapshot s;
  for (const auto& o : objects) {
    const auto status = k8s::AddDocument(o, "test", s);
    EXPECT_TRUE(status.ok()) << status.message();
  }
  return s;
}

collector::cluster::ClusterScan Scan(const k8s::Snapshot& snapshot, bool include_system) {
  collector::cluster::ScanOptions options;
  options.policy.include_system = include_system;
  return collector::cluster::EvaluateCluster(snapshot, options);
}

std::vector<const v1::CheckResult*> ResultsOf(const collector::cluster::ClusterScan& scan,
                                              const std::string& check_id,
                                              const std::string& benchmark) {
  std::vector<const v1::CheckResult*> out;
  for (const auto& r : scan.results) {
    if (r.check_id() != check_id) continue;
    if (!benchmark.empty() && r.benchmark() != benchmark) continue;
    out.push_back(&r);
  }
  return out;
}

std::string SourceDir() { return KSPM_SOURCE_DIR; }

k8s::Snapshot KubeadmSnapshot() {
  k8s::Snapshot s;
  const auto status = k8s::LoadSnapshotDir(SourceDir() + "/tests/fixtures/cluster/kubeadm", s);
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_TRUE(s.errors().empty());
  return s;
}

}  // namespace kspm::cluster_test

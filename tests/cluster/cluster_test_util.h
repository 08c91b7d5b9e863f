#pragma once

// Builders for API objects (as the API server returns them) and helpers to scan them, shared by
// the cluster tests. Objects are nlohmann::json so each test shows the exact fields it sets.
#include <string>
#include <vector>

#include "kspm/collector/cluster/scan.h"
#include "kspm/collector/k8s/object.h"
#include "nlohmann/json.hpp"

namespace kspm::cluster_test {

using nlohmann::json;
namespace k8s = collector::k8s;

json Namespace(const std::string& name, json labels = json::object());
json Container(const std::string& name, json security_context = nullptr,
               json extra = json::object());
// A pod spec with the given containers and extra fields merged in.
json PodSpec(std::vector<json> containers, json extra = json::object());
json Deployment(const std::string& ns, const std::string& name, json pod_spec,
                json labels = json::object());
json Pod(const std::string& ns, const std::string& name, json spec, json owner = nullptr,
         json labels = json::object());
json ServiceAccount(const std::string& ns, const std::string& name, json automount = nullptr);
json Rule(std::vector<std::string> groups, std::vector<std::string> resources,
          std::vector<std::string> verbs, std::vector<std::string> names = {});
json ClusterRole(const std::string& name, std::vector<json> rules, json labels = json::object(),
                 json aggregation = nullptr);
json Role(const std::string& ns, const std::string& name, std::vector<json> rules);
json Subject(const std::string& kind, const std::string& name, const std::string& ns = "");
json ClusterRoleBinding(const std::string& name, const std::string& role,
                        std::vector<json> subjects, json labels = json::object());
json RoleBinding(const std::string& ns, const std::string& name, const std::string& role_kind,
                 const std::string& role, std::vector<json> subjects);

// A networking.k8s.io NetworkPolicy with this podSelector, for Ingress and Egress.
json NetworkPolicy(const std::string& ns, const std::string& name, json pod_selector);

k8s::Snapshot Snapshot(const std::vector<json>& objects);
collector::cluster::ClusterScan Scan(const k8s::Snapshot& snapshot, bool include_system = false);

// Results of one check under one benchmark.
std::vector<const v1::CheckResult*> ResultsOf(const collector::cluster::ClusterScan& scan,
                                              const std::string& check_id,
                                              const std::string& benchmark = "");
// The stock kubeadm cluster of tests/fixtures/cluster/kubeadm.
k8s::Snapshot KubeadmSnapshot();
std::string SourceDir();

// The one finding a stock cluster has: CIS 5.1.5 on the `default` namespace's default
// ServiceAccount, whose token mounts automatically (see checks_test.cc).
inline bool IsStockDefaultAccountFinding(const v1::CheckResult& r) {
  return r.check_id() == "sa.default-not-used" && r.resource().name() == "default" &&
         (r.status() == v1::STATUS_WARN || r.status() == v1::STATUS_FAIL);
}

}  // namespace kspm::cluster_test

// kspm-bench-cluster: a synthetic cluster of PODS pods in NAMESPACES namespaces with ROLES Roles
// and as many RoleBindings (plus the stock kubeadm system objects), written as the List JSON that
// `kubectl get -A -o json` produces, then loaded, evaluated with every check and turned into the
// collector's report. Prints wall times per phase and the peak resident set size.
//   kspm-bench-cluster [PODS=10000] [NAMESPACES=1000] [ROLES=3000]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "kspm/collector/cluster/report.h"
#include "kspm/collector/cluster/scan.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/snapshot_dir.h"
#include "kspm/collector/store/store.h"
#include "nlohmann/json.hpp"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

long CurrentRssKb() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long PeakRssKb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

json Meta(const std::string& ns, const std::string& name, json labels = json::object()) {
  json m = {{"name", name},
            {"uid", "00000000-0000-4000-8000-" +
                        std::to_string(std::hash<std::string>{}(ns + name) % 1000000000000ULL)},
            {"creationTimestamp", "2026-11-01T10:00:00Z"},
            {"labels", labels},
            {"annotations",
             {{"kubectl.kubernetes.io/last-applied-configuration", std::string(600, 'x')}}},
            {"managedFields", json::array({{{"manager", "kubectl"}, {"operation", "Update"}}})}};
  if (!ns.empty()) m["namespace"] = ns;
  return m;
}

// A realistic container: some services harden it, some do not.
json PodSpec(int i) {
  json c = {{"name", "app"},
            {"image", "registry.example.com/team/app:" + std::to_string(i % 50)},
            {"ports", {{{"containerPort", 8080}, {"protocol", "TCP"}}}},
            {"resources", {{"requests", {{"cpu", "100m"}, {"memory", "128Mi"}}}}},
            {"env", {{{"name", "MODE"}, {"value", "prod"}}}}};
  if (i % 3 == 0) {
    c["securityContext"] = {{"allowPrivilegeEscalation", false},
                            {"readOnlyRootFilesystem", true},
                            {"runAsNonRoot", true},
                            {"capabilities", {{"drop", {"ALL"}}}}};
  }
  if (i % 17 == 0) c["securityContext"] = {{"privileged", true}};
  if (i % 11 == 0) {
    c["env"].push_back({{"name", "DB_PASSWORD"},
                        {"valueFrom", {{"secretKeyRef", {{"name", "db"}, {"key", "pw"}}}}}});
  }
  json spec = {{"containers", {c}}, {"serviceAccountName", i % 4 == 0 ? "default" : "app"}};
  if (i % 5 == 0) spec["securityContext"] = {{"seccompProfile", {{"type", "RuntimeDefault"}}}};
  if (i % 23 == 0) spec["hostNetwork"] = true;
  return spec;
}

json Status() {
  return {{"phase", "Running"},
          {"podIP", "10.244.1.17"},
          {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})},
          {"containerStatuses",
           json::array({{{"name", "app"}, {"ready", true}, {"restartCount", 0}, {"image", "x"}}})}};
}

std::string List(const std::vector<json>& items) {
  return json{{"apiVersion", "v1"},
              {"kind", "List"},
              {"metadata", {{"resourceVersion", ""}}},
              {"items", items}}
      .dump();
}

}  // namespace

int main(int argc, char** argv) {
  const int pods = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int namespaces = argc > 2 ? std::atoi(argv[2]) : 1000;
  const int roles = argc > 3 ? std::atoi(argv[3]) : 3000;
  if (pods <= 0 || namespaces <= 0 || roles < 0) {
    std::fprintf(stderr, "usage: kspm-bench-cluster [PODS] [NAMESPACES] [ROLES]\n");
    return 2;
  }
  // The snapshot is written by a child process, so that building it does not count in the
  // measured process's peak memory.
  char dir_template[] = "/tmp/kspm-bench-cluster-XXXXXX";
  const char* dir = ::mkdtemp(dir_template);
  if (dir == nullptr) return 1;
  const auto t0 = Clock::now();
  const pid_t child = ::fork();
  if (child == 0) {
    std::vector<std::pair<std::string, std::string>> files;
    std::vector<json> ns_items, deployments, replicasets, pod_items, sas, netpols, role_items,
        bindings;
    for (int n = 0; n < namespaces; ++n) {
      const std::string ns = "team-" + std::to_string(n);
      json labels = {{"kubernetes.io/metadata.name", ns}};
      if (n % 2 == 0) labels["pod-security.kubernetes.io/enforce"] = "baseline";
      ns_items.push_back(
          {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", Meta("", ns, labels)}});
      sas.push_back(
          {{"apiVersion", "v1"}, {"kind", "ServiceAccount"}, {"metadata", Meta(ns, "default")}});
      sas.push_back(
          {{"apiVersion", "v1"}, {"kind", "ServiceAccount"}, {"metadata", Meta(ns, "app")}});
      if (n % 2 == 1) {
        netpols.push_back(
            {{"apiVersion", "networking.k8s.io/v1"},
             {"kind", "NetworkPolicy"},
             {"metadata", Meta(ns, "default-deny")},
             {"spec", {{"podSelector", json::object()}, {"policyTypes", {"Ingress"}}}}});
      }
    }
    // Pods: in every namespace, Deployments of three replicas (Deployment -> ReplicaSet -> Pods)
    // and a bare Pod for every tenth.
    for (int i = 0; i < pods; ++i) {
      const int app = i / 3;
      // A Deployment's replicas share its namespace.
      const std::string ns = "team-" + std::to_string(app % namespaces);
      const std::string name = "app-" + std::to_string(app);
      const std::string hash = "7d9f8c6b5";
      if (i % 10 == 9) {
        pod_items.push_back({{"apiVersion", "v1"},
                             {"kind", "Pod"},
                             {"metadata", Meta(ns, "debug-" + std::to_string(i))},
                             {"spec", PodSpec(i)},
                             {"status", Status()}});
        continue;
      }
      if (i % 3 == 0) {
        json tmpl = {{"metadata", {{"labels", {{"app", name}}}}}, {"spec", PodSpec(app)}};
        deployments.push_back({{"apiVersion", "apps/v1"},
                               {"kind", "Deployment"},
                               {"metadata", Meta(ns, name, {{"app", name}})},
                               {"spec", {{"replicas", 3}, {"template", tmpl}}},
                               {"status", {{"replicas", 3}}}});
        json rs_meta = Meta(ns, name + "-" + hash, {{"app", name}, {"pod-template-hash", hash}});
        rs_meta["ownerReferences"] = {
            {{"kind", "Deployment"}, {"name", name}, {"controller", true}}};
        replicasets.push_back({{"apiVersion", "apps/v1"},
                               {"kind", "ReplicaSet"},
                               {"metadata", rs_meta},
                               {"spec", {{"template", tmpl}}}});
      }
      json pod_meta = Meta(ns, name + "-" + hash + "-" + std::to_string(i),
                           {{"app", name}, {"pod-template-hash", hash}});
      pod_meta["ownerReferences"] = {
          {{"kind", "ReplicaSet"}, {"name", name + "-" + hash}, {"controller", true}}};
      pod_items.push_back({{"apiVersion", "v1"},
                           {"kind", "Pod"},
                           {"metadata", pod_meta},
                           {"spec", PodSpec(app)},
                           {"status", Status()}});
    }
    for (int r = 0; r < roles; ++r) {
      const std::string ns = "team-" + std::to_string(r % namespaces);
      const std::string name = "role-" + std::to_string(r);
      json rules = json::array({{{"apiGroups", {""}},
                                 {"resources", {"configmaps", "pods", "services"}},
                                 {"verbs", {"get", "list", "watch"}}},
                                {{"apiGroups", {"apps"}},
                                 {"resources", {"deployments"}},
                                 {"verbs", {"get", "list", "update", "patch"}}}});
      if (r % 7 == 0)
        rules.push_back({{"apiGroups", {""}}, {"resources", {"secrets"}}, {"verbs", {"get"}}});
      if (r % 13 == 0)
        rules.push_back({{"apiGroups", {"batch"}}, {"resources", {"*"}}, {"verbs", {"*"}}});
      role_items.push_back({{"apiVersion", "rbac.authorization.k8s.io/v1"},
                            {"kind", "Role"},
                            {"metadata", Meta(ns, name)},
                            {"rules", rules}});
      // Bindings: most to the namespace's Role, some to the aggregated edit or view.
      const std::string role_kind = r % 5 == 0 ? "ClusterRole" : "Role";
      const std::string role_name = r % 5 == 0 ? (r % 10 == 0 ? "edit" : "view") : name;
      bindings.push_back(
          {{"apiVersion", "rbac.authorization.k8s.io/v1"},
           {"kind", "RoleBinding"},
           {"metadata", Meta(ns, name + "-binding")},
           {"roleRef",
            {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", role_kind}, {"name", role_name}}},
           {"subjects",
            {{{"kind", "Group"}, {"name", "team-" + std::to_string(r % namespaces) + "-devs"}},
             {{"kind", "ServiceAccount"}, {"name", "app"}, {"namespace", ns}}}}});
    }
    files = {{"namespaces.json", List(ns_items)},     {"deployments.json", List(deployments)},
             {"replicasets.json", List(replicasets)}, {"pods.json", List(pod_items)},
             {"serviceaccounts.json", List(sas)},     {"networkpolicies.json", List(netpols)},
             {"roles.json", List(role_items)},        {"rolebindings.json", List(bindings)}};
    for (const auto& [name, text] : files) {
      std::ofstream(std::string(dir) + "/" + name) << text;
    }
    std::ofstream(std::string(dir) + "/.bytes") << [&] {
      size_t n = 0;
      for (const auto& f : files) n += f.second.size();
      return n;
    }();
    ::_exit(0);
  }
  int child_status = 0;
  ::waitpid(child, &child_status, 0);
  if (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0) return 1;
  size_t bytes = 0;
  std::ifstream(std::string(dir) + "/.bytes") >> bytes;
  // The stock system objects join the synthetic ones.
  std::filesystem::copy(std::string(KSPM_SOURCE_DIR) + "/tests/fixtures/cluster/kubeadm",
                        std::string(dir) + "/kubeadm");
  const auto t1 = Clock::now();

  // What `scan-cluster --from DIR` does: read, parse (streaming list items), prune.
  kspm::collector::k8s::Snapshot snapshot;
  if (auto s = kspm::collector::k8s::LoadSnapshotDir(dir, snapshot);
      !s.ok() || !snapshot.errors().empty()) {
    std::fprintf(stderr, "load failed\n");
    return 1;
  }
  kspm::collector::cluster::CompactOwnedObjects(snapshot);
  const auto t2 = Clock::now();
  const long rss_loaded = CurrentRssKb();

  kspm::collector::cluster::ScanOptions options;
  auto scan = kspm::collector::cluster::EvaluateCluster(snapshot, options);
  const auto t3 = Clock::now();
  const size_t workloads = scan.stats.workloads, owned = scan.stats.owned;
  const long rss_evaluated = CurrentRssKb();

  size_t fail = 0;
  for (const auto& r : scan.results) {
    fail += r.status() == kspm::v1::STATUS_FAIL || r.status() == kspm::v1::STATUS_WARN;
  }
  const size_t results = scan.results.size();
  const auto scores = kspm::collector::cluster::NamespaceScores(scan.results);
  const auto report = kspm::collector::cluster::BuildClusterReport(
      std::move(scan), "bench", kspm::common::Clock::now(), kspm::common::Clock::now(), 600);
  const auto t4 = Clock::now();
  std::filesystem::remove_all(dir);
  const long peak_evaluated = PeakRssKb();

  // The collector's side: the report committed to a fresh sqlite store (every row new), then the
  // next periodic scan with the same verdicts (every row updated, no transition).
  const std::string db = std::string(dir) + ".db";
  auto store = kspm::collector::store::OpenSqliteStore(db);
  if (!store.ok()) {
    std::fprintf(stderr, "store: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  const auto t5 = Clock::now();
  if (!(*store)->CommitReport(report, kspm::common::Clock::now()).ok()) return 1;
  const auto t6 = Clock::now();
  auto next = report;
  next.set_scan_id(next.scan_id() + "-next");
  if (!(*store)->CommitReport(next, kspm::common::Clock::now()).ok()) return 1;
  const auto t7 = Clock::now();
  auto summary = (*store)->Summary("", kspm::common::Clock::now());
  const auto t8 = Clock::now();
  store->reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  std::printf(
      "synthetic cluster: %d pods, %d namespaces, %d roles + %d bindings; %zu objects "
      "with the kubeadm system set (%.1f MB of List JSON)\n",
      pods, namespaces, roles, roles, snapshot.size(), bytes / 1e6);
  std::printf("  workloads at their controller: %zu (%zu pods/replica sets left to them)\n",
              workloads, owned);
  std::printf("  write the snapshot   %7.3f s   (child process, not measured below)\n",
              Seconds(t0, t1));
  std::printf("  read + parse + prune %7.3f s\n", Seconds(t1, t2));
  std::printf(
      "  evaluate all checks  %7.3f s   (%zu results, %zu failing, %u threads; target < 1 s)\n",
      Seconds(t2, t3), results, fail, std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  std::printf("  report + %zu namespace scores %7.3f s   (%d results in the store report)\n",
              scores.size(), Seconds(t3, t4), report.results_size());
  std::printf("  load + evaluate      %7.3f s\n", Seconds(t1, t3));
  std::printf("  resident: %.1f MB with the snapshot loaded, %.1f MB with the results\n",
              rss_loaded / 1024.0, rss_evaluated / 1024.0);
  std::printf("  peak RSS             %7.1f MB  (target < 300 MB)\n", peak_evaluated / 1024.0);
  std::printf("  commit to sqlite     %7.3f s   first scan (%d rows inserted)\n", Seconds(t5, t6),
              report.results_size());
  std::printf("  commit to sqlite     %7.3f s   next scan, same verdicts (rows updated)\n",
              Seconds(t6, t7));
  std::printf("  summary              %7.3f s   (%d namespace and %d section scores)\n",
              Seconds(t7, t8), summary.ok() ? summary->namespaces_size() : -1,
              summary.ok() ? summary->sections_size() : -1);
  std::printf("  peak RSS with store  %7.1f MB\n", PeakRssKb() / 1024.0);
  return 0;
}

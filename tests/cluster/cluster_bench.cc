// kspm-bench-cluster: a synthetic cluster of PODS pods in NAMESPACES namespaces with ROLES Roles
// and as many RoleBindings (plus the stock kubeadm system objects), written as the List JSON that
// `kubectl get -A -o json` produces, then loaded and evaluated with every check the way the
// collector's periodic scan does it: results streamed to a sqlite store check by check
// (ReportWriter), twice (the first scan, then the next with the same verdicts). Prints wall times
// per phase and the peak resident set size.
//   kspm-bench-cluster PODS NAMESPACES ROLES     one size
//   kspm-bench-cluster                           10k, 50k and 150k pods, each in its own process
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
#include "kspm/collector/cluster/scanner.h"
#include "kspm/collector/cluster/watch.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/snapshot_dir.h"
#include "kspm/collector/server/metrics.h"
#include "kspm/collector/store/store.h"
#include "nlohmann/json.hpp"
#include "prometheus/text_serializer.h"

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

// CPU seconds this process has used (user + system): steadier than wall time on a shared
// machine, where another tenant's load stretches the wall clock.
double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
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

int RunOne(int pods, int namespaces, int roles) {
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
  const auto written = Clock::now();
  // The baseline, in a child process (its memory is not this process's): the same files read by
  // nlohmann's parser, as kspm read Lists before the fast reader (list_reader.h).
  double baseline_wall = 0, baseline_cpu = 0;
  const std::string baseline_file = std::string(dir) + "/.baseline";
  if (const pid_t reader = ::fork(); reader == 0) {
    kspm::collector::k8s::Snapshot slow;
    const auto b0 = Clock::now();
    const double c0 = CpuSeconds();
    const bool ok = kspm::collector::k8s::LoadSnapshotDir(dir, slow, /*fast_lists=*/false).ok() &&
                    slow.errors().empty();
    std::ofstream(baseline_file) << Seconds(b0, Clock::now()) << " " << CpuSeconds() - c0 << " "
                                 << slow.size();
    ::_exit(ok ? 0 : 1);
  } else if (reader > 0) {
    int reader_status = 0;
    ::waitpid(reader, &reader_status, 0);
    std::ifstream(baseline_file) >> baseline_wall >> baseline_cpu;
  }
  const auto t1 = Clock::now();
  const double cpu1 = CpuSeconds();

  // What `scan-cluster --from DIR` does: read, parse (streaming list items), prune.
  kspm::collector::k8s::Snapshot snapshot;
  if (auto s = kspm::collector::k8s::LoadSnapshotDir(dir, snapshot);
      !s.ok() || !snapshot.errors().empty()) {
    std::fprintf(stderr, "load failed\n");
    return 1;
  }
  kspm::collector::cluster::CompactOwnedObjects(snapshot);
  const auto t2 = Clock::now();
  const double cpu2 = CpuSeconds();
  const long rss_loaded = CurrentRssKb();

  // Evaluation alone, results counted and dropped as they come: load + evaluate.
  kspm::collector::cluster::ScanOptions options;
  size_t results = 0, fail = 0;
  auto evaluated = kspm::collector::cluster::EvaluateClusterInParts(
      snapshot, options, [&](std::vector<kspm::v1::CheckResult>&& part, bool) {
        for (const auto& r : part) {
          fail += r.status() == kspm::v1::STATUS_FAIL || r.status() == kspm::v1::STATUS_WARN;
        }
        results += part.size();
        return absl::OkStatus();
      });
  if (!evaluated.ok()) return 1;
  const auto t3 = Clock::now();
  const double cpu3 = CpuSeconds();
  const long peak_evaluated = PeakRssKb();

  // The collector's periodic scan: evaluated again, each check's results committed to the
  // store as they come (a fresh store: every row new), then the next scan with the same verdicts
  // (nothing written).
  const std::string db = std::string(dir) + ".db";
  std::filesystem::remove_all(dir);
  auto store = kspm::collector::store::OpenSqliteStore(db);
  if (!store.ok()) {
    std::fprintf(stderr, "store: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  const auto scan_into_store = [&](size_t& written) -> bool {
    const auto header = kspm::collector::cluster::ClusterReportHeader(
        "bench", kspm::common::Clock::now(), kspm::common::Clock::now(), 600);
    auto writer = (*store)->BeginReport(header, kspm::common::Clock::now());
    if (!writer.ok()) return false;
    auto stats = kspm::collector::cluster::EvaluateClusterInParts(
        snapshot, options, [&](std::vector<kspm::v1::CheckResult>&& part, bool more) {
          for (auto& r : part) kspm::collector::cluster::PrepareClusterResult(r);
          return (*writer)->Add(std::move(part), more);
        });
    if (!stats.ok()) return false;
    auto done = (*writer)->Finish(kspm::common::Clock::now());
    if (!done.ok()) return false;
    written = done->written;
    return true;
  };
  size_t first_written = 0, next_written = 0;
  const auto t5 = Clock::now();
  if (!scan_into_store(first_written)) return 1;
  const auto t6 = Clock::now();
  if (!scan_into_store(next_written)) return 1;
  const auto t7 = Clock::now();
  auto summary = (*store)->Summary("", kspm::common::Clock::now());
  const auto t8 = Clock::now();
  // A Prometheus scrape that reads the posture afresh (its cache expired): every cluster's
  // summary, counts by status and severity, failing results per check, then the text.
  kspm::collector::server::CollectorMetrics metrics(**store, std::chrono::milliseconds(0));
  std::string exposition;
  size_t series = 0;
  {
    const auto families = metrics.collectable()->Collect();
    for (const auto& f : families) series += f.metric.size();
    exposition = prometheus::TextSerializer().Serialize(families);
  }
  const auto t8m = Clock::now();
  const size_t objects = snapshot.size(), dropped = snapshot.replica_specs_dropped();

  // The watched cluster: a pod created with `privileged: true` in a team namespace, applied to
  // the objects as a watch event is (LiveObjects), then what the scan thread does once the
  // batch settles (PeriodicClusterScan::RunChanges): the checks it can change re-evaluated and
  // the changed verdicts committed. Latency: from the event's arrival to the commit.
  auto live_owned = std::make_unique<kspm::collector::cluster::LiveObjects>("bench");
  auto* live = live_owned.get();
  live->Reset(std::move(snapshot), "");
  kspm::collector::cluster::ClusterScanSettings settings;
  settings.cluster = "bench";
  auto watched = kspm::collector::cluster::PeriodicClusterScan::Create(std::move(live_owned),
                                                                       settings, **store);
  if (!watched.ok()) return 1;
  constexpr int kEvents = 60;
  std::vector<double> latencies, store_ms;
  size_t event_written = 0, whole_checks = 0, workload_checks = 0, namespace_checks = 0;
  for (int i = 0; i < kEvents; ++i) {
    const std::string ns = "team-" + std::to_string((i * 7919) % namespaces);
    json pod = {{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", Meta(ns, "miner-" + std::to_string(i))},
                {"spec",
                 {{"containers",
                   {{{"name", "app"},
                     {"image", "registry.example/miner:1.0"},
                     {"securityContext", {{"privileged", true}}}}}}}}};
    if (!live->Apply("Pod", {"ADDED", std::move(pod)})) return 1;
    auto changed = (*watched)->RunChanges();
    if (!changed.ok()) {
      std::fprintf(stderr, "watch: %s\n", std::string(changed.status().message()).c_str());
      return 1;
    }
    latencies.push_back(
        std::chrono::duration<double, std::milli>(kspm::common::Clock::now() - changed->oldest_seen)
            .count());
    event_written += changed->written;
    store_ms.push_back(std::chrono::duration<double, std::milli>(changed->store_time).count());
    whole_checks = changed->checks;
    workload_checks = changed->workload_checks;
    namespace_checks = changed->namespace_checks;
  }
  // Each of them is a FAIL in the store.
  kspm::collector::store::FindingFilter privileged;
  privileged.cluster = "bench";
  privileged.id = "pod.privileged";
  privileged.statuses = {kspm::v1::STATUS_FAIL};
  auto failing = (*store)->Findings(privileged);
  size_t miners = 0;
  if (failing.ok()) {
    for (const auto& f : *failing) miners += f.result().resource().name().starts_with("miner-");
  }
  // An RBAC change: a RoleBinding giving a team's account cluster-admin. Every check that reads
  // RBAC is evaluated whole and the RBAC index rebuilt, so this is the slow kind of change.
  constexpr int kRbacEvents = 5;
  std::vector<double> rbac_latencies;
  size_t rbac_whole = 0;
  for (int i = 0; i < kRbacEvents; ++i) {
    const std::string ns = "team-" + std::to_string((i * 31) % namespaces);
    json binding = {
        {"apiVersion", "rbac.authorization.k8s.io/v1"},
        {"kind", "RoleBinding"},
        {"metadata", Meta(ns, "oops-admin-" + std::to_string(i))},
        {"roleRef",
         {{"apiGroup", "rbac.authorization.k8s.io"},
          {"kind", "ClusterRole"},
          {"name", "cluster-admin"}}},
        {"subjects", {{{"kind", "ServiceAccount"}, {"name", "app"}, {"namespace", ns}}}}};
    if (!live->Apply("RoleBinding", {"ADDED", std::move(binding)})) return 1;
    auto changed = (*watched)->RunChanges();
    if (!changed.ok()) return 1;
    rbac_latencies.push_back(
        std::chrono::duration<double, std::milli>(kspm::common::Clock::now() - changed->oldest_seen)
            .count());
    rbac_whole = changed->checks;
  }
  std::sort(rbac_latencies.begin(), rbac_latencies.end());
  std::sort(latencies.begin(), latencies.end());
  std::sort(store_ms.begin(), store_ms.end());
  const auto percentile = [&](double p) {
    return latencies[std::min(latencies.size() - 1,
                              static_cast<size_t>(p * static_cast<double>(latencies.size())))];
  };
  watched->reset();
  store->reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  std::printf(
      "synthetic cluster: %d pods, %d namespaces, %d roles + %d bindings; %zu objects "
      "with the kubeadm system set (%.1f MB of List JSON)\n",
      pods, namespaces, roles, roles, objects, bytes / 1e6);
  std::printf("  workloads at their controller: %zu (%zu pods/replica sets left to them)\n",
              evaluated->workloads, evaluated->owned);
  std::printf("  write the snapshot   %7.3f s   (child process, not measured below)\n",
              Seconds(t0, written));
  std::printf(
      "  read + parse + prune %7.3f s   (%.3f s of CPU; %zu replica pod specs dropped as read)\n",
      Seconds(t1, t2), cpu2 - cpu1, dropped);
  std::printf(
      "    baseline, nlohmann %7.3f s   (%.3f s of CPU; the same files, child process): "
      "%.1fx the fast reader's time\n",
      baseline_wall, baseline_cpu, baseline_wall / std::max(Seconds(t1, t2), 1e-9));
  std::printf(
      "  evaluate all checks  %7.3f s   (%.3f s of CPU; %zu results, %zu failing, %u threads)\n",
      Seconds(t2, t3), cpu3 - cpu2, results, fail,
      std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  std::printf("  load + evaluate      %7.3f s   (target < 10 s at 150,000 pods)\n",
              Seconds(t1, t3));
  std::printf("  resident: %.1f MB with the snapshot loaded; peak %.1f MB through evaluation\n",
              rss_loaded / 1024.0, peak_evaluated / 1024.0);
  std::printf(
      "  scan into sqlite     %7.3f s   first scan, evaluated and committed in parts "
      "(%zu rows written)\n",
      Seconds(t5, t6), first_written);
  std::printf("  scan into sqlite     %7.3f s   next scan, same verdicts (%zu rows written)\n",
              Seconds(t6, t7), next_written);
  std::printf("  summary              %7.3f s   (%d namespace and %d section scores)\n",
              Seconds(t7, t8), summary.ok() ? summary->namespaces_size() : -1,
              summary.ok() ? summary->sections_size() : -1);
  std::printf("  /metrics scrape      %7.3f s   (%zu series, %zu KB; %.1fx the summary alone)\n",
              Seconds(t8, t8m), series, exposition.size() / 1024,
              Seconds(t8, t8m) / std::max(1e-9, Seconds(t7, t8)));
  std::printf(
      "  watch: privileged pod created -> FAIL committed: p50 %.0f ms, p99 %.0f ms, max %.0f ms "
      "over %d events (+ %lld ms settle; target p99 < 1 s); %zu checks whole, %zu per "
      "workload, %zu per namespace; %zu rows written, %zu/%d pods FAIL in the store\n",
      percentile(0.5), percentile(0.99), latencies.back(), kEvents,
      static_cast<long long>(settings.settle.count()), whole_checks, workload_checks,
      namespace_checks, event_written, miners, kEvents);
  std::printf("         of which in the store's writer: p50 %.0f ms\n",
              store_ms[store_ms.size() / 2]);
  std::printf(
      "  watch: RoleBinding to cluster-admin created -> committed: median %.0f ms, max %.0f "
      "ms over %d events (%zu checks evaluated whole, RBAC index rebuilt)\n",
      rbac_latencies[rbac_latencies.size() / 2], rbac_latencies.back(), kRbacEvents, rbac_whole);
  std::printf("  peak RSS with store  %7.1f MB  (target < 1,000 MB at 150,000 pods)\n",
              PeakRssKb() / 1024.0);
  std::fflush(stdout);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 4) {
    const int pods = std::atoi(argv[1]), namespaces = std::atoi(argv[2]),
              roles = std::atoi(argv[3]);
    if (pods <= 0 || namespaces <= 0 || roles < 0) {
      std::fprintf(stderr, "usage: kspm-bench-cluster [PODS NAMESPACES ROLES]\n");
      return 2;
    }
    return RunOne(pods, namespaces, roles);
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: kspm-bench-cluster [PODS NAMESPACES ROLES]\n");
    return 2;
  }
  // Each size in a process of its own, so that each peak RSS is its own.
  const int sizes[][3] = {{10000, 1000, 3000}, {50000, 5000, 15000}, {150000, 5000, 45000}};
  for (const auto& size : sizes) {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(RunOne(size[0], size[1], size[2]));
    int status = 0;
    ::waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  }
  return 0;
}

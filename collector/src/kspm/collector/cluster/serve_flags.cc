#include "kspm/collector/cluster/serve_flags.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "kspm/collector/cluster/watch.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::cluster {

void AddServeClusterFlags(CLI::App& serve, ServeClusterFlags& f) {
  serve.add_option("--cluster-name", f.cluster_name, "Cluster the cluster-level results belong to")
      ->capture_default_str();
  serve.add_option("--kubeconfig", f.kubeconfig,
                   "Scan the cluster through this kubeconfig (default: in-cluster credentials "
                   "when KUBERNETES_SERVICE_HOST is set)");
  serve.add_option("--context", f.context, "kubeconfig context (default: current-context)");
  serve.add_option("--cluster-snapshot", f.snapshot_dir,
                   "Scan this snapshot directory instead of the API (offline, demos)");
  serve
      .add_option("--cluster-scan-interval", f.interval_seconds,
                  "Seconds between full cluster scans (when watching: full re-evaluations of "
                  "the watched objects, with no API request)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve
      .add_flag("--cluster-watch,!--no-cluster-watch", f.watch,
                "Watch the API after one list and re-evaluate each change within a second "
                "(default); --no-cluster-watch lists every kind at every scan instead")
      ->capture_default_str();
  serve
      .add_option("--cluster-relist-interval", f.relist_seconds,
                  "When watching: seconds between the safety-net lists of every kind")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve.add_option("--exceptions", f.exceptions, "YAML file of accepted cluster findings");
  serve.add_flag("--include-system", f.include_system,
                 "Also evaluate Kubernetes' own roles, bindings and kube-system workloads");
  serve.add_option("--system-namespace", f.system_namespaces,
                   "Another namespace to treat as system (repeat)");
  serve.add_option("--api-timeout", f.timeout_seconds, "Seconds per Kubernetes API request")
      ->capture_default_str();
  serve.add_flag("--no-cluster-scan", f.disabled, "Do not scan the cluster's API objects");
  serve.add_option("--scan-context", f.scan_contexts,
                   "NAME=CONTEXT: also scan the cluster of this --kubeconfig context, filed "
                   "under cluster NAME (repeat: one collector, many clusters)");
  serve.add_flag("--scan-configmaps", f.configmaps,
                 "Also read ConfigMaps and report keys that hold credentials (values are never "
                 "kept or shown; needs the kspm-collector-configmaps ClusterRole)");
}

absl::StatusOr<k8s::Connection> SelectConnection(const std::string& kubeconfig,
                                                 const std::string& context) {
  if (!kubeconfig.empty()) return k8s::LoadKubeconfig(kubeconfig, context);
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  if (host != nullptr && *host != '\0') return k8s::InClusterConnection();
  return absl::NotFoundError(
      "no --kubeconfig and KUBERNETES_SERVICE_HOST is not set: no API to scan");
}

std::string OwnNamespace() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  if (host == nullptr || *host == '\0') return "";
  std::ifstream in("/var/run/secrets/kubernetes.io/serviceaccount/namespace");
  std::string ns;
  if (in) std::getline(in, ns);
  return ns;
}

namespace {

// TokenReview and pod reads through the API client: short timeouts and few retries, since an
// agent waiting to enrol retries on its own.
class ApiReviewer final : public server::KubernetesReviewer {
 public:
  explicit ApiReviewer(std::unique_ptr<k8s::ApiClient> client) : client_(std::move(client)) {}

  absl::StatusOr<nlohmann::json> ReviewToken(const std::string& token,
                                             const std::string& audience) override {
    nlohmann::json review = {{"apiVersion", "authentication.k8s.io/v1"},
                             {"kind", "TokenReview"},
                             {"spec", {{"token", token}, {"audiences", {audience}}}}};
    return client_->Create("/apis/authentication.k8s.io/v1/tokenreviews", review,
                           "tokenreviews.authentication.k8s.io");
  }

  absl::StatusOr<nlohmann::json> GetPod(const std::string& ns, const std::string& name) override {
    return client_->GetObject("/api/v1/namespaces/" + ns + "/pods/" + name,
                              "pod " + ns + "/" + name);
  }

 private:
  std::unique_ptr<k8s::ApiClient> client_;
};

}  // namespace

std::function<absl::StatusOr<std::unique_ptr<server::KubernetesReviewer>>()> MakeReviewerFactory(
    const ServeClusterFlags& flags) {
  auto connection = SelectConnection(flags.kubeconfig, flags.context);
  if (!connection.ok()) {
    spdlog::info("enrolment with service-account tokens off: {}",
                 std::string(connection.status().message()));
    return nullptr;
  }
  return [connection = *std::move(
              connection)]() -> absl::StatusOr<std::unique_ptr<server::KubernetesReviewer>> {
    k8s::ClientOptions options;
    options.timeout = std::chrono::seconds(10);
    options.max_attempts = 3;
    auto client = k8s::MakeApiClient(connection, options);
    if (!client.ok()) return client.status();
    return std::make_unique<ApiReviewer>(*std::move(client));
  };
}

namespace {

// The API source of one connection, watching or listing as the flags say.
std::unique_ptr<ObjectSource> SourceOf(k8s::Connection connection, const ServeClusterFlags& flags) {
  k8s::ClientOptions options;
  options.timeout = std::chrono::seconds(flags.timeout_seconds);
  if (flags.watch) {
    WatchSettings watch;
    watch.relist = std::chrono::seconds(flags.relist_seconds);
    watch.configmaps = flags.configmaps;
    return WatchSource(std::move(connection), options, watch);
  }
  return ApiSource(std::move(connection), options, flags.configmaps);
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<PeriodicClusterScan>>> StartClusterScans(
    const ServeClusterFlags& flags, store::Store& store) {
  std::vector<std::unique_ptr<PeriodicClusterScan>> out;
  if (flags.disabled) return out;
  if (!flags.scan_contexts.empty() && flags.kubeconfig.empty()) {
    return absl::InvalidArgumentError(
        "--scan-context needs --kubeconfig (the file its contexts "
        "are in)");
  }
  std::set<std::string> names;
  // Parsed and loaded before any scan starts: a bad one is a start-up error naming it.
  std::vector<std::pair<std::string, k8s::Connection>> more;
  for (const auto& spec : flags.scan_contexts) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return absl::InvalidArgumentError("--scan-context " + spec + ": expected NAME=CONTEXT");
    }
    const std::string name = spec.substr(0, eq);
    if (name == flags.cluster_name || !names.insert(name).second) {
      return absl::InvalidArgumentError("--scan-context " + spec + ": cluster " + name +
                                        " is scanned already");
    }
    auto connection = k8s::LoadKubeconfig(flags.kubeconfig, spec.substr(eq + 1));
    if (!connection.ok()) {
      return absl::InvalidArgumentError("--scan-context " + spec + ": " +
                                        std::string(connection.status().message()));
    }
    more.emplace_back(name, *std::move(connection));
  }
  auto first = StartClusterScan(flags, store);
  if (!first.ok()) return first.status();
  if (*first) out.push_back(*std::move(first));
  for (auto& [name, connection] : more) {
    ClusterScanSettings settings;
    settings.cluster = name;
    settings.interval = std::chrono::seconds(flags.interval_seconds);
    settings.exceptions_file = flags.exceptions;
    settings.policy.include_system = flags.include_system;
    for (const auto& ns : flags.system_namespaces) settings.policy.namespaces.insert(ns);
    auto source = SourceOf(std::move(connection), flags);
    spdlog::info("cluster scan of {} every {} s from {}", settings.cluster,
                 settings.interval.count(), source->Describe());
    auto scan = PeriodicClusterScan::Create(std::move(source), std::move(settings), store);
    if (!scan.ok()) return scan.status();
    (*scan)->Start();
    out.push_back(*std::move(scan));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<PeriodicClusterScan>> StartClusterScan(
    const ServeClusterFlags& flags, store::Store& store) {
  if (flags.disabled) return std::unique_ptr<PeriodicClusterScan>();
  std::unique_ptr<ObjectSource> source;
  if (!flags.snapshot_dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(flags.snapshot_dir, ec)) {
      return absl::InvalidArgumentError("--cluster-snapshot " + flags.snapshot_dir +
                                        " is not a directory");
    }
    source = DirectorySource(flags.snapshot_dir, flags.configmaps);
  } else {
    auto connection = SelectConnection(flags.kubeconfig, flags.context);
    if (absl::IsNotFound(connection.status())) {
      spdlog::info("cluster scan off: {}", std::string(connection.status().message()));
      return std::unique_ptr<PeriodicClusterScan>();
    }
    if (!connection.ok()) return connection.status();
    source = SourceOf(*std::move(connection), flags);
  }
  ClusterScanSettings settings;
  settings.cluster = flags.cluster_name;
  settings.interval = std::chrono::seconds(flags.interval_seconds);
  settings.exceptions_file = flags.exceptions;
  settings.policy.include_system = flags.include_system;
  for (const auto& ns : flags.system_namespaces) settings.policy.namespaces.insert(ns);
  // In a pod, the collector's own namespace is a system one.
  if (flags.kubeconfig.empty() && flags.snapshot_dir.empty()) {
    if (const std::string own = OwnNamespace(); !own.empty())
      settings.policy.namespaces.insert(own);
  }
  spdlog::info("cluster scan of {} every {} s from {}", settings.cluster, settings.interval.count(),
               source->Describe());
  auto scan = PeriodicClusterScan::Create(std::move(source), std::move(settings), store);
  if (!scan.ok()) return scan.status();
  (*scan)->Start(/*first_inline=*/!flags.snapshot_dir.empty());
  return scan;
}

}  // namespace kspm::collector::cluster

#pragma once

// The `kspm-collector serve` flags of the periodic cluster scan, and the start-up step that
// turns them into a running scan. The source is, in order: --cluster-snapshot DIR, --kubeconfig
// PATH, in-cluster credentials when KUBERNETES_SERVICE_HOST is set; with none of them the cluster
// scan is off (and the log says so).
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "kspm/collector/cluster/scanner.h"
#include "kspm/collector/server/fleet.h"
#include "kspm/collector/store/store.h"

namespace kspm::collector::cluster {

struct ServeClusterFlags {
  std::string snapshot_dir;
  std::string kubeconfig;
  std::string context;
  std::string cluster_name = "default";
  int interval_seconds = 600;
  std::string exceptions;
  bool include_system = false;
  std::vector<std::string> system_namespaces;
  int timeout_seconds = 30;
  bool disabled = false;  // --no-cluster-scan
  bool watch = true;      // API sources: list then watch (--no-cluster-watch: list every interval)
  int relist_seconds = 6 * 3600;
  bool configmaps = false;  // --scan-configmaps
  // --scan-context NAME=CONTEXT: more clusters, each through its context of --kubeconfig and
  // filed under NAME (a central collector scanning several clusters).
  std::vector<std::string> scan_contexts;
};

void AddServeClusterFlags(CLI::App& serve, ServeClusterFlags& flags);

// The connection the flags and environment select for the API, or NotFound when none does.
[[nodiscard]] absl::StatusOr<k8s::Connection> SelectConnection(const std::string& kubeconfig,
                                                               const std::string& context);

// The collector's own namespace when it runs in a pod with in-cluster credentials (read from the
// service account), else empty: it is treated as a system namespace.
std::string OwnNamespace();

// The API enrolment verifies service-account tokens with: the connection the flags select
// (--kubeconfig, or in-cluster), whether the cluster scan is on or not. Null when there is none.
std::function<absl::StatusOr<std::unique_ptr<server::KubernetesReviewer>>()> MakeReviewerFactory(
    const ServeClusterFlags& flags);

// Builds and starts the periodic scan; null when it is off. Start-up errors (unreadable
// kubeconfig, exceptions file, snapshot directory) are returned, naming the file.
// StartClusterScan's scan, then one per --scan-context (NAME=CONTEXT of --kubeconfig), each
// started. A malformed or unknown context, or a name used twice, is an error naming it.
[[nodiscard]] absl::StatusOr<std::vector<std::unique_ptr<PeriodicClusterScan>>> StartClusterScans(
    const ServeClusterFlags& flags, store::Store& store);

[[nodiscard]] absl::StatusOr<std::unique_ptr<PeriodicClusterScan>> StartClusterScan(
    const ServeClusterFlags& flags, store::Store& store);

}  // namespace kspm::collector::cluster

#include "kspm/agent/scan.h"

#include <unistd.h>

#include <cstdlib>

#include "kspm/agent/platform.h"
#include "kspm/common/safe_text.h"
#include "kspm/common/strings.h"
#include "kspm/common/time.h"

namespace kspm::agent {

std::string ResolveNodeName(const NodeSettings& settings, const host::HostView& host) {
  if (!settings.node_name.empty()) return settings.node_name;
  if (const char* env = std::getenv("NODE_NAME"); env != nullptr && *env != '\0') return env;
  if (auto name = host.ReadFile("/etc/hostname"); name.ok()) {
    std::string trimmed(common::Trim(*name));
    if (!trimmed.empty()) return trimmed;
  }
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) == 0 && buf[0] != '\0') return buf;
  return "unknown";
}

void SetPlatform(const Platform& platform, v1::NodeIdentity* id) {
  id->set_platform(platform.name);
  id->set_platform_benchmark(platform.benchmark);
  id->set_platform_reason(platform.why);
}

v1::NodeIdentity MakeIdentity(const discovery::HostState& state, const NodeSettings& settings,
                              const host::HostView& host, const checks::Catalog* catalog) {
  v1::NodeIdentity id;
  id.set_node_name(ResolveNodeName(settings, host));
  id.set_cluster(settings.cluster);
  for (auto role : state.roles) id.add_roles(role);
  id.set_os(state.os);
  id.set_kernel(state.kernel);
  id.set_kubelet_version(state.kubelet_version);
  id.set_container_runtime(state.container_runtime);
  id.set_agent_version(KSPM_VERSION);
  id.set_drift_mode(settings.drift_mode);
  if (catalog != nullptr) SetPlatform(DetectPlatform(host, state, *catalog), &id);
  return id;
}

checks::Selection ChooseBenchmarks(const checks::Selection& selection,
                                   const checks::Catalog& catalog, const Platform& platform) {
  if (!selection.auto_platform) return selection;
  checks::Selection chosen = selection;
  chosen.benchmarks.clear();
  for (const auto& b : catalog.Benchmarks()) {
    const bool wanted = selection.benchmarks.empty() || selection.benchmarks.contains(b);
    if (checks::IsKubernetesBenchmark(b) ? b == platform.benchmark : wanted) {
      chosen.benchmarks.insert(b);
    }
  }
  return chosen;
}

namespace {

// Who runs the control plane of a managed platform, for the results it makes moot.
std::string Provider(const std::string& platform) {
  if (platform == "eks") return "Amazon EKS";
  if (platform == "gke") return "Google GKE";
  if (platform == "aks") return "Azure AKS";
  return "";
}

}  // namespace

std::vector<v1::CheckResult> EvaluateNode(const host::HostView& host,
                                          const checks::Catalog& catalog,
                                          const checks::Selection& selection,
                                          const discovery::HostState& state,
                                          const Platform& platform,
                                          const std::set<std::string>* components) {
  auto results = checks::EvaluateAll(catalog, ChooseBenchmarks(selection, catalog, platform), host,
                                     state, components);
  const std::string provider = Provider(platform.name);
  if (provider.empty()) return results;
  for (auto& r : results) {
    if (r.status() != v1::STATUS_NOT_APPLICABLE) continue;
    const checks::ComponentSpec* spec = catalog.FindComponent(r.component());
    if (spec == nullptr ||
        (spec->role != v1::NODE_ROLE_CONTROL_PLANE && spec->role != v1::NODE_ROLE_ETCD)) {
      continue;
    }
    const auto it = state.components.find(r.component());
    if (it != state.components.end() && it->second.present) continue;
    r.set_reason("managed by the provider: " + provider + " runs " + r.component() +
                 " outside the cluster's nodes, so this item is the provider's (" + r.reason() +
                 ")");
  }
  return results;
}

v1::NodeReport RunScan(const host::HostView& host, const checks::Catalog& catalog,
                       const checks::Selection& selection, const NodeSettings& settings) {
  v1::NodeReport report;
  report.set_scan_id(common::NewUuid());
  *report.mutable_started_at() = common::ToProto(common::Clock::now());
  const discovery::HostState state = discovery::Discover(host, catalog);
  const Platform platform = DetectPlatform(host, state, catalog);
  *report.mutable_node() = MakeIdentity(state, settings, host);
  SetPlatform(platform, report.mutable_node());
  for (auto& r : EvaluateNode(host, catalog, selection, state, platform)) {
    *report.add_results() = std::move(r);
  }
  report.set_full(true);
  report.set_host_root(host.root());
  *report.mutable_finished_at() = common::ToProto(common::Clock::now());
  // Host text may hold any bytes; the report must serialise whatever it holds.
  common::MakeValidUtf8(&report);
  return report;
}

}  // namespace kspm::agent

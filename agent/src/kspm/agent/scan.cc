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
  if (catalog != nullptr) {
    const Platform platform = DetectPlatform(host, state, *catalog);
    id.set_platform(platform.name);
    id.set_platform_benchmark(platform.benchmark);
    id.set_platform_reason(platform.why);
  }
  return id;
}

v1::NodeReport RunScan(const host::HostView& host, const checks::Catalog& catalog,
                       const checks::Selection& selection, const NodeSettings& settings) {
  v1::NodeReport report;
  report.set_scan_id(common::NewUuid());
  *report.mutable_started_at() = common::ToProto(common::Clock::now());
  const discovery::HostState state = discovery::Discover(host, catalog);
  *report.mutable_node() = MakeIdentity(state, settings, host, &catalog);
  checks::Selection chosen = selection;
  if (selection.auto_platform) {
    // The platform's benchmark, and every benchmark outside the Kubernetes family.
    chosen.benchmarks.clear();
    for (const auto& b : catalog.Benchmarks()) {
      const bool wanted = selection.benchmarks.empty() || selection.benchmarks.contains(b);
      if (checks::IsKubernetesBenchmark(b) ? b == report.node().platform_benchmark() : wanted) {
        chosen.benchmarks.insert(b);
      }
    }
  }
  for (auto& r : checks::EvaluateAll(catalog, chosen, host, state)) {
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

#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/checks/evaluator.h"
#include "kspm/agent/discovery/discovery.h"
#include "kspm/agent/host/host_view.h"
#include "kspm/agent/platform.h"
#include "kspm/v1/results.pb.h"

namespace kspm::agent {

// Who the agent says it is; the collector checks the node name against the client certificate.
struct NodeSettings {
  std::string node_name;  // empty: NODE_NAME, then the host name
  std::string cluster = "default";
  std::string drift_mode = "none";
};

// The node name the agent reports: the setting, else NODE_NAME (the downward API), else the
// host's own name.
std::string ResolveNodeName(const NodeSettings& settings, const host::HostView& host);

// The benchmarks a node is judged by: the selection, with `auto` narrowed to the platform's
// Kubernetes benchmark (the benchmarks outside that family as the selection says).
checks::Selection ChooseBenchmarks(const checks::Selection& selection,
                                   const checks::Catalog& catalog, const Platform& platform);

// The one way results are made, for full scans and drift re-checks alike: the chosen checks
// evaluated on the discovered state. On a managed platform (EKS, GKE, AKS) a control-plane or
// etcd item that does not apply says that the provider runs that part.
std::vector<v1::CheckResult> EvaluateNode(const host::HostView& host,
                                          const checks::Catalog& catalog,
                                          const checks::Selection& selection,
                                          const discovery::HostState& state,
                                          const Platform& platform,
                                          const std::set<std::string>* components = nullptr);

// Runs discovery and every selected check once, and packs the results as a full report with a
// fresh scan id. Never fails: what cannot be read is in the results as ERROR.
v1::NodeReport RunScan(const host::HostView& host, const checks::Catalog& catalog,
                       const checks::Selection& selection, const NodeSettings& settings);

// The identity part of a report, from what discovery found; with the catalogue, the platform
// and its benchmark too (DetectPlatform).
// The platform part of an identity.
void SetPlatform(const Platform& platform, v1::NodeIdentity* id);

v1::NodeIdentity MakeIdentity(const discovery::HostState& state, const NodeSettings& settings,
                              const host::HostView& host, const checks::Catalog* catalog = nullptr);

}  // namespace kspm::agent

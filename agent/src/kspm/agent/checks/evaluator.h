#pragma once

#include <set>
#include <string>
#include <vector>

#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/discovery/discovery.h"
#include "kspm/agent/host/host_view.h"
#include "kspm/v1/results.pb.h"

namespace kspm::agent::checks {

// What a scan evaluates.
struct Selection {
  // Benchmarks to report under; empty means every benchmark of the catalogue.
  std::set<std::string> benchmarks;
  // Check ids or benchmark item ids (`4.2.1`, or a prefix such as `4.2`) to keep; empty keeps all.
  std::set<std::string> only;
  // Check ids or item ids (or prefixes) to drop.
  std::set<std::string> skip;
  // `--benchmark auto`: of the Kubernetes benchmarks (CIS Kubernetes and the platform ones),
  // only the one of the platform the node shows (DetectPlatform); the others (Docker, kspm's
  // own) as `benchmarks` says.
  bool auto_platform = false;
};

// The ids of `selectors` (an --only or --skip list) that match no check id and no benchmark item
// (or item prefix) of the catalogue: a selection naming them would silently select nothing.
std::vector<std::string> UnknownSelectors(const Catalog& catalog,
                                          const std::set<std::string>& selectors);

// Whether a benchmark is one of the Kubernetes family (one applies per node).
bool IsKubernetesBenchmark(const std::string& benchmark);

// An effective setting value and every source consulted.
struct ResolvedSetting {
  bool found = false;
  std::string value;
  bool from_default = false;
  // The winning source first, then lower-precedence sources that also set the value.
  std::vector<v1::Evidence> evidence;
  // Set when the value cannot be known (unreadable config, truncated command line).
  std::optional<std::string> error;
};

// Resolves a setting of a component the way the component does: flag (or environment) over
// config drop-ins over the config file over the mode-dependent default.
ResolvedSetting ResolveSetting(const discovery::Component& component, const SettingSpec& spec);

// Evaluates one check under one benchmark. Never throws; unreadable input becomes ERROR.
v1::CheckResult Evaluate(const Check& check, const std::string& benchmark,
                         const host::HostView& host, const discovery::HostState& state);

// Evaluates every selected check, in catalogue order, once per selected benchmark it maps to;
// with `components`, only the checks of those components (drift re-evaluation).
std::vector<v1::CheckResult> EvaluateAll(const Catalog& catalog, const Selection& selection,
                                         const host::HostView& host,
                                         const discovery::HostState& state,
                                         const std::set<std::string>* components = nullptr);

// Whether a typed value meets an expectation; `why` receives a short explanation on failure.
bool Meets(const Expectation& expect, ValueType type, const std::string& actual, std::string* why);

}  // namespace kspm::agent::checks

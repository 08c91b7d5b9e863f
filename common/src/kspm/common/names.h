#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kspm/v1/query.pb.h"
#include "kspm/v1/results.pb.h"

namespace kspm::common {

// Upper-case short names as shown to users: PASS, FAIL, WARN, MANUAL, NOT_APPLICABLE, ERROR.
std::string_view StatusName(v1::Status status);
// Accepts the short names in any case, and `na` for NOT_APPLICABLE.
std::optional<v1::Status> ParseStatus(std::string_view name);

// Adds `n` to the counter of `status` (STATUS_UNSPECIFIED is not counted).
void AddStatusCount(v1::StatusCounts& counts, v1::Status status, uint32_t n = 1);

// Lower-case names: info, low, medium, high, critical.
std::string_view SeverityName(v1::Severity severity);
std::optional<v1::Severity> ParseSeverity(std::string_view name);

// Lower-case role names: control-plane, worker, etcd, docker-host.
std::string_view RoleName(v1::NodeRole role);

// Short source names for text output: flag, config, drop-in, env, default, stat, manifest, api.
std::string_view SourceKindName(v1::SourceKind kind);

// Whether a benchmark is one of the Kubernetes family (CIS Kubernetes, the platform benchmarks,
// the distribution profiles): a node is judged by one of them.
bool IsKubernetesBenchmark(std::string_view benchmark);

}  // namespace kspm::common

#include "kspm/common/names.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace kspm::common {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

constexpr std::array<std::pair<v1::Status, std::string_view>, 6> kStatusNames{{
    {v1::STATUS_PASS, "PASS"},
    {v1::STATUS_FAIL, "FAIL"},
    {v1::STATUS_WARN, "WARN"},
    {v1::STATUS_MANUAL, "MANUAL"},
    {v1::STATUS_NOT_APPLICABLE, "NOT_APPLICABLE"},
    {v1::STATUS_ERROR, "ERROR"},
}};

constexpr std::array<std::pair<v1::Severity, std::string_view>, 5> kSeverityNames{{
    {v1::SEVERITY_INFO, "info"},
    {v1::SEVERITY_LOW, "low"},
    {v1::SEVERITY_MEDIUM, "medium"},
    {v1::SEVERITY_HIGH, "high"},
    {v1::SEVERITY_CRITICAL, "critical"},
}};

}  // namespace

std::string_view StatusName(v1::Status status) {
  for (const auto& [value, name] : kStatusNames) {
    if (value == status) return name;
  }
  return "UNSPECIFIED";
}

std::optional<v1::Status> ParseStatus(std::string_view name) {
  const std::string lower = Lower(name);
  if (lower == "na" || lower == "n/a") return v1::STATUS_NOT_APPLICABLE;
  for (const auto& [value, text] : kStatusNames) {
    if (Lower(text) == lower) return value;
  }
  return std::nullopt;
}

std::string_view SeverityName(v1::Severity severity) {
  for (const auto& [value, name] : kSeverityNames) {
    if (value == severity) return name;
  }
  return "unspecified";
}

std::optional<v1::Severity> ParseSeverity(std::string_view name) {
  const std::string lower = Lower(name);
  for (const auto& [value, text] : kSeverityNames) {
    if (text == lower) return value;
  }
  return std::nullopt;
}

std::string_view RoleName(v1::NodeRole role) {
  switch (role) {
    case v1::NODE_ROLE_CONTROL_PLANE:
      return "control-plane";
    case v1::NODE_ROLE_WORKER:
      return "worker";
    case v1::NODE_ROLE_ETCD:
      return "etcd";
    case v1::NODE_ROLE_DOCKER_HOST:
      return "docker-host";
    default:
      return "unspecified";
  }
}

std::string_view SourceKindName(v1::SourceKind kind) {
  switch (kind) {
    case v1::SOURCE_KIND_FLAG:
      return "flag";
    case v1::SOURCE_KIND_CONFIG_FILE:
      return "config";
    case v1::SOURCE_KIND_DROP_IN:
      return "drop-in";
    case v1::SOURCE_KIND_ENVIRONMENT:
      return "env";
    case v1::SOURCE_KIND_DEFAULT:
      return "default";
    case v1::SOURCE_KIND_FILE_METADATA:
      return "stat";
    case v1::SOURCE_KIND_MANIFEST:
      return "manifest";
    case v1::SOURCE_KIND_API_OBJECT:
      return "api";
    default:
      return "unknown";
  }
}

void AddStatusCount(v1::StatusCounts& c, v1::Status status, uint32_t n) {
  switch (status) {
    case v1::STATUS_PASS:
      c.set_pass(c.pass() + n);
      break;
    case v1::STATUS_FAIL:
      c.set_fail(c.fail() + n);
      break;
    case v1::STATUS_WARN:
      c.set_warn(c.warn() + n);
      break;
    case v1::STATUS_MANUAL:
      c.set_manual(c.manual() + n);
      break;
    case v1::STATUS_NOT_APPLICABLE:
      c.set_not_applicable(c.not_applicable() + n);
      break;
    case v1::STATUS_ERROR:
      c.set_error(c.error() + n);
      break;
    default:
      break;
  }
}

bool IsKubernetesBenchmark(std::string_view benchmark) {
  for (std::string_view prefix :
       {"cis-kubernetes-", "cis-eks-", "cis-gke-", "cis-aks-", "k3s-cis-", "rke2-cis-"}) {
    if (benchmark.starts_with(prefix)) return true;
  }
  return false;
}

}  // namespace kspm::common

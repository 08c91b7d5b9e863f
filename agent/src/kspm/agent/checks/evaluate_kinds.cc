#include "kspm/agent/checks/evaluate_kinds.h"

#include <cstdio>

namespace kspm::agent::checks::internal {

v1::Evidence MakeEvidence(std::string key, std::string value, bool present, v1::SourceKind kind,
                          std::string source, std::string path, int pid) {
  v1::Evidence e;
  e.set_key(std::move(key));
  e.set_value(std::move(value));
  e.set_present(present);
  e.set_source_kind(kind);
  e.set_source(std::move(source));
  e.set_path(std::move(path));
  e.set_pid(pid);
  return e;
}

std::string OctalMode(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777u);
  return buf;
}

v1::Status FailStatus(const v1::CheckResult& out) {
  return out.scored() ? v1::STATUS_FAIL : v1::STATUS_WARN;
}

}  // namespace kspm::agent::checks::internal

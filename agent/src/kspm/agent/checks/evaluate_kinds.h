#pragma once

// What the per-kind check evaluators share (settings.cc, files.cc, audit_rules.cc,
// encryption.cc); not part of the checks API.
#include <cstdint>
#include <string>

#include "kspm/agent/checks/evaluator.h"

namespace kspm::agent::checks::internal {

using discovery::Component;
using Op = Expectation::Op;

// Most file paths one result lists as evidence.
inline constexpr size_t kMaxFileEvidence = 20;

v1::Evidence MakeEvidence(std::string key, std::string value, bool present, v1::SourceKind kind,
                          std::string source, std::string path = "", int pid = 0);
// `0644`.
std::string OctalMode(uint32_t mode);
// A failure of a scored item is FAIL, of an unscored (Manual) one WARN: as the result's benchmark
// scores it (the same check may be Automated in one benchmark and Manual in another).
v1::Status FailStatus(const v1::CheckResult& out);

// One evaluator per kind of check (CheckKind); each fills `out`'s status, reason and evidence.
void EvaluateSettings(const Check& check, const discovery::Component& c, const host::HostView& host,
                      v1::CheckResult& out);
void EvaluateFiles(const Check& check, const discovery::Component& c, const host::HostView& host,
                   v1::CheckResult& out);
void EvaluateAudit(const Check& check, const discovery::Component& c, const host::HostView& host,
                   v1::CheckResult& out);
void EvaluateEncryption(const Check& check, const discovery::Component& c,
                        const host::HostView& host, v1::CheckResult& out);

}  // namespace kspm::agent::checks::internal

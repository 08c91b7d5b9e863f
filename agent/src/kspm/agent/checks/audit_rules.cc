// Audit checks (CIS Docker 1.1.x): an auditd rule must watch a path.
#include <algorithm>

#include "kspm/agent/checks/evaluate_kinds.h"
#include "kspm/common/strings.h"

namespace kspm::agent::checks::internal {
namespace {

// The auditd rule files of the host, in the order auditd reads them.
std::vector<std::string> AuditRuleFiles(const host::HostView& host) {
  std::vector<std::string> out;
  if (host.Stat("/etc/audit/audit.rules").ok()) out.push_back("/etc/audit/audit.rules");
  if (auto names = host.ListDir("/etc/audit/rules.d"); names.ok()) {
    for (const auto& n : *names) {
      if (n.ends_with(".rules")) out.push_back("/etc/audit/rules.d/" + n);
    }
  }
  return out;
}

// Whether a rule line watches `path`: `-w PATH ...` or `-a ... -F path=PATH` / `-F dir=PATH`.
bool RuleWatches(std::string_view line, const std::string& path) {
  std::vector<std::string_view> words = common::Split(line, ' ', true);
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == "-w" && words[i + 1] == path) return true;
    if (words[i] == "-F" && (words[i + 1] == "path=" + path || words[i + 1] == "dir=" + path)) {
      return true;
    }
  }
  return false;
}

}  // namespace

void EvaluateAudit(const Check& check, const Component& c, const host::HostView& host,
                   v1::CheckResult& out) {
  std::string path = check.audit->path;
  if (!check.audit->role.empty()) {
    const auto it = c.files.find(check.audit->role);
    if (it == c.files.end()) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason(c.name + " has no " + check.audit->role + " file on this node");
      return;
    }
    path = it->second.path;
  }
  if (auto st = host.Stat(path); !st.ok()) {
    out.set_status(v1::STATUS_NOT_APPLICABLE);
    out.set_reason(path + " does not exist on this node, so there is nothing to audit");
    return;
  }
  const auto files = AuditRuleFiles(host);
  for (const auto& file : files) {
    auto text = host.ReadFile(file);
    if (!text.ok()) {
      out.set_status(v1::STATUS_ERROR);
      out.set_reason(std::string(text.status().message()));
      return;
    }
    int line_no = 0;
    for (std::string_view line : common::Split(*text, '\n')) {
      ++line_no;
      line = common::Trim(line);
      if (line.empty() || line[0] == '#') continue;
      if (RuleWatches(line, path)) {
        *out.add_evidence() =
            MakeEvidence("audit rule", std::string(line), true, v1::SOURCE_KIND_CONFIG_FILE,
                         file + ":" + std::to_string(line_no), file);
        out.set_status(v1::STATUS_PASS);
        out.set_reason(path + " is watched by " + file + ":" + std::to_string(line_no));
        return;
      }
    }
  }
  *out.add_evidence() =
      MakeEvidence("audit rule for " + path, "", false, v1::SOURCE_KIND_CONFIG_FILE,
                   files.empty() ? "no /etc/audit/audit.rules or /etc/audit/rules.d/*.rules"
                                 : "none in " + common::Join(files, ", "));
  out.set_status(FailStatus(out));
  out.set_reason("no audit rule watches " + path + "; expected " + out.expected());
}

}  // namespace kspm::agent::checks::internal

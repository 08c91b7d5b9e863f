#include "kspm/agent/checks/evaluator.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "kspm/common/names.h"
#include "kspm/common/strings.h"

namespace kspm::agent::checks {
namespace {

using discovery::Component;
using Op = Expectation::Op;

constexpr size_t kMaxFileEvidence = 20;

v1::Evidence MakeEvidence(std::string key, std::string value, bool present, v1::SourceKind kind,
                          std::string source, std::string path = "", int pid = 0) {
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

// Compares two typed values: <0, 0, >0; nullopt when either does not parse as `type`.
std::optional<int> CompareTyped(ValueType type, const std::string& a, const std::string& b) {
  switch (type) {
    case ValueType::kBool: {
      auto x = ParseBool(a), y = ParseBool(b);
      if (!x || !y) return std::nullopt;
      return static_cast<int>(*x) - static_cast<int>(*y);
    }
    case ValueType::kInt: {
      auto x = ParseInt(a), y = ParseInt(b);
      if (!x || !y) return std::nullopt;
      return *x < *y ? -1 : (*x > *y ? 1 : 0);
    }
    case ValueType::kDuration: {
      auto x = ParseDurationNanos(a), y = ParseDurationNanos(b);
      if (!x || !y) return std::nullopt;
      return *x < *y ? -1 : (*x > *y ? 1 : 0);
    }
    case ValueType::kList: {
      auto x = SplitList(a), y = SplitList(b);
      return x == y ? 0 : 1;
    }
    default:
      return a == b ? 0 : (a < b ? -1 : 1);
  }
}

const char* TypeName(ValueType type) {
  switch (type) {
    case ValueType::kBool:
      return "a boolean";
    case ValueType::kInt:
      return "an integer";
    case ValueType::kDuration:
      return "a duration";
    default:
      return "a value";
  }
}

bool Matches(const Check& check, const std::string& benchmark_id,
             const std::set<std::string>& ids) {
  if (ids.contains(check.id)) return true;
  for (const auto& id : ids) {
    if (benchmark_id == id || (benchmark_id.starts_with(id + "."))) return true;
  }
  return false;
}

// A failure of a scored item is FAIL, of an unscored (Manual) one WARN: as the result's benchmark
// scores it (the same check may be Automated in one benchmark and Manual in another).
v1::Status FailStatus(const v1::CheckResult& out) {
  return out.scored() ? v1::STATUS_FAIL : v1::STATUS_WARN;
}

void EvaluateSettings(const Check& check, const Component& c, v1::CheckResult& out) {
  std::vector<std::string> failures;
  std::vector<std::string> passes;
  for (const auto& spec : check.settings) {
    ResolvedSetting r = ResolveSetting(c, spec);
    // Name the value by where it was read: `readOnlyPort` from a file, `--read-only-port` from
    // the command line.
    const std::string name =
        r.found && !r.evidence.empty() &&
                (r.evidence[0].source_kind() != v1::SOURCE_KIND_DEFAULT || r.evidence.size() > 1)
            ? r.evidence[0].key()
            : spec.Describe();
    for (auto& e : r.evidence) *out.add_evidence() = std::move(e);
    if (r.error) {
      out.set_status(v1::STATUS_ERROR);
      out.set_reason(*r.error);
      return;
    }
    if (!check.absent_passes.empty() && (!r.found || r.from_default)) {
      if (!r.found) {
        *out.add_evidence() = MakeEvidence(
            name, "", false, c.flags_kind,
            "not set by " + c.flags_source + (c.layers.empty() ? "" : " or its config files"));
      }
      passes.push_back(name + " is not set (" + check.absent_passes + ")");
      continue;
    }
    const bool wants_absence = check.expect.op == Op::kAbsent;
    if (!r.found) {
      // What was read is the absence itself: say where kspm looked.
      *out.add_evidence() =
          MakeEvidence(name, "", false, c.flags_kind,
                       "not set by " + c.flags_source +
                           (c.layers.empty() ? "" : " or its config files") + ", no default");
      if (wants_absence) {
        passes.push_back(name + " is not set");
      } else {
        failures.push_back(name + " is not set");
      }
      continue;
    }
    if (check.expect.op == Op::kPresent) {
      if (r.from_default || r.value.empty()) {
        failures.push_back(name + " is not set (only the default " + r.value + " applies)");
      } else {
        passes.push_back(name + " is set");
      }
      continue;
    }
    if (wants_absence) {
      // An explicitly empty list (`"insecure-registries": []`) or string (`"cgroup-parent": ""`,
      // which dockerd treats as unset) sets nothing.
      if (r.from_default || r.value.empty() ||
          (spec.type == ValueType::kList && SplitList(r.value).empty())) {
        passes.push_back(name + " is not set");
      } else {
        failures.push_back(name + " is set to " + r.value);
      }
      continue;
    }
    std::string why;
    if (Meets(check.expect, spec.type, r.value, &why)) {
      passes.push_back(name + " is " + r.value);
    } else {
      failures.push_back(name + " is " + (r.value.empty() ? "empty" : r.value) +
                         (why.empty() ? "" : " (" + why + ")"));
    }
  }
  if (!failures.empty()) {
    out.set_status(FailStatus(out));
    out.set_reason(common::Join(failures, "; ") + "; expected " + out.expected());
  } else {
    out.set_status(v1::STATUS_PASS);
    out.set_reason(common::Join(passes, "; "));
  }
}

// Collects the files a file check reads, with how each was found.
struct Target {
  std::string path;
  std::string how;
  bool named = false;
};

void EvaluateFiles(const Check& check, const Component& c, const host::HostView& host,
                   v1::CheckResult& out) {
  const FileSpec& spec = *check.file;
  std::vector<Target> targets;
  std::vector<std::string> looked_at;
  if (!spec.role.empty()) {
    const auto it = c.files.find(spec.role);
    // The config role covers the drop-ins too: they configure the component as much as its
    // config file does (RKE2's kubelet has drop-ins only, k3s writes them 0600).
    std::vector<Target> dropins;
    if (spec.role == "config") {
      for (const auto& layer : c.layers) {
        if (layer.kind == v1::SOURCE_KIND_DROP_IN) {
          dropins.push_back(
              {layer.path,
               "drop-in of --" + (c.spec && c.spec->config ? c.spec->config->dropin_flag
                                                           : std::string("config-dir")),
               true});
        }
      }
    }
    if (it == c.files.end() && dropins.empty()) {
      std::string where;
      if (const auto* role = c.spec ? &c.spec->files : nullptr; role && role->contains(spec.role)) {
        const auto& r = role->at(spec.role);
        std::vector<std::string> sources;
        if (!r.flag.empty()) sources.push_back("--" + r.flag);
        if (!r.key.empty()) sources.push_back(r.key);
        if (!r.candidates.empty()) sources.push_back(common::Join(r.candidates, ", "));
        where = common::Join(sources, ", ");
      } else if (spec.role == "config" && c.spec && c.spec->config) {
        where = "--" + c.spec->config->flag;
      }
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason(c.name + " uses no " + spec.role + " file on this node" +
                     (where.empty() ? "" : " (looked at " + where + ")"));
      return;
    }
    if (it != c.files.end()) targets.push_back({it->second.path, it->second.how, it->second.named});
    targets.insert(targets.end(), dropins.begin(), dropins.end());
  }
  for (const auto& p : spec.paths) targets.push_back({p, "known path", false});
  if (!spec.walk.empty()) {
    std::vector<std::string> walked;
    for (const auto& top : spec.walk) {
      auto root = host.Stat(top);
      if (!root.ok()) {
        if (root.status().code() == absl::StatusCode::kNotFound) continue;
        out.set_status(v1::STATUS_ERROR);
        out.set_reason(std::string(root.status().message()));
        return;
      }
      walked.push_back(top);
      if (spec.include_dir) targets.push_back({top, "directory walked", false});
      std::vector<std::string> stack{top};
      size_t visited = 0;
      while (!stack.empty() && visited < 10000) {
        const std::string dir = stack.back();
        stack.pop_back();
        auto names = host.ListDir(dir);
        if (!names.ok()) {
          out.set_status(v1::STATUS_ERROR);
          out.set_reason(std::string(names.status().message()));
          return;
        }
        for (const auto& name : *names) {
          ++visited;
          const std::string path = dir + "/" + name;
          auto info = host.Stat(path);
          if (!info.ok()) continue;  // vanished or dangling: not a file the component can use
          if (info->IsDirectory()) {
            stack.push_back(path);
            continue;
          }
          const bool keep = spec.match.empty() ||
                            std::any_of(spec.match.begin(), spec.match.end(),
                                        [&](const std::string& m) { return name.ends_with(m); });
          if (keep) targets.push_back({path, "under " + top, false});
        }
      }
    }
    if (walked.empty() && targets.empty()) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason(common::Join(spec.walk, ", ") +
                     (spec.walk.size() == 1 ? " does not exist" : ": none exists") +
                     " on this node");
      return;
    }
    if (targets.empty()) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason("no matching files under " + common::Join(walked, ", "));
      return;
    }
  }

  std::vector<std::string> failures;
  std::vector<std::string> missing_named;
  size_t present = 0;
  size_t shown = 0;
  for (const auto& t : targets) {
    auto info = host.Stat(t.path);
    if (!info.ok()) {
      if (info.status().code() == absl::StatusCode::kNotFound) {
        if (t.named) {
          missing_named.push_back(t.path + " (" + t.how + ")");
          *out.add_evidence() = MakeEvidence("exists", "false", true, v1::SOURCE_KIND_FILE_METADATA,
                                             t.path + ", " + t.how, t.path);
        }
        continue;
      }
      out.set_status(v1::STATUS_ERROR);
      out.set_reason(std::string(info.status().message()));
      return;
    }
    ++present;
    std::string actual;
    std::string key;
    bool ok = true;
    std::string why;
    switch (check.expect.op) {
      case Op::kModeAtMost: {
        key = "mode";
        actual = OctalMode(info->mode);
        // The catalogue holds at most four octal digits (ParseExpectation), so this cannot throw.
        uint32_t allowed = 0;
        for (char d : check.expect.value) allowed = allowed * 8 + static_cast<uint32_t>(d - '0');
        ok = (info->mode & ~allowed) == 0;
        if (!ok)
          why = "grants " + OctalMode(info->mode & ~allowed) + " beyond " + OctalMode(allowed);
        break;
      }
      case Op::kOwner: {
        key = "owner";
        actual = info->Owner();
        ok = std::find(check.expect.values.begin(), check.expect.values.end(), actual) !=
             check.expect.values.end();
        break;
      }
      case Op::kIsSocket: {
        key = "type";
        actual = info->IsSocket() ? "socket" : (info->IsDirectory() ? "directory" : "file");
        ok = info->IsSocket();
        break;
      }
      default:
        out.set_status(v1::STATUS_ERROR);
        out.set_reason("check " + check.id +
                       " compares a file with an operator that needs a value");
        return;
    }
    if (!ok || shown < kMaxFileEvidence) {
      std::string source = t.path;
      if (info->is_symlink) source += " -> " + info->resolved_path;
      source += ", " + t.how;
      *out.add_evidence() =
          MakeEvidence(key, actual, true, v1::SOURCE_KIND_FILE_METADATA, std::move(source), t.path);
      ++shown;
    }
    if (!ok) failures.push_back(t.path + " is " + actual + (why.empty() ? "" : " (" + why + ")"));
  }
  if (!missing_named.empty()) {
    out.set_status(FailStatus(out));
    out.set_reason(common::Join(missing_named, "; ") + ": named but missing");
    return;
  }
  if (present == 0) {
    out.set_status(v1::STATUS_NOT_APPLICABLE);
    std::vector<std::string> paths;
    for (const auto& t : targets) paths.push_back(t.path);
    out.set_reason(common::Join(paths, ", ") + (paths.size() == 1 ? " does" : " do") +
                   " not exist on this node");
    return;
  }
  if (!failures.empty()) {
    out.set_status(FailStatus(out));
    std::string reason = failures.size() > 3
                             ? std::to_string(failures.size()) + " of " + std::to_string(present) +
                                   " files fail, e.g. " + failures[0]
                             : common::Join(failures, "; ");
    out.set_reason(reason + "; expected " + out.expected());
  } else {
    out.set_status(v1::STATUS_PASS);
    out.set_reason(present == 1 ? targets[0].path + " meets " + out.expected()
                                : std::to_string(present) + " files meet " + out.expected());
  }
}

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

// Providers that encrypt. kms is v1 or v2 (apiVersion inside); identity stores plain text.
bool IsCipher(const std::string& provider) {
  return provider == "kms" || provider == "aescbc" || provider == "aesgcm" ||
         provider == "secretbox";
}

// Whether an EncryptionConfiguration resource entry covers Secrets: `secrets`, `secrets.` or a
// wildcard over the core group (`*.`, `*.*`).
bool CoversSecrets(const YAML::Node& names) {
  if (!names || !names.IsSequence()) return false;
  for (const auto& n : names) {
    const std::string v = n.IsScalar() ? n.Scalar() : "";
    if (v == "secrets" || v == "secrets." || v == "*." || v == "*.*") return true;
  }
  return false;
}

// CIS 1.2.28: the API server applies, for each resource, the first `resources` entry that
// lists it, and in that entry the first provider encrypts new data (later ones only decrypt).
// So Secrets are protected when the first entry covering them starts with a real cipher.
void EvaluateEncryption(const Check& check, const Component& c, const host::HostView& host,
                        v1::CheckResult& out) {
  const auto it = c.files.find(check.encryption->role);
  if (it == c.files.end() && c.cmdline_truncated) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason("the command line of " + c.flags_source +
                   " is cut short; --encryption-provider-config may be in the lost part");
    return;
  }
  if (it == c.files.end()) {
    *out.add_evidence() = MakeEvidence("--encryption-provider-config", "", false, c.flags_kind,
                                       "flag of " + c.flags_source, "", c.pid);
    out.set_status(FailStatus(out));
    out.set_reason(
        "no --encryption-provider-config: Secrets are written to etcd unencrypted (see 1.2.27)");
    return;
  }
  const discovery::ResolvedFile& file = it->second;
  const std::string where = file.path + ", " + file.how;
  auto text = host.ReadFile(file.path);
  if (!text.ok()) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason(text.status().code() == absl::StatusCode::kNotFound
                       ? "encryption config " + file.path + " (" + file.how + ") does not exist"
                       : std::string(text.status().message()));
    return;
  }
  auto root = discovery::ParseYaml(*text, file.path);
  if (!root.ok()) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason(std::string(root.status().message()));
    return;
  }
  const YAML::Node entries = (*root)["resources"];
  if (!root->IsMap() || !entries || !entries.IsSequence()) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason(file.path + " is not an EncryptionConfiguration: no 'resources' list");
    return;
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const YAML::Node entry = entries[i];
    if (!entry.IsMap() || !CoversSecrets(entry["resources"])) continue;
    const YAML::Node providers = entry["providers"];
    std::string first;
    if (providers && providers.IsSequence() && providers.size() > 0 && providers[0].IsMap() &&
        providers[0].size() > 0) {
      first = providers[0].begin()->first.Scalar();
    }
    *out.add_evidence() =
        MakeEvidence("resources[" + std::to_string(i) + "] (" +
                         discovery::RenderYaml(entry["resources"]) + ").providers[0]",
                     first, !first.empty(), v1::SOURCE_KIND_CONFIG_FILE, where, file.path);
    if (IsCipher(first)) {
      out.set_status(v1::STATUS_PASS);
      out.set_reason("Secrets are written with " + first + " (resources[" + std::to_string(i) +
                     "] of " + file.path + ")" +
                     (first == "kms" ? "; prefer KMS v2 (apiVersion: v2), v1 is deprecated" : ""));
    } else {
      out.set_status(FailStatus(out));
      out.set_reason(
          "the first provider for Secrets in " + file.path + " is " +
          (first.empty() ? "missing" : first) +
          (first == "identity" ? ", which stores them unencrypted" : ", which is not a cipher") +
          "; expected " + out.expected());
    }
    return;
  }
  *out.add_evidence() = MakeEvidence("resources[].resources", "secrets", false,
                                     v1::SOURCE_KIND_CONFIG_FILE, where, file.path);
  out.set_status(FailStatus(out));
  out.set_reason("no entry of " + file.path + " lists secrets: they are written unencrypted");
}

}  // namespace

bool Meets(const Expectation& expect, ValueType type, const std::string& actual, std::string* why) {
  auto not_typed = [&](const std::string& v) {
    if (why) *why = "'" + v + "' is not " + TypeName(type);
    return false;
  };
  switch (expect.op) {
    case Op::kEquals:
    case Op::kNotEquals: {
      auto cmp = CompareTyped(type, actual, expect.value);
      if (!cmp) return not_typed(actual);
      return (*cmp == 0) == (expect.op == Op::kEquals);
    }
    case Op::kAtLeast:
    case Op::kAtMost: {
      auto cmp = CompareTyped(type, actual, expect.value);
      if (!cmp) return not_typed(actual);
      return expect.op == Op::kAtLeast ? *cmp >= 0 : *cmp <= 0;
    }
    case Op::kContains:
    case Op::kNotContains: {
      const auto items = SplitList(actual);
      const bool has = std::find(items.begin(), items.end(), expect.value) != items.end();
      return has == (expect.op == Op::kContains);
    }
    case Op::kSubsetOf: {
      const auto items = SplitList(actual);
      if (items.empty()) {
        if (why) *why = "empty";
        return false;
      }
      std::vector<std::string> outside;
      for (const auto& item : items) {
        if (std::find(expect.values.begin(), expect.values.end(), item) == expect.values.end()) {
          outside.push_back(item);
        }
      }
      if (!outside.empty() && why) *why = "not allowed: " + common::Join(outside, ",");
      return outside.empty();
    }
    case Op::kNonZero: {
      if (type == ValueType::kDuration) {
        auto d = ParseDurationNanos(actual);
        if (!d) return not_typed(actual);
        return *d != 0;
      }
      auto n = ParseInt(actual);
      if (!n) return not_typed(actual);
      return *n != 0;
    }
    case Op::kLoopback: {
      std::string host = actual;
      if (host.starts_with("[")) {
        host = host.substr(
            1, host.find(']') == std::string::npos ? std::string::npos : host.find(']') - 1);
      } else if (std::count(host.begin(), host.end(), ':') == 1) {
        host = host.substr(0, host.find(':'));
      }
      const bool loopback = host.starts_with("127.") || host == "::1" || host == "localhost";
      if (!loopback && why)
        *why = host.empty() || host == "0.0.0.0" || host == "::" ? "listens on every interface"
                                                                 : "not a loopback address";
      return loopback;
    }
    case Op::kAnyStartsWith: {
      for (const auto& item : SplitList(actual)) {
        if (item.starts_with(expect.value)) return true;
      }
      if (why) *why = "no item starts with " + expect.value;
      return false;
    }
    case Op::kPresent:
      return !actual.empty();
    case Op::kAbsent:
      return actual.empty();
    default:
      if (why) *why = "operator applies to files, not settings";
      return false;
  }
}

// Whether `value` is the Go zero value of the setting's type: a duration or integer of 0, an
// empty string (YAML null or "").
bool IsZeroValue(const SettingSpec& spec, const std::string& value) {
  switch (spec.type) {
    case ValueType::kDuration: {
      const auto nanos = ParseDurationNanos(value);
      return nanos && *nanos == 0;
    }
    case ValueType::kInt: {
      const auto n = ParseInt(value);
      return n && *n == 0;
    }
    case ValueType::kString:
      return value.empty() || value == "null" || value == "~";
    default:
      return false;
  }
}

ResolvedSetting ResolveSetting(const Component& c, const SettingSpec& spec) {
  ResolvedSetting r;
  auto record = [&](std::string key, std::string value, v1::SourceKind kind, std::string source,
                    std::string path, int pid) {
    if (!r.found) {
      r.found = true;
      r.value = value;
    }
    r.evidence.push_back(MakeEvidence(std::move(key), std::move(value), true, kind,
                                      std::move(source), std::move(path), pid));
  };
  const int pid = c.flags_kind == v1::SOURCE_KIND_FLAG ? c.pid : 0;
  const std::string flag_source =
      c.flags_kind == v1::SOURCE_KIND_FLAG ? "flag of " + c.flags_source : c.flags_source;
  if (!c.config_exclusive) {
    if (!spec.flag.empty()) {
      std::optional<std::string> value;
      std::string shown = "--" + spec.flag;
      const bool multi = spec.type == ValueType::kList || spec.type == ValueType::kMap;
      for (const std::string& name : {spec.flag, spec.alias}) {
        if (name.empty()) continue;
        if (multi) {
          // pflag string slices and maps accumulate over repeated flags (dockerd
          // --insecure-registry a --insecure-registry b).
          for (const auto& occ : c.flags.All(name)) {
            value = value ? *value + "," + occ.value : occ.value;
          }
        } else if (!value) {
          value = c.flags.Value(name);
          if (value && name == spec.alias) shown = "-" + spec.alias;
        }
      }
      if (value) {
        if (spec.map_key.empty()) {
          record(shown, *value, c.flags_kind, flag_source, c.manifest_path, pid);
        } else if (auto m = SplitMap(*value); m.contains(spec.map_key)) {
          record(shown + " " + spec.map_key, m.at(spec.map_key), c.flags_kind, flag_source,
                 c.manifest_path, pid);
        }
      } else if (c.cmdline_truncated) {
        r.error = "the command line of " + c.flags_source + " is truncated; --" + spec.flag +
                  " may be cut off";
        return r;
      }
    }
    if (!spec.env.empty() && c.env.contains(spec.env)) {
      record(spec.env, c.env.at(spec.env), v1::SOURCE_KIND_ENVIRONMENT,
             "environment of " + c.flags_source, "", c.pid);
    }
  }
  if (!spec.key.empty()) {
    if (c.config_error && c.uses_config_file) {
      if (!r.found) {
        r.error = std::string(c.config_error->message());
        return r;
      }
    }
    const std::string key = spec.map_key.empty() ? spec.key : spec.key + "." + spec.map_key;
    for (auto it = c.layers.rbegin(); it != c.layers.rend(); ++it) {
      if (auto node = discovery::LookupKey(it->root, key)) {
        record(key, discovery::RenderYaml(*node), it->kind, it->path, it->path, 0);
      } else if (!spec.map_key.empty()) {
        // A map may also be written as a list of "k=v" strings (daemon.json storage-opts).
        if (auto list = discovery::LookupKey(it->root, spec.key); list && list->IsSequence()) {
          if (auto m = SplitMap(discovery::RenderYaml(*list)); m.contains(spec.map_key)) {
            record(key, m.at(spec.map_key), it->kind, it->path, it->path, 0);
          }
        }
      }
    }
  }
  // The component defaults a zero value read from its config file (SetDefaults_*): the value in
  // effect is the default, and the evidence shows both.
  if (r.found && spec.config_zero && !r.evidence.empty() &&
      r.evidence.front().source_kind() == v1::SOURCE_KIND_CONFIG_FILE &&
      IsZeroValue(spec, r.value)) {
    r.value = *spec.config_zero;
    r.evidence.insert(
        r.evidence.begin(),
        MakeEvidence(r.evidence.front().key(), *spec.config_zero, true, v1::SOURCE_KIND_DEFAULT,
                     "default " + c.name + " applies to the zero value " +
                         (r.evidence.front().value().empty() ? std::string("\"\"")
                                                             : r.evidence.front().value()) +
                         " in its config file"));
  }
  if (!r.found) {
    const bool config_mode = c.uses_config_file && spec.config_default.has_value();
    const auto& def = config_mode ? spec.config_default : spec.default_value;
    if (def) {
      r.found = true;
      r.from_default = true;
      r.value = *def;
      std::string source = "default";
      if (config_mode) {
        source = "default when running from a config file";
      } else if (c.uses_config_file) {
        source = "default";
      } else if (spec.config_default) {
        source = "default without a config file";
      }
      r.evidence.push_back(MakeEvidence(spec.Describe(), *def, true, v1::SOURCE_KIND_DEFAULT,
                                        source + " of " + c.name));
    }
  }
  return r;
}

// Whether the kubeconfig of file role `role` authenticates with a client certificate. False (and
// `why` says how it does authenticate) only when the file is read and its user has none but an
// exec plugin, a token or an auth provider; a file that cannot be read or parsed says nothing,
// and the check applies.
bool AuthenticatesWithClientCertificate(const Component& c, const std::string& role,
                                        const host::HostView& host, v1::CheckResult& out,
                                        std::string* why) {
  const auto file = c.files.find(role);
  if (file == c.files.end() || file->second.path.empty()) return true;
  const std::string& path = file->second.path;
  auto text = host.ReadFile(path);
  if (!text.ok()) return true;
  auto parsed = discovery::ParseYaml(*text, path);  // bounded: aliases, nesting
  if (!parsed.ok()) return true;
  const YAML::Node root = *parsed;
  if (!root.IsMap() || !root["users"] || !root["users"].IsSequence()) return true;
  // The user of the current context, or the only user.
  std::string user_name;
  const std::string current = root["current-context"] && root["current-context"].IsScalar()
                                  ? root["current-context"].Scalar()
                                  : "";
  if (root["contexts"] && root["contexts"].IsSequence()) {
    for (const auto& ctx : root["contexts"]) {
      if (ctx["name"] && ctx["name"].Scalar() == current && ctx["context"] &&
          ctx["context"]["user"]) {
        user_name = ctx["context"]["user"].Scalar();
      }
    }
  }
  YAML::Node user;
  for (const auto& u : root["users"]) {
    if ((user_name.empty() && root["users"].size() == 1) ||
        (u["name"] && u["name"].Scalar() == user_name)) {
      user = u["user"];
    }
  }
  if (!user || !user.IsMap()) return true;
  if (user["client-certificate"] || user["client-certificate-data"]) return true;
  std::string how;
  if (user["exec"] && user["exec"]["command"]) {
    how = "an exec plugin (" + user["exec"]["command"].Scalar() + ")";
  } else if (user["token"] || user["tokenFile"]) {
    how = "a bearer token";
  } else if (user["auth-provider"]) {
    how = "an auth provider";
  } else {
    return true;
  }
  *out.add_evidence() =
      MakeEvidence("users[" + (user_name.empty() ? std::string("0") : user_name) + "]", how, true,
                   v1::SOURCE_KIND_CONFIG_FILE, file->second.how, path);
  *why = c.name + " authenticates to the API server with " + how + " (" + path +
         "), not with a client certificate the API server issued: there is none to rotate";
  return false;
}

v1::CheckResult Evaluate(const Check& check, const std::string& benchmark,
                         const host::HostView& host, const discovery::HostState& state) {
  v1::CheckResult out;
  out.set_check_id(check.id);
  out.set_benchmark(benchmark);
  if (auto it = check.benchmarks.find(benchmark); it != check.benchmarks.end()) {
    out.set_benchmark_id(it->second);
  }
  out.set_title(check.title);
  out.set_scored(check.ScoredIn(benchmark));
  out.set_severity(check.severity);
  out.set_remediation(check.remediation);
  out.set_component(check.component);
  if (check.audit) {
    out.set_expected("an auditd rule watching the path (-w PATH)");
  } else if (check.encryption) {
    out.set_expected(
        "the first provider of the first entry listing secrets is kms, aescbc, aesgcm or "
        "secretbox");
  } else if (check.manual.empty()) {
    out.set_expected(check.expect.Describe());
  }

  if (const auto na = check.not_applicable_in.find(benchmark);
      na != check.not_applicable_in.end()) {
    out.set_status(v1::STATUS_NOT_APPLICABLE);
    out.set_reason(na->second);
    return out;
  }
  const auto it = state.components.find(check.component);
  if (it == state.components.end()) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason("check " + check.id + " names unknown component '" + check.component + "'");
    return out;
  }
  const Component& c = it->second;
  if (!c.present) {
    out.set_status(v1::STATUS_NOT_APPLICABLE);
    out.set_reason(c.absent_reason);
    return out;
  }
  if (!check.manual.empty()) {
    out.set_status(v1::STATUS_MANUAL);
    out.set_reason(check.manual);
    return out;
  }
  if (check.only_if) {
    // The item applies only in some configurations (Docker 2.7: a TCP listener).
    const ResolvedSetting pre = ResolveSetting(c, check.only_if->setting);
    std::string why;
    if (!pre.error && (!pre.found || !Meets(check.only_if->expect, check.only_if->setting.type,
                                            pre.value, &why))) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason("applies only when " + check.only_if->setting.Describe() + " " +
                     check.only_if->expect.Describe() + "; it is " +
                     (pre.found && !pre.value.empty() ? pre.value : "not set"));
      for (const auto& e : pre.evidence) *out.add_evidence() = e;
      return out;
    }
  }
  if (!check.only_if_client_certificate.empty()) {
    std::string why;
    if (!AuthenticatesWithClientCertificate(c, check.only_if_client_certificate, host, out, &why)) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason(why);
      return out;
    }
  }
  if (check.audit) {
    EvaluateAudit(check, c, host, out);
  } else if (check.encryption) {
    EvaluateEncryption(check, c, host, out);
  } else if (check.file) {
    EvaluateFiles(check, c, host, out);
  } else {
    EvaluateSettings(check, c, out);
  }
  return out;
}

bool IsKubernetesBenchmark(const std::string& benchmark) {
  return common::IsKubernetesBenchmark(benchmark);
}

std::vector<v1::CheckResult> EvaluateAll(const Catalog& catalog, const Selection& selection,
                                         const host::HostView& host,
                                         const discovery::HostState& state,
                                         const std::set<std::string>* components) {
  std::vector<v1::CheckResult> out;
  out.reserve(catalog.checks().size());
  for (const auto& check : catalog.checks()) {
    if (components != nullptr && !components->contains(check.component)) continue;
    for (const auto& [benchmark, item] : check.benchmarks) {
      if (!selection.benchmarks.empty() && !selection.benchmarks.contains(benchmark)) continue;
      if (!selection.only.empty() && !Matches(check, item, selection.only)) continue;
      if (Matches(check, item, selection.skip)) continue;
      out.push_back(Evaluate(check, benchmark, host, state));
    }
  }
  return out;
}

}  // namespace kspm::agent::checks

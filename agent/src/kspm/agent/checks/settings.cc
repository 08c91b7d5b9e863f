// Settings checks: a component's effective flag, config or environment value against an
// expectation, and the typed comparisons behind it.
#include <algorithm>

#include "kspm/agent/checks/evaluate_kinds.h"
#include "kspm/common/strings.h"

namespace kspm::agent::checks {

using internal::Component;
using internal::FailStatus;
using internal::MakeEvidence;
using internal::Op;
namespace {

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

}  // namespace

namespace internal {

void EvaluateSettings(const Check& check, const Component& c, const host::HostView& /*host*/,
                      v1::CheckResult& out) {
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

}  // namespace internal

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

}  // namespace kspm::agent::checks

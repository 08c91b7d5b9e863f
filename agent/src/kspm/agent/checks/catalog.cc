#include "kspm/agent/checks/catalog.h"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kspm/common/names.h"
#include "kspm/common/strings.h"
#include "kspm/common/yaml_fields.h"
#include "yaml-cpp/yaml.h"

namespace kspm::agent::checks {

// Defined in the generated builtin_catalog_trees.cc: every file of agent/catalog/ as code that
// builds its YAML tree (agent/tools/catalog_to_cpp.cc), so that start-up parses no YAML.
extern const std::vector<std::pair<std::string_view, YAML::Node (*)()>>& BuiltinCatalogTrees();

namespace {

using CatalogError = common::YamlFieldError;

std::string Scalar(const YAML::Node& node, const char* field, bool required = false) {
  return common::ScalarField(node, field, required);
}

std::vector<std::string> StringList(const YAML::Node& node, const char* field) {
  return common::StringListField(node, field);
}

ValueType ParseType(const YAML::Node& node, const std::string& text) {
  if (text.empty() || text == "string") return ValueType::kString;
  if (text == "bool") return ValueType::kBool;
  if (text == "int") return ValueType::kInt;
  if (text == "duration") return ValueType::kDuration;
  if (text == "list") return ValueType::kList;
  if (text == "map") return ValueType::kMap;
  throw CatalogError(node, "unknown type '" + text + "' (string, bool, int, duration, list, map)");
}

SettingSpec ParseSetting(const YAML::Node& node) {
  if (!node.IsMap()) throw CatalogError(node, "a setting must be a map");
  SettingSpec s;
  s.flag = Scalar(node, "flag");
  s.alias = Scalar(node, "alias");
  s.key = Scalar(node, "key");
  s.env = Scalar(node, "env");
  s.map_key = Scalar(node, "map_key");
  s.type = ParseType(node, Scalar(node, "type"));
  if (node["default"]) s.default_value = Scalar(node, "default");
  if (node["config_default"]) s.config_default = Scalar(node, "config_default");
  if (node["config_zero"]) {
    if (s.key.empty()) throw CatalogError(node, "config_zero needs a config key");
    s.config_zero = Scalar(node, "config_zero");
  }
  if (s.flag.empty() && s.key.empty() && s.env.empty()) {
    throw CatalogError(node, "a setting needs at least one of flag, key, env");
  }
  return s;
}

Expectation ParseExpect(const YAML::Node& node) {
  if (!node.IsMap() || node.size() != 1) {
    throw CatalogError(node, "'expect' must hold exactly one operator");
  }
  static const std::map<std::string, Expectation::Op, std::less<>> kOps = {
      {"equals", Expectation::Op::kEquals},
      {"not_equals", Expectation::Op::kNotEquals},
      {"at_least", Expectation::Op::kAtLeast},
      {"at_most", Expectation::Op::kAtMost},
      {"contains", Expectation::Op::kContains},
      {"not_contains", Expectation::Op::kNotContains},
      {"subset_of", Expectation::Op::kSubsetOf},
      {"present", Expectation::Op::kPresent},
      {"absent", Expectation::Op::kAbsent},
      {"non_zero", Expectation::Op::kNonZero},
      {"mode_at_most", Expectation::Op::kModeAtMost},
      {"owner", Expectation::Op::kOwner},
      {"is_socket", Expectation::Op::kIsSocket},
      {"loopback", Expectation::Op::kLoopback},
      {"any_starts_with", Expectation::Op::kAnyStartsWith},
  };
  const auto entry = *node.begin();
  const std::string name = entry.first.Scalar();
  const auto it = kOps.find(name);
  if (it == kOps.end()) throw CatalogError(entry.first, "unknown operator '" + name + "'");
  Expectation e;
  e.op = it->second;
  if (entry.second.IsSequence()) {
    for (const auto& v : entry.second) e.values.push_back(v.Scalar());
  } else if (entry.second.IsScalar()) {
    e.value = entry.second.Scalar();
    if (e.op == Expectation::Op::kOwner || e.op == Expectation::Op::kSubsetOf) {
      for (auto v : common::Split(e.value, '|')) e.values.emplace_back(v);
    }
  } else {
    throw CatalogError(entry.second, "operator '" + name + "' needs a value or a list");
  }
  if (e.op == Expectation::Op::kModeAtMost) {
    if (e.value.empty() || e.value.size() > 4 ||
        e.value.find_first_not_of("01234567") != std::string::npos) {
      throw CatalogError(entry.second,
                         "mode_at_most needs an octal mode of at most four digits such as 600");
    }
  }
  return e;
}

Check ParseCheck(const YAML::Node& node, std::string_view origin) {
  if (!node.IsMap()) throw CatalogError(node, "a check must be a map");
  Check c;
  c.id = Scalar(node, "id", true);
  c.origin = std::string(origin);
  c.title = Scalar(node, "title", true);
  c.component = Scalar(node, "component", true);
  c.remediation = Scalar(node, "remediation");
  c.manual = Scalar(node, "manual");
  if (node["scored"]) c.scored = node["scored"].as<bool>();
  const std::string severity = Scalar(node, "severity");
  if (!severity.empty()) {
    auto parsed = common::ParseSeverity(severity);
    if (!parsed) throw CatalogError(node["severity"], "unknown severity '" + severity + "'");
    c.severity = *parsed;
  }
  const YAML::Node benchmarks = node["benchmarks"];
  if (!benchmarks || !benchmarks.IsMap() || benchmarks.size() == 0) {
    throw CatalogError(node, "check '" + c.id + "' needs 'benchmarks' (benchmark: item id)");
  }
  // `benchmark: item`, or `benchmark: {id: item, scored: false}` where a benchmark scores the
  // item differently from the check's own `scored`.
  for (const auto& b : benchmarks) {
    if (b.second.IsMap()) {
      c.benchmarks[b.first.Scalar()] = Scalar(b.second, "id");
      if (c.benchmarks[b.first.Scalar()].empty()) {
        throw CatalogError(b.second, "benchmark '" + b.first.Scalar() + "' needs an 'id'");
      }
      if (b.second["scored"]) c.scored_in[b.first.Scalar()] = b.second["scored"].as<bool>();
    } else {
      c.benchmarks[b.first.Scalar()] = b.second.Scalar();
    }
  }
  if (const YAML::Node s = node["setting"]) c.settings.push_back(ParseSetting(s));
  if (const YAML::Node s = node["settings"]) {
    if (!s.IsSequence()) throw CatalogError(s, "'settings' must be a list");
    for (const auto& item : s) c.settings.push_back(ParseSetting(item));
  }
  if (const YAML::Node f = node["file"]) {
    FileSpec spec;
    spec.role = Scalar(f, "role");
    spec.paths = StringList(f, "paths");
    spec.walk = f["walk"] && f["walk"].IsScalar() ? std::vector<std::string>{f["walk"].Scalar()}
                                                  : StringList(f, "walk");
    spec.match = StringList(f, "match");
    if (f["include_dir"]) spec.include_dir = f["include_dir"].as<bool>();
    if (spec.role.empty() && spec.paths.empty() && spec.walk.empty()) {
      throw CatalogError(f, "'file' needs one of role, paths, walk");
    }
    c.file = std::move(spec);
  }
  if (const YAML::Node o = node["only_if"]) {
    if (o["client_certificate"]) {
      c.only_if_client_certificate = Scalar(o, "client_certificate");
    } else if (!o["setting"] || !o["expect"]) {
      throw CatalogError(o, "'only_if' needs 'setting' and 'expect', or 'client_certificate'");
    } else {
      c.only_if = Precondition{ParseSetting(o["setting"]), ParseExpect(o["expect"])};
    }
  }
  c.absent_passes = Scalar(node, "absent_passes");
  if (const YAML::Node e = node["encryption"]) {
    c.encryption = EncryptionSpec{Scalar(e, "role")};
    if (c.encryption->role.empty()) throw CatalogError(e, "'encryption' needs a role");
    c.kind = CheckKind::kEncryption;  // the expectation is implied: a real cipher writes Secrets
  } else if (const YAML::Node a = node["audit"]) {
    c.audit = AuditSpec{Scalar(a, "path"), Scalar(a, "role")};
    if (c.audit->path.empty() == c.audit->role.empty()) {
      throw CatalogError(a, "'audit' needs exactly one of path, role");
    }
    c.kind = CheckKind::kAudit;  // the expectation is implied: a rule watches the path
  } else if (!c.manual.empty()) {
    c.kind = CheckKind::kManual;
  } else {
    if (c.settings.empty() && !c.file) {
      throw CatalogError(node,
                         "check '" + c.id + "' reads nothing: add setting(s), file or manual");
    }
    if (!node["expect"]) throw CatalogError(node, "check '" + c.id + "' has no 'expect'");
    c.expect = ParseExpect(node["expect"]);
    c.kind = c.file ? CheckKind::kFiles : CheckKind::kSettings;
  }
  // `evaluate:` names the kind; it must be what the fields describe.
  if (const YAML::Node e = node["evaluate"]) {
    static const std::map<std::string, CheckKind> kKinds = {{"settings", CheckKind::kSettings},
                                                            {"files", CheckKind::kFiles},
                                                            {"audit", CheckKind::kAudit},
                                                            {"encryption", CheckKind::kEncryption},
                                                            {"manual", CheckKind::kManual}};
    const auto it = kKinds.find(e.Scalar());
    if (it == kKinds.end()) {
      throw CatalogError(e, "unknown 'evaluate' kind '" + e.Scalar() +
                                "' (settings, files, audit, encryption, manual)");
    }
    if (it->second != c.kind) {
      throw CatalogError(e, "check '" + c.id + "' says 'evaluate: " + e.Scalar() +
                                "' but its fields describe another kind");
    }
  }
  return c;
}

ComponentSpec ParseComponent(const YAML::Node& node) {
  ComponentSpec c;
  c.name = Scalar(node, "name", true);
  const std::string role = Scalar(node, "role");
  if (role == "control-plane") {
    c.role = v1::NODE_ROLE_CONTROL_PLANE;
  } else if (role == "worker") {
    c.role = v1::NODE_ROLE_WORKER;
  } else if (role == "etcd") {
    c.role = v1::NODE_ROLE_ETCD;
  } else if (role == "docker-host") {
    c.role = v1::NODE_ROLE_DOCKER_HOST;
  } else if (!role.empty()) {
    throw CatalogError(node["role"], "unknown role '" + role + "'");
  }
  for (const auto& p : StringList(node, "processes")) {
    std::vector<std::string> words;
    for (auto w : common::Split(p, ' ', true)) words.emplace_back(w);
    c.processes.push_back(std::move(words));
  }
  for (const auto& f : StringList(node, "bool_flags")) c.bool_flags.insert(f);
  c.manifests = StringList(node, "manifests");
  if (const YAML::Node cfg = node["config"]) {
    ConfigSpec spec;
    spec.flag = Scalar(cfg, "flag");
    spec.env = Scalar(cfg, "env");
    spec.dropin_flag = Scalar(cfg, "dropin_flag");
    spec.candidates = StringList(cfg, "candidates");
    spec.default_path = Scalar(cfg, "default");
    if (cfg["exclusive"]) spec.exclusive = cfg["exclusive"].as<bool>();
    c.config = std::move(spec);
  }
  if (const YAML::Node embedded = node["embedded"]) {
    for (const auto& e : embedded) {
      EmbeddedSpec spec;
      for (auto w : common::Split(Scalar(e, "process", true), ' ', true)) {
        spec.process.emplace_back(w);
      }
      spec.arg_flag = Scalar(e, "arg_flag");
      spec.config = Scalar(e, "config");
      spec.config_flag = Scalar(e, "config_flag");
      spec.units = StringList(e, "units");
      for (auto& b : StringList(e, "bool_options")) spec.bool_options.insert(std::move(b));
      spec.base_args = StringList(e, "base_args");
      auto condition = [](const YAML::Node& w) {
        if (!w.IsMap()) throw CatalogError(w, "a condition is a map (options, paths, unless)");
        EmbeddedCondition when;
        when.options = StringList(w, "options");
        when.paths = StringList(w, "paths");
        when.missing = StringList(w, "missing");
        when.unless = StringList(w, "unless");
        return when;
      };
      for (const auto& ca : e["conditional_args"]) {
        if (!ca["when"]) throw CatalogError(ca, "conditional_args entries need 'when'");
        spec.conditional_args.push_back({condition(ca["when"]), StringList(ca, "args")});
      }
      if (e["runs_if"]) spec.runs_if = condition(e["runs_if"]);
      c.embedded.push_back(std::move(spec));
    }
  }
  if (const YAML::Node files = node["files"]) {
    for (const auto& f : files) {
      FileRoleSpec spec;
      spec.flag = Scalar(f.second, "flag");
      spec.key = Scalar(f.second, "key");
      spec.candidates = StringList(f.second, "candidates");
      c.files[f.first.Scalar()] = std::move(spec);
    }
  }
  return c;
}

}  // namespace

std::string SettingSpec::Describe() const {
  if (!flag.empty()) return "--" + flag + (map_key.empty() ? "" : " " + map_key);
  if (!env.empty()) return env;
  return key;
}

std::string Expectation::Describe() const {
  switch (op) {
    case Op::kEquals:
      return value;
    case Op::kNotEquals:
      return "not " + value;
    case Op::kAtLeast:
      return ">= " + value;
    case Op::kAtMost:
      return "<= " + value;
    case Op::kContains:
      return "includes " + value;
    case Op::kNotContains:
      return "excludes " + value;
    case Op::kSubsetOf:
      return "only " + common::Join(values, ",");
    case Op::kPresent:
      return "set";
    case Op::kAbsent:
      return "not set";
    case Op::kNonZero:
      return "not 0";
    case Op::kModeAtMost:
      return "mode " + std::string(value.size() < 4 ? "0" : "") + value + " or stricter";
    case Op::kOwner:
      return common::Join(values, " or ");
    case Op::kIsSocket:
      return "a socket";
    case Op::kLoopback:
      return "a loopback address (127.0.0.0/8, ::1, localhost)";
    case Op::kAnyStartsWith:
      return "has an item starting with " + value;
  }
  return value;
}

absl::Status Catalog::AddYaml(std::string_view text, std::string_view origin) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(std::string(origin) + ":" + std::to_string(e.mark.line + 1) +
                                      ":" + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return AddTree(root, origin);
}

namespace {

Profile ParseProfile(const YAML::Node& node) {
  if (!node.IsMap()) throw CatalogError(node, "a profile must be a map");
  Profile p;
  p.name = Scalar(node, "name", true);
  p.base = Scalar(node, "base", true);
  p.source = Scalar(node, "source");
  for (const auto& item : node["not_applicable"]) {
    p.not_applicable[item.first.Scalar()] = item.second.Scalar();
  }
  for (const auto& item : node["scored"]) {
    p.scored[item.first.Scalar()] = item.second.as<bool>();
  }
  return p;
}

// Reports a check of the profile's base benchmark under the profile too.
void ApplyProfile(const Profile& p, Check& c) {
  const auto base = c.benchmarks.find(p.base);
  if (base == c.benchmarks.end()) return;
  const std::string item = base->second;
  c.benchmarks[p.name] = item;
  if (const auto s = p.scored.find(item); s != p.scored.end()) {
    c.scored_in[p.name] = s->second;
  } else if (const auto b = c.scored_in.find(p.base); b != c.scored_in.end()) {
    c.scored_in[p.name] = b->second;
  }
  if (const auto na = p.not_applicable.find(item); na != p.not_applicable.end()) {
    c.not_applicable_in[p.name] = na->second;
  }
}

}  // namespace

namespace {

// yaml-cpp keeps a merge key (`<<: *anchor`) as an ordinary key named "<<", so an entry written
// with one would silently lose every merged field: refused, with its position.
void RejectMergeKeys(const YAML::Node& node, int depth = 0) {
  if (depth > 64) return;  // the catalogue is shallow; CheckYamlSize bounds custom files
  if (node.IsMap()) {
    for (const auto& kv : node) {
      if (kv.first.IsScalar() && kv.first.Scalar() == "<<") {
        throw CatalogError(kv.first,
                           "YAML merge keys (<<) are not supported: write the entry out in full");
      }
      RejectMergeKeys(kv.second, depth + 1);
    }
  } else if (node.IsSequence()) {
    for (const auto& item : node) RejectMergeKeys(item, depth + 1);
  }
}

}  // namespace

absl::Status Catalog::AddTree(const YAML::Node& root, std::string_view origin) {
  try {
    RejectMergeKeys(root);
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          std::string(origin) +
          ": a catalogue file is a map with 'components', 'checks' and/or 'profiles'");
    }
    std::vector<ComponentSpec> components;
    std::vector<Check> checks;
    if (root["version"]) version_ = root["version"].Scalar();
    if (const YAML::Node cs = root["components"]) {
      for (const auto& c : cs) components.push_back(ParseComponent(c));
    }
    if (const YAML::Node cs = root["checks"]) {
      for (const auto& c : cs) checks.push_back(ParseCheck(c, origin));
    }
    std::vector<Profile> profiles;
    if (const YAML::Node ps = root["profiles"]) {
      for (const auto& p : ps) profiles.push_back(ParseProfile(p));
    }
    for (auto& c : components) {
      if (FindComponent(c.name)) {
        return absl::AlreadyExistsError(std::string(origin) + ": component '" + c.name +
                                        "' is defined twice");
      }
      components_.push_back(std::move(c));
    }
    for (auto& c : checks) {
      if (const Check* other = FindCheck(c.id)) {
        return absl::AlreadyExistsError(std::string(origin) + ": check id '" + c.id +
                                        "' already defined in " + other->origin);
      }
      for (const auto& p : profiles_) ApplyProfile(p, c);
      checks_.push_back(std::move(c));
    }
    for (auto& p : profiles) {
      for (const auto& other : profiles_) {
        if (other.name == p.name) {
          return absl::AlreadyExistsError(std::string(origin) + ": profile '" + p.name +
                                          "' is defined twice");
        }
      }
      for (auto& c : checks_) ApplyProfile(p, c);
      profiles_.push_back(std::move(p));
    }
  } catch (const CatalogError& e) {
    return absl::InvalidArgumentError(std::string(origin) + ":" +
                                      std::to_string(e.mark().line + 1) + ":" +
                                      std::to_string(e.mark().column + 1) + ": " + e.what());
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(std::string(origin) + ":" + std::to_string(e.mark.line + 1) +
                                      ":" + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return absl::OkStatus();
}

absl::StatusOr<Catalog> Catalog::Builtin() {
  Catalog catalog;
  for (const auto& [name, tree] : BuiltinCatalogTrees()) {
    if (auto s = catalog.AddTree(tree(), "builtin:" + std::string(name)); !s.ok()) return s;
  }
  return catalog;
}

absl::Status Catalog::AddDirectory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return absl::InvalidArgumentError("cannot open rules directory " + dir + ": " +
                                      std::strerror(errno));
  }
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.ends_with(".yaml") || name.ends_with(".yml")) names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string path = dir + "/" + name;
    std::ifstream in(path);
    if (!in) return absl::InvalidArgumentError("cannot read rules file " + path);
    std::stringstream buf;
    buf << in.rdbuf();
    if (auto s = AddYaml(buf.str(), path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

const ComponentSpec* Catalog::FindComponent(std::string_view name) const {
  for (const auto& c : components_) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const Check* Catalog::FindCheck(std::string_view id) const {
  for (const auto& c : checks_) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

std::vector<std::string> Catalog::Benchmarks() const {
  std::set<std::string> names;
  for (const auto& c : checks_) {
    for (const auto& [b, id] : c.benchmarks) names.insert(b);
  }
  return {names.begin(), names.end()};
}

std::optional<bool> ParseBool(std::string_view text) {
  if (text == "1" || text == "t" || text == "T" || text == "true" || text == "TRUE" ||
      text == "True") {
    return true;
  }
  if (text == "0" || text == "f" || text == "F" || text == "false" || text == "FALSE" ||
      text == "False") {
    return false;
  }
  return std::nullopt;
}

std::optional<int64_t> ParseInt(std::string_view text) {
  text = common::Trim(text);
  if (text.empty()) return std::nullopt;
  size_t i = 0;
  bool negative = false;
  if (text[0] == '-' || text[0] == '+') {
    negative = text[0] == '-';
    i = 1;
  }
  if (i == text.size()) return std::nullopt;
  int64_t value = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    if (value > (INT64_MAX - 9) / 10) return std::nullopt;
    value = value * 10 + (text[i] - '0');
  }
  return negative ? -value : value;
}

std::optional<int64_t> ParseDurationNanos(std::string_view text) {
  text = common::Trim(text);
  if (text.empty()) return std::nullopt;
  bool negative = false;
  if (text[0] == '-' || text[0] == '+') {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  if (text == "0") return 0;  // Go accepts a bare 0
  if (text.empty()) return std::nullopt;
  static const std::pair<std::string_view, double> kUnits[] = {
      {"ns", 1.0}, {"us", 1e3}, {"µs", 1e3}, {"μs", 1e3},
      {"ms", 1e6}, {"s", 1e9},  {"m", 60e9}, {"h", 3600e9}};
  double total = 0;
  while (!text.empty()) {
    size_t n = 0;
    while (n < text.size() && ((text[n] >= '0' && text[n] <= '9') || text[n] == '.')) ++n;
    if (n == 0) return std::nullopt;
    double number = 0;
    try {
      number = std::stod(std::string(text.substr(0, n)));
    } catch (...) {
      return std::nullopt;
    }
    text.remove_prefix(n);
    size_t u = 0;
    while (u < text.size() && !((text[u] >= '0' && text[u] <= '9') || text[u] == '.')) ++u;
    const std::string_view unit = text.substr(0, u);
    text.remove_prefix(u);
    bool found = false;
    for (const auto& [name, factor] : kUnits) {
      if (name == unit) {
        total += number * factor;
        found = true;
        break;
      }
    }
    if (!found) return std::nullopt;
  }
  if (!(total < 9.2e18)) return std::nullopt;  // overflows int64 nanoseconds, as in Go
  const auto nanos = static_cast<int64_t>(std::llround(total));
  return negative ? -nanos : nanos;
}

std::vector<std::string> SplitList(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view part : common::Split(text, ',')) {
    part = common::Trim(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

std::map<std::string, std::string> SplitMap(std::string_view text) {
  std::map<std::string, std::string> out;
  for (const auto& item : SplitList(text)) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      out[item] = "";
    } else {
      out[std::string(common::Trim(item.substr(0, eq)))] =
          std::string(common::Trim(item.substr(eq + 1)));
    }
  }
  return out;
}

}  // namespace kspm::agent::checks

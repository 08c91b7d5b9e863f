#include "kspm/collector/cluster/exceptions.h"

#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

#include "yaml-cpp/yaml.h"

namespace kspm::collector::cluster {
namespace {

class RuleError : public std::runtime_error {
 public:
  RuleError(const YAML::Node& node, const std::string& what)
      : std::runtime_error(what), mark_(node.Mark()) {}
  const YAML::Mark& mark() const { return mark_; }

 private:
  YAML::Mark mark_;
};

std::vector<std::string> List(const YAML::Node& node, const char* key) {
  std::vector<std::string> out;
  const YAML::Node v = node[key];
  if (!v) return out;
  if (v.IsScalar()) return {v.Scalar()};
  if (!v.IsSequence()) throw RuleError(v, std::string("'") + key + "' must be a list");
  for (const auto& item : v) {
    if (!item.IsScalar()) throw RuleError(item, std::string("'") + key + "' holds a non-scalar");
    out.push_back(item.Scalar());
  }
  return out;
}

std::string Scalar(const YAML::Node& node, const char* key, bool required) {
  const YAML::Node v = node[key];
  if (!v || v.IsNull()) {
    if (required) throw RuleError(node, std::string("missing '") + key + "'");
    return "";
  }
  if (!v.IsScalar()) throw RuleError(v, std::string("'") + key + "' must be a scalar");
  if (required && v.Scalar().empty()) throw RuleError(v, std::string("'") + key + "' is empty");
  return v.Scalar();
}

// YYYY-MM-DD (valid through the end of that day, UTC) or RFC 3339 with Z.
std::optional<common::Clock::time_point> ParseExpiry(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end != nullptr && (*end == 'Z' || *end == '\0')) {
    return common::Clock::from_time_t(timegm(&tm));
  }
  tm = {};
  end = strptime(text.c_str(), "%Y-%m-%d", &tm);
  if (end != nullptr && *end == '\0') {
    return common::Clock::from_time_t(timegm(&tm)) + std::chrono::hours(24) -
           std::chrono::seconds(1);
  }
  return std::nullopt;
}

bool AnyGlob(const std::vector<std::string>& patterns, std::string_view text) {
  if (patterns.empty()) return true;
  for (const auto& p : patterns) {
    if (GlobMatch(p, text)) return true;
  }
  return false;
}

bool LabelsMatch(const std::map<std::string, std::string>& want, const k8s::Value* labels) {
  if (labels == nullptr || !labels->is_object()) return false;
  for (const auto& [k, v] : want) {
    const auto it = labels->find(k);
    if (it == labels->end() || !it->is_string() || !GlobMatch(v, it->get<std::string>())) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text) {
  // Iterative wildcard match with backtracking to the last `*`.
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] != '*' && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

absl::StatusOr<ExceptionSet> ExceptionSet::Parse(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root || root.IsNull()) return ExceptionSet();
  const YAML::Node list = root["exceptions"];
  if (!root.IsMap() || !list || !list.IsSequence()) {
    return absl::InvalidArgumentError(name + ": needs an 'exceptions' list");
  }
  static const std::set<std::string> kKeys = {"name",    "checks",     "namespaces", "kinds",
                                              "names",   "containers", "labels",     "reason",
                                              "expires", "approved_by"};
  std::vector<ExceptionRule> rules;
  std::set<std::string> seen;
  for (const auto& node : list) {
    try {
      if (!node.IsMap()) throw RuleError(node, "an exception must be a map");
      for (const auto& kv : node) {
        if (!kKeys.contains(kv.first.Scalar())) {
          throw RuleError(kv.first, "unknown key '" + kv.first.Scalar() + "'");
        }
      }
      ExceptionRule r;
      r.name = Scalar(node, "name", true);
      if (!seen.insert(r.name).second) throw RuleError(node, "duplicate name '" + r.name + "'");
      r.checks = List(node, "checks");
      if (r.checks.empty()) throw RuleError(node, "'checks' is required (use \"*\" for all)");
      for (const auto& c : r.checks) {
        if (c == "*" || FindCheck(c) != nullptr) continue;
        bool item = false;
        for (const auto& def : BuiltinCatalog()) {
          for (const auto& b : def.benchmarks) item = item || b.item == c;
        }
        if (!item) throw RuleError(node["checks"], "unknown check or item '" + c + "'");
      }
      r.namespaces = List(node, "namespaces");
      r.kinds = List(node, "kinds");
      r.names = List(node, "names");
      r.containers = List(node, "containers");
      if (const YAML::Node labels = node["labels"]; labels) {
        if (!labels.IsMap()) throw RuleError(labels, "'labels' must be a map");
        for (const auto& kv : labels) r.labels[kv.first.Scalar()] = kv.second.Scalar();
      }
      r.reason = Scalar(node, "reason", true);
      r.approved_by = Scalar(node, "approved_by", false);
      r.expires_text = Scalar(node, "expires", true);
      const auto expires = ParseExpiry(r.expires_text);
      if (!expires) {
        throw RuleError(node["expires"],
                        "'expires' must be a date (2027-06-30) or an RFC 3339 "
                        "time (2027-06-30T12:00:00Z)");
      }
      r.expires = *expires;
      r.source = name + ":" + std::to_string(node.Mark().line + 1);
      rules.push_back(std::move(r));
    } catch (const RuleError& e) {
      return absl::InvalidArgumentError(name + ":" + std::to_string(e.mark().line + 1) + ": " +
                                        e.what());
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(name + ":" + std::to_string(e.mark.line + 1) + ": " +
                                        e.msg);
    }
  }
  return ExceptionSet(std::move(rules));
}

absl::StatusOr<ExceptionSet> ExceptionSet::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError("cannot read exceptions file " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  return Parse(buf.str(), path);
}

const ExceptionRule* ExceptionSet::Match(const CheckDef& check, const Finding& finding,
                                         common::Clock::time_point now,
                                         const ExceptionRule** expired) const {
  const ExceptionRule* lapsed = nullptr;
  for (const auto& r : rules_) {
    const bool check_ok = std::any_of(r.checks.begin(), r.checks.end(), [&](const auto& c) {
      if (c == "*" || c == check.id) return true;
      return std::any_of(check.benchmarks.begin(), check.benchmarks.end(),
                         [&](const BenchmarkItem& b) { return b.item == c; });
    });
    if (!check_ok) continue;
    const auto& res = finding.resource;
    if (!AnyGlob(r.namespaces, res.namespace_())) continue;
    if (!AnyGlob(r.kinds, res.kind())) continue;
    if (!AnyGlob(r.names, res.name())) continue;
    if (!r.containers.empty()) {
      // Every container at fault must be covered; a pod-level fault has no container.
      const bool pod_level = finding.containers.empty() ||
                             std::any_of(finding.containers.begin(), finding.containers.end(),
                                         [](const std::string& c) { return c.empty(); });
      if (pod_level) continue;
      const bool all = std::all_of(finding.containers.begin(), finding.containers.end(),
                                   [&](const std::string& c) { return AnyGlob(r.containers, c); });
      if (!all) continue;
    }
    if (!r.labels.empty() && !LabelsMatch(r.labels, finding.labels) &&
        !LabelsMatch(r.labels, finding.pod_labels)) {
      continue;
    }
    if (r.expires < now) {
      if (lapsed == nullptr) lapsed = &r;
      continue;
    }
    return &r;
  }
  if (expired) *expired = lapsed;
  return nullptr;
}

}  // namespace kspm::collector::cluster

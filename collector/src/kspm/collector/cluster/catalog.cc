#include "kspm/collector/cluster/catalog.h"

#include <mutex>
#include <set>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "kspm/collector/cluster/evaluators.h"
#include "kspm/common/names.h"
#include "kspm/common/yaml_fields.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace kspm::collector::cluster {

// Defined in the generated cluster_catalog.cc (collector/catalog/embed.cmake).
extern std::string_view EmbeddedClusterCatalog();

namespace {

// Raised while reading one entry and caught in ParseCatalog: never escapes this file.
using EntryError = common::YamlFieldError;

std::string Scalar(const YAML::Node& node, const char* field, bool required = false) {
  return common::ScalarField(node, field, required);
}

std::vector<std::string> StringList(const YAML::Node& node, const char* field) {
  return common::StringListField(node, field);
}

CheckDef ParseCheck(const YAML::Node& node) {
  if (!node.IsMap()) throw EntryError(node, "a check must be a map");
  CheckDef c;
  c.id = Scalar(node, "id", true);
  c.title = Scalar(node, "title", true);
  c.component = Scalar(node, "component", true);
  c.evaluate = Scalar(node, "evaluate", true);
  c.expected = Scalar(node, "expected", true);
  c.remediation = Scalar(node, "remediation", true);
  const auto severity = common::ParseSeverity(Scalar(node, "severity", true));
  if (!severity) throw EntryError(node["severity"], "unknown severity in check '" + c.id + "'");
  c.severity = *severity;
  // The registry of evaluators (evaluators.cc) is the one list of their names.
  if (!cluster::Evaluators().contains(c.evaluate)) {
    throw EntryError(node["evaluate"],
                     "check '" + c.id + "': unknown evaluator '" + c.evaluate + "'");
  }
  const YAML::Node benchmarks = node["benchmarks"];
  if (!benchmarks || !benchmarks.IsMap() || benchmarks.size() == 0) {
    throw EntryError(node, "check '" + c.id + "' needs 'benchmarks' (name: {item, scored})");
  }
  for (const auto& b : benchmarks) {
    BenchmarkItem item;
    item.benchmark = b.first.Scalar();
    if (!b.second.IsMap()) throw EntryError(b.second, "benchmark entry must be {item, scored}");
    item.item = Scalar(b.second, "item", true);
    const std::string scored = Scalar(b.second, "scored", true);
    if (scored != "true" && scored != "false") {
      throw EntryError(b.second, "'scored' must be true or false");
    }
    item.scored = scored == "true";
    c.benchmarks.push_back(std::move(item));
  }
  if (c.evaluate == "pod") {
    c.rule = Scalar(node, "rule", true);
    if (!IsPodRule(c.rule)) {
      throw EntryError(node["rule"], "check '" + c.id + "': unknown pod rule '" + c.rule + "'");
    }
  }
  if (c.evaluate == "rbac-grant" || c.evaluate == "workload-takeover") {
    const YAML::Node grants = node["grants"];
    if (!grants || !grants.IsSequence() || grants.size() == 0) {
      throw EntryError(node, "check '" + c.id + "' needs 'grants'");
    }
    for (const auto& g : grants) {
      GrantSpec spec;
      spec.groups = StringList(g, "groups");
      spec.resources = StringList(g, "resources");
      spec.verbs = StringList(g, "verbs");
      spec.cluster_scoped = Scalar(g, "cluster_scoped") == "true";
      spec.namespaces = StringList(g, "namespaces");
      if (spec.groups.empty() || spec.resources.empty() || spec.verbs.empty()) {
        throw EntryError(g, "a grant needs groups, resources and verbs");
      }
      c.grants.push_back(std::move(spec));
    }
  }
  if (c.evaluate == "rbac-subjects") {
    const YAML::Node subjects = node["subjects"];
    if (!subjects || !subjects.IsSequence() || subjects.size() == 0) {
      throw EntryError(node, "check '" + c.id + "' needs 'subjects'");
    }
    for (const auto& s : subjects) {
      c.subjects.push_back({Scalar(s, "kind", true), Scalar(s, "name", true)});
    }
    if (const YAML::Node defaults = node["defaults"]; defaults) {
      if (!defaults.IsSequence()) throw EntryError(defaults, "'defaults' must be a list");
      for (const auto& d : defaults) {
        c.defaults.push_back({Scalar(d, "kind", true), Scalar(d, "namespace"),
                              Scalar(d, "name", true), Scalar(d, "role", true)});
      }
    }
  }
  if (c.evaluate == "psa-level") {
    c.level = Scalar(node, "level", true);
    c.control = Scalar(node, "control", true);
    if (c.level != "baseline" && c.level != "restricted") {
      throw EntryError(node["level"], "level must be baseline or restricted");
    }
  }
  return c;
}

}  // namespace

absl::StatusOr<std::vector<CheckDef>> ParseCatalog(const std::string& text,
                                                   const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(name + ": line " + std::to_string(e.mark.line + 1) + ": " +
                                      e.msg);
  }
  const YAML::Node checks = root["checks"];
  if (!checks || !checks.IsSequence()) {
    return absl::InvalidArgumentError(name + ": needs a 'checks' list");
  }
  std::vector<CheckDef> out;
  std::set<std::string> ids;
  for (const auto& node : checks) {
    try {
      CheckDef c = ParseCheck(node);
      if (!ids.insert(c.id).second) throw EntryError(node, "duplicate check id '" + c.id + "'");
      out.push_back(std::move(c));
    } catch (const EntryError& e) {
      return absl::InvalidArgumentError(name + ": line " + std::to_string(e.mark().line + 1) +
                                        ": " + e.what());
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(name + ": line " + std::to_string(e.mark.line + 1) + ": " +
                                        e.msg);
    }
  }
  return out;
}

const std::vector<CheckDef>& BuiltinCatalog() {
  static const std::vector<CheckDef> kCatalog = [] {
    auto parsed = ParseCatalog(std::string(EmbeddedClusterCatalog()), "cluster.yaml");
    if (!parsed.ok()) {
      // The embedded catalogue is covered by a unit test; this is a build defect.
      spdlog::critical("built-in cluster catalogue: {}", std::string(parsed.status().message()));
      return std::vector<CheckDef>{};
    }
    return *std::move(parsed);
  }();
  return kCatalog;
}

const CheckDef* FindCheck(const std::string& id) {
  static const std::unordered_map<std::string, const CheckDef*> kIndex = [] {
    std::unordered_map<std::string, const CheckDef*> out;
    for (const auto& c : BuiltinCatalog()) out[c.id] = &c;
    return out;
  }();
  const auto it = kIndex.find(id);
  return it == kIndex.end() ? nullptr : it->second;
}

}  // namespace kspm::collector::cluster

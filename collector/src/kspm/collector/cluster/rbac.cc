#include "kspm/collector/cluster/rbac.h"

#include <algorithm>
#include <set>

#include "kspm/common/strings.h"

namespace kspm::collector::cluster {
namespace {

std::vector<std::string> Strings(const k8s::Value& j, const char* key) {
  std::vector<std::string> out;
  const auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

std::string Str(const k8s::Value& j, const char* key) {
  if (!j.is_object()) return "";
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool Contains(const std::vector<std::string>& list, std::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

std::vector<PolicyRule> ParseRules(const k8s::Value& doc) {
  std::vector<PolicyRule> out;
  const auto it = doc.find("rules");
  if (it == doc.end() || !it->is_array()) return out;
  for (const auto& r : *it) {
    if (!r.is_object()) continue;
    out.push_back({Strings(r, "apiGroups"), Strings(r, "resources"), Strings(r, "verbs"),
                   Strings(r, "resourceNames"), Strings(r, "nonResourceURLs")});
  }
  return out;
}

std::vector<LabelSelector> ParseAggregation(const k8s::Value& doc) {
  std::vector<LabelSelector> out;
  const auto rule = doc.find("aggregationRule");
  if (rule == doc.end() || !rule->is_object()) return out;
  const auto selectors = rule->find("clusterRoleSelectors");
  if (selectors == rule->end() || !selectors->is_array()) return out;
  for (const auto& s : *selectors) {
    if (!s.is_object()) continue;
    LabelSelector sel;
    if (const auto ml = s.find("matchLabels"); ml != s.end() && ml->is_object()) {
      for (const auto& [k, v] : ml->items()) {
        sel.match_labels[std::string(k)] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
    if (const auto me = s.find("matchExpressions"); me != s.end() && me->is_array()) {
      for (const auto& e : *me) {
        sel.expressions.push_back({Str(e, "key"), Str(e, "operator"), Strings(e, "values")});
      }
    }
    out.push_back(std::move(sel));
  }
  return out;
}

std::string List(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const auto& i : items) quoted.push_back(i.empty() ? "\"\"" : i);
  return "[" + common::Join(quoted, ", ") + "]";
}

// Verbs whose requests carry no object name: resourceNames cannot grant them.
bool UnnamedRequest(std::string_view resource, std::string_view verb) {
  if (verb == "list" || verb == "watch" || verb == "deletecollection") return true;
  return verb == "create" && resource.find('/') == std::string_view::npos;
}

bool ResourceMatches(const PolicyRule& rule, std::string_view resource) {
  const size_t slash = resource.find('/');
  const std::string_view sub =
      slash == std::string_view::npos ? std::string_view{} : resource.substr(slash + 1);
  const bool any_sub = sub == "*";  // the question covers every subresource of the resource
  for (const auto& r : rule.resources) {
    if (r == "*" || r == resource) return true;
    if (sub.empty()) continue;
    if (any_sub) {
      if (std::string_view(r).starts_with(resource.substr(0, slash + 1))) return true;
      if (r.starts_with("*/")) return true;
    } else if (r.size() == sub.size() + 2 && r.starts_with("*/") && r.ends_with(sub)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string PolicyRule::Describe() const {
  std::string out;
  if (!non_resource_urls.empty()) {
    out = "nonResourceURLs: " + List(non_resource_urls);
  } else {
    out = "apiGroups: " + List(api_groups) + "; resources: " + List(resources);
  }
  out += "; verbs: " + List(verbs);
  if (!resource_names.empty()) out += "; resourceNames: " + List(resource_names);
  return out;
}

bool LabelSelector::Matches(const k8s::Value& labels) const {
  auto value = [&](const std::string& key) -> std::optional<std::string> {
    const auto it = labels.find(key);
    if (it == labels.end()) return std::nullopt;
    return it->is_string() ? it->get<std::string>() : it->dump();
  };
  for (const auto& [k, v] : match_labels) {
    if (value(k) != v) return false;
  }
  for (const auto& e : expressions) {
    const auto v = value(e.key);
    if (e.op == "In") {
      if (!v || !Contains(e.values, *v)) return false;
    } else if (e.op == "NotIn") {
      if (v && Contains(e.values, *v)) return false;
    } else if (e.op == "Exists") {
      if (!v) return false;
    } else if (e.op == "DoesNotExist") {
      if (v) return false;
    } else {
      return false;  // an unknown operator selects nothing, as the API server refuses it
    }
  }
  // An empty selector selects nothing in an aggregationRule (the controller skips it).
  return !match_labels.empty() || !expressions.empty();
}

bool RuleGrants(const PolicyRule& rule, std::string_view group, std::string_view resource,
                std::string_view verb) {
  if (rule.resources.empty()) return false;
  if (!Contains(rule.api_groups, "*") && !Contains(rule.api_groups, group)) return false;
  if (!Contains(rule.verbs, "*") && !Contains(rule.verbs, verb)) return false;
  if (!ResourceMatches(rule, resource)) return false;
  if (!rule.resource_names.empty() && UnnamedRequest(resource, verb)) return false;
  return true;
}

Rbac::Rbac(const k8s::Snapshot& snapshot, const SystemPolicy& policy) {
  for (const char* kind : {"ClusterRole", "Role"}) {
    for (const auto& o : snapshot.Of(kind)) {
      Role r;
      r.object = &o;
      r.cluster_role = o.kind == "ClusterRole";
      r.system = policy.IsSystemRole(o);
      r.rules = ParseRules(o.doc);
      if (r.cluster_role) r.aggregation = ParseAggregation(o.doc);
      roles_.push_back(std::move(r));
    }
  }
  for (const auto& r : roles_) {
    role_index_[{r.cluster_role ? "" : r.object->ns, r.object->name}] = &r;
  }
  for (const char* kind : {"ClusterRoleBinding", "RoleBinding"}) {
    for (const auto& o : snapshot.Of(kind)) {
      Binding b;
      b.object = &o;
      b.cluster_binding = o.kind == "ClusterRoleBinding";
      const auto ref = o.doc.find("roleRef");
      if (ref != o.doc.end()) {
        b.role_kind = Str(*ref, "kind");
        b.role_name = Str(*ref, "name");
      }
      if (const auto subjects = o.doc.find("subjects");
          subjects != o.doc.end() && subjects->is_array()) {
        for (const auto& s : *subjects) {
          Subject subject{Str(s, "kind"), Str(s, "name"), Str(s, "namespace")};
          if (subject.kind == "ServiceAccount" && subject.ns.empty()) subject.ns = o.ns;
          b.subjects.push_back(std::move(subject));
        }
      }
      // A RoleBinding may reference a ClusterRole; a ClusterRoleBinding only a ClusterRole.
      const bool cluster_ref = b.role_kind == "ClusterRole";
      if (cluster_ref || (!b.cluster_binding && b.role_kind == "Role")) {
        const auto it = role_index_.find({cluster_ref ? "" : o.ns, b.role_name});
        if (it != role_index_.end()) b.role = it->second;
      }
      b.system = policy.IsSystemBinding(o, b.subjects);
      bindings_.push_back(std::move(b));
    }
  }
  // Service accounts appear as ServiceAccount subjects, as their user name
  // system:serviceaccount:NS:NAME, or through their namespace's group system:serviceaccounts:NS.
  constexpr std::string_view kUser = "system:serviceaccount:";
  constexpr std::string_view kGroup = "system:serviceaccounts:";
  for (const auto& b : bindings_) {
    std::set<std::pair<std::string, std::string>> keys;
    for (const auto& s : b.subjects) {
      if (s.kind == "ServiceAccount") {
        keys.insert({s.ns, s.name});
      } else if (s.kind == "User" && std::string_view(s.name).starts_with(kUser)) {
        const std::string rest = s.name.substr(kUser.size());
        const size_t colon = rest.find(':');
        if (colon != std::string::npos)
          keys.insert({rest.substr(0, colon), rest.substr(colon + 1)});
      } else if (s.kind == "Group" && std::string_view(s.name).starts_with(kGroup)) {
        keys.insert({s.name.substr(kGroup.size()), "*"});
      }
    }
    for (const auto& key : keys) by_service_account_[key].push_back(&b);
  }
  // Every role expanded now, so that RulesOf only reads afterwards: checks run on several
  // threads over one Rbac.
  for (const auto& role : roles_) RulesOf(role);
}

const std::vector<RuleRef>& Rbac::RulesOf(const Role& role) const {
  if (const auto it = expanded_.find(&role); it != expanded_.end()) return it->second;
  // Placeholder first: an aggregation cycle then expands each role once.
  expanded_[&role];
  std::vector<RuleRef> out;
  for (size_t i = 0; i < role.rules.size(); ++i) out.push_back({&role, nullptr, i, &role.rules[i]});
  if (!role.aggregation.empty()) {
    for (const auto& other : roles_) {
      if (&other == &role || !other.cluster_role) continue;
      const bool selected =
          std::any_of(role.aggregation.begin(), role.aggregation.end(),
                      [&](const LabelSelector& s) { return s.Matches(other.object->labels()); });
      if (!selected) continue;
      for (const auto& ref : RulesOf(other)) {
        out.push_back({&role, ref.via ? ref.via : &other, ref.index, ref.rule});
      }
    }
  }
  auto& slot = expanded_[&role];
  slot = std::move(out);
  return slot;
}

std::optional<GrantMatch> Rbac::FindGrant(const Binding& binding, const GrantSpec& spec) const {
  if (binding.role == nullptr) return std::nullopt;
  if (spec.cluster_scoped && !binding.cluster_binding) return std::nullopt;
  if (!spec.namespaces.empty() && !binding.cluster_binding &&
      std::find(spec.namespaces.begin(), spec.namespaces.end(), binding.object->ns) ==
          spec.namespaces.end()) {
    return std::nullopt;
  }
  for (const auto& ref : RulesOf(*binding.role)) {
    for (const auto& group : spec.groups) {
      for (const auto& resource : spec.resources) {
        for (const auto& verb : spec.verbs) {
          if (RuleGrants(*ref.rule, group, resource, verb)) {
            return GrantMatch{ref, group, resource, verb};
          }
        }
      }
    }
  }
  return std::nullopt;
}

std::vector<const Binding*> Rbac::BindingsOfServiceAccount(std::string_view ns,
                                                           std::string_view name) const {
  std::vector<const Binding*> out;
  for (const std::string_view n : {name, std::string_view("*")}) {
    const auto it = by_service_account_.find(std::make_pair(std::string(ns), std::string(n)));
    if (it == by_service_account_.end()) continue;
    for (const auto* b : it->second) {
      if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
    }
  }
  // In the order the bindings were read, as a reader of the evidence expects.
  std::sort(out.begin(), out.end());
  return out;
}

std::string DescribeSubject(const Subject& s) {
  if (s.kind == "ServiceAccount") return "ServiceAccount " + s.ns + "/" + s.name;
  return s.kind + " " + s.name;
}

std::string DescribeRuleSource(const RuleRef& ref) {
  const Role* holder = ref.via ? ref.via : ref.role;
  std::string out = holder->object->Describe();
  if (ref.via) out += " (aggregated into " + ref.role->object->Describe() + ")";
  return out;
}

}  // namespace kspm::collector::cluster

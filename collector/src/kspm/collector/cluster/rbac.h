#pragma once

// RBAC as the API server's authorizer evaluates it: subject -> binding -> role, with aggregated
// ClusterRoles expanded from their aggregationRule label selectors, a RoleBinding granting only
// inside its namespace, `*` and `*/subresource` matching, and resourceNames narrowing a rule.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kspm/collector/cluster/catalog.h"
#include "kspm/collector/cluster/system_policy.h"
#include "kspm/collector/k8s/object.h"

namespace kspm::collector::cluster {

struct PolicyRule {
  std::vector<std::string> api_groups;
  std::vector<std::string> resources;
  std::vector<std::string> verbs;
  std::vector<std::string> resource_names;
  std::vector<std::string> non_resource_urls;
  // `apiGroups: [""]; resources: [pods/exec]; verbs: [create]`, for evidence.
  std::string Describe() const;
};

// A label selector of an aggregationRule (matchLabels and matchExpressions).
struct LabelSelector {
  std::map<std::string, std::string> match_labels;
  struct Expression {
    std::string key;
    std::string op;  // In, NotIn, Exists, DoesNotExist
    std::vector<std::string> values;
  };
  std::vector<Expression> expressions;
  bool Matches(const k8s::Value& labels) const;
};

struct Role {
  const k8s::Object* object = nullptr;
  bool cluster_role = false;
  bool system = false;
  std::vector<PolicyRule> rules;           // as stored (aggregated ones already materialised)
  std::vector<LabelSelector> aggregation;  // empty: not an aggregated ClusterRole
};

// A rule that grants something, and where it lives: `role` (the role a binding references)
// holds it directly, or through `via` (a ClusterRole aggregated into it).
struct RuleRef {
  const Role* role = nullptr;
  const Role* via = nullptr;  // null when the rule is the role's own
  size_t index = 0;           // index in (via ? via : role)->rules
  const PolicyRule* rule = nullptr;
};

struct Binding {
  const k8s::Object* object = nullptr;
  bool cluster_binding = false;  // ClusterRoleBinding
  bool system = false;
  std::string role_kind;  // Role or ClusterRole
  std::string role_name;
  std::vector<Subject> subjects;
  const Role* role = nullptr;  // null when the referenced role does not exist
};

// One matched (group, resource, verb) and the rule that grants it.
struct GrantMatch {
  RuleRef rule;
  std::string group;
  std::string resource;
  std::string verb;
};

// Whether `rule` grants `verb` on `resource` (`r` or `r/sub`) in `group`. `named` is whether the
// request names an object: a rule narrowed by resourceNames never grants an unnamed request
// (create of a top-level resource), and grants a named one only for the names listed.
bool RuleGrants(const PolicyRule& rule, std::string_view group, std::string_view resource,
                std::string_view verb);

// The RBAC objects of a snapshot, joined. Immutable once built: safe to share between threads.
class Rbac {
 public:
  Rbac(const k8s::Snapshot& snapshot, const SystemPolicy& policy);
  Rbac(const Rbac&) = delete;
  Rbac& operator=(const Rbac&) = delete;

  const std::vector<Role>& roles() const { return roles_; }
  const std::vector<Binding>& bindings() const { return bindings_; }
  bool empty() const { return roles_.empty() && bindings_.empty(); }

  // The rules a role grants, aggregation expanded (recursively, once per role). Every role is
  // expanded by the constructor, so concurrent calls only read.
  const std::vector<RuleRef>& RulesOf(const Role& role) const;

  // The first rule of `binding`'s role that grants any (group, resource, verb) of `spec`, or
  // nothing. A RoleBinding never grants a cluster-scoped resource.
  std::optional<GrantMatch> FindGrant(const Binding& binding, const GrantSpec& spec) const;

  // Bindings naming a service account, directly or through its user or groups
  // (system:serviceaccount:NS:NAME, system:serviceaccounts:NS); system:serviceaccounts and
  // system:authenticated are not counted: they name everyone.
  std::vector<const Binding*> BindingsOfServiceAccount(std::string_view ns,
                                                       std::string_view name) const;

 private:
  std::vector<Role> roles_;
  std::vector<Binding> bindings_;
  std::map<std::pair<std::string, std::string>, const Role*> role_index_;  // (ns, name)
  // Bindings naming a service account (namespace, name; name "*" for the namespace's group).
  std::map<std::pair<std::string, std::string>, std::vector<const Binding*>, std::less<>>
      by_service_account_;
  mutable std::map<const Role*, std::vector<RuleRef>> expanded_;
};

// Evidence helpers shared by RBAC evaluators: `Kind name` of a role, `Kind name` of a subject.
std::string DescribeSubject(const Subject& s);
std::string DescribeRuleSource(const RuleRef& ref);

}  // namespace kspm::collector::cluster

// RBAC and service-account evaluators (CIS 5.1.x, NSA/CISA authentication and authorization).
// Bindings are judged through the role they reference: a role nobody is bound to grants nothing
// and is reported only by the wildcard check, which is about the roles themselves.
#include <set>

#include "kspm/collector/cluster/checks_internal.h"
#include "kspm/common/strings.h"

namespace kspm::collector::cluster::internal {
namespace {

std::string Subjects(const Binding& b) {
  std::vector<std::string> out;
  for (const auto& s : b.subjects) out.push_back(DescribeSubject(s));
  return out.empty() ? "(none)" : common::Join(out, ", ");
}

std::string Scope(const Binding& b) {
  return b.cluster_binding ? "cluster-wide" : "in namespace " + b.object->ns;
}

std::string RoleRefText(const Binding& b) {
  return b.role_kind + " " + b.role_name + (b.role ? "" : " (not found)");
}

// roleRef, the granting rule and subjects, in the order a reader follows the join.
std::vector<v1::Evidence> BindingEvidence(const Binding& b, const RuleRef* rule) {
  const std::string source = b.object->Describe();
  std::vector<v1::Evidence> out;
  out.push_back(ApiEvidence("roleRef", source, RoleRefText(b)));
  if (rule) {
    out.push_back(ApiEvidence("rules[" + std::to_string(rule->index) + "]",
                              DescribeRuleSource(*rule), rule->rule->Describe()));
  }
  out.push_back(ApiEvidence("subjects", source, Subjects(b)));
  return out;
}

Finding BindingFinding(const Binding& b, std::string reason, std::vector<v1::Evidence> evidence) {
  Finding f;
  f.status = v1::STATUS_FAIL;
  f.resource = MakeResource(b.object->kind, b.object->ns, b.object->name);
  f.reason = std::move(reason);
  f.evidence = std::move(evidence);
  f.labels = &b.object->labels();
  return f;
}

bool FullWildcard(const PolicyRule& r) {
  auto has = [](const std::vector<std::string>& v) {
    return std::find(v.begin(), v.end(), "*") != v.end();
  };
  return has(r.api_groups) && has(r.resources) && has(r.verbs);
}

std::string GrantText(const GrantMatch& m) {
  const std::string group = m.group.empty() ? "" : m.group + "/";
  return m.verb + " on " + group + m.resource;
}

const char* kNoRbac = "the snapshot holds no Roles, ClusterRoles or bindings";

// The bindings a binding check judges: every one, or all but the system baseline when the
// policy skips it (counted, for the PASS reason).
struct JudgedBindings {
  std::vector<const Binding*> bindings;
  size_t skipped = 0;
};
JudgedBindings Judged(const Context& ctx) {
  JudgedBindings out;
  for (const auto& b : ctx.rbac.bindings()) {
    if (b.system && ctx.policy.skip()) {
      ++out.skipped;
    } else {
      out.bindings.push_back(&b);
    }
  }
  return out;
}

}  // namespace

std::vector<Finding> RbacMissingRole(const CheckDef& c, const Context& ctx) {
  if (ctx.rbac.bindings().empty()) return {NotApplicable(kNoRbac)};
  std::vector<Finding> out;
  const JudgedBindings judged = Judged(ctx);
  for (const Binding* b : judged.bindings) {
    if (b->role != nullptr) continue;
    out.push_back(BindingFinding(*b,
                                 b->object->Describe() + " names " + b->role_kind + " " +
                                     b->role_name +
                                     ", which does not exist; whoever creates it "
                                     "gives its rights to " +
                                     Subjects(*b),
                                 BindingEvidence(*b, nullptr)));
  }
  if (out.empty()) {
    out.push_back(ClusterVerdict(v1::STATUS_PASS, "every binding names an existing role; " +
                                                      std::to_string(judged.bindings.size()) +
                                                      " bindings checked" +
                                                      SkipNote(judged.skipped, "bindings")));
  }
  return out;
}

std::vector<Finding> RbacGrant(const CheckDef& c, const Context& ctx) {
  if (ctx.rbac.bindings().empty()) return {NotApplicable(kNoRbac)};
  std::vector<Finding> out;
  const JudgedBindings judged = Judged(ctx);
  for (const Binding* binding : judged.bindings) {
    const Binding& b = *binding;
    if (b.subjects.empty()) continue;  // grants nobody anything (system:node is served otherwise)
    for (const auto& spec : c.grants) {
      const auto m = ctx.rbac.FindGrant(b, spec);
      if (!m) continue;
      const Role* holder = m->rule.via ? m->rule.via : m->rule.role;
      std::string reason = b.object->Describe() + " gives " + Subjects(b) + " " + GrantText(*m) +
                           " " + Scope(b) + " through " + b.role_kind + " " + b.role_name;
      if (m->rule.via) reason += " (aggregated from " + holder->object->name + ")";
      if (!m->rule.rule->resource_names.empty()) {
        reason += ", limited to resourceNames " + common::Join(m->rule.rule->resource_names, ",");
      }
      out.push_back(BindingFinding(b, std::move(reason), BindingEvidence(b, &m->rule)));
      break;
    }
  }
  if (out.empty()) {
    out.push_back(ClusterVerdict(v1::STATUS_PASS,
                                 "no binding outside the system baseline grants "
                                 "it; " +
                                     std::to_string(judged.bindings.size()) + " bindings checked" +
                                     SkipNote(judged.skipped, "bindings")));
  }
  return out;
}

std::vector<Finding> RbacClusterAdmin(const CheckDef& c, const Context& ctx) {
  if (ctx.rbac.bindings().empty()) return {NotApplicable(kNoRbac)};
  std::vector<Finding> out;
  const JudgedBindings judged = Judged(ctx);
  for (const Binding* binding : judged.bindings) {
    const Binding& b = *binding;
    const bool by_name = b.role_kind == "ClusterRole" && b.role_name == "cluster-admin";
    const RuleRef* full = nullptr;
    if (b.role) {
      for (const auto& ref : ctx.rbac.RulesOf(*b.role)) {
        if (FullWildcard(*ref.rule)) {
          full = &ref;
          break;
        }
      }
    }
    if ((!by_name && full == nullptr) || b.subjects.empty()) continue;
    std::string reason =
        b.object->Describe() + " gives " + Subjects(b) + " " +
        (by_name ? "cluster-admin"
                 : "every verb on every resource through " + b.role_kind + " " + b.role_name) +
        " " + Scope(b);
    out.push_back(BindingFinding(b, std::move(reason), BindingEvidence(b, full)));
  }
  if (out.empty()) {
    out.push_back(
        ClusterVerdict(v1::STATUS_PASS,
                       "no binding outside the system baseline references cluster-admin or a "
                       "role granting everything; " +
                           std::to_string(judged.bindings.size()) + " bindings checked" +
                           SkipNote(judged.skipped, "bindings")));
  }
  return out;
}

std::vector<Finding> RbacWildcard(const CheckDef& c, const Context& ctx) {
  if (ctx.rbac.roles().empty())
    return {NotApplicable("the snapshot holds no Roles or ClusterRoles")};
  // Which bindings reference each role, for the evidence.
  std::map<const Role*, std::vector<const Binding*>> bound;
  for (const auto& b : ctx.rbac.bindings()) {
    if (b.role) bound[b.role].push_back(&b);
  }
  std::vector<Finding> out;
  size_t skipped = 0;
  for (const auto& role : ctx.rbac.roles()) {
    if (role.system && ctx.policy.skip()) {
      ++skipped;
      continue;
    }
    Finding f;
    f.resource = MakeResource(role.object->kind, role.object->ns, role.object->name);
    f.labels = &role.object->labels();
    const std::string source = role.object->Describe();
    std::vector<std::string> wild;
    for (size_t i = 0; i < role.rules.size(); ++i) {
      const auto& r = role.rules[i];
      std::vector<std::string> fields;
      for (const auto& [name, list] :
           {std::pair{"apiGroups", &r.api_groups}, std::pair{"resources", &r.resources},
            std::pair{"verbs", &r.verbs}}) {
        if (std::find(list->begin(), list->end(), "*") != list->end()) fields.push_back(name);
      }
      if (fields.empty()) continue;
      f.evidence.push_back(ApiEvidence("rules[" + std::to_string(i) + "]", source, r.Describe()));
      wild.push_back("rules[" + std::to_string(i) + "] " + common::Join(fields, ", "));
    }
    const auto& binders = bound[&role];
    std::vector<std::string> names;
    for (const auto* b : binders) names.push_back(b->object->Describe());
    if (wild.empty()) {
      f.status = v1::STATUS_PASS;
      f.evidence.push_back(
          ApiEvidence("rules", source, std::to_string(role.rules.size()) + " rules, no \"*\""));
      f.reason = source + " names its groups, resources and verbs";
    } else {
      f.status = v1::STATUS_FAIL;
      f.evidence.push_back(ApiEvidence("bound by", "bindings referencing " + source,
                                       names.empty() ? "(no binding)" : common::Join(names, ", ")));
      f.reason = source + " uses \"*\" in " + common::Join(wild, "; ") +
                 (names.empty() ? " (not bound by any binding yet)" : "");
    }
    out.push_back(std::move(f));
  }
  if (out.empty()) {
    out.push_back(
        ClusterVerdict(v1::STATUS_PASS, "only system roles exist" + SkipNote(skipped, "roles")));
  }
  return out;
}

std::vector<Finding> RbacSubjects(const CheckDef& c, const Context& ctx) {
  if (ctx.rbac.bindings().empty()) return {NotApplicable(kNoRbac)};
  std::vector<Finding> out;
  size_t defaults = 0;
  for (const auto& b : ctx.rbac.bindings()) {
    std::vector<std::string> named;
    for (const auto& s : b.subjects) {
      for (const auto& want : c.subjects) {
        if (s.kind == want.kind && s.name == want.name) named.push_back(DescribeSubject(s));
      }
    }
    if (named.empty()) continue;
    const bool is_default = std::any_of(c.defaults.begin(), c.defaults.end(), [&](const auto& d) {
      return d.kind == b.object->kind && d.ns == b.object->ns && d.name == b.object->name &&
             d.role == b.role_name;
    });
    if (is_default && ctx.policy.skip()) {
      ++defaults;
      continue;
    }
    std::vector<v1::Evidence> evidence = BindingEvidence(b, nullptr);
    if (b.role) {
      // What the subjects receive: the role's first rules.
      const auto& rules = ctx.rbac.RulesOf(*b.role);
      for (size_t i = 0; i < rules.size() && i < 4; ++i) {
        evidence.push_back(ApiEvidence("rules[" + std::to_string(rules[i].index) + "]",
                                       DescribeRuleSource(rules[i]), rules[i].rule->Describe()));
      }
    }
    out.push_back(BindingFinding(b,
                                 b.object->Describe() + " names " + common::Join(named, ", ") +
                                     " and gives it " + RoleRefText(b) + " " + Scope(b) +
                                     (is_default ? " (a Kubernetes default)" : ""),
                                 std::move(evidence)));
  }
  if (out.empty()) {
    std::vector<std::string> who;
    for (const auto& s : c.subjects) who.push_back(s.kind + " " + s.name);
    out.push_back(ClusterVerdict(
        v1::STATUS_PASS,
        "no binding names " + common::Join(who, " or ") + " beyond the Kubernetes defaults" +
            (defaults ? " (" + std::to_string(defaults) +
                            " default bindings not reported; --include-system reports them)"
                      : "")));
  }
  return out;
}

std::vector<Finding> SaDefault(const CheckDef& c, const Context& ctx) {
  // Namespace -> the default ServiceAccount object (may be missing from the snapshot).
  std::map<std::string, const k8s::Object*> accounts;
  for (const auto& sa : ctx.snapshot.Of("ServiceAccount")) {
    if (sa.name == "default") accounts[sa.ns] = &sa;
  }
  std::map<std::string, std::vector<const Workload*>> users;
  for (const auto& w : ctx.workloads.workloads) {
    const std::string name = StrField(*w.spec, "serviceAccountName").empty()
                                 ? StrField(*w.spec, "serviceAccount")
                                 : StrField(*w.spec, "serviceAccountName");
    if (name.empty() || name == "default") users[w.ns].push_back(&w);
  }
  std::set<std::string> namespaces;
  for (const auto& [ns, _] : accounts) namespaces.insert(ns);
  for (const auto& [ns, _] : users) namespaces.insert(ns);
  if (namespaces.empty()) {
    return {NotApplicable("the snapshot holds no ServiceAccounts and no workloads")};
  }
  std::vector<Finding> out;
  size_t skipped = 0;
  for (const auto& ns : namespaces) {
    if (ctx.policy.skip() && ctx.policy.IsSystemNamespace(ns)) {
      ++skipped;
      continue;
    }
    const k8s::Object* sa = accounts.count(ns) ? accounts[ns] : nullptr;
    const std::string source = "ServiceAccount " + ns + "/default";
    Finding f;
    f.resource = MakeResource("ServiceAccount", ns, "default");
    if (sa) f.labels = &sa->labels();
    std::optional<std::string> automount;
    if (sa) {
      if (const auto* v = Field(sa->doc, "automountServiceAccountToken")) automount = ValueText(*v);
    }
    f.evidence.push_back(ApiEvidence("automountServiceAccountToken",
                                     sa ? source : source + " (not in the snapshot)", automount));
    std::vector<std::string> causes;
    const auto& runners = users[ns];
    if (!runners.empty()) {
      std::vector<std::string> names;
      for (size_t i = 0; i < runners.size() && i < 5; ++i) {
        names.push_back(runners[i]->kind + " " + runners[i]->name);
      }
      if (runners.size() > 5)
        names.push_back("and " + std::to_string(runners.size() - 5) + " more");
      f.evidence.push_back(ApiEvidence(runners[0]->spec_path + ".serviceAccountName",
                                       runners[0]->evidence_source, std::nullopt));
      causes.push_back("runs " + common::Join(names, ", "));
    }
    std::vector<std::string> bindings;
    for (const auto* b : ctx.rbac.BindingsOfServiceAccount(ns, "default")) {
      bindings.push_back(b->object->Describe() + " (" + b->role_kind + " " + b->role_name + ")");
    }
    if (!bindings.empty()) {
      f.evidence.push_back(
          ApiEvidence("subjects", "bindings naming " + source, common::Join(bindings, ", ")));
      causes.push_back("is granted " + common::Join(bindings, ", "));
    }
    // CIS 5.1.5's audit: the default account must not be used, and its token must not mount
    // automatically, used or not: a pod that names no service account would get it.
    if (causes.empty() && sa != nullptr && automount != "false") {
      f.status = v1::STATUS_FAIL;
      f.reason = source +
                 " is not used by any workload or binding, but its automountServiceAccountToken "
                 "is " +
                 automount.value_or("not set") +
                 " (not false), so a pod that names no service account gets its token";
    } else if (causes.empty() && sa == nullptr) {
      f.status = v1::STATUS_MANUAL;
      f.reason = source +
                 " is not used by any workload or binding; the account is not in the snapshot, so "
                 "whether its token mounts automatically is unknown";
    } else if (causes.empty()) {
      f.status = v1::STATUS_PASS;
      f.reason = source +
                 " is not used by any workload or binding and its token does not mount "
                 "automatically";
    } else {
      f.status = v1::STATUS_FAIL;
      f.reason = source + " " + common::Join(causes, " and ");
      if (automount != "false") f.reason += ", with automountServiceAccountToken not false";
    }
    out.push_back(std::move(f));
  }
  if (out.empty()) {
    out.push_back(NotApplicable("only system namespaces" + SkipNote(skipped, "namespaces")));
  }
  return out;
}

TokenMount DecideTokenMount(const Workload& w, const Context& ctx,
                            std::vector<v1::Evidence>& evidence) {
  TokenMount out;
  out.service_account = StrField(*w.spec, "serviceAccountName");
  if (out.service_account.empty()) out.service_account = StrField(*w.spec, "serviceAccount");
  if (out.service_account.empty()) out.service_account = "default";
  out.sa_source = "ServiceAccount " + w.ns + "/" + out.service_account;
  if (w.kind == "Pod" && w.source->annotations().contains("kubernetes.io/config.mirror")) {
    // A static pod's mirror: the kubelet runs it from a file and mounts no token.
    out.static_pod = true;
    out.mounted = false;
    evidence.push_back(
        ApiEvidence("metadata.annotations[kubernetes.io/config.mirror]", w.evidence_source,
                    ValueText(w.source->annotations()["kubernetes.io/config.mirror"])));
    return out;
  }
  const k8s::Object* sa = ctx.snapshot.Find("ServiceAccount", w.ns, out.service_account);
  const auto* pod_value = Field(*w.spec, "automountServiceAccountToken");
  evidence.push_back(ApiEvidence(w.spec_path + ".automountServiceAccountToken", w.evidence_source,
                                 pod_value ? std::optional(ValueText(*pod_value)) : std::nullopt));
  if (pod_value && pod_value->is_boolean()) {
    out.mounted = pod_value->get<bool>();
    out.decided_by = "the pod spec";
    return out;
  }
  const auto* sa_value = sa ? Field(sa->doc, "automountServiceAccountToken") : nullptr;
  evidence.push_back(ApiEvidence("automountServiceAccountToken",
                                 sa ? out.sa_source : out.sa_source + " (not in the snapshot)",
                                 sa_value ? std::optional(ValueText(*sa_value)) : std::nullopt));
  if (sa_value && sa_value->is_boolean()) {
    out.mounted = sa_value->get<bool>();
    out.decided_by = out.sa_source;
  }
  return out;
}

std::vector<Finding> SaTokenAutomount(const CheckDef& c, const Context& ctx) {
  if (ctx.workloads.workloads.empty()) return {NoWorkloads(ctx)};
  std::vector<Finding> out;
  for (const auto& w : ctx.workloads.workloads) {
    Finding f = WorkloadFinding(w);
    const TokenMount token = DecideTokenMount(w, ctx, f.evidence);
    const std::string& sa_name = token.service_account;
    const std::string& sa_source = token.sa_source;
    if (token.static_pod) {
      f.status = v1::STATUS_PASS;
      f.reason = "a static pod: the kubelet mounts no service account token";
      out.push_back(std::move(f));
      continue;
    }
    const bool mounted = token.mounted;
    const std::string& decided_by = token.decided_by;
    if (!mounted) {
      f.status = v1::STATUS_PASS;
      f.reason = "the token is not mounted (set by " + decided_by + ")";
    } else {
      std::vector<std::string> grants;
      for (const auto* b : ctx.rbac.BindingsOfServiceAccount(w.ns, sa_name)) {
        grants.push_back(b->role_kind + " " + b->role_name + " by " + b->object->Describe());
      }
      if (!grants.empty()) {
        f.status = v1::STATUS_PASS;
        f.evidence.push_back(
            ApiEvidence("subjects", "bindings naming " + sa_source, common::Join(grants, ", ")));
        f.reason = "the token is mounted and " + sa_source + " holds " + grants.front() +
                   ", so the workload presumably calls the API";
      } else {
        f.status = v1::STATUS_FAIL;
        f.reason = "the token of " + sa_source + " is mounted (" + decided_by + ") but " +
                   (ctx.rbac.empty() ? "the snapshot holds no RBAC objects to show a use for it"
                                     : "no binding grants it anything");
      }
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace kspm::collector::cluster::internal

// Takeover paths: a workload whose pods carry a service account token that a binding gives a
// risky grant (cluster-admin-like wildcards, reading Secrets, creating pods or workloads, exec,
// escalate/bind/impersonate, nodes/proxy, minting tokens). Whoever compromises one container of
// it holds that grant, so the finding is reported at the workload, with the whole path as
// evidence: workload -> service account -> binding -> role -> rule.
#include "kspm/collector/cluster/checks_internal.h"
#include "kspm/common/strings.h"

namespace kspm::collector::cluster::internal {

std::vector<Finding> WorkloadTakeover(const CheckDef& c, const Context& ctx) {
  if (ctx.workloads.workloads.empty()) return {NoWorkloads(ctx)};
  std::vector<Finding> out;
  out.reserve(ctx.workloads.workloads.size());
  for (const auto& w : ctx.workloads.workloads) {
    Finding f = WorkloadFinding(w);
    const TokenMount token = DecideTokenMount(w, ctx, f.evidence);
    if (!token.mounted) {
      f.status = v1::STATUS_PASS;
      f.reason = token.static_pod ? "a static pod: the kubelet mounts no service account token"
                                  : "no token is mounted (set by " + token.decided_by + ")";
      out.push_back(std::move(f));
      continue;
    }
    std::vector<std::string> paths;
    for (const Binding* b : ctx.rbac.BindingsOfServiceAccount(w.ns, token.service_account)) {
      for (const auto& spec : c.grants) {
        const auto m = ctx.rbac.FindGrant(*b, spec);
        if (!m) continue;
        const std::string group = m->group.empty() ? "" : m->group + "/";
        std::string path = token.sa_source + " -> " + b->object->Describe() + " -> " +
                           b->role_kind + " " + b->role_name;
        if (m->rule.via) path += " (aggregated from " + m->rule.via->object->name + ")";
        path += ": " + m->verb + " on " + group + m->resource +
                (b->cluster_binding ? " cluster-wide" : " in namespace " + b->object->ns);
        f.evidence.push_back(ApiEvidence("rules[" + std::to_string(m->rule.index) + "]",
                                         DescribeRuleSource(m->rule), m->rule.rule->Describe()));
        paths.push_back(std::move(path));
        break;  // one grant per binding is enough to show the path
      }
    }
    if (paths.empty()) {
      f.status = v1::STATUS_PASS;
      f.reason = "the token of " + token.sa_source +
                 " is mounted; no binding gives it a grant that takes over other workloads or "
                 "the cluster";
    } else {
      f.status = v1::STATUS_FAIL;
      f.evidence.insert(f.evidence.begin(),
                        ApiEvidence("takeover path", w.evidence_source, common::Join(paths, "; ")));
      f.reason = "its pods mount the token of " + token.sa_source + ", and " + paths.front() +
                 (paths.size() > 1 ? " (and " + std::to_string(paths.size() - 1) + " more)" : "");
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace kspm::collector::cluster::internal

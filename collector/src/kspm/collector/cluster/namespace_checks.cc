// Namespace evaluators: Pod Security Admission labels (CIS 5.2.x on the admission side), policy
// engines (5.2.1) and the default namespace (5.6.4). Network policies: netpol_checks.cc.
//
// Namespaces that run no workload are counted but not judged one by one: a stock cluster's empty
// `default` namespace is not a finding, and a namespace becomes one when a workload lands there.
#include <map>
#include <set>

#include "kspm/collector/cluster/checks_internal.h"
#include "kspm/common/strings.h"

namespace kspm::collector::cluster::internal {
namespace {

constexpr std::string_view kEnforce = "pod-security.kubernetes.io/enforce";

int Level(std::string_view level) {
  if (level == "restricted") return 2;
  if (level == "baseline") return 1;
  return 0;  // privileged, or anything the admission plugin would refuse as a label
}

// Admission webhooks of known policy engines, and ValidatingAdmissionPolicyBindings: kspm does
// not read their policies, so a namespace they may cover is MANUAL rather than FAIL.
std::vector<std::string> PolicyEngines(const Context& ctx) {
  static const char* kEngines[] = {"kyverno",  "gatekeeper", "kubewarden",
                                   "jspolicy", "polaris",    "opa"};
  std::vector<std::string> out;
  for (const char* kind : {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}) {
    for (const auto& o : ctx.snapshot.Of(kind)) {
      for (const char* engine : kEngines) {
        if (o.name.find(engine) != std::string::npos) {
          out.push_back(o.Describe());
          break;
        }
      }
    }
  }
  for (const auto& o : ctx.snapshot.Of("ValidatingAdmissionPolicyBinding")) {
    out.push_back(o.Describe());
  }
  return out;
}

struct NamespaceSet {
  std::vector<const k8s::Object*> judged;  // non-system namespaces that run workloads
  size_t system = 0;
  size_t empty = 0;
};

NamespaceSet JudgedNamespaces(const Context& ctx) {
  NamespaceSet out;
  const auto busy = NamespacesWithWorkloads(ctx);
  for (const auto& ns : ctx.snapshot.Of("Namespace")) {
    if (ctx.policy.skip() && ctx.policy.IsSystemNamespace(ns.name)) {
      ++out.system;
    } else if (!busy.contains(ns.name)) {
      ++out.empty;
    } else {
      out.judged.push_back(&ns);
    }
  }
  return out;
}

std::string Counted(const NamespaceSet& set) {
  std::string out;
  if (set.empty) out += " (" + std::to_string(set.empty) + " namespaces without workloads)";
  return out + SkipNote(set.system, "namespaces");
}

std::optional<std::string> Label(const k8s::Object& o, std::string_view key) {
  const auto& labels = o.labels();
  const auto it = labels.find(std::string(key));
  if (it == labels.end()) return std::nullopt;
  return ValueText(*it);
}

Finding NamespaceFinding(const k8s::Object& ns) {
  Finding f;
  f.resource = MakeResource("Namespace", "", ns.name);
  f.labels = &ns.labels();
  return f;
}

void AddPsaEvidence(const k8s::Object& ns, Finding& f) {
  const std::string source = ns.Describe();
  f.evidence.push_back(
      ApiEvidence("metadata.labels[" + std::string(kEnforce) + "]", source, Label(ns, kEnforce)));
  for (const char* mode : {"audit", "warn"}) {
    const std::string key = "pod-security.kubernetes.io/" + std::string(mode);
    if (auto v = Label(ns, key))
      f.evidence.push_back(ApiEvidence("metadata.labels[" + key + "]", source, v));
  }
}

// One finding per namespace judged (outside the system ones, running workloads), its Pod
// Security labels as evidence; `judge(finding, enforce label, policy engines)` gives the verdict.
template <typename Judge>
std::vector<Finding> EachJudgedNamespace(const Context& ctx, Judge judge) {
  const NamespaceSet set = JudgedNamespaces(ctx);
  if (set.judged.empty()) {
    return {NotApplicable("no namespace outside the system ones runs workloads" + Counted(set))};
  }
  const auto engines = PolicyEngines(ctx);
  std::vector<Finding> out;
  for (const auto* ns : set.judged) {
    Finding f = NamespaceFinding(*ns);
    AddPsaEvidence(*ns, f);
    judge(f, Label(*ns, kEnforce), engines);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

std::vector<Finding> PsaLevel(const CheckDef& c, const Context& ctx) {
  return EachJudgedNamespace(ctx, [&c](Finding& f, const auto& enforce, const auto& engines) {
    const std::string shown = enforce ? *enforce : "not set";
    if (enforce && Level(*enforce) >= Level(c.level)) {
      f.status = v1::STATUS_PASS;
      f.reason = "Pod Security Admission enforces " + *enforce + ", which refuses " + c.control;
    } else if (!engines.empty()) {
      f.status = v1::STATUS_MANUAL;
      f.evidence.push_back(ApiEvidence("policy engines", "admission configuration objects",
                                       common::Join(engines, ", ")));
      f.reason = "enforce is " + shown + "; " + engines.front() + " may refuse " + c.control +
                 ", but kspm does not read its policies: check them";
    } else {
      f.status = v1::STATUS_FAIL;
      f.reason = "enforce is " + shown +
                 (enforce ? ""
                          : " (the API server's default, privileged "
                            "unless its admission configuration "
                            "says otherwise)") +
                 ", so pods with " + c.control + " are admitted; " + c.level + " refuses them";
    }
  });
}

std::vector<Finding> PolicyControl(const CheckDef&, const Context& ctx) {
  return EachJudgedNamespace(ctx, [](Finding& f, const auto& enforce, const auto& engines) {
    if (enforce && Level(*enforce) >= 1) {
      f.status = v1::STATUS_PASS;
      f.reason = "Pod Security Admission enforces " + *enforce;
    } else if (!engines.empty()) {
      f.status = v1::STATUS_PASS;
      f.evidence.push_back(ApiEvidence("policy engines", "admission configuration objects",
                                       common::Join(engines, ", ")));
      f.reason = "admission is controlled by " + common::Join(engines, ", ");
    } else {
      f.status = v1::STATUS_FAIL;
      f.reason = "no policy controls pod admission: enforce is " +
                 (enforce ? *enforce : std::string("not set")) +
                 " and no policy engine webhook or ValidatingAdmissionPolicyBinding exists";
    }
  });
}

std::vector<Finding> NamespaceResourcePolicies(const CheckDef& c, const Context& ctx) {
  const NamespaceSet set = JudgedNamespaces(ctx);
  if (set.judged.empty()) {
    return {NotApplicable("no namespace outside the system ones runs workloads" + Counted(set))};
  }
  // A LimitRange counts when it gives containers default limits for both cpu and memory (what
  // a container without limits then gets); a ResourceQuota when it caps cpu and memory.
  std::map<std::string, std::vector<std::string>> limit_ranges, quotas;
  for (const auto& lr : ctx.snapshot.Of("LimitRange")) {
    const auto* spec = Field(lr.doc, "spec");
    const auto* limits = spec ? Field(*spec, "limits") : nullptr;
    if (limits == nullptr || !limits->is_array()) continue;
    for (const auto& l : *limits) {
      if (StrField(l, "type") != "Container") continue;
      const auto* def = Field(l, "default");
      if (def && Field(*def, "cpu") && Field(*def, "memory")) {
        limit_ranges[lr.ns].push_back(lr.name);
        break;
      }
    }
  }
  for (const auto& q : ctx.snapshot.Of("ResourceQuota")) {
    const auto* spec = Field(q.doc, "spec");
    const auto* hard = spec ? Field(*spec, "hard") : nullptr;
    if (hard == nullptr) continue;
    const auto caps = [&](const char* what) {
      for (const std::string& key :
           {std::string(what), "limits." + std::string(what), "requests." + std::string(what)}) {
        if (Field(*hard, key.c_str())) return true;
      }
      return false;
    };
    if (caps("cpu") && caps("memory")) quotas[q.ns].push_back(q.name);
  }
  std::vector<Finding> out;
  for (const auto* ns : set.judged) {
    Finding f = NamespaceFinding(*ns);
    const auto& lr = limit_ranges[ns->name];
    const auto& rq = quotas[ns->name];
    f.evidence.push_back(ApiEvidence(
        "LimitRange spec.limits[type=Container].default", "LimitRanges in namespace " + ns->name,
        lr.empty() ? std::nullopt : std::optional(common::Join(lr, ", "))));
    f.evidence.push_back(ApiEvidence(
        "ResourceQuota spec.hard cpu and memory", "ResourceQuotas in namespace " + ns->name,
        rq.empty() ? std::nullopt : std::optional(common::Join(rq, ", "))));
    std::vector<std::string> missing;
    if (lr.empty()) missing.push_back("a LimitRange with default cpu and memory limits");
    if (rq.empty()) missing.push_back("a ResourceQuota on cpu and memory");
    if (missing.empty()) {
      f.status = v1::STATUS_PASS;
      f.reason = "namespace " + ns->name + " has LimitRange " + lr.front() + " and ResourceQuota " +
                 rq.front();
    } else {
      f.status = v1::STATUS_FAIL;
      f.reason =
          "namespace " + ns->name + " runs workloads without " + common::Join(missing, " or ");
    }
    out.push_back(std::move(f));
  }
  return out;
}

// What Kubernetes itself creates in `default`, each by exact kind and name: the API server's
// Service, Endpoints and EndpointSlice `kubernetes`, the namespace's ServiceAccount `default`
// and ConfigMap `kube-root-ca.crt`, and the token Secret of that account (clusters before 1.24).
// Events are records the control plane writes about other objects (Node events land in
// `default`), not objects anyone placed there. Anything else, a Service `kubernetes-dashboard` or
// a Lease included, was created by someone: Kubernetes keeps its Leases in kube-node-lease and
// kube-system.
bool IsKubernetesOwnObject(const k8s::Object& o) {
  if (o.kind == "Service" || o.kind == "Endpoints" || o.kind == "EndpointSlice") {
    return o.name == "kubernetes";
  }
  if (o.kind == "ServiceAccount") return o.name == "default";
  if (o.kind == "ConfigMap") return o.name == "kube-root-ca.crt";
  if (o.kind == "Secret") {
    const auto account = o.annotations().find("kubernetes.io/service-account.name");
    return StrField(o.doc, "type") == "kubernetes.io/service-account-token" &&
           account != o.annotations().end() && *account == "default";
  }
  return o.kind == "Event";
}

std::vector<Finding> DefaultNamespace(const CheckDef& c, const Context& ctx) {
  const auto built_in = [](const k8s::Object& o) { return IsKubernetesOwnObject(o); };
  const auto& workload_kinds = WorkloadKinds();
  bool any_namespaced = false;
  std::vector<Finding> out;
  for (const auto& [kind, count] : ctx.snapshot.Counts()) {
    const bool workload_kind =
        std::find(workload_kinds.begin(), workload_kinds.end(), kind) != workload_kinds.end();
    for (const auto& o : ctx.snapshot.Of(kind)) {
      if (o.ns.empty()) break;  // a cluster-scoped kind
      any_namespaced = true;
      if (workload_kind || o.ns != "default" || built_in(o)) continue;
      Finding f;
      f.status = v1::STATUS_FAIL;
      f.resource = MakeResource(o.kind, o.ns, o.name);
      f.labels = &o.labels();
      f.evidence.push_back(ApiEvidence("metadata.namespace", o.Describe(), o.ns));
      f.reason = o.Describe() + " lives in the default namespace";
      out.push_back(std::move(f));
    }
  }
  // Workloads once, at their controller.
  for (const auto& w : ctx.workloads.workloads) {
    if (w.ns != "default") continue;
    Finding f = WorkloadFinding(w);
    f.status = v1::STATUS_FAIL;
    f.evidence.push_back(ApiEvidence("metadata.namespace", w.evidence_source, w.ns));
    f.reason = w.kind + " default/" + w.name + " runs in the default namespace";
    out.push_back(std::move(f));
  }
  if (!out.empty()) return out;
  if (!any_namespaced && ctx.snapshot.Find("Namespace", "", "default") == nullptr) {
    return {NotApplicable("the snapshot holds no namespaced objects")};
  }
  Finding f;
  f.status = v1::STATUS_PASS;
  f.resource = MakeResource("Namespace", "", "default");
  f.evidence.push_back(ApiEvidence("metadata.namespace", "objects in namespace default",
                                   "only the objects Kubernetes creates"));
  f.reason = "the default namespace holds only what Kubernetes creates itself";
  return {f};
}

}  // namespace kspm::collector::cluster::internal

// Network evaluators: policies per namespace (CIS 5.3.2) and per workload (a policy of any kind
// must select the workload's pods; one that selects nothing covers nothing), both over every
// policy kind of netpol.h; and Ingress hosts served without TLS.
#include <map>
#include <set>

#include "kspm/collector/cluster/checks_internal.h"
#include "kspm/collector/cluster/netpol.h"
#include "kspm/common/strings.h"

namespace kspm::collector::cluster::internal {
namespace {

const k8s::Value& NoLabels() {
  static const k8s::Doc kEmpty = k8s::Doc::FromJson(nlohmann::json::object());
  return kEmpty;
}

PodView ViewOf(const Workload& w, const Context& ctx) {
  const auto* ns = ctx.snapshot.Find("Namespace", "", w.ns);
  std::string_view account = "default";
  for (const char* key : {"serviceAccountName", "serviceAccount"}) {
    if (const auto* v = Field(*w.spec, key); v && v->is_string() && !v->str().empty()) {
      account = v->str();
      break;
    }
  }
  return {.ns = w.ns,
          .ns_labels = ns ? &ns->labels() : &NoLabels(),
          .pod_labels = &w.pod_labels(),
          .service_account = account};
}

// Every policy object of every kind, namespaced ones by namespace.
struct Policies {
  std::map<std::string, std::vector<const k8s::Object*>, std::less<>> by_namespace;
  std::vector<const k8s::Object*> cluster_wide;

  explicit Policies(const k8s::Snapshot& snapshot) {
    for (const auto& kind : NetworkPolicyKinds()) {
      for (const auto& p : snapshot.Of(kind)) {
        if (IsClusterWidePolicyKind(kind)) {
          cluster_wide.push_back(&p);
        } else {
          by_namespace[p.ns].push_back(&p);
        }
      }
    }
  }
  const std::vector<const k8s::Object*>& In(std::string_view ns) const {
    static const std::vector<const k8s::Object*> kNone;
    const auto it = by_namespace.find(ns);
    return it == by_namespace.end() ? kNone : it->second;
  }
};

std::string Names(const std::vector<const k8s::Object*>& list) {
  std::vector<std::string> names;
  for (const auto* p : list) names.push_back(p->Describe());
  return common::Join(names, ", ");
}

}  // namespace

std::vector<Finding> NetpolCoverage(const CheckDef& c, const Context& ctx) {
  const Policies policies(ctx.snapshot);
  // Namespaces come from Namespace objects, or from workloads when the snapshot has none.
  std::set<std::string> names;
  for (const auto& ns : ctx.snapshot.Of("Namespace")) names.insert(ns.name);
  if (names.empty()) {
    for (const auto& w : ctx.workloads.workloads) names.insert(w.ns);
  }
  std::map<std::string, std::vector<const Workload*>> workloads;
  for (const auto& w : ctx.workloads.workloads) workloads[w.ns].push_back(&w);
  size_t system = 0, empty = 0;
  std::vector<Finding> out;
  for (const auto& name : names) {
    if (ctx.policy.skip() && ctx.policy.IsSystemNamespace(name)) {
      ++system;
      continue;
    }
    if (!workloads.contains(name)) {
      ++empty;
      continue;
    }
    Finding f;
    f.resource = MakeResource("Namespace", "", name);
    if (const auto* obj = ctx.snapshot.Find("Namespace", "", name)) f.labels = &obj->labels();
    // As the CIS audit counts: every policy object in the namespace, of any CNI; and a
    // cluster-wide policy when it selects pods of one of the namespace's workloads.
    std::vector<const k8s::Object*> found = policies.In(name);
    for (const auto* p : policies.cluster_wide) {
      for (const auto* w : workloads[name]) {
        if (PolicySelects(*p, ViewOf(*w, ctx)).selects) {
          found.push_back(p);
          break;
        }
      }
    }
    const std::string what = "network policies of any kind for namespace " + name;
    if (found.empty()) {
      f.status = v1::STATUS_FAIL;
      f.evidence.push_back(ApiEvidence("NetworkPolicy", what, std::nullopt));
      f.reason = "namespace " + name +
                 " runs workloads and no network policy of any kind (NetworkPolicy, Cilium, "
                 "Calico, AdminNetworkPolicy) applies to it: every pod accepts traffic from "
                 "anywhere in the cluster";
    } else {
      f.status = v1::STATUS_PASS;
      f.evidence.push_back(ApiEvidence("NetworkPolicy", what, Names(found)));
      f.reason = "namespace " + name + " has " + std::to_string(found.size()) +
                 (found.size() == 1 ? " network policy" : " network policies");
    }
    out.push_back(std::move(f));
  }
  if (out.empty()) {
    std::string note;
    if (empty) note += " (" + std::to_string(empty) + " namespaces without workloads)";
    return {NotApplicable("no namespace outside the system ones runs workloads" + note +
                          SkipNote(system, "namespaces"))};
  }
  return out;
}

std::vector<Finding> NetpolWorkloadCoverage(const CheckDef& c, const Context& ctx) {
  if (ctx.workloads.workloads.empty()) return {NoWorkloads(ctx)};
  const Policies policies(ctx.snapshot);
  std::vector<Finding> out;
  out.reserve(ctx.workloads.workloads.size());
  for (const auto& w : ctx.workloads.workloads) {
    const PodView pod = ViewOf(w, ctx);
    std::vector<const k8s::Object*> selecting, others;
    std::vector<std::string> unreadable;
    const auto judge = [&](const k8s::Object* p) {
      const auto s = PolicySelects(*p, pod);
      if (s.selects) {
        selecting.push_back(p);
      } else if (!s.error.empty()) {
        unreadable.push_back(p->Describe() + ": " + s.error);
      } else if (!IsClusterWidePolicyKind(p->kind)) {
        others.push_back(p);
      }
    };
    for (const auto* p : policies.In(w.ns)) judge(p);
    for (const auto* p : policies.cluster_wide) judge(p);
    Finding f = WorkloadFinding(w);
    const std::string labels = ValueText(w.pod_labels());
    f.evidence.push_back(
        ApiEvidence(w.metadata_path.empty() ? "metadata.labels" : w.metadata_path + ".labels",
                    w.evidence_source, labels));
    if (!selecting.empty()) {
      f.status = v1::STATUS_PASS;
      f.evidence.push_back(ApiEvidence("selected by", "network policies", Names(selecting)));
      f.reason = "its pods are selected by " + Names(selecting);
    } else if (!unreadable.empty()) {
      f.status = v1::STATUS_ERROR;
      f.evidence.push_back(
          ApiEvidence("selector", "network policies", common::Join(unreadable, "; ")));
      f.reason =
          "no policy selects its pods, and a selector could not be read: " + unreadable.front();
    } else {
      f.status = v1::STATUS_FAIL;
      f.evidence.push_back(
          ApiEvidence("policies in namespace " + w.ns, "network policies",
                      others.empty() ? std::nullopt : std::optional(Names(others))));
      f.reason = others.empty()
                     ? "no network policy of any kind selects its pods: they accept traffic from "
                       "anywhere in the cluster"
                     : "none of the " + std::to_string(others.size()) + " policies in namespace " +
                           w.ns + " selects its pods (labels " + labels + ")";
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Finding> IngressTls(const CheckDef& c, const Context& ctx) {
  std::vector<Finding> out;
  size_t system = 0;
  for (const auto& ing : ctx.snapshot.Of("Ingress")) {
    if (ctx.policy.skip() && ctx.policy.IsSystemNamespace(ing.ns)) {
      ++system;
      continue;
    }
    const auto* spec = Field(ing.doc, "spec");
    std::set<std::string> covered;
    bool covers_hostless = false;
    std::vector<std::string> tls_hosts;
    if (const auto* tls = spec ? Field(*spec, "tls") : nullptr; tls && tls->is_array()) {
      for (const auto& t : *tls) {
        const auto* hosts = Field(t, "hosts");
        if (hosts == nullptr || !hosts->is_array() || hosts->empty()) {
          covers_hostless = true;
          continue;
        }
        for (const auto& h : *hosts) {
          if (!h.is_string()) continue;
          covered.insert(h.get<std::string>());
          tls_hosts.push_back(h.get<std::string>());
        }
      }
    }
    // A wildcard certificate host (*.example.com) covers one label of its domain.
    const auto is_covered = [&](const std::string& host) {
      if (host.empty()) return covers_hostless;
      if (covered.contains(host)) return true;
      const size_t dot = host.find('.');
      return dot != std::string::npos && covered.contains("*" + host.substr(dot));
    };
    std::vector<std::string> clear;
    size_t rules = 0;
    if (const auto* list = spec ? Field(*spec, "rules") : nullptr; list && list->is_array()) {
      for (const auto& r : *list) {
        ++rules;
        const std::string host = StrField(r, "host");
        if (!is_covered(host)) clear.push_back(host.empty() ? "(any host)" : host);
      }
    }
    if (rules == 0 && spec && Field(*spec, "defaultBackend") && !covers_hostless) {
      clear.push_back("(default backend)");
    }
    Finding f;
    f.resource = MakeResource("Ingress", ing.ns, ing.name);
    f.labels = &ing.labels();
    f.evidence.push_back(ApiEvidence("spec.tls[].hosts", ing.Describe(),
                                     tls_hosts.empty() && !covers_hostless
                                         ? std::nullopt
                                         : std::optional(common::Join(tls_hosts, ", "))));
    if (clear.empty()) {
      f.status = v1::STATUS_PASS;
      f.reason = "every host of " + ing.Describe() + " is served over TLS";
    } else {
      f.status = v1::STATUS_FAIL;
      f.evidence.push_back(
          ApiEvidence("spec.rules[].host", ing.Describe(), common::Join(clear, ", ")));
      f.reason = ing.Describe() + " serves " + common::Join(clear, ", ") + " without TLS";
    }
    out.push_back(std::move(f));
  }
  if (out.empty()) {
    return {
        NotApplicable("no Ingress outside the system namespaces" + SkipNote(system, "Ingresses"))};
  }
  return out;
}

}  // namespace kspm::collector::cluster::internal

// Network policy evaluators: CIS 5.3.2 per namespace, and per workload (a policy of any kind must
// select the workload's pods; one that selects nothing covers nothing). Both read every policy
// kind of netpol.h.
#include <map>
#include <set>

#include "kspm/collector/cluster/checks_internal.h"
#include "kspm/collector/cluster/netpol.h"
#include "kspm/common/strings.h"

namespace kspm::collector::cluster::internal {
namespace {

const nlohmann::json& NoLabels() {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return kEmpty;
}

PodView ViewOf(const Workload& w, const Context& ctx) {
  const auto* ns = ctx.snapshot.Find("Namespace", "", w.ns);
  std::string_view account = "default";
  for (const char* key : {"serviceAccountName", "serviceAccount"}) {
    if (const auto* v = Field(*w.spec, key);
        v && v->is_string() && !v->get_ref<const std::string&>().empty()) {
      account = v->get_ref<const std::string&>();
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
  if (ctx.workloads.workloads.empty()) {
    return {NotApplicable("no workload outside the system namespaces" +
                          SkipNote(ctx.workloads.system_skipped, "workloads"))};
  }
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
    Finding f;
    f.resource = MakeResource(w.kind, w.ns, w.name);
    f.labels = &w.labels();
    f.pod_labels = &w.pod_labels();
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

}  // namespace kspm::collector::cluster::internal

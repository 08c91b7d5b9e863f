#include "kspm/collector/cluster/workloads.h"

#include <algorithm>
#include <set>

namespace kspm::collector::cluster {
namespace {

const k8s::Value& EmptyObject() {
  static const k8s::Doc kEmpty = k8s::Doc::FromJson(nlohmann::json::object());
  return kEmpty;
}

const k8s::Value* Path(const k8s::Value& root, const std::vector<const char*>& keys) {
  const k8s::Value* cur = &root;
  for (const char* k : keys) {
    if (!cur->is_object()) return nullptr;
    const auto it = cur->find(k);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::string Str(const k8s::Value& j, const char* key) {
  if (!j.is_object()) return "";
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

struct OwnerRef {
  std::string kind;
  std::string name;
};

// The controlling owner (controller: true), else the first owner; nothing when none.
std::optional<OwnerRef> Owner(const k8s::Object& o) {
  const auto* refs = Path(o.doc, {"metadata", "ownerReferences"});
  if (refs == nullptr || !refs->is_array() || refs->empty()) return std::nullopt;
  const k8s::Value* chosen = &(*refs)[0];
  for (const auto& r : *refs) {
    const auto c = r.find("controller");
    if (c != r.end() && c->is_boolean() && c->get<bool>()) {
      chosen = &r;
      break;
    }
  }
  OwnerRef out{Str(*chosen, "kind"), Str(*chosen, "name")};
  if (out.kind.empty() || out.name.empty()) return std::nullopt;
  return out;
}

// Where a kind keeps its pod template: `prefix` leads to the object holding `spec` and
// `metadata` (empty for a Pod itself).
struct Layout {
  const char* kind;
  std::vector<const char*> prefix;

  std::vector<const char*> Under(const char* field) const {
    std::vector<const char*> path = prefix;
    path.push_back(field);
    return path;
  }
  std::string PathText(const char* field) const {
    std::string text;
    for (const char* p : prefix) text += std::string(p) + ".";
    return text + field;
  }
};

const std::vector<Layout>& Layouts() {
  static const std::vector<Layout> kLayouts = {
      {"Deployment", {"spec", "template"}},
      {"DaemonSet", {"spec", "template"}},
      {"StatefulSet", {"spec", "template"}},
      {"CronJob", {"spec", "jobTemplate", "spec", "template"}},
      {"Job", {"spec", "template"}},
      {"ReplicaSet", {"spec", "template"}},
      {"ReplicationController", {"spec", "template"}},
      {"Pod", {}},
  };
  return kLayouts;
}

}  // namespace

const k8s::Value& Workload::labels() const { return source ? source->labels() : EmptyObject(); }

const k8s::Value& Workload::pod_labels() const {
  if (template_metadata == nullptr) return EmptyObject();
  const auto it = template_metadata->find("labels");
  return it != template_metadata->end() && it->is_object() ? *it : EmptyObject();
}

const std::vector<std::string>& WorkloadKinds() {
  static const std::vector<std::string> kKinds = [] {
    std::vector<std::string> out;
    for (const auto& l : Layouts()) out.push_back(l.kind);
    return out;
  }();
  return kKinds;
}

size_t CompactOwnedObjects(k8s::Snapshot& snapshot) {
  size_t compacted = 0;
  for (const char* kind : {"Pod", "ReplicaSet", "Job"}) {
    auto* objects = snapshot.MutableOf(kind);
    if (objects == nullptr) continue;
    for (auto& o : *objects) {
      const auto owner = Owner(o);
      if (!owner || owner->kind == "Node") continue;
      if (snapshot.Find(owner->kind, o.ns, owner->name) == nullptr) continue;
      o.doc.erase("spec");
      ++compacted;
    }
  }
  return compacted;
}

namespace {

// The workload a Deployment's ReplicaSet stands for: <deployment>-<pod-template-hash>.
std::optional<OwnerRef> DeploymentOf(const k8s::Object& o, const OwnerRef& owner) {
  if (owner.kind != "ReplicaSet") return std::nullopt;
  const std::string hash = Str(o.labels(), "pod-template-hash");
  if (hash.empty() || owner.name.size() <= hash.size() + 1 || !owner.name.ends_with("-" + hash)) {
    return std::nullopt;
  }
  return OwnerRef{"Deployment", owner.name.substr(0, owner.name.size() - hash.size() - 1)};
}

}  // namespace

std::optional<WorkloadKey> ReportedAt(const k8s::Snapshot& snapshot, const k8s::Object& object) {
  const auto& kinds = WorkloadKinds();
  if (std::find(kinds.begin(), kinds.end(), object.kind) == kinds.end()) return std::nullopt;
  const k8s::Object* at = &object;
  for (int depth = 0; depth < 8; ++depth) {  // Pod -> ReplicaSet -> Deployment; Job -> CronJob
    const auto owner = Owner(*at);
    if (!owner || owner->kind == "Node") break;
    if (const auto* up = snapshot.Find(owner->kind, at->ns, owner->name)) {
      at = up;
      continue;
    }
    const auto deployment = DeploymentOf(*at, *owner);
    if (deployment) {
      if (const auto* up = snapshot.Find(deployment->kind, at->ns, deployment->name)) {
        at = up;
        continue;
      }
    }
    const OwnerRef& reported = deployment ? *deployment : *owner;
    return WorkloadKey{reported.kind, at->ns, reported.name};
  }
  return WorkloadKey{at->kind, at->ns, at->name};
}

WorkloadSet CollectWorkloads(const k8s::Snapshot& snapshot, const SystemPolicy& policy,
                             const std::set<WorkloadKey>* only,
                             const std::set<std::string>* in_namespaces) {
  WorkloadSet out;
  std::set<std::string_view> namespaces;
  if (only) {
    for (const auto& key : *only) namespaces.insert(std::get<1>(key));
  }
  if (in_namespaces) namespaces.insert(in_namespaces->begin(), in_namespaces->end());
  const bool filtered = only || in_namespaces;
  std::set<std::tuple<std::string, std::string, std::string>> reported;
  for (const auto& layout : Layouts()) {
    for (const auto& o : snapshot.Of(layout.kind)) {
      if (filtered && !namespaces.contains(o.ns)) continue;
      Workload w;
      w.kind = o.kind;
      w.ns = o.ns;
      w.name = o.name;
      w.source = &o;
      w.evidence_source = o.Describe();
      if (const auto owner = Owner(o)) {
        if (snapshot.Find(owner->kind, o.ns, owner->name) != nullptr) {
          ++out.owned;  // the owner is reported on its own
          continue;
        }
        // The owner is not in the snapshot: report at the owner, reading this object's spec.
        OwnerRef at = *owner;
        std::string via = owner->kind + " " + owner->name;
        if (const auto deployment = DeploymentOf(o, *owner)) at = *deployment;
        if (owner->kind == "Node") {
          at = {o.kind, o.name};  // a static pod's mirror: the Pod is the workload
        } else if (at.kind != owner->kind && snapshot.Find(at.kind, o.ns, at.name) != nullptr) {
          ++out.owned;
          continue;
        } else {
          w.evidence_source = o.Describe() + " (" + via + ", not in the snapshot)";
        }
        w.kind = at.kind;
        w.name = at.name;
      }
      if (!reported.insert({w.kind, w.ns, w.name}).second) {
        ++out.owned;  // another replica of a controller already reported
        continue;
      }
      if (policy.skip() && policy.IsSystemNamespace(w.ns)) {
        ++out.system_skipped;
        continue;
      }
      w.spec = Path(o.doc, layout.Under("spec"));
      w.template_metadata = Path(o.doc, layout.Under("metadata"));
      w.spec_path = layout.PathText("spec");
      w.metadata_path = layout.PathText("metadata");
      if (w.spec == nullptr || !w.spec->is_object()) continue;  // nothing to judge
      if (only && !only->contains({w.kind, w.ns, w.name})) continue;
      out.workloads.push_back(std::move(w));
    }
  }
  return out;
}

}  // namespace kspm::collector::cluster

#include "kspm/collector/k8s/object.h"

#include <atomic>
#include <unordered_map>
#include <utility>

#include "kspm/collector/k8s/credentials.h"
#include "kspm/collector/k8s/resources.h"

namespace kspm::collector::k8s {
namespace {

const Value& EmptyObject() {
  static const Doc kEmpty = Doc::FromJson(nlohmann::json::object());
  return kEmpty;
}

template <class J>
std::string StringField(const J& j, const char* key) {
  if (!j.is_object()) return "";
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  return it->template get<std::string>();
}

}  // namespace

std::string SnapshotKind(const std::string& api_version, const std::string& kind) {
  const size_t slash = api_version.find('/');
  if (slash == std::string::npos) return kind;  // the core group, or no apiVersion at all
  std::string group = api_version.substr(0, slash);
  // extensions/v1beta1 served Deployments, DaemonSets, ReplicaSets and NetworkPolicies before
  // their own groups did: the same kinds.
  if (group == "extensions") return kind;
  if (group == "crd.projectcalico.org") group = "projectcalico.org";
  // Built-in kind -> its group, once: this runs for every object read.
  static const std::unordered_map<std::string, std::string> kGroups = [] {
    std::unordered_map<std::string, std::string> out;
    for (const auto& type : ReadResources()) {
      out.emplace(type.kind,
                  type.group == "crd.projectcalico.org" ? "projectcalico.org" : type.group);
    }
    return out;
  }();
  if (const auto it = kGroups.find(kind); it != kGroups.end() && it->second != group) {
    return kind + "." + group;
  }
  return kind;
}

const Value& Object::metadata() const {
  const auto it = doc.find("metadata");
  return it != doc.end() && it->is_object() ? *it : EmptyObject();
}

const Value& Object::labels() const {
  const auto& m = metadata();
  const auto it = m.find("labels");
  return it != m.end() && it->is_object() ? *it : EmptyObject();
}

const Value& Object::annotations() const {
  const auto& m = metadata();
  const auto it = m.find("annotations");
  return it != m.end() && it->is_object() ? *it : EmptyObject();
}

std::string Object::Describe() const {
  return ns.empty() ? kind + " " + name : kind + " " + ns + "/" + name;
}

namespace {

// The namespace's length, then namespace and name: unambiguous whatever bytes a hostile file
// puts in names.
std::string IndexKey(std::string_view ns, std::string_view name) {
  std::string key = std::to_string(ns.size());
  key.reserve(key.size() + 1 + ns.size() + name.size());
  key.push_back(':');
  key.append(ns);
  key.append(name);
  return key;
}

}  // namespace

void Snapshot::Add(Object object) {
  auto& index = index_[object.kind];
  std::string key = IndexKey(object.ns, object.name);
  if (index.contains(key)) {
    ++duplicates_;
    return;
  }
  DropReplicaSpec(object);
  Append(std::move(key), std::move(object));
}

void Snapshot::DropReplicaSpec(Object& object) {
  if (DropsReplicaSpec(object.kind, object.ns, ControllerOf(object.doc)) &&
      object.doc.erase("spec") > 0) {
    ++replica_specs_dropped_;
  }
}

void Snapshot::Append(std::string key, Object object) {
  Touch(object.kind);
  auto& list = by_kind_[object.kind];
  index_[object.kind].emplace(std::move(key), list.size());
  list.push_back(std::move(object));
  ++size_;
}

bool Snapshot::AddParsed(Object head, nlohmann::json&& doc) {
  const bool has_spec = doc.is_object() && doc.contains("spec");
  return AddBuilt(std::move(head), ControllerOf(doc), has_spec, [&doc](bool drop_spec) {
    if (drop_spec) doc.erase("spec");
    return Doc::FromJson(doc);
  });
}

bool Snapshot::AddBuilt(Object head, const std::optional<OwnerRef>& controller, bool has_spec,
                        const std::function<Doc(bool drop_spec)>& build) {
  auto& index = index_[head.kind];
  std::string key = IndexKey(head.ns, head.name);
  if (index.contains(key)) {
    ++duplicates_;
    return true;
  }
  std::string kept_by;
  const bool dropped = DropsReplicaSpec(head.kind, head.ns, controller, &kept_by) && has_spec;
  head.doc = build(dropped);
  if (head.doc.truncated()) {
    // Refused: it keeps no spec for its siblings either.
    if (!kept_by.empty()) replica_owners_.erase(kept_by);
    return false;
  }
  if (dropped) ++replica_specs_dropped_;
  Append(std::move(key), std::move(head));
  return true;
}

void Snapshot::Touch(const std::string& kind) {
  static std::atomic<uint64_t> next{0};
  generation_[kind] = ++next;
}

uint64_t Snapshot::Generation(std::string_view kind) const {
  const auto it = generation_.find(kind);
  return it == generation_.end() ? 0 : it->second;
}

namespace {

template <class J>
std::optional<OwnerRef> FirstController(const J& doc) {
  if (!doc.is_object()) return std::nullopt;
  const auto meta = doc.find("metadata");
  if (meta == doc.end() || !meta->is_object()) return std::nullopt;
  const auto refs = meta->find("ownerReferences");
  if (refs == meta->end() || !refs->is_array()) return std::nullopt;
  for (const auto& ref : *refs) {
    if (!ref.is_object()) continue;
    const auto controller = ref.find("controller");
    if (controller == ref.end() || !controller->is_boolean() || !controller->template get<bool>()) {
      continue;
    }
    return OwnerRef{StringField(ref, "kind"), StringField(ref, "name")};
  }
  return std::nullopt;
}

}  // namespace

std::optional<OwnerRef> ControllerOf(const nlohmann::json& doc) { return FirstController(doc); }
std::optional<OwnerRef> ControllerOf(const Value& doc) { return FirstController(doc); }

bool Snapshot::DropsReplicaSpec(const std::string& kind, const std::string& ns,
                                const std::optional<OwnerRef>& controller, std::string* kept_by) {
  if (kind != "Pod" && kind != "ReplicaSet" && kind != "Job") return false;
  if (!controller) return false;
  const auto& [owner_kind, owner] = *controller;
  // A static pod's mirror (owned by its Node) is a workload of its own.
  if (owner_kind.empty() || owner.empty() || owner_kind == "Node") return false;
  std::string replica_of = kind;
  for (const std::string* part : {&ns, &owner_kind, &owner}) {
    replica_of += '\x1f';
    replica_of += *part;
  }
  // Dropped when the owner is here already (its template is what checks read) or another
  // replica of it kept the spec (the one read if the owner never comes).
  const bool owner_here = Find(owner_kind, ns, owner) != nullptr;
  bool sibling_kept = false;
  if (!live_) {
    sibling_kept = !replica_owners_.insert(replica_of).second;
    if (!sibling_kept && kept_by) *kept_by = std::move(replica_of);
  }
  return sibling_kept || owner_here;
}

std::optional<Object> Snapshot::Upsert(Object object) {
  DropReplicaSpec(object);
  Touch(object.kind);
  auto& index = index_[object.kind];
  auto& list = by_kind_[object.kind];
  const auto [it, added] = index.try_emplace(IndexKey(object.ns, object.name), list.size());
  if (added) {
    list.push_back(std::move(object));
    ++size_;
    return std::nullopt;
  }
  std::optional<Object> old(std::move(list[it->second]));
  list[it->second] = std::move(object);
  return old;
}

std::optional<Object> Snapshot::Remove(std::string_view kind, std::string_view ns,
                                       std::string_view name) {
  const auto index = index_.find(kind);
  if (index == index_.end()) return std::nullopt;
  const auto pos = index->second.find(IndexKey(ns, name));
  if (pos == index->second.end()) return std::nullopt;
  auto& list = by_kind_.find(kind)->second;
  const size_t at = pos->second;
  Touch(list[at].kind);
  std::optional<Object> out(std::move(list[at]));
  index->second.erase(pos);
  // The last object takes the freed place, so removal costs no shifting.
  if (at + 1 != list.size()) {
    list[at] = std::move(list.back());
    index->second[IndexKey(list[at].ns, list[at].name)] = at;
  }
  list.pop_back();
  --size_;
  return out;
}

void Snapshot::ReplaceKind(const std::string& kind, std::vector<Object> objects) {
  if (const auto it = by_kind_.find(kind); it != by_kind_.end()) {
    size_ -= it->second.size();
    by_kind_.erase(it);
  }
  if (const auto it = index_.find(kind); it != index_.end()) index_.erase(it);
  failed_.erase(kind);
  Touch(kind);
  for (auto& o : objects) Upsert(std::move(o));
}

void Snapshot::Absorb(Snapshot&& other) {
  for (auto& [kind, list] : other.by_kind_) {
    for (auto& o : list) Add(std::move(o));
  }
  other = Snapshot();
}

const std::vector<Object>& Snapshot::Of(std::string_view kind) const {
  static const std::vector<Object> kNone;
  const auto it = by_kind_.find(kind);
  return it == by_kind_.end() ? kNone : it->second;
}

std::vector<Object>* Snapshot::MutableOf(std::string_view kind) {
  const auto it = by_kind_.find(kind);
  if (it == by_kind_.end()) return nullptr;
  Touch(it->first);  // the caller may change them
  return &it->second;
}

const Object* Snapshot::Find(std::string_view kind, std::string_view ns,
                             std::string_view name) const {
  const auto it = index_.find(kind);
  if (it == index_.end()) return nullptr;
  const auto pos = it->second.find(IndexKey(ns, name));
  if (pos == it->second.end()) return nullptr;
  return &by_kind_.find(kind)->second[pos->second];
}

std::map<std::string, size_t> Snapshot::Counts() const {
  std::map<std::string, size_t> out;
  for (const auto& [kind, list] : by_kind_) out[kind] = list.size();
  return out;
}

void Snapshot::MarkFailed(const std::string& kind, const std::string& reason) {
  failed_.emplace(kind, reason);
}

void Snapshot::MarkIncomplete(const std::string& reason) {
  if (!incomplete_) incomplete_ = reason;
}

void Prune(nlohmann::json& object) {
  if (!object.is_object()) return;
  for (const auto key : kPrunedTop) object.erase(std::string(key));
  const auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return;
  for (const auto key : kPrunedMetadata) meta->erase(std::string(key));
  const auto annotations = meta->find("annotations");
  if (annotations != meta->end() && annotations->is_object()) {
    for (const auto key : kPrunedAnnotations) annotations->erase(std::string(key));
  }
}

bool AddListItem(nlohmann::json&& item, const std::string& fallback_kind,
                 const std::string& fallback_version, const std::string& where,
                 const std::string& origin, Snapshot& out, std::vector<std::string>& problems) {
  if (!item.is_object()) {
    problems.push_back(where + " is not an object");
    return false;
  }
  Object o;
  o.kind = StringField(item, "kind");
  if (o.kind.empty()) o.kind = fallback_kind;
  o.api_version = StringField(item, "apiVersion");
  if (o.api_version.empty()) o.api_version = fallback_version;
  const auto meta = item.find("metadata");
  if (meta != item.end()) {
    o.name = StringField(*meta, "name");
    o.ns = StringField(*meta, "namespace");
  }
  if (o.kind.empty() || o.name.empty()) {
    problems.push_back(where + " has no " + (o.kind.empty() ? "kind" : "metadata.name"));
    return false;
  }
  o.kind = SnapshotKind(o.api_version, o.kind);
  if (o.kind == "ConfigMap" && out.inspect_config_data()) SummariseConfigData(item);
  Prune(item);
  o.origin = origin;
  if (!out.AddParsed(std::move(o), std::move(item))) {
    problems.push_back(where + " nests deeper than any Kubernetes object");
    return false;
  }
  return true;
}

namespace {

absl::Status Problems(const std::string& origin, const std::vector<std::string>& problems) {
  if (problems.empty()) return absl::OkStatus();
  std::string msg = origin + ": ";
  for (size_t i = 0; i < problems.size() && i < 3; ++i) msg += (i ? "; " : "") + problems[i];
  if (problems.size() > 3) msg += "; and " + std::to_string(problems.size() - 3) + " more";
  return absl::InvalidArgumentError(msg);
}

}  // namespace

std::pair<std::string, std::string> ListItemDefaults(std::string_view list_kind,
                                                     std::string_view list_version,
                                                     std::string_view default_kind) {
  std::string item_kind;
  if (list_kind.size() > 4 && list_kind != "List") {
    item_kind = std::string(list_kind.substr(0, list_kind.size() - 4));
  }
  if (item_kind.empty()) item_kind = std::string(default_kind);
  return {item_kind, list_kind == "List" ? "" : std::string(list_version)};
}

absl::Status ItemProblems(const std::string& origin, const std::vector<std::string>& problems) {
  return Problems(origin, problems);
}

absl::Status AddListItems(std::vector<nlohmann::json>&& items, std::string_view list_kind,
                          std::string_view list_version, const std::string& origin, Snapshot& out,
                          size_t* added, std::string_view default_kind, size_t first_index) {
  const auto [item_kind, version] = ListItemDefaults(list_kind, list_version, default_kind);
  std::vector<std::string> problems;
  size_t count = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    count += AddListItem(std::move(items[i]), item_kind, version,
                         "items[" + std::to_string(first_index + i) + "]", origin, out, problems);
  }
  if (added) *added = count;
  return Problems(origin, problems);
}

absl::Status AddDocument(nlohmann::json doc, const std::string& origin, Snapshot& out,
                         size_t* added, std::string_view default_kind) {
  if (added) *added = 0;
  if (doc.is_null()) return absl::OkStatus();  // an empty YAML document
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(origin + ": not a Kubernetes object or list");
  }
  const std::string kind = StringField(doc, "kind");
  const auto items = doc.find("items");
  const bool is_list = (kind == "List" || (kind.size() > 4 && kind.ends_with("List"))) ||
                       (kind.empty() && items != doc.end() && items->is_array());
  if (is_list) {
    if (items == doc.end() || !(items->is_array() || items->is_null())) {
      return absl::InvalidArgumentError(origin + ": list without items");
    }
    std::vector<nlohmann::json> list;
    if (items->is_array()) {
      list.reserve(items->size());
      for (auto& item : *items) list.push_back(std::move(item));
    }
    return AddListItems(std::move(list), kind, StringField(doc, "apiVersion"), origin, out, added,
                        default_kind);
  }
  std::vector<std::string> problems;
  const bool ok = AddListItem(std::move(doc), std::string(default_kind), "", "the document", origin,
                              out, problems);
  if (added) *added = ok ? 1 : 0;
  return Problems(origin, problems);
}

}  // namespace kspm::collector::k8s

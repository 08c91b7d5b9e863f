#pragma once

// Kubernetes API objects as the cluster checks see them: pruned to the fields a check may read,
// indexed by kind, with a record of what could not be read. The same model is filled from an
// offline snapshot directory (snapshot_dir.h) and from the API (api_client.h).
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "kspm/collector/k8s/value.h"
#include "nlohmann/json.hpp"

namespace kspm::collector::k8s {

// One object. `doc` keeps `metadata` (name, namespace, labels, annotations without
// kubectl's last-applied copy, ownerReferences) and every top-level field except `status`,
// `data`, `binaryData` and `stringData`: secret and config values never stay in memory. It is
// a compact read-only tree (value.h), read as JSON is.
struct Object {
  std::string kind;         // e.g. `Deployment`
  std::string api_version;  // e.g. `apps/v1`; may be empty for API list items
  std::string ns;           // empty for cluster-scoped objects
  std::string name;
  Doc doc;
  std::string origin;  // where it was read: a snapshot file name or `API`

  const Value& metadata() const;
  // `metadata.labels` / `.annotations` as an object (an empty object when absent).
  const Value& labels() const;
  const Value& annotations() const;
  // `Kind ns/name`, or `Kind name` when cluster-scoped: how evidence names its source.
  std::string Describe() const;
};

// An ownerReference: the owner's kind and name.
struct OwnerRef {
  std::string kind, name;
};

// The first ownerReference of `doc` (a Kubernetes object) with `controller: true`.
std::optional<OwnerRef> ControllerOf(const nlohmann::json& doc);
std::optional<OwnerRef> ControllerOf(const Value& doc);

// Every object of a cluster, by kind. Not thread-safe while being filled; read-only afterwards.
class Snapshot {
 public:
  // Adds an object; a second object with the same kind, namespace and name is ignored (the first
  // file read wins) and counted in duplicates(). Replicas of one controller carry one pod
  // template: a Pod, ReplicaSet or Job whose controlling owner is here already, or already has
  // a replica here, is kept without its `spec` (checks read the owner's template, or the first
  // replica when the owner is missing), so a Deployment of 300 pods holds one pod spec in
  // memory, not 300. Adding owners before what they own (LoadSnapshotDir does) keeps none.
  void Add(Object object);
  // Adds an object read as JSON (`head` without its doc): as Add, with a replica's spec
  // dropped before the tree is made compact. False, and nothing added, when `doc` nests deeper
  // than any Kubernetes object (value.h).
  bool AddParsed(Object head, nlohmann::json&& doc);
  // The same for any parsed form: `controller` is the object's controlling owner (the first
  // ownerReference with `controller: true`), and `build(drop_spec)` makes its Doc, without the
  // top-level `spec` when told to (`has_spec`: whether there is one to drop).
  bool AddBuilt(Object head, const std::optional<OwnerRef>& controller, bool has_spec,
                const std::function<Doc(bool drop_spec)>& build);
  size_t replica_specs_dropped() const { return replica_specs_dropped_; }

  // Opt-in (--scan-configmaps): ConfigMaps are read with their contents, and each keeps only
  // which keys look like credentials (credentials.h: SummariseConfigData), never a value. From
  // the API, ConfigMaps are listed only then.
  void set_inspect_config_data(bool on) { inspect_config_data_ = on; }
  bool inspect_config_data() const { return inspect_config_data_; }

  // A watched cluster's snapshot, changed object by object. In live mode a replica drops its
  // spec only while its owner is here: the sibling that kept it could be deleted first, and an
  // owner deleted with orphaned dependents leaves them ownerless, which the API sends as a
  // MODIFIED event carrying their spec.
  void set_live(bool live) { live_ = live; }
  bool live() const { return live_; }
  // Adds `object`, or replaces the one of the same kind, namespace and name; returns the object
  // replaced.
  std::optional<Object> Upsert(Object object);
  // Removes an object and returns it; nothing when it was not here.
  std::optional<Object> Remove(std::string_view kind, std::string_view ns, std::string_view name);
  // Every object of `kind` replaced by `objects` (a kind listed again), its failed mark cleared.
  void ReplaceKind(const std::string& kind, std::vector<Object> objects);
  // A number that changes whenever objects of `kind` are added, replaced or removed, unique
  // across all snapshots of the process (0: never changed): what derived indexes (Rbac) are
  // cached by.
  uint64_t Generation(std::string_view kind) const;
  // Moves every object of `other` into this snapshot (as Add does, one by one).
  void Absorb(Snapshot&& other);
  // The objects of one kind, in the order they were added (an empty list when none).
  const std::vector<Object>& Of(std::string_view kind) const;
  // The same, for in-place compaction after loading; null when none.
  std::vector<Object>* MutableOf(std::string_view kind);
  // Object by kind, namespace and name, or null.
  const Object* Find(std::string_view kind, std::string_view ns, std::string_view name) const;
  size_t size() const { return size_; }
  size_t duplicates() const { return duplicates_; }
  // Kinds present, sorted, with their counts.
  std::map<std::string, size_t> Counts() const;

  // A kind that could not be read (HTTP 403, a malformed file that held it): checks that read it
  // are ERROR with this reason instead of PASS or NOT_APPLICABLE.
  void MarkFailed(const std::string& kind, const std::string& reason);
  const std::map<std::string, std::string>& failed_kinds() const { return failed_; }
  // Something unreadable held objects of unknown kinds: every check that would pass or not apply
  // is ERROR instead, since the objects that would fail it may be the missing ones.
  void MarkIncomplete(const std::string& reason);
  const std::optional<std::string>& incomplete() const { return incomplete_; }
  // Problems worth showing that did not stop the load (file name, position, message).
  void AddError(std::string error) { errors_.push_back(std::move(error)); }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::map<std::string, std::vector<Object>, std::less<>> by_kind_;
  // Kind -> IndexKey(namespace, name) -> position in by_kind_.
  std::map<std::string, std::map<std::string, size_t>, std::less<>> index_;
  // Whether an object's pod spec goes (see Add); records a replica that keeps it (and sets
  // `kept_by` to the record, so that a refused object can take it back).
  bool DropsReplicaSpec(const std::string& kind, const std::string& ns,
                        const std::optional<OwnerRef>& controller, std::string* kept_by = nullptr);
  // Drops a compact object's spec when DropsReplicaSpec says so, and counts it.
  void DropReplicaSpec(Object& object);
  // Indexes and keeps an object known not to be here (`key`: its index key).
  void Append(std::string key, Object object);

  void Touch(const std::string& kind);

  bool live_ = false;
  bool inspect_config_data_ = false;
  std::map<std::string, uint64_t, std::less<>> generation_;
  size_t size_ = 0;
  size_t duplicates_ = 0;
  std::set<std::string> replica_owners_;  // kind, namespace, owner kind and name, joined
  size_t replica_specs_dropped_ = 0;
  std::map<std::string, std::string> failed_;
  std::optional<std::string> incomplete_;
  std::vector<std::string> errors_;
};

// Adds the objects of one parsed document: a single object, or a list (`kind: List` from
// `kubectl get -o json|yaml`, or `PodList` and the like from the API). List items without a kind
// take it from the list's kind (`PodList` -> `Pod`), as the API server leaves it out; a list
// that names no kind takes `default_kind` when given. Returns how many objects were added; a
// document that is not an object (or an item without kind or name) is InvalidArgument naming
// the item, and the other items are still added.
[[nodiscard]] absl::Status AddDocument(nlohmann::json doc, const std::string& origin, Snapshot& out,
                                       size_t* added = nullptr, std::string_view default_kind = {});

// Adds the items of a list already taken apart (a streaming parse hands them over in chunks):
// as AddDocument does for a list of kind `list_kind` (`PodList`, or `List`) and `list_version`.
// `first_index` is the position of items[0] in the whole list, for messages.
[[nodiscard]] absl::Status AddListItems(std::vector<nlohmann::json>&& items,
                                        std::string_view list_kind, std::string_view list_version,
                                        const std::string& origin, Snapshot& out,
                                        size_t* added = nullptr, std::string_view default_kind = {},
                                        size_t first_index = 0);

// What checks never read, dropped from every object as it is read: at the top, under
// `metadata`, and under `metadata.annotations` (kubectl apply keeps a full copy of the object
// there, which can be larger than the object).
inline constexpr std::string_view kPrunedTop[] = {"status", "data", "binaryData", "stringData"};
inline constexpr std::string_view kPrunedMetadata[] = {
    "managedFields", "resourceVersion",   "generation",   "selfLink",
    "uid",           "creationTimestamp", "generateName", "finalizers"};
inline constexpr std::string_view kPrunedAnnotations[] = {
    "kubectl.kubernetes.io/last-applied-configuration"};

// The kind and apiVersion a list's items take when they name none: `PodList` gives `Pod` (and
// the list's version); a plain `List` gives `default_kind` and no version.
std::pair<std::string, std::string> ListItemDefaults(std::string_view list_kind,
                                                     std::string_view list_version,
                                                     std::string_view default_kind = {});

// The items of `origin` that could not be added, as one InvalidArgument naming the first three
// (OK when none).
absl::Status ItemProblems(const std::string& origin, const std::vector<std::string>& problems);

// Drops what checks never read (above), in place.
void Prune(nlohmann::json& object);

// Adds one list item (`where`: `items[3]`, for messages) taking the list's kind and version
// when it names none; a problem (not an object, no kind or name, nested too deep) is described
// in `problems` and nothing is added.
bool AddListItem(nlohmann::json&& item, const std::string& fallback_kind,
                 const std::string& fallback_version, const std::string& where,
                 const std::string& origin, Snapshot& out, std::vector<std::string>& problems);

}  // namespace kspm::collector::k8s

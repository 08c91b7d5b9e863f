#include "kspm/collector/cluster/watch.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>
#include <shared_mutex>
#include <thread>

#include "kspm/collector/cluster/workloads.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::cluster {
void LiveObjects::Reset(k8s::Snapshot snapshot, std::string server_version) {
  snapshot.set_live(true);
  std::set<std::string> kinds;
  for (const auto& [kind, n] : snapshot.Counts()) kinds.insert(kind);
  const bool config_data = snapshot.inspect_config_data();
  {
    std::unique_lock state(state_mu_);
    snapshot_ = std::move(snapshot);
    server_version_ = std::move(server_version);
  }
  std::function<void()> changed;
  {
    std::lock_guard lock(mu_);
    // A full scan may have failed while the list did: the first evaluation is then a whole one.
    if (!sync_error_.ok()) {
      pending_.relisted.insert(kinds.begin(), kinds.end());
      changed = changed_;
    }
    synced_ = true;
    config_data_ = config_data;
    sync_error_ = absl::OkStatus();
  }
  cv_.notify_all();
  if (changed) changed();
}

void LiveObjects::Fail(absl::Status status) {
  {
    std::lock_guard lock(mu_);
    sync_error_ = std::move(status);
  }
  cv_.notify_all();
}

absl::StatusOr<k8s::Snapshot> LiveObjects::Read(std::string*) {
  return absl::UnimplementedError("a watched cluster is read with With()");
}

absl::Status LiveObjects::With(const Use& use) {
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return synced_ || stopping_ || !sync_error_.ok(); });
    if (stopping_) return absl::UnavailableError("the collector is stopping");
    if (!synced_) return sync_error_;
  }
  Drain();
  std::shared_lock state(state_mu_);
  return use(snapshot_, server_version_);
}

void LiveObjects::StartWatching(std::function<void()> changed) {
  std::lock_guard lock(mu_);
  changed_ = std::move(changed);
}

void LiveObjects::StopWatching() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

bool LiveObjects::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

bool LiveObjects::Wait(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, d, [this] { return stopping_; });
}

ChangeBatch LiveObjects::TakeChanges() {
  std::lock_guard lock(mu_);
  ChangeBatch out;
  std::swap(out, pending_);
  return out;
}

void LiveObjects::Push(Incoming&& in) {
  std::function<void()> changed;
  {
    std::lock_guard lock(mu_);
    incoming_.push_back(std::move(in));
    changed = changed_;
  }
  if (changed) changed();
}

void LiveObjects::ReplaceKind(const std::string& kind, std::vector<k8s::Object> objects) {
  Incoming in;
  in.what = Incoming::What::kReplace;
  in.object.kind = kind;
  in.objects = std::move(objects);
  Push(std::move(in));
}

void LiveObjects::MarkFailed(const std::string& kind, std::string reason) {
  Incoming in;
  in.what = Incoming::What::kFail;
  in.object.kind = kind;
  in.reason = std::move(reason);
  Push(std::move(in));
}

bool LiveObjects::Apply(const std::string& kind, k8s::WatchEvent&& event) {
  if (event.type != "ADDED" && event.type != "MODIFIED" && event.type != "DELETED") return false;
  Incoming in;
  in.seen = common::Clock::now();
  in.manager = LatestManager(event.object);
  in.verb = event.type == "ADDED" ? "create" : event.type == "MODIFIED" ? "update" : "delete";
  k8s::Snapshot one;
  {
    std::lock_guard lock(mu_);
    one.set_inspect_config_data(config_data_);
  }
  if (in.verb == "delete" && event.object.is_object()) {
    // A deletion needs only the object's identity; the rest (which a hostile or odd custom
    // resource could make unreadable) must not keep a deleted object alive.
    nlohmann::json identity = nlohmann::json::object();
    for (const char* key : {"apiVersion", "kind"}) {
      if (const auto it = event.object.find(key); it != event.object.end()) identity[key] = *it;
    }
    if (const auto meta = event.object.find("metadata");
        meta != event.object.end() && meta->is_object()) {
      nlohmann::json m = nlohmann::json::object();
      for (const char* key : {"name", "namespace"}) {
        if (const auto it = meta->find(key); it != meta->end()) m[key] = *it;
      }
      identity["metadata"] = std::move(m);
    }
    event.object = std::move(identity);
  }
  size_t added = 0;
  if (auto s = k8s::AddDocument(std::move(event.object), "API", one, &added, kind);
      !s.ok() || added != 1) {
    spdlog::warn("cluster watch: {}: an event without a usable object: {}", kind,
                 std::string(s.message()));
    return false;
  }
  in.object = std::move(one.MutableOf(one.Counts().begin()->first)->front());
  Push(std::move(in));
  return true;
}

namespace {

// The namespaces of the service accounts a binding names: ServiceAccount subjects (a missing
// namespace is the binding's), the group system:serviceaccounts:NS and the user
// system:serviceaccount:NS:NAME. Groups naming everyone are not counted (Rbac does not count
// them for an account either).
void AccountNamespaces(const k8s::Object& binding, std::set<std::string>& out) {
  const auto subjects = binding.doc.find("subjects");
  if (subjects == binding.doc.end() || !subjects->is_array()) return;
  for (const auto& s : *subjects) {
    if (!s.is_object()) continue;
    const std::string kind = s.value("kind", std::string());
    const std::string name = s.value("name", std::string());
    if (kind == "ServiceAccount") {
      const std::string ns = s.value("namespace", std::string());
      out.insert(ns.empty() ? binding.ns : ns);
    } else if (kind == "Group" && name.starts_with("system:serviceaccounts:")) {
      out.insert(name.substr(std::string_view("system:serviceaccounts:").size()));
    } else if (kind == "User" && name.starts_with("system:serviceaccount:")) {
      const std::string rest = name.substr(std::string_view("system:serviceaccount:").size());
      out.insert(rest.substr(0, rest.find(':')));
    }
  }
}

}  // namespace

void LiveObjects::Drain() {
  std::vector<Incoming> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(incoming_);
  }
  if (batch.empty()) return;
  static const std::set<std::string, std::less<>> kOwners = [] {
    std::set<std::string, std::less<>> out(WorkloadKinds().begin(), WorkloadKinds().end());
    out.erase("Pod");
    return out;
  }();
  std::vector<ObjectChange> changes;
  std::set<std::string> relisted;
  {
    std::unique_lock state(state_mu_);
    for (auto& in : batch) {
      if (in.what == Incoming::What::kReplace) {
        snapshot_.ReplaceKind(in.object.kind, std::move(in.objects));
        relisted.insert(in.object.kind);
        continue;
      }
      if (in.what == Incoming::What::kFail) {
        snapshot_.MarkFailed(in.object.kind, in.reason);
        relisted.insert(in.object.kind);
        continue;
      }
      ObjectChange change;
      change.kind = in.object.kind;
      change.ns = in.object.ns;
      change.name = in.object.name;
      change.verb = in.verb;
      change.manager = std::move(in.manager);
      change.seen = in.seen;
      // A controller that comes or goes changes where its dependents are reported.
      change.owner_change = change.verb != "update" && kOwners.contains(change.kind);
      const bool binding = change.kind == "RoleBinding" || change.kind == "ClusterRoleBinding";
      if (binding) change.reaches.emplace();
      if (const auto* before = snapshot_.Find(change.kind, change.ns, change.name)) {
        if (auto key = ReportedAt(snapshot_, *before)) change.workloads.push_back(*std::move(key));
        if (binding) AccountNamespaces(*before, *change.reaches);
      }
      if (binding && change.verb != "delete") AccountNamespaces(in.object, *change.reaches);
      if (change.verb == "delete") {
        if (!snapshot_.Remove(change.kind, change.ns, change.name)) continue;  // never seen
      } else {
        auto old = snapshot_.Upsert(std::move(in.object));
        const auto* after = snapshot_.Find(change.kind, change.ns, change.name);
        // A change of what checks never read (status, resourceVersion) is no change.
        if (old && after && old->doc == after->doc) continue;
        if (auto key = after ? ReportedAt(snapshot_, *after) : std::nullopt;
            key && std::find(change.workloads.begin(), change.workloads.end(), *key) ==
                       change.workloads.end()) {
          change.workloads.push_back(*std::move(key));
        }
      }
      changes.push_back(std::move(change));
    }
  }
  std::lock_guard lock(mu_);
  for (auto& c : changes) pending_.changes.push_back(std::move(c));
  pending_.relisted.insert(relisted.begin(), relisted.end());
}

namespace {

class Watcher final : public LiveObjects {
 public:
  Watcher(k8s::Connection c, k8s::ClientOptions o, WatchSettings s)
      : LiveObjects("API " + c.server + " (watch)"),
        conn_(std::move(c)),
        options_(std::move(o)),
        settings_(s) {}
  ~Watcher() override { StopWatching(); }

  void StartWatching(std::function<void()> changed) override {
    LiveObjects::StartWatching(std::move(changed));
    std::lock_guard lock(mu_);
    if (started_) return;
    started_ = true;
    threads_.emplace_back([this] { Sync(); });
  }

  void StopWatching() override {
    stop_ = true;
    LiveObjects::StopWatching();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  WatchCounters counters() const {
    std::lock_guard lock(mu_);
    return counters_;
  }

 private:
  void Count(size_t WatchCounters::*counter) {
    std::lock_guard lock(mu_);
    ++(counters_.*counter);
  }

  template <typename Duration>
  Duration Jitter(Duration d, double spread) {
    std::lock_guard lock(mu_);
    std::uniform_real_distribution<double> f(1.0, 1.0 + spread);
    return Duration(static_cast<typename Duration::rep>(static_cast<double>(d.count()) * f(rng_)));
  }

  // The first full list of every kind, retried until it works; then one watch thread per kind.
  void Sync() {
    auto backoff = settings_.first_backoff;
    for (;;) {
      if (stop_) return;
      auto client = k8s::MakeApiClient(conn_, options_);
      k8s::Snapshot fresh;
      fresh.set_live(true);
      fresh.set_inspect_config_data(settings_.configmaps);
      absl::StatusOr<k8s::FetchStats> stats =
          client.ok() ? k8s::FetchSnapshot(**client, fresh)
                      : absl::StatusOr<k8s::FetchStats>(client.status());
      if (!stats.ok()) {
        spdlog::warn("cluster watch: the first list failed: {}; trying again in {} ms",
                     std::string(stats.status().message()), backoff.count());
        Count(&WatchCounters::errors);
        Fail(stats.status());
        if (!Wait(backoff)) return;
        backoff = std::min(backoff * 2, settings_.max_backoff);
        continue;
      }
      CompactOwnedObjects(fresh);
      Reset(std::move(fresh), stats->server_version);
      spdlog::info("cluster watch: listed {} objects of {} kinds from {}; watching them",
                   stats->objects, stats->listed.size(), conn_.server);
      std::lock_guard lock(mu_);
      if (stop_) return;
      for (const auto& [type, version] : stats->listed) {
        threads_.emplace_back([this, type, version] { WatchKind(type, version); });
      }
      return;
    }
  }

  // Lists `type` again into the objects; the new resourceVersion, or an error.
  absl::StatusOr<std::string> Relist(k8s::ApiClient& client, const k8s::ResourceType& type) {
    k8s::Snapshot scratch;
    scratch.set_live(true);
    scratch.set_inspect_config_data(settings_.configmaps);
    std::string version;
    std::string unreadable;  // the first page's message about objects that could not be read
    const auto page = [&](const k8s::ListPage& p) -> absl::Status {
      if (auto rv = k8s::PageVersion(p); !rv.empty()) version = std::move(rv);
      size_t added = 0;
      const auto s = k8s::AddListPage(p, "API", scratch, &added, type.kind);
      if (absl::IsInternal(s)) return s;  // not JSON: the kind could not be listed
      if (!s.ok()) {
        spdlog::warn("cluster watch: {}", std::string(s.message()));
        if (unreadable.empty()) unreadable = std::string(s.message());
      }
      return absl::OkStatus();
    };
    const auto restart = [&] {
      scratch = k8s::Snapshot();
      scratch.set_live(true);
      scratch.set_inspect_config_data(settings_.configmaps);
      unreadable.clear();
    };
    if (auto s = client.List(type, page, restart); !s.ok()) return s;
    std::vector<k8s::Object> objects;
    if (auto* listed = scratch.MutableOf(type.kind)) objects = std::move(*listed);
    ReplaceKind(type.kind, std::move(objects));
    // Checks that read the kind cannot pass on what is left: the objects they would fail may be
    // the unreadable ones (as a full list or a snapshot file says it).
    if (!unreadable.empty()) {
      MarkFailed(type.kind, "objects the API listed could not be read: " + unreadable);
    }
    return version;
  }

  // One event applied to the objects; false to end the watch. An object that was created or
  // changed into something kspm cannot read (Apply refuses it) sets `relist` and ends the watch:
  // keeping its old version would keep verdicts about an object that no longer exists as read,
  // so the kind is listed again, which marks it failed while the object stays unreadable.
  bool Handle(const k8s::ResourceType& type, k8s::WatchEvent&& event, std::string& version,
              bool& relist) {
    const std::string rv = k8s::ResourceVersionOf(event.object);
    if (!rv.empty()) version = rv;
    if (event.type == "BOOKMARK") return !stop_;
    const std::string what = event.type;
    if (Apply(type.kind, std::move(event))) {
      Count(&WatchCounters::events);
    } else if (what == "ADDED" || what == "MODIFIED") {
      spdlog::warn("cluster watch: {}: an {} object kspm cannot read; listing the kind again",
                   type.Qualified(), what);
      relist = true;
      return false;
    } else {
      spdlog::debug("cluster watch: {}: event of type '{}' not applied", type.Qualified(), what);
    }
    return !stop_;
  }

  void WatchKind(const k8s::ResourceType& type, std::string version) {
    auto client = k8s::MakeApiClient(conn_, options_);
    if (!client.ok()) {
      spdlog::error("cluster watch: {}: {}", type.Qualified(),
                    std::string(client.status().message()));
      return;
    }
    auto backoff = settings_.first_backoff;
    const auto fail = [&](const absl::Status& s, const char* what) {
      Count(&WatchCounters::errors);
      spdlog::warn("cluster watch: {} of {} failed: {}; again in {} ms", what, type.Qualified(),
                   std::string(s.message()), backoff.count());
      const bool go_on = Wait(backoff);
      backoff = std::min(backoff * 2, settings_.max_backoff);
      return go_on;
    };
    // A kind whose first list failed (refused, say) is listed again after a backoff.
    bool list = version.empty();
    bool refused = false;  // the watch was refused and the kind marked failed
    if (list && !Wait(backoff)) return;
    auto relist_at = std::chrono::steady_clock::now() + Jitter(settings_.relist, 0.1);
    while (!stop_) {
      if (list || std::chrono::steady_clock::now() >= relist_at) {
        Count(&WatchCounters::lists);
        auto listed = Relist(**client, type);
        if (!listed.ok()) {
          if (!fail(listed.status(), "the list")) return;
          continue;
        }
        version = *listed;
        list = false;
        relist_at = std::chrono::steady_clock::now() + Jitter(settings_.relist, 0.1);
      }
      Count(&WatchCounters::watches);
      const auto started = std::chrono::steady_clock::now();
      // The stream ends by the safety-net list at the latest.
      const auto until_relist =
          std::chrono::duration_cast<std::chrono::seconds>(relist_at - started) +
          std::chrono::seconds(1);
      const auto timeout = std::min(Jitter(settings_.watch_timeout, 1.0), until_relist);
      size_t events = 0;
      bool unreadable = false;
      const auto s = (*client)->Watch(
          type, version, timeout,
          [&](k8s::WatchEvent&& e) {
            ++events;
            return Handle(type, std::move(e), version, unreadable);
          },
          stop_);
      if (stop_) return;
      if (unreadable) {
        list = true;
        continue;
      }
      if (refused && (s.ok() || events > 0)) {
        refused = false;
        list = true;  // clears the failed mark with fresh objects
      }
      if (s.ok()) {
        // The server ended the stream (its timeout): watch again from the last version. One
        // that ends at once with nothing in it is a server in trouble: back off.
        if (events == 0 && std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
          if (!fail(absl::UnavailableError("the watch ended at once"), "the watch")) return;
        } else {
          backoff = settings_.first_backoff;
        }
        continue;
      }
      if (absl::IsAborted(s)) {
        // 410 Gone: the version is older than the server keeps; only a new list catches up.
        Count(&WatchCounters::gone);
        spdlog::info("cluster watch: {}; listing {} again", std::string(s.message()),
                     type.Qualified());
        list = true;
        continue;
      }
      if (absl::IsPermissionDenied(s) || absl::IsUnauthenticated(s)) {
        // Refused: the objects can no longer be kept current. Until a watch works again (and
        // the kind is listed afresh), its checks say so instead of showing stale verdicts.
        if (!refused) MarkFailed(type.kind, std::string(s.message()));
        refused = true;
      }
      if (!fail(s, "the watch")) return;
    }
  }

  k8s::Connection conn_;
  k8s::ClientOptions options_;
  WatchSettings settings_;
  std::atomic<bool> stop_{false};  // read by the watches' transfers

  mutable std::mutex mu_;  // everything below
  bool started_ = false;
  std::vector<std::thread> threads_;
  WatchCounters counters_;
  std::mt19937 rng_{std::random_device{}()};
};

}  // namespace

std::string LatestManager(const nlohmann::json& object) {
  if (!object.is_object()) return "";
  const auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  const auto fields = meta->find("managedFields");
  if (fields == meta->end() || !fields->is_array()) return "";
  std::string manager, latest;
  for (const auto& f : *fields) {
    if (!f.is_object()) continue;
    const std::string time = f.value("time", std::string());
    const std::string name = f.value("manager", std::string());
    // RFC 3339 times in UTC compare as text; an entry without a time loses to one with.
    if (!name.empty() && (manager.empty() || time >= latest)) {
      manager = name;
      latest = time;
    }
  }
  return manager;
}

std::unique_ptr<ObjectSource> WatchSource(k8s::Connection connection, k8s::ClientOptions options,
                                          WatchSettings settings) {
  return std::make_unique<Watcher>(std::move(connection), std::move(options), settings);
}

WatchCounters CountersOf(const ObjectSource& source) {
  const auto* w = dynamic_cast<const Watcher*>(&source);
  return w ? w->counters() : WatchCounters{};
}

}  // namespace kspm::collector::cluster

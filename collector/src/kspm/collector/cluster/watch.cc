#include "kspm/collector/cluster/watch.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <thread>

#include "kspm/collector/cluster/workloads.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::cluster {
namespace {

std::string ResourceVersionOf(const nlohmann::json& object) {
  if (!object.is_object()) return "";
  const auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  const auto rv = meta->find("resourceVersion");
  return rv != meta->end() && rv->is_string() ? rv->get<std::string>() : "";
}

}  // namespace

void LiveObjects::Reset(k8s::Snapshot snapshot, std::string server_version) {
  snapshot.set_live(true);
  {
    std::unique_lock state(state_mu_);
    snapshot_ = std::move(snapshot);
    server_version_ = std::move(server_version);
  }
  {
    std::lock_guard lock(mu_);
    synced_ = true;
    sync_error_ = absl::OkStatus();
  }
  cv_.notify_all();
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

void LiveObjects::Queue(ObjectChange&& change, std::string relisted) {
  std::function<void()> changed;
  {
    std::lock_guard lock(mu_);
    if (relisted.empty()) {
      pending_.changes.push_back(std::move(change));
    } else {
      pending_.relisted.insert(std::move(relisted));
    }
    changed = changed_;
  }
  if (changed) changed();
}

void LiveObjects::ReplaceKind(const std::string& kind, std::vector<k8s::Object> objects) {
  {
    std::unique_lock state(state_mu_);
    snapshot_.ReplaceKind(kind, std::move(objects));
  }
  Queue({}, kind);
}

bool LiveObjects::Apply(const std::string& kind, k8s::WatchEvent&& event) {
  if (event.type != "ADDED" && event.type != "MODIFIED" && event.type != "DELETED") return false;
  ObjectChange change;
  change.seen = common::Clock::now();
  change.manager = LatestManager(event.object);
  change.verb = event.type == "ADDED" ? "create" : event.type == "MODIFIED" ? "update" : "delete";
  k8s::Snapshot one;
  size_t added = 0;
  if (auto s = k8s::AddDocument(std::move(event.object), "API", one, &added, kind);
      !s.ok() || added != 1) {
    spdlog::warn("cluster watch: {}: an event without a usable object: {}", kind,
                 std::string(s.message()));
    return false;
  }
  k8s::Object object = std::move(one.MutableOf(one.Counts().begin()->first)->front());
  change.kind = object.kind;
  change.ns = object.ns;
  change.name = object.name;
  {
    std::unique_lock state(state_mu_);
    if (const auto* before = snapshot_.Find(change.kind, change.ns, change.name)) {
      if (auto key = ReportedAt(snapshot_, *before)) change.workloads.push_back(*std::move(key));
    }
    if (change.verb == "delete") {
      (void)snapshot_.Remove(change.kind, change.ns, change.name);
    } else {
      (void)snapshot_.Upsert(std::move(object));
      const auto* after = snapshot_.Find(change.kind, change.ns, change.name);
      if (auto key = after ? ReportedAt(snapshot_, *after) : std::nullopt;
          key && std::find(change.workloads.begin(), change.workloads.end(), *key) ==
                     change.workloads.end()) {
        change.workloads.push_back(*std::move(key));
      }
    }
  }
  Queue(std::move(change), "");
  return true;
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
    std::string version;
    const auto page = [&](nlohmann::json& doc) -> absl::Status {
      if (auto rv = ResourceVersionOf(doc); !rv.empty()) version = std::move(rv);
      size_t added = 0;
      if (auto s = k8s::AddDocument(std::move(doc), "API", scratch, &added, type.kind); !s.ok()) {
        spdlog::warn("cluster watch: {}", std::string(s.message()));
      }
      return absl::OkStatus();
    };
    const auto restart = [&] {
      scratch = k8s::Snapshot();
      scratch.set_live(true);
    };
    if (auto s = client.List(type, page, restart); !s.ok()) return s;
    std::vector<k8s::Object> objects;
    if (auto* listed = scratch.MutableOf(type.kind)) objects = std::move(*listed);
    ReplaceKind(type.kind, std::move(objects));
    return version;
  }

  // One event applied to the objects; false to end the watch.
  bool Handle(const k8s::ResourceType& type, k8s::WatchEvent&& event, std::string& version) {
    const std::string rv = ResourceVersionOf(event.object);
    if (!rv.empty()) version = rv;
    if (event.type == "BOOKMARK") return !stop_;
    if (Apply(type.kind, std::move(event))) {
      Count(&WatchCounters::events);
    } else {
      spdlog::debug("cluster watch: {}: event of type '{}' not applied", type.Qualified(),
                    event.type);
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
      size_t events = 0;
      const auto s = (*client)->Watch(
          type, version, Jitter(settings_.watch_timeout, 1.0),
          [&](k8s::WatchEvent&& e) {
            ++events;
            return Handle(type, std::move(e), version);
          },
          stop_);
      if (stop_) return;
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

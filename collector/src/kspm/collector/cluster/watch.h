#pragma once

// A cluster kept current by the API's watches instead of a list every interval: each kind is
// listed once (paged), then watched from the list's resourceVersion with bookmarks. A watch that
// ends is started again from the last version seen; `410 Gone` (the version was compacted away)
// lists the kind again; errors back off exponentially up to a limit; every kind is listed again
// after `relist` as a safety net. Each change is applied to the objects at once and handed to
// the scan thread (PeriodicClusterScan::RunChanges), which re-evaluates what it can affect.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "kspm/collector/cluster/scanner.h"
#include "kspm/collector/k8s/api_client.h"

namespace kspm::collector::cluster {

struct WatchSettings {
  std::chrono::seconds relist{6 * 3600};    // the safety-net list of every kind
  std::chrono::seconds watch_timeout{300};  // one watch request; randomised to 1-2x, as client-go
  std::chrono::milliseconds first_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  bool configmaps = false;  // list and watch ConfigMaps, their contents summarised
};

// What the watches have done so far, for logs and tests.
struct WatchCounters {
  size_t lists = 0;    // list calls after the first sync (410s, safety net, refused kinds)
  size_t watches = 0;  // watch requests started
  size_t events = 0;   // ADDED, MODIFIED and DELETED events applied
  size_t gone = 0;     // 410 Gone answers
  size_t errors = 0;   // failed lists and watches (each followed by a backoff)
};

// The objects of a watched cluster and the changes not evaluated yet: what WatchSource keeps and
// its watches feed. Thread-safe. The watch threads only decode and queue; the queue is applied
// to the objects by the thread that evaluates them (With), so a long full scan never holds a
// watch stream up. Benchmarks and tests feed it events directly.
class LiveObjects : public ObjectSource {
 public:
  explicit LiveObjects(std::string description) : description_(std::move(description)) {}
  // The first full list: With() waits for it (or for Fail). After a Fail, every check is
  // re-evaluated with it.
  void Reset(k8s::Snapshot snapshot, std::string server_version);
  // The first list failed: With() returns this until a Reset.
  void Fail(absl::Status status);
  // A kind listed again: its objects replaced, and every check reading it re-evaluated.
  void ReplaceKind(const std::string& kind, std::vector<k8s::Object> objects);
  // A kind that cannot be kept current (its watch is refused): its checks report ERROR with
  // `reason` until it is listed again.
  void MarkFailed(const std::string& kind, std::string reason);
  // Queues one ADDED, MODIFIED or DELETED event (an object without a kind takes `kind`); false
  // (with a warning) for an event without a usable object.
  bool Apply(const std::string& kind, k8s::WatchEvent&& event);

  absl::StatusOr<k8s::Snapshot> Read(std::string* server_version) override;
  std::string Describe() const override { return description_; }
  [[nodiscard]] absl::Status With(const Use& use) override;
  void StartWatching(std::function<void()> changed) override;
  void StopWatching() override;
  ChangeBatch TakeChanges() override;

 protected:
  // Waits `d`, or less when stopping; false when stopping.
  bool Wait(std::chrono::milliseconds d);
  bool stopping() const;

 private:
  // What the watch threads hand over: an event's object (or a deleted one's name), a kind
  // listed again, or a kind that failed.
  struct Incoming {
    enum class What { kEvent, kReplace, kFail } what = What::kEvent;
    std::string verb, manager, reason;
    k8s::Object object;
    std::vector<k8s::Object> objects;
    common::Clock::time_point seen;
  };
  void Push(Incoming&& in);
  // Applies the queue to the objects (exclusive lock); the changes go to pending_.
  void Drain();

  std::string description_;
  std::shared_mutex state_mu_;  // the objects: shared while evaluated, exclusive while changed
  k8s::Snapshot snapshot_;
  std::string server_version_;

  mutable std::mutex mu_;  // everything below
  std::condition_variable cv_;
  bool synced_ = false, stopping_ = false, config_data_ = false;
  absl::Status sync_error_;
  std::vector<Incoming> incoming_;
  ChangeBatch pending_;
  std::function<void()> changed_;
};

// The source of a watched cluster. With() waits for the first full list (or returns why it
// failed) and hands over the objects as they are now; they do not change while it runs.
std::unique_ptr<ObjectSource> WatchSource(k8s::Connection connection, k8s::ClientOptions options,
                                          WatchSettings settings = {});

// The counters of a source made by WatchSource (zeros for any other source).
WatchCounters CountersOf(const ObjectSource& source);

// The field manager of an object's latest change: the managedFields entry with the latest time
// (`kubectl-client-side-apply`, `helm`, `kube-controller-manager`); empty when none is recorded.
std::string LatestManager(const nlohmann::json& object);

}  // namespace kspm::collector::cluster

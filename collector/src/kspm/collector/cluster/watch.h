#pragma once

// A cluster kept current by the API's watches instead of a list every interval: each kind is
// listed once (paged), then watched from the list's resourceVersion with bookmarks. A watch that
// ends is started again from the last version seen; `410 Gone` (the version was compacted away)
// lists the kind again; errors back off exponentially up to a limit; every kind is listed again
// after `relist` as a safety net. Each change is applied to the objects at once and handed to
// the scan thread (PeriodicClusterScan::RunChanges), which re-evaluates what it can affect.
#include <chrono>
#include <memory>

#include "kspm/collector/cluster/scanner.h"
#include "kspm/collector/k8s/api_client.h"

namespace kspm::collector::cluster {

struct WatchSettings {
  std::chrono::seconds relist{6 * 3600};    // the safety-net list of every kind
  std::chrono::seconds watch_timeout{300};  // one watch request; randomised to 1-2x, as client-go
  std::chrono::milliseconds first_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
};

// What the watches have done so far, for logs and tests.
struct WatchCounters {
  size_t lists = 0;    // list calls after the first sync (410s, safety net, refused kinds)
  size_t watches = 0;  // watch requests started
  size_t events = 0;   // ADDED, MODIFIED and DELETED events applied
  size_t gone = 0;     // 410 Gone answers
  size_t errors = 0;   // failed lists and watches (each followed by a backoff)
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

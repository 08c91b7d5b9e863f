#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/metrics.h"

namespace kspm::collector::server {

// One receiver of alerts (`--alert-webhook`).
struct AlertWebhook {
  std::string url;  // http:// or https://
  v1::Severity min_severity = v1::SEVERITY_HIGH;
  std::string format = "json";  // json (kspm's own payload) or slack (an incoming webhook's text)
};

struct AlertOptions {
  std::vector<AlertWebhook> webhooks;
  // A failed delivery is tried again after retry_min, doubling up to retry_max, `attempts` times
  // in all; then the batch is a dead letter (counted, logged, dropped).
  std::chrono::milliseconds retry_min{1000};
  std::chrono::milliseconds retry_max{60000};
  int attempts = 6;
  std::chrono::milliseconds timeout{10000};  // per HTTP request
  // Batches waiting per webhook; past it the oldest is a dead letter, so a receiver that is down
  // for long never holds memory or ingest.
  size_t max_queue = 1000;
  // How often nodes are checked for going stale.
  std::chrono::milliseconds stale_every{60000};
  std::string collector;  // named in payloads (the host name by default)
};

// Parses `--alert-webhook` values and their shared flags into options. InvalidArgument names the
// value: not http(s), unknown format or severity.
[[nodiscard]] absl::StatusOr<AlertOptions> MakeAlertOptions(const std::vector<std::string>& urls,
                                                            const std::string& min_severity,
                                                            const std::string& format);

// Sends alerts to webhooks: a FAIL at or above a webhook's severity that is new (from PASS or
// another status, or a new failing object on a node or cluster that had results), a FAIL that
// becomes PASS (resolved), a drift event that changed a verdict, and a node going stale.
// Accepted findings (exceptions) are never alerted. One POST per commit and webhook (a batch),
// from one thread per webhook: commits only queue, so a slow or dead receiver never holds
// ingest. Thread-safe.
class Alerter {
 public:
  Alerter(AlertOptions options, store::Store& store);
  ~Alerter() { Stop(); }

  void Start();
  // Delivers nothing more: a POST in progress is ended, batches still queued are dropped (logged
  // with their count, not counted as dead letters).
  void Stop();
  // The store's commit listener: filters and queues; never blocks on the network.
  void OnCommit(const store::CommitNews& news);
  // kspm_alert_* families.
  void FillMetrics(common::metrics::Families& out) const;

  // The payload one webhook gets for `alerts` (JSON objects, see the README), exposed for tests.
  static std::string Payload(const AlertWebhook& hook, const std::string& collector,
                             const std::vector<std::string>& alerts);

 private:
  struct Target {
    AlertWebhook hook;
    std::string label;  // for metrics: the URL's scheme, host and port (never its path: tokens)
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::vector<std::string>> queue;  // batches of alerts as JSON objects
    size_t queued_bytes = 0;                     // of `queue`, under mu
    std::thread thread;
    std::atomic<uint64_t> alerts{0}, delivered{0}, failures{0}, dead{0};
  };
  void Queue(Target& t, std::vector<std::string> batch);
  void Deliver(Target& t);
  // POSTs once; OK, or the error and whether trying again may help.
  absl::Status Post(const Target& t, const std::string& body, bool* retry) const;
  void WatchStale();

  AlertOptions options_;
  store::Store& store_;
  std::vector<std::unique_ptr<Target>> targets_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  std::thread stale_thread_;
  std::set<std::string> stale_;  // cluster/node, under mu_
};

}  // namespace kspm::collector::server

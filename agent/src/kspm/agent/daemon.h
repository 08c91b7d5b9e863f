#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/checks/evaluator.h"
#include "kspm/agent/drift/engine.h"
#include "kspm/agent/held_results.h"
#include "kspm/agent/host/host_view.h"
#include "kspm/agent/scan.h"
#include "kspm/agent/transport/collector_stream.h"
#include "kspm/agent/transport/spool.h"
#include "kspm/common/metrics.h"

namespace kspm::agent {

struct DaemonSettings {
  NodeSettings node;
  std::chrono::seconds interval{300};
  // Each scan sends only the results that differ from what the collector holds (HeldResults);
  // every `resync` the whole report is sent anyway, whether or not anything was sent between.
  std::chrono::seconds resync{3600};
  double jitter = 0.1;  // +-10% of the interval
  std::chrono::milliseconds backoff_min{500};
  std::chrono::milliseconds backoff_max{60000};
  std::chrono::seconds ack_timeout{30};
  // The drift engine's own stat polls (see drift::DriftOptions).
  drift::DriftOptions drift;
  // Drift watching: "" picks the best mode (ebpf, then inotify); "ebpf", "inotify" or "rescan"
  // force one. The host and proc roots are where the watcher looks.
  std::string drift_mode;
  std::string host_root = "/";
  std::string proc_root = "/proc";
};

// Counters for logs, health and tests.
struct DaemonStats {
  std::atomic<uint64_t> scans{0};
  std::atomic<uint64_t> queued{0};  // reports written to the spool
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> connects{0};
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> drift_reports{0};  // partial reports caused by drift events
  std::atomic<uint64_t> full_reports{0};   // reports queued with every result
  std::atomic<uint64_t> heartbeats{0};     // reports queued empty: nothing new to say
  // Wall time of each full scan (read the host, evaluate every check).
  prometheus::Histogram scan_seconds{common::metrics::DurationBuckets()};
  // The last full scan's results by v1::Status (index = enum value).
  std::array<std::atomic<uint64_t>, 7> last_results{};
};

// `kspm-agent run`: scans at start and every interval (with jitter), queues each report in the
// on-disk spool, and a sender thread delivers the spool in order over one long-lived stream,
// reconnecting with exponential backoff and jitter. A report leaves the spool only once the
// collector acknowledges that it is committed.
class AgentDaemon {
 public:
  using ChannelFactory = std::function<std::shared_ptr<grpc::Channel>()>;

  AgentDaemon(const host::HostView& host, const checks::Catalog& catalog,
              checks::Selection selection, DaemonSettings settings, transport::Spool& spool,
              ChannelFactory channels)
      : host_(host),
        catalog_(catalog),
        selection_(std::move(selection)),
        settings_(std::move(settings)),
        spool_(spool),
        channels_(std::move(channels)) {}
  ~AgentDaemon() { Stop(); }

  // Starts the scan loop and the sender.
  void Start();
  // Stops both; what is not delivered stays in the spool. Idempotent.
  void Stop();
  // Asks for a scan now (a collector's rescan request, a drift event).
  void RequestScan();
  // Ends the open stream, or a wait between connections, at once, with the backoff reset: new
  // credentials (a renewed certificate) are used from the next connection on.
  void Reconnect();
  const DaemonStats& stats() const { return stats_; }
  // Empty when ready (a scan done and a stream up), else why not.
  std::string NotReadyReason() const;
  // The drift mode in use (after Start).
  std::string drift_mode() const { return drift_ ? drift_->mode() : "rescan"; }
  uint64_t drift_events_lost() const { return drift_ ? drift_->lost() : 0; }
  uint64_t drift_events() const { return drift_ ? drift_->events() : 0; }
  // kspm_agent_* families (README "Metrics").
  void FillMetrics(common::metrics::Families& out) const;
  const HeldResults& held() const { return held_; }

 private:
  void ScanLoop();
  void SendLoop();
  // Delivers the spool over one connection; returns when the stream breaks or on Stop.
  void Session(const std::shared_ptr<grpc::Channel>& channel);
  // Turns a full scan into what travels: everything, or only what the collector does not hold.
  v1::NodeReport MakeDelta(v1::NodeReport full);
  bool Stopping() const { return stop_.load(); }

  const host::HostView& host_;
  const checks::Catalog& catalog_;
  const checks::Selection selection_;
  const DaemonSettings settings_;
  transport::Spool& spool_;
  ChannelFactory channels_;
  DaemonStats stats_;

  std::unique_ptr<drift::DriftEngine> drift_;
  NodeSettings node_;  // settings_.node with the drift mode in use
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable scan_cv_;   // wakes the scan loop
  std::condition_variable spool_cv_;  // wakes the sender
  bool scan_requested_ = false;
  bool reconnect_now_ = false;
  transport::CollectorStream* session_ = nullptr;  // the open session's stream, under mu_
  uint64_t spool_generation_ = 0;  // bumped under mu_ on every append: no lost wake-ups
  void NotifySpool();
  std::thread scanner_;
  std::thread sender_;

  // What the collector holds: every diff is taken against it.
  HeldResults held_;
};

}  // namespace kspm::agent

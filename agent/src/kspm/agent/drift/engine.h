#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/checks/evaluator.h"
#include "kspm/agent/discovery/discovery.h"
#include "kspm/agent/drift/watcher.h"
#include "kspm/agent/held_results.h"
#include "kspm/agent/host/host_view.h"
#include "kspm/agent/scan.h"
#include "kspm/v1/results.pb.h"

namespace kspm::agent::drift {

// What the checks read, for the watcher: the files each present component uses (config layers,
// named files, manifests, files the last results read) and the comm of every component process.
// `owners` maps each watched path to the components whose checks read it.
WatchSet ComputeWatchSet(const checks::Catalog& catalog, const discovery::HostState& state,
                         const v1::NodeReport& last_full,
                         std::map<std::string, std::set<std::string>>* owners);

struct DriftOptions {
  // Events are collected this long before a re-check, so a burst of writes is one re-check.
  std::chrono::milliseconds settle{10};
  // Watched files with more than one link are stat'ed this often: a change made through another
  // link names a path nobody watches, so neither the kernel filter nor inotify sees it. 0: off.
  std::chrono::milliseconds link_poll{1000};
  // Every watched file is stat'ed this often (finding new links, and as a safety net for any
  // change the watcher missed). 0: off.
  std::chrono::milliseconds sweep{10000};
};

// Turns raw file and process events into re-evaluated results. Events are collected for a short
// settle time, then only the checks of the components that read the changed file or run the
// changed process are evaluated again, on a fresh discovery, and compared with what the
// collector holds (`HeldResults`). What differs goes out as a partial report carrying a
// DriftEvent. Writes are re-checked once more a little later, for writers that finish after
// their open. Besides the watcher's events, the engine stats the watched files itself (see
// DriftOptions) and treats a changed inode, mode, owner, size, time or link count as an event.
class DriftEngine {
 public:
  // Queues a report for the collector; false when it could not be queued.
  using Emit = std::function<bool(const v1::NodeReport&)>;

  DriftEngine(const host::HostView& host, const checks::Catalog& catalog,
              checks::Selection selection, NodeSettings node, HeldResults& held, Emit emit,
              DriftOptions options = {})
      : host_(host),
        catalog_(catalog),
        selection_(std::move(selection)),
        node_(std::move(node)),
        held_(held),
        emit_(std::move(emit)),
        options_(options) {}
  ~DriftEngine() { Stop(); }

  // Starts the best watcher (or `forced`: ebpf, inotify, rescan). In `rescan` mode nothing is
  // watched and only periodic scans see changes. Returns the mode in use.
  std::string Start(const std::string& forced, const std::string& host_root,
                    const std::string& proc_root);
  void Stop();
  // After every full scan: what to watch.
  void SetBaseline(const v1::NodeReport& full);
  std::string mode() const { return mode_; }
  std::string notes() const { return notes_; }
  uint64_t lost() const { return watcher_ ? watcher_->lost() : 0; }
  uint64_t events() const { return events_.load(); }

 private:
  // What stat(2) says of a watched file, compared between polls.
  struct Signature {
    uint64_t dev = 0, ino = 0, nlink = 0;
    uint32_t mode = 0, uid = 0, gid = 0;
    int64_t size = 0, mtime_ns = 0, ctime_ns = 0;
    bool exists = false;
    bool operator==(const Signature&) const = default;
  };
  Signature StatWatched(const std::string& path) const;
  // Stats the watched files (all, or those with several links), and queues an event for each
  // whose signature changed.
  void Poll(bool all);
  // Takes the current signature of the watched files the watcher's events in `batch` named.
  void Resign(const std::vector<RawEvent>& batch);

  void OnEvent(RawEvent ev);
  void Run();
  void PollLoop();
  // Re-evaluates `components`; emits a report when a result differs from what the collector
  // will hold. Returns whether it did.
  bool Reevaluate(const std::set<std::string>& components, const std::vector<RawEvent>& cause);
  std::set<std::string> AffectedComponents(const RawEvent& ev) const;

  const host::HostView& host_;
  const checks::Catalog& catalog_;
  const checks::Selection selection_;
  const NodeSettings node_;
  HeldResults& held_;
  Emit emit_;
  const DriftOptions options_;
  std::string mode_ = "rescan";
  std::string notes_;
  std::unique_ptr<Watcher> watcher_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RawEvent> queue_;
  bool stop_ = false;
  std::thread thread_;
  std::thread poll_thread_;
  std::condition_variable poll_cv_;
  bool sweep_now_ = false;  // guarded by mu_: a new link was seen, sweep at once
  std::atomic<uint64_t> events_{0};
  // Guarded by mu_: who reads which path, the watched paths by inode, and the last signature of
  // every watched path (polled every sweep, or every link poll when it has several links).
  std::map<std::string, std::set<std::string>> owners_;
  // Guarded by mu_: the platform the last full scan chose (its report says it); re-checks judge by
  // the same benchmark without detecting it again on every event.
  std::optional<Platform> platform_;
  std::map<uint64_t, std::set<std::string>> paths_by_inode_;
  std::map<std::string, Signature> signatures_;
};

}  // namespace kspm::agent::drift

#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/checks/evaluator.h"
#include "kspm/agent/discovery/discovery.h"
#include "kspm/agent/drift/watcher.h"
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

// Turns raw file and process events into re-evaluated results. Events are collected for a short
// settle time (so a burst of writes is one re-check), then only the checks of the components
// that read the changed file or run the changed process are evaluated again, on a fresh
// discovery. What changed goes out as a partial report carrying a DriftEvent. Writes are
// re-checked once more a little later, for writers that finish after their open.
class DriftEngine {
 public:
  using Emit = std::function<void(v1::NodeReport)>;

  DriftEngine(const host::HostView& host, const checks::Catalog& catalog,
              checks::Selection selection, NodeSettings node, Emit emit,
              std::chrono::milliseconds settle = std::chrono::milliseconds(10))
      : host_(host),
        catalog_(catalog),
        selection_(std::move(selection)),
        node_(std::move(node)),
        emit_(std::move(emit)),
        settle_(settle) {}
  ~DriftEngine() { Stop(); }

  // Starts the best watcher (or `forced`: ebpf, inotify, rescan). In `rescan` mode nothing is
  // watched and only periodic scans see changes. Returns the mode in use.
  std::string Start(const std::string& forced, const std::string& host_root,
                    const std::string& proc_root);
  void Stop();
  // After every full scan: the results to compare against, and what to watch.
  void SetBaseline(const v1::NodeReport& full);
  std::string mode() const { return mode_; }
  std::string notes() const { return notes_; }
  uint64_t lost() const { return watcher_ ? watcher_->lost() : 0; }
  uint64_t events() const { return events_.load(); }

 private:
  void OnEvent(RawEvent ev);
  void Run();
  // Re-evaluates `components`; emits a report when a result changed. Returns whether it did.
  bool Reevaluate(const std::set<std::string>& components, const std::vector<RawEvent>& cause);
  std::set<std::string> AffectedComponents(const RawEvent& ev) const;

  const host::HostView& host_;
  const checks::Catalog& catalog_;
  const checks::Selection selection_;
  const NodeSettings node_;
  Emit emit_;
  const std::chrono::milliseconds settle_;
  std::string mode_ = "rescan";
  std::string notes_;
  std::unique_ptr<Watcher> watcher_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RawEvent> queue_;
  bool stop_ = false;
  std::thread thread_;
  std::atomic<uint64_t> events_{0};
  // Guarded by mu_: the last result per check|benchmark, and who reads which path.
  std::map<std::string, v1::CheckResult> last_;
  std::map<std::string, std::set<std::string>> owners_;
};

}  // namespace kspm::agent::drift

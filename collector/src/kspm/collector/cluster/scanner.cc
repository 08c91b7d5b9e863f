#include "kspm/collector/cluster/scanner.h"

#include "kspm/collector/cluster/rbac.h"
#include "kspm/collector/cluster/report.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/snapshot_dir.h"
#include "kspm/common/names.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::cluster {
namespace {

class Directory final : public ObjectSource {
 public:
  Directory(std::string dir, bool configmaps) : dir_(std::move(dir)), configmaps_(configmaps) {}
  absl::StatusOr<k8s::Snapshot> Read(std::string*) override {
    k8s::Snapshot s;
    s.set_inspect_config_data(configmaps_);
    if (auto status = k8s::LoadSnapshotDir(dir_, s); !status.ok()) return status;
    CompactOwnedObjects(s);
    return s;
  }
  std::string Describe() const override { return "snapshot " + dir_; }

 private:
  std::string dir_;
  bool configmaps_;
};

class Api final : public ObjectSource {
 public:
  Api(k8s::Connection c, k8s::ClientOptions o, bool configmaps)
      : conn_(std::move(c)), options_(std::move(o)), configmaps_(configmaps) {}
  absl::StatusOr<k8s::Snapshot> Read(std::string* server_version) override {
    auto client = k8s::MakeApiClient(conn_, options_);
    if (!client.ok()) return client.status();
    k8s::Snapshot s;
    s.set_inspect_config_data(configmaps_);
    auto stats = k8s::FetchSnapshot(**client, s);
    if (!stats.ok()) return stats.status();
    CompactOwnedObjects(s);
    if (server_version) *server_version = stats->server_version;
    return s;
  }
  std::string Describe() const override { return "API " + conn_.server; }

 private:
  k8s::Connection conn_;
  k8s::ClientOptions options_;
  bool configmaps_;
};

}  // namespace

absl::Status ObjectSource::With(const Use& use) {
  std::string version;
  auto snapshot = Read(&version);
  if (!snapshot.ok()) return snapshot.status();
  return use(*snapshot, version);
}

std::string ObjectChange::Describe() const {
  return kind + " " + (ns.empty() ? "" : ns + "/") + name + " (" + verb +
         (manager.empty() ? "" : " by " + manager) + ")";
}

std::unique_ptr<ObjectSource> DirectorySource(std::string dir, bool configmaps) {
  return std::make_unique<Directory>(std::move(dir), configmaps);
}

std::unique_ptr<ObjectSource> ApiSource(k8s::Connection connection, k8s::ClientOptions options,
                                        bool configmaps) {
  return std::make_unique<Api>(std::move(connection), std::move(options), configmaps);
}

void PeriodicClusterScan::FillMetrics(common::metrics::Families& out) const {
  const common::metrics::Labels c = {{"cluster", settings_.cluster}};
  out.Histogram("kspm_cluster_scan_duration_seconds",
                "Wall time of one full cluster scan: read, evaluate and commit", c, scan_seconds_);
  const char* scans = "Full cluster scans, by outcome";
  out.Counter("kspm_cluster_scans_total", scans,
              {{"cluster", settings_.cluster}, {"outcome", "ok"}}, scans_ok_.load());
  out.Counter("kspm_cluster_scans_total", scans,
              {{"cluster", settings_.cluster}, {"outcome", "failed"}}, scans_failed_.load());
  out.Gauge("kspm_cluster_scan_objects", "API objects the last full cluster scan read", c,
            static_cast<double>(objects_.load()));
  if (const uint64_t ms = last_success_ms_.load(); ms > 0) {
    out.Gauge("kspm_cluster_scan_last_success_timestamp_seconds",
              "When the last full cluster scan was committed (Unix time)", c,
              static_cast<double>(ms) / 1000.0);
  }
  out.Counter("kspm_cluster_watch_batches_total",
              "Batches of watched API changes evaluated and committed", c, change_batches_.load());
  out.Counter("kspm_cluster_watch_changes_total", "Watched API object changes evaluated", c,
              changes_seen_.load());
  out.Gauge("kspm_cluster_scan_leader",
            "1 where this collector holds the cluster's scan lease (one of the collectors "
            "sharing a PostgreSQL store scans each cluster; always 1 on sqlite)",
            c, leading_.load() ? 1.0 : 0.0);
}

std::string UncoveredSectionReason(const std::string& section) {
  if (section == "2") {
    return "no node reporting to kspm runs etcd: a managed control plane, or etcd hosts without "
           "kspm-agent; the provider's own attestation covers it";
  }
  return "no node reporting to kspm runs the control plane: a managed control plane, or "
         "control-plane nodes without kspm-agent; the provider's own attestation covers it";
}

absl::StatusOr<std::unique_ptr<PeriodicClusterScan>> PeriodicClusterScan::Create(
    std::unique_ptr<ObjectSource> source, ClusterScanSettings settings, store::Store& store) {
  ExceptionSet exceptions;
  if (!settings.exceptions_file.empty()) {
    auto loaded = ExceptionSet::Load(settings.exceptions_file);
    if (!loaded.ok()) return loaded.status();
    exceptions = *std::move(loaded);
  }
  return std::unique_ptr<PeriodicClusterScan>(new PeriodicClusterScan(
      std::move(source), std::move(settings), store, std::move(exceptions)));
}

PeriodicClusterScan::~PeriodicClusterScan() { Stop(); }

void PeriodicClusterScan::Watch() {
  if (watching_) return;
  watching_ = true;
  source_->StartWatching([this] {
    {
      std::lock_guard lock(mu_);
      changes_ = true;
    }
    cv_.notify_all();
  });
}

void PeriodicClusterScan::Start(bool first_inline) {
  // Only the holder of the cluster's lease watches and scans inline; another collector waits
  // (Loop) and starts watching when it takes the lease over, so followers hold no changes.
  auto held = store_.HoldLease("cluster-scan/" + settings_.cluster);
  if (held.ok() && *held) {
    Watch();
  } else {
    first_inline = false;
  }
  if (first_inline) {
    if (auto s = RunOnce(); !s.ok()) spdlog::error("{}", std::string(s.status().message()));
  }
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this, first_inline] { Loop(first_inline); });
}

void PeriodicClusterScan::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  source_->StopWatching();
  if (thread_.joinable()) thread_.join();
  // Requests that came before Stop but after the thread last looked (or with no thread at all).
  std::vector<Done> left;
  {
    std::lock_guard lock(mu_);
    left.swap(pending_);
  }
  for (auto& done : left) {
    done(absl::UnavailableError("the collector is stopping; no cluster scan was run"));
  }
}

void PeriodicClusterScan::Trigger() {
  {
    std::lock_guard lock(mu_);
    triggered_ = true;
  }
  cv_.notify_all();
}

void PeriodicClusterScan::RequestScan(Done done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      pending_.push_back(std::move(done));
      triggered_ = true;
      cv_.notify_all();
      return;
    }
  }
  done(absl::UnavailableError("the collector is stopping; no cluster scan was run"));
}

void PeriodicClusterScan::Loop(bool skip_first) {
  // When the next full scan is due (at once, unless Start ran the first one).
  auto next_full = std::chrono::steady_clock::now();
  if (skip_first) next_full += settings_.interval;
  // Collectors sharing a store (PostgreSQL) scan each cluster one at a time: the one holding its
  // lease. The others wait, checking every kLeaseRetry, and the one that takes over starts with
  // a full scan. Scans asked for (kspmctl scan-cluster) run on any of them.
  const std::string lease = "cluster-scan/" + settings_.cluster;
  bool leading = skip_first;  // Start scanned inline: it held the lease
  for (;;) {
    auto held = store_.HoldLease(lease);
    if (!held.ok()) {
      spdlog::warn("cluster {}: cannot tell whether this collector scans it: {}", settings_.cluster,
                   std::string(held.status().message()));
    }
    const bool now_leading = held.ok() && *held;
    if (now_leading) Watch();
    if (now_leading && !leading) {
      if (lease_checked_) {
        spdlog::info("cluster {}: this collector scans it now (lease taken over)",
                     settings_.cluster);
        next_full = std::chrono::steady_clock::now();
      }
    } else if (!now_leading && (leading || !lease_checked_)) {
      spdlog::info("cluster {}: another collector scans it; this one waits to take over",
                   settings_.cluster);
    }
    leading = now_leading;
    lease_checked_ = true;
    leading_ = leading;
    // The requests waiting now are answered by this scan; later ones by the next.
    // Taken together under the lock: a request that arrives later sets triggered_ again and is
    // answered by the next scan.
    std::vector<Done> waiting;
    bool run = false, changes = false;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;  // Stop answers what is still pending
      const bool due = leading && std::chrono::steady_clock::now() >= next_full;
      if (!leading) changes_ = false;  // the leader sees them; a full scan follows a takeover
      run = due || triggered_ || !pending_.empty();
      if (run) {
        waiting.swap(pending_);
        triggered_ = false;
      }
      changes = changes_ && !run;
      if (changes) changes_ = false;
    }
    if (run) {
      auto outcome = RunOnce();
      if (!outcome.ok()) spdlog::error("{}", std::string(outcome.status().message()));
      for (auto& done : waiting) done(outcome);
      next_full = std::chrono::steady_clock::now() + settings_.interval;
    } else if (changes) {
      // A moment for the rest of a burst (a rollout changes many pods at once) to arrive.
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, settings_.settle, [this] { return stopping_; });
        changes_ = false;
      }
      if (auto outcome = RunChanges(); !outcome.ok()) {
        // The batch was taken: a full scan now covers it.
        spdlog::error("{}; a full scan follows", std::string(outcome.status().message()));
        std::lock_guard lock(mu_);
        triggered_ = true;
      }
    }
    std::unique_lock lock(mu_);
    const auto wake = leading ? next_full : std::chrono::steady_clock::now() + kLeaseRetry;
    cv_.wait_until(lock, wake, [this, leading] {
      return stopping_ || triggered_ || (changes_ && leading) || !pending_.empty();
    });
  }
}

absl::StatusOr<v1::ScanClusterResponse> PeriodicClusterScan::RunOnce() {
  auto failed = [this](const absl::Status& s) {
    scans_failed_++;
    return absl::Status(s.code(), "cluster scan of " + settings_.cluster + " (" +
                                      source_->Describe() + "): " + std::string(s.message()));
  };
  std::lock_guard run(run_mu_);
  const auto started = common::Clock::now();
  rbac_.reset();  // built again by the next change: the objects may be others now
  if (!settings_.exceptions_file.empty()) {
    auto reloaded = ExceptionSet::Load(settings_.exceptions_file);
    if (reloaded.ok()) {
      exceptions_ = *std::move(reloaded);
    } else {
      spdlog::error("exceptions: {}; keeping the last good file",
                    std::string(reloaded.status().message()));
    }
  }
  ScanOptions options;
  options.workloads_per_part = settings_.workloads_per_part;
  options.policy = settings_.policy;
  options.exceptions = &exceptions_;
  options.now = started;
  std::unique_ptr<store::ReportWriter> writer;
  v1::NodeReport header;
  v1::StatusCounts counts;
  size_t results = 0;
  ScanStats stats;
  std::vector<std::string> warnings;
  const auto add = [&](std::vector<v1::CheckResult>&& part, bool more) {
    for (auto& r : part) {
      PrepareClusterResult(r);
      common::AddStatusCount(counts, r.status());
    }
    results += part.size();
    return writer->Add(std::move(part), more);
  };
  const auto scan = [&](const k8s::Snapshot& snapshot, const std::string& version) {
    // Changes waiting are in these objects: this scan covers them.
    (void)source_->TakeChanges();
    for (const auto& e : snapshot.errors()) spdlog::warn("cluster scan: {}", e);
    // Results go to the store check by check as they are evaluated (ReportWriter): a cluster of
    // 150,000 pods has millions of results, and holding them all is what makes scanners run out
    // of memory.
    header = ClusterReportHeader(settings_.cluster, started, started,
                                 static_cast<uint32_t>(settings_.interval.count()), version);
    auto begun = store_.BeginReport(header, started);
    if (!begun.ok()) return begun.status();
    writer = *std::move(begun);
    auto evaluated = EvaluateClusterInParts(snapshot, options, add);
    if (!evaluated.ok()) return evaluated.status();
    stats = *evaluated;
    warnings = snapshot.errors();
    // Sections 1 and 2 are the nodes' to report. When no agent covers them and the API shows no
    // control plane of the cluster's own (a managed cluster), say so here; a self-hosted control
    // plane without an agent is a coverage gap that `kspmctl nodes` shows, not "not
    // applicable".
    const auto self_hosted = SelfHostedControlPlane(snapshot);
    const auto evaluated_at = common::Clock::now();
    auto nodes = store_.Nodes(settings_.cluster, evaluated_at);
    if (self_hosted) {
      spdlog::debug(
          "cluster scan: the control plane runs on the cluster's nodes ({}): sections 1 "
          "and 2 come from their agents",
          *self_hosted);
    } else if (nodes.ok()) {
      // Under the benchmarks the cluster's nodes are judged by (their agents' platform choice).
      std::set<std::string> judged_by;
      for (const auto& n : *nodes) {
        if (!n.identity().platform_benchmark().empty()) {
          judged_by.insert(n.identity().platform_benchmark());
        }
      }
      std::vector<v1::CheckResult> not_applicable;
      for (const auto& section : UncoveredControlPlaneSections(*nodes)) {
        for (auto& r :
             ControlPlaneNotApplicable({section}, UncoveredSectionReason(section), judged_by)) {
          not_applicable.push_back(std::move(r));
        }
      }
      if (!not_applicable.empty()) {
        if (auto s = add(std::move(not_applicable), false); !s.ok()) return s;
      }
    } else {
      spdlog::warn("cluster scan: cannot list nodes: {}", std::string(nodes.status().message()));
    }
    return absl::OkStatus();
  };
  if (auto s = source_->With(scan); !s.ok()) return failed(s);
  const auto finished = common::Clock::now();
  auto committed = writer->Finish(finished);
  if (!committed.ok()) return failed(committed.status());
  scans_ok_++;
  objects_ = stats.objects;
  last_success_ms_ = static_cast<uint64_t>(common::ToUnixMillis(finished));
  scan_seconds_.Observe(std::chrono::duration<double>(finished - started).count());
  spdlog::info("cluster scan of {} ({}): {} objects, {} results ({} written), {} accepted, {} ms",
               settings_.cluster, source_->Describe(), stats.objects, results, committed->written,
               stats.accepted,
               std::chrono::duration_cast<std::chrono::milliseconds>(finished - started).count());
  v1::ScanClusterResponse out;
  out.set_cluster(settings_.cluster);
  out.set_source(source_->Describe());
  out.set_scan_id(header.scan_id());
  *out.mutable_started_at() = header.started_at();
  *out.mutable_finished_at() = common::ToProto(finished);
  out.set_objects(static_cast<uint32_t>(stats.objects));
  out.set_results(static_cast<uint32_t>(results));
  *out.mutable_counts() = counts;
  out.set_accepted(static_cast<uint32_t>(stats.accepted));
  for (const auto& e : warnings) out.add_warnings(e);
  return out;
}

}  // namespace kspm::collector::cluster

#include "kspm/agent/daemon.h"

#include <random>
#include <set>

#include "kspm/common/names.h"
#include "kspm/common/time.h"
#include "spdlog/spdlog.h"

namespace kspm::agent {
namespace {

std::chrono::milliseconds Jittered(std::chrono::milliseconds base, double jitter) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(1.0 - jitter, 1.0 + jitter);
  return std::chrono::milliseconds(static_cast<int64_t>(base.count() * dist(rng)));
}

// Codes after which resending the same report cannot succeed.
bool IsPoison(grpc::StatusCode code) {
  return code == grpc::StatusCode::INVALID_ARGUMENT ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::FAILED_PRECONDITION;
}

}  // namespace

void AgentDaemon::FillMetrics(common::metrics::Families& out) const {
  out.Histogram("kspm_agent_scan_duration_seconds",
                "Wall time of one full scan of the node (read and evaluate every check)", {},
                stats_.scan_seconds);
  for (int s = v1::STATUS_PASS; s <= v1::STATUS_ERROR; ++s) {
    std::string name(common::StatusName(static_cast<v1::Status>(s)));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.Gauge("kspm_agent_results", "Results of the last full scan, by status", {{"status", name}},
              static_cast<double>(stats_.last_results[s].load()));
  }
  out.Counter("kspm_agent_scans_total", "Full scans run", {}, stats_.scans.load());
  out.Counter("kspm_agent_drift_events_total",
              "Changes seen by the drift watcher (file or process) that were checked again", {},
              drift_events());
  out.Counter("kspm_agent_drift_events_lost_total",
              "Drift events the kernel ring buffer or inotify queue dropped (a rescan covers them)",
              {}, drift_events_lost());
  out.Counter("kspm_agent_drift_reports_total", "Reports made by drift events", {},
              stats_.drift_reports.load());
  out.Gauge("kspm_agent_spool_reports", "Reports waiting in the on-disk spool", {},
            static_cast<double>(spool_.size()));
  out.Gauge("kspm_agent_spool_bytes", "Bytes of reports in the on-disk spool", {},
            static_cast<double>(spool_.bytes()));
  out.Counter("kspm_agent_reports_delivered_total", "Reports the collector acknowledged", {},
              stats_.delivered.load());
  out.Counter("kspm_agent_reports_refused_total", "Reports the collector refused", {},
              stats_.rejected.load());
  out.Gauge("kspm_agent_stream_connected", "1 while the stream to the collector is up", {},
            stats_.connected.load() ? 1 : 0);
  out.Counter("kspm_agent_stream_connects_total",
              "Streams opened to the collector (the first and every reconnect)", {},
              stats_.connects.load());
  out.Gauge("kspm_agent_drift_mode_info", "How drift is watched: ebpf, inotify or rescan",
            {{"mode", drift_mode()}}, 1);
}

void AgentDaemon::Start() {
  stop_ = false;
  node_ = settings_.node;
  drift_ = std::make_unique<drift::DriftEngine>(
      host_, catalog_, selection_, settings_.node, held_,
      [this](const v1::NodeReport& drift) {
        v1::NodeReport report = drift;
        report.mutable_node()->set_drift_mode(node_.drift_mode);
        report.set_scan_interval_seconds(static_cast<uint32_t>(settings_.interval.count()));
        if (auto s = spool_.Append(report); !s.ok()) {
          spdlog::error("cannot queue drift report {}: {}", report.scan_id(), s.ToString());
          return false;
        }
        stats_.queued++;
        stats_.drift_reports++;
        NotifySpool();
        return true;
      },
      settings_.drift);
  node_.drift_mode = drift_->Start(settings_.drift_mode, settings_.host_root, settings_.proc_root);
  scanner_ = std::thread([this] { ScanLoop(); });
  sender_ = std::thread([this] { SendLoop(); });
}

void AgentDaemon::Stop() {
  if (stop_.exchange(true)) return;
  scan_cv_.notify_all();
  spool_cv_.notify_all();
  if (scanner_.joinable()) scanner_.join();
  if (drift_) drift_->Stop();
  if (sender_.joinable()) sender_.join();
}

void AgentDaemon::NotifySpool() {
  {
    std::lock_guard lock(mu_);
    ++spool_generation_;
  }
  spool_cv_.notify_all();
}

void AgentDaemon::RequestScan() {
  {
    std::lock_guard lock(mu_);
    scan_requested_ = true;
  }
  scan_cv_.notify_all();
}

std::string AgentDaemon::NotReadyReason() const {
  if (stats_.scans.load() == 0) return "no scan completed yet";
  if (!stats_.connected.load()) return "not connected to the collector";
  return "";
}

v1::NodeReport AgentDaemon::MakeDelta(v1::NodeReport full) {
  std::set<std::string> keys;
  for (const auto& r : full.results()) keys.insert(HeldResults::Key(r));
  // Full when asked for (start, new session, a lost report), when the spool dropped reports,
  // when the resync period is over, and when the collector holds a result this scan no longer
  // has (only a full report deletes it).
  const bool asked = held_.TakeNeedsFull();
  const bool dropped = spool_.TakeDropped();
  const bool due = std::chrono::steady_clock::now() - held_.last_full() >= settings_.resync;
  if (asked || dropped || due || !held_.OnlyHoldsKeysIn(keys)) {
    full.set_full(true);
    return full;
  }
  v1::NodeReport out = full;
  out.clear_results();
  for (auto& r : *full.mutable_results()) {
    if (!held_.Holds(r)) *out.add_results() = std::move(r);
  }
  out.set_full(false);
  return out;
}

void AgentDaemon::ScanLoop() {
  while (!Stopping()) {
    v1::NodeReport baseline;
    {
      // From the read to the queue, no drift report may be built: the spool's order is the
      // order of what was read.
      const auto sequence = held_.Sequence();
      const auto started = std::chrono::steady_clock::now();
      v1::NodeReport report = RunScan(host_, catalog_, selection_, node_);
      stats_.scan_seconds.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      std::array<uint64_t, 7> by_status{};
      for (const auto& r : report.results()) {
        if (r.status() >= 0 && static_cast<size_t>(r.status()) < by_status.size()) {
          by_status[static_cast<size_t>(r.status())]++;
        }
      }
      for (size_t i = 0; i < by_status.size(); ++i) stats_.last_results[i] = by_status[i];
      report.set_scan_interval_seconds(static_cast<uint32_t>(settings_.interval.count()));
      if (drift_) baseline = report;
      report = MakeDelta(std::move(report));
      stats_.scans++;
      // Sent even when empty: it is the node's heartbeat, and the collector counts the node as
      // seen (not stale) by its last report.
      if (auto s = spool_.Append(report); !s.ok()) {
        // The disk refused the report: the next one must be complete to make up for it.
        spdlog::error("cannot queue scan {}: {}", report.scan_id(), s.ToString());
        held_.Lost();
      } else {
        held_.Queued(report);
        stats_.queued++;
        if (report.full()) stats_.full_reports++;
        if (!report.full() && report.results_size() == 0) stats_.heartbeats++;
        spdlog::debug("queued scan {} ({} results, {})", report.scan_id(), report.results_size(),
                      report.full() ? "full" : "changes only");
        NotifySpool();
      }
    }
    if (drift_) drift_->SetBaseline(baseline);
    // Wake for the next scan, or earlier when the resync falls due first (never at once: when
    // the full report could not be queued, the next try waits a whole interval).
    const auto until_resync = std::chrono::duration_cast<std::chrono::milliseconds>(
        held_.last_full() + settings_.resync - std::chrono::steady_clock::now());
    auto wait = Jittered(settings_.interval, settings_.jitter);
    if (until_resync.count() > 0)
      wait = std::min(wait, until_resync + std::chrono::milliseconds(1));
    std::unique_lock lock(mu_);
    scan_cv_.wait_for(lock, wait, [this] { return Stopping() || scan_requested_; });
    scan_requested_ = false;
  }
}

void AgentDaemon::SendLoop() {
  auto backoff = settings_.backoff_min;
  while (!Stopping()) {
    const uint64_t delivered_before = stats_.delivered.load();
    Session(channels_());
    stats_.connected = false;
    if (Stopping()) break;
    // A session that delivered something resets the backoff; a failing one doubles it.
    backoff = stats_.delivered.load() > delivered_before
                  ? settings_.backoff_min
                  : std::min(backoff * 2, settings_.backoff_max);
    const auto wait = Jittered(backoff, 0.2);
    spdlog::info("reconnecting to the collector in {} ms ({} reports queued)", wait.count(),
                 spool_.size());
    std::unique_lock lock(mu_);
    spool_cv_.wait_for(lock, wait, [this] { return Stopping() || reconnect_now_; });
    if (reconnect_now_) backoff = settings_.backoff_min;
    reconnect_now_ = false;
  }
}

void AgentDaemon::Reconnect() {
  {
    std::lock_guard lock(mu_);
    reconnect_now_ = true;
    // An open stream is ended too: the collector then sees the new certificate, and the old one
    // is no longer in use when it expires. Unacked reports are sent again (idempotent).
    if (session_ != nullptr) session_->Cancel();
  }
  spool_cv_.notify_all();
}

void AgentDaemon::Session(const std::shared_ptr<grpc::Channel>& channel) {
  v1::NodeIdentity node;
  node.set_node_name(ResolveNodeName(settings_.node, host_));
  node.set_cluster(settings_.node.cluster);
  node.set_agent_version(KSPM_VERSION);
  node.set_drift_mode(node_.drift_mode);
  auto opened = transport::CollectorStream::Open(
      channel, transport::MakeHello(node, catalog_.version(), settings_.interval));
  if (!opened.ok()) {
    spdlog::warn("collector unreachable: {}", std::string(opened.status().message()));
    return;
  }
  transport::CollectorStream& stream = **opened;
  {
    std::lock_guard lock(mu_);
    session_ = &stream;
  }
  struct Unpublish {
    AgentDaemon* d;
    ~Unpublish() {
      std::lock_guard lock(d->mu_);
      d->session_ = nullptr;
    }
  } unpublish{this};
  stats_.connects++;
  // A new session may be a new collector (or a restored database): the next scan sends a full
  // report.
  held_.Lost();
  stats_.connected = true;

  std::string in_flight;
  while (!Stopping()) {
    uint64_t generation;
    {
      std::lock_guard lock(mu_);
      generation = spool_generation_;
    }
    std::optional<transport::Spool::Item> item = spool_.Front();
    if (!item) {
      std::unique_lock lock(mu_);
      spool_cv_.wait_for(lock, std::chrono::seconds(1),
                         [&] { return Stopping() || spool_generation_ != generation; });
      if (stream.Ended()) break;
      continue;
    }
    in_flight = item->report.scan_id();
    const absl::Status delivered =
        stream.Deliver(item->report, settings_.ack_timeout, [this] { return Stopping(); });
    if (absl::IsUnavailable(delivered)) {
      // Not committed (the collector's store failed): keep it and retry after a pause.
      spdlog::warn("collector did not commit scan {}: {}", in_flight,
                   std::string(delivered.message()));
      break;
    }
    if (!delivered.ok()) break;  // timeout, stream end or stop: retry later
    held_.Acked(item->report);
    spool_.Pop(item->sequence);
    stats_.delivered++;
    in_flight.clear();
  }
  stream.Cancel();
  const grpc::Status status = stream.Finish();
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
    spdlog::warn("stream to the collector ended: {} ({})", status.error_message(),
                 static_cast<int>(status.error_code()));
    if (!in_flight.empty() && IsPoison(status.error_code())) {
      // The collector refuses this report for what it is: resending cannot help.
      if (auto front = spool_.Front(); front && front->report.scan_id() == in_flight) {
        spdlog::error("dropping scan {} that the collector rejects: {}", in_flight,
                      status.error_message());
        spool_.Pop(front->sequence);
        stats_.rejected++;
        // The collector never got it: what it holds is unknown until a full report.
        held_.Lost();
        RequestScan();
      }
    }
  }
}

}  // namespace kspm::agent

#include "kspm/agent/daemon.h"

#include <random>

#include "grpcpp/client_context.h"
#include "kspm/common/time.h"
#include "kspm/v1/agent.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace kspm::agent {
namespace {

std::string ResultKey(const v1::CheckResult& r) { return r.check_id() + "|" + r.benchmark(); }

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

void AgentDaemon::Start() {
  stop_ = false;
  node_ = settings_.node;
  drift_ = std::make_unique<drift::DriftEngine>(
      host_, catalog_, selection_, settings_.node, [this](v1::NodeReport report) {
        report.mutable_node()->set_drift_mode(node_.drift_mode);
        report.set_scan_interval_seconds(static_cast<uint32_t>(settings_.interval.count()));
        if (auto s = spool_.Append(report); !s.ok()) {
          spdlog::error("cannot queue drift report {}: {}", report.scan_id(), s.ToString());
          force_full_ = true;
          return;
        }
        stats_.queued++;
        stats_.drift_reports++;
        NotifySpool();
      });
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
  const bool send_full = force_full_.exchange(false) || spool_.TakeDropped() ||
                         scans_since_full_ + 1 >= settings_.full_every;
  std::map<std::string, std::string> current;
  v1::NodeReport out = full;
  out.clear_results();
  for (auto& r : *full.mutable_results()) {
    std::string bytes;
    r.SerializeToString(&bytes);
    const std::string key = ResultKey(r);
    const auto it = last_sent_.find(key);
    const bool changed = it == last_sent_.end() || it->second != bytes;
    current[key] = std::move(bytes);
    if (send_full || changed) *out.add_results() = std::move(r);
  }
  last_sent_ = std::move(current);
  out.set_full(send_full);
  scans_since_full_ = send_full ? 0 : scans_since_full_ + 1;
  return out;
}

void AgentDaemon::ScanLoop() {
  while (!Stopping()) {
    v1::NodeReport report = RunScan(host_, catalog_, selection_, node_);
    report.set_scan_interval_seconds(static_cast<uint32_t>(settings_.interval.count()));
    if (drift_) drift_->SetBaseline(report);
    report = MakeDelta(std::move(report));
    stats_.scans++;
    if (report.full() || report.results_size() > 0) {
      if (auto s = spool_.Append(report); !s.ok()) {
        // The disk refused the report: the next report must be complete to make up for it.
        spdlog::error("cannot queue scan {}: {}", report.scan_id(), s.ToString());
        force_full_ = true;
      } else {
        stats_.queued++;
        spdlog::debug("queued scan {} ({} results, {})", report.scan_id(), report.results_size(),
                      report.full() ? "full" : "changes only");
        NotifySpool();
      }
    }
    std::unique_lock lock(mu_);
    scan_cv_.wait_for(lock, Jittered(settings_.interval, settings_.jitter),
                      [this] { return Stopping() || scan_requested_; });
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
    spool_cv_.wait_for(lock, wait, [this] { return Stopping(); });
  }
}

void AgentDaemon::Session(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::AgentService::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->Connect(&context);
  v1::AgentMessage hello;
  hello.mutable_hello()->mutable_node()->set_node_name(ResolveNodeName(settings_.node, host_));
  hello.mutable_hello()->mutable_node()->set_cluster(settings_.node.cluster);
  hello.mutable_hello()->mutable_node()->set_agent_version(KSPM_VERSION);
  hello.mutable_hello()->mutable_node()->set_drift_mode(node_.drift_mode);
  hello.mutable_hello()->set_catalog_version(catalog_.version());
  hello.mutable_hello()->set_scan_interval_seconds(
      static_cast<uint32_t>(settings_.interval.count()));
  if (!stream->Write(hello)) {
    const grpc::Status s = stream->Finish();
    spdlog::warn("collector unreachable: {}", s.error_message());
    return;
  }
  stats_.connects++;
  // A new session may be a new collector (or a restored database): start over with a full
  // report.
  force_full_ = true;

  // The reader collects acks and handles the collector's requests.
  std::mutex ack_mu;
  std::condition_variable ack_cv;
  std::map<std::string, v1::Ack> acks;
  bool ended = false;
  std::thread reader([&] {
    v1::CollectorMessage msg;
    while (stream->Read(&msg)) {
      if (msg.has_ack()) {
        std::lock_guard lock(ack_mu);
        acks[msg.ack().scan_id()] = msg.ack();
        ack_cv.notify_all();
      } else if (msg.has_rescan()) {
        spdlog::info("collector asks for a rescan: {}", msg.rescan().reason());
        RequestScan();
      }
    }
    std::lock_guard lock(ack_mu);
    ended = true;
    ack_cv.notify_all();
  });
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
      std::lock_guard ack_lock(ack_mu);
      if (ended) break;
      continue;
    }
    v1::AgentMessage msg;
    *msg.mutable_report() = item->report;
    in_flight = item->report.scan_id();
    if (!stream->Write(msg)) break;
    std::unique_lock lock(ack_mu);
    const bool got = ack_cv.wait_for(lock, settings_.ack_timeout, [&] {
      return ended || acks.contains(in_flight) || Stopping();
    });
    if (!got || !acks.contains(in_flight)) break;  // timeout, stream end or stop: retry later
    const v1::Ack ack = acks[in_flight];
    acks.erase(in_flight);
    lock.unlock();
    if (ack.accepted()) {
      spool_.Pop(item->sequence);
      stats_.delivered++;
      in_flight.clear();
    } else {
      // Not committed (the collector's store failed): keep it and retry after a pause.
      spdlog::warn("collector did not commit scan {}: {}", in_flight, ack.error());
      break;
    }
  }
  context.TryCancel();
  stream->WritesDone();
  reader.join();
  const grpc::Status status = stream->Finish();
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
        force_full_ = true;
      }
    }
  }
}

}  // namespace kspm::agent

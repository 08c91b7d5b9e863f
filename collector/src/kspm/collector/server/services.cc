#include "kspm/collector/server/services.h"

#include <dirent.h>

#include <deque>
#include <mutex>
#include <optional>

#include "kspm/agent/checks/catalog.h"
#include "kspm/collector/server/fleet.h"
#include "kspm/common/certs.h"
#include "kspm/common/identity.h"
#include "kspm/common/render.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

// AgentService: the agents' report streams (identity from the certificate, validation, in-flight
// bounds and rate limit, acks once committed).
namespace kspm::collector::server {

// The common name of an authenticated peer's certificate, or empty.
std::string PeerCommonName(const grpc::CallbackServerContext& context) {
  const auto auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return "";
  const auto values = auth->FindPropertyValues("x509_common_name");
  if (values.empty()) return "";
  return std::string(values.front().data(), values.front().size());
}

// The kspm identity in an authenticated peer's certificate (a subjectAltName URI), or why
// there is none. Unauthenticated peers (--insecure) have none and are judged by the caller.
absl::StatusOr<common::Identity> PeerIdentity(const grpc::CallbackServerContext& context) {
  const auto auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no client certificate");
  }
  absl::Status last = absl::PermissionDeniedError(
      "the certificate (CN " + PeerCommonName(context) +
      ") carries no kspm identity (a spiffe://kspm/... subjectAltName URI with its role); issue "
      "it again with kspmctl certs");
  for (const auto& value : auth->FindPropertyValues("x509_subject_alternative_name")) {
    const std::string_view text(value.data(), value.size());
    if (!text.starts_with("spiffe://kspm/")) continue;
    auto id = common::ParseIdentityUri(text);
    if (id.ok()) return id;
    last = absl::PermissionDeniedError(std::string(id.status().message()));
  }
  return last;
}

namespace {

class ConnectReactor;

// Outlives its reactor: a stream resumed by the budget after it ended finds `reactor` null.
struct ReactorGate {
  std::mutex mu;
  ConnectReactor* reactor = nullptr;
};

class ConnectReactor final
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::CollectorMessage> {
 public:
  ConnectReactor(grpc::CallbackServerContext* context, Ingest& ingest,
                 const AgentServiceLimits& limits, AgentServiceStats& stats, InFlightBudget& budget,
                 NodeReportRate& rate, Fleet* fleet)
      : ingest_(ingest),
        limits_(limits),
        stats_(stats),
        budget_(budget),
        rate_(rate),
        fleet_(fleet),
        peer_(context->peer()),
        cert_name_(PeerCommonName(*context)),
        gate_(std::make_shared<ReactorGate>()) {
    gate_->reactor = this;
    stats_.streams++;
    if (cert_name_.empty() && !limits_.allow_unauthenticated) {
      Fail(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "client certificate required"));
      return;
    }
    if (!cert_name_.empty()) {
      // Only a node's certificate may report, and only for that node in its cluster.
      auto id = PeerIdentity(*context);
      if (!id.ok()) {
        Fail(ToGrpc(id.status()));
        return;
      }
      if (id->role != common::Role::kNode) {
        Fail(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          "a " + std::string(common::RoleName(id->role)) + " certificate ('" +
                              id->name + "') cannot report; the node role is needed"));
        return;
      }
      identity_ = *std::move(id);
      if (fleet_ != nullptr) {
        // Revoked nodes, and certificates issued before a revocation, are refused; an open
        // stream is closed when its node is revoked.
        const Caller caller = CallerOf(*context);
        auto facts = common::ReadCertificate(caller.certificate_pem);
        absl::Status allowed =
            facts.ok() ? fleet_->CheckNode(identity_->cluster, identity_->name, facts->not_before)
                       : facts.status();
        if (!allowed.ok()) {
          stats_.reports_rejected++;
          stats_.refused_not_allowed++;
          Fail(ToGrpc(allowed));
          return;
        }
        stream_id_ = fleet_->RegisterStream(identity_->cluster, identity_->name, facts->not_after,
                                            [context] { context->TryCancel(); });
        fleet_->NoteCertificate(identity_->cluster, identity_->name, caller.certificate_pem);
      }
    }
    ArmRead();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // gRPC says the same "no message" for a half-close and for bytes it could not parse; only
      // the parse clears the message first, so a surviving sentinel means a clean half-close.
      if (!(in_.has_hello() && in_.hello().node().node_name() == kUnread)) {
        stats_.reports_rejected++;
        stats_.refused_malformed++;
        // Logged with the node and peer when the stream closes (MaybeFinishLocked).
        Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "message " + std::to_string(read_count_ + 1) +
                              " could not be parsed as a kspm.v1.AgentMessage (not protobuf, or "
                              "a string field that is not UTF-8)"));
        return;
      }
      std::lock_guard lock(mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    ++read_count_;
    if (!Handle()) return;  // failed: no more reads
    // Back-pressure: a stream with too many reports in flight is read again only once one of
    // them is answered (see the commit callback); and no stream is read while all streams
    // together hold the budget's bytes. What is needed after the unlock is copied first: the
    // stream may end and be deleted as soon as the lock is released.
    InFlightBudget& budget = budget_;
    std::shared_ptr<ReactorGate> gate;
    {
      std::lock_guard lock(mu_);
      read_paused_ = true;
      if (pending_ >= limits_.max_in_flight_per_stream) {
        stats_.reads_paused++;
        return;
      }
      gate = gate_;
    }
    ResumeWhenRoom(budget, std::move(gate));
  }

  // The only way a paused stream is read again once its own limit allows: through the budget,
  // and through the gate, so that a stream that ended meanwhile is left alone.
  static void ResumeWhenRoom(InFlightBudget& budget, std::shared_ptr<ReactorGate> gate) {
    const void* key = gate.get();
    budget.WhenRoom(key, [gate = std::move(gate)] {
      std::lock_guard gate_lock(gate->mu);
      return gate->reactor != nullptr && gate->reactor->ResumeRead();
    });
  }

  // Reads the next message into a sentinel-holding in_ (see OnReadDone).
  void ArmRead() {
    in_.Clear();
    in_.mutable_hello()->mutable_node()->set_node_name(kUnread);
    StartRead(&in_);
  }

  bool ResumeRead() {
    std::lock_guard lock(mu_);
    if (!read_paused_ || finished_ || reads_done_) return false;
    if (pending_ >= limits_.max_in_flight_per_stream) return false;  // its commits resume it
    read_paused_ = false;
    ArmRead();
    return true;
  }

  void OnCancel() override {
    // The client went away while the stream was not being read (paused, or never started).
    std::lock_guard lock(mu_);
    if (read_paused_) {
      read_paused_ = false;
      reads_done_ = true;
      MaybeFinishLocked();
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    outbox_.pop_front();
    if (!ok) outbox_.clear();  // the client is gone; acks cannot be delivered
    if (!outbox_.empty()) {
      StartWrite(&outbox_.front());
    } else {
      writing_ = false;
      MaybeFinishLocked();
    }
  }

  void OnDone() override {
    if (stream_id_ != 0) fleet_->UnregisterStream(stream_id_);
    {
      std::lock_guard gate_lock(gate_->mu);
      gate_->reactor = nullptr;
    }
    delete this;
  }

 private:
  // Returns false when the stream was failed and must not read further.
  bool Handle() {
    switch (in_.body_case()) {
      case v1::AgentMessage::kHello: {
        const std::string& name = in_.hello().node().node_name();
        if (name.empty()) {
          Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "hello without a node name"));
          return false;
        }
        if (identity_ && identity_->name != name) {
          Fail(grpc::Status(
              grpc::StatusCode::PERMISSION_DENIED,
              "certificate of node '" + identity_->name + "' cannot report as '" + name + "'"));
          return false;
        }
        if (auto s = common::CheckNodeName(name); !s.ok()) {
          Fail(ToGrpc(s));
          return false;
        }
        node_ = name;
        spdlog::info("agent stream from node {} ({}), agent {}", node_, peer_,
                     in_.hello().node().agent_version());
        return true;
      }
      case v1::AgentMessage::kReport: {
        if (node_.empty()) {
          Fail(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "report before hello"));
          return false;
        }
        auto report = std::make_shared<v1::NodeReport>(std::move(*in_.mutable_report()));
        grpc::Status s = Validate(*report);
        bool rate_limited = false;
        if (s.ok() && identity_ && !rate_.Admit(identity_->cluster + "/" + node_)) {
          stats_.reports_rate_limited++;
          rate_limited = true;
          s = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                           "node '" + node_ + "' sent more than " +
                               std::to_string(limits_.max_reports_per_minute) +
                               " reports in a minute; the report stays with the agent, which "
                               "sends it again after backing off");
        }
        if (!s.ok()) {
          stats_.reports_rejected++;
          if (!rate_limited) stats_.refused_invalid++;  // failed validation (oversize included)
          spdlog::warn("rejected report {} from node {} ({}): {}", report->scan_id(), node_, peer_,
                       s.error_message());
          Fail(s);
          return false;
        }
        {
          std::lock_guard lock(mu_);
          ++pending_;
        }
        const size_t bytes = report->ByteSizeLong();
        budget_.Acquire(bytes);
        const std::string scan_id = report->scan_id();
        ingest_.Submit(std::move(report), [this, scan_id, bytes](const auto& outcome) {
          budget_.Release(bytes);
          v1::CollectorMessage msg;
          msg.mutable_ack()->set_scan_id(scan_id);
          if (outcome.ok()) {
            msg.mutable_ack()->set_accepted(true);
            if (outcome->duplicate) {
              stats_.duplicates++;
            } else {
              stats_.reports_accepted++;
            }
          } else {
            // Not acked as accepted: the agent keeps the report and retries.
            msg.mutable_ack()->set_accepted(false);
            msg.mutable_ack()->set_error(std::string(outcome.status().message()));
          }
          bool resume = false;
          {
            std::lock_guard lock(mu_);
            if (outcome.ok() || outcome.status().code() != absl::StatusCode::kUnavailable) {
              EnqueueLocked(std::move(msg));
            }
            --pending_;
            resume = read_paused_ && !finished_ && !reads_done_ &&
                     pending_ < limits_.max_in_flight_per_stream;
            if (!resume) {
              MaybeFinishLocked();
              return;
            }
            ++holds_;  // the stream cannot finish (and be deleted) until the budget has the gate
          }
          ResumeWhenRoom(budget_, gate_);
          std::lock_guard lock(mu_);
          --holds_;
          MaybeFinishLocked();
        });
        return true;
      }
      default:
        Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty agent message"));
        return false;
    }
  }

  grpc::Status Validate(const v1::NodeReport& report) const {
    if (report.scan_id().empty()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "report without a scan id"};
    }
    if (report.node().node_name() != node_) {
      return {grpc::StatusCode::PERMISSION_DENIED, "stream of node '" + node_ +
                                                       "' carries a report of node '" +
                                                       report.node().node_name() + "'"};
    }
    for (const auto& d : report.drift()) {
      if (d.node_name() != node_) {
        return {
            grpc::StatusCode::PERMISSION_DENIED,
            "stream of node '" + node_ + "' carries a drift event of node '" + d.node_name() + "'"};
      }
    }
    // The store files an empty cluster under "default", so that is what it is checked as.
    const std::string cluster = store::ClusterName(report.node().cluster());
    if (identity_ && cluster != identity_->cluster) {
      return {grpc::StatusCode::PERMISSION_DENIED,
              "certificate of node '" + node_ + "' belongs to cluster '" + identity_->cluster +
                  "', not '" + cluster + "'"};
    }
    if (static_cast<size_t>(report.results_size()) > limits_.max_results_per_report) {
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "report holds " + std::to_string(report.results_size()) + " results, limit " +
                  std::to_string(limits_.max_results_per_report)};
    }
    for (const auto& r : report.results()) {
      if (r.check_id().empty() || r.benchmark().empty()) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "a result has no check id or benchmark"};
      }
      // Host results only: objects and accepted exceptions are the collector's own to write.
      if (r.has_resource()) {
        return {grpc::StatusCode::PERMISSION_DENIED,
                "result " + r.check_id() +
                    " names a Kubernetes object; nodes report host results only"};
      }
      if (r.has_accepted()) {
        return {grpc::StatusCode::PERMISSION_DENIED,
                "result " + r.check_id() +
                    " is marked accepted; only the collector's exceptions accept findings"};
      }
      if (limits_.known_checks && !limits_.known_checks->contains(r.check_id())) {
        return {grpc::StatusCode::INVALID_ARGUMENT,
                "unknown check id '" + r.check_id() +
                    "' (not in the collector's catalogue; load custom rules with --rules)"};
      }
      if (r.status() == v1::STATUS_UNSPECIFIED || !v1::Status_IsValid(r.status())) {
        return {grpc::StatusCode::INVALID_ARGUMENT,
                "result " + r.check_id() + " has no valid status"};
      }
      if (!v1::Severity_IsValid(r.severity())) {
        return {grpc::StatusCode::INVALID_ARGUMENT,
                "result " + r.check_id() + " has an unknown severity (" +
                    std::to_string(static_cast<int>(r.severity())) + ")"};
      }
    }
    return grpc::Status::OK;
  }

  void Fail(grpc::Status status) {
    std::lock_guard lock(mu_);
    if (status_.ok()) status_ = std::move(status);
    reads_done_ = true;
    MaybeFinishLocked();
  }

  void EnqueueLocked(v1::CollectorMessage msg) {
    if (finished_) return;
    outbox_.push_back(std::move(msg));
    if (!writing_) {
      writing_ = true;
      StartWrite(&outbox_.front());
    }
  }

  // Finishes once reading stopped, every commit answered and every ack written.
  void MaybeFinishLocked() {
    if (finished_ || !reads_done_ || pending_ > 0 || holds_ > 0 || writing_) return;
    finished_ = true;
    if (!status_.ok()) {
      spdlog::warn("closing stream of node {} ({}): {}", node_.empty() ? "?" : node_, peer_,
                   status_.error_message());
    }
    Finish(status_);
  }

  Ingest& ingest_;
  const AgentServiceLimits& limits_;
  AgentServiceStats& stats_;
  InFlightBudget& budget_;
  NodeReportRate& rate_;
  Fleet* const fleet_;
  uint64_t stream_id_ = 0;
  const std::string peer_;
  const std::string cert_name_;
  std::optional<common::Identity> identity_;  // set when the peer has a certificate
  const std::shared_ptr<ReactorGate> gate_;
  static constexpr const char* kUnread = "\x01kspm-unread";
  v1::AgentMessage in_;
  uint64_t read_count_ = 0;
  std::string node_;

  std::mutex mu_;
  std::deque<v1::CollectorMessage> outbox_;
  bool writing_ = false;
  bool reads_done_ = false;
  bool read_paused_ = false;  // not reading: too many reports in flight
  bool finished_ = false;
  int pending_ = 0;
  int holds_ = 0;  // callbacks still using this stream after unlocking
  grpc::Status status_;
};

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::CollectorMessage>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  return new ConnectReactor(context, ingest_, limits_, stats_, budget_, rate_, fleet_);
}

bool NodeReportRate::Admit(const std::string& node) {
  if (per_minute_ <= 0) return true;
  const auto now = std::chrono::steady_clock::now();
  const double per_ms = per_minute_ / 60000.0;
  std::lock_guard lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(node);
  auto& [tokens, at] = it->second;
  if (fresh) {
    tokens = per_minute_;
  } else {
    tokens = std::min<double>(
        per_minute_, tokens + std::chrono::duration<double, std::milli>(now - at).count() * per_ms);
  }
  at = now;
  if (tokens < 1) return false;
  tokens -= 1;
  return true;
}

void InFlightBudget::Acquire(size_t bytes) {
  std::lock_guard lock(mu_);
  used_ += bytes;
  peak_ = std::max(peak_, used_);
}

void InFlightBudget::Release(size_t bytes) {
  std::unique_lock lock(mu_);
  used_ -= std::min(bytes, used_);
  while (used_ < max_bytes_ && !waiters_.empty()) {
    auto [key, wake] = std::move(waiters_.front());
    waiters_.pop_front();
    queued_.erase(key);
    lock.unlock();
    if (wake()) return;
    lock.lock();
  }
}

void InFlightBudget::WhenRoom(const void* key, std::function<bool()> resume) {
  {
    std::lock_guard lock(mu_);
    if (used_ >= max_bytes_) {
      if (queued_.insert(key).second) {
        ++waits_;
        waiters_.emplace_back(key, std::move(resume));
      }
      return;
    }
  }
  (void)resume();
}

size_t InFlightBudget::in_flight() const {
  std::lock_guard lock(mu_);
  return used_;
}

size_t InFlightBudget::peak() const {
  std::lock_guard lock(mu_);
  return peak_;
}

uint64_t InFlightBudget::waits() const {
  std::lock_guard lock(mu_);
  return waits_;
}

size_t InFlightBudget::waiting() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

}  // namespace kspm::collector::server

#include "kspm/agent/transport/collector_stream.h"

namespace kspm::agent::transport {

grpc::ChannelArguments AgentChannelArguments(std::chrono::milliseconds keepalive) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(keepalive.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // By default gRPC stops after two pings without data and sends at most one per 5 minutes: an
  // idle stream (nothing to report for hours) would not notice a dead peer in time.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS,
              static_cast<int>(keepalive.count()));
  return args;
}

v1::Hello MakeHello(const v1::NodeIdentity& node, const std::string& catalog_version,
                    std::chrono::seconds scan_interval) {
  v1::Hello hello;
  *hello.mutable_node() = node;
  hello.set_catalog_version(catalog_version);
  hello.set_scan_interval_seconds(static_cast<uint32_t>(scan_interval.count()));
  return hello;
}

absl::StatusOr<std::unique_ptr<CollectorStream>> CollectorStream::Open(
    const std::shared_ptr<grpc::Channel>& channel, const v1::Hello& hello,
    std::optional<std::chrono::system_clock::time_point> deadline) {
  std::unique_ptr<CollectorStream> s(new CollectorStream());
  s->stub_ = v1::AgentService::NewStub(channel);
  if (deadline) s->context_.set_deadline(*deadline);
  s->stream_ = s->stub_->Connect(&s->context_);
  v1::AgentMessage msg;
  *msg.mutable_hello() = hello;
  if (!s->stream_->Write(msg)) {
    const grpc::Status status = s->Finish();
    return absl::Status(status.ok() ? absl::StatusCode::kUnavailable
                                    : static_cast<absl::StatusCode>(status.error_code()),
                        "collector: " + (status.ok() ? std::string("stream closed at once")
                                                     : status.error_message()));
  }
  s->reader_ = std::thread([p = s.get()] { p->ReadAcks(); });
  return s;
}

CollectorStream::~CollectorStream() {
  if (!final_) {
    Cancel();
    (void)Finish();
  }
}

void CollectorStream::ReadAcks() {
  v1::CollectorMessage msg;
  while (stream_->Read(&msg)) {
    if (!msg.has_ack()) continue;  // nothing else travels this way today
    std::lock_guard lock(mu_);
    acks_[msg.ack().scan_id()] = msg.ack();
    cv_.notify_all();
  }
  std::lock_guard lock(mu_);
  ended_ = true;
  cv_.notify_all();
}

absl::Status CollectorStream::Deliver(const v1::NodeReport& report,
                                      std::chrono::milliseconds ack_timeout,
                                      const std::function<bool()>& stop) {
  const std::string& id = report.scan_id();
  v1::AgentMessage msg;
  *msg.mutable_report() = report;
  if (!stream_->Write(msg)) return absl::AbortedError("stream ended while sending " + id);
  std::unique_lock lock(mu_);
  // The stop predicate is polled: whoever sets it wakes nobody here.
  const auto until = std::chrono::steady_clock::now() + ack_timeout;
  while (!acks_.contains(id) && !ended_) {
    if (stop && stop()) return absl::CancelledError("stopped waiting for the ack of " + id);
    if (std::chrono::steady_clock::now() >= until) {
      return absl::DeadlineExceededError("no ack of " + id + " within " +
                                         std::to_string(ack_timeout.count()) + " ms");
    }
    cv_.wait_until(
        lock, std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
  }
  const auto it = acks_.find(id);
  if (it == acks_.end()) return absl::AbortedError("stream ended before the ack of " + id);
  const v1::Ack ack = std::move(it->second);
  acks_.erase(it);
  if (!ack.accepted()) return absl::UnavailableError(ack.error());
  return absl::OkStatus();
}

void CollectorStream::Cancel() { context_.TryCancel(); }

bool CollectorStream::Ended() const {
  std::lock_guard lock(mu_);
  return ended_;
}

grpc::Status CollectorStream::Finish() {
  if (final_) return *final_;
  if (reader_.joinable()) {
    stream_->WritesDone();
    reader_.join();
  }
  final_ = stream_->Finish();
  return *final_;
}

}  // namespace kspm::agent::transport

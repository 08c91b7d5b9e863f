#include "kspm/agent/transport/client.h"

#include "grpcpp/client_context.h"
#include "spdlog/spdlog.h"

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
namespace {

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      what + ": " + s.error_message());
}

}  // namespace

CollectorClient::~CollectorClient() {
  if (stream_) (void)Close();
}

absl::Status CollectorClient::Connect(const v1::Hello& hello, std::chrono::milliseconds timeout) {
  context_ = std::make_unique<grpc::ClientContext>();
  context_->set_wait_for_ready(false);
  context_->set_deadline(std::chrono::system_clock::now() + timeout);
  stream_ = stub_->Connect(context_.get());
  v1::AgentMessage msg;
  *msg.mutable_hello() = hello;
  if (!stream_->Write(msg)) {
    const grpc::Status s = stream_->Finish();
    stream_.reset();
    return FromGrpc(s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream closed") : s,
                    "collector");
  }
  return absl::OkStatus();
}

absl::Status CollectorClient::Deliver(const v1::NodeReport& report,
                                      std::chrono::milliseconds /*timeout*/) {
  if (!stream_) return absl::FailedPreconditionError("not connected");
  v1::AgentMessage msg;
  *msg.mutable_report() = report;
  if (!stream_->Write(msg)) {
    const grpc::Status s = stream_->Finish();
    stream_.reset();
    return FromGrpc(s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream closed") : s,
                    "sending report " + report.scan_id());
  }
  v1::CollectorMessage reply;
  while (stream_->Read(&reply)) {
    if (!reply.has_ack()) continue;  // configuration and rescan requests are handled elsewhere
    if (reply.ack().scan_id() != report.scan_id()) continue;
    if (!reply.ack().accepted()) {
      return absl::InvalidArgumentError("collector rejected report " + report.scan_id() + ": " +
                                        reply.ack().error());
    }
    return absl::OkStatus();
  }
  const grpc::Status s = stream_->Finish();
  stream_.reset();
  return FromGrpc(
      s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended before ack") : s,
      "waiting for ack of " + report.scan_id());
}

absl::Status CollectorClient::Close() {
  if (!stream_) return absl::OkStatus();
  stream_->WritesDone();
  const grpc::Status s = stream_->Finish();
  stream_.reset();
  return FromGrpc(s, "closing stream");
}

}  // namespace kspm::agent::transport

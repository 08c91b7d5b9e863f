#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "kspm/v1/agent.grpc.pb.h"

namespace kspm::agent::transport {

// Channel settings of the agent's stream: a keepalive ping every `keepalive` (30 s by default)
// even with no call in flight, so a dead collector or NAT entry is noticed; the collector accepts
// pings that often (collector::server::ServerOptions::min_agent_ping_interval).
grpc::ChannelArguments AgentChannelArguments(
    std::chrono::milliseconds keepalive = std::chrono::seconds(30));

// One stream to the collector: Hello, then reports, each acknowledged once committed.
// Not thread-safe: one owner drives it.
class CollectorClient {
 public:
  explicit CollectorClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::AgentService::NewStub(std::move(channel))) {}
  ~CollectorClient();

  // Opens the stream and says hello. Fails with the gRPC status when the collector is unreachable
  // or rejects the node.
  [[nodiscard]] absl::Status Connect(const v1::Hello& hello, std::chrono::milliseconds timeout);
  // Sends a report and waits for its ack. Ok only when the collector committed it; a rejection
  // is InvalidArgument with the collector's reason.
  [[nodiscard]] absl::Status Deliver(const v1::NodeReport& report,
                                     std::chrono::milliseconds timeout);
  // Half-closes the stream and waits for the collector's final status.
  absl::Status Close();

 private:
  std::unique_ptr<v1::AgentService::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::CollectorMessage>> stream_;
};

}  // namespace kspm::agent::transport

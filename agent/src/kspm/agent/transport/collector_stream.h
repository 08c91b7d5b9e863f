#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/channel_arguments.h"
#include "kspm/v1/agent.grpc.pb.h"

namespace kspm::agent::transport {

// Channel settings of the agent's stream: a keepalive ping every `keepalive` (30 s by default)
// even with no call in flight, so a dead collector or NAT entry is noticed; the collector accepts
// pings that often (collector::server::ServerOptions::min_agent_ping_interval).
grpc::ChannelArguments AgentChannelArguments(
    std::chrono::milliseconds keepalive = std::chrono::seconds(30));

// The Hello an agent opens its stream with.
v1::Hello MakeHello(const v1::NodeIdentity& node, const std::string& catalog_version,
                    std::chrono::seconds scan_interval);

// One stream to the collector (AgentService.Connect): a Hello, then reports, each acknowledged
// once the collector committed it. `kspm-agent send` delivers one report over it and `run`
// delivers its spool; both go through Deliver.
//
// A reader thread collects the acks. Deliver is called from one thread at a time; Cancel and
// Ended may be called from any thread.
class CollectorStream {
 public:
  // Opens the stream and says hello. `deadline` bounds the whole stream (`send`); without one
  // the stream lives until it ends or is cancelled (`run`). Fails with the gRPC status when the
  // collector cannot be reached or the stream closes at once.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CollectorStream>> Open(
      const std::shared_ptr<grpc::Channel>& channel, const v1::Hello& hello,
      std::optional<std::chrono::system_clock::time_point> deadline = std::nullopt);
  // Cancels the stream if it is still open and waits for the reader.
  ~CollectorStream();
  CollectorStream(const CollectorStream&) = delete;
  CollectorStream& operator=(const CollectorStream&) = delete;

  // Sends `report` and waits for its ack:
  //   OK                 committed by the collector;
  //   Unavailable        the collector answered that it could not commit it (its store failed;
  //                      the message is its reason), so the same report may be sent again later;
  //   Aborted            the stream ended before the ack (Finish tells why);
  //   DeadlineExceeded   no ack within `ack_timeout`;
  //   Cancelled          `stop` turned true while waiting.
  [[nodiscard]] absl::Status Deliver(const v1::NodeReport& report,
                                     std::chrono::milliseconds ack_timeout,
                                     const std::function<bool()>& stop = nullptr);
  // Ends the stream at once (another thread's Deliver returns Aborted). Thread-safe.
  void Cancel();
  // Whether the collector has ended the stream. Thread-safe.
  bool Ended() const;
  // Half-closes the stream, waits for the reader and returns the collector's final status (OK
  // after a clean close). Idempotent.
  grpc::Status Finish();

 private:
  CollectorStream() = default;
  void ReadAcks();

  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::CollectorMessage>> stream_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, v1::Ack> acks_;  // by scan id, under mu_
  bool ended_ = false;                   // under mu_
  std::optional<grpc::Status> final_;
};

}  // namespace kspm::agent::transport

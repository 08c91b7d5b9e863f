#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace kspm::common {

// A minimal HTTP/1.0 endpoint for Kubernetes probes and load balancers: GET /healthz (the
// process is alive) and GET /readyz (the component is ready). Anything else is 404; anything
// that is not a GET is 405. One short request per connection; a slow client gets 2 s.
class HealthServer {
 public:
  // Returns an empty string when ready, else the reason it is not.
  using ReadyCheck = std::function<std::string()>;
  // Lines added to every /readyz answer (state an operator wants to see, such as free space),
  // ready or not.
  using Details = std::function<std::string()>;

  // Binds `listen` (HOST:PORT, port 0 picks one) and serves on a background thread.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HealthServer>> Start(
      const std::string& listen, ReadyCheck ready, Details details = nullptr);
  ~HealthServer();

  int port() const { return port_; }

 private:
  HealthServer() = default;
  void Serve();

  int fd_ = -1;
  int port_ = 0;
  ReadyCheck ready_;
  Details details_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kspm::common

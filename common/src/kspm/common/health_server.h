#pragma once

#include <netinet/in.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

class CivetServer;
class CivetHandler;

namespace kspm::common {

// The HTTP endpoint for Kubernetes probes, load balancers and Prometheus, on civetweb (the server
// prometheus-cpp's Exposer is built on; the Exposer itself serves nothing but metrics):
//   GET /healthz, /livez  the process is alive
//   GET /readyz           the component is ready (503 with the reason when not)
//   GET /metrics          the Prometheus text exposition format (prometheus-cpp's serializer)
// Anything else is 404; a method other than GET or HEAD is 405. Requests time out after 2 s.
class HealthServer {
 public:
  // Returns an empty string when ready, else the reason it is not.
  using ReadyCheck = std::function<std::string()>;
  // Lines added to every /readyz answer (state an operator wants to see, such as free space),
  // ready or not.
  using Details = std::function<std::string()>;

  // Binds `listen` (HOST:PORT, port 0 picks one; `*` or an empty host: every IPv4 address) and
  // serves on civetweb's threads. `metrics` are collected on each scrape of /metrics, in order;
  // they must outlive the server.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HealthServer>> Start(
      const std::string& listen, ReadyCheck ready, Details details = nullptr,
      std::vector<std::shared_ptr<prometheus::Collectable>> metrics = {});
  ~HealthServer();

  int port() const { return port_; }

 private:
  HealthServer() = default;

  int port_ = 0;
  in_addr_t address_ = 0;  // the bound IPv4 address, network order (0: every address)
  std::vector<std::unique_ptr<CivetHandler>> handlers_;
  std::unique_ptr<CivetServer> server_;
};

}  // namespace kspm::common

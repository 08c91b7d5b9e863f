#include "kspm/common/health_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <sstream>
#include <thread>

#include "CivetServer.h"
#include "prometheus/text_serializer.h"
#include "spdlog/spdlog.h"

namespace kspm::common {
namespace {

void Reply(mg_connection* conn, int code, const char* reason, const char* type,
           const std::string& body, bool head) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            code, reason, type, body.size());
  if (!head) mg_write(conn, body.data(), body.size());
}

// One path: GET and HEAD answer `answer`'s code and body; other methods are 405.
class Endpoint : public CivetHandler {
 public:
  struct Answer {
    int code = 200;
    const char* reason = "OK";
    const char* type = "text/plain; charset=utf-8";
    std::string body;
  };
  explicit Endpoint(std::function<Answer()> answer) : answer_(std::move(answer)) {}

  bool handleGet(CivetServer*, mg_connection* conn) override { return Serve(conn, false); }
  bool handleHead(CivetServer*, mg_connection* conn) override { return Serve(conn, true); }
  bool handlePost(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }
  bool handlePut(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }
  bool handleDelete(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }
  bool handlePatch(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }
  bool handleOptions(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }

 private:
  bool Serve(mg_connection* conn, bool head) {
    const Answer a = answer_();
    Reply(conn, a.code, a.reason, a.type, a.body, head);
    return true;
  }
  static bool NotAllowed(mg_connection* conn) {
    Reply(conn, 405, "Method Not Allowed", "text/plain; charset=utf-8", "only GET\n", false);
    return true;
  }
  std::function<Answer()> answer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(
    const std::string& listen, ReadyCheck ready, Details details,
    std::vector<std::shared_ptr<prometheus::Collectable>> metrics) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError("health address '" + listen + "' is not HOST:PORT");
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.empty() || host == "*") host = "0.0.0.0";
  in_addr parsed{};
  if (::inet_pton(AF_INET, host.c_str(), &parsed) != 1) {
    return absl::InvalidArgumentError("health address '" + listen + "': not an IPv4 address");
  }
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
      port.size() > 5 || std::stoi(port) > 65535) {
    return absl::InvalidArgumentError("health address '" + listen + "': bad port");
  }
  std::unique_ptr<HealthServer> s(new HealthServer());
  // Four threads: probes, scrapes and a slow client or two (each held at most 2 s).
  const std::vector<std::string> options = {
      "listening_ports",    host + ":" + port,
      "num_threads",        "4",
      "request_timeout_ms", "2000",
      "enable_keep_alive",  "no",
  };
  try {
    s->server_ = std::make_unique<CivetServer>(options);
  } catch (const std::exception& e) {
    return absl::UnavailableError("cannot listen on " + listen +
                                  " for health checks and metrics: " + e.what() +
                                  " (address in use?)");
  }
  int ports[1] = {0};
  mg_server_port info[1]{};
  if (mg_get_server_ports(s->server_->getContext(), 1, info) >= 1) ports[0] = info[0].port;
  s->port_ = ports[0];
  s->address_ = parsed.s_addr;

  auto add = [&](const char* uri, std::function<Endpoint::Answer()> answer) {
    s->handlers_.push_back(std::make_unique<Endpoint>(std::move(answer)));
    s->server_->addHandler(uri, s->handlers_.back().get());
  };
  add("/healthz$", [] { return Endpoint::Answer{.body = "ok\n"}; });
  add("/livez$", [] { return Endpoint::Answer{.body = "ok\n"}; });
  add("/readyz$", [ready = std::move(ready), details = std::move(details)] {
    const std::string why = ready ? ready() : "";
    const std::string more = details ? details() : "";
    if (why.empty()) return Endpoint::Answer{.body = "ready\n" + more};
    return Endpoint::Answer{
        .code = 503, .reason = "Service Unavailable", .body = why + "\n" + more};
  });
  add("/metrics$", [metrics = std::move(metrics)] {
    std::vector<prometheus::MetricFamily> families;
    for (const auto& source : metrics) {
      auto more = source->Collect();
      families.insert(families.end(), std::make_move_iterator(more.begin()),
                      std::make_move_iterator(more.end()));
    }
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, families);
    return Endpoint::Answer{.type = "text/plain; version=0.0.4; charset=utf-8", .body = out.str()};
  });
  // Everything else (civetweb matches "/" for any path no other handler takes).
  add("/", [] {
    return Endpoint::Answer{
        .code = 404, .reason = "Not Found", .body = "try /healthz, /readyz or /metrics\n"};
  });
  return s;
}

HealthServer::~HealthServer() {
  if (!server_) return;
  // civetweb's listener polls for 2 s between looks at its stop flag; a connection wakes it, so
  // the stop takes milliseconds, not seconds (every collector and agent shutdown waits on it).
  std::atomic<bool> closed{false};
  const in_addr_t to = address_ == htonl(INADDR_ANY) ? htonl(INADDR_LOOPBACK) : address_;
  std::thread waker([&closed, port = port_, to] {
    while (!closed.load()) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = to;
      (void)::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  server_->close();  // joins civetweb's threads before the handlers go
  closed = true;
  waker.join();
}

}  // namespace kspm::common

#include "kspm/common/health_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kspm::common {
namespace {

void Reply(int fd, int code, const char* reason, const std::string& body) {
  const std::string response =
      "HTTP/1.0 " + std::to_string(code) + " " + reason +
      "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  (void)!::send(fd, response.data(), response.size(), MSG_NOSIGNAL);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& listen,
                                                                  ReadyCheck ready,
                                                                  Details details) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError("health address '" + listen + "' is not HOST:PORT");
  }
  std::string host = listen.substr(0, colon);
  if (host.empty() || host == "*") host = "0.0.0.0";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(listen.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError("health address '" + listen + "': not an IPv4 address");
  }
  std::unique_ptr<HealthServer> s(new HealthServer());
  s->ready_ = std::move(ready);
  s->details_ = std::move(details);
  s->fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(s->fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(s->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(s->fd_, 16) != 0) {
    const std::string err = std::strerror(errno);
    return absl::UnavailableError("cannot listen on " + listen + " for health checks: " + err);
  }
  socklen_t len = sizeof addr;
  ::getsockname(s->fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  s->port_ = ntohs(addr.sin_port);
  s->thread_ = std::thread([raw = s.get()] { raw->Serve(); });
  return s;
}

HealthServer::~HealthServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

void HealthServer::Serve() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    timeval timeout{2, 0};
    ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    char buf[1024];
    const ssize_t n = ::recv(client, buf, sizeof buf - 1, 0);
    if (n > 0) {
      const std::string request(buf, static_cast<size_t>(n));
      const size_t sp1 = request.find(' ');
      const size_t sp2 = sp1 == std::string::npos ? sp1 : request.find(' ', sp1 + 1);
      const std::string method = request.substr(0, sp1);
      const std::string path =
          sp2 == std::string::npos ? "" : request.substr(sp1 + 1, sp2 - sp1 - 1);
      if (method != "GET" && method != "HEAD") {
        Reply(client, 405, "Method Not Allowed", "only GET\n");
      } else if (path == "/healthz" || path == "/livez") {
        Reply(client, 200, "OK", "ok\n");
      } else if (path == "/readyz") {
        const std::string why = ready_ ? ready_() : "";
        const std::string more = details_ ? details_() : "";
        if (why.empty()) {
          Reply(client, 200, "OK", "ready\n" + more);
        } else {
          Reply(client, 503, "Service Unavailable", why + "\n" + more);
        }
      } else {
        Reply(client, 404, "Not Found", "try /healthz or /readyz\n");
      }
    }
    ::close(client);
  }
}

}  // namespace kspm::common

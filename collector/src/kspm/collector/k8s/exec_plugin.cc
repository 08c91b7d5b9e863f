// Client-go credential plugins: the command named by a kubeconfig user's `exec`, run without a
// terminal, its ExecCredential read from stdout.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>

#include "absl/strings/escaping.h"
#include "kspm/collector/k8s/api_client.h"

extern char** environ;

namespace kspm::collector::k8s {
namespace {

// Output beyond this is not a credential; the plugin is stopped.
constexpr size_t kMaxOutput = 1 << 20;

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  void Close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// The end of a plugin's stderr, on one line, for messages.
std::string Tail(const std::string& err) {
  std::string t = err.size() > 600 ? "..." + err.substr(err.size() - 600) : err;
  for (auto& c : t) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!t.empty() && t.back() == ' ') t.pop_back();
  return t;
}

// KUBERNETES_EXEC_INFO: what the plugin is asked for (client-go's ExecCredential spec).
std::string ExecInfo(const ExecPlugin& plugin, const Connection& cluster) {
  nlohmann::json spec = {{"interactive", false}};
  if (plugin.provide_cluster_info) {
    nlohmann::json c = {{"server", cluster.server},
                        {"insecure-skip-tls-verify", cluster.insecure_skip_tls_verify}};
    if (!cluster.ca_pem.empty())
      c["certificate-authority-data"] = absl::Base64Escape(cluster.ca_pem);
    spec["cluster"] = std::move(c);
  }
  return nlohmann::json{
      {"apiVersion", plugin.api_version}, {"kind", "ExecCredential"}, {"spec", std::move(spec)}}
      .dump();
}

std::optional<std::chrono::system_clock::time_point> ParseTimestamp(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return std::nullopt;
  if (*end == '.') {  // fractional seconds
    ++end;
    while (*end >= '0' && *end <= '9') ++end;
  }
  if (*end != 'Z' || end[1] != '\0') return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

absl::StatusOr<ExecCredential> ParseCredential(const ExecPlugin& plugin, const std::string& out) {
  const std::string& what = plugin.description + ": exec plugin " + plugin.command;
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(out);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(what + " printed something that is not JSON: " + e.what());
  }
  if (!doc.is_object() || doc.value("kind", "") != "ExecCredential") {
    return absl::InvalidArgumentError(what + " printed JSON that is not an ExecCredential");
  }
  if (doc.value("apiVersion", "") != plugin.api_version) {
    return absl::InvalidArgumentError(what + " answered with apiVersion '" +
                                      doc.value("apiVersion", "") + "'; the kubeconfig asks for '" +
                                      plugin.api_version + "'");
  }
  const auto status = doc.find("status");
  if (status == doc.end() || !status->is_object()) {
    return absl::InvalidArgumentError(what + " printed an ExecCredential without a status");
  }
  auto text = [&](const char* key) {
    const auto it = status->find(key);
    return it != status->end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  ExecCredential c;
  c.token = text("token");
  c.client_cert_pem = text("clientCertificateData");
  c.client_key_pem = text("clientKeyData");
  if (c.token.empty() && (c.client_cert_pem.empty() || c.client_key_pem.empty())) {
    return absl::InvalidArgumentError(
        what + " printed an ExecCredential with neither a token nor a client certificate and key");
  }
  if (const std::string expiry = text("expirationTimestamp"); !expiry.empty()) {
    c.expires = ParseTimestamp(expiry);
    if (!c.expires) {
      return absl::InvalidArgumentError(what + ": expirationTimestamp '" + expiry +
                                        "' is not an RFC 3339 time in UTC");
    }
  }
  return c;
}

}  // namespace

absl::StatusOr<ExecCredential> RunExecPlugin(const ExecPlugin& plugin, const Connection& cluster,
                                             std::chrono::milliseconds timeout) {
  const std::string what = plugin.description + ": exec plugin " + plugin.command;
  // Environment: the collector's, the kubeconfig's additions, and the request.
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : plugin.env) env[k] = v;
  env["KUBERNETES_EXEC_INFO"] = ExecInfo(plugin, cluster);
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = {plugin.command};
  args.insert(args.end(), plugin.args.begin(), plugin.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError(what + ": pipe failed");
  Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return absl::InternalError(what + ": pipe failed");
  Fd err_read(err_pipe[0]), err_write(err_pipe[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_write.fd, STDERR_FILENO);
  // Its own process group, so that a timeout stops the plugin and whatever it started; no
  // blocked signals (the collector blocks SIGTERM, SIGINT and SIGHUP for its signal thread) and
  // default dispositions.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  // posix_spawnp searches the collector's PATH for a bare name, as client-go does.
  const int rc =
      ::posix_spawnp(&pid, plugin.command.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  out_write.Close();
  err_write.Close();
  if (rc != 0) {
    std::string msg = what + ": cannot run it: " + std::strerror(rc);
    if (rc == ENOENT && !plugin.install_hint.empty()) msg += " (" + Tail(plugin.install_hint) + ")";
    return absl::FailedPreconditionError(msg);
  }

  // Read both pipes until they close, and reap the plugin, all within the deadline. Once the
  // plugin has exited, what its leftover children still hold open is given a moment, no more.
  std::string out, err;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::optional<std::chrono::steady_clock::time_point> exited_at;
  bool timed_out = false, too_big = false, reaped = false;
  int status = 0;
  bool out_open = true, err_open = true;
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (!reaped) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        reaped = true;
        exited_at = now;
      }
    }
    if (!out_open && !err_open && reaped) break;
    if (exited_at && now - *exited_at > std::chrono::milliseconds(200)) break;
    if (now >= deadline) {
      timed_out = !reaped;
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    pollfd fds[2] = {{out_open ? out_read.fd : -1, POLLIN, 0},
                     {err_open ? err_read.fd : -1, POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(std::min<long>(left.count(), 50)));
    if (n < 0 && errno != EINTR) break;
    char buf[8192];
    for (int i = 0; i < 2 && n > 0; ++i) {
      if (fds[i].revents == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got <= 0) {
        (i == 0 ? out_open : err_open) = false;
        continue;
      }
      std::string& sink = i == 0 ? out : err;
      sink.append(buf, static_cast<size_t>(got));
      if (sink.size() > kMaxOutput) too_big = true;
    }
    if (too_big) break;
  }
  // The group: the plugin if it still runs, and what it left holding our pipes. (While any member
  // lives, the kernel keeps the group id from being reused.)
  if (!reaped || out_open || err_open) ::kill(-pid, SIGKILL);
  if (!reaped) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (timed_out) {
    return absl::DeadlineExceededError(what + ": no answer within " +
                                       std::to_string(timeout.count() / 1000) +
                                       " s; it was stopped");
  }
  if (too_big) return absl::InvalidArgumentError(what + ": printed more than 1 MiB");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status)
                                ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                : "was killed by signal " + std::to_string(WTERMSIG(status));
    return absl::UnauthenticatedError(what + " " + how + (err.empty() ? "" : ": " + Tail(err)));
  }
  return ParseCredential(plugin, out);
}

}  // namespace kspm::collector::k8s

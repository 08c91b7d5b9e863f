#include <signal.h>

#include <iostream>

#include "commands/commands.h"
#include "grpcpp/create_channel.h"
#include "kspm/agent/daemon.h"
#include "kspm/agent/transport/collector_stream.h"
#include "kspm/agent/transport/enroll.h"
#include "kspm/common/health_server.h"
#include "kspm/common/lifecycle.h"
#include "spdlog/spdlog.h"

// `kspm-agent run`: the node agent, started and stopped as ordered steps.
namespace kspm::agent::commands {
namespace {

// What the steps build, in the order they build it; the steps' stops tear it down in reverse.
struct Agent {
  AgentConfig config;
  sigset_t signals{};
  std::optional<checks::Catalog> catalog;
  std::optional<checks::Selection> selection;
  std::unique_ptr<host::GuardedHostView> host;
  std::unique_ptr<transport::Spool> spool;
  DaemonSettings settings;
  // The enrolled identity, when the node has no certificate of its own.
  bool enrolled = false;
  transport::EnrollSettings enroll;
  std::chrono::system_clock::time_point renew_at{};
  common::TlsFiles tls;
  std::shared_ptr<grpc::ChannelCredentials> last_creds;
  std::unique_ptr<AgentDaemon> daemon;
  std::unique_ptr<transport::CertificateKeeper> keeper;
  std::shared_ptr<common::metrics::Source> metrics;
  std::unique_ptr<common::HealthServer> health;
};

// Without a certificate but with a credential to get one (or one got earlier), the node enrols:
// until it has a valid certificate, retrying with backoff; a signal meanwhile stops the agent.
absl::Status Enrol(Agent& a) {
  const AgentConfig& c = a.config;
  a.tls = c.tls;
  a.enroll.collector = c.collector;
  a.enroll.node_name = ResolveNodeName(a.settings.node, *a.host);
  a.enroll.identity_dir = c.state_dir + "/identity";
  a.enroll.ca_file = c.tls.ca;
  a.enroll.ca_hash = c.ca_hash;
  a.enroll.token_file = c.enroll_token_file;
  a.enroll.join_token = c.join_token;
  a.enrolled = !c.tls.insecure && c.tls.cert.empty() && c.tls.key.empty() &&
               (!c.enroll_token_file.empty() || !c.join_token.empty() ||
                transport::CurrentIdentity(a.enroll).ok());
  if (!a.enrolled) return absl::OkStatus();
  auto renew_at = transport::CurrentIdentity(a.enroll);
  std::chrono::milliseconds backoff{1000};
  while (!renew_at.ok() || *renew_at <= std::chrono::system_clock::now()) {
    if (renew_at.ok() || absl::IsNotFound(renew_at.status()) ||
        absl::IsFailedPrecondition(renew_at.status())) {
      // None yet, expired, or due: enrol (renewing with the current one when it is valid).
      const bool renew = renew_at.ok();
      renew_at = transport::EnrollOnce(a.enroll, renew);
      if (renew_at.ok()) break;
    }
    spdlog::error("{} (retrying in {} s)", std::string(renew_at.status().message()),
                  backoff.count() / 1000);
    const timespec wait{static_cast<time_t>(backoff.count() / 1000), 0};
    if (sigtimedwait(&a.signals, nullptr, &wait) > 0) {
      return absl::CancelledError("stopped before enrolment completed");
    }
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(60));
    renew_at = absl::NotFoundError("retry");
  }
  a.renew_at = *renew_at;
  a.tls = transport::IdentityFiles(a.enroll);
  return absl::OkStatus();
}

std::vector<common::Lifecycle::Step> Steps(Agent& a) {
  const AgentConfig& c = a.config;
  return {
      {"signals",
       [&a] {
         // SIGTERM and SIGINT are taken by the main thread with sigwait; no other thread sees
         // them (threads started later inherit the mask).
         sigemptyset(&a.signals);
         sigaddset(&a.signals, SIGTERM);
         sigaddset(&a.signals, SIGINT);
         pthread_sigmask(SIG_BLOCK, &a.signals, nullptr);
         return absl::OkStatus();
       },
       nullptr},
      {"catalogue",
       [&a, &c] {
         a.catalog = LoadCatalog(c.rules_dir);
         a.selection = MakeSelection(*a.catalog, c.benchmarks, c.only, c.skip);
         a.host = MakeHost(c.host_root, c.proc_root, c.read_timeout_seconds);
         return absl::OkStatus();
       },
       nullptr},
      {"spool",
       [&a, &c] {
         auto spool = transport::Spool::Open(c.state_dir + "/spool", c.spool_max_bytes, 10000);
         if (!spool.ok()) return spool.status();
         a.spool = *std::move(spool);
         return absl::OkStatus();
       },
       nullptr},
      {"identity",
       [&a, &c] {
         a.settings.node.cluster = c.cluster;
         a.settings.node.node_name = c.node_name;
         a.settings.drift_mode = c.drift_mode;
         a.settings.host_root = c.host_root;
         a.settings.proc_root =
             c.proc_root.empty() ? host::JoinUnderRoot(c.host_root, "/proc") : c.proc_root;
         a.settings.interval = c.interval;
         a.settings.resync = c.resync;
         if (auto s = Enrol(a); !s.ok()) return s;
         auto creds = common::MakeClientCredentials(a.tls);
         if (!creds.ok()) return creds.status();
         a.last_creds = *creds;
         return absl::OkStatus();
       },
       nullptr},
      {"daemon",
       [&a, &c] {
         // Credentials are read again at every connection, so a renewed certificate serves from
         // the next one on; when the files cannot be read (a renewal half-written), the last
         // good ones do.
         const grpc::ChannelArguments args = transport::AgentChannelArguments();
         a.daemon = std::make_unique<AgentDaemon>(
             *a.host, *a.catalog, *a.selection, a.settings, *a.spool, [&a, &c, args] {
               if (auto fresh = common::MakeClientCredentials(a.tls); fresh.ok()) {
                 a.last_creds = *fresh;
               } else {
                 spdlog::warn("TLS files: {}; using the last good ones",
                              std::string(fresh.status().message()));
               }
               return grpc::CreateCustomChannel(c.collector, a.last_creds, args);
             });
         a.daemon->Start();
         return absl::OkStatus();
       },
       [&a] { a.daemon->Stop(); }},
      {"certificate renewal",
       [&a] {
         if (a.enrolled) {
           a.keeper = std::make_unique<transport::CertificateKeeper>(
               a.enroll, a.renew_at, [&a] { a.daemon->Reconnect(); });
         }
         return absl::OkStatus();
       },
       [&a] {
         if (a.keeper) a.keeper->Stop();
       }},
      {"health listener",
       [&a, &c] {
         if (c.health_listen.empty()) return absl::OkStatus();
         a.metrics = std::make_shared<common::metrics::Source>(
             [&a](common::metrics::Families& out) { a.daemon->FillMetrics(out); });
         auto started =
             common::HealthServer::Start(c.health_listen,
                                         [&a] {
                                           std::string why = a.daemon->NotReadyReason();
                                           return why.empty() ? a.host->BlockedReason() : why;
                                         },
                                         nullptr, {a.metrics});
         if (!started.ok()) return started.status();
         a.health = *std::move(started);
         return absl::OkStatus();
       },
       [&a] { a.health.reset(); }},
  };
}

}  // namespace

int RunDaemonCommand(const AgentConfigSources& sources) {
  Agent a;
  auto config = LoadAgentConfig(sources);
  if (!config.ok()) Die(std::string(config.status().message()));
  a.config = *std::move(config);
  const AgentConfig& c = a.config;
  if (c.tls.insecure) {
    spdlog::warn(
        "--insecure: reports travel in plaintext without authentication; use this "
        "only on loopback for development");
  }
  if (c.full_every_given) {
    spdlog::warn(
        "--full-every is ignored: scans send what the collector does not hold, "
        "and a full report every --resync seconds ({})",
        c.resync.count());
  }
  common::Lifecycle life;
  if (absl::Status s = life.Start(Steps(a)); !s.ok()) {
    if (absl::IsCancelled(s)) {
      spdlog::info("{}", std::string(s.message()));
      return 0;
    }
    Die(std::string(s.message()));
  }
  spdlog::info("kspm-agent {} for node {} (cluster {}), collector {}, every {} s, spool {}",
               KSPM_VERSION, ResolveNodeName(a.settings.node, *a.host), c.cluster, c.collector,
               c.interval.count(), c.state_dir + "/spool");
  int sig = 0;
  sigwait(&a.signals, &sig);
  spdlog::info("received {}, stopping; {} reports stay queued",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", a.spool->size());
  life.Stop();
  return 0;
}

}  // namespace kspm::agent::commands

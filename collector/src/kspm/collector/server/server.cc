#include "kspm/collector/server/server.h"

#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "kspm/common/certs.h"
#include "kspm/common/names.h"
#include "kspm/common/time.h"
#include "kspm/common/tls.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::server {

std::string DescribeSpace(const store::StoreSpace& space) {
  auto mib = [](int64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; };
  std::string out =
      "store " + space.path + ": " +
      (space.free_bytes < 0 ? std::string("free space unknown") : mib(space.free_bytes) + " free") +
      ", log " + mib(space.wal_bytes);
  if (space.tight) out += " (tight: the log is truncated after every commit)";
  out += "\n";
  if (!space.full_since.empty()) {
    out += "store DISK FULL since " + space.full_since +
           ": commits fail, agents keep their reports and resend them once space is freed\n";
  }
  return out;
}

std::string DescribeCertificate(const std::string& path) {
  if (path.empty()) return "";
  auto pem = common::ReadTextFile(path, "certificate");
  if (!pem.ok()) return std::string(pem.status().message()) + "\n";
  auto facts = common::ReadCertificate(*pem);
  if (!facts.ok()) return path + ": " + std::string(facts.status().message()) + "\n";
  std::string warning;
  const auto lifetime =
      common::CheckCertificateLifetime(*pem, path, std::chrono::system_clock::now(), &warning);
  if (!lifetime.ok()) return "WARNING " + std::string(lifetime.message()) + "\n";
  if (!warning.empty()) return "WARNING " + warning + "\n";
  return "certificate " + path + ": valid until " + common::FormatRfc3339(facts->not_after) + "\n";
}

namespace {

// Why the collector is not ready yet, set by the thread that opens the store and read by the
// health server's threads.
class WaitingReason {
 public:
  explicit WaitingReason(std::string why) : why_(std::move(why)) {}
  void Set(std::string why) {
    std::lock_guard lock(mu_);
    why_ = std::move(why);
  }
  std::string Get() {
    std::lock_guard lock(mu_);
    return why_;
  }

 private:
  std::mutex mu_;
  std::string why_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CollectorServer>> CollectorServer::Start(
    const ServerOptions& options) {
  std::unique_ptr<CollectorServer> s(new CollectorServer());
  auto creds = common::MakeServerCredentials(options.tls, options.tls_reload_seconds,
                                             !options.fleet.ca_key_path.empty());
  if (!creds.ok()) return creds.status();
  store::StoreOptions where;
  where.spec = options.store.empty() ? "sqlite:" + options.db_path : options.store;
  where.query_readers = options.query_readers;
  where.accept_damaged_log = options.accept_damaged_log;
  where.postgres = options.postgres;
  // While PostgreSQL is being reached (up to --store-wait), probes are answered: alive, not
  // ready, and why.
  std::unique_ptr<common::HealthServer> waiting;
  if (!options.health_listen.empty() && store::IsPostgresUrl(where.spec)) {
    auto why = std::make_shared<WaitingReason>("connecting to " +
                                               store::RedactPostgresUrl(where.spec) + "\n");
    where.postgres.on_retry = [why, inner = options.postgres.on_retry](const absl::Status& s) {
      why->Set("store unreachable, retrying: " + std::string(s.message()) + "\n");
      if (inner) inner(s);
    };
    auto health = common::HealthServer::Start(options.health_listen, [why] { return why->Get(); });
    if (!health.ok()) return health.status();
    waiting = *std::move(health);
  }
  auto store = store::OpenStore(where);
  waiting.reset();  // the collector's own health server takes the port once it serves
  if (!store.ok()) return store.status();
  s->store_ = *std::move(store);
  s->metrics_ = std::make_unique<CollectorMetrics>(*s->store_, options.metrics_posture_ttl);
  s->alerter_ = std::make_unique<Alerter>(options.alerts, *s->store_);
  s->metrics_->AddSource([a = s->alerter_.get()](auto& out) { a->FillMetrics(out); });
  s->store_->SetCommitListener(
      [m = s->metrics_.get(), a = s->alerter_.get()](store::CommitNews&& news) {
        m->Count(news);
        a->OnCommit(news);
      });
  s->alerter_->Start();
  s->ingest_ = std::make_unique<Ingest>(*s->store_);
  s->ingest_->Start();
  AgentServiceLimits limits;
  limits.allow_unauthenticated = options.tls.insecure;
  limits.max_in_flight_bytes = options.max_in_flight_bytes;
  auto known = LoadKnownChecks(options.rules_dir);
  if (!known.ok()) {
    s->ingest_->Stop();
    return known.status();
  }
  limits.known_checks = *std::move(known);
  limits.max_reports_per_minute = options.max_reports_per_minute;
  FleetOptions fleet = options.fleet;
  if (fleet.ca_cert_path.empty()) fleet.ca_cert_path = options.tls.ca;
  if (!fleet.ca_key_path.empty()) {
    // Refuse at start what would refuse every enrolment later.
    auto ca = common::ReadTextFile(fleet.ca_cert_path, "CA certificate");
    auto key = ca.ok() ? common::ReadTextFile(fleet.ca_key_path, "CA key") : ca.status();
    if (!key.ok()) {
      s->ingest_->Stop();
      return absl::InvalidArgumentError("--enroll-ca-key: " + std::string(key.status().message()));
    }
  }
  s->fleet_ = std::make_unique<Fleet>(*s->store_, std::move(fleet));
  if (auto st = s->fleet_->Start(); !st.ok()) {
    s->ingest_->Stop();
    return st;
  }
  s->agent_service_ = std::make_unique<AgentServiceImpl>(*s->ingest_, limits, s->fleet_.get());
  s->query_service_ = std::make_unique<QueryServiceImpl>(
      *s->store_, std::set<std::string>(options.scan_clients.begin(), options.scan_clients.end()),
      options.tls.insecure);
  s->metrics_->Attach(&s->agent_service_->stats(), &s->agent_service_->budget(), s->ingest_.get());
  s->enrollment_service_ = std::make_unique<EnrollmentServiceImpl>(*s->fleet_);
  s->fleet_service_ = std::make_unique<FleetServiceImpl>(*s->fleet_, options.tls.insecure);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *creds, &s->port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  // No bandwidth-delay probing: it grows each connection's flow-control window (to megabytes
  // on a fast link), and the transport buffers that much of every stream before the service
  // asks for a message, past the in-flight budget. Reports are small and links short, so the
  // fixed window costs no measurable throughput (see the README's flood figures).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(options.min_agent_ping_interval.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(options.keepalive_time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(options.keepalive_timeout.count()));
  builder.RegisterService(s->agent_service_.get());
  builder.RegisterService(s->query_service_.get());
  builder.RegisterService(s->enrollment_service_.get());
  builder.RegisterService(s->fleet_service_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    s->ingest_->Stop();
    return absl::UnavailableError("cannot listen on " + options.listen +
                                  " (address in use or invalid)");
  }
  s->serving_ = true;
  if (!options.health_listen.empty()) {
    auto health = common::HealthServer::Start(
        options.health_listen,
        [raw = s.get()] {
          return raw->serving_.load() ? std::string() : std::string("shutting down");
        },
        [raw = s.get(), cert = options.tls.cert] {
          return DescribeSpace(raw->store_->Space()) + DescribeCertificate(cert);
        },
        {s->metrics_->collectable()});
    if (!health.ok()) {
      s->Shutdown(std::chrono::seconds(1));
      return health.status();
    }
    s->health_ = *std::move(health);
  }
  s->retention_ = options.history_retention;
  s->maintenance_ = std::thread([raw = s.get()] {
    std::unique_lock lock(raw->maintenance_mu_);
    std::optional<bool> pruner;
    do {
      // One collector among those sharing a database prunes (the deletes would only repeat).
      auto leads = raw->store_->HoldLease("prune-history");
      if (!leads.ok()) {
        spdlog::warn("pruning history: {}", leads.status().ToString());
        continue;
      }
      if (pruner != *leads) {
        pruner = *leads;
        spdlog::info(*leads ? "this collector prunes history" : "another collector prunes history");
      }
      if (!*leads) continue;
      auto pruned = raw->store_->PruneHistory(common::Clock::now() - raw->retention_);
      if (!pruned.ok()) {
        spdlog::warn("pruning history: {}", pruned.status().ToString());
      } else if (*pruned > 0) {
        spdlog::info("pruned {} history rows older than {} h", *pruned, raw->retention_.count());
      }
    } while (!raw->maintenance_cv_.wait_for(lock, std::chrono::hours(1),
                                            [raw] { return !raw->serving_.load(); }));
  });
  spdlog::info("collector listening on {} (port {}), store {}, {}{}", options.listen, s->port_,
               s->store_->Space().path, options.tls.insecure ? "INSECURE plaintext" : "mutual TLS",
               s->fleet_->enrolment_enabled() ? ", enrolment on" : "");
  if (!options.alerts.webhooks.empty()) {
    spdlog::info("alerts to {} webhook(s), severity {} and above", options.alerts.webhooks.size(),
                 common::SeverityName(options.alerts.webhooks[0].min_severity));
  }
  return s;
}

CollectorServer::~CollectorServer() { Shutdown(std::chrono::seconds(1)); }

void CollectorServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  {
    std::lock_guard lock(maintenance_mu_);
    serving_ = false;  // readiness fails first, so load balancers stop sending
  }
  maintenance_cv_.notify_all();
  if (maintenance_.joinable()) maintenance_.join();
  // Enrolments still queued are answered UNAVAILABLE first, so no call waits on a worker.
  if (fleet_) fleet_->Stop();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + grace);
  if (ingest_) ingest_->Stop();
  // Nothing commits any more; the listener's objects go before the store does.
  if (store_) store_->SetCommitListener(nullptr);
  if (alerter_) alerter_->Stop();
  // No scrape may reach parts the caller tears down after this (the cluster scan's metrics).
  health_.reset();
  spdlog::info("collector stopped");
}

}  // namespace kspm::collector::server

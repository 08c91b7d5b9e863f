#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "kspm/collector/server/alerts.h"
#include "kspm/collector/server/fleet.h"
#include "kspm/collector/server/ingest.h"
#include "kspm/collector/server/metrics.h"
#include "kspm/collector/server/services.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/health_server.h"
#include "kspm/common/tls.h"

namespace kspm::collector::server {

// The store's space as lines for /readyz.
std::string DescribeSpace(const store::StoreSpace& space);
// The collector's certificate for /readyz: its expiry, or a WARNING line within 30 days of it.
std::string DescribeCertificate(const std::string& path);

struct ServerOptions {
  std::string listen = "127.0.0.1:7443";  // HOST:PORT; port 0 picks a free port
  std::string db_path = "var/kspm.db";
  // A store spec (store::StoreOptions::spec): sqlite:PATH or a PostgreSQL URL; empty: db_path.
  std::string store;
  store::PostgresOptions postgres;  // its url is taken from `store`
  common::TlsFiles tls;
  // How often the TLS files are read again (cert-manager rotation); 0: only at start.
  unsigned tls_reload_seconds = 60;
  size_t max_message_bytes = 16 << 20;
  // Report bytes read from all agent streams and not yet committed (see AgentServiceLimits).
  size_t max_in_flight_bytes = 32u << 20;
  // Read connections queries run on (see OpenSqliteStore).
  int query_readers = 4;
  // Start on a store whose log is damaged (see OpenSqliteStore), keeping what precedes it.
  bool accept_damaged_log = false;
  std::string health_listen;  // HOST:PORT for /healthz, /readyz and /metrics; empty: none
  // How long a read of the store's posture serves /metrics scrapes (CollectorMetrics).
  std::chrono::milliseconds metrics_posture_ttl{15000};
  AlertOptions alerts;  // no webhooks: no alerts
  std::chrono::hours history_retention{24 * 90};
  std::string rules_dir;  // custom rules whose check ids are accepted
  // Certificate names that may ask for cluster scans; empty: any but a reporting node's.
  std::vector<std::string> scan_clients;
  // Keepalive. Agents ping every 30 s on an idle stream (kspm::agent::transport::
  // AgentChannelArguments); pings are accepted this often without data, so idle streams are
  // not closed with GOAWAY "too_many_pings" (gRPC's default allows one per 5 minutes).
  std::chrono::milliseconds min_agent_ping_interval{10000};
  // The collector's own pings on idle connections, to find agents that vanished.
  std::chrono::milliseconds keepalive_time{60000};
  std::chrono::milliseconds keepalive_timeout{20000};
  // Enrolment, join tokens and revocation (fleet.h). With a CA key the collector lets clients
  // without a certificate connect, to enrol; every other RPC still needs one.
  FleetOptions fleet;
  int max_reports_per_minute = 120;  // per node (AgentServiceLimits)
};

// The running collector: store, single writer, gRPC services. Start-up steps in order: open the
// store (migrations), start the writer, bind the port. Shutdown in reverse: stop accepting and
// let streams finish (until the deadline), drain the writer, close the store.
class CollectorServer {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CollectorServer>> Start(
      const ServerOptions& options);
  ~CollectorServer();

  int port() const { return port_; }
  int health_port() const { return health_ ? health_->port() : 0; }
  store::Store& store() { return *store_; }
  // Where kspmctl scan-cluster goes (see QueryServiceImpl::SetClusterScanTrigger); null: none.
  void SetClusterScanTrigger(ClusterScanTrigger* trigger) {
    query_service_->SetClusterScanTrigger(trigger);
  }
  const AgentServiceStats& agent_stats() const { return agent_service_->stats(); }
  const InFlightBudget& in_flight_budget() const { return agent_service_->budget(); }
  Fleet& fleet() { return *fleet_; }
  CollectorMetrics& metrics() { return *metrics_; }
  Alerter& alerter() { return *alerter_; }
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(10));
  void Wait() { server_->Wait(); }

 private:
  CollectorServer() = default;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<CollectorMetrics> metrics_;
  std::unique_ptr<Alerter> alerter_;
  std::unique_ptr<Ingest> ingest_;
  std::unique_ptr<Fleet> fleet_;
  std::unique_ptr<AgentServiceImpl> agent_service_;
  std::unique_ptr<EnrollmentServiceImpl> enrollment_service_;
  std::unique_ptr<FleetServiceImpl> fleet_service_;
  std::unique_ptr<QueryServiceImpl> query_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<common::HealthServer> health_;
  int port_ = 0;
  bool shut_down_ = false;
  std::atomic<bool> serving_{false};
  // Prunes history past the retention once an hour.
  std::thread maintenance_;
  std::mutex maintenance_mu_;
  std::condition_variable maintenance_cv_;
  std::chrono::hours retention_{24 * 90};
};

}  // namespace kspm::collector::server

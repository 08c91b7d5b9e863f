// kspm-collector: receives agent reports over gRPC (mutual TLS) and keeps posture in sqlite.
//   kspm-collector serve --listen ADDR --db PATH --tls-ca CA --tls-cert CERT --tls-key KEY
//   kspm-collector scan-cluster --from DIR [--format text|json] [--exceptions FILE]
#include <arpa/inet.h>
#include <curl/curl.h>
#include <signal.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "CLI/CLI.hpp"
#include "kspm/collector/cluster/command.h"
#include "kspm/collector/cluster/serve_flags.h"
#include "kspm/collector/server/server.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/cli.h"
#include "kspm/common/lifecycle.h"
#include "kspm/common/logging.h"
#include "spdlog/spdlog.h"

namespace {

constexpr int kExitUsage = 2;

// Whether HOST:PORT (or [V6]:PORT) names a loopback address.
bool IsLoopbackListen(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  return ::inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

int Serve(const kspm::collector::server::ServerOptions& options, const std::string& port_file,
          int grace_seconds, const kspm::collector::cluster::ServeClusterFlags& cluster_flags) {
  // SIGTERM and SIGINT are taken synchronously by this thread; gRPC threads never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // a cluster scan now (on demand)
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (options.tls.insecure) {
    spdlog::warn(
        "--insecure: agents and kspmctl connect in plaintext without certificates; "
        "use this only on loopback for development");
  }
  std::unique_ptr<kspm::collector::server::CollectorServer> server;
  std::vector<std::unique_ptr<kspm::collector::cluster::PeriodicClusterScan>> cluster_scans;
  std::unique_ptr<kspm::collector::server::ClusterScanRouter> scan_router;
  kspm::common::Lifecycle life;
  const absl::Status started = life.Start({
      {"server",
       [&] {
         auto s = kspm::collector::server::CollectorServer::Start(options);
         if (!s.ok()) return s.status();
         server = *std::move(s);
         return absl::OkStatus();
       },
       [&] { server->Shutdown(std::chrono::seconds(grace_seconds)); }},
      // The periodic cluster scan commits through the same store, as the pseudo-node `cluster`.
      {"cluster scan",
       [&] {
         auto s = kspm::collector::cluster::StartClusterScans(cluster_flags, server->store());
         if (!s.ok()) return s.status();
         cluster_scans = *std::move(s);
         return absl::OkStatus();
       },
       // Answers on-demand requests still waiting.
       [&] {
         for (auto& scan : cluster_scans) scan->Stop();
       }},
      // kspmctl scan-cluster asks the scanner of the cluster it names for a scan now.
      {"scan trigger",
       [&] {
         std::vector<kspm::collector::server::ClusterScanTrigger*> triggers;
         for (auto& scan : cluster_scans) {
           triggers.push_back(scan.get());
           server->metrics().AddSource([raw = scan.get()](auto& out) { raw->FillMetrics(out); });
         }
         if (!triggers.empty()) {
           scan_router =
               std::make_unique<kspm::collector::server::ClusterScanRouter>(std::move(triggers));
           server->SetClusterScanTrigger(scan_router.get());
         }
         return absl::OkStatus();
       },
       [&] { server->SetClusterScanTrigger(nullptr); }},
      {"port file",
       [&] {
         if (port_file.empty()) return absl::OkStatus();
         std::ofstream out(port_file + ".tmp");
         out << server->port() << "\n";
         out.close();
         if (!out || std::rename((port_file + ".tmp").c_str(), port_file.c_str()) != 0) {
           return absl::InternalError("cannot write " + port_file);
         }
         return absl::OkStatus();
       },
       nullptr},
  });
  if (!started.ok()) {
    std::cerr << "kspm-collector: " << started.message() << "\n";
    // Told to stop before it could serve (waiting for the database): a stop, not a failure.
    return started.code() == absl::StatusCode::kCancelled ? 0 : 1;
  }
  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    if (!cluster_scans.empty()) {
      spdlog::info("received SIGHUP: cluster scan now");
      for (auto& scan : cluster_scans) scan->Trigger();
    }
  }
  spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  life.Stop();
  const auto& stats = server->agent_stats();
  spdlog::info("served {} streams, {} reports accepted, {} duplicates, {} rejected",
               stats.streams.load(), stats.reports_accepted.load(), stats.duplicates.load(),
               stats.reports_rejected.load());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread: alert webhooks and the API client use libcurl from several threads.
  curl_global_init(CURL_GLOBAL_DEFAULT);
  kspm::collector::server::ServerOptions options;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string port_file;
  int grace_seconds = 10;

  CLI::App app{"kspm-collector: central posture store for kspm agents"};
  app.set_version_flag("--version", std::string("kspm-collector ") + KSPM_VERSION);
  app.require_subcommand(1);
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text or json")->capture_default_str();

  // Any subcommand flag may come from a file, `kspm-collector --config FILE serve`: TOML or INI,
  // a `[serve]` section, flags named without their dashes (`alert-webhook = ["https://..."]`);
  // the command line wins over the file.
  app.set_config("--config", "", "Read subcommand options from this TOML or INI file");
  CLI::App* serve = app.add_subcommand("serve", "Accept agent streams and kspmctl queries");
  serve->add_option("--listen", options.listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  auto* db_flag =
      serve->add_option("--db", options.db_path, "sqlite database file (as --store sqlite:PATH)")
          ->capture_default_str();
  serve
      ->add_option("--store", options.store,
                   "Where posture is kept: sqlite:PATH (the default, var/kspm.db) or a "
                   "PostgreSQL URL, postgres://USER@HOST:5432/DB?sslmode=verify-full (several "
                   "collectors may share one); the password comes from --store-password-file "
                   "or the PG* variables, never the URL")
      ->envname("KSPM_STORE")
      ->excludes(db_flag);
  serve
      ->add_option("--store-password-file", options.postgres.password_file,
                   "File holding the PostgreSQL password (a mounted Secret)")
      ->envname("KSPM_STORE_PASSWORD_FILE");
  int store_wait_seconds = 60;
  serve
      ->add_option("--store-wait", store_wait_seconds,
                   "Seconds to keep trying to reach PostgreSQL at start, with backoff")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  serve
      ->add_option("--store-writers", options.postgres.writers,
                   "PostgreSQL connections that commit agents' reports, batches of different "
                   "nodes at once (sqlite has one writer)")
      ->envname("KSPM_STORE_WRITERS")
      ->capture_default_str()
      ->check(CLI::Range(1, 32));
  serve->add_option("--tls-ca", options.tls.ca, "CA that signs agent and kspmctl certificates");
  serve->add_option("--tls-cert", options.tls.cert, "Collector certificate");
  serve->add_option("--tls-key", options.tls.key, "Collector private key");
  serve->add_flag("--insecure", options.tls.insecure,
                  "Plaintext without client certificates (loopback development only)");
  bool insecure_any_address = false;
  serve->add_flag("--insecure-any-address", insecure_any_address,
                  "Allow --insecure on an address other than loopback (anyone who reaches it "
                  "can report as any node and read everything)");
  serve->add_option("--port-file", port_file, "Write the bound port here once listening");
  serve->add_option("--health-listen", options.health_listen,
                    "HOST:PORT for HTTP GET /healthz, /readyz (Kubernetes probes) and /metrics "
                    "(Prometheus)");
  std::vector<std::string> alert_webhooks;
  std::string alert_min_severity = "high";
  std::string alert_format = "json";
  serve->add_option("--alert-webhook", alert_webhooks,
                    "POST alerts to this http(s) URL: new FAILs, resolved FAILs, drift, stale "
                    "nodes (repeat for several)");
  serve
      ->add_option("--alert-min-severity", alert_min_severity,
                   "Lowest severity of check alerted: info, low, medium, high, critical")
      ->capture_default_str();
  serve->add_option("--alert-format", alert_format, "json (kspm's payload) or slack")
      ->capture_default_str();
  int alert_stale_seconds = 60;
  serve->add_option("--alert-stale-check-seconds", alert_stale_seconds)
      ->group("")
      ->check(CLI::Range(1, 86400));
  int retention_days = 90;
  serve->add_option("--history-retention-days", retention_days, "Days of verdict history to keep")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve
      ->add_option("--scan-clients", options.scan_clients,
                   "Certificate names that may ask for cluster scans (kspmctl scan-cluster); "
                   "default: any but a reporting node's")
      ->delimiter(',');
  serve->add_option("--rules", options.rules_dir,
                    "Directory of custom rule files whose check ids agents may report");
  serve
      ->add_option("--query-readers", options.query_readers,
                   "Database connections queries run on, beside the writers")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  serve
      ->add_option("--tls-reload-seconds", options.tls_reload_seconds,
                   "Read the TLS files again this often, so a renewed certificate is served "
                   "without a restart (0: only at start)")
      ->capture_default_str();
  serve->add_flag("--accept-damaged-log", options.accept_damaged_log,
                  "Start even though the database's write-ahead log is damaged, keeping the "
                  "commits before the damage (see kspm-collector check)");
  size_t in_flight_mb = options.max_in_flight_bytes >> 20;
  serve
      ->add_option("--max-in-flight-mb", in_flight_mb,
                   "MiB of agent reports read and not yet committed, all streams together; "
                   "beyond it streams are not read until commits free room")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  serve->add_option("--shutdown-grace", grace_seconds, "Seconds streams get to finish on SIGTERM")
      ->capture_default_str();
  kspm::collector::cluster::ServeClusterFlags cluster_flags;
  kspm::collector::cluster::AddServeClusterFlags(*serve, cluster_flags);
  auto& fleet = options.fleet;
  serve->add_option("--enroll-ca-key", fleet.ca_key_path,
                    "Private key of the CA (--tls-ca) that signs node certificates: turns "
                    "enrolment on (service-account tokens, join tokens, renewal)");
  int cert_hours = 24;
  serve
      ->add_option("--enroll-cert-hours", cert_hours,
                   "Lifetime of certificates issued by enrolment; agents renew at two thirds")
      ->capture_default_str()
      ->check(CLI::Range(1, 24 * 366));
  int cert_seconds = 0;  // tests: a lifetime of seconds
  serve->add_option("--enroll-cert-seconds", cert_seconds)->group("");
  serve
      ->add_option("--enroll-audience", fleet.audience,
                   "Audience the agents' projected service-account tokens must carry")
      ->capture_default_str();
  const char* pod_namespace = std::getenv("POD_NAMESPACE");
  fleet.agent_namespace =
      pod_namespace != nullptr && *pod_namespace != '\0' ? pod_namespace : "kspm";
  serve->add_option("--agent-namespace", fleet.agent_namespace,
                    "Namespace of the agent DaemonSet (default: $POD_NAMESPACE, else kspm)");
  serve
      ->add_option("--agent-service-account", fleet.agent_service_account,
                   "Service account the agent pods run as")
      ->capture_default_str();
  serve
      ->add_option("--agent-daemonset", fleet.agent_daemonset, "DaemonSet that owns the agent pods")
      ->capture_default_str();
  serve
      ->add_option("--enroll-burst", fleet.per_source_burst,
                   "Enrolments one address may make at once before the rate applies")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  int enroll_per_minute = 12;
  serve
      ->add_option("--enroll-per-minute", enroll_per_minute,
                   "Enrolments per minute one address may make after its burst")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
  serve
      ->add_option("--max-reports-per-minute", options.max_reports_per_minute,
                   "Reports one node may send per minute (bursts up to it); the excess is refused "
                   "and stays in the agent's spool (0: no bound)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));

  kspm::collector::cluster::ScanClusterCommand scan_cluster;
  CLI::App* scan = app.add_subcommand(
      "scan-cluster", "Evaluate the cluster-level checks once (offline snapshot or the API)");
  scan->add_option("--from", scan_cluster.from,
                   "Directory of `kubectl get -A -o json` outputs and YAML manifests");
  scan->add_option("--kubeconfig", scan_cluster.kubeconfig,
                   "Read the API with this kubeconfig (default: in-cluster credentials)");
  scan->add_option("--context", scan_cluster.context, "kubeconfig context (default: current)");
  scan->add_option("--cluster-name", scan_cluster.cluster_name, "Cluster name shown in output");
  scan->add_option("--format", scan_cluster.format, "text, json, csv, junit, sarif or html")
      ->capture_default_str();
  scan->add_option("--fail-on", scan_cluster.fail_on,
                   "Exit 3 when an unaccepted FAIL of this severity or higher is found");
  scan->add_option("--min-score", scan_cluster.min_score,
                   "Exit 3 when the cluster's score is below this (0-100)");
  scan->add_option("--exceptions", scan_cluster.exceptions,
                   "YAML file of accepted findings (reason and expiry each)");
  scan->add_flag("--include-system", scan_cluster.include_system,
                 "Also evaluate Kubernetes' own roles, bindings and kube-system workloads");
  scan->add_flag("--scan-configmaps", scan_cluster.configmaps,
                 "Also read ConfigMaps and report keys that hold credentials (values are never "
                 "kept or shown)");
  scan->add_option("--system-namespace", scan_cluster.system_namespaces,
                   "Another namespace to treat as system (repeat)");
  scan->add_option("--benchmark", scan_cluster.benchmarks,
                   "Only this benchmark: cis-kubernetes-1.12, nsa-cisa-1.2 (repeat)");
  scan->add_option("-o,--output", scan_cluster.output, "Write to this file");
  scan->add_flag("-v,--verbose", scan_cluster.verbose, "Every result and its remediation");
  scan->add_option("--timeout", scan_cluster.timeout_seconds, "Seconds per API request")
      ->capture_default_str();
  scan->add_option("--exit-code", scan_cluster.exit_code,
                   "Exit with this code when a check FAILs that no exception accepted");

  std::string db_path = "var/kspm.db", backup_to;
  bool full_check = false;
  CLI::App* backup =
      app.add_subcommand("backup", "Copy the database consistently while a collector runs");
  backup->add_option("--db", db_path, "sqlite database file")->capture_default_str();
  backup->add_option("--to", backup_to, "New file to write (must not exist)")->required();
  CLI::App* check = app.add_subcommand("check", "Check the database file for corruption");
  check->add_option("--db", db_path, "sqlite database file")->capture_default_str();
  check->add_flag("--full", full_check, "integrity_check (slower) instead of quick_check");

  std::string migrate_from, migrate_to, migrate_password_file;
  CLI::App* migrate = app.add_subcommand(
      "migrate",
      "Copy a sqlite store into PostgreSQL (current results, history, drift, fleet records), "
      "verified by counts; run it again to resume one that stopped");
  migrate->add_option("--from", migrate_from, "sqlite:PATH (or a path) of the store to copy")
      ->required();
  migrate
      ->add_option("--to", migrate_to,
                   "postgres://USER@HOST:5432/DB of an empty database, or of an earlier copy "
                   "of the same file")
      ->required()
      ->envname("KSPM_STORE");
  migrate
      ->add_option("--to-password-file", migrate_password_file,
                   "File holding the PostgreSQL password")
      ->envname("KSPM_STORE_PASSWORD_FILE");

  if (auto exit = kspm::common::ParseCommandLine(app, argc, argv, "kspm-collector")) return *exit;
  options.max_in_flight_bytes = in_flight_mb << 20;
  if (migrate->parsed()) {
    namespace store = kspm::collector::store;
    if (!store::IsPostgresUrl(migrate_to) || store::SqlitePathOf(migrate_from).empty()) {
      std::cerr << "kspm-collector: migrate copies a sqlite store (--from sqlite:PATH) into "
                   "PostgreSQL (--to postgres://...)\n";
      return kExitUsage;
    }
    store::PostgresOptions to;
    to.url = migrate_to;
    to.password_file = migrate_password_file;
    const auto started = std::chrono::steady_clock::now();
    auto copied = store::CopySqliteToPostgres(
        store::SqlitePathOf(migrate_from), to,
        [](const std::string& line) { std::cerr << "migrate: " << line << "\n"; });
    if (!copied.ok()) {
      std::cerr << "kspm-collector: migrate: " << copied.status().message()
                << "\n(run it again to resume: rows already copied are skipped)\n";
      return 1;
    }
    int64_t rows = 0;
    for (const auto& t : *copied) rows += t.target_rows;
    std::cout << "copied " << rows << " rows in " << copied->size() << " tables from "
              << store::SqlitePathOf(migrate_from) << " to " << store::RedactPostgresUrl(migrate_to)
              << " in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count()
              << " ms; every table's count verified\n";
    return 0;
  }
  if (backup->parsed() || check->parsed()) {
    const absl::Status s = backup->parsed()
                               ? kspm::collector::store::BackupSqliteStore(db_path, backup_to)
                               : kspm::collector::store::CheckSqliteStore(db_path, full_check);
    if (!s.ok()) {
      std::cerr << "kspm-collector: " << s.message() << "\n";
      return 1;
    }
    std::cout << (backup->parsed() ? "backed up " + db_path + " to " + backup_to : db_path + ": ok")
              << "\n";
    return 0;
  }
  if (scan->parsed()) {
    if (auto s = kspm::common::SetUpLogging(log_level, log_format, "kspm-collector"); !s.ok()) {
      std::cerr << "kspm-collector: " << s.message() << "\n";
      return kExitUsage;
    }
    return kspm::collector::cluster::RunScanCluster(scan_cluster);
  }
  options.history_retention = std::chrono::hours(24 * retention_days);
  options.postgres.wait = std::chrono::seconds(store_wait_seconds);
  // Serve blocks these signals before the store is opened: one pending is a request to stop.
  options.postgres.stop_waiting = [] {
    sigset_t pending;
    sigpending(&pending);
    return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
  };
  options.postgres.pool_size = options.query_readers;
  if (auto s = kspm::common::SetUpLogging(log_level, log_format, "kspm-collector"); !s.ok()) {
    std::cerr << "kspm-collector: " << s.message() << "\n";
    return kExitUsage;
  }
  if (!options.tls.insecure &&
      (options.tls.ca.empty() || options.tls.cert.empty() || options.tls.key.empty())) {
    std::cerr << "kspm-collector: mutual TLS needs --tls-ca, --tls-cert and --tls-key "
                 "(or --insecure for loopback development)\n";
    return kExitUsage;
  }
  if (serve->parsed() && options.tls.insecure && !insecure_any_address &&
      !IsLoopbackListen(options.listen)) {
    std::cerr << "kspm-collector: --insecure listens only on loopback (127.0.0.0/8, ::1, "
                 "localhost); --listen "
              << options.listen << " needs --insecure-any-address too, or mutual TLS\n";
    return kExitUsage;
  }
  if (serve->parsed()) {
    auto alerts =
        kspm::collector::server::MakeAlertOptions(alert_webhooks, alert_min_severity, alert_format);
    if (!alerts.ok()) {
      std::cerr << "kspm-collector: " << alerts.status().message() << "\n";
      return kExitUsage;
    }
    options.alerts = *std::move(alerts);
    options.alerts.stale_every = std::chrono::seconds(alert_stale_seconds);
    fleet.cluster = cluster_flags.cluster_name;
    fleet.per_source_interval = std::chrono::milliseconds(60000 / enroll_per_minute);
    fleet.certificate_lifetime =
        std::chrono::seconds(cert_seconds > 0 ? cert_seconds : cert_hours * 3600);
    if (!fleet.ca_key_path.empty()) {
      fleet.reviewer = kspm::collector::cluster::MakeReviewerFactory(cluster_flags);
    }
    return Serve(options, port_file, grace_seconds, cluster_flags);
  }
  return kExitUsage;
}

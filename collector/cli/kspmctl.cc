// kspmctl: queries a kspm collector.
//   kspmctl summary | findings | nodes | history | drift | export --format json|csv|junit|sarif
//   kspmctl scan-cluster   (a cluster scan now, answered once committed)
// Exit codes: 0 success; 1 the collector could not be reached or refused the query; 2 usage;
// 3 --fail-on matched a failing finding.
#include "cli/kspmctl.h"

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "CLI/CLI.hpp"
#include "grpcpp/create_channel.h"
#include "kspm/common/cli.h"
#include "kspm/common/time.h"
#include "kspm/common/tls.h"
#include "yaml-cpp/yaml.h"

namespace kspm::collector::cli {

[[noreturn]] void Die(int code, const std::string& message) {
  std::cerr << "kspmctl: " << message << "\n";
  std::exit(code);
}

std::optional<google::protobuf::Timestamp> ParseSince(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const auto now = kspm::common::Clock::now();
  char unit = text.back();
  const std::string number = text.substr(0, text.size() - 1);
  if (!number.empty() && number.find_first_not_of("0123456789") == std::string::npos) {
    const long n = std::stol(number);
    std::chrono::seconds back{0};
    if (unit == 's') back = std::chrono::seconds(n);
    if (unit == 'm') back = std::chrono::minutes(n);
    if (unit == 'h') back = std::chrono::hours(n);
    if (unit == 'd') back = std::chrono::hours(24 * n);
    if (back.count() > 0) return kspm::common::ToProto(now - back);
  }
  if (const auto at = kspm::common::ParseRfc3339(text)) return kspm::common::ToProto(*at);
  Die(2, "--since '" + text +
             "': use a duration such as 30m, 24h, 7d or an RFC 3339 time such as "
             "2026-11-26T08:00:00Z or 2026-11-26T09:00:00+01:00");
}

std::unique_ptr<kspm::v1::QueryService::Stub> Connect(const Options& o) {
  auto creds = kspm::common::MakeClientCredentials(o.tls);
  if (!creds.ok()) Die(kExitUsage, std::string(creds.status().message()));
  return kspm::v1::QueryService::NewStub(grpc::CreateChannel(o.collector, *creds));
}

void Check(const grpc::Status& s, const Options& o) {
  if (s.ok()) return;
  Die(kExitUnavailable, "collector " + o.collector + ": " + s.error_message() + " (" +
                            std::to_string(s.error_code()) + ")");
}

std::unique_ptr<grpc::ClientContext> Context(const Options& o) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(o.timeout_seconds));
  return ctx;
}

namespace {

// The settings file: `--config`, else $KSPM_CONFIG, else $XDG_CONFIG_HOME/kspm/config.yaml
// (~/.config/kspm/config.yaml). Keys: collector, tls-ca, tls-cert, tls-key, cluster, insecure.
// Flags win over the environment, which wins over the file.
std::string DefaultConfigPath() {
  if (const char* env = std::getenv("KSPM_CONFIG"); env != nullptr && *env != '\0') return env;
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/kspm/config.yaml";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.config/kspm/config.yaml";
  }
  return "";
}

void ApplyConfigFile(const std::string& path, bool required, CLI::App& app, Options& o) {
  if (path.empty()) return;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (required) Die(kExitUsage, "cannot read settings file " + path);
    return;
  }
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    Die(kExitUsage, path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root || root.IsNull()) return;
  if (!root.IsMap()) Die(kExitUsage, path + ": expected a map of settings");
  const auto dir = std::filesystem::path(path).parent_path();
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (!kv.second.IsScalar()) {
      Die(kExitUsage, path + ":" + std::to_string(kv.first.Mark().line + 1) + ": '" + key +
                          "' must be a single value");
    }
    std::string value = kv.second.Scalar();
    // File names relative to the settings file, as kubeconfig does.
    if ((key == "tls-ca" || key == "tls-cert" || key == "tls-key") && !value.empty() &&
        value.front() != '/') {
      value = (dir / value).string();
    }
    static const std::map<std::string, std::string> kFlags = {
        {"collector", "--collector"}, {"tls-ca", "--tls-ca"},   {"tls-cert", "--tls-cert"},
        {"tls-key", "--tls-key"},     {"cluster", "--cluster"}, {"insecure", "--insecure"}};
    const auto flag = kFlags.find(key);
    if (flag == kFlags.end()) {
      Die(kExitUsage, path + ":" + std::to_string(kv.first.Mark().line + 1) +
                          ": unknown setting '" + key +
                          "' (collector, tls-ca, tls-cert, tls-key, cluster, insecure)");
    }
    if (app.get_option(flag->second)->count() > 0) continue;  // the flag wins
    if (key == "collector") {
      if (std::getenv("KSPM_COLLECTOR") == nullptr) o.collector = value;
    } else if (key == "tls-ca") {
      o.tls.ca = value;
    } else if (key == "tls-cert") {
      o.tls.cert = value;
    } else if (key == "tls-key") {
      o.tls.key = value;
    } else if (key == "cluster") {
      o.cluster = value;
    } else {
      o.tls.insecure = value == "true";
    }
  }
}

}  // namespace

void WriteConfigFile(const std::string& path, const std::string& collector, const std::string& ca,
                     const std::string& cert, const std::string& key, const std::string& cluster,
                     bool overwrite) {
  std::error_code ec;
  if (!overwrite && std::filesystem::exists(path, ec)) {
    Die(1, "settings file " + path + " exists; pass --overwrite to replace it");
  }
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  auto abs = [](const std::string& p) { return std::filesystem::absolute(p).string(); };
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "collector" << YAML::Value << collector << YAML::Key
      << "tls-ca" << YAML::Value << abs(ca) << YAML::Key << "tls-cert" << YAML::Value << abs(cert)
      << YAML::Key << "tls-key" << YAML::Value << abs(key) << YAML::Key << "cluster" << YAML::Value
      << cluster << YAML::EndMap;
  std::ofstream file(path, std::ios::trunc);
  file << "# kspmctl settings (written by kspmctl certs issue)\n" << out.c_str() << "\n";
  if (!file.flush()) Die(1, "cannot write " + path);
  std::cerr << "kspmctl: settings written to " << path << "\n";
}

namespace {

void AddFilters(CLI::App* cmd, Options& o) {
  cmd->add_option("--node", o.node, "Only this node");
  cmd->add_option("--status", o.statuses,
                  "Statuses (PASS, FAIL, WARN, MANUAL, NOT_APPLICABLE, ERROR); default FAIL, WARN, "
                  "MANUAL and ERROR")
      ->delimiter(',');
  cmd->add_option("--severity", o.severity, "Minimum severity (info, low, medium, high, critical)");
  cmd->add_option("--benchmark", o.benchmark, "Only this benchmark");
  cmd->add_option("--id", o.id, "Check id or benchmark item id (4.2.1, or a prefix such as 4.2)");
  cmd->add_option("--limit", o.limit, "At most this many findings (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--namespace", o.ns,
                  "Only cluster results of this namespace ((cluster): cluster-scoped objects)");
  cmd->add_option("--fail-on", o.fail_on, "Exit 3 when a FAIL of this severity or higher exists");
  cmd->add_option("--since", o.since,
                  "Only verdicts that changed since (30m, 24h, 7d, or RFC 3339)");
}

// The command line (flags, then the settings file), then the one command it names.
int Main(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("KSPM_COLLECTOR")) o.collector = env;
  CLI::App app{"kspmctl: query a kspm collector"};
  app.set_version_flag("--version", std::string("kspmctl ") + KSPM_VERSION);
  app.require_subcommand(1);
  app.add_option("--collector", o.collector, "Collector HOST:PORT (env KSPM_COLLECTOR)")
      ->capture_default_str();
  app.add_option("--tls-ca", o.tls.ca, "CA that signed the collector's certificate");
  app.add_option("--tls-cert", o.tls.cert, "Client certificate");
  app.add_option("--tls-key", o.tls.key, "Client key");
  app.add_flag("--insecure", o.tls.insecure, "Plaintext (loopback development only)");
  auto* cluster_flag = app.add_option("--cluster", o.cluster, "Only this cluster");
  bool all_clusters = false;
  app.add_flag("--all-clusters", all_clusters,
               "Every cluster the collector's store holds, whatever the settings file's "
               "cluster (summary: a score per cluster)")
      ->excludes(cluster_flag);
  app.add_option("--timeout", o.timeout_seconds, "Seconds to wait for the collector")
      ->capture_default_str();

  CLI::App* summary = app.add_subcommand("summary", "Posture score and counts");
  CLI::App* findings = app.add_subcommand("findings", "Current results that do not pass");
  CLI::App* nodes = app.add_subcommand("nodes", "Known nodes and their health");
  std::string access_node;
  CLI::App* nodes_revoke = nodes->add_subcommand(
      "revoke", "Refuse a node's certificates, stream and enrolment (operator)");
  nodes_revoke->add_option("name", access_node, "Node name")->required();
  CLI::App* nodes_allow =
      nodes->add_subcommand("allow", "Let a revoked node enrol again (operator)");
  nodes_allow->add_option("name", access_node, "Node name")->required();
  CLI::App* tokens = app.add_subcommand("tokens", "Join tokens for enrolling VMs (operator)");
  tokens->require_subcommand(1);
  CLI::App* tokens_create = tokens->add_subcommand("create", "Make a join token");
  std::string token_node, token_ttl = "1h";
  int token_uses = 1;
  tokens_create->add_option("--node", token_node, "Only this node may use it (default: any)");
  tokens_create->add_option("--ttl", token_ttl, "Lifetime (90s, 30m, 1h, 7d at most)")
      ->capture_default_str();
  tokens_create->add_option("--uses", token_uses, "Enrolments it allows")->capture_default_str();
  tokens_create->add_option("--format", o.format, "table or json")->capture_default_str();
  std::string config_path;
  app.add_option("--config", config_path,
                 "Settings file (default: $KSPM_CONFIG, else ~/.config/kspm/config.yaml)");
  CLI::App* exp = app.add_subcommand("export", "Every current result as json, csv, junit, sarif");
  CLI::App* report = app.add_subcommand(
      "report", "The posture as one self-contained HTML file (scores, trend, failing checks)");
  std::string report_output;
  size_t report_max_findings = 2000;
  report->add_option("--format", o.format, "html")->default_str("html");
  report->add_option("-o,--output", report_output, "File to write (default: stdout)");
  report->add_option("--since", o.since, "Window of the score trend (30m, 24h, 7d; default 30d)");
  report
      ->add_option("--max-findings", report_max_findings,
                   "Failing results listed in detail, most severe first")
      ->capture_default_str();
  CLI::App* drift = app.add_subcommand("drift", "Changes seen between scans (drift events)");
  drift->add_option("--node", o.node, "Only this node");
  drift->add_option("--id", o.id, "Only events that changed this check id or item id");
  drift->add_option("--since", o.since, "Only events since (30m, 24h, 7d, or RFC 3339)");
  drift->add_option("--format", o.format, "table or json")->capture_default_str();
  CertsOptions certs_options;
  CLI::App* certs = app.add_subcommand("certs", "Certificates for mutual TLS");
  certs->require_subcommand(1);
  CLI::App* certs_init = certs->add_subcommand(
      "init", "Create a CA, the collector's, kspmctl's and nodes' certificates");
  certs_init->add_option("dir", certs_options.dir, "Directory to write")->required();
  certs_init->add_option("--node", certs_options.nodes, "A node name (repeat, or comma-separated)")
      ->delimiter(',');
  certs_init
      ->add_option("--collector-dns", certs_options.dns,
                   "DNS names of the collector (default: kspm-collector, localhost)")
      ->delimiter(',');
  certs_init
      ->add_option("--collector-ip", certs_options.ips,
                   "IP addresses of the collector (default: 127.0.0.1)")
      ->delimiter(',');
  certs_init->add_flag("--overwrite", certs_options.overwrite, "Replace existing files");
  certs_init->add_option("--cluster", certs_options.cluster, "Cluster the certificates belong to")
      ->capture_default_str();
  CLI::App* certs_issue = certs->add_subcommand(
      "issue", "One more node or client certificate from an existing CA (the CA is kept)");
  certs_issue->add_option("--ca", certs_options.ca_dir, "Directory holding ca.crt and ca.key")
      ->required();
  certs_issue->add_option("--node", certs_options.node, "Node name (the node role: may report)");
  certs_issue->add_option("--client", certs_options.client, "Client name (for kspmctl)");
  certs_issue->add_option("--role", certs_options.role, "reader (queries) or operator (also scans)")
      ->capture_default_str();
  certs_issue->add_option("--cluster", certs_options.cluster, "Cluster the certificate belongs to")
      ->capture_default_str();
  certs_issue->add_option("--out", certs_options.out_dir,
                          "Directory to write NAME.crt and NAME.key (default: the CA's, nodes/ "
                          "for a node)");
  certs_issue->add_option("--days", certs_options.days, "Validity in days")->capture_default_str();
  certs_issue->add_flag("--overwrite", certs_options.overwrite, "Replace existing files");
  certs_issue->add_option(
      "--write-config", certs_options.write_config,
      "With --client: also write a kspmctl settings file naming the collector and "
      "these files (e.g. ~/.config/kspm/config.yaml)");
  CLI::App* certs_client = certs->add_subcommand(
      "client",
      "A kspmctl certificate from an existing CA, and a settings file naming it (default "
      "~/.config/kspm/config.yaml)");
  certs_client->add_option("name", certs_options.client, "Client name")->required();
  certs_client->add_option("--ca", certs_options.ca_dir, "Directory holding ca.crt and ca.key")
      ->required();
  certs_client->add_option("--role", certs_options.role, "reader or operator")
      ->capture_default_str();
  certs_client->add_option("--cluster", certs_options.cluster, "Cluster")->capture_default_str();
  certs_client->add_option("--out", certs_options.out_dir, "Directory for NAME.crt and NAME.key");
  certs_client->add_option("--days", certs_options.days, "Validity in days")->capture_default_str();
  certs_client->add_option("--write-config", certs_options.write_config,
                           "Settings file to write (default: $KSPM_CONFIG or "
                           "~/.config/kspm/config.yaml)");
  certs_client->add_flag("--overwrite", certs_options.overwrite, "Replace existing files");
  CLI::App* history =
      app.add_subcommand("history", "Verdict changes of a node or a check over time");
  history->add_option("--node", o.node, "Only this node");
  history->add_option("--id", o.id, "Only this check id or benchmark item id");
  history->add_option("--since", o.since, "Only changes since (30m, 24h, 7d, or RFC 3339)");
  history->add_option("--format", o.format, "table or json")->capture_default_str();
  CLI::App* scan_cluster =
      app.add_subcommand("scan-cluster", "Run a cluster scan now and wait for its results");
  scan_cluster
      ->add_option("--wait", o.scan_wait_seconds, "Seconds to wait for the scan to be committed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  for (CLI::App* cmd : {summary, findings, nodes, scan_cluster}) {
    cmd->add_option("--format", o.format, "table or json")->capture_default_str();
  }
  exp->add_option("--format", o.format, "json, csv, junit, sarif")->capture_default_str();
  AddFilters(findings, o);
  findings->add_flag("--verbose,-v", o.verbose, "Show each finding's remediation too");
  AddFilters(exp, o);

  if (auto exit = kspm::common::ParseCommandLine(app, argc, argv, "kspmctl")) return *exit;
  if (!certs->parsed()) {
    const bool given = !config_path.empty();
    ApplyConfigFile(given ? config_path : DefaultConfigPath(), given, app, o);
  }
  if (all_clusters) o.cluster.clear();  // over the settings file's cluster too
  certs_options.collector = o.collector;
  if (tokens_create->parsed()) return TokensCreate(o, token_node, token_ttl, token_uses);
  if (nodes_revoke->parsed()) return NodeAccess(o, access_node, true);
  if (nodes_allow->parsed()) return NodeAccess(o, access_node, false);
  if (report->parsed()) return Report(o, report_output, report_max_findings);
  if (o.format != "table" && o.format != "json" && !exp->parsed()) {
    Die(kExitUsage, "unknown format '" + o.format + "' (table, json)");
  }
  if (summary->parsed()) return Summary(o);
  if (findings->parsed()) return Findings(o);
  if (nodes->parsed()) return Nodes(o);
  if (exp->parsed()) return Export(o);
  if (history->parsed()) return History(o);
  if (drift->parsed()) return Drift(o);
  if (scan_cluster->parsed()) return ScanCluster(o);
  if (certs_issue->parsed()) return CertsIssue(certs_options);
  if (certs_client->parsed()) {
    if (certs_options.write_config.empty()) certs_options.write_config = DefaultConfigPath();
    if (certs_options.write_config.empty()) {
      Die(kExitUsage, "certs client: no HOME; give --write-config PATH");
    }
    return CertsIssue(certs_options);
  }
  if (certs_init->parsed()) {
    if (certs_options.dns.empty() && certs_options.ips.empty()) {
      certs_options.dns = {"kspm-collector", "localhost"};
      certs_options.ips = {"127.0.0.1"};
    }
    return CertsInit(certs_options);
  }
  return kExitUsage;
}

}  // namespace
}  // namespace kspm::collector::cli

int main(int argc, char** argv) { return kspm::collector::cli::Main(argc, argv); }

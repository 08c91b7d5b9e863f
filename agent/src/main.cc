// kspm-agent: checks a node against the CIS Kubernetes and Docker benchmarks.
//   kspm-agent scan    one scan, results on stdout (a kube-bench replacement for CI and VMs)
//   kspm-agent checks  the catalogue
//   kspm-agent send    one scan, delivered to a collector
//   kspm-agent enroll  this node's certificate from the collector, once
//   kspm-agent run     the node agent: scans every interval, streams to a collector
// Each command lives in commands/; this file only reads the command line.
#include "CLI/CLI.hpp"
#include "commands/commands.h"
#include "kspm/common/cli.h"
#include "kspm/common/logging.h"

int main(int argc, char** argv) {
  namespace commands = kspm::agent::commands;
  commands::Options o;
  std::string log_level = "warn";
  std::string log_format = "text";
  CLI::App app{"kspm-agent: Kubernetes and Docker host posture checks"};
  app.set_version_flag("--version", std::string("kspm-agent ") + KSPM_VERSION);
  app.require_subcommand(1);
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text or json")->capture_default_str();

  CLI::App* scan = app.add_subcommand("scan", "Scan this node once and print the results");
  commands::AddScanOptions(scan, o);
  scan->add_option("--format", o.format, "text, json, csv, junit, sarif, html")
      ->capture_default_str();
  scan->add_option("--output,-o", o.output, "Write to a file instead of stdout");
  scan->add_option("--exit-code", o.exit_code, "Exit with this code when any check fails");
  scan->add_option("--fail-on", o.fail_on,
                   "Exit 3 when a FAIL of this severity or higher (critical, high, medium, low, "
                   "info) is found");
  scan->add_option("--min-score", o.min_score, "Exit 3 when the score is below this (0-100)");
  scan->add_flag("--verbose,-v", o.verbose, "Show passing checks and remediation too");

  CLI::App* checks = app.add_subcommand("checks", "List the check catalogue");
  checks->add_option("--benchmark", o.benchmarks, "Only this benchmark")->delimiter(',');
  checks->add_option("--rules", o.rules_dir, "Directory of custom rules");
  checks->add_option("--format", o.format, "text, json or csv")->capture_default_str();

  CLI::App* send = app.add_subcommand("send", "Scan once and deliver the report to a collector");
  commands::AddScanOptions(send, o);
  send->add_option("--collector", o.collector, "Collector address HOST:PORT")->required();
  send->add_option("--tls-ca", o.tls.ca, "CA certificate that signed the collector's certificate");
  send->add_option("--tls-cert", o.tls.cert, "This node's client certificate");
  send->add_option("--tls-key", o.tls.key, "This node's private key");
  send->add_flag("--insecure", o.tls.insecure, "Plaintext, no authentication (loopback only)");
  send->add_option("--timeout", o.timeout_seconds, "Seconds to wait for the collector")
      ->capture_default_str();

  CLI::App* enroll = app.add_subcommand(
      "enroll", "Get this node's certificate from the collector (a VM with a join token)");
  std::string enroll_state_dir = "/var/lib/kspm-agent", enroll_token, enroll_ca_hash,
              enroll_token_file;
  enroll->add_option("--collector", o.collector, "Collector address HOST:PORT")->required();
  enroll->add_option("--token", enroll_token, "Join token from kspmctl tokens create");
  enroll->add_option("--token-file", enroll_token_file, "A service-account token file instead");
  enroll->add_option("--ca-hash", enroll_ca_hash,
                     "sha256:<hex> of the collector's CA public key (kspmctl tokens create "
                     "prints it); the CA is fetched and trusted only if it matches");
  enroll->add_option("--tls-ca", o.tls.ca, "The collector's CA file instead of --ca-hash");
  enroll->add_option("--state-dir", enroll_state_dir, "Where the identity is kept")
      ->capture_default_str();
  enroll->add_option("--node-name", o.node.node_name, "Node name (default: $NODE_NAME, hostname)");
  enroll->add_option("--host-root", o.host_root, "The host's root (for its host name)")
      ->capture_default_str();
  enroll->add_option("--timeout", o.timeout_seconds, "Seconds to wait for the collector")
      ->capture_default_str();

  // `run` takes its settings from flags, the environment and a YAML file (AgentConfig): every
  // flag is kept as text here and typed once, with the file's and the environment's values.
  kspm::agent::AgentConfigSources run_sources;
  CLI::App* run = app.add_subcommand("run",
                                     "Run as the node agent: scan every interval and "
                                     "stream results to a collector");
  std::map<std::string, std::string> run_values;
  bool run_insecure = false;
  for (const auto& [name, help] : kspm::agent::AgentSettingNames()) {
    if (name == "insecure") {
      run->add_flag("--insecure", run_insecure, help);
    } else {
      run->add_option("--" + name, run_values[name], help);
    }
  }
  run->add_option("--config", run_sources.path, "YAML settings file")->capture_default_str();

  if (auto exit = kspm::common::ParseCommandLine(app, argc, argv, "kspm-agent")) return *exit;
  if (run->parsed()) {
    for (const auto& [name, value] : run_values) {
      if (run->get_option("--" + name)->count() > 0) run_sources.flags[name] = value;
    }
    if (run_insecure) run_sources.flags["insecure"] = "true";
    run_sources.path_given = run->get_option("--config")->count() > 0;
  }
  if (auto s = kspm::common::SetUpLogging(log_level, log_format, "kspm-agent"); !s.ok()) {
    commands::Die(std::string(s.message()));
  }
  if (scan->parsed()) return commands::RunScanCommand(o);
  if (checks->parsed()) return commands::RunChecksCommand(o);
  if (send->parsed()) return commands::RunSendCommand(o);
  if (run->parsed()) return commands::RunDaemonCommand(run_sources);
  if (enroll->parsed()) {
    return commands::RunEnrollCommand(o, enroll_state_dir, enroll_token, enroll_ca_hash,
                                      enroll_token_file);
  }
  return commands::kExitUsage;
}

// kspm-agent: checks a node against the CIS Kubernetes and Docker benchmarks.
//   kspm-agent scan    one scan, results on stdout (a kube-bench replacement for CI and VMs)
//   kspm-agent checks  the catalogue
//   kspm-agent send    one scan, delivered to a collector
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "CLI/CLI.hpp"
#include "grpcpp/create_channel.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/scan.h"
#include "kspm/agent/transport/client.h"
#include "kspm/common/export.h"
#include "kspm/common/logging.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/strings.h"
#include "kspm/common/tls.h"
#include "spdlog/spdlog.h"

namespace {

using kspm::agent::checks::Catalog;
using kspm::agent::checks::Selection;

constexpr int kExitUsage = 2;

struct Options {
  std::string host_root = "/";
  std::string proc_root;
  std::vector<std::string> benchmarks;
  std::vector<std::string> only;
  std::vector<std::string> skip;
  std::string rules_dir;
  std::string format = "text";
  std::string output;
  int exit_code = 0;
  bool verbose = false;
  kspm::agent::NodeSettings node;
  std::string log_level = "warn";
  std::string log_format = "text";
  // send
  std::string collector;
  kspm::common::TlsFiles tls;
  int timeout_seconds = 30;
};

std::set<std::string> SplitIds(const std::vector<std::string>& values) {
  std::set<std::string> out;
  for (const auto& v : values) {
    for (std::string_view id : kspm::common::Split(v, ',', true)) out.emplace(id);
  }
  return out;
}

// Start-up is fatal on error: a clear message and exit code 2.
[[noreturn]] void Die(const std::string& message) {
  std::cerr << "kspm-agent: " << message << "\n";
  std::exit(kExitUsage);
}

Catalog LoadCatalog(const Options& o) {
  auto catalog = Catalog::Builtin();
  if (!catalog.ok()) Die("built-in catalogue: " + catalog.status().ToString());
  if (!o.rules_dir.empty()) {
    if (auto s = catalog->AddDirectory(o.rules_dir); !s.ok()) Die(std::string(s.message()));
  }
  return *std::move(catalog);
}

Selection MakeSelection(const Options& o, const Catalog& catalog) {
  Selection sel;
  const auto known = catalog.Benchmarks();
  auto is_known = [&known](const std::string& b) {
    return std::find(known.begin(), known.end(), b) != known.end();
  };
  for (const auto& b : SplitIds(o.benchmarks)) {
    // `cis-1.12` is accepted for `cis-kubernetes-1.12`, as kube-bench users type it.
    const std::string alias = b.starts_with("cis-") ? "cis-kubernetes-" + b.substr(4) : "";
    if (is_known(b)) {
      sel.benchmarks.insert(b);
    } else if (!alias.empty() && is_known(alias)) {
      sel.benchmarks.insert(alias);
    } else {
      Die("unknown benchmark '" + b + "' (known: " + kspm::common::Join(known, ", ") + ")");
    }
  }
  sel.only = SplitIds(o.only);
  sel.skip = SplitIds(o.skip);
  return sel;
}

std::unique_ptr<kspm::agent::host::HostView> MakeHost(const Options& o) {
  auto host = kspm::agent::host::MakeFsHostView(
      o.host_root, o.proc_root.empty() ? std::nullopt : std::optional<std::string>(o.proc_root));
  if (!host.ok()) Die(std::string(host.status().message()));
  return *std::move(host);
}

int RunScanCommand(const Options& o) {
  kspm::common::Format format;
  if (auto s = kspm::common::ParseFormat(o.format, &format); !s.ok()) Die(std::string(s.message()));
  const Catalog catalog = LoadCatalog(o);
  const Selection selection = MakeSelection(o, catalog);
  auto host = MakeHost(o);
  const kspm::v1::NodeReport report = kspm::agent::RunScan(*host, catalog, selection, o.node);

  std::ofstream file;
  if (!o.output.empty()) {
    file.open(o.output);
    if (!file) Die("cannot write " + o.output);
  }
  std::ostream& out = o.output.empty() ? std::cout : file;
  std::vector<kspm::common::ResultRow> rows;
  for (const auto& r : report.results()) {
    rows.push_back({report.node().cluster(), report.node().node_name(), &r});
  }
  std::map<kspm::v1::Status, int> counts;
  for (const auto& r : report.results()) counts[r.status()]++;
  switch (format) {
    case kspm::common::Format::kJson: {
      nlohmann::json results = nlohmann::json::array();
      for (const auto& r : report.results()) results.push_back(kspm::common::ResultToJson(r));
      nlohmann::json totals;
      for (auto s :
           {kspm::v1::STATUS_PASS, kspm::v1::STATUS_FAIL, kspm::v1::STATUS_WARN,
            kspm::v1::STATUS_MANUAL, kspm::v1::STATUS_NOT_APPLICABLE, kspm::v1::STATUS_ERROR}) {
        totals[std::string(kspm::common::StatusName(s))] = counts[s];
      }
      nlohmann::json doc = {{"scan_id", report.scan_id()},
                            {"host_root", report.host_root()},
                            {"node", kspm::common::NodeToJson(report.node())},
                            {"totals", totals},
                            {"results", std::move(results)}};
      out << doc.dump(2) << "\n";
      break;
    }
    case kspm::common::Format::kCsv:
      kspm::common::WriteCsv(rows, out);
      break;
    case kspm::common::Format::kJunit:
      kspm::common::WriteJunit(rows, out);
      break;
    case kspm::common::Format::kSarif:
      kspm::common::WriteSarif(rows, out);
      break;
    case kspm::common::Format::kText: {
      const bool colour = o.output.empty() && ::isatty(STDOUT_FILENO);
      std::string roles;
      for (int r : report.node().roles()) {
        roles += (roles.empty() ? "" : ",") +
                 std::string(kspm::common::RoleName(static_cast<kspm::v1::NodeRole>(r)));
      }
      out << "node " << report.node().node_name() << " (" << (roles.empty() ? "no roles" : roles)
          << ") host root " << report.host_root() << "\n";
      kspm::common::WriteText(rows, out, colour, o.verbose);
      out << "\n"
          << counts[kspm::v1::STATUS_PASS] << " pass, " << counts[kspm::v1::STATUS_FAIL]
          << " fail, " << counts[kspm::v1::STATUS_WARN] << " warn, "
          << counts[kspm::v1::STATUS_MANUAL] << " manual, "
          << counts[kspm::v1::STATUS_NOT_APPLICABLE] << " not applicable, "
          << counts[kspm::v1::STATUS_ERROR] << " error\n";
      break;
    }
  }
  if (o.exit_code != 0 && counts[kspm::v1::STATUS_FAIL] > 0) return o.exit_code;
  return 0;
}

int RunChecksCommand(const Options& o) {
  const Catalog catalog = LoadCatalog(o);
  const Selection selection = MakeSelection(o, catalog);
  kspm::common::Table table({"BENCHMARK", "ID", "CHECK", "SCORED", "SEVERITY", "TITLE"});
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : catalog.checks()) {
    for (const auto& [benchmark, item] : c.benchmarks) {
      if (!selection.benchmarks.empty() && !selection.benchmarks.contains(benchmark)) continue;
      const std::string severity(kspm::common::SeverityName(c.severity));
      table.AddRow({benchmark, item, c.id, c.scored ? "yes" : "no", severity, c.title});
      list.push_back({{"benchmark", benchmark},
                      {"id", item},
                      {"check_id", c.id},
                      {"scored", c.scored},
                      {"severity", severity},
                      {"title", c.title},
                      {"component", c.component},
                      {"manual", !c.manual.empty()}});
    }
  }
  if (o.format == "json") {
    std::cout << list.dump(2) << "\n";
  } else {
    table.Print(std::cout, false, 48);
    std::cout << "\n" << table.size() << " checks, catalogue " << catalog.version() << "\n";
  }
  return 0;
}

int RunSendCommand(const Options& o) {
  if (o.collector.empty()) Die("--collector HOST:PORT is required");
  if (o.tls.insecure) {
    spdlog::warn(
        "--insecure: sending results in plaintext without authentication; "
        "use this only on loopback for development");
  }
  auto creds = kspm::common::MakeClientCredentials(o.tls);
  if (!creds.ok()) Die(std::string(creds.status().message()));
  const Catalog catalog = LoadCatalog(o);
  const Selection selection = MakeSelection(o, catalog);
  auto host = MakeHost(o);
  const kspm::v1::NodeReport report = kspm::agent::RunScan(*host, catalog, selection, o.node);

  kspm::agent::transport::CollectorClient client(grpc::CreateChannel(o.collector, *creds));
  kspm::v1::Hello hello;
  *hello.mutable_node() = report.node();
  hello.set_catalog_version(catalog.version());
  const auto timeout = std::chrono::seconds(o.timeout_seconds);
  absl::Status s = client.Connect(hello, timeout);
  if (s.ok()) s = client.Deliver(report, timeout);
  if (s.ok()) s = client.Close();
  if (!s.ok()) {
    std::cerr << "kspm-agent: delivering scan " << report.scan_id() << " to " << o.collector
              << " failed: " << s.message() << "\n";
    return 1;
  }
  std::cerr << "kspm-agent: delivered scan " << report.scan_id() << " of node "
            << report.node().node_name() << " (" << report.results_size() << " results) to "
            << o.collector << "\n";
  return 0;
}

void AddScanOptions(CLI::App* cmd, Options& o) {
  cmd->add_option("--host-root", o.host_root, "Directory holding the host's root file system")
      ->capture_default_str();
  cmd->add_option("--proc-root", o.proc_root, "The host's /proc (default: HOST_ROOT/proc)");
  cmd->add_option("--benchmark", o.benchmarks,
                  "Benchmarks to report (cis-kubernetes-1.12, cis-docker-1.6, kspm-1); default all")
      ->delimiter(',');
  cmd->add_option("--only", o.only, "Check ids or item ids (or prefixes such as 4.2) to run");
  cmd->add_option("--skip", o.skip, "Check ids or item ids (or prefixes) to skip");
  cmd->add_option("--rules", o.rules_dir, "Directory of custom rules in the catalogue format");
  cmd->add_option("--node-name", o.node.node_name, "Node name (default: $NODE_NAME, hostname)");
  cmd->add_option("--cluster", o.node.cluster, "Cluster name")->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"kspm-agent: Kubernetes and Docker host posture checks"};
  app.set_version_flag("--version", std::string("kspm-agent ") + KSPM_VERSION);
  app.require_subcommand(1);
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--log-format", o.log_format, "text or json")->capture_default_str();

  CLI::App* scan = app.add_subcommand("scan", "Scan this node once and print the results");
  AddScanOptions(scan, o);
  scan->add_option("--format", o.format, "text, json, csv, junit, sarif")->capture_default_str();
  scan->add_option("--output,-o", o.output, "Write to a file instead of stdout");
  scan->add_option("--exit-code", o.exit_code, "Exit with this code when any check fails");
  scan->add_flag("--verbose,-v", o.verbose, "Show passing checks and remediation too");

  CLI::App* checks = app.add_subcommand("checks", "List the check catalogue");
  checks->add_option("--benchmark", o.benchmarks, "Only this benchmark")->delimiter(',');
  checks->add_option("--rules", o.rules_dir, "Directory of custom rules");
  checks->add_option("--format", o.format, "text or json")->capture_default_str();

  CLI::App* send = app.add_subcommand("send", "Scan once and deliver the report to a collector");
  AddScanOptions(send, o);
  send->add_option("--collector", o.collector, "Collector address HOST:PORT")->required();
  send->add_option("--tls-ca", o.tls.ca, "CA certificate that signed the collector's certificate");
  send->add_option("--tls-cert", o.tls.cert, "This node's client certificate");
  send->add_option("--tls-key", o.tls.key, "This node's private key");
  send->add_flag("--insecure", o.tls.insecure, "Plaintext, no authentication (loopback only)");
  send->add_option("--timeout", o.timeout_seconds, "Seconds to wait for the collector")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (auto s = kspm::common::SetUpLogging(o.log_level, o.log_format, "kspm-agent"); !s.ok()) {
    Die(std::string(s.message()));
  }
  if (scan->parsed()) return RunScanCommand(o);
  if (checks->parsed()) return RunChecksCommand(o);
  if (send->parsed()) return RunSendCommand(o);
  return kExitUsage;
}

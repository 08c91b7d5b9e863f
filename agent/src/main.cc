// kspm-agent: checks a node against the CIS Kubernetes and Docker benchmarks.
//   kspm-agent scan    one scan, results on stdout (a kube-bench replacement for CI and VMs)
//   kspm-agent checks  the catalogue
//   kspm-agent send    one scan, delivered to a collector
//   kspm-agent run     the node agent: scans every interval, streams to a collector
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <set>

#include "CLI/CLI.hpp"
#include "grpcpp/create_channel.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/daemon.h"
#include "kspm/agent/host/guarded_host_view.h"
#include "kspm/agent/scan.h"
#include "kspm/agent/transport/client.h"
#include "kspm/agent/transport/enroll.h"
#include "kspm/common/export.h"
#include "kspm/common/health_server.h"
#include "kspm/common/logging.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/safe_text.h"
#include "kspm/common/strings.h"
#include "kspm/common/time.h"
#include "kspm/common/tls.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

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
  // How long one host read, stat or listing may take before it is abandoned (a hung mount).
  double read_timeout_seconds = 5;
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

// Scans default to `auto` (the node's platform benchmark); listing the catalogue defaults to
// every benchmark. `all` is every benchmark of the catalogue.
Selection MakeSelection(const Options& o, const Catalog& catalog, bool default_auto = true) {
  Selection sel;
  const auto known = catalog.Benchmarks();
  auto is_known = [&known](const std::string& b) {
    return std::find(known.begin(), known.end(), b) != known.end();
  };
  const std::set<std::string> names = SplitIds(o.benchmarks);
  sel.auto_platform = names.empty() && default_auto;
  for (const auto& b : names) {
    if (b == "auto") {
      sel.auto_platform = true;
      continue;
    }
    if (b == "all") continue;
    // `cis-1.12` is accepted for `cis-kubernetes-1.12`, as kube-bench users type it.
    std::string alias = b.starts_with("cis-") ? "cis-kubernetes-" + b.substr(4) : "";
    // kube-bench's platform names: eks-1.8.0 is cis-eks-1.8.
    if (b.starts_with("eks-") || b.starts_with("gke-") || b.starts_with("aks-")) {
      alias = "cis-" + (b.ends_with(".0") && std::count(b.begin(), b.end(), '.') == 2
                            ? b.substr(0, b.size() - 2)
                            : b);
    }
    if (is_known(b)) {
      sel.benchmarks.insert(b);
    } else if (!alias.empty() && is_known(alias)) {
      sel.benchmarks.insert(alias);
    } else {
      Die("unknown benchmark '" + b + "' (known: auto, all, " + kspm::common::Join(known, ", ") +
          ")");
    }
  }
  if (names.contains("all")) {
    sel.benchmarks.clear();
    sel.auto_platform = false;
  }
  sel.only = SplitIds(o.only);
  sel.skip = SplitIds(o.skip);
  return sel;
}

// The host as every command reads it: through the guard, so no hung mount stalls a scan.
std::unique_ptr<kspm::agent::host::GuardedHostView> MakeHost(const Options& o) {
  auto host = kspm::agent::host::MakeFsHostView(
      o.host_root, o.proc_root.empty() ? std::nullopt : std::optional<std::string>(o.proc_root));
  if (!host.ok()) Die(std::string(host.status().message()));
  if (!(o.read_timeout_seconds > 0 && o.read_timeout_seconds <= 3600)) {
    Die("--read-timeout must be between 0 and 3600 seconds, not " +
        std::to_string(o.read_timeout_seconds));
  }
  kspm::agent::host::ReadGuardOptions guard;
  guard.call_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(o.read_timeout_seconds * 1000));
  return std::make_unique<kspm::agent::host::GuardedHostView>(*std::move(host), guard);
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
      if (!report.node().platform().empty()) {
        out << "platform " << report.node().platform() << ": "
            << kspm::common::TerminalSafe(report.node().platform_reason()) << "; benchmark "
            << report.node().platform_benchmark() << "\n";
      }
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
  const Selection selection = MakeSelection(o, catalog, false);
  kspm::common::Table table({"BENCHMARK", "ID", "CHECK", "SCORED", "SEVERITY", "TITLE"});
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : catalog.checks()) {
    for (const auto& [benchmark, item] : c.benchmarks) {
      if (!selection.benchmarks.empty() && !selection.benchmarks.contains(benchmark)) continue;
      const std::string severity(kspm::common::SeverityName(c.severity));
      table.AddRow(
          {benchmark, item, c.id, c.ScoredIn(benchmark) ? "yes" : "no", severity, c.title});
      list.push_back({{"benchmark", benchmark},
                      {"id", item},
                      {"check_id", c.id},
                      {"scored", c.ScoredIn(benchmark)},
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

// Settings of `run`, by precedence: command-line flag, environment variable, the YAML file
// (--config, default /etc/kspm/agent.yaml; keys are the flags' long names), built-in default.
struct RunFlags {
  std::map<std::string, std::string> given;  // flags set on the command line
  std::string config_path = "/etc/kspm/agent.yaml";
  bool config_given = false;
};

const std::map<std::string, std::string>& RunEnvironment() {
  static const std::map<std::string, std::string> kEnv = {
      {"collector", "KSPM_COLLECTOR"},
      {"cluster", "KSPM_CLUSTER"},
      {"node-name", "NODE_NAME"},
      {"interval", "KSPM_INTERVAL"},
      {"host-root", "KSPM_HOST_ROOT"},
      {"state-dir", "KSPM_STATE_DIR"},
      {"enroll-token-file", "KSPM_ENROLL_TOKEN_FILE"},
      {"join-token", "KSPM_JOIN_TOKEN"},
      {"ca-hash", "KSPM_CA_HASH"}};
  return kEnv;
}

std::map<std::string, std::string> ResolveRunSettings(const RunFlags& flags) {
  std::map<std::string, std::string> out = {
      {"cluster", "default"}, {"interval", "300"},
      {"host-root", "/"},     {"state-dir", "/var/lib/kspm-agent"},
      {"resync", "3600"},     {"spool-max-mb", "64"},
      {"full-every", ""},     {"health-listen", ""},
      {"insecure", "false"},  {"read-timeout", "5"}};
  std::ifstream in(flags.config_path);
  if (!in) {
    if (flags.config_given) Die("cannot read --config " + flags.config_path);
  } else {
    try {
      const YAML::Node root = YAML::LoadFile(flags.config_path);
      if (root && !root.IsNull()) {
        if (!root.IsMap()) Die(flags.config_path + ": expected a map of settings");
        for (const auto& kv : root) {
          const std::string key = kv.first.Scalar();
          static const std::set<std::string> kOther = {
              "tls-ca", "tls-cert", "tls-key", "proc-root", "rules", "benchmark", "only", "skip"};
          if (!out.contains(key) && !RunEnvironment().contains(key) && !kOther.contains(key)) {
            Die(flags.config_path + ":" + std::to_string(kv.first.Mark().line + 1) +
                ": unknown setting '" + key + "'");
          }
          if (kv.second.IsSequence() && (key == "benchmark" || key == "only" || key == "skip")) {
            std::vector<std::string> items;
            for (const auto& item : kv.second) items.push_back(item.Scalar());
            out[key] = kspm::common::Join(items, ",");
            continue;
          }
          if (!kv.second.IsScalar()) {
            Die(flags.config_path + ":" + std::to_string(kv.second.Mark().line + 1) +
                ": setting '" + key + "' must be a single value");
          }
          out[key] = kv.second.Scalar();
        }
      }
    } catch (const YAML::Exception& e) {
      Die(flags.config_path + ":" + std::to_string(e.mark.line + 1) + ":" +
          std::to_string(e.mark.column + 1) + ": " + e.msg);
    }
  }
  for (const auto& [key, env] : RunEnvironment()) {
    if (const char* v = std::getenv(env.c_str()); v != nullptr && *v != '\0') out[key] = v;
  }
  for (const auto& [key, value] : flags.given) out[key] = value;
  return out;
}

int ParsePositive(const std::map<std::string, std::string>& s, const std::string& key) {
  const auto it = s.find(key);
  int value = 0;
  if (it == s.end() || !kspm::agent::checks::ParseInt(it->second) ||
      (value = static_cast<int>(*kspm::agent::checks::ParseInt(it->second))) <= 0) {
    Die("setting '" + key + "' must be a positive integer, not '" +
        (it == s.end() ? "" : it->second) + "'");
  }
  return value;
}

int RunDaemonCommand(const Options& o, const RunFlags& flags) {
  const auto s = ResolveRunSettings(flags);
  auto get = [&s](const std::string& k) {
    const auto it = s.find(k);
    return it == s.end() ? std::string() : it->second;
  };
  const std::string collector = get("collector");
  if (collector.empty()) {
    Die("no collector: set --collector, KSPM_COLLECTOR or 'collector' in " + flags.config_path);
  }
  kspm::common::TlsFiles tls{get("tls-ca"), get("tls-cert"), get("tls-key"),
                             kspm::agent::checks::ParseBool(get("insecure")).value_or(false)};
  if (tls.insecure) {
    spdlog::warn(
        "--insecure: reports travel in plaintext without authentication; use this "
        "only on loopback for development");
  }

  Options scan_options = o;
  scan_options.host_root = get("host-root");
  scan_options.proc_root = get("proc-root");
  try {
    size_t used = 0;
    scan_options.read_timeout_seconds = std::stod(get("read-timeout"), &used);
    if (used != get("read-timeout").size()) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    Die("setting 'read-timeout' must be a number of seconds, not '" + get("read-timeout") + "'");
  }
  if (!get("rules").empty() && scan_options.rules_dir.empty())
    scan_options.rules_dir = get("rules");
  if (!get("benchmark").empty()) scan_options.benchmarks = {get("benchmark")};
  if (!get("only").empty()) scan_options.only = {get("only")};
  if (!get("skip").empty()) scan_options.skip = {get("skip")};
  const Catalog catalog = LoadCatalog(scan_options);
  const Selection selection = MakeSelection(scan_options, catalog);
  auto host = MakeHost(scan_options);

  auto spool = kspm::agent::transport::Spool::Open(
      get("state-dir") + "/spool", static_cast<size_t>(ParsePositive(s, "spool-max-mb")) << 20,
      10000);
  if (!spool.ok()) Die(std::string(spool.status().message()));

  kspm::agent::DaemonSettings settings;
  settings.node.cluster = get("cluster");
  settings.node.node_name = get("node-name");
  settings.drift_mode = get("drift-mode") == "auto" ? "" : get("drift-mode");
  settings.host_root = scan_options.host_root;
  settings.proc_root = scan_options.proc_root.empty()
                           ? kspm::agent::host::JoinUnderRoot(scan_options.host_root, "/proc")
                           : scan_options.proc_root;
  settings.interval = std::chrono::seconds(ParsePositive(s, "interval"));
  settings.resync = std::chrono::seconds(ParsePositive(s, "resync"));
  if (!get("full-every").empty()) {
    spdlog::warn(
        "--full-every is ignored: scans send what the collector does not hold, "
        "and a full report every --resync seconds ({})",
        settings.resync.count());
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Enrolled identity: no certificate given, and a credential to get one (or one got earlier).
  std::unique_ptr<kspm::agent::transport::CertificateKeeper> keeper;
  kspm::agent::transport::EnrollSettings enroll;
  enroll.collector = collector;
  enroll.node_name = kspm::agent::ResolveNodeName(settings.node, *host);
  enroll.identity_dir = get("state-dir") + "/identity";
  enroll.ca_file = get("tls-ca");
  enroll.ca_hash = get("ca-hash");
  enroll.token_file = get("enroll-token-file");
  enroll.join_token = get("join-token");
  const bool enrolled_identity = !tls.insecure && tls.cert.empty() && tls.key.empty() &&
                                 (!enroll.token_file.empty() || !enroll.join_token.empty() ||
                                  kspm::agent::transport::CurrentIdentity(enroll).ok());
  std::chrono::system_clock::time_point renew_time{};
  if (enrolled_identity) {
    auto renew_at = kspm::agent::transport::CurrentIdentity(enroll);
    std::chrono::milliseconds backoff{1000};
    while (!renew_at.ok() || *renew_at <= std::chrono::system_clock::now()) {
      if (renew_at.ok() || absl::IsNotFound(renew_at.status()) ||
          absl::IsFailedPrecondition(renew_at.status())) {
        // None yet, expired, or due: enrol (renewing with the current one when it is valid).
        const bool renew = renew_at.ok();
        renew_at = kspm::agent::transport::EnrollOnce(enroll, renew);
        if (renew_at.ok()) break;
      }
      spdlog::error("{} (retrying in {} s)", std::string(renew_at.status().message()),
                    backoff.count() / 1000);
      const timespec wait{static_cast<time_t>(backoff.count() / 1000), 0};
      if (sigtimedwait(&signals, nullptr, &wait) > 0) {
        spdlog::info("stopping before enrolment completed");
        return 0;
      }
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(60));
      renew_at = absl::NotFoundError("retry");
    }
    renew_time = *renew_at;
    tls = kspm::agent::transport::IdentityFiles(enroll);
  }
  // Read again at every connection, so a renewed certificate is used from the next one on; if
  // the files cannot be read (a renewal half-written), the last good credentials serve.
  auto creds = kspm::common::MakeClientCredentials(tls);
  if (!creds.ok()) Die(std::string(creds.status().message()));
  std::shared_ptr<grpc::ChannelCredentials> last_creds = *creds;
  const grpc::ChannelArguments args = kspm::agent::transport::AgentChannelArguments();
  kspm::agent::AgentDaemon daemon(*host, catalog, selection, settings, **spool, [&] {
    if (auto fresh = kspm::common::MakeClientCredentials(tls); fresh.ok()) {
      last_creds = *fresh;
    } else {
      spdlog::warn("TLS files: {}; using the last good ones",
                   std::string(fresh.status().message()));
    }
    return grpc::CreateCustomChannel(collector, last_creds, args);
  });
  if (enrolled_identity) {
    keeper = std::make_unique<kspm::agent::transport::CertificateKeeper>(
        enroll, renew_time, [&daemon] { daemon.Reconnect(); });
  }
  std::unique_ptr<kspm::common::HealthServer> health;
  if (!get("health-listen").empty()) {
    auto started = kspm::common::HealthServer::Start(get("health-listen"), [&daemon, &host] {
      std::string why = daemon.NotReadyReason();
      return why.empty() ? host->BlockedReason() : why;
    });
    if (!started.ok()) Die(std::string(started.status().message()));
    health = *std::move(started);
  }
  spdlog::info("kspm-agent {} for node {} (cluster {}), collector {}, every {} s, spool {}",
               KSPM_VERSION, kspm::agent::ResolveNodeName(settings.node, *host),
               settings.node.cluster, collector, settings.interval.count(),
               get("state-dir") + "/spool");
  daemon.Start();
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, stopping; {} reports stay queued",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", (*spool)->size());
  if (keeper) keeper->Stop();
  daemon.Stop();
  return 0;
}

// `kspm-agent enroll`: gets this node its certificate once, e.g. on a VM with a join token
// before the service starts; `run` then finds it in the state directory and renews it.
int RunEnrollCommand(const Options& o, const std::string& state_dir, const std::string& token,
                     const std::string& ca_hash, const std::string& token_file) {
  auto host = MakeHost(o);
  kspm::agent::transport::EnrollSettings enroll;
  enroll.collector = o.collector;
  enroll.node_name = kspm::agent::ResolveNodeName(o.node, *host);
  enroll.identity_dir = state_dir + "/identity";
  enroll.ca_file = o.tls.ca;
  enroll.ca_hash = ca_hash;
  enroll.join_token = token;
  enroll.token_file = token_file;
  enroll.timeout = std::chrono::seconds(o.timeout_seconds);
  if (token.empty() && token_file.empty()) Die("enroll needs --token or --token-file");
  auto renew_at = kspm::agent::transport::EnrollOnce(enroll, false);
  if (!renew_at.ok()) {
    std::cerr << "kspm-agent: " << renew_at.status().message() << "\n";
    return 1;
  }
  std::cout << "enrolled node " << enroll.node_name << ": " << enroll.identity_dir
            << "/node.crt (renewal due " << kspm::common::FormatRfc3339(*renew_at) << ")\n";
  return 0;
}

void AddScanOptions(CLI::App* cmd, Options& o) {
  cmd->add_option("--host-root", o.host_root, "Directory holding the host's root file system")
      ->capture_default_str();
  cmd->add_option("--proc-root", o.proc_root, "The host's /proc (default: HOST_ROOT/proc)");
  cmd->add_option("--benchmark", o.benchmarks,
                  "Benchmarks to report: auto (the default: the Kubernetes benchmark of the node's "
                  "platform, with Docker's and kspm's own), all, or names from `kspm-agent "
                  "checks`")
      ->delimiter(',');
  cmd->add_option("--only", o.only, "Check ids or item ids (or prefixes such as 4.2) to run");
  cmd->add_option("--skip", o.skip, "Check ids or item ids (or prefixes) to skip");
  cmd->add_option("--rules", o.rules_dir, "Directory of custom rules in the catalogue format");
  cmd->add_option("--node-name", o.node.node_name, "Node name (default: $NODE_NAME, hostname)");
  cmd->add_option("--cluster", o.node.cluster, "Cluster name")->capture_default_str();
  cmd->add_option("--read-timeout", o.read_timeout_seconds,
                  "Seconds one host read may take before it is abandoned as hung")
      ->capture_default_str();
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

  RunFlags run_flags;
  CLI::App* run = app.add_subcommand("run",
                                     "Run as the node agent: scan every interval and "
                                     "stream results to a collector");
  std::map<std::string, std::string> run_values;
  for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
           {"collector", "Collector address HOST:PORT (env KSPM_COLLECTOR)"},
           {"cluster", "Cluster name (env KSPM_CLUSTER)"},
           {"node-name", "Node name (env NODE_NAME; default: the host name)"},
           {"interval", "Seconds between full scans (default 300, jittered by 10%)"},
           {"host-root", "Directory holding the host's root file system (default /)"},
           {"proc-root", "The host's /proc (default HOST_ROOT/proc)"},
           {"state-dir",
            "Where the spool of undelivered reports lives (default "
            "/var/lib/kspm-agent)"},
           {"tls-ca", "CA certificate that signed the collector's certificate"},
           {"tls-cert", "This node's client certificate"},
           {"tls-key", "This node's private key"},
           {"health-listen", "HOST:PORT for GET /healthz and /readyz"},
           {"resync",
            "Seconds between full reports; between them only results the collector does not "
            "hold travel (default 3600)"},
           {"full-every", "Ignored (replaced by --resync)"},
           {"spool-max-mb", "Bound of the on-disk spool in MiB (default 64)"},
           {"drift-mode", "auto (eBPF, else inotify), ebpf, inotify or rescan (default auto)"},
           {"read-timeout",
            "Seconds one host read may take before it is abandoned as hung (default 5)"},
           {"enroll-token-file",
            "Projected service-account token (audience kspm-collector): without --tls-cert the "
            "agent enrols with it and keeps its identity in STATE_DIR/identity"},
           {"join-token", "Join token (kspmctl tokens create) for the first enrolment of a VM"},
           {"ca-hash", "sha256:<hex> pinning the collector's CA when there is no --tls-ca"}}) {
    run->add_option("--" + name, run_values[name], help);
  }
  bool run_insecure = false;
  run->add_flag("--insecure", run_insecure, "Plaintext, no authentication (loopback only)");
  run->add_option("--config", run_flags.config_path, "YAML settings file")->capture_default_str();
  run->add_option("--rules", o.rules_dir, "Directory of custom rules");

  CLI11_PARSE(app, argc, argv);
  if (run->parsed()) {
    for (const auto& [name, value] : run_values) {
      if (run->get_option("--" + name)->count() > 0) run_flags.given[name] = value;
    }
    if (run_insecure) run_flags.given["insecure"] = "true";
    run_flags.config_given = run->get_option("--config")->count() > 0;
  }
  if (auto s = kspm::common::SetUpLogging(o.log_level, o.log_format, "kspm-agent"); !s.ok()) {
    Die(std::string(s.message()));
  }
  if (scan->parsed()) return RunScanCommand(o);
  if (checks->parsed()) return RunChecksCommand(o);
  if (send->parsed()) return RunSendCommand(o);
  if (run->parsed()) return RunDaemonCommand(o, run_flags);
  if (enroll->parsed()) {
    return RunEnrollCommand(o, enroll_state_dir, enroll_token, enroll_ca_hash, enroll_token_file);
  }
  return kExitUsage;
}

#include <algorithm>
#include <iostream>

#include "commands/commands.h"
#include "kspm/common/strings.h"

namespace kspm::agent::commands {
namespace {

std::set<std::string> SplitIds(const std::vector<std::string>& values) {
  std::set<std::string> out;
  for (const auto& v : values) {
    for (std::string_view id : common::Split(v, ',', true)) out.emplace(id);
  }
  return out;
}

}  // namespace

void Die(const std::string& message) {
  std::cerr << "kspm-agent: " << message << "\n";
  std::exit(kExitUsage);
}

checks::Catalog LoadCatalog(const std::string& rules_dir) {
  auto catalog = checks::Catalog::Builtin();
  if (!catalog.ok()) Die("built-in catalogue: " + catalog.status().ToString());
  if (!rules_dir.empty()) {
    if (auto s = catalog->AddDirectory(rules_dir); !s.ok()) Die(std::string(s.message()));
  }
  return *std::move(catalog);
}

checks::Selection MakeSelection(const checks::Catalog& catalog,
                                const std::vector<std::string>& benchmarks,
                                const std::vector<std::string>& only,
                                const std::vector<std::string>& skip, bool default_auto) {
  checks::Selection sel;
  const auto known = catalog.Benchmarks();
  auto is_known = [&known](const std::string& b) {
    return std::find(known.begin(), known.end(), b) != known.end();
  };
  const std::set<std::string> names = SplitIds(benchmarks);
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
      Die("unknown benchmark '" + b + "' (known: auto, all, " + common::Join(known, ", ") + ")");
    }
  }
  if (names.contains("all")) {
    sel.benchmarks.clear();
    sel.auto_platform = false;
  }
  sel.only = SplitIds(only);
  sel.skip = SplitIds(skip);
  for (const auto& [flag, ids] : {std::pair{"--only", &sel.only}, {"--skip", &sel.skip}}) {
    if (const auto unknown = checks::UnknownSelectors(catalog, *ids); !unknown.empty()) {
      Die(std::string(flag) + " " + common::Join(unknown, ",") +
          ": no check id or benchmark item of the catalogue matches (`kspm-agent checks` lists "
          "them, e.g. 4.2.1, 4.2 or kubelet.anonymous-auth)");
    }
  }
  return sel;
}

std::unique_ptr<host::GuardedHostView> MakeHost(const std::string& host_root,
                                                const std::string& proc_root,
                                                double read_timeout_seconds) {
  auto host = host::MakeFsHostView(
      host_root, proc_root.empty() ? std::nullopt : std::optional<std::string>(proc_root));
  if (!host.ok()) Die(std::string(host.status().message()));
  if (!(read_timeout_seconds > 0 && read_timeout_seconds <= 3600)) {
    Die("--read-timeout must be between 0 and 3600 seconds, not " +
        std::to_string(read_timeout_seconds));
  }
  host::ReadGuardOptions guard;
  guard.call_timeout = std::chrono::milliseconds(static_cast<int64_t>(read_timeout_seconds * 1000));
  return std::make_unique<host::GuardedHostView>(*std::move(host), guard);
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

}  // namespace kspm::agent::commands

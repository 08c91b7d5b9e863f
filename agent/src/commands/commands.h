#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/config.h"
#include "kspm/agent/host/guarded_host_view.h"
#include "kspm/agent/scan.h"
#include "kspm/common/tls.h"

// The commands of kspm-agent, one file each; main.cc only parses the command line.
namespace kspm::agent::commands {

inline constexpr int kExitUsage = 2;

// The options of the one-shot commands (scan, checks, send, enroll).
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
  // Gates (scan): --fail-on SEVERITY and --min-score N; exit 3 when the scan fails them.
  std::string fail_on;
  std::string min_score;
  bool verbose = false;
  NodeSettings node;
  // send and enroll
  std::string collector;
  common::TlsFiles tls;
  int timeout_seconds = 30;
  // How long one host read, stat or listing may take before it is abandoned (a hung mount).
  double read_timeout_seconds = 5;
};

// Start-up is fatal on error: the message on stderr and exit code 2.
[[noreturn]] void Die(const std::string& message);

// The built-in catalogue with the custom rules of `rules_dir`, if any.
checks::Catalog LoadCatalog(const std::string& rules_dir);
// Benchmarks, only and skip as the user typed them. Scans default to `auto` (the node's
// platform benchmark); listing the catalogue (`default_auto` false) to every benchmark.
checks::Selection MakeSelection(const checks::Catalog& catalog,
                                const std::vector<std::string>& benchmarks,
                                const std::vector<std::string>& only,
                                const std::vector<std::string>& skip, bool default_auto = true);
// The host as every command reads it: through the guard, so no hung mount stalls a scan.
std::unique_ptr<host::GuardedHostView> MakeHost(const std::string& host_root,
                                                const std::string& proc_root,
                                                double read_timeout_seconds);
// The options scan and send share.
void AddScanOptions(CLI::App* cmd, Options& o);

int RunScanCommand(const Options& o);
int RunChecksCommand(const Options& o);
int RunSendCommand(const Options& o);
int RunEnrollCommand(const Options& o, const std::string& state_dir, const std::string& token,
                     const std::string& ca_hash, const std::string& token_file);
int RunDaemonCommand(const AgentConfigSources& sources);

}  // namespace kspm::agent::commands

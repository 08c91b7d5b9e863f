#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/common/tls.h"

namespace kspm::agent {

// The settings of `kspm-agent run`, typed and checked once at start.
struct AgentConfig {
  std::string collector;  // HOST:PORT, required
  std::string cluster = "default";
  std::string node_name;  // "" = $NODE_NAME, else the host name
  std::chrono::seconds interval{300};
  std::chrono::seconds resync{3600};
  std::string host_root = "/";
  std::string proc_root;  // "" = HOST_ROOT/proc
  std::string state_dir = "/var/lib/kspm-agent";
  common::TlsFiles tls;
  std::string health_listen;  // "" = no health listener
  size_t spool_max_bytes = size_t{64} << 20;
  std::string drift_mode;  // "" = the best that works (ebpf, then inotify); or ebpf|inotify|rescan
  double read_timeout_seconds = 5;
  // Enrolment: a projected service-account token, or a join token with the CA's hash.
  std::string enroll_token_file;
  std::string join_token;
  std::string ca_hash;
  // What runs: a custom rules directory, benchmarks (comma lists allowed), only and skip.
  std::string rules_dir;
  std::vector<std::string> benchmarks;
  std::vector<std::string> only;
  std::vector<std::string> skip;
  // `full-every` was given: it is ignored now (replaced by `resync`), and said so at start.
  bool full_every_given = false;
};

// Where the settings come from, by precedence: command-line flags, the environment, the YAML
// file (keys are the flags' long names), built-in defaults.
struct AgentConfigSources {
  std::map<std::string, std::string> flags;  // long name (without --) -> value, as given
  std::string path = "/etc/kspm/agent.yaml";
  bool path_given = false;  // --config: then a missing file is an error, not "no file"
  std::function<const char*(const char*)> getenv = [](const char* name) {
    return std::getenv(name);
  };
};

// Every setting's long name with its help text, in the order `--help` lists them.
const std::vector<std::pair<std::string, std::string>>& AgentSettingNames();
// The environment variable of each setting that has one (e.g. collector -> KSPM_COLLECTOR).
const std::map<std::string, std::string>& AgentSettingEnvironment();

// Reads and checks the settings. An error names the setting and where its value came from (the
// file and line, the variable, or the flag), e.g. "/etc/kspm/agent.yaml:12: setting 'interval'
// must be a positive integer, not 'soon'".
[[nodiscard]] absl::StatusOr<AgentConfig> LoadAgentConfig(const AgentConfigSources& sources);

}  // namespace kspm::agent

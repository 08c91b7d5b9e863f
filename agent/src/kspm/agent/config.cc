#include "kspm/agent/config.h"

#include <charconv>
#include <fstream>
#include <set>

#include "absl/status/status.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/common/strings.h"
#include "yaml-cpp/yaml.h"

namespace kspm::agent {
namespace {

// A setting's raw value and where it came from, for error messages.
struct Raw {
  std::string value;
  std::string origin;  // "--interval", "$KSPM_INTERVAL", "/etc/kspm/agent.yaml:12"
};

// Settings that take a list (a YAML sequence or a comma-separated value).
bool IsList(const std::string& key) { return key == "benchmark" || key == "only" || key == "skip"; }

absl::Status Bad(const Raw& raw, const std::string& key, const std::string& expected) {
  return absl::InvalidArgumentError(raw.origin + ": setting '" + key + "' must be " + expected +
                                    ", not '" + raw.value + "'");
}

absl::Status ReadFile(const AgentConfigSources& sources, const std::set<std::string>& known,
                      std::map<std::string, Raw>* out) {
  if (!std::ifstream(sources.path)) {
    if (sources.path_given) return absl::NotFoundError("cannot read --config " + sources.path);
    return absl::OkStatus();  // the default file is optional
  }
  try {
    const YAML::Node root = YAML::LoadFile(sources.path);
    if (!root || root.IsNull()) return absl::OkStatus();
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(sources.path + ": expected a map of settings");
    }
    for (const auto& kv : root) {
      const std::string key = kv.first.Scalar();
      const std::string where = sources.path + ":" + std::to_string(kv.first.Mark().line + 1);
      if (!known.contains(key)) {
        return absl::InvalidArgumentError(where + ": unknown setting '" + key + "'");
      }
      if (kv.second.IsSequence() && IsList(key)) {
        std::vector<std::string> items;
        for (const auto& item : kv.second) items.push_back(item.Scalar());
        (*out)[key] = {common::Join(items, ","), where};
        continue;
      }
      if (!kv.second.IsScalar() && !kv.second.IsNull()) {
        return absl::InvalidArgumentError(where + ": setting '" + key + "' must be a single value");
      }
      (*out)[key] = {kv.second.IsNull() ? "" : kv.second.Scalar(), where};
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(sources.path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                      std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Positive(const std::map<std::string, Raw>& raw, const std::string& key,
                                 int64_t max) {
  const Raw& r = raw.at(key);
  const auto v = checks::ParseInt(r.value);
  if (!v || *v <= 0 || *v > max) {
    return Bad(r, key, "a positive integer up to " + std::to_string(max));
  }
  return *v;
}

std::vector<std::string> List(const std::map<std::string, Raw>& raw, const std::string& key) {
  std::vector<std::string> out;
  if (const auto it = raw.find(key); it != raw.end()) {
    for (std::string_view item : common::Split(it->second.value, ',', true)) out.emplace_back(item);
  }
  return out;
}

}  // namespace

const std::vector<std::pair<std::string, std::string>>& AgentSettingNames() {
  static const std::vector<std::pair<std::string, std::string>> kNames = {
      {"collector", "Collector address HOST:PORT (env KSPM_COLLECTOR)"},
      {"cluster", "Cluster name (env KSPM_CLUSTER)"},
      {"node-name", "Node name (env NODE_NAME; default: the host name)"},
      {"interval", "Seconds between full scans (default 300, jittered by 10%)"},
      {"host-root", "Directory holding the host's root file system (default /)"},
      {"proc-root", "The host's /proc (default HOST_ROOT/proc)"},
      {"state-dir", "Where the spool of undelivered reports lives (default /var/lib/kspm-agent)"},
      {"tls-ca", "CA certificate that signed the collector's certificate"},
      {"tls-cert", "This node's client certificate"},
      {"tls-key", "This node's private key"},
      {"health-listen", "HOST:PORT for GET /healthz, /readyz and /metrics (Prometheus)"},
      {"resync",
       "Seconds between full reports; between them only results the collector does not hold "
       "travel (default 3600)"},
      {"full-every", "Ignored (replaced by --resync)"},
      {"spool-max-mb", "Bound of the on-disk spool in MiB (default 64)"},
      {"drift-mode", "auto (eBPF, else inotify), ebpf, inotify or rescan (default auto)"},
      {"read-timeout", "Seconds one host read may take before it is abandoned as hung (default 5)"},
      {"enroll-token-file",
       "Projected service-account token (audience kspm-collector): without --tls-cert the agent "
       "enrols with it and keeps its identity in STATE_DIR/identity"},
      {"join-token", "Join token (kspmctl tokens create) for the first enrolment of a VM"},
      {"ca-hash", "sha256:<hex> pinning the collector's CA when there is no --tls-ca"},
      {"benchmark", "Benchmarks to report: auto (default), all, or names from `kspm-agent checks`"},
      {"only", "Check ids or item ids (or prefixes such as 4.2) to run"},
      {"skip", "Check ids or item ids (or prefixes) to skip"},
      {"rules", "Directory of custom rules in the catalogue format"},
      {"insecure", "Plaintext, no authentication (loopback only)"}};
  return kNames;
}

const std::map<std::string, std::string>& AgentSettingEnvironment() {
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

absl::StatusOr<AgentConfig> LoadAgentConfig(const AgentConfigSources& sources) {
  std::set<std::string> known;
  for (const auto& [name, help] : AgentSettingNames()) known.insert(name);
  std::map<std::string, Raw> raw = {
      {"cluster", {"default", "default"}}, {"interval", {"300", "default"}},
      {"host-root", {"/", "default"}},     {"state-dir", {"/var/lib/kspm-agent", "default"}},
      {"resync", {"3600", "default"}},     {"spool-max-mb", {"64", "default"}},
      {"insecure", {"false", "default"}},  {"drift-mode", {"auto", "default"}},
      {"read-timeout", {"5", "default"}}};
  if (auto s = ReadFile(sources, known, &raw); !s.ok()) return s;
  for (const auto& [key, env] : AgentSettingEnvironment()) {
    if (const char* v = sources.getenv(env.c_str()); v != nullptr && *v != '\0') {
      raw[key] = {v, "$" + env};
    }
  }
  for (const auto& [key, value] : sources.flags) {
    if (!known.contains(key)) return absl::InvalidArgumentError("unknown flag --" + key);
    raw[key] = {value, "--" + key};
  }
  auto get = [&raw](const std::string& key) {
    const auto it = raw.find(key);
    return it == raw.end() ? std::string() : it->second.value;
  };

  AgentConfig c;
  c.collector = get("collector");
  if (c.collector.empty()) {
    return absl::InvalidArgumentError(
        "no collector: set --collector, KSPM_COLLECTOR or "
        "'collector' in " +
        sources.path);
  }
  c.cluster = get("cluster");
  c.node_name = get("node-name");
  c.host_root = get("host-root");
  c.proc_root = get("proc-root");
  c.state_dir = get("state-dir");
  c.health_listen = get("health-listen");
  c.tls = {get("tls-ca"), get("tls-cert"), get("tls-key"), false};
  const auto insecure = checks::ParseBool(get("insecure"));
  if (!insecure) return Bad(raw.at("insecure"), "insecure", "true or false");
  c.tls.insecure = *insecure;
  auto interval = Positive(raw, "interval", 7 * 24 * 3600);
  if (!interval.ok()) return interval.status();
  c.interval = std::chrono::seconds(*interval);
  auto resync = Positive(raw, "resync", 30 * 24 * 3600);
  if (!resync.ok()) return resync.status();
  c.resync = std::chrono::seconds(*resync);
  auto spool = Positive(raw, "spool-max-mb", 1 << 20);
  if (!spool.ok()) return spool.status();
  c.spool_max_bytes = static_cast<size_t>(*spool) << 20;
  const std::string drift = get("drift-mode");
  if (drift != "auto" && drift != "ebpf" && drift != "inotify" && drift != "rescan") {
    return Bad(raw.at("drift-mode"), "drift-mode", "auto, ebpf, inotify or rescan");
  }
  c.drift_mode = drift == "auto" ? "" : drift;
  {
    const Raw& r = raw.at("read-timeout");
    double seconds = 0;
    const auto [end, ec] =
        std::from_chars(r.value.data(), r.value.data() + r.value.size(), seconds);
    if (ec != std::errc() || end != r.value.data() + r.value.size() || !(seconds > 0) ||
        seconds > 3600) {
      return Bad(r, "read-timeout", "a number of seconds between 0 and 3600");
    }
    c.read_timeout_seconds = seconds;
  }
  c.enroll_token_file = get("enroll-token-file");
  c.join_token = get("join-token");
  c.ca_hash = get("ca-hash");
  c.rules_dir = get("rules");
  c.benchmarks = List(raw, "benchmark");
  c.only = List(raw, "only");
  c.skip = List(raw, "skip");
  c.full_every_given = !get("full-every").empty();
  return c;
}

}  // namespace kspm::agent

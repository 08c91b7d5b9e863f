#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/discovery/flags.h"
#include "kspm/agent/host/host_view.h"
#include "kspm/v1/results.pb.h"
#include "yaml-cpp/yaml.h"

namespace kspm::agent::discovery {

// One parsed configuration file of a component. Later layers override earlier ones.
struct ConfigLayer {
  std::string path;
  v1::SourceKind kind = v1::SOURCE_KIND_CONFIG_FILE;  // CONFIG_FILE or DROP_IN
  YAML::Node root;
};

// A file a component uses, and how kspm knows it is that file.
struct ResolvedFile {
  std::string path;
  // "--kubeconfig of pid 812", "authentication.x509.clientCAFile in /var/lib/kubelet/config.yaml",
  // "known path".
  std::string how;
  // Named by the running component itself: missing means broken, not "not applicable".
  bool named = false;
};

// A component as found on this host.
struct Component {
  std::string name;
  const checks::ComponentSpec* spec = nullptr;
  bool present = false;  // a process runs, or a static pod manifest defines it
  int pid = 0;           // 0 when known only from a manifest
  // Where the flags came from: FLAG (live process) or MANIFEST (static pod file).
  v1::SourceKind flags_kind = v1::SOURCE_KIND_FLAG;
  std::string flags_source;  // "pid 812 (kubelet)" or the manifest path
  std::string manifest_path;
  FlagSet flags;
  std::vector<std::string> argv;
  bool cmdline_truncated = false;
  std::map<std::string, std::string> env;
  // Configuration layers, lowest precedence first. Empty when the component runs without one.
  std::vector<ConfigLayer> layers;
  // True when the component reads a config file (kubelet --config): v1beta1 defaults apply.
  bool uses_config_file = false;
  // A config file was named but could not be read or parsed: checks that need it are ERROR.
  std::optional<absl::Status> config_error;
  // Flags and environment are ignored because a config file replaces them (etcd).
  bool config_exclusive = false;
  std::map<std::string, ResolvedFile> files;
  // Why the component is absent, for NOT_APPLICABLE reasons.
  std::string absent_reason;
};

// Everything discovered on a host: one entry per catalogue component.
struct HostState {
  std::map<std::string, Component> components;
  std::vector<v1::NodeRole> roles;
  std::string os;
  std::string kernel;
  std::string kubelet_version;
  std::string container_runtime;
};

// Finds every catalogue component: running processes first (their flags, environment and the
// files they name), static pod manifests when the process is not visible, candidate paths only
// where the process says nothing. Never fails: what cannot be read is recorded per component.
HostState Discover(const host::HostView& host, const checks::Catalog& catalog);

// Looks a dotted key up in a YAML tree (`authentication.anonymous.enabled`).
std::optional<YAML::Node> LookupKey(const YAML::Node& root, std::string_view dotted);
// Renders a YAML value as text: scalars as is, sequences joined by ",", maps as k=v pairs.
std::string RenderYaml(const YAML::Node& node);
// Parses YAML or JSON text. Errors name `path` with line and column.
absl::StatusOr<YAML::Node> ParseYaml(const std::string& text, const std::string& path);

}  // namespace kspm::agent::discovery

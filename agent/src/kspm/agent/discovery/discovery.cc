#include "kspm/agent/discovery/discovery.h"

#include <algorithm>

#include "kspm/agent/discovery/embedded.h"
#include "kspm/common/safe_text.h"
#include "kspm/common/strings.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace kspm::agent::discovery {

using internal::Basename;
using internal::FindEmbedded;
using internal::MatchProcess;

namespace {

std::string Dirname(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

// A file named by a component's running process, as the agent reads it. The host path, when the
// file is there; otherwise the same path as the process sees it, under /proc/<pid>/root, when it
// exists there: the process runs in a mount namespace of its own (kube-proxy in a kubeadm
// DaemonSet pod, whose --config names a file of its ConfigMap volume). A process that shares the
// host's view sees the same missing file, so nothing else is ever picked up. Static pods mount
// their files from the host, so their paths stay host paths (and drift watching keeps matching
// them).
// With `inside_first` (a path named in a config file that was itself read in the process's mount
// namespace) the process's view wins whenever the file exists there.
ResolvedFile InProcessView(const host::HostView& host, const Component& c, ResolvedFile file,
                           bool inside_first = false) {
  if (c.pid <= 0 || file.path.empty() || file.path[0] != '/' || file.path.starts_with("/proc/")) {
    return file;
  }
  if (!inside_first && host.Stat(file.path).status().code() != absl::StatusCode::kNotFound) {
    return file;
  }
  const std::string inside = "/proc/" + std::to_string(c.pid) + "/root" + file.path;
  if (!host.Stat(inside).ok()) return file;
  file.how += ", as pid " + std::to_string(c.pid) +
              " sees it in its own mount namespace (not on "
              "the host)";
  file.path = inside;
  return file;
}

// The component's own config file, if it reads one.
void LoadConfigFile(const host::HostView& host, const checks::ConfigSpec& spec, Component& c) {
  ResolvedFile file;
  const bool live_flags = c.present && !c.config_exclusive;
  if (!spec.flag.empty() && live_flags && c.flags.Has(spec.flag)) {
    file = InProcessView(
        host, c, {*c.flags.Value(spec.flag), "--" + spec.flag + " of " + c.flags_source, true});
  } else if (!spec.env.empty() && c.env.contains(spec.env)) {
    file = InProcessView(
        host, c, {c.env.at(spec.env), spec.env + " in the environment of " + c.flags_source, true});
  } else if (!spec.default_path.empty() && host.Stat(spec.default_path).ok()) {
    file = {spec.default_path, "default config file of " + c.name, false};
  } else if (c.pid == 0 || c.cmdline_truncated) {
    // The process is not visible (or its command line is cut): known paths are the best guess.
    for (const auto& candidate : spec.candidates) {
      if (host.Stat(candidate).ok()) {
        file = {candidate, "known path (no running process names a config file)", false};
        break;
      }
    }
  }
  if (file.path.empty()) return;  // runs without a config file
  c.files["config"] = file;
  c.uses_config_file = true;
  auto text = host.ReadFile(file.path);
  if (!text.ok()) {
    c.config_error =
        text.status().code() == absl::StatusCode::kNotFound
            ? absl::NotFoundError("config file " + file.path + " (" + file.how + ") does not exist")
            : text.status();
    return;
  }
  auto root = ParseYaml(*text, file.path);
  if (!root.ok()) {
    c.config_error = root.status();
    return;
  }
  c.layers.push_back({file.path, v1::SOURCE_KIND_CONFIG_FILE, *root});
  if (spec.exclusive) c.config_exclusive = true;
}

// The drop-in files of `dir` as the kubelet reads them (cmd/kubelet/app/server.go,
// mergeKubeletConfigurations: filepath.WalkDir, files whose extension is `.conf`): entries in
// lexical order, a subdirectory walked where it sorts, depth first. Bounded (depth 8, 1,000
// files) so a hostile tree cannot hold the scan.
absl::Status WalkDropIns(const host::HostView& host, const std::string& dir, int depth,
                         std::vector<std::string>& out) {
  auto names = host.ListDir(dir);
  if (!names.ok()) return names.status();
  for (const auto& name : *names) {
    const std::string path = dir + "/" + name;
    auto info = host.Stat(path);
    if (!info.ok()) continue;  // vanished, or a dangling link: WalkDir would not read it either
    if (info->IsDirectory()) {
      if (depth >= 8) {
        return absl::ResourceExhaustedError("drop-in directory " + dir + " nests deeper than 8");
      }
      if (auto s = WalkDropIns(host, path, depth + 1, out); !s.ok()) return s;
    } else if (name.size() > 5 && name.ends_with(".conf")) {
      if (out.size() >= 1000) {
        return absl::ResourceExhaustedError("drop-in directory " + dir +
                                            " holds more than 1000 .conf files");
      }
      out.push_back(path);
    }
  }
  return absl::OkStatus();
}

void LoadDropIns(const host::HostView& host, const checks::ConfigSpec& spec, Component& c) {
  if (spec.dropin_flag.empty() || c.config_exclusive || !c.flags.Has(spec.dropin_flag)) {
    return;
  }
  const ResolvedFile dir = InProcessView(
      host, c,
      {*c.flags.Value(spec.dropin_flag), "--" + spec.dropin_flag + " of " + c.flags_source, true});
  std::vector<std::string> paths;
  if (auto s = WalkDropIns(host, dir.path, 0, paths); !s.ok()) {
    c.config_error = absl::Status(s.code(), "drop-in directory " + dir.path + " (" + dir.how +
                                                "): " + std::string(s.message()));
    return;
  }
  // Later files win (an RFC 7386 merge patch each, over the config file or, without one, over
  // the flag defaults).
  for (const auto& path : paths) {
    auto dropin_text = host.ReadFile(path);
    if (!dropin_text.ok()) {
      c.config_error = dropin_text.status();
      return;
    }
    auto dropin = ParseYaml(*dropin_text, path);
    if (!dropin.ok()) {
      c.config_error = dropin.status();
      return;
    }
    c.layers.push_back({path, v1::SOURCE_KIND_DROP_IN, *dropin});
  }
}

void LoadConfig(const host::HostView& host, const checks::ConfigSpec& spec, Component& c) {
  LoadConfigFile(host, spec, c);
  if (!c.config_error) LoadDropIns(host, spec, c);
}

void ResolveFiles(const host::HostView& host, const checks::ComponentSpec& spec, Component& c) {
  for (const auto& [role, file_spec] : spec.files) {
    if (role == "config") continue;
    ResolvedFile file;
    if (!file_spec.flag.empty() && !c.config_exclusive && c.flags.Has(file_spec.flag)) {
      file = InProcessView(
          host, c,
          {*c.flags.Value(file_spec.flag), "--" + file_spec.flag + " of " + c.flags_source, true});
    }
    if (file.path.empty() && !file_spec.key.empty()) {
      for (auto it = c.layers.rbegin(); it != c.layers.rend(); ++it) {
        if (auto v = LookupKey(it->root, file_spec.key);
            v && v->IsScalar() && !v->Scalar().empty()) {
          std::string path = v->Scalar();
          // Relative paths in a kubelet or kube-proxy config are relative to the file's folder
          // (which is under /proc/<pid>/root when the config was read there).
          const bool relative = path[0] != '/';
          if (relative) path = Dirname(it->path) + "/" + path;
          file = {path, file_spec.key + " in " + it->path, true};
          // An absolute path in a config read from a container is a path in that container (a
          // stale file of the same name on the host is not the one the process reads).
          if (!relative && it->path.starts_with("/proc/")) {
            file = InProcessView(host, c, file, /*inside_first=*/true);
          }
          break;
        }
      }
    }
    if (file.path.empty()) {
      for (const auto& candidate : file_spec.candidates) {
        if (host.Stat(candidate).ok()) {
          file = {candidate, "known path, not named by the component", false};
          break;
        }
      }
    }
    if (!file.path.empty()) c.files[role] = std::move(file);
  }
}

std::string ReadOsName(const host::HostView& host) {
  auto text = host.ReadFile("/etc/os-release");
  if (!text.ok()) return "";
  for (std::string_view line : common::Split(*text, '\n')) {
    if (line.starts_with("PRETTY_NAME=")) {
      std::string value(line.substr(12));
      value.erase(std::remove(value.begin(), value.end(), '"'), value.end());
      return value;
    }
  }
  return "";
}

}  // namespace

namespace internal {

std::string Basename(std::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

bool TitleOnly(const std::vector<std::string>& argv) {
  return argv.size() == 1 && argv[0].find(' ') != std::string::npos;
}

std::optional<size_t> MatchProcess(const std::vector<std::string>& argv,
                                   const std::vector<std::string>& pattern, bool title_ok) {
  if (title_ok && TitleOnly(argv)) {
    std::vector<std::string> words;
    for (auto w : common::Split(argv[0], ' ', true)) words.emplace_back(w);
    if (words.size() < pattern.size() || Basename(words[0]) != pattern[0]) return std::nullopt;
    for (size_t i = 1; i < pattern.size(); ++i) {
      if (words[i] != pattern[i]) return std::nullopt;
    }
    return argv.size();
  }
  if (argv.empty() || pattern.empty() || argv.size() < pattern.size()) return std::nullopt;
  if (Basename(argv[0]) != pattern[0]) return std::nullopt;
  for (size_t i = 1; i < pattern.size(); ++i) {
    if (argv[i] != pattern[i]) return std::nullopt;
  }
  return pattern.size();
}

}  // namespace internal

absl::StatusOr<YAML::Node> ParseYaml(const std::string& text, const std::string& path) {
  // JSON documents (daemon.json, kubelet-config.json) are held to JSON's grammar: yaml-cpp
  // accepts things such as `{"a": 1,, }` that the component itself would reject.
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') {
    try {
      const auto parsed = nlohmann::json::parse(text);
      (void)parsed;
    } catch (const nlohmann::json::parse_error& e) {
      size_t line = 1, column = 1;
      for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
        if (text[i] == '\n') {
          ++line;
          column = 1;
        } else {
          ++column;
        }
      }
      std::string what = e.what();
      if (const size_t colon = what.rfind(": "); colon != std::string::npos) {
        what = what.substr(colon + 2);
      }
      return absl::InvalidArgumentError(path + ":" + std::to_string(line) + ":" +
                                        std::to_string(column) + ": invalid JSON: " + what);
    } catch (const nlohmann::json::exception& e) {
      // Valid grammar the component cannot hold either, such as a number that overflows.
      return absl::InvalidArgumentError(path + ": invalid JSON: " + e.what());
    }
  }
  // Aliases are shared at load but copied by every walk of the tree: a few hundred bytes of
  // nested aliases would take gigabytes. Refused before loading.
  if (auto s = common::CheckYamlSize(text, path); !s.ok()) return s;
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                      std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

std::optional<YAML::Node> LookupKey(const YAML::Node& root, std::string_view dotted) {
  YAML::Node node = YAML::Clone(root);
  for (std::string_view part : common::Split(dotted, '.')) {
    if (!node.IsMap()) return std::nullopt;
    YAML::Node next = node[std::string(part)];
    if (!next) return std::nullopt;
    node = next;
  }
  if (node.IsNull()) return std::nullopt;
  return node;
}

std::string RenderYaml(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  if (node.IsSequence()) {
    std::vector<std::string> items;
    for (const auto& item : node) items.push_back(RenderYaml(item));
    return common::Join(items, ",");
  }
  if (node.IsMap()) {
    std::vector<std::string> items;
    for (const auto& kv : node) items.push_back(kv.first.Scalar() + "=" + RenderYaml(kv.second));
    return common::Join(items, ",");
  }
  return "";
}

HostState Discover(const host::HostView& host, const checks::Catalog& catalog) {
  HostState state;
  auto processes = host.ListProcesses();
  if (!processes.ok()) {
    spdlog::warn("cannot list processes: {}; components are found from manifests only",
                 processes.status().ToString());
  }
  for (const auto& spec : catalog.components()) {
    Component c;
    c.name = spec.name;
    c.spec = &spec;
    if (processes.ok()) {
      // The newest matching process is the live one when an old one lingers.
      for (auto it = processes->rbegin(); it != processes->rend() && !c.present; ++it) {
        for (const auto& pattern : spec.processes) {
          if (auto first = MatchProcess(it->argv, pattern)) {
            c.present = true;
            c.pid = it->pid;
            c.argv = it->argv;
            c.cmdline_truncated = it->cmdline_truncated;
            c.flags_kind = v1::SOURCE_KIND_FLAG;
            c.flags_source = "pid " + std::to_string(it->pid) + " (" + spec.name + ")";
            c.flags = FlagSet::Parse(it->argv, *first, spec.bool_flags);
            break;
          }
        }
      }
    }
    if (!c.present && processes.ok()) FindEmbedded(host, spec, *processes, c);
    if (c.present) {
      if (auto env = host.ProcessEnviron(c.pid); env.ok()) {
        for (const auto& kv : *env) {
          const size_t eq = kv.find('=');
          if (eq != std::string::npos) c.env[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
      }
    }
    std::string manifest_error;
    for (const auto& manifest : spec.manifests) {
      auto text = host.ReadFile(manifest);
      if (!text.ok()) continue;
      c.manifest_path = manifest;
      if (c.present) break;  // the live process wins; the manifest is kept for file checks
      auto root = ParseYaml(*text, manifest);
      if (!root.ok()) {
        manifest_error = std::string(root.status().message());
        break;
      }
      std::vector<std::string> argv;
      if (auto containers = LookupKey(*root, "spec.containers");
          containers && containers->IsSequence() && containers->size() > 0) {
        const YAML::Node first = (*containers)[0];
        for (const char* field : {"command", "args"}) {
          if (first[field] && first[field].IsSequence()) {
            for (const auto& a : first[field]) argv.push_back(a.Scalar());
          }
        }
      }
      if (argv.empty()) {
        manifest_error = manifest + ": no spec.containers[0].command";
        break;
      }
      c.present = true;
      c.argv = argv;
      c.flags_kind = v1::SOURCE_KIND_MANIFEST;
      c.flags_source = "static pod manifest " + manifest;
      c.flags = FlagSet::Parse(argv, 1, spec.bool_flags);
      break;
    }
    if (!c.present) {
      if (c.absent_reason.empty()) {
        c.absent_reason = "no " + spec.name + " process runs on this node";
        if (!spec.manifests.empty()) {
          c.absent_reason += manifest_error.empty()
                                 ? " and no static pod manifest defines it"
                                 : " and its static pod manifest is unreadable: " + manifest_error;
        }
      }
    } else {
      if (spec.config) LoadConfig(host, *spec.config, c);
      ResolveFiles(host, spec, c);
      if (spec.role != v1::NODE_ROLE_UNSPECIFIED &&
          std::find(state.roles.begin(), state.roles.end(), spec.role) == state.roles.end()) {
        state.roles.push_back(spec.role);
      }
      if (spec.name == "containerd" || spec.name == "dockerd" || spec.name == "crio") {
        if (state.container_runtime.empty()) state.container_runtime = spec.name;
      }
    }
    state.components.emplace(spec.name, std::move(c));
  }
  std::sort(state.roles.begin(), state.roles.end());
  state.os = ReadOsName(host);
  if (auto kernel = host.ReadFile("/proc/sys/kernel/osrelease"); kernel.ok()) {
    state.kernel = std::string(common::Trim(*kernel));
  }
  return state;
}

}  // namespace kspm::agent::discovery

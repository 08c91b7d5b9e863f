#include "kspm/agent/discovery/embedded.h"

#include <map>

#include "kspm/common/strings.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace kspm::agent::discovery::internal {
namespace {

// Splits a systemd ExecStart value into words: backslash-newline continues a line, single and
// double quotes group (systemd's own rules, without variable expansion), a leading `-`, `@`,
// `+` or `!` prefix on the command is dropped.
std::vector<std::string> ExecStartWords(std::string_view unit_text) {
  std::string joined;
  for (size_t i = 0; i < unit_text.size(); ++i) {
    if (unit_text[i] == '\\' && i + 1 < unit_text.size() && unit_text[i + 1] == '\n') {
      ++i;
      joined += ' ';
    } else {
      joined += unit_text[i];
    }
  }
  std::vector<std::string> words;
  for (std::string_view line : common::Split(joined, '\n')) {
    line = common::Trim(line);
    if (!line.starts_with("ExecStart=")) continue;
    line.remove_prefix(10);
    words.clear();  // the last ExecStart= wins (a drop-in's empty one resets it)
    std::string word;
    bool in_word = false;
    char quote = 0;
    for (char ch : line) {
      if (quote != 0) {
        if (ch == quote) {
          quote = 0;
        } else {
          word += ch;
        }
      } else if (ch == '\'' || ch == '"') {
        quote = ch;
        in_word = true;
      } else if (ch == ' ' || ch == '\t') {
        if (in_word) words.push_back(std::move(word));
        word.clear();
        in_word = false;
      } else {
        word += ch;
        in_word = true;
      }
    }
    if (in_word) words.push_back(std::move(word));
    while (!words.empty() && !words[0].empty() &&
           std::string_view("-@+!").find(words[0][0]) != std::string_view::npos) {
      words[0].erase(0, 1);
    }
  }
  return words;
}

bool Truthy(const std::vector<std::string>& values) {
  return !values.empty() && !values.back().empty() && values.back() != "false";
}

// The options of a distribution's process (k3s), as it reads them: its config file, then the
// file's `.d` drop-ins (`*.yaml`, `*.yml`, by name; a later file replaces a key, `key+:` appends
// to it), then its command line, which comes after and adds to lists. k3s hides its command line
// (setproctitle), so the ExecStart of its systemd unit stands in for it.
struct HostOptions {
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> sources;
  std::optional<absl::Status> error;
};

HostOptions ReadHostOptions(const host::HostView& host, const checks::EmbeddedSpec& embedded,
                            const host::ProcessInfo& process, size_t first) {
  HostOptions out;
  std::vector<std::string> argv = process.argv;
  size_t flags_from = first;
  std::string command_line = "the command line of pid " + std::to_string(process.pid);
  if (TitleOnly(process.argv)) {
    argv.clear();
    for (const auto& unit : embedded.units) {
      auto text = host.ReadFile(unit);
      if (!text.ok()) continue;
      std::vector<std::string> words = ExecStartWords(*text);
      if (auto at = MatchProcess(words, embedded.process)) {
        argv = std::move(words);
        flags_from = *at;
        command_line =
            "ExecStart of " + unit + " (pid " + std::to_string(process.pid) + " hides its flags)";
        break;
      }
    }
  }
  const FlagSet flags =
      FlagSet::Parse(argv, std::min(flags_from, argv.size()), embedded.bool_options);
  std::string config = embedded.config;
  if (!embedded.config_flag.empty() && flags.Has(embedded.config_flag)) {
    config = *flags.Value(embedded.config_flag);
  }
  if (!config.empty()) {
    std::vector<std::string> files{config};
    if (auto names = host.ListDir(config + ".d"); names.ok()) {
      std::vector<std::string> sorted = *names;
      std::sort(sorted.begin(), sorted.end());
      for (const auto& n : sorted) {
        std::string lower = n;
        std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
        if (lower.ends_with(".yaml") || lower.ends_with(".yml")) {
          files.push_back(config + ".d/" + n);
        }
      }
    }
    for (const auto& file : files) {
      auto text = host.ReadFile(file);
      if (!text.ok()) continue;
      auto root = ParseYaml(*text, file);
      if (!root.ok()) {
        out.error = root.status();
        continue;
      }
      if (!root->IsMap()) continue;
      out.sources.push_back(file);
      for (const auto& kv : *root) {
        std::string key = kv.first.Scalar();
        const bool append = key.ends_with("+");
        if (append) key.pop_back();
        std::vector<std::string> values;
        if (kv.second.IsSequence()) {
          for (const auto& v : kv.second) values.push_back(v.Scalar());
        } else if (kv.second.IsScalar()) {
          values.push_back(kv.second.Scalar());
        }
        auto& slot = out.values[key];
        if (!append) slot.clear();
        slot.insert(slot.end(), values.begin(), values.end());
      }
    }
  }
  // Flags come after the file's options: they add to lists (`*-arg`, repeated flags) and
  // replace single values.
  std::set<std::string> from_flags;
  for (const auto& [name, occ] : flags.occurrences()) {
    auto& slot = out.values[name];
    const bool list = name.ends_with("-arg") || from_flags.contains(name);
    if (!list) slot.clear();
    slot.push_back(occ.has_value ? occ.value : "true");
    from_flags.insert(name);
  }
  if (!flags.occurrences().empty()) out.sources.push_back(command_line);
  return out;
}

bool Holds(const host::HostView& host, const checks::EmbeddedCondition& when,
           const HostOptions& options) {
  auto set = [&options](const std::string& name) {
    const auto it = options.values.find(name);
    return it != options.values.end() && Truthy(it->second);
  };
  for (const auto& u : when.unless) {
    if (set(u)) return false;
  }
  if (when.options.empty() && when.paths.empty() && when.missing.empty()) return true;
  for (const auto& o : when.options) {
    if (set(o)) return true;
  }
  for (const auto& p : when.paths) {
    if (host.Stat(p).ok()) return true;
  }
  for (const auto& p : when.missing) {
    if (host.Stat(p).status().code() == absl::StatusCode::kNotFound) return true;
  }
  return false;
}

// The arguments an embedding process gives a component, merged as k3s merges them: each
// `key=value` of the options' list replaces the built-in value of that key (a key given twice
// gives the flag twice), `key+=value` appends to it and `key-=value` prepends, with a comma.
std::vector<std::string> MergeEmbeddedArgs(const std::vector<std::string>& builtin,
                                           const std::vector<std::string>& user) {
  std::vector<std::pair<std::string, std::string>> args;
  auto split = [](std::string a) {
    while (a.starts_with("-")) a.erase(0, 1);
    const size_t eq = a.find('=');
    if (eq == std::string::npos) return std::pair<std::string, std::string>{a, "true"};
    return std::pair<std::string, std::string>{a.substr(0, eq), a.substr(eq + 1)};
  };
  for (const auto& a : builtin) args.push_back(split(a));
  std::set<std::string> replaced;
  for (const auto& a : user) {
    auto kv_pair = split(a);
    std::string key = std::move(kv_pair.first);
    const std::string value = std::move(kv_pair.second);
    char op = 0;
    if (key.ends_with("+") || key.ends_with("-")) {
      op = key.back();
      key.pop_back();
    }
    auto existing =
        std::find_if(args.begin(), args.end(), [&key](const auto& kv) { return kv.first == key; });
    if (op != 0 && existing != args.end()) {
      existing->second =
          op == '+' ? existing->second + "," + value : value + "," + existing->second;
      continue;
    }
    if (!replaced.contains(key)) {
      args.erase(std::remove_if(args.begin(), args.end(),
                                [&key](const auto& kv) { return kv.first == key; }),
                 args.end());
      replaced.insert(key);
    }
    args.emplace_back(key, value);
  }
  std::vector<std::string> out;
  for (const auto& [key, value] : args) out.push_back("--" + key + "=" + value);
  return out;
}

}  // namespace

void FindEmbedded(const host::HostView& host, const checks::ComponentSpec& spec,
                  const std::vector<host::ProcessInfo>& processes, Component& c) {
  for (const auto& embedded : spec.embedded) {
    for (auto it = processes.rbegin(); it != processes.rend(); ++it) {
      const auto first = MatchProcess(it->argv, embedded.process, /*title_ok=*/true);
      if (!first) continue;
      const HostOptions options = ReadHostOptions(host, embedded, *it, *first);
      const std::string host_name = common::Join(embedded.process, " ");
      if (embedded.runs_if && !Holds(host, *embedded.runs_if, options)) {
        c.absent_reason = host_name + " (pid " + std::to_string(it->pid) + ") runs without an " +
                          "embedded " + spec.name + " (none of " +
                          common::Join(embedded.runs_if->options, ", ") + " is set and " +
                          common::Join(embedded.runs_if->paths, ", ") + " does not exist)";
        return;
      }
      std::vector<std::string> builtin = embedded.base_args;
      for (const auto& ca : embedded.conditional_args) {
        if (Holds(host, ca.when, options)) {
          builtin.insert(builtin.end(), ca.args.begin(), ca.args.end());
        }
      }
      std::vector<std::string> user;
      if (!embedded.arg_flag.empty()) {
        if (const auto v = options.values.find(embedded.arg_flag); v != options.values.end()) {
          user = v->second;
        }
      }
      std::vector<std::string> argv{spec.name};
      for (auto& a : MergeEmbeddedArgs(builtin, user)) argv.push_back(std::move(a));
      if (options.error) c.config_error = *options.error;
      c.present = true;
      c.pid = it->pid;
      c.argv = argv;
      c.cmdline_truncated = it->cmdline_truncated;
      c.flags_kind = v1::SOURCE_KIND_FLAG;
      std::string sources = "built-in arguments";
      if (!options.sources.empty()) {
        sources += ", then " +
                   (embedded.arg_flag.empty() ? std::string("the options") : embedded.arg_flag) +
                   " from " + common::Join(options.sources, ", ");
      }
      c.flags_source = "pid " + std::to_string(it->pid) + " (" + spec.name + " embedded in " +
                       host_name + "; " + sources + ")";
      c.flags = FlagSet::Parse(argv, 1, spec.bool_flags);
      return;
    }
  }
}

}  // namespace kspm::agent::discovery::internal

#include "kspm/agent/discovery/flags.h"

namespace kspm::agent::discovery {

FlagSet FlagSet::Parse(const std::vector<std::string>& argv, size_t first,
                       const std::set<std::string, std::less<>>& bool_flags) {
  FlagSet out;
  for (size_t i = first; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--") {
      for (size_t j = i + 1; j < argv.size(); ++j) out.positional_.push_back(argv[j]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-' || arg == "-") {
      out.positional_.push_back(arg);
      continue;
    }
    std::string_view body(arg);
    body.remove_prefix(body.starts_with("--") ? 2 : 1);
    FlagOccurrence occ;
    occ.position = i;
    std::string name;
    if (const size_t eq = body.find('='); eq != std::string_view::npos) {
      name = std::string(body.substr(0, eq));
      occ.value = std::string(body.substr(eq + 1));
      occ.has_value = true;
    } else {
      name = std::string(body);
      if (!bool_flags.contains(name) && i + 1 < argv.size()) {
        occ.value = argv[++i];
        occ.has_value = true;
      }
    }
    out.flags_.emplace_back(std::move(name), std::move(occ));
  }
  return out;
}

std::optional<FlagOccurrence> FlagSet::Get(std::string_view name) const {
  for (auto it = flags_.rbegin(); it != flags_.rend(); ++it) {
    if (it->first == name) return it->second;
  }
  return std::nullopt;
}

std::optional<std::string> FlagSet::Value(std::string_view name) const {
  auto occ = Get(name);
  if (!occ) return std::nullopt;
  return occ->has_value ? occ->value : std::string("true");
}

std::vector<FlagOccurrence> FlagSet::All(std::string_view name) const {
  std::vector<FlagOccurrence> out;
  for (const auto& [n, occ] : flags_) {
    if (n == name) out.push_back(occ);
  }
  return out;
}

}  // namespace kspm::agent::discovery

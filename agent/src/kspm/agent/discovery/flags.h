#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kspm::agent::discovery {

// One occurrence of a flag on a command line.
struct FlagOccurrence {
  std::string value;
  bool has_value = false;  // false for a bare boolean flag (`--profiling`), which means true
  size_t position = 0;     // index in argv, for messages
};

// The flags of one command line, parsed the way Go's pflag (Kubernetes components) and flag
// (etcd) packages parse them:
//   --name=value and -name=value;
//   --name value, where `value` is the next argument whatever it looks like, unless the flag
//     is boolean: a boolean takes a value only through `=`;
//   repeated flags: the last occurrence wins;
//   `--` ends the flags.
class FlagSet {
 public:
  // `bool_flags` names the component's boolean flags (without dashes).
  static FlagSet Parse(const std::vector<std::string>& argv, size_t first,
                       const std::set<std::string, std::less<>>& bool_flags);

  // The effective (last) occurrence of `name` (no dashes), if any.
  std::optional<FlagOccurrence> Get(std::string_view name) const;
  // The effective value as text; a bare boolean reads as "true".
  std::optional<std::string> Value(std::string_view name) const;
  bool Has(std::string_view name) const { return Get(name).has_value(); }
  // Every occurrence, in order (for `--flag` repeated to build lists).
  std::vector<FlagOccurrence> All(std::string_view name) const;
  // Arguments that are not flags.
  const std::vector<std::string>& positional() const { return positional_; }
  // Every flag occurrence in command-line order, by name.
  const std::vector<std::pair<std::string, FlagOccurrence>>& occurrences() const { return flags_; }

 private:
  std::vector<std::pair<std::string, FlagOccurrence>> flags_;
  std::vector<std::string> positional_;
};

}  // namespace kspm::agent::discovery

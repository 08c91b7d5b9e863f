#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "CLI/CLI.hpp"

// Command-line conventions shared by kspm-agent, kspm-collector and kspmctl.
namespace kspm::common {

// Exit code of every usage error (unknown command or flag, bad value, missing argument): the
// systemd units' RestartPreventExitStatus=2 then stops a unit with a bad flag from restarting.
inline constexpr int kExitUsage = 2;

// Parses the command line. Returns nothing when the program should go on, else the exit code:
// 0 after --help or --version, kExitUsage after a usage error, which is printed as one line
// `PROGRAM: what is wrong` (with `did you mean 'scan'?` for a misspelled command or flag) and a
// pointer to --help.
std::optional<int> ParseCommandLine(CLI::App& app, int argc, char** argv, std::string_view program);

// The candidate closest to `word` when it is close enough to be a likely typo (edit distance at
// most a third of the word, at least 1, at most 3), else empty.
std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace kspm::common

#include "kspm/common/cli.h"

#include <algorithm>
#include <iostream>

namespace kspm::common {
namespace {

// Edits (insert, delete, replace, swap two neighbours) from `a` to `b`: `scna` is one from `scan`.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The deepest subcommand the command line reached: its flags and subcommands are the
// candidates for a typo.
const CLI::App* Deepest(const CLI::App& app) {
  const CLI::App* at = &app;
  for (bool deeper = true; deeper;) {
    deeper = false;
    for (const CLI::App* sub : at->get_subcommands()) {
      at = sub;
      deeper = true;
      break;
    }
  }
  return at;
}

std::vector<std::string> Candidates(const CLI::App& at, bool flags) {
  std::vector<std::string> out;
  if (flags) {
    for (const CLI::Option* opt : at.get_options()) {
      for (const auto& name : opt->get_lnames()) out.push_back("--" + name);
    }
    if (at.get_parent() != nullptr) {  // flags of the top level apply everywhere
      for (const CLI::Option* opt : at.get_parent()->get_options()) {
        for (const auto& name : opt->get_lnames()) out.push_back("--" + name);
      }
    }
  } else {
    for (const CLI::App* sub : at.get_subcommands({})) out.push_back(sub->get_name());
  }
  return out;
}

// The first argument CLI11 did not expect: left over in `at`, or named in ExtrasError's message
// ("The following arguments were not expected: --fomat json").
std::string FirstUnexpected(const CLI::App& at, const std::string& message) {
  const auto rest = at.remaining();
  if (!rest.empty()) return rest.front();
  const size_t colon = message.find("expected: ");
  if (colon == std::string::npos) return "";
  const std::string after = message.substr(colon + 10);
  return after.substr(0, after.find(' '));
}

}  // namespace

std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(1, std::min<size_t>(3, word.size() / 3)) + 1;
  for (const auto& c : candidates) {
    const size_t d = EditDistance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

std::optional<int> ParseCommandLine(CLI::App& app, int argc, char** argv,
                                    std::string_view program) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const CLI::App* at = Deepest(app);
    std::string message = e.what();
    std::string hint;
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr ||
        dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
      const std::string unexpected = FirstUnexpected(*at, message);
      if (!unexpected.empty()) {
        const bool flag = unexpected.starts_with("-");
        std::string word = unexpected.substr(0, unexpected.find('='));
        const std::string close = ClosestMatch(word, Candidates(*at, flag));
        if (!close.empty()) hint = "did you mean '" + close + "'?";
        message = std::string(flag ? "unknown flag '" : "unknown command '") + word + "'";
        if (!flag && at->get_subcommands({}).empty()) {
          message = "unexpected argument '" + word + "'";
        }
      }
    }
    std::cerr << program << ": " << message << (hint.empty() ? "" : "; " + hint) << "\n"
              << "Run '" << program << (at == &app ? std::string() : " " + at->get_name())
              << " --help' for usage.\n";
    return kExitUsage;
  }
}

}  // namespace kspm::common

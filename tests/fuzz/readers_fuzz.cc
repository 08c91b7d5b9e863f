// libFuzzer target for the readers that take input from the host: command lines, YAML and JSON
// configuration files, typed values, and catalogue rules. The first byte picks the reader.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/discovery/discovery.h"
#include "kspm/agent/discovery/flags.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0] % 4;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  using namespace kspm::agent;
  switch (selector) {
    case 0: {  // a /proc/<pid>/cmdline
      std::vector<std::string> argv;
      std::string arg;
      for (char c : text) {
        if (c == '\0') {
          argv.push_back(arg);
          arg.clear();
        } else {
          arg += c;
        }
      }
      argv.push_back(arg);
      const auto flags = discovery::FlagSet::Parse(argv, 1, {"anonymous-auth", "profiling"});
      (void)flags.Value("config");
      (void)flags.All("feature-gates");
      break;
    }
    case 1: {  // a config file (YAML or JSON)
      auto root = discovery::ParseYaml(text, "fuzz.yaml");
      if (root.ok()) {
        for (const char* key : {"authentication.anonymous.enabled", "a.b", "featureGates"}) {
          if (auto v = discovery::LookupKey(*root, key)) (void)discovery::RenderYaml(*v);
        }
        (void)discovery::RenderYaml(*root);
      }
      break;
    }
    case 2: {  // typed values
      (void)checks::ParseDurationNanos(text);
      (void)checks::ParseInt(text);
      (void)checks::ParseBool(text);
      (void)checks::SplitMap(text);
      (void)checks::SplitList(text);
      break;
    }
    case 3: {  // custom rules
      checks::Catalog catalog;
      (void)catalog.AddYaml(text, "fuzz-rules.yaml");
      break;
    }
  }
  return 0;
}

#pragma once

// Offline snapshots: a directory of `kubectl get <kind> -A -o json` outputs (List objects, any
// file names) and plain YAML manifests (several documents per file), for air-gapped use and CI.
#include <string>

#include "absl/status/status.h"
#include "kspm/collector/k8s/object.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace kspm::collector::k8s {

// Reads every regular file below `dir` (recursively, in name order; hidden files and folders are
// skipped). A file whose first non-blank character is `{` or `[` is JSON, held to JSON's
// grammar; anything else is YAML (several `---` documents allowed). A file that does not parse
// is recorded in `out.errors()` with its name, line and column, the kinds it seems to hold are
// marked failed (or the snapshot incomplete when none can be told), and every other file still
// loads. Only an unreadable `dir` is an error.
[[nodiscard]] absl::Status LoadSnapshotDir(const std::string& dir, Snapshot& out);

// Parses one file's text as above and adds its objects; `name` is used in messages. Returns
// InvalidArgument naming the file and position for text that does not parse.
[[nodiscard]] absl::Status LoadSnapshotText(const std::string& text, const std::string& name,
                                            Snapshot& out);

// YAML to JSON with YAML 1.2 core-schema typing for plain scalars (true/false, null and ~,
// integers, floats); quoted scalars stay strings.
nlohmann::json YamlToJson(const YAML::Node& node);

}  // namespace kspm::collector::k8s

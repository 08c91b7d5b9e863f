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
// loads. Only an unreadable `dir` is an error. Lists are read by the fast reader
// (list_reader.h); `fast_lists = false` reads them with nlohmann's parser instead, as kspm did
// before it (kspm-bench-cluster's baseline).
[[nodiscard]] absl::Status LoadSnapshotDir(const std::string& dir, Snapshot& out,
                                           bool fast_lists = true);

// Parses one file's text as above and adds its objects; `name` is used in messages. Returns
// InvalidArgument naming the file and position for text that does not parse.
[[nodiscard]] absl::Status LoadSnapshotText(const std::string& text, const std::string& name,
                                            Snapshot& out);

// YAML to JSON as Kubernetes reads manifests (sigs.k8s.io/yaml over go-yaml v2, YAML 1.1): plain
// scalars are typed (yes/no/on/off/y/n and true/false are booleans, null and ~, integers with
// 0 octal, 0x hex and 0b binary, floats); quoted scalars stay strings; keys are typed the same way
// and written back as JSON keys.
nlohmann::json YamlToJson(const YAML::Node& node);

}  // namespace kspm::collector::k8s

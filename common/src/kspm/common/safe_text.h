#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace google::protobuf {
class Message;
}

namespace kspm::common {

// Host text (command lines, config values, file names) may hold any bytes; protobuf strings and
// JSON must be UTF-8. Every byte that is not part of a well-formed UTF-8 sequence becomes the
// four characters `\xNN`, so the value stays readable and says what was there. Returns whether
// anything was changed.
bool MakeValidUtf8(std::string* text);
// The same for every string field of `message`, nested messages included. Returns how many
// fields were changed.
size_t MakeValidUtf8(google::protobuf::Message* message);

// Text for a terminal: control characters (C0, DEL and the C1 range, which carry escape
// sequences) become `\xNN` (`\u0085` style for C1 code points), so node-supplied text cannot
// move the cursor, retitle the window or hide output.
std::string TerminalSafe(std::string_view text);

// YAML that expands to more than `max_nodes` nodes (aliases counted at their expanded size: a
// "billion laughs" document) or nests deeper than `max_depth` is refused before it is loaded,
// with an error naming `path`.
struct YamlLimits {
  size_t max_nodes = 200000;
  size_t max_depth = 100;
};
[[nodiscard]] absl::Status CheckYamlSize(const std::string& text, const std::string& path,
                                         YamlLimits limits = {});

}  // namespace kspm::common

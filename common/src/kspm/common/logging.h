#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace kspm::common {

// Configures the default spdlog logger once, from main: level (trace..off) and format
// (`text` or `json`), always to stderr so that stdout stays clean for results.
[[nodiscard]] absl::Status SetUpLogging(std::string_view level, std::string_view format,
                                        std::string_view program);

}  // namespace kspm::common

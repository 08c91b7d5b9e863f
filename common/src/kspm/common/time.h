#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "google/protobuf/timestamp.pb.h"

namespace kspm::common {

using Clock = std::chrono::system_clock;

google::protobuf::Timestamp ToProto(Clock::time_point t);
Clock::time_point FromProto(const google::protobuf::Timestamp& t);
int64_t ToUnixMillis(Clock::time_point t);
Clock::time_point FromUnixMillis(int64_t ms);
// RFC 3339 in UTC with seconds, e.g. 2026-11-26T23:30:53Z.
std::string FormatRfc3339(Clock::time_point t);
// Parses an RFC 3339 date-time: `2026-11-26T23:30:53Z`, with fractional seconds, `t`/`z` in
// lower case, a space for `T`, or any offset (`+05:30`, `-08:00`). Nothing when it is not one.
std::optional<Clock::time_point> ParseRfc3339(std::string_view text);
// A random RFC 4122 version-4 UUID.
std::string NewUuid();

}  // namespace kspm::common

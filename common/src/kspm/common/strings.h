#pragma once

// Small string helpers. Debian's abseil is built with its own string_view type, so absl's
// string utilities do not take std::string_view; these do.
#include <string>
#include <string_view>
#include <vector>

namespace kspm::common {

// Splits on `sep`; with `skip_empty`, empty pieces are dropped.
inline std::vector<std::string_view> Split(std::string_view text, char sep,
                                           bool skip_empty = false) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t pos = text.find(sep, start);
    const std::string_view piece =
        text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
    if (!skip_empty || !piece.empty()) out.push_back(piece);
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

inline std::string_view Trim(std::string_view s) {
  const char* ws = " \t\r\n\f\v";
  const size_t begin = s.find_first_not_of(ws);
  if (begin == std::string_view::npos) return {};
  const size_t end = s.find_last_not_of(ws);
  return s.substr(begin, end - begin + 1);
}

template <typename Range>
std::string Join(const Range& items, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& item : items) {
    if (!first) out += sep;
    out += item;
    first = false;
  }
  return out;
}

}  // namespace kspm::common

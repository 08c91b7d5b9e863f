#pragma once

// Reading typed fields out of YAML catalogue entries, shared by the host catalogue (agent) and
// the cluster catalogue (collector). Header-only; the includer links yaml-cpp.
#include <stdexcept>
#include <string>
#include <vector>

#include "yaml-cpp/yaml.h"

namespace kspm::common {

// A bad field, with the position of the node. Thrown and caught inside one parser: never lets
// an exception escape the parser's file (each parser turns it into an absl::Status).
class YamlFieldError : public std::runtime_error {
 public:
  YamlFieldError(const YAML::Node& node, const std::string& what)
      : std::runtime_error(what), mark_(node.Mark()) {}
  const YAML::Mark& mark() const { return mark_; }

 private:
  YAML::Mark mark_;
};

// A scalar field; empty when absent (YamlFieldError when `required`), or not a scalar.
inline std::string ScalarField(const YAML::Node& node, const char* field, bool required = false) {
  const YAML::Node v = node[field];
  if (!v) {
    if (required) throw YamlFieldError(node, std::string("missing field '") + field + "'");
    return "";
  }
  if (!v.IsScalar()) {
    throw YamlFieldError(v, std::string("field '") + field + "' must be a scalar");
  }
  return v.Scalar();
}

// A list of scalars, or one scalar as a list of one; empty when absent.
inline std::vector<std::string> StringListField(const YAML::Node& node, const char* field) {
  std::vector<std::string> out;
  const YAML::Node v = node[field];
  if (!v) return out;
  if (v.IsScalar()) return {v.Scalar()};
  if (!v.IsSequence()) {
    throw YamlFieldError(v, std::string("field '") + field + "' must be a list");
  }
  for (const auto& item : v) {
    if (!item.IsScalar()) {
      throw YamlFieldError(item, std::string("'") + field + "' holds a non-scalar");
    }
    out.push_back(item.Scalar());
  }
  return out;
}

// "origin:line:column: what", lines and columns counted from 1.
inline std::string YamlPosition(const std::string& origin, const YAML::Mark& mark) {
  return origin + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

}  // namespace kspm::common

#include "kspm/common/identity.h"

#include <vector>

#include "kspm/common/strings.h"

namespace kspm::common {

namespace {

constexpr std::string_view kPrefix = "spiffe://kspm/";

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kNode:
      return "node";
    case Role::kReader:
      return "reader";
    case Role::kOperator:
      return "operator";
    case Role::kServer:
      return "server";
  }
  return "?";
}

absl::Status CheckIdentityName(std::string_view what, std::string_view name) {
  const std::string shown = std::string(what) + " '" + std::string(name) + "'";
  if (name.empty() || name.size() > 253) {
    return absl::InvalidArgumentError(shown + " must be 1 to 253 characters");
  }
  if (name.front() == '.' || name.front() == '-') {
    return absl::InvalidArgumentError(shown + " must not start with '.' or '-'");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_';
    if (!ok) {
      return absl::InvalidArgumentError(shown + " may hold only letters, digits, '.', '-' and '_'");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckNodeName(std::string_view name) {
  if (auto s = CheckIdentityName("node name", name); !s.ok()) return s;
  if (name == "cluster") {
    return absl::InvalidArgumentError(
        "node name 'cluster' is reserved (the collector files cluster-level results under it)");
  }
  return absl::OkStatus();
}

std::string IdentityUri(const Identity& identity) {
  std::string out = std::string(kPrefix) + identity.cluster + "/";
  switch (identity.role) {
    case Role::kNode:
      return out + "node/" + identity.name;
    case Role::kReader:
    case Role::kOperator:
      return out + "client/" + std::string(RoleName(identity.role)) + "/" + identity.name;
    case Role::kServer:
      return out + "server/" + identity.name;
  }
  return out;
}

absl::StatusOr<Identity> ParseIdentityUri(std::string_view uri) {
  if (!uri.starts_with(kPrefix)) {
    return absl::InvalidArgumentError("'" + std::string(uri) + "' is not a kspm identity (" +
                                      std::string(kPrefix) + "...)");
  }
  std::vector<std::string_view> parts;
  for (std::string_view p : Split(uri.substr(kPrefix.size()), '/', false)) parts.push_back(p);
  Identity id;
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError("identity '" + std::string(uri) + "': " + why);
  };
  if (parts.size() == 3 && parts[1] == "node") {
    id.role = Role::kNode;
  } else if (parts.size() == 3 && parts[1] == "server") {
    id.role = Role::kServer;
  } else if (parts.size() == 4 && parts[1] == "client" && parts[2] == "reader") {
    id.role = Role::kReader;
  } else if (parts.size() == 4 && parts[1] == "client" && parts[2] == "operator") {
    id.role = Role::kOperator;
  } else {
    return bad(
        "expected <cluster>/node/<name>, <cluster>/server/<name> or "
        "<cluster>/client/reader|operator/<name>");
  }
  id.cluster = std::string(parts[0]);
  id.name = std::string(parts.back());
  if (auto s = CheckIdentityName("cluster", id.cluster); !s.ok())
    return bad(std::string(s.message()));
  if (auto s = id.role == Role::kNode ? CheckNodeName(id.name) : CheckIdentityName("name", id.name);
      !s.ok()) {
    return bad(std::string(s.message()));
  }
  return id;
}

}  // namespace kspm::common

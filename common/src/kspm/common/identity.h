#pragma once

// Who a certificate speaks for. The role travels in the certificate as a subjectAltName URI,
//   spiffe://kspm/<cluster>/node/<name>             an agent: may report for node <name> only
//   spiffe://kspm/<cluster>/client/reader/<name>    kspmctl: may query
//   spiffe://kspm/<cluster>/client/operator/<name>  kspmctl: may query and ask for cluster scans
//   spiffe://kspm/<cluster>/server/<name>           the collector: serves, reports nothing
// and the collector checks it on every RPC, so a certificate of the CA is not a key to
// everything: a node's key cannot read the posture, a reader's cannot report.
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kspm::common {

enum class Role { kNode, kReader, kOperator, kServer };

struct Identity {
  Role role = Role::kNode;
  std::string cluster;
  std::string name;
};

std::string_view RoleName(Role role);  // "node", "reader", "operator", "server"

// The URI for `identity`. Names must pass CheckIdentityName.
std::string IdentityUri(const Identity& identity);

// InvalidArgument naming the problem for anything but a well-formed kspm identity URI.
[[nodiscard]] absl::StatusOr<Identity> ParseIdentityUri(std::string_view uri);

// Client, server and cluster names: 1..253 characters of letters, digits, '.', '-', '_', not
// starting with '.' or '-'. `what` names the field in the error.
[[nodiscard]] absl::Status CheckIdentityName(std::string_view what, std::string_view name);
// A node name: the same, and not a name kspm reserves ("cluster": the collector files
// cluster-level results under it).
[[nodiscard]] absl::Status CheckNodeName(std::string_view name);

}  // namespace kspm::common

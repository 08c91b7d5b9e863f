// kspmctl's fleet commands (the operator role): tokens create, nodes revoke and nodes allow.
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>

#include "cli/kspmctl.h"
#include "grpcpp/create_channel.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "kspm/common/tls.h"
#include "kspm/v1/fleet.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace kspm::collector::cli {
namespace {

std::unique_ptr<kspm::v1::FleetService::Stub> ConnectFleet(const Options& o) {
  auto creds = kspm::common::MakeClientCredentials(o.tls);
  if (!creds.ok()) Die(kExitUsage, std::string(creds.status().message()));
  return kspm::v1::FleetService::NewStub(grpc::CreateChannel(o.collector, *creds));
}

// `1h`, `30m`, `7d`, `90s` or plain seconds.
uint32_t ParseDuration(const std::string& text, const char* flag) {
  if (text.empty()) Die(kExitUsage, std::string(flag) + " is empty");
  const char unit = text.back();
  const bool has_unit = unit == 's' || unit == 'm' || unit == 'h' || unit == 'd';
  const std::string number = has_unit ? text.substr(0, text.size() - 1) : text;
  if (number.empty() || number.size() > 7 ||
      number.find_first_not_of("0123456789") != std::string::npos) {
    Die(kExitUsage, std::string(flag) + " '" + text + "': use a duration such as 90s, 30m, 1h, 7d");
  }
  const uint64_t n = std::stoull(number);
  const uint64_t mult = unit == 'm' ? 60 : unit == 'h' ? 3600 : unit == 'd' ? 86400 : 1;
  if (n * mult == 0 || n * mult > 0xffffffffull) {
    Die(kExitUsage, std::string(flag) + " '" + text + "' is out of range");
  }
  return static_cast<uint32_t>(n * mult);
}

}  // namespace

int TokensCreate(const Options& o, const std::string& node, const std::string& ttl, int uses) {
  if (uses < 1) Die(kExitUsage, "--uses must be at least 1");
  auto stub = ConnectFleet(o);
  kspm::v1::CreateJoinTokenRequest req;
  req.set_node_name(node);
  req.set_ttl_seconds(ParseDuration(ttl, "--ttl"));
  req.set_uses(static_cast<uint32_t>(uses));
  req.set_cluster(o.cluster);
  kspm::v1::CreateJoinTokenResponse resp;
  Check(stub->CreateJoinToken(Context(o).get(), req, &resp), o);
  const std::string expires = kspm::common::FormatRfc3339(kspm::common::FromProto(resp.expires()));
  if (o.format == "json") {
    std::cout << nlohmann::json{{"schemaVersion", kspm::common::kJsonSchemaVersion},
                                {"token", resp.token()},
                                {"expires", expires},
                                {"ca_hash", resp.ca_hash()},
                                {"node", node},
                                {"uses", uses}}
                     .dump(2)
              << "\n";
    return 0;
  }
  std::cout << resp.token() << "\n";
  std::cerr << "kspmctl: join token for " << (node.empty() ? "any node" : "node " + node) << ", "
            << uses << (uses == 1 ? " use" : " uses") << ", expires " << expires
            << "\nkspmctl: on the node: kspm-agent enroll --collector " << o.collector
            << " --token " << resp.token() << " --ca-hash " << resp.ca_hash() << "\n";
  return 0;
}

int NodeAccess(const Options& o, const std::string& node, bool revoke) {
  auto stub = ConnectFleet(o);
  kspm::v1::NodeAccessRequest req;
  req.set_cluster(o.cluster);
  req.set_node_name(node);
  kspm::v1::NodeAccessResponse resp;
  Check(revoke ? stub->RevokeNode(Context(o).get(), req, &resp)
               : stub->AllowNode(Context(o).get(), req, &resp),
        o);
  if (revoke) {
    std::cout << "node " << node << " revoked; " << resp.streams_closed()
              << " open streams closed; its reports and enrolment are refused until "
              << "kspmctl nodes allow " << node << "\n";
  } else {
    std::cout << "node " << node << " may enrol again (certificates issued before its "
              << "revocation stay refused)\n";
  }
  return 0;
}

}  // namespace kspm::collector::cli

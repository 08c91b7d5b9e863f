// The enrolment and fleet gRPC services over Fleet: enrolment is open to callers without a
// certificate; the fleet's operations (join tokens, revoke, allow) need the operator role.
#include "kspm/collector/server/fleet.h"
#include "kspm/collector/server/services.h"

namespace kspm::collector::server {

grpc::ServerUnaryReactor* EnrollmentServiceImpl::GetTrustBundle(
    grpc::CallbackServerContext* context, const v1::TrustBundleRequest* /*request*/,
    v1::TrustBundleResponse* response) {
  auto bundle = fleet_.TrustBundle();
  if (bundle.ok()) response->set_ca_pem(*bundle);
  return Answer(context, bundle.status());
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::Enroll(grpc::CallbackServerContext* context,
                                                        const v1::EnrollRequest* request,
                                                        v1::EnrollResponse* response) {
  auto* reactor = context->DefaultReactor();
  fleet_.Enroll(*request, CallerOf(*context),
                [reactor, response](absl::StatusOr<v1::EnrollResponse> outcome) {
                  if (outcome.ok()) *response = *std::move(outcome);
                  reactor->Finish(ToGrpc(outcome.status()));
                });
  return reactor;
}

namespace {

// Operators only; with --insecure (no certificates at all) everything is allowed.
absl::StatusOr<std::string> AuthorizeOperator(const grpc::CallbackServerContext& context,
                                              std::string_view rpc, bool allow_unauthenticated) {
  if (auto s = AuthorizeQuery(context, rpc, /*operator_needed=*/true, allow_unauthenticated);
      !s.ok()) {
    return s;
  }
  const Caller caller = CallerOf(context);
  return caller.identity ? "operator " + caller.identity->name
                         : std::string("an unauthenticated client");
}

}  // namespace

std::string FleetServiceImpl::ClusterOf(const v1::NodeAccessRequest& request) const {
  return request.cluster().empty() ? fleet_.options().cluster : request.cluster();
}

grpc::ServerUnaryReactor* FleetServiceImpl::CreateJoinToken(
    grpc::CallbackServerContext* context, const v1::CreateJoinTokenRequest* request,
    v1::CreateJoinTokenResponse* response) {
  return Answer(context, [&]() -> absl::Status {
    auto by = AuthorizeOperator(*context, "CreateJoinToken", allow_unauthenticated_);
    if (!by.ok()) return by.status();
    auto token = fleet_.CreateJoinToken(*request, *by);
    if (token.ok()) *response = *std::move(token);
    return token.status();
  }());
}

grpc::ServerUnaryReactor* FleetServiceImpl::RevokeNode(grpc::CallbackServerContext* context,
                                                       const v1::NodeAccessRequest* request,
                                                       v1::NodeAccessResponse* response) {
  return Answer(context, [&]() -> absl::Status {
    auto by = AuthorizeOperator(*context, "RevokeNode", allow_unauthenticated_);
    if (!by.ok()) return by.status();
    auto closed = fleet_.Revoke(ClusterOf(*request), request->node_name(), *by);
    if (closed.ok()) response->set_streams_closed(*closed);
    return closed.status();
  }());
}

grpc::ServerUnaryReactor* FleetServiceImpl::AllowNode(grpc::CallbackServerContext* context,
                                                      const v1::NodeAccessRequest* request,
                                                      v1::NodeAccessResponse* /*response*/) {
  return Answer(context, [&]() -> absl::Status {
    auto by = AuthorizeOperator(*context, "AllowNode", allow_unauthenticated_);
    if (!by.ok()) return by.status();
    return fleet_.Allow(ClusterOf(*request), request->node_name(), *by);
  }());
}

}  // namespace kspm::collector::server

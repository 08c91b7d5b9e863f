#include "kspm/collector/server/fleet.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

#include "kspm/collector/server/services.h"
#include "kspm/common/certs.h"
#include "kspm/common/time.h"
#include "kspm/common/tls.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::server {
namespace {

constexpr std::chrono::hours kMaxJoinTokenTtl{24 * 7};
constexpr const char* kPodNameKey = "authentication.kubernetes.io/pod-name";
constexpr const char* kPodUidKey = "authentication.kubernetes.io/pod-uid";
constexpr const char* kNodeNameKey = "authentication.kubernetes.io/node-name";

std::string Hex(const unsigned char* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

std::string Sha256Hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  return Hex(digest, len);
}

absl::StatusOr<std::string> RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) {
    return absl::InternalError("no random bytes for a token");
  }
  return Hex(buf.data(), bytes);
}

// The address part of gRPC's peer string (ipv4:1.2.3.4:5678, ipv6:[::1]:5678).
std::string SourceOf(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  std::string host = colon == std::string::npos ? peer : peer.substr(0, colon);
  if (host.starts_with("ipv4:")) host = host.substr(5);
  if (host.starts_with("ipv6:")) host = host.substr(5);
  return host;
}

// The first string of `extra[key]`, or empty.
std::string ExtraValue(const nlohmann::json& user, const char* key) {
  if (!user.contains("extra") || !user["extra"].is_object()) return "";
  const auto& extra = user["extra"];
  if (!extra.contains(key)) return "";
  const auto& values = extra[key];
  if (values.is_array() && !values.empty() && values[0].is_string()) return values[0];
  if (values.is_string()) return values;
  return "";
}

std::string StringAt(const nlohmann::json& j, std::initializer_list<const char*> path) {
  const nlohmann::json* at = &j;
  for (const char* key : path) {
    if (!at->is_object() || !at->contains(key)) return "";
    at = &(*at)[key];
  }
  return at->is_string() ? at->get<std::string>() : "";
}

}  // namespace

Caller CallerOf(const grpc::CallbackServerContext& context) {
  Caller caller;
  caller.peer = context.peer();
  const auto auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return caller;
  const auto pem = auth->FindPropertyValues("x509_pem_cert");
  if (!pem.empty()) caller.certificate_pem.assign(pem.front().data(), pem.front().size());
  for (const auto& value : auth->FindPropertyValues("x509_subject_alternative_name")) {
    const std::string_view text(value.data(), value.size());
    if (!text.starts_with("spiffe://kspm/")) continue;
    if (auto id = common::ParseIdentityUri(text); id.ok()) {
      caller.identity = *std::move(id);
      break;
    }
  }
  return caller;
}

Fleet::Fleet(store::Store& store, FleetOptions options)
    : store_(store), options_(std::move(options)) {}

Fleet::~Fleet() { Stop(); }

absl::Status Fleet::Start() {
  auto list = store_.NodeAccessList();
  if (!list.ok()) return list.status();
  {
    std::lock_guard lock(access_mu_);
    for (auto& a : *list) access_[{a.cluster, a.node}] = a;
  }
  for (int i = 0; i < std::max(1, options_.workers); ++i) workers_.emplace_back([this] { Work(); });
  expiry_ = std::thread([this] { ExpireStreams(); });
  return absl::OkStatus();
}

void Fleet::ExpireStreams() {
  std::unique_lock lock(jobs_mu_);
  while (!expiry_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
    lock.unlock();
    {
      const auto now = std::chrono::system_clock::now();
      std::lock_guard streams_lock(streams_mu_);
      for (auto& [id, stream] : streams_) {
        if (stream.not_after > now || !stream.cancel) continue;
        spdlog::info("closing the stream of node {}: its certificate expired at {}", stream.node,
                     common::FormatRfc3339(stream.not_after));
        stream.cancel();
        stream.cancel = nullptr;  // once
      }
    }
    lock.lock();
  }
}

void Fleet::Stop() {
  {
    std::lock_guard lock(jobs_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  jobs_cv_.notify_all();
  expiry_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  if (expiry_.joinable()) expiry_.join();
  // Jobs never started are answered: their callers must not wait forever.
  std::deque<std::function<void()>> left;
  {
    std::lock_guard lock(jobs_mu_);
    left.swap(jobs_);
  }
  for (auto& job : left) job();
}

void Fleet::Post(std::function<void()> job) {
  std::lock_guard lock(jobs_mu_);
  jobs_.push_back(std::move(job));
  jobs_cv_.notify_one();
}

void Fleet::Work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(jobs_mu_);
      jobs_cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

absl::Status Fleet::AdmitSource(const std::string& peer) {
  const std::string source = SourceOf(peer);
  const auto now = std::chrono::steady_clock::now();
  const double per_ms =
      1.0 / static_cast<double>(std::max<int64_t>(1, options_.per_source_interval.count()));
  std::lock_guard lock(rate_mu_);
  if (buckets_.size() > 10000) {
    // Forget sources that have refilled completely; they lose nothing by it.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      const double ms = std::chrono::duration<double, std::milli>(now - it->second.at).count();
      if (it->second.tokens + ms * per_ms >= options_.per_source_burst) {
        it = buckets_.erase(it);
      } else {
        ++it;
      }
    }
  }
  auto [it, fresh] = buckets_.try_emplace(source);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = options_.per_source_burst;
  } else {
    const double ms = std::chrono::duration<double, std::milli>(now - b.at).count();
    b.tokens = std::min<double>(options_.per_source_burst, b.tokens + ms * per_ms);
  }
  b.at = now;
  if (b.tokens < 1) {
    stats_.rate_limited++;
    return absl::ResourceExhaustedError(
        "too many enrolments from " + source + "; retry in " +
        std::to_string(options_.per_source_interval.count() / 1000 + 1) + " s");
  }
  b.tokens -= 1;
  return absl::OkStatus();
}

void Fleet::Enroll(v1::EnrollRequest request, Caller caller,
                   std::function<void(absl::StatusOr<v1::EnrollResponse>)> done) {
  if (auto s = AdmitSource(caller.peer); !s.ok()) {
    done(s);
    return;
  }
  {
    std::lock_guard lock(jobs_mu_);
    if (stopping_) {
      done(absl::UnavailableError("the collector is stopping"));
      return;
    }
    if (jobs_.size() >= options_.max_queued) {
      stats_.rate_limited++;
      done(absl::ResourceExhaustedError("the collector is busy with " +
                                        std::to_string(jobs_.size()) +
                                        " enrolments; retry shortly"));
      return;
    }
  }
  auto shared_done =
      std::make_shared<std::function<void(absl::StatusOr<v1::EnrollResponse>)>>(std::move(done));
  Post([this, request = std::move(request), caller = std::move(caller), shared_done] {
    bool stopping;
    {
      std::lock_guard lock(jobs_mu_);
      stopping = stopping_;
    }
    if (stopping) {
      (*shared_done)(absl::UnavailableError("the collector is stopping"));
      return;
    }
    (*shared_done)(EnrollNow(request, caller));
  });
}

absl::StatusOr<std::string> Fleet::TrustBundle() const {
  if (options_.ca_cert_path.empty()) {
    return absl::FailedPreconditionError("this collector has no CA bundle configured");
  }
  return common::ReadTextFile(options_.ca_cert_path, "CA certificate");
}

absl::StatusOr<std::string> Fleet::VerifyServiceAccountToken(const std::string& token,
                                                             const std::string& node) {
  if (!options_.reviewer) {
    return absl::FailedPreconditionError(
        "this collector has no Kubernetes API to verify service-account tokens with (run it "
        "in the cluster or with --kubeconfig), so it cannot enrol with them");
  }
  auto reviewer = options_.reviewer();
  if (!reviewer.ok()) return reviewer.status();
  auto review = (*reviewer)->ReviewToken(token, options_.audience);
  if (!review.ok()) {
    return absl::UnavailableError("cannot verify the token: " +
                                  std::string(review.status().message()));
  }
  const nlohmann::json status = review->value("status", nlohmann::json::object());
  if (!status.value("authenticated", false)) {
    return absl::PermissionDeniedError("the API server did not authenticate the token: " +
                                       status.value("error", std::string("no reason given")));
  }
  // The API server answers with the audiences the token is valid for among those asked; an
  // older server that ignores audiences answers none, and that is not good enough.
  const auto audiences = status.value("audiences", nlohmann::json::array());
  if (!audiences.is_array() ||
      std::find(audiences.begin(), audiences.end(), options_.audience) == audiences.end()) {
    return absl::PermissionDeniedError("the token is not for audience '" + options_.audience +
                                       "' (project it with that audience)");
  }
  const nlohmann::json user = status.value("user", nlohmann::json::object());
  const std::string username = user.value("username", std::string());
  const std::string want =
      "system:serviceaccount:" + options_.agent_namespace + ":" + options_.agent_service_account;
  if (username != want) {
    return absl::PermissionDeniedError("the token belongs to '" + username + "', not to the " +
                                       "agent's service account '" + want + "'");
  }
  const std::string pod_name = ExtraValue(user, kPodNameKey);
  const std::string pod_uid = ExtraValue(user, kPodUidKey);
  if (pod_name.empty() || pod_uid.empty()) {
    return absl::PermissionDeniedError(
        "the token is not bound to a pod (use a projected service-account token)");
  }
  if (const std::string token_node = ExtraValue(user, kNodeNameKey);
      !token_node.empty() && token_node != node) {
    return absl::PermissionDeniedError("the token was issued to a pod on node '" + token_node +
                                       "', not on '" + node + "'");
  }
  auto pod = (*reviewer)->GetPod(options_.agent_namespace, pod_name);
  if (!pod.ok()) {
    if (absl::IsNotFound(pod.status())) {
      return absl::PermissionDeniedError("the token's pod " + options_.agent_namespace + "/" +
                                         pod_name + " does not exist");
    }
    return absl::UnavailableError("cannot read the token's pod: " +
                                  std::string(pod.status().message()));
  }
  const std::string where = "pod " + options_.agent_namespace + "/" + pod_name;
  if (StringAt(*pod, {"metadata", "uid"}) != pod_uid) {
    return absl::PermissionDeniedError(where + " is not the pod the token was bound to (uid)");
  }
  if (StringAt(*pod, {"spec", "serviceAccountName"}) != options_.agent_service_account) {
    return absl::PermissionDeniedError(where + " does not run as service account '" +
                                       options_.agent_service_account + "'");
  }
  bool owned = false;
  if (pod->contains("metadata") && (*pod)["metadata"].contains("ownerReferences")) {
    for (const auto& ref : (*pod)["metadata"]["ownerReferences"]) {
      owned = owned || (ref.value("kind", std::string()) == "DaemonSet" &&
                        ref.value("name", std::string()) == options_.agent_daemonset &&
                        ref.value("controller", false));
    }
  }
  if (!owned) {
    return absl::PermissionDeniedError(where + " is not a pod of DaemonSet " +
                                       options_.agent_namespace + "/" + options_.agent_daemonset);
  }
  const std::string pod_node = StringAt(*pod, {"spec", "nodeName"});
  if (pod_node != node) {
    return absl::PermissionDeniedError(where + " runs on node '" + pod_node + "', not on '" + node +
                                       "'");
  }
  return where;
}

absl::StatusOr<v1::EnrollResponse> Fleet::EnrollNow(const v1::EnrollRequest& request,
                                                    const Caller& caller) {
  auto refuse = [&](absl::Status s) -> absl::Status {
    stats_.refused++;
    spdlog::warn("refused enrolment of node '{}' from {}: {}", request.node_name(), caller.peer,
                 std::string(s.message()));
    return s;
  };
  if (!enrolment_enabled()) {
    return refuse(absl::FailedPreconditionError(
        "enrolment is off on this collector (start it with --enroll-ca-key)"));
  }
  const std::string& node = request.node_name();
  if (auto s = common::CheckNodeName(node); !s.ok()) return refuse(s);
  auto facts = common::CheckSigningRequest(request.csr_pem());
  if (!facts.ok()) return refuse(facts.status());
  if (!facts->common_name.empty() && facts->common_name != node) {
    return refuse(absl::InvalidArgumentError("the certificate request names '" +
                                             facts->common_name + "', not node '" + node + "'"));
  }

  std::string cluster = options_.cluster;
  std::string method;
  std::string proof;
  switch (request.credential_case()) {
    case v1::EnrollRequest::kServiceAccountToken: {
      auto where = VerifyServiceAccountToken(request.service_account_token(), node);
      if (!where.ok()) return refuse(where.status());
      method = "service-account-token";
      proof = *where;
      break;
    }
    case v1::EnrollRequest::kJoinToken: {
      // kspm.<id>.<secret>
      const std::string& t = request.join_token();
      const size_t a = t.find('.'), b = t.find('.', a == std::string::npos ? a : a + 1);
      if (!t.starts_with("kspm.") || b == std::string::npos) {
        return refuse(absl::InvalidArgumentError("a join token looks like kspm.<id>.<secret>"));
      }
      const std::string id = t.substr(a + 1, b - a - 1);
      auto token =
          store_.RedeemJoinToken(id, Sha256Hex(t.substr(b + 1)), node, common::Clock::now());
      if (!token.ok()) return refuse(token.status());
      cluster = token->cluster;
      method = "join-token";
      proof = "join token " + id;
      break;
    }
    default: {
      if (!caller.identity || caller.identity->role != common::Role::kNode) {
        return refuse(absl::UnauthenticatedError(
            "no credential: send a service-account token or a join token, or renew with the "
            "node's current certificate"));
      }
      if (caller.identity->name != node) {
        return refuse(absl::PermissionDeniedError(
            "the certificate of node '" + caller.identity->name + "' cannot renew '" + node + "'"));
      }
      cluster = caller.identity->cluster;
      auto presented = common::ReadCertificate(caller.certificate_pem);
      if (!presented.ok()) return refuse(presented.status());
      if (auto s = CheckNode(cluster, node, presented->not_before); !s.ok()) return refuse(s);
      // A node that proves itself with its pod's token keeps doing so: a key stolen from it
      // then dies with its certificate (at most a lifetime) instead of renewing itself.
      auto last = store_.LastIssueMethod(cluster, node);
      if (!last.ok()) return refuse(last.status());
      if (*last == "service-account-token") {
        return refuse(absl::PermissionDeniedError(
            "node '" + node +
            "' enrolled with a service-account token and renews with one, not "
            "with its certificate"));
      }
      method = "renewal";
      proof = "certificate " + presented->serial;
      break;
    }
  }
  // A revoked node gets nothing, whatever it proves.
  std::optional<std::chrono::system_clock::time_point> floor;
  {
    std::lock_guard lock(access_mu_);
    const auto it = access_.find({cluster, node});
    if (it != access_.end()) {
      if (it->second.revoked) {
        return refuse(absl::PermissionDeniedError("node '" + node + "' is revoked (since " +
                                                  common::FormatRfc3339(it->second.revoked_at) +
                                                  "); kspmctl nodes allow " + node));
      }
      floor = it->second.revoked_at + std::chrono::seconds(1);
    }
  }

  auto ca_cert = common::ReadTextFile(options_.ca_cert_path, "CA certificate");
  if (!ca_cert.ok()) return refuse(ca_cert.status());
  auto ca_key = common::ReadTextFile(options_.ca_key_path, "CA key");
  if (!ca_key.ok()) return refuse(ca_key.status());
  common::CertificateRequest cert;
  cert.common_name = node;
  cert.uris = {common::IdentityUri({common::Role::kNode, cluster, node})};
  cert.client = true;
  cert.server = false;
  cert.lifetime = options_.certificate_lifetime;
  // Backdated for clock skew, but by no more than an eighth of a short life, so that "two
  // thirds of the lifetime" stays a point in the future for the agent.
  const auto now = std::chrono::system_clock::now();
  auto not_before = now - std::min<std::chrono::system_clock::duration>(
                              std::chrono::minutes(5), options_.certificate_lifetime / 8);
  if (floor && not_before < *floor) not_before = *floor;
  cert.not_before =
      std::chrono::time_point_cast<std::chrono::seconds>(not_before) + std::chrono::seconds(1);
  auto pem = common::SignSigningRequest({*ca_cert, *ca_key}, request.csr_pem(), cert);
  if (!pem.ok()) return refuse(pem.status());
  auto issued = common::ReadCertificate(*pem);
  if (!issued.ok()) return refuse(issued.status());
  store::IssuedCertificate record{issued->serial,    cluster, node,
                                  issued->not_after, method,  caller.peer};
  if (auto s = store_.RecordIssued(record, common::Clock::now()); !s.ok()) {
    // Not issued unless recorded: the record is the audit trail.
    return refuse(
        absl::UnavailableError("cannot record the certificate: " + std::string(s.message())));
  }
  stats_.enrolled++;
  spdlog::info("enrolled node {} of cluster {} ({}, {}): certificate {} valid until {}", node,
               cluster, method, proof, issued->serial, common::FormatRfc3339(issued->not_after));
  v1::EnrollResponse out;
  out.set_certificate_pem(*pem);
  out.set_ca_pem(*ca_cert);
  *out.mutable_not_before() = common::ToProto(issued->not_before);
  *out.mutable_not_after() = common::ToProto(issued->not_after);
  out.set_cluster(cluster);
  return out;
}

absl::StatusOr<v1::CreateJoinTokenResponse> Fleet::CreateJoinToken(
    const v1::CreateJoinTokenRequest& request, const std::string& by) {
  if (!enrolment_enabled()) {
    return absl::FailedPreconditionError(
        "enrolment is off on this collector (start it with --enroll-ca-key)");
  }
  if (!request.node_name().empty()) {
    if (auto s = common::CheckNodeName(request.node_name()); !s.ok()) return s;
  }
  const std::string cluster = request.cluster().empty() ? options_.cluster : request.cluster();
  if (auto s = common::CheckIdentityName("cluster", cluster); !s.ok()) return s;
  const auto ttl = std::chrono::seconds(request.ttl_seconds() == 0 ? 3600 : request.ttl_seconds());
  if (ttl > kMaxJoinTokenTtl) {
    return absl::InvalidArgumentError("a join token may live at most 7 days (168h)");
  }
  if (request.uses() > 10000) {
    return absl::InvalidArgumentError("a join token allows at most 10000 uses");
  }
  auto id = RandomHex(6);
  auto secret = RandomHex(16);
  if (!id.ok() || !secret.ok()) return absl::InternalError("no random bytes for a token");
  store::JoinToken token;
  token.id = *id;
  token.secret_sha256 = Sha256Hex(*secret);
  token.cluster = cluster;
  token.node = request.node_name();
  token.expires = common::Clock::now() + ttl;
  token.uses = request.uses() == 0 ? 1 : request.uses();
  token.created_by = by;
  if (auto s = store_.AddJoinToken(token, common::Clock::now()); !s.ok()) return s;
  auto ca = common::ReadTextFile(options_.ca_cert_path, "CA certificate");
  if (!ca.ok()) return ca.status();
  auto hash = common::PublicKeyHash(*ca);
  if (!hash.ok()) return hash.status();
  spdlog::info("{} made join token {} for {} in cluster {} ({} uses, expires {})", by, token.id,
               token.node.empty() ? "any node" : "node " + token.node, cluster, token.uses,
               common::FormatRfc3339(token.expires));
  v1::CreateJoinTokenResponse out;
  out.set_token("kspm." + *id + "." + *secret);
  *out.mutable_expires() = common::ToProto(token.expires);
  out.set_ca_hash(*hash);
  return out;
}

absl::StatusOr<uint32_t> Fleet::Revoke(const std::string& cluster, const std::string& node,
                                       const std::string& by) {
  if (auto s = common::CheckNodeName(node); !s.ok()) return s;
  store::NodeAccess access{cluster, node, true, common::Clock::now()};
  if (auto s = store_.SetNodeAccess(access, by, common::Clock::now()); !s.ok()) return s;
  {
    std::lock_guard lock(access_mu_);
    access_[{cluster, node}] = access;
  }
  uint32_t closed = 0;
  {
    std::lock_guard lock(streams_mu_);
    for (auto& [id, stream] : streams_) {
      if (stream.cluster == cluster && stream.node == node && stream.cancel) {
        stream.cancel();
        stream.cancel = nullptr;
        ++closed;
      }
    }
  }
  spdlog::warn("{} revoked node {} of cluster {}; {} streams closed", by, node, cluster, closed);
  return closed;
}

absl::Status Fleet::Allow(const std::string& cluster, const std::string& node,
                          const std::string& by) {
  if (auto s = common::CheckNodeName(node); !s.ok()) return s;
  store::NodeAccess access{cluster, node, false, {}};
  {
    std::lock_guard lock(access_mu_);
    const auto it = access_.find({cluster, node});
    if (it == access_.end() || !it->second.revoked) {
      return absl::FailedPreconditionError("node '" + node + "' of cluster '" + cluster +
                                           "' is not revoked");
    }
    access.revoked_at = it->second.revoked_at;
  }
  if (auto s = store_.SetNodeAccess(access, by, common::Clock::now()); !s.ok()) return s;
  std::lock_guard lock(access_mu_);
  access_[{cluster, node}] = access;
  spdlog::info("{} allowed node {} of cluster {} again", by, node, cluster);
  return absl::OkStatus();
}

absl::Status Fleet::CheckNode(const std::string& cluster, const std::string& node,
                              std::chrono::system_clock::time_point not_before) const {
  std::lock_guard lock(access_mu_);
  const auto it = access_.find({cluster, node});
  if (it == access_.end()) return absl::OkStatus();
  if (it->second.revoked) {
    return absl::PermissionDeniedError("node '" + node + "' is revoked (since " +
                                       common::FormatRfc3339(it->second.revoked_at) +
                                       "); an operator may run kspmctl nodes allow " + node);
  }
  if (not_before <= it->second.revoked_at) {
    return absl::PermissionDeniedError(
        "this certificate of node '" + node + "' was issued before the node's revocation at " +
        common::FormatRfc3339(it->second.revoked_at) + "; enrol again for a new one");
  }
  return absl::OkStatus();
}

uint64_t Fleet::RegisterStream(const std::string& cluster, const std::string& node,
                               std::chrono::system_clock::time_point not_after,
                               std::function<void()> cancel) {
  std::lock_guard lock(streams_mu_);
  const uint64_t id = next_stream_++;
  streams_[id] = Stream{cluster, node, not_after, std::move(cancel)};
  return id;
}

void Fleet::UnregisterStream(uint64_t id) {
  std::lock_guard lock(streams_mu_);
  streams_.erase(id);
}

void Fleet::NoteCertificate(const std::string& cluster, const std::string& node,
                            const std::string& certificate_pem) {
  Post([this, cluster, node, certificate_pem] {
    auto facts = common::ReadCertificate(certificate_pem);
    if (!facts.ok()) return;
    if (auto s = store_.RecordNodeCertificate(cluster, node, facts->serial, facts->not_after,
                                              common::Clock::now());
        !s.ok()) {
      spdlog::warn("recording the certificate of node {}: {}", node, std::string(s.message()));
    }
    std::string warning;
    (void)common::CheckCertificateLifetime(certificate_pem, "of node " + node,
                                           std::chrono::system_clock::now(), &warning);
    if (!warning.empty()) spdlog::warn("{}", warning);
  });
}

}  // namespace kspm::collector::server

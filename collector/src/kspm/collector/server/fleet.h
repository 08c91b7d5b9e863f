#pragma once

// Fleet identity on the collector: nodes enrol (a CSR signed in exchange for a projected
// service-account token, a join token, or the node's current certificate), operators make join
// tokens and revoke or allow nodes, and every agent stream is checked against revocations.
//
// Enrolment with a service-account token follows SPIRE's k8s_psat attestor: the token is
// verified by the API server (TokenReview, audience checked), must be bound to a pod, and that
// pod must exist, belong to the agent DaemonSet (namespace, service account, owner) and run on
// the node the request names. A node can therefore only ever obtain a certificate for itself.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/identity.h"
#include "kspm/v1/fleet.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace kspm::collector::server {

// The Kubernetes API as enrolment needs it. The cluster module implements it with its API
// client; tests may use the fake API server through the same implementation.
class KubernetesReviewer {
 public:
  virtual ~KubernetesReviewer() = default;
  // POST a TokenReview of `token` for `audience`; the answered object.
  [[nodiscard]] virtual absl::StatusOr<nlohmann::json> ReviewToken(const std::string& token,
                                                                   const std::string& audience) = 0;
  // GET one pod; NotFound when it does not exist.
  [[nodiscard]] virtual absl::StatusOr<nlohmann::json> GetPod(const std::string& ns,
                                                              const std::string& name) = 0;
};

struct FleetOptions {
  std::string cluster = "default";  // bound into certificates issued from service-account tokens
  // The CA that signs node certificates: its certificate (also the bundle agents trust) and key.
  // Read at every enrolment, so a rotated CA file is used without a restart. No key: enrolment
  // answers FAILED_PRECONDITION (static certificates only).
  std::string ca_cert_path;
  std::string ca_key_path;
  std::chrono::seconds certificate_lifetime{24 * 3600};
  // What a service-account token must be.
  std::string audience = "kspm-collector";
  std::string agent_namespace = "kspm";
  std::string agent_service_account = "kspm-agent";
  std::string agent_daemonset = "kspm-agent";
  // Null: service-account tokens are refused (no Kubernetes API configured).
  std::function<absl::StatusOr<std::unique_ptr<KubernetesReviewer>>()> reviewer;
  // Enrolments per caller address: a burst, then one every `per_source_interval`.
  int per_source_burst = 10;
  std::chrono::milliseconds per_source_interval{5000};
  // Enrolments waiting for a worker beyond this are refused (RESOURCE_EXHAUSTED), so a storm
  // cannot queue without bound; workers call the API server, not the gRPC threads.
  size_t max_queued = 64;
  int workers = 2;
};

// Counters for logs and tests.
struct FleetStats {
  std::atomic<uint64_t> enrolled{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> rate_limited{0};
};

// Who called, as the TLS layer saw it.
struct Caller {
  std::string peer;                          // gRPC's peer string, e.g. ipv4:10.0.0.7:51234
  std::optional<common::Identity> identity;  // from a verified client certificate
  std::string certificate_pem;               // that certificate
};

class Fleet {
 public:
  Fleet(store::Store& store, FleetOptions options);
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // Reads revocations from the store and starts the workers.
  [[nodiscard]] absl::Status Start();
  void Stop();

  bool enrolment_enabled() const { return !options_.ca_key_path.empty(); }
  const FleetOptions& options() const { return options_; }
  const FleetStats& stats() const { return stats_; }

  // Enrolment, run on a worker; `done` gets the outcome exactly once (on the caller's thread
  // when refused before queueing).
  void Enroll(v1::EnrollRequest request, Caller caller,
              std::function<void(absl::StatusOr<v1::EnrollResponse>)> done);
  // The same, synchronously (tests, and the workers).
  [[nodiscard]] absl::StatusOr<v1::EnrollResponse> EnrollNow(const v1::EnrollRequest& request,
                                                             const Caller& caller);
  [[nodiscard]] absl::StatusOr<std::string> TrustBundle() const;

  [[nodiscard]] absl::StatusOr<v1::CreateJoinTokenResponse> CreateJoinToken(
      const v1::CreateJoinTokenRequest& request, const std::string& by);
  // Revocation closes the node's open streams; returns how many.
  [[nodiscard]] absl::StatusOr<uint32_t> Revoke(const std::string& cluster, const std::string& node,
                                                const std::string& by);
  [[nodiscard]] absl::Status Allow(const std::string& cluster, const std::string& node,
                                   const std::string& by);

  // Whether a stream of `node` presenting a certificate issued at `not_before` may report.
  [[nodiscard]] absl::Status CheckNode(const std::string& cluster, const std::string& node,
                                       std::chrono::system_clock::time_point not_before) const;
  // Open streams, so a revocation can close them, and so can the end of the certificate they
  // were opened with (a stream never outlives its credential). `cancel` runs under the
  // registry's lock and must not call back into Fleet; Unregister before the stream is deleted.
  uint64_t RegisterStream(const std::string& cluster, const std::string& node,
                          std::chrono::system_clock::time_point not_after,
                          std::function<void()> cancel);
  void UnregisterStream(uint64_t id);
  // Records a node's presented certificate in the background (shown by kspmctl nodes).
  void NoteCertificate(const std::string& cluster, const std::string& node,
                       const std::string& certificate_pem);

 private:
  absl::Status AdmitSource(const std::string& peer);
  absl::StatusOr<std::string> VerifyServiceAccountToken(const std::string& token,
                                                        const std::string& node);
  void Post(std::function<void()> job);
  void Work();

  store::Store& store_;
  const FleetOptions options_;
  FleetStats stats_;

  mutable std::mutex access_mu_;
  std::map<std::pair<std::string, std::string>, store::NodeAccess> access_;

  std::mutex streams_mu_;
  uint64_t next_stream_ = 1;
  struct Stream {
    std::string cluster, node;
    std::chrono::system_clock::time_point not_after;
    std::function<void()> cancel;
  };
  std::map<uint64_t, Stream> streams_;
  void ExpireStreams();
  std::condition_variable expiry_cv_;  // under jobs_mu_, for stopping_
  std::thread expiry_;

  std::mutex rate_mu_;
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Bucket> buckets_;

  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// EnrollmentService: open to callers without a certificate.
class EnrollmentServiceImpl final : public v1::EnrollmentService::CallbackService {
 public:
  explicit EnrollmentServiceImpl(Fleet& fleet) : fleet_(fleet) {}
  grpc::ServerUnaryReactor* GetTrustBundle(grpc::CallbackServerContext* context,
                                           const v1::TrustBundleRequest* request,
                                           v1::TrustBundleResponse* response) override;
  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* context,
                                   const v1::EnrollRequest* request,
                                   v1::EnrollResponse* response) override;

 private:
  Fleet& fleet_;
};

// FleetService: operators only.
class FleetServiceImpl final : public v1::FleetService::CallbackService {
 public:
  FleetServiceImpl(Fleet& fleet, bool allow_unauthenticated)
      : fleet_(fleet), allow_unauthenticated_(allow_unauthenticated) {}
  grpc::ServerUnaryReactor* CreateJoinToken(grpc::CallbackServerContext* context,
                                            const v1::CreateJoinTokenRequest* request,
                                            v1::CreateJoinTokenResponse* response) override;
  grpc::ServerUnaryReactor* RevokeNode(grpc::CallbackServerContext* context,
                                       const v1::NodeAccessRequest* request,
                                       v1::NodeAccessResponse* response) override;
  grpc::ServerUnaryReactor* AllowNode(grpc::CallbackServerContext* context,
                                      const v1::NodeAccessRequest* request,
                                      v1::NodeAccessResponse* response) override;

 private:
  // The request's cluster, or the collector's own when it names none.
  std::string ClusterOf(const v1::NodeAccessRequest& request) const;

  Fleet& fleet_;
  const bool allow_unauthenticated_;
};

// The caller as the TLS layer saw it: certificate, identity (if it carries one) and address.
Caller CallerOf(const grpc::CallbackServerContext& context);

}  // namespace kspm::collector::server

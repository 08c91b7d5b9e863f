#pragma once

// The agent's own identity: a key made on the node (it never leaves it), a certificate the
// collector signs for it, and renewal before that certificate ends. Kept in one directory:
//   node.key  mode 0600    node.crt    ca.crt (the collector's CA, as enrolment returned it)
// The credential that proves the node is, in order: a projected service-account token (read
// from its file at every enrolment, since the kubelet rotates it), a join token (VMs; single
// use, so renewals then use the current certificate), or the current certificate alone.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "kspm/common/tls.h"

namespace kspm::agent::transport {

struct EnrollSettings {
  std::string collector;  // HOST:PORT
  std::string node_name;
  std::string identity_dir;  // node.key, node.crt, ca.crt
  // How the collector is trusted: this CA file; else, with `ca_hash` (sha256:<hex> of a CA's
  // public key, as `kspmctl tokens create` prints it), the bundle the collector serves, kept
  // only if a certificate in it has that hash; else the ca.crt of an earlier enrolment.
  std::string ca_file;
  std::string ca_hash;
  std::string token_file;  // projected service-account token
  std::string join_token;
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
};

// The files of an enrolled identity, as TlsFiles for the agent's stream.
common::TlsFiles IdentityFiles(const EnrollSettings& settings);

// When a certificate should be renewed: two thirds into its life.
std::chrono::system_clock::time_point RenewAt(std::chrono::system_clock::time_point not_before,
                                              std::chrono::system_clock::time_point not_after);

// Whether the identity directory holds a certificate that is not yet due for renewal; its
// renewal time if so.
[[nodiscard]] absl::StatusOr<std::chrono::system_clock::time_point> CurrentIdentity(
    const EnrollSettings& settings);

// Enrols once: a new key and CSR, the Enroll RPC with the best credential available (with
// `renew`, the current certificate is presented too), and the files written (key first, each
// replaced atomically). Returns the new certificate's renewal time. Errors name the step and
// carry the collector's reason.
[[nodiscard]] absl::StatusOr<std::chrono::system_clock::time_point> EnrollOnce(
    const EnrollSettings& settings, bool renew);

// Renews in the background at RenewAt; on failure retries with backoff (1 s doubling to 30 s)
// until it succeeds or the certificate has expired, and then goes on trying.
class CertificateKeeper {
 public:
  // `renewed` runs after each renewal (the daemon reconnects with the new certificate).
  CertificateKeeper(EnrollSettings settings, std::chrono::system_clock::time_point renew_at,
                    std::function<void()> renewed = nullptr);
  ~CertificateKeeper();
  void Stop();
  uint64_t renewals() const { return renewals_.load(); }
  uint64_t failures() const { return failures_.load(); }

 private:
  void Run();
  const EnrollSettings settings_;
  std::chrono::system_clock::time_point renew_at_;
  std::function<void()> renewed_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<uint64_t> renewals_{0};
  std::atomic<uint64_t> failures_{0};
  std::thread thread_;
};

}  // namespace kspm::agent::transport

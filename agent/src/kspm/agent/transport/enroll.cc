#include "kspm/agent/transport/enroll.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "kspm/common/certs.h"
#include "kspm/common/time.h"
#include "kspm/v1/fleet.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace kspm::agent::transport {
namespace {

std::string Join(const std::string& dir, const char* name) { return dir + "/" + name; }

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      what + ": " + s.error_message());
}

// The PEM certificates of a bundle, one by one.
std::vector<std::string> SplitBundle(const std::string& bundle) {
  std::vector<std::string> out;
  const std::string begin = "-----BEGIN CERTIFICATE-----", end = "-----END CERTIFICATE-----";
  for (size_t at = bundle.find(begin); at != std::string::npos; at = bundle.find(begin, at)) {
    const size_t stop = bundle.find(end, at);
    if (stop == std::string::npos) break;
    out.push_back(bundle.substr(at, stop + end.size() - at) + "\n");
    at = stop;
  }
  return out;
}

// The collector's CA bundle fetched over a connection that does not verify the collector, kept
// only if a certificate in it has the pinned hash; that certificate alone is then trusted.
absl::StatusOr<std::string> FetchPinnedCa(const EnrollSettings& s) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_verify_server_certs(false);
  options.set_check_call_host(false);
  options.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  auto channel = grpc::CreateChannel(s.collector, grpc::experimental::TlsCredentials(options));
  auto stub = v1::EnrollmentService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + s.timeout);
  v1::TrustBundleRequest request;
  v1::TrustBundleResponse response;
  if (auto st = stub->GetTrustBundle(&context, request, &response); !st.ok()) {
    return FromGrpc(st, "fetching the collector's CA from " + s.collector);
  }
  std::vector<std::string> seen;
  for (const auto& cert : SplitBundle(response.ca_pem())) {
    auto hash = common::PublicKeyHash(cert);
    if (!hash.ok()) continue;
    if (*hash == s.ca_hash) return cert;
    seen.push_back(*hash);
  }
  return absl::PermissionDeniedError(
      "the CA served by " + s.collector + " does not match --ca-hash " + s.ca_hash + " (it has " +
      (seen.empty() ? std::string("no certificate") : seen.front()) +
      "): refusing to trust it; check the hash, or someone is between you and the collector");
}

absl::StatusOr<std::string> TrustedCa(const EnrollSettings& s) {
  if (!s.ca_file.empty()) return common::ReadTextFile(s.ca_file, "CA certificate");
  if (!s.ca_hash.empty()) {
    if (!s.ca_hash.starts_with("sha256:") || s.ca_hash.size() != 7 + 64) {
      return absl::InvalidArgumentError("--ca-hash must be sha256:<64 hex digits>, not '" +
                                        s.ca_hash + "'");
    }
    return FetchPinnedCa(s);
  }
  const std::string earlier = Join(s.identity_dir, "ca.crt");
  if (std::filesystem::exists(earlier)) return common::ReadTextFile(earlier, "CA certificate");
  return absl::InvalidArgumentError(
      "no way to trust the collector: give --tls-ca FILE or --ca-hash sha256:...");
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError("cannot read the service-account token " + path + ": " +
                                      std::strerror(errno));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  std::string token = buf.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
    token.pop_back();
  if (token.empty()) return absl::InvalidArgumentError("the token file " + path + " is empty");
  return token;
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) return absl::InternalError("cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError("cannot move " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  return absl::OkStatus();
}

}  // namespace

common::TlsFiles IdentityFiles(const EnrollSettings& settings) {
  common::TlsFiles files;
  files.ca = settings.ca_file.empty() ? Join(settings.identity_dir, "ca.crt") : settings.ca_file;
  files.cert = Join(settings.identity_dir, "node.crt");
  files.key = Join(settings.identity_dir, "node.key");
  return files;
}

std::chrono::system_clock::time_point RenewAt(std::chrono::system_clock::time_point not_before,
                                              std::chrono::system_clock::time_point not_after) {
  return not_before + (not_after - not_before) * 2 / 3;
}

absl::StatusOr<std::chrono::system_clock::time_point> CurrentIdentity(
    const EnrollSettings& settings) {
  const auto files = IdentityFiles(settings);
  if (!std::filesystem::exists(files.cert) || !std::filesystem::exists(files.key)) {
    return absl::NotFoundError("no enrolled identity in " + settings.identity_dir);
  }
  auto pem = common::ReadTextFile(files.cert, "node certificate");
  if (!pem.ok()) return pem.status();
  auto facts = common::ReadCertificate(*pem);
  if (!facts.ok()) return facts.status();
  if (facts->common_name != settings.node_name) {
    return absl::FailedPreconditionError(files.cert + " is for node '" + facts->common_name +
                                         "', not '" + settings.node_name + "'");
  }
  if (facts->not_after <= std::chrono::system_clock::now()) {
    return absl::FailedPreconditionError(files.cert + " expired at " +
                                         common::FormatRfc3339(facts->not_after));
  }
  return RenewAt(facts->not_before, facts->not_after);
}

absl::StatusOr<std::chrono::system_clock::time_point> EnrollOnce(const EnrollSettings& s,
                                                                 bool renew) {
  std::error_code ec;
  std::filesystem::create_directories(s.identity_dir, ec);
  if (ec) return absl::InternalError("cannot create " + s.identity_dir + ": " + ec.message());
  ::chmod(s.identity_dir.c_str(), 0700);
  auto ca = TrustedCa(s);
  if (!ca.ok()) return ca.status();
  auto csr = common::MakeSigningRequest(s.node_name);
  if (!csr.ok()) return csr.status();

  v1::EnrollRequest request;
  request.set_node_name(s.node_name);
  request.set_csr_pem(csr->csr_pem);
  std::string how = "its current certificate";
  if (!s.token_file.empty()) {
    auto token = ReadToken(s.token_file);
    if (!token.ok()) return token.status();
    request.set_service_account_token(*token);
    how = "its service-account token";
  } else if (!s.join_token.empty() && !renew) {
    request.set_join_token(s.join_token);
    how = "a join token";
  } else if (!renew) {
    return absl::InvalidArgumentError(
        "nothing to enrol with: give a service-account token file or a join token");
  }
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = *ca;
  // The current certificate is presented only when it is the credential: with a token it adds
  // nothing, and an expired one would fail the handshake before the token is even read.
  if (renew && request.credential_case() == v1::EnrollRequest::CREDENTIAL_NOT_SET) {
    const auto files = IdentityFiles(s);
    auto cert = common::ReadTextFile(files.cert, "node certificate");
    auto key = common::ReadTextFile(files.key, "node key");
    if (!cert.ok() || !key.ok()) return cert.ok() ? key.status() : cert.status();
    std::string warning;
    if (auto st = common::CheckCertificateLifetime(*cert, files.cert,
                                                   std::chrono::system_clock::now(), &warning);
        !st.ok()) {
      return absl::FailedPreconditionError(
          std::string(st.message()) +
          "; a node without a service-account token needs a new join token (kspm-agent enroll)");
    }
    tls.pem_cert_chain = *cert;
    tls.pem_private_key = *key;
  }
  auto stub =
      v1::EnrollmentService::NewStub(grpc::CreateChannel(s.collector, grpc::SslCredentials(tls)));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + s.timeout);
  v1::EnrollResponse response;
  if (auto st = stub->Enroll(&context, request, &response); !st.ok()) {
    return FromGrpc(st, "enrolling node " + s.node_name + " with " + how + " at " + s.collector);
  }
  auto facts = common::ReadCertificate(response.certificate_pem());
  if (!facts.ok()) return facts.status();
  if (facts->common_name != s.node_name) {
    return absl::InternalError("the collector signed a certificate for '" + facts->common_name +
                               "', not '" + s.node_name + "'");
  }
  const auto files = IdentityFiles(s);
  // Key first: a crash between the two leaves a new key with the old certificate, which the
  // next start notices (the TLS handshake fails) and enrols again.
  if (auto st = common::WriteKeyPair({response.certificate_pem(), csr->key_pem}, files.cert,
                                     files.key, /*overwrite=*/true);
      !st.ok()) {
    return st;
  }
  if (s.ca_file.empty()) {
    if (auto st = WriteText(Join(s.identity_dir, "ca.crt"),
                            response.ca_pem().empty() ? *ca : response.ca_pem());
        !st.ok()) {
      return st;
    }
  }
  spdlog::info("node {} enrolled with {} (cluster {}): certificate {} valid until {}", s.node_name,
               how, response.cluster(), facts->serial, common::FormatRfc3339(facts->not_after));
  return RenewAt(facts->not_before, facts->not_after);
}

CertificateKeeper::CertificateKeeper(EnrollSettings settings,
                                     std::chrono::system_clock::time_point renew_at,
                                     std::function<void()> renewed)
    : settings_(std::move(settings)),
      renew_at_(renew_at),
      renewed_(std::move(renewed)),
      thread_([this] { Run(); }) {}

CertificateKeeper::~CertificateKeeper() { Stop(); }

void CertificateKeeper::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CertificateKeeper::Run() {
  std::chrono::milliseconds backoff{1000};
  std::unique_lock lock(mu_);
  for (;;) {
    if (cv_.wait_until(lock, renew_at_, [this] { return stop_; })) return;
    lock.unlock();
    auto next = EnrollOnce(settings_, /*renew=*/true);
    lock.lock();
    if (next.ok()) {
      renewals_++;
      renew_at_ = *next;
      backoff = std::chrono::milliseconds(1000);
      if (renewed_) {
        lock.unlock();
        renewed_();
        lock.lock();
      }
      continue;
    }
    failures_++;
    spdlog::warn("renewing the certificate of node {} failed (retry in {} s): {}",
                 settings_.node_name, backoff.count() / 1000, std::string(next.status().message()));
    renew_at_ = std::chrono::system_clock::now() + backoff;
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(30));
  }
}

}  // namespace kspm::agent::transport

#include "kspm/common/tls.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "kspm/common/certs.h"
#include "spdlog/spdlog.h"

namespace kspm::common {

absl::StatusOr<std::string> ReadTextFile(const std::string& path, const char* what) {
  if (path.empty()) return absl::InvalidArgumentError(std::string(what) + " file is not set");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(std::string("cannot read ") + what + " " + path + ": " +
                                      std::strerror(errno));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  if (text.find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(std::string(what) + " " + path + " is not a PEM file");
  }
  return text;
}

namespace {

// An expired certificate stops here with its path and date; one close to expiry is a warning.
absl::Status CheckLifetime(const std::string& pem, const std::string& path) {
  std::string warning;
  if (auto s = CheckCertificateLifetime(pem, path, std::chrono::system_clock::now(), &warning);
      !s.ok()) {
    return s;
  }
  if (!warning.empty()) spdlog::warn("{}", warning);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(
    const TlsFiles& files) {
  if (files.insecure) return grpc::InsecureChannelCredentials();
  auto ca = ReadTextFile(files.ca, "CA certificate");
  if (!ca.ok()) return ca.status();
  auto cert = ReadTextFile(files.cert, "client certificate");
  if (!cert.ok()) return cert.status();
  if (auto s = CheckLifetime(*cert, files.cert); !s.ok()) return s;
  auto key = ReadTextFile(files.key, "client key");
  if (!key.ok()) return key.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = *ca;
  options.pem_cert_chain = *cert;
  options.pem_private_key = *key;
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, unsigned reload_seconds, bool client_certificate_optional) {
  const auto request_type = client_certificate_optional
                                ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  if (files.insecure) return grpc::InsecureServerCredentials();
  auto ca = ReadTextFile(files.ca, "CA certificate");
  if (!ca.ok()) return ca.status();
  auto cert = ReadTextFile(files.cert, "server certificate");
  if (!cert.ok()) return cert.status();
  if (auto s = CheckLifetime(*cert, files.cert); !s.ok()) return s;
  auto key = ReadTextFile(files.key, "server key");
  if (!key.ok()) return key.status();
  if (reload_seconds > 0) {
    auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        files.key, files.cert, files.ca, reload_seconds);
    grpc::experimental::TlsServerCredentialsOptions options(provider);
    options.watch_root_certs();
    options.watch_identity_key_cert_pairs();
    options.set_cert_request_type(request_type);
    return grpc::experimental::TlsServerCredentials(options);
  }
  grpc::SslServerCredentialsOptions options(request_type);
  options.pem_root_certs = *ca;
  options.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(options);
}

}  // namespace kspm::common

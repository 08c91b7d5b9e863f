#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace kspm::common {

// PEM files for mutual TLS. All three are required unless `insecure` is set.
struct TlsFiles {
  std::string ca;         // CA that signs the peer's certificate
  std::string cert;       // our certificate
  std::string key;        // our private key
  bool insecure = false;  // plaintext: for loopback development only
};

// Reads the files; errors name the file that is missing or unreadable.
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(
    const TlsFiles& files);
// The server requires and verifies a client certificate signed by `ca`. With `reload_seconds`
// > 0 the three files are read again that often and new handshakes use what they hold
// (cert-manager or `kspmctl certs issue` replacing them), while open connections keep going; a
// key and certificate that do not match (a half-done replacement) are skipped until they do.
// With `client_certificate_optional` a client without a certificate may connect (to enrol);
// one that presents a certificate must still present a valid one, and every service checks
// for itself whether the caller needs one.
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, unsigned reload_seconds = 0, bool client_certificate_optional = false);

// Reads a whole file; the error names it.
[[nodiscard]] absl::StatusOr<std::string> ReadTextFile(const std::string& path, const char* what);

}  // namespace kspm::common

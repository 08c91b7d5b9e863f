#pragma once

// Certificates for kspm's mutual TLS, made with OpenSSL: a private CA, leaf certificates it
// signs, and the directory layout `kspmctl certs init` writes. Keys are ECDSA P-256, signatures
// ECDSA with SHA-256. Nothing here reads global state other than OpenSSL's random generator;
// every function is safe to call from several threads at once.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kspm::common {

// What a leaf certificate should say. Names are checked before anything is generated.
struct CertificateRequest {
  std::string common_name;                // subject CN; the collector binds agents by it
  std::vector<std::string> dns_names;     // subjectAltName DNS entries (a leading "*." is allowed)
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries, IPv4 or IPv6 text
  std::vector<std::string> uris;          // subjectAltName URI entries (the kspm identity)
  bool server = false;                    // extendedKeyUsage serverAuth
  bool client = true;                     // extendedKeyUsage clientAuth
  int days = 365;                         // validity from now, clamped to the CA's expiry
  std::chrono::seconds lifetime{0};       // > 0: valid this long from now instead of `days`
  // Set: notBefore is exactly this (instead of five minutes ago).
  std::optional<std::chrono::system_clock::time_point> not_before;
};

// A certificate and its unencrypted private key (PKCS#8), both PEM.
struct KeyPair {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed CA: ECDSA P-256, basicConstraints critical CA:TRUE, keyUsage critical
// keyCertSign|cRLSign, valid for `days` (1..36500) from five minutes ago (clock skew).
[[nodiscard]] absl::StatusOr<KeyPair> MakeCa(const std::string& common_name, int days = 3650);

// A leaf certificate signed by `ca`, whose key must match its certificate and which must be a CA.
// ECDSA P-256, random positive 128-bit serial, subject CN=common_name, issuer = the CA's subject,
// subjectAltName from the request, extendedKeyUsage serverAuth and/or clientAuth (at least one),
// basicConstraints critical CA:FALSE, keyUsage critical digitalSignature|keyEncipherment.
// A server certificate needs at least one SAN: TLS clients match the host name against SANs only.
// Invalid requests are InvalidArgument and name the offending value.
[[nodiscard]] absl::StatusOr<KeyPair> IssueCertificate(const KeyPair& ca,
                                                       const CertificateRequest& request);

// Writes `pair` to two PEM files: the key with mode 0600, the certificate 0644, exactly (umask
// does not apply). Each file is written to a temporary name in the same directory and then moved
// into place, so a reader never sees a partial file. Unless `overwrite`, an existing path (file,
// directory or symlink) is AlreadyExists and nothing is written; the check is repeated at the final
// link, so a racing writer is not clobbered either. Not atomic across the two files. Errors name
// the path.
[[nodiscard]] absl::Status WriteKeyPair(const KeyPair& pair, const std::string& cert_path,
                                        const std::string& key_path, bool overwrite = false);

// `kspmctl certs init DIR`: creates DIR (and DIR/nodes) if needed and writes
//   DIR/ca.crt, DIR/ca.key                  a new CA, CN "kspm-ca"
//   DIR/collector.crt, DIR/collector.key    server + client usage, SANs = collector_dns and
//                                           collector_ips, CN = the first DNS name, else
//                                           "kspm-collector"
//   DIR/kspmctl.crt, DIR/kspmctl.key        client usage, CN "kspmctl"
//   DIR/nodes/<node>.crt, DIR/nodes/<node>.key   client usage, CN = the node name
// Each carries its role as a subjectAltName URI (common/identity.h): the collector
// spiffe://kspm/<cluster>/server/collector, kspmctl .../client/operator/kspmctl, each node
// .../node/<node>. The node name "cluster" is reserved.
// The collector takes an agent's node identity from its certificate's CN, so node names must be
// unique, usable as file names (letters, digits, '.', '-', '_', not starting with '.'), and must
// not equal "kspmctl" or the collector's CN. All certificates are generated before anything is
// written, and unless `overwrite` every target path is checked first, so a refusal leaves DIR as it
// was; the error names the existing file. Returns the paths written, in the order above.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> InitCertificateDirectory(
    const std::string& dir, const std::vector<std::string>& nodes,
    const std::vector<std::string>& collector_dns, const std::vector<std::string>& collector_ips,
    bool overwrite = false, const std::string& cluster = "default");

// A private key made here and a PKCS#10 request for it (subject CN = common_name), both PEM:
// what an agent sends to enrol; the key never leaves the node.
struct SigningRequest {
  std::string key_pem;
  std::string csr_pem;
};
[[nodiscard]] absl::StatusOr<SigningRequest> MakeSigningRequest(const std::string& common_name);

// What a received request says, once its signature is verified and its key judged strong
// enough (ECDSA of 256 bits or more, RSA of 2048 or more, Ed25519). InvalidArgument otherwise.
struct RequestFacts {
  std::string common_name;  // empty when the subject has none
  std::string key;          // e.g. "EC 256 bits"
};
[[nodiscard]] absl::StatusOr<RequestFacts> CheckSigningRequest(const std::string& csr_pem);

// A certificate for the request's key, as IssueCertificate would make it (`request` says
// everything but the key; the request's own subject is not copied). PEM.
[[nodiscard]] absl::StatusOr<std::string> SignSigningRequest(const KeyPair& ca,
                                                             const std::string& csr_pem,
                                                             const CertificateRequest& request);

// What a certificate says, for logs, renewal and revocation.
struct CertificateFacts {
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  std::string serial;  // hex
  std::string common_name;
  std::vector<std::string> uris;  // subjectAltName URIs
};
[[nodiscard]] absl::StatusOr<CertificateFacts> ReadCertificate(const std::string& pem);

// "sha256:<hex>" of the certificate's DER SubjectPublicKeyInfo: the form kubeadm's
// --discovery-token-ca-cert-hash uses, so a CA is pinned by something short to copy.
[[nodiscard]] absl::StatusOr<std::string> PublicKeyHash(const std::string& cert_pem);

// A certificate's notAfter.
[[nodiscard]] absl::StatusOr<std::chrono::system_clock::time_point> CertificateNotAfter(
    const std::string& pem);

// FailedPrecondition naming `path` and the date when the certificate has expired (a TLS
// handshake would fail with nothing better than "Socket closed"); within 30 days of expiry (or
// the last quarter of a shorter life), OK with `warning` set to say so.
[[nodiscard]] absl::Status CheckCertificateLifetime(const std::string& pem, const std::string& path,
                                                    std::chrono::system_clock::time_point now,
                                                    std::string* warning);

}  // namespace kspm::common

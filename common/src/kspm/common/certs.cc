// The CA and the certificates it issues or signs; and the helpers of certs_internal.h that the
// other certs*.cc files share.
#include "kspm/common/certs.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <climits>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>

#include "kspm/common/certs_internal.h"

namespace kspm::common {

using internal::BignumPtr;
using internal::BioPtr;
using internal::CheckCommonName;
using internal::DrainSslErrors;
using internal::ExtensionPtr;
using internal::GeneralNamePtr;
using internal::GeneralNamesPtr;
using internal::GenerateKey;
using internal::IsLabelChar;
using internal::KeyPtr;
using internal::MemoryBioText;
using internal::NoPassphrase;
using internal::OctetStringPtr;
using internal::ParseCertificate;
using internal::ParseRequest;
using internal::ReadOnlyBio;
using internal::SslError;
using internal::X509Ptr;

namespace internal {

std::string DrainSslErrors() {
  std::string out;
  char buf[256];
  for (unsigned long code = ERR_get_error(); code != 0; code = ERR_get_error()) {
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error reported" : out;
}

absl::Status SslError(const std::string& what) {
  return absl::InternalError(what + ": " + DrainSslErrors());
}

int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return -1; }

absl::StatusOr<BioPtr> ReadOnlyBio(const std::string& pem, const char* what) {
  if (pem.empty()) return absl::InvalidArgumentError(std::string(what) + " is empty");
  if (pem.size() > INT_MAX) return absl::InvalidArgumentError(std::string(what) + " is too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return SslError(std::string("reading ") + what);
  return bio;
}

absl::StatusOr<X509Ptr> ParseCertificate(const std::string& pem, const char* what) {
  auto bio = ReadOnlyBio(pem, what);
  if (!bio.ok()) return bio.status();
  X509Ptr cert(PEM_read_bio_X509(bio->get(), nullptr, NoPassphrase, nullptr));
  if (!cert) {
    return absl::InvalidArgumentError(std::string(what) +
                                      " is not a PEM certificate: " + DrainSslErrors());
  }
  return cert;
}

absl::StatusOr<std::string> MemoryBioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  if (size <= 0 || data == nullptr) return SslError("reading PEM output");
  return std::string(data, static_cast<size_t>(size));
}

absl::Status CheckCommonName(const std::string& cn) {
  if (cn.empty()) return absl::InvalidArgumentError("common name is empty");
  if (cn.size() > kMaxCommonName) {
    return absl::InvalidArgumentError("common name \"" + cn + "\" is longer than " +
                                      std::to_string(kMaxCommonName) + " bytes");
  }
  for (const unsigned char c : cn) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("common name \"" + cn + "\" has a control character");
    }
  }
  return absl::OkStatus();
}

bool IsLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

absl::StatusOr<KeyPtr> GenerateKey() {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return SslError("generating a P-256 key");
  return key;
}

}  // namespace internal

namespace {

constexpr int kMaxDays = 36500;
// notBefore is set this far in the past so a peer whose clock lags a little accepts a
// certificate made moments ago.
constexpr long kBackdateSeconds = 5 * 60;

absl::StatusOr<KeyPtr> ParsePrivateKey(const std::string& pem, const char* what) {
  auto bio = ReadOnlyBio(pem, what);
  if (!bio.ok()) return bio.status();
  KeyPtr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, NoPassphrase, nullptr));
  if (!key) {
    return absl::InvalidArgumentError(
        std::string(what) + " is not an unencrypted PEM private key: " + DrainSslErrors());
  }
  return key;
}

absl::StatusOr<KeyPair> ToPem(X509* cert, EVP_PKEY* key) {
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  if (!cert_bio || !key_bio) return SslError("allocating PEM buffers");
  if (PEM_write_bio_X509(cert_bio.get(), cert) != 1) return SslError("encoding certificate");
  // PKCS#8, unencrypted: the file mode protects it; gRPC and OpenSSL read it as is.
  if (PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return SslError("encoding private key");
  }
  KeyPair pair;
  auto cert_pem = MemoryBioText(cert_bio.get());
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = MemoryBioText(key_bio.get());
  if (!key_pem.ok()) return key_pem.status();
  pair.cert_pem = *std::move(cert_pem);
  pair.key_pem = *std::move(key_pem);
  return pair;
}

absl::Status CheckDays(int days) {
  if (days < 1 || days > kMaxDays) {
    return absl::InvalidArgumentError("validity of " + std::to_string(days) +
                                      " days is outside 1.." + std::to_string(kMaxDays));
  }
  return absl::OkStatus();
}

// RFC 1035 host name syntax (letters, digits, inner hyphens; labels of 1..63, 253 in all), with
// an optional leading "*." wildcard label as RFC 6125 allows.
bool IsValidDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  std::string_view rest = name;
  if (rest.substr(0, 2) == "*.") rest.remove_prefix(2);
  for (;;) {
    const size_t dot = rest.find('.');
    const std::string_view label = rest.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (const char c : label) {
      if (!IsLabelChar(c)) return false;
    }
    if (dot == std::string_view::npos) return true;
    rest.remove_prefix(dot + 1);
  }
}

// The address as the 4 or 16 network-order bytes a SAN iPAddress holds, or empty if `text` is
// not exactly an IPv4 dotted quad or an IPv6 address.
std::string ParseIpAddress(const std::string& text) {
  unsigned char bytes[16];
  if (inet_pton(AF_INET, text.c_str(), bytes) == 1) return std::string(bytes, bytes + 4);
  if (inet_pton(AF_INET6, text.c_str(), bytes) == 1) return std::string(bytes, bytes + 16);
  return "";
}

absl::Status CheckRequest(const CertificateRequest& request) {
  if (auto s = CheckCommonName(request.common_name); !s.ok()) return s;
  if (auto s = CheckDays(request.days); !s.ok()) return s;
  if (!request.server && !request.client) {
    return absl::InvalidArgumentError("certificate for \"" + request.common_name +
                                      "\" has neither server nor client usage");
  }
  for (const auto& name : request.dns_names) {
    if (!IsValidDnsName(name)) {
      return absl::InvalidArgumentError("\"" + name + "\" is not a valid DNS name");
    }
  }
  for (const auto& ip : request.ip_addresses) {
    if (ParseIpAddress(ip).empty()) {
      return absl::InvalidArgumentError("\"" + ip + "\" is not an IPv4 or IPv6 address");
    }
  }
  if (request.server && request.dns_names.empty() && request.ip_addresses.empty()) {
    return absl::InvalidArgumentError("server certificate for \"" + request.common_name +
                                      "\" needs at least one DNS name or IP address");
  }
  return absl::OkStatus();
}

// A random positive serial of 128 bits: unique per certificate without any state, and within
// RFC 5280's 20-octet limit.
absl::Status SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return SslError("generating a serial number");
  BignumPtr serial(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (!serial) return SslError("generating a serial number");
  if (BN_is_zero(serial.get()) && BN_one(serial.get()) != 1) {  // zero is not a valid serial
    return SslError("generating a serial number");
  }
  if (BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)) == nullptr) {
    return SslError("setting the serial number");
  }
  return absl::OkStatus();
}

// What every certificate here shares: version 3, random serial, validity, subject CN, public
// key. Issuer, extensions and signature are left to the caller.
absl::StatusOr<X509Ptr> NewCertificate(const std::string& common_name, int days, EVP_PKEY* key) {
  X509Ptr cert(X509_new());
  if (!cert) return SslError("allocating a certificate");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) return SslError("setting the version");
  if (auto s = SetRandomSerial(cert.get()); !s.ok()) return s;
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), days, 0, nullptr) == nullptr) {
    return SslError("setting the validity period");
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());  // owned by cert
  if (X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1) {
    return SslError("setting common name \"" + common_name + "\"");
  }
  if (X509_set_pubkey(cert.get(), key) != 1) return SslError("setting the public key");
  return cert;
}

// Adds an extension given in OpenSSL's config syntax. Only ever called with constant values,
// never with user input, so nothing can be injected into the syntax.
absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx{};
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (!ext) return SslError(std::string("building extension ") + OBJ_nid2sn(nid));
  if (X509_add_ext(cert, ext.get(), -1) != 1) {
    return SslError(std::string("adding extension ") + OBJ_nid2sn(nid));
  }
  return absl::OkStatus();
}

// subjectAltName built structurally, entry by entry, rather than through the config syntax, so
// a name containing ',' or ':' cannot turn into another entry. Names were validated already.
absl::Status AddSubjectAltNames(X509* cert, const CertificateRequest& request) {
  if (request.dns_names.empty() && request.ip_addresses.empty() && request.uris.empty()) {
    return absl::OkStatus();
  }
  GeneralNamesPtr names(GENERAL_NAMES_new());
  if (!names) return SslError("allocating subjectAltName");
  auto push = [&](int type, const std::string& bytes) -> absl::Status {
    OctetStringPtr value(type == GEN_DNS || type == GEN_URI ? ASN1_IA5STRING_new()
                                                            : ASN1_OCTET_STRING_new());
    GeneralNamePtr name(GENERAL_NAME_new());
    if (!value || !name ||
        ASN1_STRING_set(value.get(), bytes.data(), static_cast<int>(bytes.size())) != 1) {
      return SslError("building subjectAltName");
    }
    GENERAL_NAME_set0_value(name.get(), type, value.release());  // name owns value
    if (sk_GENERAL_NAME_push(names.get(), name.get()) == 0) {
      return SslError("building subjectAltName");
    }
    name.release();  // names owns name
    return absl::OkStatus();
  };
  for (const auto& dns : request.dns_names) {
    if (auto s = push(GEN_DNS, dns); !s.ok()) return s;
  }
  for (const auto& ip : request.ip_addresses) {
    if (auto s = push(GEN_IPADD, ParseIpAddress(ip)); !s.ok()) return s;
  }
  for (const auto& uri : request.uris) {
    if (auto s = push(GEN_URI, uri); !s.ok()) return s;
  }
  // Not critical: the subject is not empty (RFC 5280 4.2.1.6).
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return SslError("adding subjectAltName");
  }
  return absl::OkStatus();
}

absl::Status Sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) return SslError("signing the certificate");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<KeyPair> MakeCa(const std::string& common_name, int days) {
  ERR_clear_error();
  if (auto s = CheckCommonName(common_name); !s.ok()) return s;
  if (auto s = CheckDays(days); !s.ok()) return s;
  auto key = GenerateKey();
  if (!key.ok()) return key.status();
  auto cert = NewCertificate(common_name, days, key->get());
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(c)) != 1) {
    return SslError("setting the issuer name");
  }
  // The subject key identifier goes first: the authority key identifier copies it.
  for (const auto& [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                                   {NID_key_usage, "critical,keyCertSign,cRLSign"},
                                   {NID_subject_key_identifier, "hash"},
                                   {NID_authority_key_identifier, "keyid:always"}}) {
    if (auto s = AddExtension(c, c, nid, value); !s.ok()) return s;
  }
  if (auto s = Sign(c, key->get()); !s.ok()) return s;
  return ToPem(c, key->get());
}

namespace {

// A certificate for `key` (whose private half the caller may not hold), signed by `ca`.
absl::StatusOr<X509Ptr> IssueFor(const KeyPair& ca, const CertificateRequest& request,
                                 EVP_PKEY* key) {
  if (auto s = CheckRequest(request); !s.ok()) return s;
  auto ca_cert = ParseCertificate(ca.cert_pem, "CA certificate");
  if (!ca_cert.ok()) return ca_cert.status();
  auto ca_key = ParsePrivateKey(ca.key_pem, "CA key");
  if (!ca_key.ok()) return ca_key.status();
  if (X509_check_private_key(ca_cert->get(), ca_key->get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("CA key does not match the CA certificate");
  }
  if (X509_check_ca(ca_cert->get()) == 0) {
    return absl::InvalidArgumentError("the CA certificate is not a CA (basicConstraints)");
  }
  const ASN1_TIME* ca_not_after = X509_get0_notAfter(ca_cert->get());
  const int expiry = X509_cmp_current_time(ca_not_after);
  if (expiry == 0) return SslError("reading the CA certificate's expiry");
  if (expiry < 0) return absl::FailedPreconditionError("the CA certificate has expired");

  auto cert = NewCertificate(request.common_name, request.days, key);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  if (request.lifetime.count() > 0 &&
      X509_time_adj_ex(X509_getm_notAfter(c), 0, static_cast<long>(request.lifetime.count()),
                       nullptr) == nullptr) {
    return SslError("setting the validity period");
  }
  if (request.not_before) {
    time_t floor = std::chrono::system_clock::to_time_t(*request.not_before);
    if (X509_time_adj_ex(X509_getm_notBefore(c), 0, 0, &floor) == nullptr) {
      return SslError("setting the validity period");
    }
  }
  if (X509_set_issuer_name(c, X509_get_subject_name(ca_cert->get())) != 1) {
    return SslError("setting the issuer name");
  }
  // A leaf outliving its CA would fail verification at the CA's expiry anyway; saying so in
  // the certificate keeps its notAfter honest.
  if (ASN1_TIME_compare(X509_get0_notAfter(c), ca_not_after) > 0 &&
      X509_set1_notAfter(c, ca_not_after) != 1) {
    return SslError("clamping the validity period");
  }

  const char* eku = request.server && request.client ? "serverAuth,clientAuth"
                    : request.server                 ? "serverAuth"
                                                     : "clientAuth";
  // keyid,issuer: a CA made elsewhere without a subject key identifier still works.
  for (const auto& [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                                   {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                                   {NID_ext_key_usage, eku},
                                   {NID_subject_key_identifier, "hash"},
                                   {NID_authority_key_identifier, "keyid,issuer"}}) {
    if (auto s = AddExtension(c, ca_cert->get(), nid, value); !s.ok()) return s;
  }
  if (auto s = AddSubjectAltNames(c, request); !s.ok()) return s;
  if (auto s = Sign(c, ca_key->get()); !s.ok()) return s;
  return std::move(*cert);
}

}  // namespace

absl::StatusOr<KeyPair> IssueCertificate(const KeyPair& ca, const CertificateRequest& request) {
  ERR_clear_error();
  auto key = GenerateKey();
  if (!key.ok()) return key.status();
  auto cert = IssueFor(ca, request, key->get());
  if (!cert.ok()) return cert.status();
  return ToPem(cert->get(), key->get());
}

absl::StatusOr<std::string> SignSigningRequest(const KeyPair& ca, const std::string& csr_pem,
                                               const CertificateRequest& request) {
  ERR_clear_error();
  auto facts = CheckSigningRequest(csr_pem);
  if (!facts.ok()) return facts.status();
  auto req = ParseRequest(csr_pem);
  if (!req.ok()) return req.status();
  auto cert = IssueFor(ca, request, X509_REQ_get0_pubkey(req->get()));
  if (!cert.ok()) return cert.status();
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509(out.get(), cert->get()) != 1) {
    return SslError("encoding certificate");
  }
  return MemoryBioText(out.get());
}

}  // namespace kspm::common

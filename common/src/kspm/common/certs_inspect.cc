// Signing requests (made on a node, checked and signed by the collector) and what a certificate
// says: its names, validity, serial and public key hash.
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <string>
#include <utility>

#include "kspm/common/certs.h"
#include "kspm/common/certs_internal.h"

namespace kspm::common {

using internal::BignumPtr;
using internal::BioPtr;
using internal::CheckCommonName;
using internal::GeneralNamesPtr;
using internal::GenerateKey;
using internal::MemoryBioText;
using internal::ParseCertificate;
using internal::ParseRequest;
using internal::ReqPtr;
using internal::SslError;

namespace internal {

absl::StatusOr<ReqPtr> ParseRequest(const std::string& pem) {
  if (pem.size() > 16384) {
    return absl::InvalidArgumentError("the certificate request is larger than 16 KiB");
  }
  auto bio = ReadOnlyBio(pem, "certificate request");
  if (!bio.ok()) return bio.status();
  ReqPtr req(PEM_read_bio_X509_REQ(bio->get(), nullptr, NoPassphrase, nullptr));
  if (!req) {
    return absl::InvalidArgumentError("not a PEM certificate request (PKCS#10): " +
                                      DrainSslErrors());
  }
  return req;
}

}  // namespace internal

namespace {

std::string SubjectCommonName(X509_NAME* name) {
  const int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return "";
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

std::string TimeOf(const ASN1_TIME* t, std::chrono::system_clock::time_point* out) {
  struct tm parts {};
  if (ASN1_TIME_to_tm(t, &parts) != 1) return "unreadable time";
  *out = std::chrono::system_clock::from_time_t(timegm(&parts));
  return "";
}

}  // namespace

absl::StatusOr<SigningRequest> MakeSigningRequest(const std::string& common_name) {
  ERR_clear_error();
  if (auto s = CheckCommonName(common_name); !s.ok()) return s;
  auto key = GenerateKey();
  if (!key.ok()) return key.status();
  ReqPtr req(X509_REQ_new());
  if (!req) return SslError("allocating a certificate request");
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  if (X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), key->get()) != 1 ||
      X509_REQ_sign(req.get(), key->get(), EVP_sha256()) <= 0) {
    return SslError("building the certificate request");
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509_REQ(out.get(), req.get()) != 1) {
    return SslError("encoding the certificate request");
  }
  auto csr = MemoryBioText(out.get());
  if (!csr.ok()) return csr.status();
  // The key alone, through the same encoder as key pairs.
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || PEM_write_bio_PrivateKey(key_bio.get(), key->get(), nullptr, nullptr, 0, nullptr,
                                           nullptr) != 1) {
    return SslError("encoding private key");
  }
  auto key_pem = MemoryBioText(key_bio.get());
  if (!key_pem.ok()) return key_pem.status();
  return SigningRequest{*std::move(key_pem), *std::move(csr)};
}

absl::StatusOr<RequestFacts> CheckSigningRequest(const std::string& csr_pem) {
  ERR_clear_error();
  auto req = ParseRequest(csr_pem);
  if (!req.ok()) return req.status();
  EVP_PKEY* key = X509_REQ_get0_pubkey(req->get());  // owned by the request
  if (key == nullptr) return absl::InvalidArgumentError("the certificate request has no key");
  if (X509_REQ_verify(req->get(), key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "the certificate request's signature does not verify (its key did not sign it)");
  }
  RequestFacts facts;
  const int bits = EVP_PKEY_get_bits(key);
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
      if (bits < 256) {
        return absl::InvalidArgumentError("the request's EC key has " + std::to_string(bits) +
                                          " bits; P-256 or stronger is required");
      }
      facts.key = "EC " + std::to_string(bits) + " bits";
      break;
    case EVP_PKEY_RSA:
      if (bits < 2048) {
        return absl::InvalidArgumentError("the request's RSA key has " + std::to_string(bits) +
                                          " bits; 2048 or more are required");
      }
      facts.key = "RSA " + std::to_string(bits) + " bits";
      break;
    case EVP_PKEY_ED25519:
      facts.key = "Ed25519";
      break;
    default:
      return absl::InvalidArgumentError(
          "the request's key type is not accepted (ECDSA P-256 or stronger, RSA >= 2048, "
          "Ed25519)");
  }
  facts.common_name = SubjectCommonName(X509_REQ_get_subject_name(req->get()));
  return facts;
}

absl::StatusOr<CertificateFacts> ReadCertificate(const std::string& pem) {
  ERR_clear_error();
  auto cert = ParseCertificate(pem, "certificate");
  if (!cert.ok()) return cert.status();
  CertificateFacts facts;
  if (!TimeOf(X509_get0_notBefore(cert->get()), &facts.not_before).empty() ||
      !TimeOf(X509_get0_notAfter(cert->get()), &facts.not_after).empty()) {
    return SslError("reading the certificate's validity");
  }
  facts.common_name = SubjectCommonName(X509_get_subject_name(cert->get()));
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert->get()), nullptr));
  if (serial) {
    char* hex = BN_bn2hex(serial.get());
    if (hex != nullptr) {
      facts.serial = hex;
      OPENSSL_free(hex);
    }
  }
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert->get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_STRING* uri = name->d.uniformResourceIdentifier;
    facts.uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                            static_cast<size_t>(ASN1_STRING_length(uri)));
  }
  return facts;
}

absl::StatusOr<std::string> PublicKeyHash(const std::string& cert_pem) {
  ERR_clear_error();
  auto cert = ParseCertificate(cert_pem, "certificate");
  if (!cert.ok()) return cert.status();
  unsigned char* der = nullptr;
  const int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert->get()), &der);
  if (n <= 0) return SslError("encoding the public key");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const bool ok = EVP_Digest(der, static_cast<size_t>(n), digest, &len, EVP_sha256(), nullptr) == 1;
  OPENSSL_free(der);
  if (!ok) return SslError("hashing the public key");
  static const char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

absl::StatusOr<std::chrono::system_clock::time_point> CertificateNotAfter(const std::string& pem) {
  auto cert = ParseCertificate(pem, "certificate");
  if (!cert.ok()) return cert.status();
  struct tm t {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert->get()), &t) != 1) {
    return SslError("reading the certificate's expiry");
  }
  return std::chrono::system_clock::from_time_t(timegm(&t));
}

absl::Status CheckCertificateLifetime(const std::string& pem, const std::string& path,
                                      std::chrono::system_clock::time_point now,
                                      std::string* warning) {
  auto facts = ReadCertificate(pem);
  if (!facts.ok())
    return absl::InvalidArgumentError(path + ": " + std::string(facts.status().message()));
  const auto not_after = &facts->not_after;
  char date[32];
  const std::time_t t = std::chrono::system_clock::to_time_t(*not_after);
  struct tm utc {};
  gmtime_r(&t, &utc);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &utc);
  if (*not_after <= now) {
    return absl::FailedPreconditionError("certificate " + path + " expired on " + date +
                                         "; issue a new one (kspmctl certs issue)");
  }
  const auto left = std::chrono::duration_cast<std::chrono::hours>(*not_after - now).count() / 24;
  // Short-lived (enrolled) certificates are renewed long before the end: warn only when less
  // than a quarter of their life is left, and for long-lived ones from 30 days before.
  const auto threshold = std::min<std::chrono::system_clock::duration>(
      std::chrono::hours(24 * 30), (facts->not_after - facts->not_before) / 4);
  if (*not_after - now < threshold && warning != nullptr) {
    *warning = "certificate " + path + " expires on " + date + " (in " + std::to_string(left) +
               " days); issue a new one (kspmctl certs issue)";
  }
  return absl::OkStatus();
}

}  // namespace kspm::common

#pragma once

// What certs.cc, certs_files.cc and certs_inspect.cc share: owners of OpenSSL handles, OpenSSL
// errors as a Status, PEM parsing and the checks of names. Internal to kspm_common; certs.h is the
// interface. Like certs.h, everything here is safe to call from several threads at once.
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kspm::common::internal {

// Frees an OpenSSL handle with its own free function.
template <auto kFree>
struct OpenSslDeleter {
  template <typename T>
  void operator()(T* handle) const {
    kFree(handle);
  }
};

using BioPtr = std::unique_ptr<BIO, OpenSslDeleter<BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, OpenSslDeleter<BN_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, OpenSslDeleter<X509_EXTENSION_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, OpenSslDeleter<GENERAL_NAME_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OpenSslDeleter<GENERAL_NAMES_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter<EVP_PKEY_free>>;
using OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, OpenSslDeleter<ASN1_OCTET_STRING_free>>;
using X509Ptr = std::unique_ptr<X509, OpenSslDeleter<X509_free>>;
using ReqPtr = std::unique_ptr<X509_REQ, OpenSslDeleter<X509_REQ_free>>;

// X.520 ub-common-name; OpenSSL refuses longer CNs.
inline constexpr size_t kMaxCommonName = 64;

// Drains this thread's OpenSSL error queue into one message, so a stale error never shows up
// in a later report.
std::string DrainSslErrors();

// InternalError "<what>: <the drained OpenSSL errors>".
absl::Status SslError(const std::string& what);

// A PEM callback that never supplies a passphrase. Without it OpenSSL would prompt on the
// terminal for an encrypted key.
int NoPassphrase(char* buf, int size, int rwflag, void* userdata);

// A read-only memory BIO over `pem`, which must outlive it. InvalidArgument naming `what` when
// `pem` is empty or too large.
absl::StatusOr<BioPtr> ReadOnlyBio(const std::string& pem, const char* what);

// The first PEM certificate of `pem`; InvalidArgument naming `what` otherwise.
absl::StatusOr<X509Ptr> ParseCertificate(const std::string& pem, const char* what);

// Everything written to the memory BIO `bio`, as text.
absl::StatusOr<std::string> MemoryBioText(BIO* bio);

// A subject CN: 1 to kMaxCommonName bytes, no control characters. InvalidArgument otherwise.
absl::Status CheckCommonName(const std::string& cn);

// A letter, a digit or '-': what a DNS label may hold.
bool IsLabelChar(char c);

// A new ECDSA P-256 key.
absl::StatusOr<KeyPtr> GenerateKey();

// A PEM PKCS#10 request of at most 16 KiB; InvalidArgument otherwise.
absl::StatusOr<ReqPtr> ParseRequest(const std::string& pem);

}  // namespace kspm::common::internal

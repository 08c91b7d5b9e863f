#include "kspm/common/certs.h"

#include <arpa/inet.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <ctime>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "kspm/common/identity.h"

namespace kspm::common {
namespace {

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

constexpr int kMaxDays = 36500;
// notBefore is set this far in the past so a peer whose clock lags a little accepts a
// certificate made moments ago.
constexpr long kBackdateSeconds = 5 * 60;
// X.520 ub-common-name; OpenSSL refuses longer CNs.
constexpr size_t kMaxCommonName = 64;
constexpr const char* kCaCommonName = "kspm-ca";
constexpr const char* kCtlCommonName = "kspmctl";
constexpr const char* kDefaultCollectorName = "kspm-collector";

// Drains this thread's OpenSSL error queue into one message, so a stale error never shows up
// in a later report.
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

// A PEM callback that never supplies a passphrase. Without it OpenSSL would prompt on the
// terminal for an encrypted key.
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

absl::StatusOr<std::string> MemoryBioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  if (size <= 0 || data == nullptr) return SslError("reading PEM output");
  return std::string(data, static_cast<size_t>(size));
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

absl::Status CheckDays(int days) {
  if (days < 1 || days > kMaxDays) {
    return absl::InvalidArgumentError("validity of " + std::to_string(days) +
                                      " days is outside 1.." + std::to_string(kMaxDays));
  }
  return absl::OkStatus();
}

bool IsLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
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

absl::StatusOr<KeyPtr> GenerateKey() {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return SslError("generating a P-256 key");
  return key;
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

// --- Files ---

// Closes a descriptor it owns.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes now and reports the result: close can report a failed delayed write.
  int Close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;  // lstat: a dangling symlink counts as existing
}

absl::Status RefuseExisting(const std::string& path) {
  return absl::AlreadyExistsError("refusing to overwrite existing file " + path);
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "write");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Writes `data` to a temporary file beside `path` with exactly `mode`, then moves it into place:
// rename when overwriting, otherwise link, which fails rather than replace an existing path.
absl::Status WriteFileInPlace(const std::string& path, const std::string& data, mode_t mode,
                              bool overwrite) {
  std::string tmp = path + ".tmp-XXXXXX";
  FileDescriptor fd(::mkostemp(tmp.data(), O_CLOEXEC));  // created 0600
  if (fd.get() < 0) {
    return absl::ErrnoToStatus(errno, "cannot create a temporary file for " + path);
  }
  auto fail = [&](const absl::Status& status) {
    ::unlink(tmp.c_str());
    return absl::Status(status.code(),
                        "cannot write " + path + ": " + std::string(status.message()));
  };
  // fchmod, unlike the mode given to open, is not masked by the umask.
  if (::fchmod(fd.get(), mode) != 0) return fail(absl::ErrnoToStatus(errno, "fchmod"));
  if (auto s = WriteAll(fd.get(), data); !s.ok()) return fail(s);
  if (::fsync(fd.get()) != 0) return fail(absl::ErrnoToStatus(errno, "fsync"));
  if (fd.Close() != 0) return fail(absl::ErrnoToStatus(errno, "close"));
  if (overwrite) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(absl::ErrnoToStatus(errno, "rename"));
    return absl::OkStatus();
  }
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    if (err == EEXIST) {
      ::unlink(tmp.c_str());
      return RefuseExisting(path);
    }
    // A file system without hard links: check, then rename. Only a racing writer between the
    // two steps can be replaced.
    if (err != EPERM && err != EOPNOTSUPP) return fail(absl::ErrnoToStatus(err, "link"));
    if (PathExists(path)) {
      ::unlink(tmp.c_str());
      return RefuseExisting(path);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(absl::ErrnoToStatus(errno, "rename"));
    return absl::OkStatus();
  }
  ::unlink(tmp.c_str());
  return absl::OkStatus();
}

// A node name must be a safe file name under nodes/ and a valid CN.
absl::Status CheckNodeFileName(const std::string& node) {
  if (auto s = CheckNodeName(node); !s.ok()) return s;
  if (node.empty()) return absl::InvalidArgumentError("node name is empty");
  if (node.front() == '.') {
    return absl::InvalidArgumentError("node name \"" + node + "\" starts with '.'");
  }
  for (const char c : node) {
    if (!IsLabelChar(c) && c != '.' && c != '_') {
      return absl::InvalidArgumentError("node name \"" + node +
                                        "\" may hold only letters, digits, '.', '-' and '_'");
    }
  }
  if (node.size() > kMaxCommonName) {
    return absl::InvalidArgumentError("node name \"" + node + "\" is longer than " +
                                      std::to_string(kMaxCommonName) +
                                      " bytes, the limit of a certificate common name");
  }
  return absl::OkStatus();
}

struct PlannedPair {
  KeyPair pair;
  std::string cert_path;
  std::string key_path;
};

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

using ReqPtr = std::unique_ptr<X509_REQ, OpenSslDeleter<X509_REQ_free>>;

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

absl::StatusOr<KeyPair> IssueCertificate(const KeyPair& ca, const CertificateRequest& request) {
  ERR_clear_error();
  auto key = GenerateKey();
  if (!key.ok()) return key.status();
  auto cert = IssueFor(ca, request, key->get());
  if (!cert.ok()) return cert.status();
  return ToPem(cert->get(), key->get());
}

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

absl::Status WriteKeyPair(const KeyPair& pair, const std::string& cert_path,
                          const std::string& key_path, bool overwrite) {
  if (cert_path.empty() || key_path.empty()) {
    return absl::InvalidArgumentError("certificate and key paths must both be set");
  }
  if (cert_path == key_path) {
    return absl::InvalidArgumentError("certificate and key would both be written to " + key_path);
  }
  if (pair.cert_pem.empty()) return absl::InvalidArgumentError("no certificate for " + cert_path);
  if (pair.key_pem.empty()) return absl::InvalidArgumentError("no key for " + key_path);
  if (!overwrite) {
    for (const auto* path : {&key_path, &cert_path}) {
      if (PathExists(*path)) return RefuseExisting(*path);
    }
  }
  if (auto s = WriteFileInPlace(key_path, pair.key_pem, 0600, overwrite); !s.ok()) return s;
  if (auto s = WriteFileInPlace(cert_path, pair.cert_pem, 0644, overwrite); !s.ok()) {
    if (!overwrite) ::unlink(key_path.c_str());  // we created it just now; leave no orphan
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> InitCertificateDirectory(
    const std::string& dir, const std::vector<std::string>& nodes,
    const std::vector<std::string>& collector_dns, const std::vector<std::string>& collector_ips,
    bool overwrite, const std::string& cluster) {
  if (dir.empty()) return absl::InvalidArgumentError("certificate directory is not set");
  if (auto s = CheckIdentityName("cluster name", cluster); !s.ok()) return s;
  const std::string collector_cn =
      collector_dns.empty() ? std::string(kDefaultCollectorName) : collector_dns.front();
  // Every CN the collector could see from a peer must name one identity only.
  std::set<std::string> taken = {kCaCommonName, kCtlCommonName, collector_cn};
  for (const auto& node : nodes) {
    if (auto s = CheckNodeFileName(node); !s.ok()) return s;
    if (!taken.insert(node).second) {
      return absl::InvalidArgumentError("node name \"" + node +
                                        "\" is repeated or names another certificate");
    }
  }

  const std::filesystem::path root(dir);
  auto planned = [&](KeyPair pair, const std::filesystem::path& stem) {
    return PlannedPair{std::move(pair), stem.string() + ".crt", stem.string() + ".key"};
  };
  std::vector<PlannedPair> plan;
  auto ca = MakeCa(kCaCommonName);
  if (!ca.ok()) return ca.status();
  plan.push_back(planned(*ca, root / "ca"));

  CertificateRequest collector;
  collector.common_name = collector_cn;
  collector.dns_names = collector_dns;
  collector.ip_addresses = collector_ips;
  collector.server = true;
  collector.client = true;
  collector.uris = {IdentityUri({Role::kServer, cluster, "collector"})};
  auto collector_pair = IssueCertificate(*ca, collector);
  if (!collector_pair.ok()) return collector_pair.status();
  plan.push_back(planned(*std::move(collector_pair), root / "collector"));

  CertificateRequest ctl;
  ctl.common_name = kCtlCommonName;
  ctl.uris = {IdentityUri({Role::kOperator, cluster, kCtlCommonName})};
  auto ctl_pair = IssueCertificate(*ca, ctl);
  if (!ctl_pair.ok()) return ctl_pair.status();
  plan.push_back(planned(*std::move(ctl_pair), root / "kspmctl"));

  for (const auto& node : nodes) {
    CertificateRequest request;
    request.common_name = node;
    request.uris = {IdentityUri({Role::kNode, cluster, node})};
    auto node_pair = IssueCertificate(*ca, request);
    if (!node_pair.ok()) return node_pair.status();
    plan.push_back(planned(*std::move(node_pair), root / "nodes" / node));
  }

  if (!overwrite) {
    for (const auto& p : plan) {
      for (const auto* path : {&p.cert_path, &p.key_path}) {
        if (PathExists(*path)) return RefuseExisting(*path);
      }
    }
  }
  std::error_code ec;
  const std::filesystem::path made = nodes.empty() ? root : root / "nodes";
  std::filesystem::create_directories(made, ec);
  if (ec) {
    return absl::InternalError("cannot create directory " + made.string() + ": " + ec.message());
  }

  std::vector<std::string> written;
  for (const auto& p : plan) {
    if (auto s = WriteKeyPair(p.pair, p.cert_path, p.key_path, overwrite); !s.ok()) return s;
    written.push_back(p.cert_path);
    written.push_back(p.key_path);
  }
  return written;
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

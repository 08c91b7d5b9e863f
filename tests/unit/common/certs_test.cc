#include "kspm/common/certs.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "fixtures/host_builder.h"
#include "kspm/common/identity.h"

namespace kspm::common {
namespace {

using kspm::testing::TempDir;

template <auto kFree>
struct Deleter {
  template <typename T>
  void operator()(T* handle) const {
    kFree(handle);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;

X509Ptr Cert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

KeyPtr Key(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return KeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

// X509_V_OK when `ca_pem` alone, as trust anchor, verifies `leaf_pem` for `purpose`
// (X509_PURPOSE_SSL_CLIENT / _SSL_SERVER); otherwise the verification error.
int Verify(const std::string& ca_pem, const std::string& leaf_pem, int purpose) {
  const X509Ptr ca = Cert(ca_pem), leaf = Cert(leaf_pem);
  if (!ca || !leaf) return -1;
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr) != 1 ||
      X509_STORE_CTX_set_purpose(ctx.get(), purpose) != 1) {
    return -1;
  }
  const int rc = X509_verify_cert(ctx.get());
  ERR_clear_error();
  return rc == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
}

std::string CommonName(X509* cert) {
  char buf[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof(buf)) <
      0) {
    return "";
  }
  return buf;
}

// The subjectAltName entries of one type, in order; IP addresses as text.
std::vector<std::string> AltNames(X509* cert, int type) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != type) continue;
    const ASN1_STRING* value = type == GEN_DNS ? name->d.dNSName : name->d.iPAddress;
    const auto* data = ASN1_STRING_get0_data(value);
    const int size = ASN1_STRING_length(value);
    if (type == GEN_DNS) {
      out.emplace_back(reinterpret_cast<const char*>(data), size);
    } else {
      char text[INET6_ADDRSTRLEN] = {};
      inet_ntop(size == 4 ? AF_INET : AF_INET6, data, text, sizeof(text));
      out.emplace_back(text);
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

mode_t Mode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

std::string Slurp(const std::string& path) {
  std::string text;
  if (!kspm::testing::ReadFileText(path, &text).ok()) return "<unreadable>";
  return text;
}

void Spit(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
}

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::recursive_directory_iterator(dir)) ++n;
  return n;
}

SslCtxPtr TlsContext(const SSL_METHOD* method, const std::string& ca_pem, const KeyPair& own) {
  SslCtxPtr ctx(SSL_CTX_new(method));
  const X509Ptr ca = Cert(ca_pem), cert = Cert(own.cert_pem);
  const KeyPtr key = Key(own.key_pem);
  if (!ctx || !ca || !cert || !key || SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 ||
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.get()) != 1) {
    return nullptr;
  }
  // What gRPC's server does with REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return ctx;
}

// A TLS handshake in memory: a server holding `server`, a client holding `client`, each
// trusting only `ca_pem`, the client checking that the server is `host` (name or IP). Returns
// the CN the server authenticated the client as, or why a side gave up.
absl::StatusOr<std::string> Handshake(const std::string& ca_pem, const KeyPair& server,
                                      const KeyPair& client, const std::string& host) {
  const SslCtxPtr server_ctx = TlsContext(TLS_server_method(), ca_pem, server);
  const SslCtxPtr client_ctx = TlsContext(TLS_client_method(), ca_pem, client);
  if (!server_ctx || !client_ctx) return absl::InternalError("cannot load certificates");
  SslPtr s(SSL_new(server_ctx.get())), c(SSL_new(client_ctx.get()));
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  if (!s || !c || BIO_new_bio_pair(&client_bio, 0, &server_bio, 0) != 1) {
    return absl::InternalError("cannot set up TLS");
  }
  SSL_set_bio(c.get(), client_bio, client_bio);  // each SSL now owns its end
  SSL_set_bio(s.get(), server_bio, server_bio);
  SSL_set_connect_state(c.get());
  SSL_set_accept_state(s.get());
  unsigned char ip[16];
  const bool is_ip =
      inet_pton(AF_INET, host.c_str(), ip) == 1 || inet_pton(AF_INET6, host.c_str(), ip) == 1;
  const int set = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.get()), host.c_str())
                        : SSL_set1_host(c.get(), host.c_str());
  if (set != 1) return absl::InternalError("cannot set the expected host");

  bool client_done = false, server_done = false;
  for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
    for (auto [ssl, done, side] : {std::tuple{c.get(), &client_done, "client"},
                                   std::tuple{s.get(), &server_done, "server"}}) {
      if (*done) continue;
      const int rc = SSL_do_handshake(ssl);
      if (rc == 1) {
        *done = true;
        continue;
      }
      const int err = SSL_get_error(ssl, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) continue;
      const long verify = SSL_get_verify_result(ssl);
      ERR_clear_error();
      return absl::UnauthenticatedError(std::string(side) +
                                        " failed: " + X509_verify_cert_error_string(verify));
    }
  }
  if (!client_done || !server_done) return absl::InternalError("handshake did not finish");
  if (SSL_get_verify_result(s.get()) != X509_V_OK || SSL_get_verify_result(c.get()) != X509_V_OK) {
    return absl::UnauthenticatedError("handshake finished without verification");
  }
  X509* peer = SSL_get0_peer_certificate(s.get());
  return peer == nullptr ? "" : CommonName(peer);
}

CertificateRequest Request(const std::string& cn, bool server, bool client,
                           std::vector<std::string> dns = {}, std::vector<std::string> ips = {}) {
  CertificateRequest r;
  r.common_name = cn;
  r.server = server;
  r.client = client;
  r.dns_names = std::move(dns);
  r.ip_addresses = std::move(ips);
  return r;
}

TEST(MakeCa, IsASelfSignedP256CaWithTheRequestedNameAndLifetime) {
  const auto ca = MakeCa("test-ca", 30);
  ASSERT_TRUE(ca.ok()) << ca.status();
  const X509Ptr cert = Cert(ca->cert_pem);
  const KeyPtr key = Key(ca->key_pem);
  ASSERT_TRUE(cert && key);
  EXPECT_EQ(CommonName(cert.get()), "test-ca");
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
  EXPECT_EQ(X509_verify(cert.get(), key.get()), 1);  // self-signed with its own key
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())), 0);
  EXPECT_EQ(X509_check_ca(cert.get()), 1);  // basicConstraints CA:TRUE
  const uint32_t usage = X509_get_key_usage(cert.get());
  EXPECT_TRUE(usage & KU_KEY_CERT_SIGN);
  EXPECT_TRUE(usage & KU_CRL_SIGN);
  EXPECT_FALSE(usage & KU_DIGITAL_SIGNATURE);

  char group[64] = {};
  ASSERT_EQ(EVP_PKEY_get_group_name(key.get(), group, sizeof(group), nullptr), 1);
  EXPECT_STREQ(group, "prime256v1");
  EXPECT_NE(ca->key_pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);  // PKCS#8

  int days = 0, seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert.get())), 1);
  EXPECT_TRUE(days == 29 || days == 30) << days;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notBefore(cert.get())), 1);
  EXPECT_LE(days * 86400 + seconds, 0);  // valid already, despite small clock skew
}

TEST(IssueCertificate, ClientCertificateVerifiesForClientsOnly) {
  const auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  const auto leaf = IssueCertificate(*ca, Request("node-a", /*server=*/false, /*client=*/true));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  const X509Ptr cert = Cert(leaf->cert_pem), ca_cert = Cert(ca->cert_pem);
  ASSERT_TRUE(cert && ca_cert);
  EXPECT_EQ(CommonName(cert.get()), "node-a");
  EXPECT_EQ(X509_verify(cert.get(), X509_get0_pubkey(ca_cert.get())), 1);
  EXPECT_EQ(Verify(ca->cert_pem, leaf->cert_pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_EQ(Verify(ca->cert_pem, leaf->cert_pem, X509_PURPOSE_SSL_SERVER),
            X509_V_ERR_INVALID_PURPOSE);
  EXPECT_TRUE(AltNames(cert.get(), GEN_DNS).empty());
  const KeyPtr key = Key(leaf->key_pem);
  ASSERT_TRUE(key);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
}

TEST(IssueCertificate, ServerCertificateCarriesRequestedNamesAndBothUsages) {
  const auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  const auto leaf = IssueCertificate(
      *ca,
      Request("kspm-collector", true, true, {"kspm-collector", "localhost"}, {"127.0.0.1", "::1"}));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  const X509Ptr cert = Cert(leaf->cert_pem);
  ASSERT_TRUE(cert);
  EXPECT_EQ(CommonName(cert.get()), "kspm-collector");
  EXPECT_EQ(AltNames(cert.get(), GEN_DNS),
            (std::vector<std::string>{"kspm-collector", "localhost"}));
  EXPECT_EQ(AltNames(cert.get(), GEN_IPADD), (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(cert.get(), "other.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_NE(X509_check_ip_asc(cert.get(), "10.0.0.1", 0), 1);
  EXPECT_EQ(Verify(ca->cert_pem, leaf->cert_pem, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_EQ(Verify(ca->cert_pem, leaf->cert_pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);

  EXPECT_EQ(X509_check_ca(cert.get()), 0);
  EXPECT_TRUE(X509_get_extension_flags(cert.get()) & EXFLAG_BCONS);  // CA:FALSE is explicit
  const uint32_t usage = X509_get_key_usage(cert.get());
  EXPECT_TRUE(usage & KU_DIGITAL_SIGNATURE);
  EXPECT_TRUE(usage & KU_KEY_ENCIPHERMENT);
  EXPECT_FALSE(usage & KU_KEY_CERT_SIGN);
}

TEST(IssueCertificate, LeafFromAnotherCaDoesNotVerifyEvenWithTheSameCaName) {
  const auto trusted = MakeCa("kspm-ca"), other = MakeCa("kspm-ca");
  ASSERT_TRUE(trusted.ok() && other.ok());
  const auto leaf = IssueCertificate(*other, Request("node-a", false, true));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(Verify(other->cert_pem, leaf->cert_pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_NE(Verify(trusted->cert_pem, leaf->cert_pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  const X509Ptr cert = Cert(leaf->cert_pem), trusted_cert = Cert(trusted->cert_pem);
  ASSERT_TRUE(cert && trusted_cert);
  EXPECT_NE(X509_verify(cert.get(), X509_get0_pubkey(trusted_cert.get())), 1);
  ERR_clear_error();
}

TEST(IssueCertificate, SerialsAreRandomPositiveAndLong) {
  const auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  const auto a = IssueCertificate(*ca, Request("n", false, true));
  const auto b = IssueCertificate(*ca, Request("n", false, true));
  ASSERT_TRUE(a.ok() && b.ok());
  const X509Ptr a_cert = Cert(a->cert_pem), b_cert = Cert(b->cert_pem);
  ASSERT_TRUE(a_cert && b_cert);
  const ASN1_INTEGER* serial_a = X509_get0_serialNumber(a_cert.get());
  const ASN1_INTEGER* serial_b = X509_get0_serialNumber(b_cert.get());
  EXPECT_NE(ASN1_INTEGER_cmp(serial_a, serial_b), 0);
  std::unique_ptr<BIGNUM, Deleter<BN_free>> bn(ASN1_INTEGER_to_BN(serial_a, nullptr));
  ASSERT_TRUE(bn);
  EXPECT_FALSE(BN_is_negative(bn.get()));
  EXPECT_GT(BN_num_bits(bn.get()), 64);  // 128 random bits; fewer than 65 has odds 2^-64
}

TEST(IssueCertificate, LeafNeverOutlivesItsCa) {
  const auto ca = MakeCa("short-ca", 30);
  ASSERT_TRUE(ca.ok()) << ca.status();
  CertificateRequest request = Request("n", false, true);
  request.days = 365;
  const auto long_leaf = IssueCertificate(*ca, request);
  request.days = 2;
  const auto short_leaf = IssueCertificate(*ca, request);
  ASSERT_TRUE(long_leaf.ok() && short_leaf.ok());
  const X509Ptr ca_cert = Cert(ca->cert_pem), long_cert = Cert(long_leaf->cert_pem),
                short_cert = Cert(short_leaf->cert_pem);
  EXPECT_EQ(
      ASN1_TIME_compare(X509_get0_notAfter(long_cert.get()), X509_get0_notAfter(ca_cert.get())), 0);
  int days = 0, seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(short_cert.get())), 1);
  EXPECT_TRUE(days == 1 || days == 2) << days;
}

TEST(IssueCertificate, RejectsInvalidRequestsNamingTheValue) {
  const auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  struct Case {
    const char* name;
    CertificateRequest request;
    const char* mentions;
  };
  CertificateRequest zero_days = Request("n", false, true);
  zero_days.days = 0;
  const std::vector<Case> cases = {
      {"empty common name", Request("", false, true), "common name"},
      {"common name over 64 bytes", Request(std::string(65, 'a'), false, true), "aaaa"},
      {"no usage at all", Request("n", false, false), "neither"},
      {"server without any SAN", Request("srv", true, false), "at least one"},
      {"trailing junk after an IP", Request("srv", true, false, {}, {"127.0.0.1x"}), "127.0.0.1x"},
      {"IPv4 octet out of range", Request("srv", true, false, {}, {"300.1.1.1"}), "300.1.1.1"},
      {"SAN syntax smuggled into a DNS name",
       Request("srv", true, false, {"a.example,IP:10.0.0.1"}), "a.example,IP:10.0.0.1"},
      {"empty DNS label", Request("srv", true, false, {"a..example"}), "a..example"},
      {"zero days", zero_days, "0 days"},
  };
  for (const auto& c : cases) {
    const auto leaf = IssueCertificate(*ca, c.request);
    ASSERT_FALSE(leaf.ok()) << c.name;
    EXPECT_EQ(leaf.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(leaf.status().message().find(c.mentions), std::string::npos)
        << c.name << ": " << leaf.status();
  }
}

TEST(IssueCertificate, RefusesAMismatchedCaKeyAndANonCaIssuer) {
  const auto ca = MakeCa("test-ca"), other = MakeCa("other-ca");
  ASSERT_TRUE(ca.ok() && other.ok());
  const auto mismatched =
      IssueCertificate({ca->cert_pem, other->key_pem}, Request("n", false, true));
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.status().message().find("does not match"), std::string::npos)
      << mismatched.status();

  const auto leaf = IssueCertificate(*ca, Request("n", false, true));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  const auto from_leaf = IssueCertificate(*leaf, Request("m", false, true));
  ASSERT_FALSE(from_leaf.ok());
  EXPECT_NE(from_leaf.status().message().find("not a CA"), std::string::npos) << from_leaf.status();
}

TEST(WriteKeyPair, ModesAreExactWhateverTheUmask) {
  const auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  TempDir dir;
  for (const mode_t mask : {mode_t{0}, mode_t{077}}) {
    const std::string stem = dir.path() + "/ca-" + std::to_string(mask);
    const mode_t old_mask = ::umask(mask);
    const absl::Status status = WriteKeyPair(*ca, stem + ".crt", stem + ".key");
    ::umask(old_mask);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(Mode(stem + ".key"), 0600u) << "umask " << mask;
    EXPECT_EQ(Mode(stem + ".crt"), 0644u) << "umask " << mask;
    EXPECT_EQ(Slurp(stem + ".crt"), ca->cert_pem);
    EXPECT_EQ(Slurp(stem + ".key"), ca->key_pem);
  }
  EXPECT_EQ(CountEntries(dir.path()), 4u);  // no temporary files left behind
}

TEST(WriteKeyPair, RefusesToOverwriteNamesTheFileAndWritesNothing) {
  const auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  TempDir dir;
  const std::string cert = dir.path() + "/x.crt", key = dir.path() + "/x.key";
  Spit(cert, "keep me", 0644);
  const absl::Status status = WriteKeyPair(*ca, cert, key);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_NE(status.message().find(cert), std::string::npos) << status;
  EXPECT_EQ(Slurp(cert), "keep me");
  EXPECT_FALSE(std::filesystem::exists(key));  // checked both before writing either
  EXPECT_EQ(CountEntries(dir.path()), 1u);
}

TEST(WriteKeyPair, OverwriteReplacesContentAndTightensALooseKeyMode) {
  const auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  TempDir dir;
  const std::string cert = dir.path() + "/x.crt", key = dir.path() + "/x.key";
  Spit(cert, "old cert", 0600);
  Spit(key, "old key", 0644);
  const absl::Status status = WriteKeyPair(*ca, cert, key, /*overwrite=*/true);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(Slurp(key), ca->key_pem);
  EXPECT_EQ(Slurp(cert), ca->cert_pem);
  EXPECT_EQ(Mode(key), 0600u);
  EXPECT_EQ(Mode(cert), 0644u);
  EXPECT_EQ(CountEntries(dir.path()), 2u);
}

// The subjectAltName URIs of a certificate, in order.
std::vector<std::string> Uris(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    out.emplace_back(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.uniformResourceIdentifier)),
        ASN1_STRING_length(n->d.uniformResourceIdentifier));
  }
  GENERAL_NAMES_free(names);
  return out;
}

// An expired certificate is named with its date before any handshake (which would say only
// "Socket closed"); a month before, it is a warning. The clock is injected.
TEST(CertificateLifetime, ExpiredIsAnErrorWithTheDateAndSoonIsAWarning) {
  auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok());
  CertificateRequest request;
  request.common_name = "node-a";
  request.days = 365;
  auto leaf = IssueCertificate(*ca, request);
  ASSERT_TRUE(leaf.ok());
  const auto now = std::chrono::system_clock::now();
  std::string warning;
  EXPECT_TRUE(CheckCertificateLifetime(leaf->cert_pem, "node-a.crt", now, &warning).ok());
  EXPECT_EQ(warning, "");
  EXPECT_TRUE(CheckCertificateLifetime(leaf->cert_pem, "node-a.crt",
                                       now + std::chrono::hours(24 * 350), &warning)
                  .ok());
  EXPECT_NE(warning.find("node-a.crt expires on"), std::string::npos) << warning;
  const auto expired = CheckCertificateLifetime(leaf->cert_pem, "node-a.crt",
                                                now + std::chrono::hours(24 * 366), &warning);
  EXPECT_EQ(expired.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(expired.message().find("certificate node-a.crt expired on "), std::string::npos)
      << expired;
}

// Enrolment: the key stays with the node; the CA signs its request, and what it signs carries the
// request's key, the identity kspm gives it and the life enrolment chooses, not what the request
// asked for.
TEST(SigningRequest, TheSignedCertificateCarriesTheRequestsKeyAndOurSubject) {
  auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok());
  auto csr = MakeSigningRequest("node-a");
  ASSERT_TRUE(csr.ok()) << csr.status();
  auto facts = CheckSigningRequest(csr->csr_pem);
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->common_name, "node-a");
  EXPECT_EQ(facts->key, "EC 256 bits");
  CertificateRequest request;
  request.common_name = "node-a";
  request.uris = {"spiffe://kspm/lab/node/node-a"};
  request.lifetime = std::chrono::seconds(90);
  const auto floor = std::chrono::system_clock::now() - std::chrono::seconds(10);
  request.not_before = std::chrono::time_point_cast<std::chrono::seconds>(floor);
  auto pem = SignSigningRequest(*ca, csr->csr_pem, request);
  ASSERT_TRUE(pem.ok()) << pem.status();
  auto cert = Cert(*pem);
  auto key = Key(csr->key_pem);
  ASSERT_TRUE(cert && key);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1) << "the node's key, not a new one";
  EXPECT_EQ(Verify(ca->cert_pem, *pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_NE(Verify(ca->cert_pem, *pem, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  auto read = ReadCertificate(*pem);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->common_name, "node-a");
  EXPECT_EQ(read->uris, std::vector<std::string>{"spiffe://kspm/lab/node/node-a"});
  EXPECT_EQ(read->not_before, request.not_before);
  const auto life = std::chrono::duration_cast<std::chrono::seconds>(
      read->not_after - std::chrono::system_clock::now());
  EXPECT_GE(life.count(), 80);
  EXPECT_LE(life.count(), 91);
}

TEST(SigningRequest, ForgedWeakAndForeignRequestsAreRefused) {
  auto csr = MakeSigningRequest("node-a");
  ASSERT_TRUE(csr.ok());
  // One byte of the signature changed: the key did not sign what the request says.
  std::string tampered = csr->csr_pem;
  const size_t end = tampered.find("-----END");
  ASSERT_NE(end, std::string::npos);
  char& c = tampered[end - 6];
  c = c == 'A' ? 'B' : 'A';
  auto forged = CheckSigningRequest(tampered);
  EXPECT_FALSE(forged.ok());
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kInvalidArgument);
  // Requests made by the openssl tool: a 1024-bit RSA key is too weak, a 2048-bit one is fine.
  const auto weak = kspm::testing::RunCommand(
      "openssl req -new -newkey rsa:1024 -nodes -keyout /dev/null -subj /CN=n 2>/dev/null");
  ASSERT_EQ(weak.exit_code, 0);
  auto weak_facts = CheckSigningRequest(weak.out);
  ASSERT_FALSE(weak_facts.ok());
  EXPECT_NE(weak_facts.status().message().find("2048 or more"), std::string::npos);
  const auto strong = kspm::testing::RunCommand(
      "openssl req -new -newkey rsa:2048 -nodes -keyout /dev/null -subj /CN=n 2>/dev/null");
  ASSERT_EQ(strong.exit_code, 0);
  EXPECT_TRUE(CheckSigningRequest(strong.out).ok());
  EXPECT_FALSE(CheckSigningRequest("not a request").ok());
  EXPECT_FALSE(CheckSigningRequest(std::string(20000, 'A')).ok());
}

// The CA pin is the hash kubeadm users already know how to compute with openssl.
TEST(PublicKeyHash, MatchesTheOpensslPipelineKubeadmDocuments) {
  TempDir dir;
  auto ca = MakeCa("test-ca");
  ASSERT_TRUE(ca.ok());
  Spit(dir.path() + "/ca.crt", ca->cert_pem, 0644);
  const auto openssl = kspm::testing::RunCommand(
      "openssl x509 -pubkey -noout -in " + dir.path() +
      "/ca.crt | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1");
  ASSERT_EQ(openssl.exit_code, 0);
  auto hash = PublicKeyHash(ca->cert_pem);
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(*hash, "sha256:" + openssl.out.substr(0, 64));
  auto other = MakeCa("test-ca");
  EXPECT_NE(*PublicKeyHash(other->cert_pem), *hash);
}

// A short-lived certificate warns in its last quarter, not 30 days ahead (it would always).
TEST(CertificateLifetime, AShortLifeWarnsOnlyInItsLastQuarter) {
  auto ca = MakeCa("test-ca");
  CertificateRequest request;
  request.common_name = "node-a";
  request.lifetime = std::chrono::hours(24);
  request.not_before =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto leaf = IssueCertificate(*ca, request);
  ASSERT_TRUE(leaf.ok());
  const auto now = std::chrono::system_clock::now();
  std::string warning;
  EXPECT_TRUE(
      CheckCertificateLifetime(leaf->cert_pem, "n.crt", now + std::chrono::hours(12), &warning)
          .ok());
  EXPECT_EQ(warning, "");
  EXPECT_TRUE(
      CheckCertificateLifetime(leaf->cert_pem, "n.crt", now + std::chrono::hours(19), &warning)
          .ok());
  EXPECT_NE(warning, "");
}

TEST(InitCertificateDirectory, TheNodeNameClusterIsReserved) {
  TempDir tmp;
  const auto refused =
      InitCertificateDirectory(tmp.path() + "/pki", {"cluster"}, {"localhost"}, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("reserved"), std::string::npos) << refused.status();
}

TEST(Identity, UrisRoundTripAndBadOnesAreRefusedWithAReason) {
  for (const Identity& id :
       {Identity{Role::kNode, "prod", "worker-1"}, Identity{Role::kReader, "prod", "alice"},
        Identity{Role::kOperator, "lab", "kspmctl"}, Identity{Role::kServer, "lab", "collector"}}) {
    const auto parsed = ParseIdentityUri(IdentityUri(id));
    ASSERT_TRUE(parsed.ok()) << IdentityUri(id) << ": " << parsed.status();
    EXPECT_EQ(parsed->role, id.role);
    EXPECT_EQ(parsed->cluster, id.cluster);
    EXPECT_EQ(parsed->name, id.name);
  }
  for (const std::string bad :
       {"https://kspm/prod/node/a", "spiffe://kspm/prod/node", "spiffe://kspm/prod/node/a/b",
        "spiffe://kspm/prod/client/admin/a", "spiffe://kspm/prod/node/cluster",
        "spiffe://kspm//node/a", "spiffe://kspm/prod/node/a%2fb", "spiffe://kspm/prod/node/.."}) {
    EXPECT_FALSE(ParseIdentityUri(bad).ok()) << bad;
  }
}

TEST(InitCertificateDirectory, WritesTheLayoutAndEveryLeafVerifiesForItsRole) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/pki";  // does not exist yet
  const auto files = InitCertificateDirectory(dir, {"node-a", "node-b"},
                                              {"kspm-collector", "localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(files.ok()) << files.status();
  const std::vector<std::string> expected = {dir + "/ca.crt",           dir + "/ca.key",
                                             dir + "/collector.crt",    dir + "/collector.key",
                                             dir + "/kspmctl.crt",      dir + "/kspmctl.key",
                                             dir + "/nodes/node-a.crt", dir + "/nodes/node-a.key",
                                             dir + "/nodes/node-b.crt", dir + "/nodes/node-b.key"};
  EXPECT_EQ(*files, expected);
  for (const auto& path : expected) {
    const bool is_key = path.ends_with(".key");
    EXPECT_EQ(Mode(path), is_key ? 0600u : 0644u) << path;
  }
  EXPECT_EQ(CountEntries(dir), expected.size() + 1);  // + nodes/

  const std::string ca = Slurp(dir + "/ca.crt");
  const std::string collector = Slurp(dir + "/collector.crt");
  const X509Ptr collector_cert = Cert(collector);
  ASSERT_TRUE(collector_cert);
  EXPECT_EQ(CommonName(collector_cert.get()), "kspm-collector");
  EXPECT_EQ(X509_check_host(collector_cert.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(collector_cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(Verify(ca, collector, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_EQ(Verify(ca, collector, X509_PURPOSE_SSL_CLIENT), X509_V_OK);

  const std::string ctl = Slurp(dir + "/kspmctl.crt");
  EXPECT_EQ(CommonName(Cert(ctl).get()), "kspmctl");
  EXPECT_EQ(Verify(ca, ctl, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_EQ(Verify(ca, ctl, X509_PURPOSE_SSL_SERVER), X509_V_ERR_INVALID_PURPOSE);

  EXPECT_EQ(Uris(Cert(collector).get()),
            std::vector<std::string>{"spiffe://kspm/default/server/collector"});
  EXPECT_EQ(Uris(Cert(ctl).get()),
            std::vector<std::string>{"spiffe://kspm/default/client/operator/kspmctl"});
  for (const std::string node : {"node-a", "node-b"}) {
    const std::string pem = Slurp(dir + "/nodes/" + node + ".crt");
    EXPECT_EQ(CommonName(Cert(pem).get()), node);
    EXPECT_EQ(Uris(Cert(pem).get()),
              std::vector<std::string>{"spiffe://kspm/default/node/" + node});
    EXPECT_EQ(Verify(ca, pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK) << node;
    EXPECT_EQ(Verify(ca, pem, X509_PURPOSE_SSL_SERVER), X509_V_ERR_INVALID_PURPOSE) << node;
  }
}

TEST(InitCertificateDirectory, RefusesToOverwriteWithoutTheFlagAndNamesTheFile) {
  TempDir tmp;
  const std::string dir = tmp.path();
  ASSERT_TRUE(InitCertificateDirectory(dir, {"node-a"}, {"localhost"}, {}).ok());
  const std::string ca_before = Slurp(dir + "/ca.crt");

  const auto again = InitCertificateDirectory(dir, {"node-a"}, {"localhost"}, {});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(again.status().message().find(dir + "/ca.crt"), std::string::npos) << again.status();
  EXPECT_EQ(Slurp(dir + "/ca.crt"), ca_before);

  const auto forced = InitCertificateDirectory(dir, {"node-a"}, {"localhost"}, {}, true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_NE(Slurp(dir + "/ca.crt"), ca_before);  // a new CA
  EXPECT_EQ(Mode(dir + "/ca.key"), 0600u);
  EXPECT_EQ(
      Verify(Slurp(dir + "/ca.crt"), Slurp(dir + "/nodes/node-a.crt"), X509_PURPOSE_SSL_CLIENT),
      X509_V_OK);  // leaves re-issued by the new CA, not left from the old one
}

TEST(InitCertificateDirectory, AnyExistingTargetStopsItBeforeAnythingIsWritten) {
  TempDir tmp;
  const std::string dir = tmp.path();
  std::filesystem::create_directories(dir + "/nodes");
  Spit(dir + "/nodes/node-b.key", "someone else's key", 0600);  // the last file in the plan
  const auto files = InitCertificateDirectory(dir, {"node-a", "node-b"}, {"localhost"}, {});
  ASSERT_FALSE(files.ok());
  EXPECT_NE(files.status().message().find(dir + "/nodes/node-b.key"), std::string::npos)
      << files.status();
  EXPECT_FALSE(std::filesystem::exists(dir + "/ca.crt"));
  EXPECT_EQ(CountEntries(dir), 2u);  // nodes/ and the pre-existing key only
  EXPECT_EQ(Slurp(dir + "/nodes/node-b.key"), "someone else's key");
}

TEST(InitCertificateDirectory, RejectsNodeNamesThatAreUnsafePathsOrAmbiguousIdentities) {
  TempDir tmp;
  const std::vector<std::vector<std::string>> bad = {
      {"../escape"},       {"a/b"},     {""},
      {".hidden"},         {"kspmctl"},  // would share the admin client's CN
      {"kspm-collector"},                // would share the collector's CN
      {"kspm-ca"},                       // would share the CA's subject
      {"node-a", "node-a"}};
  for (const auto& nodes : bad) {
    const auto files = InitCertificateDirectory(tmp.path(), nodes, {"kspm-collector"}, {});
    ASSERT_FALSE(files.ok()) << nodes.back();
    EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument) << files.status();
  }
  EXPECT_EQ(CountEntries(tmp.path()), 0u);
}

// The certificates as gRPC uses them: a real TLS handshake, server verifying the client.
TEST(Certificates, MutualTlsHandshakeSucceedsOnlyWithinOneCaAndForTheRightName) {
  const auto ca = MakeCa("kspm-ca"), other_ca = MakeCa("kspm-ca");
  ASSERT_TRUE(ca.ok() && other_ca.ok());
  const auto collector = IssueCertificate(
      *ca, Request("kspm-collector", true, true, {"kspm-collector", "localhost"}, {"127.0.0.1"}));
  const auto node = IssueCertificate(*ca, Request("node-a", false, true));
  const auto stranger = IssueCertificate(*other_ca, Request("node-a", false, true));
  ASSERT_TRUE(collector.ok() && node.ok() && stranger.ok());

  const auto by_name = Handshake(ca->cert_pem, *collector, *node, "localhost");
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(*by_name, "node-a");  // the identity the collector binds the stream to
  const auto by_ip = Handshake(ca->cert_pem, *collector, *node, "127.0.0.1");
  EXPECT_TRUE(by_ip.ok()) << by_ip.status();

  EXPECT_FALSE(Handshake(ca->cert_pem, *collector, *node, "elsewhere.example").ok());
  EXPECT_FALSE(Handshake(ca->cert_pem, *collector, *stranger, "localhost").ok());
  // A client-only certificate cannot serve, even for a name it carries.
  const auto client_only = IssueCertificate(*ca, Request("node-b", false, true, {"localhost"}));
  ASSERT_TRUE(client_only.ok()) << client_only.status();
  EXPECT_FALSE(Handshake(ca->cert_pem, *client_only, *node, "localhost").ok());
}

}  // namespace
}  // namespace kspm::common

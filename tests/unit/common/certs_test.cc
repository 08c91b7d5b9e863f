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

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "fixtures/host_builder.h"
#include "unit/common/certs_test_support.h"

namespace kspm::common {
namespace {

using kspm::testing::TempDir;

using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL_free>>;

KeyPtr Key(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return KeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
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

// Certificates on disk: the modes and refusals of WriteKeyPair, the directory `kspmctl certs init`
// writes and the identities (subjectAltName URIs) its certificates carry.
#include <gtest/gtest.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "fixtures/host_builder.h"
#include "kspm/common/certs.h"
#include "kspm/common/identity.h"
#include "unit/common/certs_test_support.h"

namespace kspm::common {
namespace {

using kspm::testing::TempDir;

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

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::recursive_directory_iterator(dir)) ++n;
  return n;
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

}  // namespace
}  // namespace kspm::common

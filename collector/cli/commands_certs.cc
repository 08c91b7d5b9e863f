// kspmctl certs: issue and client (one more certificate from an existing CA) and init (a new CA
// and every certificate a deployment starts with).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <system_error>
#include <utility>

#include "cli/kspmctl.h"
#include "kspm/common/certs.h"
#include "kspm/common/identity.h"

namespace kspm::collector::cli {

// `kspmctl certs issue --ca DIR (--node NAME | --client NAME --role reader|operator)`: one more
// certificate from the existing CA in DIR (ca.crt, ca.key), which stays as it is, so the new
// certificate verifies against the CA already deployed.
int CertsIssue(const CertsOptions& c) {
  if (c.node.empty() == c.client.empty()) {
    Die(kExitUsage, "certs issue: give exactly one of --node NAME or --client NAME");
  }
  kspm::common::Identity id;
  id.cluster = c.cluster;
  if (!c.node.empty()) {
    if (auto s = kspm::common::CheckNodeName(c.node); !s.ok())
      Die(kExitUsage, std::string(s.message()));
    id.role = kspm::common::Role::kNode;
    id.name = c.node;
  } else {
    if (c.role != "reader" && c.role != "operator") {
      Die(kExitUsage, "certs issue: --role must be reader or operator, not '" + c.role + "'");
    }
    if (auto s = kspm::common::CheckIdentityName("client name", c.client); !s.ok()) {
      Die(kExitUsage, std::string(s.message()));
    }
    id.role = c.role == "operator" ? kspm::common::Role::kOperator : kspm::common::Role::kReader;
    id.name = c.client;
  }
  if (auto s = kspm::common::CheckIdentityName("cluster name", c.cluster); !s.ok()) {
    Die(kExitUsage, std::string(s.message()));
  }
  kspm::common::KeyPair ca;
  for (const auto& [path, out] : {std::pair{c.ca_dir + "/ca.crt", &ca.cert_pem},
                                  std::pair{c.ca_dir + "/ca.key", &ca.key_pem}}) {
    std::ifstream in(path);
    if (!in) Die(kExitUsage, "certs issue: cannot read " + path);
    *out = std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  kspm::common::CertificateRequest request;
  request.common_name = id.name;
  request.uris = {kspm::common::IdentityUri(id)};
  request.days = c.days;
  auto pair = kspm::common::IssueCertificate(ca, request);
  if (!pair.ok()) Die(kExitUsage, "certs issue: " + std::string(pair.status().message()));
  const std::string dir =
      c.out_dir.empty() ? (c.node.empty() ? c.ca_dir : c.ca_dir + "/nodes") : c.out_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string stem = dir + "/" + id.name;
  if (auto s = kspm::common::WriteKeyPair(*pair, stem + ".crt", stem + ".key", c.overwrite);
      !s.ok()) {
    Die(1, std::string(s.message()));
  }
  std::cout << stem << ".crt\n" << stem << ".key\n";
  std::cerr << "kspmctl: " << kspm::common::IdentityUri(id) << ", signed by " << c.ca_dir
            << "/ca.crt\n";
  if (!c.write_config.empty()) {
    if (!c.node.empty()) Die(kExitUsage, "--write-config is for client certificates");
    WriteConfigFile(c.write_config, c.collector, c.ca_dir + "/ca.crt", stem + ".crt", stem + ".key",
                    c.cluster, c.overwrite);
  }
  return 0;
}

// `kspmctl certs init DIR`: a CA, the collector's certificate, kspmctl's, and one per node.
int CertsInit(const CertsOptions& c) {
  auto files =
      kspm::common::InitCertificateDirectory(c.dir, c.nodes, c.dns, c.ips, c.overwrite, c.cluster);
  if (!files.ok()) Die(kExitUsage, std::string(files.status().message()));
  for (const auto& f : *files) std::cout << f << "\n";
  std::cerr << "kspmctl: keep " << c.dir << "/ca.key offline; give each node only ca.crt and its "
            << "own nodes/<node>.crt and .key\n";
  return 0;
}

}  // namespace kspm::collector::cli

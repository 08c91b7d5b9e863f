// Certificates and keys on disk: WriteKeyPair and the directory `kspmctl certs init` writes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kspm/common/certs.h"
#include "kspm/common/certs_internal.h"
#include "kspm/common/identity.h"

namespace kspm::common {
namespace {

using internal::IsLabelChar;
using internal::kMaxCommonName;

constexpr const char* kCaCommonName = "kspm-ca";
constexpr const char* kCtlCommonName = "kspmctl";
constexpr const char* kDefaultCollectorName = "kspm-collector";

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

}  // namespace kspm::common

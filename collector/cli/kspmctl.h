#pragma once

// What kspmctl's commands share: the options, the exit codes, the connection to the collector and
// how a command gives up. kspmctl.cc reads the command line and the settings file; each group of
// commands lives in a commands_*.cc file of its own.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "google/protobuf/timestamp.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "kspm/common/tls.h"
#include "kspm/v1/query.grpc.pb.h"

namespace kspm::collector::cli {

inline constexpr int kExitUnavailable = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitFailOn = 3;

struct Options {
  std::string collector = "127.0.0.1:7443";
  kspm::common::TlsFiles tls;
  std::string format = "table";
  std::string cluster;
  std::string node;
  std::vector<std::string> statuses;
  bool verbose = false;  // findings: the remediation of each too
  std::string severity;
  std::string benchmark;
  std::string id;
  std::string fail_on;
  std::string since;
  std::string ns;
  int limit = 0;
  int timeout_seconds = 10;
  int scan_wait_seconds = 300;
};

struct CertsOptions {
  std::string dir;
  std::vector<std::string> nodes;
  std::vector<std::string> dns;
  std::vector<std::string> ips;
  bool overwrite = false;
  std::string cluster = "default";
  // certs issue
  std::string ca_dir;
  std::string node;
  std::string client;
  std::string role = "reader";
  std::string out_dir;
  int days = 365;
  std::string write_config;  // client certificates: a settings file naming them
  std::string collector;
};

// `message` on stderr, prefixed "kspmctl: ", then exit with `code`.
[[noreturn]] void Die(int code, const std::string& message);

// `--since`: a duration back from now (30m, 24h, 7d) or an RFC 3339 time in UTC.
std::optional<google::protobuf::Timestamp> ParseSince(const std::string& text);

// A QueryService stub for `o.collector` with the TLS settings of `o`; bad settings are fatal.
std::unique_ptr<kspm::v1::QueryService::Stub> Connect(const Options& o);

// Returns when `s` is OK; otherwise exits kExitUnavailable naming the collector and the status.
void Check(const grpc::Status& s, const Options& o);

// A context whose deadline is `o.timeout_seconds` from now.
std::unique_ptr<grpc::ClientContext> Context(const Options& o);

// Writes a settings file for a client certificate just issued; refuses to replace one.
void WriteConfigFile(const std::string& path, const std::string& collector, const std::string& ca,
                     const std::string& cert, const std::string& key, const std::string& cluster,
                     bool overwrite);

// The commands, each returning kspmctl's exit code.
// commands_query.cc
int Summary(const Options& o);
int Findings(const Options& o);
int Nodes(const Options& o);
int Export(const Options& o);
int ScanCluster(const Options& o);
int Report(const Options& o, const std::string& output, size_t max_findings);
// commands_history.cc
int History(const Options& o);
int Drift(const Options& o);
// commands_certs.cc
int CertsIssue(const CertsOptions& c);
int CertsInit(const CertsOptions& c);
// commands_fleet.cc
int TokensCreate(const Options& o, const std::string& node, const std::string& ttl, int uses);
int NodeAccess(const Options& o, const std::string& node, bool revoke);

}  // namespace kspm::collector::cli

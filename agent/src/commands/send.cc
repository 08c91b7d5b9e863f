#include <iostream>

#include "commands/commands.h"
#include "grpcpp/create_channel.h"
#include "kspm/agent/transport/collector_stream.h"
#include "kspm/agent/transport/enroll.h"
#include "kspm/common/time.h"
#include "spdlog/spdlog.h"

// `kspm-agent send` (one scan delivered to a collector) and `kspm-agent enroll` (this node's
// certificate, once).
namespace kspm::agent::commands {

int RunSendCommand(const Options& o) {
  if (o.collector.empty()) Die("--collector HOST:PORT is required");
  if (o.tls.insecure) {
    spdlog::warn(
        "--insecure: sending results in plaintext without authentication; "
        "use this only on loopback for development");
  }
  auto creds = common::MakeClientCredentials(o.tls);
  if (!creds.ok()) Die(std::string(creds.status().message()));
  const checks::Catalog catalog = LoadCatalog(o.rules_dir);
  const checks::Selection selection = MakeSelection(catalog, o.benchmarks, o.only, o.skip);
  auto host = MakeHost(o.host_root, o.proc_root, o.read_timeout_seconds);
  const v1::NodeReport report = RunScan(*host, catalog, selection, o.node);

  const auto timeout = std::chrono::seconds(o.timeout_seconds);
  auto stream = transport::CollectorStream::Open(
      grpc::CreateChannel(o.collector, *creds),
      transport::MakeHello(report.node(), catalog.version(), std::chrono::seconds(0)),
      std::chrono::system_clock::now() + timeout);
  absl::Status s = stream.ok() ? (*stream)->Deliver(report, timeout) : stream.status();
  if (stream.ok()) {
    // The collector's own status says why a stream ended early (a rejected report).
    const grpc::Status end = (*stream)->Finish();
    if (absl::IsAborted(s) && !end.ok()) {
      s = absl::Status(static_cast<absl::StatusCode>(end.error_code()), end.error_message());
    } else if (absl::IsUnavailable(s)) {
      s = absl::UnavailableError("the collector did not commit it: " + std::string(s.message()));
    } else if (s.ok() && !end.ok()) {
      s = absl::Status(static_cast<absl::StatusCode>(end.error_code()),
                       "closing the stream: " + end.error_message());
    }
  }
  if (!s.ok()) {
    std::cerr << "kspm-agent: delivering scan " << report.scan_id() << " to " << o.collector
              << " failed: " << s.message() << "\n";
    return 1;
  }
  std::cerr << "kspm-agent: delivered scan " << report.scan_id() << " of node "
            << report.node().node_name() << " (" << report.results_size() << " results) to "
            << o.collector << "\n";
  return 0;
}

// `kspm-agent enroll`: gets this node its certificate once, e.g. on a VM with a join token
// before the service starts; `run` then finds it in the state directory and renews it.
int RunEnrollCommand(const Options& o, const std::string& state_dir, const std::string& token,
                     const std::string& ca_hash, const std::string& token_file) {
  auto host = MakeHost(o.host_root, o.proc_root, o.read_timeout_seconds);
  transport::EnrollSettings enroll;
  enroll.collector = o.collector;
  enroll.node_name = ResolveNodeName(o.node, *host);
  enroll.identity_dir = state_dir + "/identity";
  enroll.ca_file = o.tls.ca;
  enroll.ca_hash = ca_hash;
  enroll.join_token = token;
  enroll.token_file = token_file;
  enroll.timeout = std::chrono::seconds(o.timeout_seconds);
  if (token.empty() && token_file.empty()) Die("enroll needs --token or --token-file");
  auto renew_at = transport::EnrollOnce(enroll, false);
  if (!renew_at.ok()) {
    std::cerr << "kspm-agent: " << renew_at.status().message() << "\n";
    return 1;
  }
  std::cout << "enrolled node " << enroll.node_name << ": " << enroll.identity_dir
            << "/node.crt (renewal due " << common::FormatRfc3339(*renew_at) << ")\n";
  return 0;
}

}  // namespace kspm::agent::commands

#pragma once

// `kspm-collector scan-cluster`: one evaluation of a cluster, from an offline snapshot
// directory (`--from DIR`) or from the API (`--kubeconfig PATH`, or in-cluster credentials),
// printed as text or JSON. Exit codes: 0 the scan ran (findings are data, not errors), 2 usage
// or start-up error (bad flags, unreadable directory or exceptions file, API unreachable or
// refusing the credentials), and with --exit-code N, N when a check FAILs that no exception
// accepted (for CI, like `kspm-agent scan --exit-code`).
#include <string>
#include <vector>

namespace kspm::collector::cluster {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 2;

struct ScanClusterCommand {
  std::string from;        // snapshot directory; empty: read the API
  std::string kubeconfig;  // kubeconfig for the API; empty: in-cluster credentials
  std::string context;     // kubeconfig context; empty: current-context
  std::string cluster_name;
  std::string format = "text";  // text, json, csv, junit or sarif
  std::string exceptions;       // exceptions file
  bool include_system = false;
  bool configmaps = false;                     // --scan-configmaps
  std::vector<std::string> system_namespaces;  // added to the defaults
  std::vector<std::string> benchmarks;         // empty: every benchmark
  std::string output;                          // file; empty: stdout
  bool verbose = false;
  int timeout_seconds = 30;
  int exit_code = 0;      // non-zero: exit with it when an unaccepted FAIL is found
  std::string fail_on;    // --fail-on SEVERITY: exit 3 on an unaccepted FAIL at or above it
  std::string min_score;  // --min-score N: exit 3 when the score is below it
};

int RunScanCluster(const ScanClusterCommand& command);

}  // namespace kspm::collector::cluster

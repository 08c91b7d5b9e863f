#include "kspm/collector/cluster/command.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>

#include "kspm/collector/cluster/exceptions.h"
#include "kspm/collector/cluster/report.h"
#include "kspm/collector/cluster/scan.h"
#include "kspm/collector/k8s/snapshot_dir.h"

namespace kspm::collector::cluster {
namespace {

int Fail(const std::string& message) {
  std::cerr << "kspm-collector scan-cluster: " << message << "\n";
  return kExitUsage;
}

}  // namespace

int RunScanCluster(const ScanClusterCommand& command) {
  if (command.format != "text" && command.format != "json") {
    return Fail("unknown format '" + command.format + "' (text, json)");
  }
  ScanOptions options;
  options.policy.include_system = command.include_system;
  for (const auto& ns : command.system_namespaces) options.policy.namespaces.insert(ns);
  for (const auto& b : command.benchmarks) options.benchmarks.insert(b);
  ExceptionSet exceptions;
  if (!command.exceptions.empty()) {
    auto loaded = ExceptionSet::Load(command.exceptions);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    exceptions = *std::move(loaded);
    options.exceptions = &exceptions;
  }

  k8s::Snapshot snapshot;
  ScanSource source;
  source.cluster = command.cluster_name.empty() ? "default" : command.cluster_name;
  if (command.from.empty()) {
    return Fail(
        "--from DIR is required (reading the API needs --kubeconfig or in-cluster "
        "credentials)");
  }
  if (auto s = k8s::LoadSnapshotDir(command.from, snapshot); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  source.description = "snapshot " + command.from;
  for (const auto& e : snapshot.errors()) std::cerr << "kspm-collector: " << e << "\n";

  const ClusterScan scan = EvaluateCluster(snapshot, options);

  std::ofstream file;
  if (!command.output.empty()) {
    file.open(command.output);
    if (!file) return Fail("cannot write " + command.output);
  }
  std::ostream& out = command.output.empty() ? std::cout : file;
  if (command.format == "json") {
    out << ScanToJson(scan, snapshot, source).dump(2) << "\n";
  } else {
    const bool colour =
        command.output.empty() && ::isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr;
    WriteScanText(scan, snapshot, source, out, colour, command.verbose);
  }
  return kExitOk;
}

}  // namespace kspm::collector::cluster

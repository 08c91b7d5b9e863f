#include "kspm/collector/cluster/command.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>

#include "kspm/collector/cluster/exceptions.h"
#include "kspm/collector/cluster/report.h"
#include "kspm/collector/cluster/scan.h"
#include "kspm/collector/cluster/scanner.h"
#include "kspm/collector/cluster/serve_flags.h"
#include "kspm/common/export.h"
#include "kspm/common/gate.h"
#include "kspm/common/html_report.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"

namespace kspm::collector::cluster {
namespace {

int Fail(const std::string& message) {
  std::cerr << "kspm-collector scan-cluster: " << message << "\n";
  return kExitUsage;
}

}  // namespace

int RunScanCluster(const ScanClusterCommand& command) {
  common::Format format;
  if (auto s = common::ParseFormat(command.format, &format); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  const auto gate = common::ParseGate(command.fail_on, command.min_score);
  if (!gate.ok()) return Fail(std::string(gate.status().message()));
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

  ScanSource source;
  source.cluster = command.cluster_name.empty() ? "default" : command.cluster_name;
  std::unique_ptr<ObjectSource> objects;
  if (!command.from.empty()) {
    if (!command.kubeconfig.empty()) return Fail("--from and --kubeconfig exclude each other");
    objects = DirectorySource(command.from, command.configmaps);
  } else {
    auto connection = SelectConnection(command.kubeconfig, command.context);
    if (absl::IsNotFound(connection.status())) {
      return Fail("give --from DIR (a snapshot) or --kubeconfig PATH, or run in a pod");
    }
    if (!connection.ok()) return Fail(std::string(connection.status().message()));
    if (command.kubeconfig.empty()) {
      if (const std::string own = OwnNamespace(); !own.empty()) {
        options.policy.namespaces.insert(own);
      }
    }
    k8s::ClientOptions client;
    client.timeout = std::chrono::seconds(command.timeout_seconds);
    objects = ApiSource(*std::move(connection), client, command.configmaps);
  }
  source.description = objects->Describe();
  std::string version;
  auto read = objects->Read(&version);
  if (!read.ok()) return Fail(std::string(read.status().message()));
  const k8s::Snapshot snapshot = *std::move(read);
  if (!version.empty()) source.description += " (Kubernetes " + version + ")";
  for (const auto& e : snapshot.errors()) std::cerr << "kspm-collector: " << e << "\n";

  const ClusterScan scan = EvaluateCluster(snapshot, options);

  std::ofstream file;
  if (!command.output.empty()) {
    file.open(command.output);
    if (!file) return Fail("cannot write " + command.output);
  }
  std::ostream& out = command.output.empty() ? std::cout : file;
  std::vector<common::ResultRow> rows;
  std::vector<const v1::CheckResult*> results;
  const std::string now = common::FormatRfc3339(common::Clock::now());
  for (const auto& r : scan.results) {
    rows.push_back({source.cluster, "cluster", &r, now});
    results.push_back(&r);
  }
  switch (format) {
    case common::Format::kJson:
      out << ScanToJson(scan, snapshot, source).dump(2) << "\n";
      break;
    case common::Format::kCsv:
    case common::Format::kJunit:
    case common::Format::kSarif:
      common::WriteCiFormat(format, rows, out);
      break;
    case common::Format::kHtml: {
      common::HtmlReport html;
      html.scope = "cluster " + source.cluster;
      html.source = "kspm-collector scan-cluster of " + source.description;
      html.summary = common::SummarizeResults(results, "cluster");
      html.findings = common::FindingsOf(results, source.cluster, "cluster");
      out << common::RenderHtmlReport(html);
      break;
    }
    case common::Format::kText: {
      const bool colour = command.output.empty() && common::StdoutWantsColour();
      WriteScanText(scan, snapshot, source, out, colour, command.verbose);
      break;
    }
  }
  if (const int gated = common::CheckGate("kspm-collector scan-cluster", *gate, results)) {
    return gated;
  }
  if (command.exit_code != 0) {
    for (const auto& r : scan.results) {
      if (r.status() == v1::STATUS_FAIL && !r.has_accepted()) return command.exit_code;
    }
  }
  return kExitOk;
}

}  // namespace kspm::collector::cluster

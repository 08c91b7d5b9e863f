#include "kspm/collector/cluster/report.h"

#include <cstdlib>
#include <map>
#include <set>

#include "kspm/agent/checks/catalog.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace kspm::collector::cluster {

// Defined in the generated cluster_catalog.cc: agent/catalog/kubernetes-control-plane.yaml.

namespace {

std::string ScopeOf(const v1::CheckResult& r) {
  std::string scope = common::ResourceScope(r);
  return scope.empty() ? "(cluster)" : scope;
}

bool NeedsAttention(const v1::CheckResult& r) {
  return r.status() == v1::STATUS_FAIL || r.status() == v1::STATUS_WARN ||
         r.status() == v1::STATUS_ERROR;
}

std::string StatusCell(const v1::CheckResult& r, bool colour) {
  std::string s(common::StatusName(r.status()));
  if (colour) s = common::Colourise(s);
  if (r.has_accepted()) s += " (accepted)";
  return s;
}

}  // namespace

std::vector<NamespaceScore> NamespaceScores(const std::vector<v1::CheckResult>& results) {
  std::map<std::string, std::pair<common::ScoreAccumulator, size_t>> by_scope;
  for (const auto& r : results) {
    auto& [acc, accepted] = by_scope[ScopeOf(r)];
    acc.Add(r.status(), r.severity(), r.scored());
    if (r.has_accepted()) ++accepted;
  }
  std::vector<NamespaceScore> out;
  for (const auto& [scope, entry] : by_scope) {
    out.push_back(
        {scope, entry.first.Score(), entry.first.evaluated(), entry.first.counts(), entry.second});
  }
  return out;
}

nlohmann::json ScanToJson(const ClusterScan& scan, const k8s::Snapshot& snapshot,
                          const ScanSource& source) {
  v1::StatusCounts totals;
  nlohmann::json results = nlohmann::json::array();
  for (const auto& r : scan.results) {
    common::AddStatusCount(totals, r.status());
    results.push_back(common::ResultToJson(r));
  }
  nlohmann::json namespaces = nlohmann::json::array();
  for (const auto& s : NamespaceScores(scan.results)) {
    namespaces.push_back({{"namespace", s.scope},
                          {"score", s.score},
                          {"evaluated", s.evaluated},
                          {"counts", common::StatusCountsJson(s.counts)},
                          {"accepted", s.accepted}});
  }
  nlohmann::json objects = nlohmann::json::object();
  for (const auto& [kind, n] : snapshot.Counts()) objects[kind] = n;
  nlohmann::json failed = nlohmann::json::object();
  for (const auto& [kind, why] : snapshot.failed_kinds()) failed[kind] = why;
  const auto& st = scan.stats;
  nlohmann::json totals_json = common::StatusCountsJson(totals);
  totals_json["ACCEPTED"] = st.accepted;
  return {{"schemaVersion", common::kJsonSchemaVersion},
          {"cluster",
           {{"name", source.cluster},
            {"source", source.description},
            {"objects", objects},
            {"errors", snapshot.errors()},
            {"unreadable_kinds", failed},
            {"workloads", st.workloads},
            {"system_workloads_skipped", st.system_workloads},
            {"roles", st.roles},
            {"bindings", st.bindings}}},
          {"totals", totals_json},
          {"namespaces", namespaces},
          {"results", results}};
}

void WriteScanText(const ClusterScan& scan, const k8s::Snapshot& snapshot, const ScanSource& source,
                   std::ostream& out, bool colour, bool verbose) {
  const auto& st = scan.stats;
  out << "cluster " << source.cluster << " (" << source.description << "): " << st.objects
      << " objects, " << st.workloads << " workloads at their controller, " << st.roles
      << " roles, " << st.bindings << " bindings\n";
  for (const auto& e : snapshot.errors()) out << "ERROR reading " << e << "\n";
  common::Table table({"STATUS", "BENCHMARK", "ID", "SEVERITY", "RESOURCE", "TITLE"});
  for (const auto& r : scan.results) {
    if (!verbose && !NeedsAttention(r)) continue;
    table.AddRow({StatusCell(r, false), r.benchmark(), r.benchmark_id(),
                  std::string(common::SeverityName(r.severity())), DescribeResource(r.resource()),
                  r.title()});
  }
  if (table.size() > 0) {
    out << "\n";
    table.Print(out, colour, 48);
  }
  bool first = true;
  for (const auto& r : scan.results) {
    if (!NeedsAttention(r)) continue;
    if (first) out << "\n";
    first = false;
    out << StatusCell(r, colour) << " " << r.benchmark_id() << " " << r.title() << " ["
        << DescribeResource(r.resource()) << "]\n";
    for (const auto& e : r.evidence()) out << "    read:     " << common::EvidenceText(e) << "\n";
    out << "    expected: " << r.expected() << "\n";
    out << "    reason:   " << r.reason() << "\n";
    if (r.has_accepted()) {
      out << "    accepted: until "
          << common::FormatRfc3339(common::FromProto(r.accepted().expires_at())) << " by '"
          << r.accepted().exception() << "' (" << r.accepted().source() << ")\n";
    }
    if (verbose) out << "    fix:      " << r.remediation() << "\n";
  }
  out << "\n";
  common::Table scores(
      {"NAMESPACE", "SCORE", "PASS", "FAIL", "WARN", "MANUAL", "N/A", "ERROR", "ACCEPTED"});
  for (const auto& s : NamespaceScores(scan.results)) {
    const auto& c = s.counts;
    scores.AddRow({s.scope, common::FormatScore(s.score, s.evaluated, s.counts),
                   std::to_string(c.pass()), std::to_string(c.fail()), std::to_string(c.warn()),
                   std::to_string(c.manual()), std::to_string(c.not_applicable()),
                   std::to_string(c.error()), std::to_string(s.accepted)});
  }
  scores.Print(out, false);
  v1::StatusCounts t;
  for (const auto& r : scan.results) common::AddStatusCount(t, r.status());
  out << "\n"
      << t.pass() << " pass, " << t.fail() << " fail, " << t.warn() << " warn, " << t.manual()
      << " manual, " << t.not_applicable() << " not applicable, " << t.error() << " error ("
      << st.accepted << " accepted)\n";
}

std::vector<v1::CheckResult> ControlPlaneNotApplicable(const std::vector<std::string>& sections,
                                                       const std::string& reason,
                                                       const std::set<std::string>& benchmarks) {
  std::vector<v1::CheckResult> out;
  static const auto catalog = agent::checks::Catalog::Builtin();
  if (!catalog.ok()) {
    spdlog::error("built-in catalogue: {}", catalog.status().ToString());
    return out;
  }
  auto in_sections = [&sections](const std::string& item) {
    return std::find(sections.begin(), sections.end(), item.substr(0, item.find('.'))) !=
           sections.end();
  };
  // The benchmarks to report under: those asked for that have items in these sections (a
  // platform benchmark has none: its control plane is the provider's), else the newest CIS
  // Kubernetes version (compared by minor number: 1.12 is newer than 1.9).
  std::set<std::string> mapped;
  for (const auto& c : catalog->checks()) {
    for (const auto& [benchmark, item] : c.benchmarks) {
      if (common::IsKubernetesBenchmark(benchmark) && in_sections(item)) mapped.insert(benchmark);
    }
  }
  std::set<std::string> chosen;
  for (const auto& b : benchmarks) {
    if (mapped.contains(b)) chosen.insert(b);
  }
  if (chosen.empty()) {
    constexpr std::string_view kCis = "cis-kubernetes-1.";
    std::string newest;
    int newest_minor = -1;
    for (const auto& b : mapped) {
      if (!b.starts_with(kCis)) continue;
      const int minor = std::atoi(b.c_str() + kCis.size());
      if (minor > newest_minor) {
        newest_minor = minor;
        newest = b;
      }
    }
    if (!newest.empty()) chosen.insert(newest);
  }
  for (const auto& c : catalog->checks()) {
    for (const auto& [benchmark, item] : c.benchmarks) {
      if (!chosen.contains(benchmark) || !in_sections(item)) continue;
      v1::CheckResult r;
      r.set_check_id(c.id);
      r.set_benchmark(benchmark);
      r.set_benchmark_id(item);
      r.set_title(c.title);
      r.set_status(v1::STATUS_NOT_APPLICABLE);
      r.set_scored(c.ScoredIn(benchmark));
      r.set_severity(c.severity);
      r.set_component(c.component);
      r.set_remediation(c.remediation);
      r.set_reason(reason);
      out.push_back(std::move(r));
    }
  }
  return out;
}

v1::NodeReport ClusterReportHeader(const std::string& cluster, common::Clock::time_point started,
                                   common::Clock::time_point finished, uint32_t interval_seconds,
                                   const std::string& api_version) {
  v1::NodeReport report;
  report.set_scan_id(common::NewUuid());
  *report.mutable_started_at() = common::ToProto(started);
  *report.mutable_finished_at() = common::ToProto(finished);
  auto* node = report.mutable_node();
  node->set_node_name(kClusterNodeName);
  node->set_cluster(cluster);
  node->set_os("Kubernetes API objects");
  node->set_kubelet_version(api_version);
  node->set_agent_version(std::string("kspm-collector ") + KSPM_VERSION);
  node->set_drift_mode("none");
  report.set_full(true);
  report.set_host_root("");
  report.set_scan_interval_seconds(interval_seconds);
  return report;
}

void PrepareClusterResult(v1::CheckResult& result) {
  const auto& res = result.resource();
  // The store keys a result by its object too (common::ResourceKey); a reason that does not
  // name the object gets it in front, for readers of one line (history, exports).
  const std::string object = common::ResourceKey(res);
  if (!object.empty() && result.reason().find(res.name()) == std::string::npos) {
    result.set_reason(object + ": " + result.reason());
  }
}

v1::NodeReport BuildClusterReport(ClusterScan&& scan, const std::string& cluster,
                                  common::Clock::time_point started,
                                  common::Clock::time_point finished, uint32_t interval_seconds,
                                  const std::string& api_version) {
  v1::NodeReport report =
      ClusterReportHeader(cluster, started, finished, interval_seconds, api_version);
  report.mutable_results()->Reserve(static_cast<int>(scan.results.size()));
  for (auto& r : scan.results) {
    auto* out = report.add_results();
    *out = std::move(r);
    PrepareClusterResult(*out);
  }
  scan.results.clear();
  return report;
}

std::optional<std::string> SelfHostedControlPlane(const k8s::Snapshot& snapshot) {
  for (const auto& pod : snapshot.Of("Pod")) {
    if (pod.ns != "kube-system") continue;
    const auto& labels = pod.labels();
    const auto it = labels.find("component");
    if (it != labels.end() && it->is_string() &&
        (it->get<std::string>() == "kube-apiserver" || it->get<std::string>() == "etcd")) {
      return pod.Describe();
    }
  }
  for (const auto& node : snapshot.Of("Node")) {
    const auto& labels = node.labels();
    if (labels.contains("node-role.kubernetes.io/control-plane") ||
        labels.contains("node-role.kubernetes.io/master")) {
      return node.Describe();
    }
  }
  return std::nullopt;
}

std::vector<std::string> UncoveredControlPlaneSections(const std::vector<v1::NodeInfo>& nodes) {
  bool control_plane = false, etcd = false;
  for (const auto& n : nodes) {
    if (n.identity().node_name() == kClusterNodeName) continue;
    for (int role : n.identity().roles()) {
      control_plane = control_plane || role == v1::NODE_ROLE_CONTROL_PLANE;
      etcd = etcd || role == v1::NODE_ROLE_ETCD;
    }
  }
  std::vector<std::string> out;
  if (!control_plane) out.push_back("1");
  if (!etcd) out.push_back("2");
  return out;
}

}  // namespace kspm::collector::cluster

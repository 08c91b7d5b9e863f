#include "kspm/collector/server/metrics.h"

#include <sys/stat.h>

#include <set>

#include "kspm/common/names.h"

namespace kspm::collector::server {
namespace {

using common::metrics::Families;
using prometheus::MetricType;

std::string Lower(std::string_view name) {
  std::string out(name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string StatusLabel(v1::Status status) { return Lower(common::StatusName(status)); }

std::string SeverityLabel(v1::Severity severity) {
  const auto name = common::SeverityName(severity);
  return name.empty() ? "none" : std::string(name);
}

int64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

}  // namespace

void CollectorMetrics::AddSource(std::function<void(Families&)> fill) {
  std::lock_guard lock(mu_);
  sources_.push_back(std::move(fill));
}

void CollectorMetrics::Count(const store::CommitNews& news) {
  std::lock_guard lock(mu_);
  for (const auto& d : news.drift) {
    // The source comes from the agent: only known values become labels (bounded series).
    const std::string& source = d.event().source();
    const bool known =
        source == "ebpf" || source == "inotify" || source == "rescan" || source == "watch";
    drift_by_source_[known ? source : "other"]++;
  }
  for (const auto& c : news.changes) changes_by_status_[StatusLabel(c.result.status())]++;
}

std::shared_ptr<prometheus::Collectable> CollectorMetrics::collectable() {
  return std::make_shared<common::metrics::Source>([this](Families& out) { Fill(out); });
}

void CollectorMetrics::FillPosture(Families& out) {
  std::lock_guard lock(posture_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!posture_read_ || now - posture_at_ >= posture_ttl_) {
    Posture fresh;
    const auto wall = common::Clock::now();
    auto nodes = store_.Nodes("", wall);
    auto counts = store_.CountResults();
    if (!nodes.ok()) {
      fresh.error = std::string(nodes.status().message());
    } else if (!counts.ok()) {
      fresh.error = std::string(counts.status().message());
    } else {
      fresh.counts = *std::move(counts);
      std::set<std::string> clusters;
      for (const auto& n : *nodes) {
        clusters.insert(store::ClusterName(n.identity().cluster()));
      }
      for (const auto& cluster : clusters) {
        auto summary = store_.Summary(cluster, wall);
        if (!summary.ok()) {
          fresh.error = std::string(summary.status().message());
          break;
        }
        fresh.clusters.emplace_back(cluster, *std::move(summary));
      }
    }
    posture_ = std::move(fresh);
    posture_at_ = now;
    posture_read_ = true;
  }
  out.Gauge("kspm_store_up",
            "1 when the last read of the store for these metrics succeeded, else 0 (the posture "
            "families are then left out; the collector's log says why)",
            {}, posture_.error.empty() ? 1 : 0);
  if (!posture_.error.empty()) return;

  const auto ratio = [](const v1::Score& s) { return s.score() / 100.0; };
  for (const auto& [cluster, summary] : posture_.clusters) {
    const common::metrics::Labels c = {{"cluster", cluster}};
    out.Gauge("kspm_nodes", "Nodes that have reported, the cluster's pseudo-node included", c,
              summary.node_count());
    out.Gauge("kspm_stale_nodes",
              "Nodes that have not reported for 3 of their scan intervals (their results are "
              "kept and flagged stale)",
              c, summary.stale_node_count());
    if (summary.overall().evaluated()) {
      out.Gauge("kspm_posture_score_ratio",
                "Weighted share of passing scored results (0..1; README \"Scores\"), per cluster",
                c, ratio(summary.overall()));
    }
    for (const auto& s : summary.nodes()) {
      if (!s.evaluated()) continue;
      out.Gauge("kspm_node_score_ratio", "Posture score of one node (0..1)",
                {{"cluster", cluster}, {"node", s.scope()}}, ratio(s));
    }
    for (const auto& s : summary.benchmarks()) {
      if (!s.evaluated()) continue;
      out.Gauge("kspm_benchmark_score_ratio", "Posture score under one benchmark (0..1)",
                {{"cluster", cluster}, {"benchmark", s.scope()}}, ratio(s));
    }
    for (const auto& s : summary.sections()) {
      if (!s.evaluated()) continue;
      // The scope is "BENCHMARK SECTION".
      const size_t space = s.scope().find(' ');
      const std::string benchmark = s.scope().substr(0, space);
      const std::string section = space == std::string::npos ? "" : s.scope().substr(space + 1);
      out.Gauge("kspm_section_score_ratio",
                "Posture score of one section of a benchmark, e.g. 4 or pod (0..1)",
                {{"cluster", cluster}, {"benchmark", benchmark}, {"section", section}}, ratio(s));
    }
    for (const auto& s : summary.namespaces()) {
      if (!s.evaluated()) continue;
      out.Gauge("kspm_namespace_score_ratio",
                "Posture score of one namespace's cluster results (0..1); `(cluster)` holds "
                "cluster-scoped objects",
                {{"cluster", cluster}, {"namespace", s.scope()}}, ratio(s));
    }
  }
  out.Declare("kspm_results", "Current results by cluster, status and severity", MetricType::Gauge);
  for (const auto& r : posture_.counts.by_status) {
    out.Gauge("kspm_results", "",
              {{"cluster", r.cluster},
               {"status", StatusLabel(r.status)},
               {"severity", SeverityLabel(r.severity)}},
              static_cast<double>(r.results));
  }
  out.Declare("kspm_failing_check_results",
              "Current FAIL results per check (objects or nodes failing it); one series per "
              "failing check, never per object",
              MetricType::Gauge);
  for (const auto& f : posture_.counts.failing) {
    out.Gauge("kspm_failing_check_results", "",
              {{"cluster", f.cluster},
               {"benchmark", f.benchmark},
               {"id", f.benchmark_id},
               {"check_id", f.check_id},
               {"severity", SeverityLabel(f.severity)}},
              static_cast<double>(f.results));
  }
}

void CollectorMetrics::Fill(Families& out) {
  FillPosture(out);
  if (agents_ != nullptr) {
    const auto& a = *agents_;
    out.Counter("kspm_agent_streams_total", "Agent report streams opened", {}, a.streams.load());
    out.Counter("kspm_reports_accepted_total", "Agent reports committed for the first time", {},
                a.reports_accepted.load());
    out.Counter("kspm_reports_duplicate_total",
                "Agent reports sent again after being committed (acked, nothing written)", {},
                a.duplicates.load());
    const char* refused = "Agent reports refused, by reason (the agent keeps them and retries)";
    out.Counter("kspm_reports_refused_total", refused, {{"reason", "rate_limited"}},
                a.reports_rate_limited.load());
    out.Counter("kspm_reports_refused_total", refused, {{"reason", "not_allowed"}},
                a.refused_not_allowed.load());
    out.Counter("kspm_reports_refused_total", refused, {{"reason", "malformed"}},
                a.refused_malformed.load());
    out.Counter("kspm_reports_refused_total", refused, {{"reason", "invalid"}},
                a.refused_invalid.load());
    out.Counter("kspm_stream_reads_paused_total",
                "Times a stream stopped being read while too many report bytes were in flight", {},
                a.reads_paused.load());
  }
  if (budget_ != nullptr) {
    out.Gauge("kspm_reports_in_flight_bytes", "Report bytes read and not yet committed", {},
              static_cast<double>(budget_->in_flight()));
  }
  if (ingest_ != nullptr) {
    const auto& i = ingest_->stats();
    out.Gauge("kspm_ingest_queue_reports", "Reports waiting for the store's writer", {},
              static_cast<double>(ingest_->queued()));
    out.Counter("kspm_ingest_reports_total", "Agent reports the writer committed", {},
                i.reports.load());
    out.Counter("kspm_ingest_failures_total",
                "Agent reports the store could not commit (not acked; the agent retries)", {},
                i.failed.load());
    out.Counter("kspm_ingest_results_total", "Results carried by committed agent reports", {},
                i.results.load());
    out.Counter("kspm_ingest_rows_written_total",
                "Result rows written (new or changed; unchanged results cost nothing)", {},
                i.written.load());
    out.Histogram("kspm_commit_duration_seconds",
                  "Wall time of one batched commit of agent reports", {}, i.commit_seconds);
  }
  {
    std::lock_guard lock(mu_);
    out.Declare("kspm_drift_events_total",
                "Drift events stored, by how the change was seen (ebpf, inotify, rescan, watch)",
                MetricType::Counter);
    for (const auto& [source, n] : drift_by_source_) {
      out.Counter("kspm_drift_events_total", "", {{"source", source}}, static_cast<double>(n));
    }
    out.Declare("kspm_verdict_changes_total",
                "Results whose verdict changed (or new results that fail), by new status",
                MetricType::Counter);
    for (const auto& [status, n] : changes_by_status_) {
      out.Counter("kspm_verdict_changes_total", "", {{"status", status}}, static_cast<double>(n));
    }
  }
  const store::StoreSpace space = store_.Space();
  if (const int64_t size = FileSize(space.path); size >= 0) {
    out.Gauge("kspm_store_size_bytes", "Size of the store's database file", {},
              static_cast<double>(size));
  }
  out.Gauge("kspm_store_wal_bytes", "Size of the store's write-ahead log", {},
            static_cast<double>(space.wal_bytes));
  if (space.free_bytes >= 0) {
    out.Gauge("kspm_store_free_bytes", "Space free to the collector beside its store", {},
              static_cast<double>(space.free_bytes));
  }
  out.Gauge("kspm_store_full", "1 while commits fail for lack of space", {},
            space.full_since.empty() ? 0 : 1);
  std::vector<std::function<void(Families&)>> sources;
  {
    std::lock_guard lock(mu_);
    sources = sources_;
  }
  for (const auto& fill : sources) fill(out);
}

}  // namespace kspm::collector::server

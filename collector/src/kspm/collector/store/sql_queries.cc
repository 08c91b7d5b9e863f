// The sqlite store's queries: findings, nodes, summary and scores, history and drift, each on a
// pooled read-only connection.
#include "kspm/collector/store/sql_store.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store::internal {

namespace {

// `AND column = ?` with `value` bound, when a filter asks for it (non-empty).
void AndEquals(const char* column, const std::string& value, std::string& sql,
               std::vector<std::string>& args) {
  if (value.empty()) return;
  sql += std::string(" AND ") + column + " = ?";
  args.push_back(value);
}

}  // namespace

std::string StaleExpr(const std::string& now_param) {
  // 1 or 0 on both engines (a PostgreSQL comparison is a boolean, which SUM does not take).
  return "(CASE WHEN (" + now_param + " - n.last_seen_ms) > " + std::to_string(kStaleIntervals) +
         " * 1000 * n.scan_interval_s THEN 1 ELSE 0 END)";
}

absl::StatusOr<std::vector<v1::Finding>> SqlStore::Findings(const FindingFilter& filter) {
  const ReaderPool::Lease reader = readers_.Acquire();
  const std::string now = std::to_string(common::ToUnixMillis(filter.now));
  // reported_at is the node's last report: every report (full, or changes only) vouches for
  // the node's results as of its scan, and unchanged rows are not rewritten.
  // The page is chosen on small columns only; the stored results (about a kilobyte each) are
  // read for the chosen rows, so the sort never carries them.
  std::string sql =
      "SELECT c.name AS k1, n.name AS k2, r.node_id AS nid, n.last_seen_ms, r.changed_ms, " +
      StaleExpr(now) +
      ", -r.severity AS k3, r.benchmark AS k4, r.benchmark_id AS k5, r.kind AS k6, "
      "r.object_namespace AS k7, r.name AS k8, r.container AS k9, r.check_id AS k10 FROM results r "
      "JOIN nodes n ON n.id = r.node_id JOIN clusters c "
      "ON c.id = n.cluster_id WHERE 1=1";
  std::vector<std::string> args;
  if (filter.since) {
    sql += " AND r.changed_ms >= " + std::to_string(common::ToUnixMillis(*filter.since));
  }
  AndEquals("c.name", filter.cluster, sql, args);
  AndEquals("n.name", filter.node, sql, args);
  AndEquals("r.benchmark", filter.benchmark, sql, args);
  if (!filter.id.empty()) {
    sql += " AND (r.check_id = ? OR r.benchmark_id = ? OR r.benchmark_id LIKE ? || '.%')";
    args.push_back(filter.id);
    args.push_back(filter.id);
    args.push_back(filter.id);
  }
  AndEquals("r.namespace", filter.ns, sql, args);
  if (filter.statuses.empty()) {
    sql += " AND r.status <> " + std::to_string(v1::STATUS_PASS);
  } else {
    sql += " AND r.status IN (";
    for (size_t i = 0; i < filter.statuses.size(); ++i) {
      sql += (i ? "," : "") + std::to_string(static_cast<int>(filter.statuses[i]));
    }
    sql += ")";
  }
  if (filter.min_severity != v1::SEVERITY_UNSPECIFIED) {
    sql += " AND r.severity >= " + std::to_string(static_cast<int>(filter.min_severity));
  }
  // A total order (the last column makes it unique), so that a page can start after a row.
  const std::string order =
      "c.name, n.name, -r.severity, r.benchmark, r.benchmark_id, r.kind, r.object_namespace, "
      "r.name, r.container, r.check_id";
  if (filter.after) {
    if (filter.after->size() != kFindingPositionSize)
      return absl::InvalidArgumentError("malformed page token");
    sql += " AND (" + order + ") > (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
  }
  sql += " ORDER BY " + order;
  if (filter.limit > 0) sql += " LIMIT " + std::to_string(filter.limit);
  sql =
      "SELECT p.*, (SELECT result FROM results WHERE node_id = p.nid AND check_id = p.k10 AND "
      "benchmark = p.k4 AND kind = p.k6 AND object_namespace = p.k7 AND name = p.k8 AND "
      "container = p.k9) FROM (" +
      sql + ") p ORDER BY k1, k2, k3, k4, k5, k6, k7, k8, k9, k10";
  auto stmt = reader.db().Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  for (size_t i = 0; i < args.size(); ++i) {
    (*stmt)->BindText(static_cast<int>(i + 1), args[i]);
  }
  if (filter.after) {
    for (size_t i = 0; i < filter.after->size(); ++i) {
      const int index = static_cast<int>(args.size() + i + 1);
      const std::string& value = (*filter.after)[i];
      if (i == 2) {  // -severity, an integer
        (*stmt)->Bind(index, std::strtoll(value.c_str(), nullptr, 10));
      } else {
        (*stmt)->BindText(index, value);
      }
    }
  }
  std::vector<v1::Finding> out;
  absl::StatusOr<bool> rc;
  while ((rc = (*stmt)->Next()).ok() && *rc) {
    v1::Finding f;
    f.set_cluster((*stmt)->Text(0));
    f.set_node((*stmt)->Text(1));
    if (!f.mutable_result()->ParseFromArray((*stmt)->Blob(14).data(),
                                            static_cast<int>((*stmt)->Blob(14).size()))) {
      return absl::DataLossError(path_ + ": a stored result does not parse");
    }
    *f.mutable_reported_at() = common::ToProto(common::FromUnixMillis((*stmt)->Int(3)));
    *f.mutable_changed_at() = common::ToProto(common::FromUnixMillis((*stmt)->Int(4)));
    f.set_stale((*stmt)->Int(5) != 0);
    out.push_back(std::move(f));
  }
  if (!rc.ok()) return sql::Context(rc.status(), "reading findings");
  return out;
}

absl::StatusOr<std::vector<v1::NodeInfo>> SqlStore::Nodes(const std::string& cluster,
                                                          common::Clock::time_point now) {
  const ReaderPool::Lease reader = readers_.Acquire();
  auto stmt =
      reader.db().Prepare("SELECT n.id, n.identity, n.last_seen_ms, n.last_scan_id, " +
                          StaleExpr(std::to_string(common::ToUnixMillis(now))) +
                          ", n.scan_interval_s, nc.not_after_ms, COALESCE(na.revoked, 0) "
                          "FROM nodes n JOIN clusters c ON c.id = n.cluster_id "
                          "LEFT JOIN node_certificates nc ON nc.cluster = c.name AND nc.node = "
                          "n.name LEFT JOIN node_access na ON na.cluster = c.name AND na.node = "
                          "n.name WHERE (?1 = '' OR c.name = ?1) ORDER BY c.name, n.name");
  if (!stmt.ok()) return stmt.status();
  (*stmt)->BindText(1, cluster);
  std::vector<v1::NodeInfo> out;
  std::map<int64_t, size_t> index;
  absl::StatusOr<bool> rc;
  while ((rc = (*stmt)->Next()).ok() && *rc) {
    v1::NodeInfo info;
    if (!info.mutable_identity()->ParseFromArray((*stmt)->Blob(1).data(),
                                                 static_cast<int>((*stmt)->Blob(1).size()))) {
      return absl::DataLossError(path_ + ": a stored node identity does not parse");
    }
    *info.mutable_last_seen() = common::ToProto(common::FromUnixMillis((*stmt)->Int(2)));
    info.set_last_scan_id((*stmt)->Text(3));
    info.set_stale((*stmt)->Int(4) != 0);
    info.set_scan_interval_seconds(static_cast<uint32_t>((*stmt)->Int(5)));
    if (!(*stmt)->IsNull(6)) {
      *info.mutable_certificate_not_after() =
          common::ToProto(common::FromUnixMillis((*stmt)->Int(6)));
    }
    info.set_revoked((*stmt)->Int(7) != 0);
    index[(*stmt)->Int(0)] = out.size();
    out.push_back(std::move(info));
  }
  if (!rc.ok()) return sql::Context(rc.status(), "reading nodes");
  auto counts = reader.db().Prepare(
      "SELECT node_id, status, SUM(n) FROM result_counts WHERE n > 0 GROUP BY 1, 2");
  if (!counts.ok()) return counts.status();
  while ((rc = (*counts)->Next()).ok() && *rc) {
    const auto it = index.find((*counts)->Int(0));
    if (it == index.end()) continue;
    common::AddStatusCount(*out[it->second].mutable_counts(),
                           static_cast<v1::Status>((*counts)->Int(1)),
                           static_cast<uint32_t>((*counts)->Int(2)));
  }
  return out;
}

absl::StatusOr<v1::SummaryResponse> SqlStore::Summary(const std::string& cluster,
                                                      common::Clock::time_point now) {
  const ReaderPool::Lease reader = readers_.Acquire();
  auto node_stmt = reader.db().Prepare("SELECT COUNT(*), COALESCE(SUM(" +
                                       StaleExpr(std::to_string(common::ToUnixMillis(now))) +
                                       "), 0) FROM nodes n JOIN clusters c ON c.id = n.cluster_id "
                                       "WHERE (?1 = '' OR c.name = ?1)");
  if (!node_stmt.ok()) return node_stmt.status();
  (*node_stmt)->BindText(1, cluster);
  uint32_t node_count = 0, stale_count = 0;
  auto node_row = (*node_stmt)->Next();
  if (!node_row.ok()) return sql::Context(node_row.status(), "counting nodes");
  if (*node_row) {
    node_count = static_cast<uint32_t>((*node_stmt)->Int(0));
    stale_count = static_cast<uint32_t>((*node_stmt)->Int(1));
  }
  // Each node is scored under the Kubernetes benchmark it was judged by (its agent's platform
  // choice): results it also reported under other benchmarks of that family (`--benchmark
  // all`) count for those benchmarks' own rows, not for the node or the overall score.
  // Keyed by cluster and node: node names repeat across clusters.
  std::map<std::pair<std::string, std::string>, std::string> judged_by;
  {
    auto ids = reader.db().Prepare(
        "SELECT n.name, n.identity, c.name FROM nodes n JOIN clusters c ON c.id = "
        "n.cluster_id WHERE (?1 = '' OR c.name = ?1)");
    if (!ids.ok()) return ids.status();
    (*ids)->BindText(1, cluster);
    absl::StatusOr<bool> row;
    while ((row = (*ids)->Next()).ok() && *row) {
      v1::NodeIdentity identity;
      const std::string_view blob = (*ids)->Blob(1);
      if (identity.ParseFromArray(blob.data(), static_cast<int>(blob.size())) &&
          !identity.platform_benchmark().empty()) {
        judged_by[{(*ids)->Text(2), (*ids)->Text(0)}] = identity.platform_benchmark();
      }
    }
  }
  // One pass over current results, grouped by what a score needs.
  auto stmt = reader.db().Prepare(
      "SELECT n.name, r.benchmark, r.status, r.severity, r.scored, r.n, r.section, "
      "r.namespace, c.name FROM result_counts r "
      "JOIN nodes n ON n.id = r.node_id JOIN clusters c ON c.id = n.cluster_id "
      "WHERE (?1 = '' OR c.name = ?1) AND r.n > 0");
  if (!stmt.ok()) return stmt.status();
  (*stmt)->BindText(1, cluster);
  common::ScoreAccumulator overall;
  std::map<std::string, common::ScoreAccumulator> benchmarks, sections, namespaces, clusters;
  std::map<std::string, std::map<std::string, common::ScoreAccumulator>> nodes_by_cluster;
  std::map<std::string, uint32_t> failed;
  absl::StatusOr<bool> rc;
  while ((rc = (*stmt)->Next()).ok() && *rc) {
    const std::string node = (*stmt)->Text(0);
    const std::string benchmark = (*stmt)->Text(1);
    const auto status = static_cast<v1::Status>((*stmt)->Int(2));
    const auto severity = static_cast<v1::Severity>((*stmt)->Int(3));
    const bool scored = (*stmt)->Int(4) != 0;
    const auto count = static_cast<uint32_t>((*stmt)->Int(5));
    const std::string section = (*stmt)->Text(6);
    const std::string ns = (*stmt)->Text(7);
    const std::string cluster_name = (*stmt)->Text(8);
    const auto judged = judged_by.find({cluster_name, node});
    const bool counts_for_node = judged == judged_by.end() ||
                                 !common::IsKubernetesBenchmark(benchmark) ||
                                 benchmark == judged->second;
    for (auto* acc : {&benchmarks[benchmark], &sections[benchmark + " " + section]}) {
      acc->Add(status, severity, scored, count);
    }
    if (counts_for_node) {
      overall.Add(status, severity, scored, count);
      nodes_by_cluster[cluster_name][node].Add(status, severity, scored, count);
      clusters[cluster_name].Add(status, severity, scored, count);
    }
    if (!ns.empty()) namespaces[ns].Add(status, severity, scored, count);
    if (status == v1::STATUS_FAIL && counts_for_node) {
      failed[std::string(common::SeverityName(severity))] += count;
    }
  }
  if (!rc.ok()) return sql::Context(rc.status(), "reading summary");
  v1::SummaryResponse out;
  out.set_node_count(node_count);
  out.set_stale_node_count(stale_count);
  *out.mutable_overall() = overall.ToScore("overall");
  // One cluster: nodes by name. Several: `<cluster>/<node>`, in cluster then node order.
  for (const auto& [cluster_name, by_node] : nodes_by_cluster) {
    for (const auto& [name, acc] : by_node) {
      *out.add_nodes() =
          acc.ToScore(nodes_by_cluster.size() > 1 ? cluster_name + "/" + name : name);
    }
  }
  for (const auto& [name, acc] : clusters) *out.add_clusters() = acc.ToScore(name);
  for (const auto& [name, acc] : benchmarks) *out.add_benchmarks() = acc.ToScore(name);
  for (const auto& [name, acc] : sections) *out.add_sections() = acc.ToScore(name);
  for (const auto& [name, acc] : namespaces) *out.add_namespaces() = acc.ToScore(name);
  for (const auto& [severity, count] : failed)
    (*out.mutable_failed_by_severity())[severity] = count;
  return out;
}

absl::StatusOr<PostureCounts> SqlStore::CountResults() {
  const ReaderPool::Lease reader = readers_.Acquire();
  PostureCounts out;
  auto by_status = reader.db().Prepare(

      "SELECT c.name, r.status, r.severity, SUM(r.n) FROM result_counts r "
      "JOIN nodes n ON n.id = r.node_id JOIN clusters c ON c.id = n.cluster_id WHERE r.n > 0 "
      "GROUP BY c.name, r.status, r.severity");
  if (!by_status.ok()) return by_status.status();
  absl::StatusOr<bool> rc;
  while ((rc = (*by_status)->Next()).ok() && *rc) {
    sql::Statement& row = **by_status;
    out.by_status.push_back({row.Text(0), static_cast<v1::Status>(row.Int(1)),
                             static_cast<v1::Severity>(row.Int(2)),
                             static_cast<uint64_t>(row.Int(3))});
  }
  if (!rc.ok()) return sql::Context(rc.status(), "counting results");
  auto failing = reader.db().Prepare(

      "SELECT c.name, r.benchmark, r.benchmark_id, r.check_id, r.severity, COUNT(*) "
      "FROM results r JOIN nodes n ON n.id = r.node_id JOIN clusters c ON c.id = n.cluster_id "
      "WHERE r.status = " +
      std::to_string(v1::STATUS_FAIL) +
      " GROUP BY c.name, r.benchmark, r.benchmark_id, r.check_id, r.severity");
  if (!failing.ok()) return failing.status();
  while ((rc = (*failing)->Next()).ok() && *rc) {
    sql::Statement& row = **failing;
    out.failing.push_back({row.Text(0), row.Text(1), row.Text(2), row.Text(3),
                           static_cast<v1::Severity>(row.Int(4)),
                           static_cast<uint64_t>(row.Int(5))});
  }
  if (!rc.ok()) return sql::Context(rc.status(), "counting failing checks");
  return out;
}

absl::StatusOr<std::vector<v1::Transition>> SqlStore::History(const HistoryFilter& filter) {
  const ReaderPool::Lease reader = readers_.Acquire();
  std::string sql =
      "SELECT c.name, n.name, t.check_id, t.benchmark, COALESCE(r.benchmark_id, ''), "
      "t.old_status, t.new_status, t.at_ms, t.scan_id, t.kind, t.object_namespace, t.name, "
      "t.container, COALESCE(r.severity, 0), COALESCE(r.scored, 0), COALESCE(r.status, 0) "
      "FROM transitions t "
      "JOIN nodes n ON n.id = t.node_id JOIN clusters c ON c.id = n.cluster_id "
      "LEFT JOIN results r ON r.node_id = t.node_id AND r.check_id = t.check_id AND "
      "r.benchmark = t.benchmark AND r.kind = t.kind AND r.object_namespace = t.object_namespace "
      "AND r.name = t.name AND r.container = t.container "
      "WHERE (?1 = '' OR c.name = ?1) AND (?2 = '' OR n.name = ?2) "
      "AND (?3 = '' OR t.check_id = ?3 OR r.benchmark_id = ?3) AND t.at_ms >= ?4 "
      "ORDER BY t.at_ms DESC, t.id DESC LIMIT ?5";
  auto stmt = reader.db().Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  (*stmt)->BindText(1, filter.cluster);
  (*stmt)->BindText(2, filter.node);
  (*stmt)->BindText(3, filter.id);
  (*stmt)->Bind(4, filter.since ? common::ToUnixMillis(*filter.since) : 0);
  (*stmt)->Bind(5, filter.limit == 0 ? 1000 : static_cast<int64_t>(filter.limit));
  std::vector<v1::Transition> out;
  absl::StatusOr<bool> rc;
  while ((rc = (*stmt)->Next()).ok() && *rc) {
    v1::Transition t;
    t.set_cluster((*stmt)->Text(0));
    t.set_node((*stmt)->Text(1));
    t.set_check_id((*stmt)->Text(2));
    t.set_benchmark((*stmt)->Text(3));
    t.set_benchmark_id((*stmt)->Text(4));
    t.set_old_status(static_cast<v1::Status>((*stmt)->Int(5)));
    t.set_new_status(static_cast<v1::Status>((*stmt)->Int(6)));
    *t.mutable_at() = common::ToProto(common::FromUnixMillis((*stmt)->Int(7)));
    t.set_scan_id((*stmt)->Text(8));
    t.set_object(
        ObjectKey{(*stmt)->Text(9), (*stmt)->Text(10), (*stmt)->Text(11), (*stmt)->Text(12)}
            .Text());
    t.set_severity(static_cast<v1::Severity>((*stmt)->Int(13)));
    t.set_scored((*stmt)->Int(14) != 0);
    t.set_current_status(static_cast<v1::Status>((*stmt)->Int(15)));
    out.push_back(std::move(t));
  }
  if (!rc.ok()) return sql::Context(rc.status(), "reading history");
  return out;
}

absl::StatusOr<std::vector<v1::DriftRecord>> SqlStore::Drift(const DriftFilter& filter) {
  const ReaderPool::Lease reader = readers_.Acquire();
  auto stmt = reader.db().Prepare(

      "SELECT c.name, d.event, d.received_ms FROM drift_events d JOIN nodes n ON n.id = "
      "d.node_id JOIN clusters c ON c.id = n.cluster_id WHERE (?1 = '' OR c.name = ?1) AND "
      "(?2 = '' OR n.name = ?2) AND d.observed_ms >= ?3 ORDER BY d.observed_ms DESC, d.id DESC" +
      // Without a check filter the limit is the SQL's; with one, rows are read until it is met.
      (filter.id.empty() ? " LIMIT " + std::to_string(filter.limit == 0 ? 1000 : filter.limit)
                         : std::string()));
  if (!stmt.ok()) return stmt.status();
  (*stmt)->BindText(1, filter.cluster);
  (*stmt)->BindText(2, filter.node);
  (*stmt)->Bind(3, filter.since ? common::ToUnixMillis(*filter.since) : 0);
  std::vector<v1::DriftRecord> out;
  const size_t limit = filter.limit == 0 ? 1000 : filter.limit;
  absl::StatusOr<bool> rc;
  while (out.size() < limit && (rc = (*stmt)->Next()).ok() && *rc) {
    v1::DriftRecord rec;
    rec.set_cluster((*stmt)->Text(0));
    if (!rec.mutable_event()->ParseFromArray((*stmt)->Blob(1).data(),
                                             static_cast<int>((*stmt)->Blob(1).size()))) {
      return absl::DataLossError(path_ + ": a stored drift event does not parse");
    }
    if (!filter.id.empty()) {
      bool match = false;
      for (const auto& ch : rec.event().changes()) {
        match |= ch.check_id() == filter.id || ch.result().benchmark_id() == filter.id;
      }
      if (!match) continue;
    }
    *rec.mutable_received_at() = common::ToProto(common::FromUnixMillis((*stmt)->Int(2)));
    out.push_back(std::move(rec));
  }
  if (!rc.ok()) return sql::Context(rc.status(), "reading drift events");
  return out;
}

}  // namespace kspm::collector::store::internal

namespace kspm::collector::store {

std::vector<std::string> FindingPosition(const v1::Finding& finding) {
  const auto& r = finding.result();
  const auto object = internal::ObjectKey::Of(r.resource());
  return {finding.cluster(), finding.node(),   std::to_string(-static_cast<int>(r.severity())),
          r.benchmark(),     r.benchmark_id(), object.kind,
          object.ns,         object.name,      object.container,
          r.check_id()};
}

}  // namespace kspm::collector::store

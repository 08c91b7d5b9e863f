// The sqlite store's writer: a batch of reports in one transaction, each report's results,
// transitions, counts and drift events, and pruning of old history.
#include <algorithm>
#include <chrono>
#include <functional>

#include "kspm/collector/store/sql_store.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store::internal {

absl::Status WriteSession::Prepare() {
  struct Spec {
    Stmt* out;
    const char* sql;
  };
  const Spec specs[] = {
      {&find_scan, "SELECT 1 FROM scans WHERE scan_id = ?"},
      {&touch_node,
       "UPDATE nodes SET identity = ?1, last_seen_ms = ?2, scan_interval_s = ?3 WHERE name = ?4 "
       "AND cluster_id = (SELECT id FROM clusters WHERE name = ?5)"},
      {&find_cluster, "SELECT id FROM clusters WHERE name = ?"},
      {&upsert_cluster, "INSERT INTO clusters(name) VALUES (?) ON CONFLICT(name) DO NOTHING"},
      {&upsert_node,
       "INSERT INTO nodes(cluster_id, name, identity, first_seen_ms, last_seen_ms, last_scan_id, "
       "scan_interval_s) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6) ON CONFLICT(cluster_id, name) DO "
       "UPDATE SET identity = excluded.identity, last_seen_ms = excluded.last_seen_ms, "
       "last_scan_id = excluded.last_scan_id, scan_interval_s = excluded.scan_interval_s "
       "RETURNING id"},
      {&insert_scan,
       "INSERT INTO scans(scan_id, node_id, started_ms, finished_ms, received_ms, \"full\", "
       "results) "
       "VALUES (?, ?, ?, ?, ?, ?, ?)"},
      {&current_status,
       "SELECT check_id, benchmark, kind, object_namespace, name, container, status, severity, "
       "scored, section, namespace, digest FROM results WHERE node_id = ?"},
      {&current_of_check,
       "SELECT check_id, benchmark, kind, object_namespace, name, container, status, severity, "
       "scored, section, namespace, digest FROM results WHERE node_id = ? AND check_id = ?"},
      {&current_of_object,
       "SELECT check_id, benchmark, kind, object_namespace, name, container, status, severity, "
       "scored, section, namespace, digest FROM results WHERE node_id = ? AND check_id = ? AND "
       "benchmark = ? AND kind = ? AND object_namespace = ? AND name = ?"},
      {&current_in_namespace,
       "SELECT check_id, benchmark, kind, object_namespace, name, container, status, severity, "
       "scored, section, namespace, digest FROM results WHERE node_id = ?1 AND check_id = ?2 AND "
       "benchmark = ?3 AND (object_namespace = ?4 OR (kind = 'Namespace' AND object_namespace = "
       "'' AND name = ?4))"},
      {&current_checks, "SELECT DISTINCT check_id FROM results WHERE node_id = ?"},
      {&node_has_results, "SELECT 1 FROM result_counts WHERE node_id = ? AND n > 0 LIMIT 1"},
      {&set_scan_results, "UPDATE scans SET results = ?, finished_ms = ? WHERE scan_id = ?"},
      {&insert_drift,
       "INSERT INTO drift_events(event_id, node_id, observed_ms, received_ms, scan_id, event) "
       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING"},
      {&delete_result,
       "DELETE FROM results WHERE node_id = ? AND check_id = ? AND benchmark = ? AND "
       "kind = ? AND object_namespace = ? AND name = ? AND container = ?"},
  };
  for (const auto& spec : specs) {
    auto stmt = conn->Prepare(spec.sql);
    if (!stmt.ok()) return stmt.status();
    *spec.out = *std::move(stmt);
  }
  return absl::OkStatus();
}

absl::Status SqlStore::Prepare() {
  for (auto& w : sessions_) {
    if (auto s = w->Prepare(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

SqlStore::SqlStore(std::string name, std::vector<Connection> writers,
                   std::vector<Connection> readers)
    : path_(std::move(name)), readers_(std::move(readers)) {
  for (auto& c : writers) {
    sessions_.push_back(std::make_unique<WriteSession>(std::move(c)));
    idle_.push_back(sessions_.back().get());
  }
}

WriteSession::WriteSession(Connection c)
    : conn(std::move(c)),
      // An update keeps the time of the last change unless the verdict changed.
      result_rows(
          "INSERT INTO results(node_id, check_id, benchmark, benchmark_id, status, severity, "
          "scored, result, scan_id, updated_ms, changed_ms, kind, object_namespace, name, "
          "container, namespace, section, digest)",
          18,
          "ON CONFLICT(node_id, check_id, benchmark, kind, object_namespace, name, container) "
          "DO UPDATE SET "
          "benchmark_id = excluded.benchmark_id, status = excluded.status, "
          "namespace = excluded.namespace, section = excluded.section, "
          "severity = excluded.severity, scored = excluded.scored, result = excluded.result, "
          "scan_id = excluded.scan_id, updated_ms = excluded.updated_ms, "
          "digest = excluded.digest, "
          "changed_ms = CASE WHEN results.status = excluded.status THEN results.changed_ms "
          "ELSE excluded.changed_ms END"),
      transition_rows(
          "INSERT INTO transitions(node_id, check_id, benchmark, old_status, new_status, at_ms, "
          "scan_id, kind, object_namespace, name, container)",
          11, ""),
      // Each bucket once per call (Counts is a map), so no row meets itself in a statement.
      count_rows(
          "INSERT INTO result_counts(node_id, benchmark, section, namespace, status, severity, "
          "scored, n)",
          8,
          "ON CONFLICT(node_id, benchmark, section, namespace, status, severity, scored) DO "
          "UPDATE SET n = result_counts.n + excluded.n") {}

size_t RowBatch::Put(std::vector<SqlValue> row, std::optional<size_t> replace) {
  if (replace && *replace < rows_.size()) {
    rows_[*replace] = std::move(row);
    return *replace;
  }
  rows_.push_back(std::move(row));
  return rows_.size() - 1;
}

absl::Status RowBatch::Flush(sql::Connection& c, const char* what) {
  absl::Status status;
  // One statement per kRows rows and one for the rest, each shape prepared once per connection.
  // Reports of a node come in few sizes; past 16 shapes the rest goes in statements of a power
  // of two rows (150: 128 + 16 + 4 + 2), so the server holds at most 25 shapes per batch.
  for (size_t first = 0, n = 0; first < rows_.size() && status.ok(); first += n) {
    const size_t left = rows_.size() - first;
    n = std::min(kRows, left);
    if (!statements_.contains(n) && statements_.size() >= 16) {
      for (n = kRows; n > left; n /= 2) {
      }
    }
    Stmt& stmt = statements_[n];
    if (!stmt) {
      std::string sql = insert_ + " VALUES ";
      for (size_t r = 0; r < n; ++r) {
        sql += r ? ", (" : "(";
        for (size_t i = 0; i < columns_; ++i) sql += i ? ", ?" : "?";
        sql += ")";
      }
      auto prepared = c.Prepare(sql + " " + tail_);
      if (!prepared.ok()) {
        status = prepared.status();
        break;
      }
      stmt = *std::move(prepared);
    }
    int index = 1;
    for (size_t r = first; r < first + n; ++r) {
      for (const SqlValue& v : rows_[r]) {
        if (v.kind == SqlValue::kInt) {
          stmt->Bind(index++, v.i);
        } else if (v.kind == SqlValue::kText) {
          stmt->BindText(index++, v.s);
        } else {
          stmt->BindBlob(index++, v.s);
        }
      }
    }
    status = sql::Run(*stmt, what);
  }
  rows_.clear();
  return status;
}

void SqlStore::BindObject(const Stmt& s, int first, const ObjectKey& object) {
  BindText(s, first, object.kind);
  BindText(s, first + 1, object.ns);
  BindText(s, first + 2, object.name);
  BindText(s, first + 3, object.container);
}

absl::StatusOr<CommitStats> SqlStore::CommitReport(const v1::NodeReport& report,
                                                   common::Clock::time_point now) {
  auto out = CommitBatch({&report}, now);
  return out[0];
}

std::vector<absl::StatusOr<CommitStats>> SqlStore::CommitBatch(
    const std::vector<const v1::NodeReport*>& reports, common::Clock::time_point now) {
  // An idle session, the first one only when nothing else holds it: it also takes fleet writes,
  // pruning and the parts of cluster scans (a sliced check keeps it for a while), and a batch
  // waiting behind those would keep its nodes' next reports waiting too.
  WriteSession* session = nullptr;
  std::unique_lock<std::mutex> session_lock;
  {
    std::unique_lock lock(idle_mu_);
    for (;;) {
      idle_cv_.wait(lock, [this] { return !idle_.empty(); });
      WriteSession* first = sessions_.front().get();
      auto it =
          std::find_if(idle_.begin(), idle_.end(), [first](WriteSession* w) { return w != first; });
      if (it != idle_.end()) {
        session = *it;
        idle_.erase(it);
        break;
      }
      if (sessions_.size() == 1) {  // sqlite: the one writer, waited for
        session = first;
        idle_.clear();
        break;
      }
      session_lock = std::unique_lock(first->mu, std::try_to_lock);
      if (session_lock.owns_lock()) {
        session = first;
        idle_.clear();
        break;
      }
      idle_cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
  }
  if (!session_lock.owns_lock()) session_lock = std::unique_lock(session->mu);
  auto out = CommitOn(*session, reports, now);
  session_lock.unlock();
  {
    std::lock_guard lock(idle_mu_);
    idle_.push_back(session);
  }
  idle_cv_.notify_one();
  return out;
}

std::vector<absl::StatusOr<CommitStats>> SqlStore::CommitOn(
    WriteSession& w, const std::vector<const v1::NodeReport*>& reports,
    common::Clock::time_point now) {
  std::vector<absl::StatusOr<CommitStats>> out(reports.size(), absl::InternalError("not run"));
  // A cluster new to this session is looked up, and stored when new, in statements of their own
  // before the transaction: a row inserted in it would be locked until its commit, and a batch
  // of another collector inserting the same cluster while it holds a node lock this one waits
  // for would wait for this one in turn. Found outside a transaction, the id is committed. On
  // an error the transaction does it (StartScan).
  for (const v1::NodeReport* r : reports) {
    const std::string cluster = ClusterName(r->node().cluster());
    if (w.clusters.contains(cluster)) continue;
    if (auto id = FindOrAddCluster(w, cluster); id.ok()) w.clusters.emplace(cluster, *id);
  }
  if (auto s = w.Begin(); !s.ok()) {
    for (auto& o : out) o = s;
    return out;
  }
  // In the order of their nodes' lock keys (a node's reports in the order given): a batch on
  // another session or collector that holds some of the same nodes takes them in the same order.
  std::vector<size_t> order(reports.size());
  std::vector<int64_t> keys(reports.size());
  for (size_t i = 0; i < reports.size(); ++i) {
    order[i] = i;
    const auto& node = reports[i]->node();
    keys[i] = NodeKey(ClusterName(node.cluster()), node.node_name());
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  // A savepoint per report, so that one that fails is undone alone. Ending one and starting the
  // next go in one call (one round trip to PostgreSQL instead of two).
  (void)w.Exec("SAVEPOINT report");
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    const bool last = k + 1 == order.size();
    const size_t changes_before = w.news.changes.size(), drift_before = w.news.drift.size(),
                 clusters_before = w.clusters_seen.size();
    auto stats = CommitOne(w, *reports[i], now);
    if (stats.ok()) {
      (void)w.Exec(last ? "RELEASE report" : "RELEASE report; SAVEPOINT report");
    } else {
      (void)w.Exec(last ? "ROLLBACK TO report; RELEASE report"
                        : "ROLLBACK TO report; RELEASE report; SAVEPOINT report");
      w.news.changes.resize(changes_before);
      w.news.drift.resize(drift_before);
      w.clusters_seen.resize(clusters_before);  // a cluster row it inserted is undone
      w.clusters.clear();  // looked up again: a failover may have lost a row it names
    }
    out[i] = std::move(stats);
  }
  const absl::Status committed = w.Exec("COMMIT");
  if (!committed.ok()) {
    (void)w.Exec("ROLLBACK");
    for (auto& o : out) {
      if (o.ok()) o = committed;
    }
  }
  Publish(w, committed.ok());
  bool full = false;
  for (const auto& o : out)
    full |= !o.ok() && o.status().code() == absl::StatusCode::kResourceExhausted &&
            o.status().message().find("(disk full)") != std::string::npos;
  AfterCommit(full, now);
  return out;
}

absl::StatusOr<std::optional<SqlStore::Target>> SqlStore::StartScan(WriteSession& w,
                                                                    const v1::NodeReport& report,
                                                                    common::Clock::time_point now,
                                                                    CommitStats& stats,
                                                                    bool in_parts) {
  if (report.scan_id().empty()) return absl::InvalidArgumentError("report has no scan id");
  const std::string& node_name = report.node().node_name();
  if (node_name.empty()) return absl::InvalidArgumentError("report has no node name");
  const std::string cluster = ClusterName(report.node().cluster());
  // Before the scan id is looked up: a report sent again to another collector waits here for
  // the first copy's transaction, and then finds its scan id stored.
  if (auto s = LockNode(w, cluster, node_name); !s.ok()) return s;

  BindText(w.find_scan, 1, report.scan_id());
  auto found = w.find_scan->Next();
  w.find_scan->Reset();
  if (!found.ok()) return sql::Context(found.status(), "looking up the scan");
  if (*found) {
    stats.duplicate = true;
    return std::nullopt;
  }
  const int interval = report.scan_interval_seconds() > 0
                           ? static_cast<int>(report.scan_interval_seconds())
                           : kDefaultIntervalSeconds;
  // A heartbeat (a scan that found nothing the collector does not hold) only says the node is
  // alive: no scan row, so the scans table grows with what changes, not with time. Sent again,
  // it does the same. A node not known yet takes the full path.
  if (!in_parts && !report.full() && report.results_size() == 0 && report.drift_size() == 0) {
    const std::string identity = report.node().SerializeAsString();
    w.touch_node->BindBlob(1, identity);
    w.touch_node->Bind(2, common::ToUnixMillis(now));
    w.touch_node->Bind(3, interval);
    BindText(w.touch_node, 4, node_name);
    BindText(w.touch_node, 5, cluster);
    auto touched = w.touch_node->Next();
    const int64_t changes = touched.ok() ? w.touch_node->Changes() : 0;
    w.touch_node->Reset();
    if (!touched.ok()) return sql::Context(touched.status(), "storing a heartbeat");
    if (changes > 0) return std::nullopt;
  }
  absl::StatusOr<int64_t> cluster_id = absl::NotFoundError("cluster " + cluster + " not stored");
  if (const auto known = w.clusters.find(cluster); known != w.clusters.end()) {
    cluster_id = known->second;
  } else {
    cluster_id = FindOrAddCluster(w, cluster);
    if (!cluster_id.ok()) return cluster_id.status();
    w.clusters_seen.emplace_back(cluster, *cluster_id);  // known once this transaction commits
  }

  const int64_t now_ms = common::ToUnixMillis(now);
  const std::string identity = report.node().SerializeAsString();
  w.upsert_node->Bind(1, *cluster_id);
  BindText(w.upsert_node, 2, node_name);
  w.upsert_node->BindBlob(3, identity);
  w.upsert_node->Bind(4, now_ms);
  BindText(w.upsert_node, 5, report.scan_id());
  w.upsert_node->Bind(6, interval);
  auto node_id = sql::RunId(*w.upsert_node, "storing node");
  if (!node_id.ok()) return node_id.status();

  BindText(w.insert_scan, 1, report.scan_id());
  w.insert_scan->Bind(2, *node_id);
  w.insert_scan->Bind(3, common::ToUnixMillis(common::FromProto(report.started_at())));
  w.insert_scan->Bind(4, common::ToUnixMillis(common::FromProto(report.finished_at())));
  w.insert_scan->Bind(5, now_ms);
  w.insert_scan->Bind(6, report.full() ? 1 : 0);
  w.insert_scan->Bind(7, report.results_size());
  if (auto s = Step(w.insert_scan, "storing scan"); !s.ok()) return s;
  bool baseline = false;
  // Reports committed whole learn it from the node's current rows (CommitOne), without a query.
  if (listening_ && in_parts) {
    w.node_has_results->Bind(1, *node_id);
    auto has = w.node_has_results->Next();
    w.node_has_results->Reset();
    if (!has.ok()) return sql::Context(has.status(), "reading the node");
    baseline = !*has;
  }
  return Target{.node_id = *node_id,
                .scan_id = report.scan_id(),
                .now_ms = now_ms,
                .cluster = cluster,
                .node = node_name,
                .baseline = baseline};
}

// Looked up first, inserted only when new: an upsert would lock the cluster's row until the
// commit, and every report of the cluster would wait for the one before it.
absl::StatusOr<int64_t> SqlStore::FindOrAddCluster(WriteSession& w, const std::string& cluster) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    BindText(w.find_cluster, 1, cluster);
    auto found = w.find_cluster->Next();
    const int64_t id = found.ok() && *found ? w.find_cluster->Int(0) : 0;
    w.find_cluster->Reset();
    if (!found.ok()) return sql::Context(found.status(), "reading cluster");
    if (id != 0) return id;
    BindText(w.upsert_cluster, 1, cluster);  // ON CONFLICT DO NOTHING: another may insert it
    if (auto st = Step(w.upsert_cluster, "storing cluster"); !st.ok()) return st;
  }
  return absl::NotFoundError("cluster " + cluster + " not stored");
}

void SqlStore::Publish(WriteSession& w, bool committed) {
  if (committed) {
    for (auto& [name, id] : w.clusters_seen) w.clusters.emplace(std::move(name), id);
  }
  w.clusters_seen.clear();
  CommitNews news = std::move(w.news);
  w.news = CommitNews();
  if (!committed || (news.changes.empty() && news.drift.empty())) return;
  std::lock_guard lock(listener_mu_);
  if (!listener_) return;
  news.at = common::Clock::now();
  listener_(std::move(news));
}

// Reads the rows of a bound current_* statement into `out`, keyed as WriteResults looks them up.
absl::Status SqlStore::ReadCurrent(const Stmt& stmt, CurrentRows& out) {
  absl::StatusOr<bool> more;
  while ((more = stmt->Next()).ok() && *more) {
    sql::Statement& row = *stmt;
    CurrentRow c{row.Text(0),
                 row.Text(1),
                 {row.Text(2), row.Text(3), row.Text(4), row.Text(5)},
                 static_cast<int>(row.Int(6)),
                 static_cast<int>(row.Int(7)),
                 static_cast<int>(row.Int(8)),
                 row.Text(9),
                 row.Text(10),
                 row.Int(11)};
    std::string key = c.check_id + '\x1f' + c.benchmark + '\x1f' + c.object.Joined();
    out.emplace(std::move(key), std::move(c));
  }
  stmt->Reset();
  if (!more.ok()) return sql::Context(more.status(), "reading current results");
  return absl::OkStatus();
}

absl::Status SqlStore::LoadCurrent(WriteSession& w, int64_t node_id, const std::string* check_id,
                                   CurrentRows& out) {
  const Stmt& stmt = check_id ? w.current_of_check : w.current_status;
  stmt->Bind(1, node_id);
  if (check_id) BindText(stmt, 2, *check_id);
  return ReadCurrent(stmt, out);
}

absl::Status SqlStore::LoadCurrentOf(WriteSession& w, int64_t node_id, const std::string& check_id,
                                     const std::string& benchmark,
                                     const std::array<std::string, 3>& object, CurrentRows& out) {
  w.current_of_object->Bind(1, node_id);
  BindText(w.current_of_object, 2, check_id);
  BindText(w.current_of_object, 3, benchmark);
  for (int i = 0; i < 3; ++i) BindText(w.current_of_object, 4 + i, object[i]);
  return ReadCurrent(w.current_of_object, out);
}

absl::Status SqlStore::LoadCurrentIn(WriteSession& w, int64_t node_id, const std::string& check_id,
                                     const std::string& benchmark, const std::string& ns,
                                     CurrentRows& out) {
  w.current_in_namespace->Bind(1, node_id);
  BindText(w.current_in_namespace, 2, check_id);
  BindText(w.current_in_namespace, 3, benchmark);
  BindText(w.current_in_namespace, 4, ns);
  return ReadCurrent(w.current_in_namespace, out);
}

absl::Status SqlStore::WriteResults(WriteSession& w, const Target& target,
                                    const std::vector<const v1::CheckResult*>& results,
                                    CurrentRows& current, Counts& counts, CommitStats& stats,
                                    std::vector<Changed>* changed, bool new_findings) {
  std::unordered_map<std::string, CountBucket> written;  // rows these results carried
  std::unordered_map<std::string, size_t> row_of;        // their rows in w.result_rows
  std::string blob, ns, section;
  ObjectKey object;
  for (const v1::CheckResult* result : results) {
    const v1::CheckResult& r = *result;
    ++stats.results;
    object = ObjectKey::Of(r.resource());
    ns = common::ResourceScope(r);
    section = SectionOf(r.benchmark_id());
    blob.clear();  // moved into the row batch on the last pass
    r.SerializeToString(&blob);
    const int64_t digest = Digest(blob);
    std::string key = r.check_id() + '\x1f' + r.benchmark() + '\x1f' + object.Joined();
    const CountBucket bucket{r.benchmark(), section,      ns,
                             r.status(),    r.severity(), r.scored() ? 1 : 0};
    int old_status = 0;
    if (const auto again = written.find(key); again != written.end()) {
      // Listed twice in one report: the later copy replaces the earlier one, row and count.
      counts[again->second]--;
      old_status = std::get<3>(again->second);
    } else if (const auto it = current.find(key); it != current.end()) {
      if (it->second.digest == digest) {
        // Repeated unchanged (most of a full report): nothing to write or count.
        current.erase(it);
        written[std::move(key)] = bucket;
        continue;
      }
      counts[{r.benchmark(), it->second.section, it->second.ns, it->second.status,
              it->second.severity, it->second.scored}]--;
      old_status = it->second.status;
      current.erase(it);
    }
    counts[bucket]++;
    written[key] = bucket;

    // The later copy of a result listed twice replaces the earlier one's row.
    const auto earlier = row_of.find(key);
    row_of[std::move(key)] = w.result_rows.Put(
        {SqlValue::Int(target.node_id), SqlValue::Text(r.check_id()), SqlValue::Text(r.benchmark()),
         SqlValue::Text(r.benchmark_id()), SqlValue::Int(r.status()), SqlValue::Int(r.severity()),
         SqlValue::Int(r.scored() ? 1 : 0), SqlValue::Blob(std::move(blob)),
         SqlValue::Text(target.scan_id), SqlValue::Int(target.now_ms), SqlValue::Int(target.now_ms),
         SqlValue::Text(object.kind), SqlValue::Text(object.ns), SqlValue::Text(object.name),
         SqlValue::Text(object.container), SqlValue::Text(ns), SqlValue::Text(section),
         SqlValue::Int(digest)},
        earlier == row_of.end() ? std::nullopt : std::optional<size_t>(earlier->second));
    ++stats.written;

    // A result seen for the first time is not a change: history starts at the first change
    // (the first verdict is the oldest change's old status, or the current one).
    if (old_status != 0 && old_status != r.status()) {
      w.transition_rows.Put({SqlValue::Int(target.node_id), SqlValue::Text(r.check_id()),
                             SqlValue::Text(r.benchmark()), SqlValue::Int(old_status),
                             SqlValue::Int(r.status()), SqlValue::Int(target.now_ms),
                             SqlValue::Text(target.scan_id), SqlValue::Text(object.kind),
                             SqlValue::Text(object.ns), SqlValue::Text(object.name),
                             SqlValue::Text(object.container)});
      ++stats.transitions;
      if (changed) changed->push_back({&r, old_status});
      if (listening_) {
        w.news.changes.push_back(
            {target.cluster, target.node, target.scan_id, static_cast<v1::Status>(old_status), r});
      }
    } else if (old_status == 0 && r.status() != v1::STATUS_PASS &&
               r.status() != v1::STATUS_NOT_APPLICABLE) {
      // A new object that fails (a privileged pod just created) is a change of posture, though
      // not a transition: history starts at an object's first change.
      if (new_findings && changed) changed->push_back({&r, 0});
      if (listening_ && !target.baseline) {
        w.news.changes.push_back(
            {target.cluster, target.node, target.scan_id, v1::STATUS_UNSPECIFIED, r});
      }
    }
  }
  // Both flushed, whatever the first does: a batch left over would go into the next report.
  auto s = w.result_rows.Flush(*w.conn, "storing results");
  auto t = w.transition_rows.Flush(*w.conn, "storing transitions");
  return s.ok() ? t : s;
}

absl::Status SqlStore::InsertDrift(WriteSession& w, const Target& target,
                                   const v1::DriftEvent& event) {
  if (event.event_id().empty()) return absl::InvalidArgumentError("drift event without an id");
  const std::string blob = event.SerializeAsString();
  BindText(w.insert_drift, 1, event.event_id());
  w.insert_drift->Bind(2, target.node_id);
  w.insert_drift->Bind(3, common::ToUnixMillis(common::FromProto(event.observed_at())));
  w.insert_drift->Bind(4, target.now_ms);
  BindText(w.insert_drift, 5, target.scan_id);
  w.insert_drift->BindBlob(6, blob);
  auto inserted = w.insert_drift->Next();
  const int64_t changes = inserted.ok() ? w.insert_drift->Changes() : 0;
  w.insert_drift->Reset();
  if (!inserted.ok()) return sql::Context(inserted.status(), "storing drift event");
  // ON CONFLICT DO NOTHING: an event delivered again (same id) is no news.
  if (listening_ && changes > 0) {
    auto& record = w.news.drift.emplace_back();
    record.set_cluster(target.cluster);
    *record.mutable_event() = event;
    *record.mutable_received_at() = common::ToProto(common::FromUnixMillis(target.now_ms));
  }
  return absl::OkStatus();
}

absl::Status SqlStore::DeleteRows(WriteSession& w, int64_t node_id, const CurrentRows& current,
                                  Counts& counts) {
  for (const auto& [key, c] : current) {
    w.delete_result->Bind(1, node_id);
    BindText(w.delete_result, 2, c.check_id);
    BindText(w.delete_result, 3, c.benchmark);
    BindObject(w.delete_result, 4, c.object);
    auto done = w.delete_result->Next();
    const int64_t removed = done.ok() ? w.delete_result->Changes() : 0;
    w.delete_result->Reset();
    if (!done.ok()) return sql::Context(done.status(), "removing stale results");
    // Counted only when the row was there to delete.
    if (removed > 0) counts[{c.benchmark, c.section, c.ns, c.status, c.severity, c.scored}]--;
  }
  return absl::OkStatus();
}

absl::Status SqlStore::ApplyCounts(WriteSession& w, int64_t node_id, const Counts& counts) {
  for (const auto& [bucket, delta] : counts) {
    if (delta == 0) continue;
    const auto& [benchmark, bucket_section, bucket_ns, status, severity, scored] = bucket;
    w.count_rows.Put({SqlValue::Int(node_id), SqlValue::Text(benchmark),
                      SqlValue::Text(bucket_section), SqlValue::Text(bucket_ns),
                      SqlValue::Int(status), SqlValue::Int(severity), SqlValue::Int(scored),
                      SqlValue::Int(delta)});
  }
  return w.count_rows.Flush(*w.conn, "counting results");
}

absl::StatusOr<std::set<std::string>> SqlStore::CurrentChecks(WriteSession& w, int64_t node_id) {
  std::set<std::string> out;
  w.current_checks->Bind(1, node_id);
  absl::StatusOr<bool> row;
  while ((row = w.current_checks->Next()).ok() && *row) out.insert(w.current_checks->Text(0));
  w.current_checks->Reset();
  if (!row.ok()) return sql::Context(row.status(), "reading current checks");
  return out;
}

absl::StatusOr<CommitStats> SqlStore::CommitOne(WriteSession& w, const v1::NodeReport& report,
                                                common::Clock::time_point now) {
  CommitStats stats;
  auto target = StartScan(w, report, now, stats);
  if (!target.ok()) return target.status();
  if (!target->has_value()) return stats;
  Target t = **target;

  // The node's current verdicts, in one read: what each result replaces.
  CurrentRows current;
  if (auto s = LoadCurrent(w, t.node_id, nullptr, current); !s.ok()) return s;
  t.baseline = current.empty();  // no results before this scan: its news is its baseline
  Counts counts;                 // changes to result_counts, applied once per bucket
  std::vector<const v1::CheckResult*> results;
  results.reserve(report.results_size());
  for (const auto& r : report.results()) results.push_back(&r);
  if (auto s = WriteResults(w, t, results, current, counts, stats); !s.ok()) return s;
  // A full report is the whole truth: the current results it did not carry are gone.
  if (report.full()) {
    if (auto s = DeleteRows(w, t.node_id, current, counts); !s.ok()) return s;
  }
  for (const auto& d : report.drift()) {
    if (auto s = InsertDrift(w, t, d); !s.ok()) return s;
  }
  if (auto s = ApplyCounts(w, t.node_id, counts); !s.ok()) return s;
  return stats;
}

// A full report committed check by check: each part in its own transaction, under the store's
// write lock only while it commits, so agents' reports go on between the parts.
class SqlReportWriter final : public ReportWriter {
 public:
  SqlReportWriter(SqlStore& store, SqlStore::Target target, std::string node_name, bool partial)
      : store_(store),
        w_(store.primary()),
        target_(std::move(target)),
        node_name_(std::move(node_name)),
        partial_(partial) {}

  void AnnotateDrift(std::function<void(v1::DriftEvent&)> annotate) override {
    annotate_ = std::move(annotate);
  }

  absl::Status Add(std::vector<v1::CheckResult>&& results, bool more) override {
    return Write(std::move(results), nullptr, more);
  }

  absl::Status AddScoped(std::vector<v1::CheckResult>&& results,
                         const ResultScope& scope) override {
    if (!partial_) {
      return absl::InvalidArgumentError("a scoped part in the full report of scan " +
                                        target_.scan_id);
    }
    std::set<std::array<std::string, 3>> objects(scope.objects.begin(), scope.objects.end());
    std::set<std::string> namespaces(scope.namespaces.begin(), scope.namespaces.end());
    for (const auto& r : results) {
      const auto& res = r.resource();
      const bool cluster_wide = res.kind().empty() || res.kind() == "Cluster";
      const bool in_scope =
          cluster_wide || objects.contains({res.kind(), res.namespace_(), res.name()}) ||
          namespaces.contains(res.kind() == "Namespace" ? res.name() : res.namespace_());
      if (!scope.checks.contains(r.check_id()) || !in_scope) {
        return absl::InvalidArgumentError(
            "result of " + r.check_id() + " about " + common::ResourceKey(res) +
            " is outside the part's scope (scan " + target_.scan_id + ")");
      }
    }
    return Write(std::move(results), &scope, false);
  }

 private:
  // One part in one transaction: whole checks, or with `scope` some objects of some checks, or
  // (`more`, or a check left open) a slice of one check.
  absl::Status Write(std::vector<v1::CheckResult>&& results, const ResultScope* scope, bool more) {
    if (broken_) {
      return absl::FailedPreconditionError("an earlier part of scan " + target_.scan_id +
                                           " failed; this report takes no more parts");
    }
    std::map<std::string, std::vector<const v1::CheckResult*>> by_check;
    if (scope) {
      for (const auto& [check, _] : scope->checks) by_check[check];
    }
    if (open_check_) by_check[*open_check_];
    for (const auto& r : results) by_check[r.check_id()].push_back(&r);
    if ((more || open_check_) && (by_check.size() != 1 || scope)) {
      return absl::InvalidArgumentError(
          open_check_ ? "a slice of check " + *open_check_ + " carries other results (scan " +
                            target_.scan_id + ")"
                      : "a part with more to come must carry results of one check (scan " +
                            target_.scan_id + ")");
    }
    for (const auto& [check, _] : by_check) {
      if (seen_.contains(check) && check != open_check_) {
        return absl::InvalidArgumentError(
            "check " + check + " came in two parts of one report (scan " + target_.scan_id + ")");
      }
    }
    const auto body = [&]() -> absl::Status {
      // A check in slices changes each namespace's counts in most slices: they are applied when
      // its transaction commits.
      SqlStore::Counts own_counts;
      const bool sliced = more || open_check_.has_value();
      SqlStore::Counts& counts = sliced ? open_counts_ : own_counts;
      std::vector<SqlStore::Changed> changed;
      for (const auto& [check, list] : by_check) {
        SqlStore::CurrentRows current;
        if (check == open_check_) {
          current = std::move(open_rows_);  // what the check's earlier slices did not replace
        } else if (scope) {
          // The rows this part replaces: its objects' and the check's cluster-wide ones.
          for (const auto& benchmark : scope->checks.at(check)) {
            for (const auto& object : scope->objects) {
              if (auto s =
                      store_.LoadCurrentOf(w_, target_.node_id, check, benchmark, object, current);
                  !s.ok()) {
                return s;
              }
            }
            for (const auto& ns : scope->namespaces) {
              if (auto s = store_.LoadCurrentIn(w_, target_.node_id, check, benchmark, ns, current);
                  !s.ok()) {
                return s;
              }
            }
            if (auto s = store_.LoadCurrentOf(w_, target_.node_id, check, benchmark, {}, current);
                !s.ok()) {
              return s;
            }
          }
        } else if (auto s = store_.LoadCurrent(w_, target_.node_id, &check, current); !s.ok()) {
          return s;
        }
        if (auto s =
                store_.WriteResults(w_, target_, list, current, counts, stats_, &changed, partial_);
            !s.ok()) {
          return s;
        }
        if (more) {
          open_rows_ = std::move(current);
        } else if (auto s = store_.DeleteRows(w_, target_.node_id, current, counts); !s.ok()) {
          return s;
        }
      }
      if (!sliced) {
        if (auto s = store_.ApplyCounts(w_, target_.node_id, counts); !s.ok()) return s;
      }
      // Each object whose verdicts changed since the last scan is a drift event of the node
      // (for a cluster scan: `Deployment shop/web`, seen by the rescan), as a node's file is.
      std::map<std::string, v1::DriftEvent> events;
      for (const auto& c : changed) {
        const std::string object = common::ResourceKey(c.result->resource());
        auto& e = events[object];
        if (e.event_id().empty()) {
          e.set_event_id(common::NewUuid());
          e.set_node_name(node_name_);
          e.set_source("rescan");
          *e.mutable_observed_at() = common::ToProto(common::FromUnixMillis(target_.now_ms));
          e.set_operation("changed");
          e.set_path(object.empty() ? "cluster" : object);
          if (annotate_) annotate_(e);
        }
        auto* change = e.add_changes();
        change->set_check_id(c.result->check_id());
        change->set_old_status(static_cast<v1::Status>(c.old_status));
        change->set_new_status(c.result->status());
        *change->mutable_result() = *c.result;
      }
      for (const auto& [object, e] : events) {
        if (auto s = store_.InsertDrift(w_, target_, e); !s.ok()) return s;
      }
      for (const auto& [check, _] : by_check) seen_.insert(check);
      return absl::OkStatus();
    };
    if (!more && !open_check_) return InTransaction(body);
    // A check in slices: its slices share a transaction, since committing each would rewrite the
    // pages they share and the namespaces' counts once per slice (a first scan of 50,000 pods:
    // 14 s in one transaction per check, 20 s committing every 250 ms, 17 s every second). The
    // transaction holds the store's write lock while the next slices are evaluated, so it is
    // committed (counts included) once it has been open for kSliceHold, and agents' reports go
    // in between.
    if (!open_lock_) {
      open_lock_ = std::unique_lock(w_.mu);
      auto st = w_.Begin();
      if (st.ok()) {
        st = store_.LockNode(w_, target_.cluster, target_.node);
        if (!st.ok()) (void)w_.Exec("ROLLBACK");
      }
      if (!st.ok()) {
        open_lock_ = {};
        broken_ = open_check_.has_value();
        return st;
      }
      open_since_ = std::chrono::steady_clock::now();
    }
    auto st = body();
    const bool hold = more && std::chrono::steady_clock::now() - open_since_ < kSliceHold;
    if (st.ok() && !hold) st = store_.ApplyCounts(w_, target_.node_id, open_counts_);
    if (st.ok() && !hold) st = w_.Exec("COMMIT");
    if (!st.ok()) {
      // This transaction's slices are undone, and which rows the check still has to replace is
      // not known any more.
      (void)w_.Exec("ROLLBACK");
      broken_ = true;
    }
    if (!st.ok() || !hold) store_.Publish(w_, st.ok());
    open_check_.reset();
    if (st.ok() && more) open_check_ = by_check.begin()->first;
    if (!st.ok() || !hold) {
      open_counts_.clear();
      store_.AfterCommit(IsDiskFull(st), common::Clock::now());
      open_lock_ = {};
    }
    return st;
  }

 public:
  ~SqlReportWriter() override {
    if (!open_lock_) return;
    // Abandoned in the middle of a check (the evaluation stopped): the slices since the last
    // commit are undone; the check's earlier ones stay, as whole checks before it do.
    (void)w_.Exec("ROLLBACK");
    store_.Publish(w_, false);
    store_.AfterCommit(false, common::Clock::now());
  }

  absl::StatusOr<CommitStats> Finish(common::Clock::time_point finished) override {
    if (broken_) {
      return absl::FailedPreconditionError("a part of scan " + target_.scan_id + " failed");
    }
    if (open_check_) {
      return absl::FailedPreconditionError("check " + *open_check_ + " of scan " + target_.scan_id +
                                           " was left without its last part");
    }
    auto s = InTransaction([&]() -> absl::Status {
      // Checks no part of a full report carried (removed from the catalogue, or a benchmark not
      // scanned now). A partial report removes nothing more.
      auto checks = partial_ ? std::set<std::string>() : store_.CurrentChecks(w_, target_.node_id);
      if (!checks.ok()) return checks.status();
      SqlStore::Counts counts;
      for (const auto& check : *checks) {
        if (seen_.contains(check)) continue;
        SqlStore::CurrentRows gone;
        if (auto st = store_.LoadCurrent(w_, target_.node_id, &check, gone); !st.ok()) return st;
        if (auto st = store_.DeleteRows(w_, target_.node_id, gone, counts); !st.ok()) return st;
      }
      if (auto st = store_.ApplyCounts(w_, target_.node_id, counts); !st.ok()) return st;
      w_.set_scan_results->Bind(1, static_cast<int64_t>(stats_.results));
      w_.set_scan_results->Bind(2, common::ToUnixMillis(finished));
      SqlStore::BindText(w_.set_scan_results, 3, target_.scan_id);
      return store_.Step(w_.set_scan_results, "recording the scan's size");
    });
    if (!s.ok()) return s;
    return stats_;
  }

 private:
  absl::Status InTransaction(const std::function<absl::Status()>& body) {
    std::lock_guard lock(w_.mu);
    if (auto s = w_.Begin(); !s.ok()) return s;
    // As a report committed whole: one writer of the node at a time, across collectors.
    auto s = store_.LockNode(w_, target_.cluster, target_.node);
    if (s.ok()) s = body();
    if (s.ok()) s = w_.Exec("COMMIT");
    if (!s.ok()) (void)w_.Exec("ROLLBACK");
    store_.Publish(w_, s.ok());
    store_.AfterCommit(IsDiskFull(s), common::Clock::now());
    return s;
  }

  static bool IsDiskFull(const absl::Status& s) {
    return s.code() == absl::StatusCode::kResourceExhausted &&
           s.message().find("(disk full)") != std::string::npos;
  }

  SqlStore& store_;
  WriteSession& w_;  // the store's first session
  SqlStore::Target target_;
  std::string node_name_;
  bool partial_;
  std::function<void(v1::DriftEvent&)> annotate_;
  std::set<std::string> seen_;
  std::optional<std::string> open_check_;  // a check whose slices are coming
  SqlStore::CurrentRows open_rows_;        // its rows no slice carried yet
  SqlStore::Counts open_counts_;           // the count changes of its slices so far
  // The store's write lock and the transaction of an open check's slices, since open_since_.
  std::unique_lock<std::mutex> open_lock_;
  std::chrono::steady_clock::time_point open_since_;
  static constexpr std::chrono::milliseconds kSliceHold{1000};
  bool broken_ = false;
  CommitStats stats_;
};

absl::StatusOr<std::unique_ptr<ReportWriter>> SqlStore::BeginReport(const v1::NodeReport& header,
                                                                    common::Clock::time_point now,
                                                                    bool partial) {
  v1::NodeReport head = header;
  head.clear_results();
  head.clear_drift();
  head.set_full(!partial);
  WriteSession& w = primary();
  std::lock_guard lock(w.mu);
  if (auto s = w.Begin(); !s.ok()) return s;
  CommitStats stats;
  auto target = StartScan(w, head, now, stats, /*in_parts=*/true);
  absl::Status s = target.status();
  if (s.ok() && !target->has_value()) {
    s = absl::AlreadyExistsError("scan " + header.scan_id() + " is already stored");
  }
  if (s.ok()) s = w.Exec("COMMIT");
  if (!s.ok()) (void)w.Exec("ROLLBACK");
  Publish(w, s.ok());
  if (!s.ok()) return s;
  return std::unique_ptr<ReportWriter>(
      new SqlReportWriter(*this, std::move(**target), header.node().node_name(), partial));
}

absl::StatusOr<size_t> SqlStore::PruneHistory(common::Clock::time_point cutoff) {
  WriteSession& w = primary();
  std::lock_guard lock(w.mu);
  const std::string ms = std::to_string(common::ToUnixMillis(cutoff));
  // Scans still named as a node's last scan stay, so the node keeps its reference.
  size_t removed = 0;
  for (const std::string& sql : {"DELETE FROM transitions WHERE at_ms < " + ms,
                                 "DELETE FROM drift_events WHERE observed_ms < " + ms,
                                 "DELETE FROM scans WHERE received_ms < " + ms +
                                     " AND scan_id NOT IN (SELECT last_scan_id FROM nodes)"}) {
    auto n = w.conn->Exec(sql);
    if (!n.ok()) return n.status();
    removed += static_cast<size_t>(*n);
  }
  return removed;
}

}  // namespace kspm::collector::store::internal

#pragma once

// The store's logic on SQL, shared by its two engines through sql.h (sqlite: sqlite_store.cc,
// sqlite_schema.cc, sqlite_files.cc; PostgreSQL: postgres_store.cc). sql_writer.cc: commits and
// retention; sql_queries.cc: findings, nodes, summary, history and drift; sql_fleet.cc: join
// tokens, node access and certificates. Nothing here is used outside store/.
#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "kspm/collector/store/sql.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"

namespace kspm::collector::store::internal {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using RawStmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;
using Stmt = std::unique_ptr<sql::Statement>;
using Connection = std::unique_ptr<sql::Connection>;

// FNV-1a over a serialized result; never 0, which marks rows stored before schema 6.
inline int64_t Digest(const std::string& bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h == 0 ? 1 : static_cast<int64_t>(h);
}

using common::SectionOf;  // the same as the SQL of migration 5

// The object a result is about, as the store keys it: kind, namespace, name and container, in
// columns of their own (never a string made for people). All four are empty for node results
// and for results about the cluster as a whole (kind `Cluster` or none).
struct ObjectKey {
  std::string kind, ns, name, container;

  static ObjectKey Of(const v1::Resource& resource) {
    if (resource.kind().empty() || resource.kind() == "Cluster") return {};
    return {resource.kind(), resource.namespace_(), resource.name(), resource.container()};
  }
  // One string for in-memory maps (fields joined with \x1f, which no Kubernetes name holds).
  std::string Joined() const { return kind + '\x1f' + ns + '\x1f' + name + '\x1f' + container; }
  // As people read it (common::ResourceKey's form): `DaemonSet monitoring/node-exporter [c]`.
  std::string Text() const {
    v1::Resource r;
    r.set_kind(kind);
    r.set_namespace_(ns);
    r.set_name(name);
    r.set_container(container);
    return common::ResourceKey(r);
  }
};

// The SQL columns of an ObjectKey, in key order.
inline constexpr const char* kObjectColumns = "kind, object_namespace, name, container";

// Interval assumed for one-shot reports (kspm-agent send), for staleness.
inline constexpr int kDefaultIntervalSeconds = 300;

// SQL expression: the node row `n` has missed kStaleIntervals scans at ?now (milliseconds).
std::string StaleExpr(const std::string& now_param);

// Opens one connection (busy timeout, extended result codes); the error names the file.
[[nodiscard]] absl::StatusOr<Db> OpenDb(const std::string& path, bool readonly);
// Runs `sql` on `db`; the error names the file.
[[nodiscard]] absl::Status ExecOn(sqlite3* db, const std::string& path, const std::string& sql);
// Brings the schema to the newest version, one migration at a time in a transaction each.
[[nodiscard]] absl::Status Migrate(sqlite3* db, const std::string& path);
// sqlite's own check of `db` (quick, or full): an error quoting its first complaints.
[[nodiscard]] absl::Status IntegrityOf(sqlite3* db, const std::string& path, bool full);

// Connections for queries. sqlite: read-only, each read in its own WAL snapshot beside the
// writer, so queries neither wait for commits nor for each other (up to the pool's size).
class ReaderPool {
 public:
  explicit ReaderPool(std::vector<Connection> readers) : idle_(std::move(readers)) {}

  // A connection for the lifetime of the lease; waits while all are in use.
  class Lease {
   public:
    Lease(ReaderPool& pool, Connection db) : pool_(pool), db_(std::move(db)) {}
    ~Lease() { pool_.Return(std::move(db_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    sql::Connection& db() const { return *db_; }

   private:
    ReaderPool& pool_;
    Connection db_;
  };

  Lease Acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !idle_.empty(); });
    Connection db = std::move(idle_.back());
    idle_.pop_back();
    return Lease(*this, std::move(db));
  }

 private:
  void Return(Connection db) {
    {
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(db));
    }
    cv_.notify_one();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Connection> idle_;
};

// A value of a row to insert.
struct SqlValue {
  enum Kind { kInt, kText, kBlob } kind = kInt;
  int64_t i = 0;
  std::string s;
  static SqlValue Int(int64_t v) { return {kInt, v, {}}; }
  static SqlValue Text(std::string v) { return {kText, 0, std::move(v)}; }
  static SqlValue Blob(std::string v) { return {kBlob, 0, std::move(v)}; }
};

// Rows of one INSERT, written up to kRows per statement when flushed: on PostgreSQL a round trip
// per statement instead of one per row (a full report of 150 new results: 1 instead of 150).
class RowBatch {
 public:
  static constexpr size_t kRows = 256;
  // `insert`: `INSERT INTO t(a, b)`; `tail`: what follows the VALUES (`ON CONFLICT ...`).
  RowBatch(std::string insert, size_t columns, std::string tail)
      : insert_(std::move(insert)), tail_(std::move(tail)), columns_(columns) {}
  // Adds a row; with `replace`, overwrites that row instead (the same key twice in one
  // statement is an error on PostgreSQL). Returns the row's index until the next Flush.
  size_t Put(std::vector<SqlValue> row, std::optional<size_t> replace = std::nullopt);
  bool empty() const { return rows_.empty(); }
  // Writes the rows in order and forgets them, written or not.
  [[nodiscard]] absl::Status Flush(sql::Connection& c, const char* what);

 private:
  std::string insert_, tail_;
  size_t columns_;
  std::vector<std::vector<SqlValue>> rows_;
  std::map<size_t, Stmt> statements_;  // by rows per statement
};

// One connection that writes, with its prepared statements, its row batches and the news of its
// open transaction. A transaction runs on one session, under its `mu`.
struct WriteSession {
  explicit WriteSession(Connection c);
  [[nodiscard]] absl::Status Prepare();
  absl::Status Exec(const char* sql) { return conn->Exec(sql).status(); }
  absl::Status Begin() { return conn->Begin(); }

  std::mutex mu;
  Connection conn;
  Stmt find_scan, touch_node, find_cluster, upsert_cluster, upsert_node, insert_scan,
      current_status, current_of_check, current_of_object, current_in_namespace, current_checks,
      set_scan_results, delete_result, insert_drift, node_has_results;
  Stmt lock_node;  // the engine's (LockNode), prepared on first use
  // Filled and flushed by WriteResults and ApplyCounts.
  RowBatch result_rows, transition_rows, count_rows;
  CommitNews news;  // of the open transaction
  // Cluster ids by name: committed, and read or inserted by the open transaction (known once
  // it commits). Cluster rows are never deleted.
  std::unordered_map<std::string, int64_t> clusters;
  std::vector<std::pair<std::string, int64_t>> clusters_seen;
};

// The store on a SQL engine: one or more write sessions and a pool of readers. The first session
// takes every write but agents' reports (fleet, cluster scans in parts, pruning); reports are
// committed on any session, several batches at once when there are several (PostgreSQL, whose
// node locks keep two writers of one node apart). Engines differ only in what the hooks below do.
class SqlStore : public Store {
 public:
  // `writers`: at least one.
  SqlStore(std::string name, std::vector<Connection> writers, std::vector<Connection> readers);

  absl::Status Prepare();
  size_t WriteConcurrency() const override { return sessions_.size(); }

  absl::StatusOr<CommitStats> CommitReport(const v1::NodeReport& report,
                                           common::Clock::time_point now) override;

  std::vector<absl::StatusOr<CommitStats>> CommitBatch(
      const std::vector<const v1::NodeReport*>& reports, common::Clock::time_point now) override;

  absl::StatusOr<std::unique_ptr<ReportWriter>> BeginReport(const v1::NodeReport& header,
                                                            common::Clock::time_point now,
                                                            bool partial) override;

  absl::StatusOr<PostureCounts> CountResults() override;
  void SetCommitListener(std::function<void(CommitNews&&)> listener) override {
    std::lock_guard lock(listener_mu_);
    listening_ = listener != nullptr;
    listener_ = std::move(listener);
  }
  // Hands what the transaction that just ended on `w` changed to the listener if it committed,
  // and forgets it either way. Called with w.mu held; calls to the listener are serialized.
  void Publish(WriteSession& w, bool committed);

  // After each write transaction, committed or not; `full`: it failed for lack of disk space.
  virtual void AfterCommit(bool full, common::Clock::time_point now) {
    (void)full;
    (void)now;
  }

  absl::StatusOr<std::vector<v1::Finding>> Findings(const FindingFilter& filter) override;

  absl::StatusOr<std::vector<v1::NodeInfo>> Nodes(const std::string& cluster,
                                                  common::Clock::time_point now) override;

  absl::StatusOr<v1::SummaryResponse> Summary(const std::string& cluster,
                                              common::Clock::time_point now) override;

  absl::StatusOr<std::vector<v1::Transition>> History(const HistoryFilter& filter) override;

  absl::StatusOr<std::vector<v1::DriftRecord>> Drift(const DriftFilter& filter) override;

  absl::StatusOr<size_t> PruneHistory(common::Clock::time_point cutoff) override;

  absl::Status AddJoinToken(const JoinToken& token, common::Clock::time_point now) override;

  absl::StatusOr<JoinToken> RedeemJoinToken(const std::string& id, const std::string& secret_sha256,
                                            const std::string& node,
                                            common::Clock::time_point now) override;

  absl::Status SetNodeAccess(const NodeAccess& access, const std::string& by,
                             common::Clock::time_point now) override;

  absl::StatusOr<std::vector<NodeAccess>> NodeAccessList() override;

  absl::Status RecordIssued(const IssuedCertificate& cert, common::Clock::time_point now) override;

  absl::StatusOr<std::string> LastIssueMethod(const std::string& cluster,
                                              const std::string& node) override;

  absl::Status RecordNodeCertificate(const std::string& cluster, const std::string& node,
                                     const std::string& serial, common::Clock::time_point not_after,
                                     common::Clock::time_point now) override;

 protected:
  // Called in a report's transaction before its node's rows are read: makes other writers of the
  // same node (another collector on the same database) wait until this transaction ends.
  virtual absl::Status LockNode(WriteSession& w, const std::string& cluster,
                                const std::string& node) {
    (void)w;
    (void)cluster;
    (void)node;
    return absl::OkStatus();
  }
  // The key of a node's lock. Batches take their nodes' locks in its order (and store new
  // clusters before), so that two sessions or collectors committing reports of the same nodes
  // do not wait for each other in a circle.
  static int64_t NodeKey(const std::string& cluster, const std::string& node) {
    return Digest(cluster + '\x1f' + node);
  }
  // The session every write but agents' reports uses.
  WriteSession& primary() { return *sessions_.front(); }

  // The bound string is copied.
  static void BindText(const Stmt& s, int i, const std::string& v) { s->BindText(i, v); }
  // The four columns of `object` from parameter `first` on.
  static void BindObject(const Stmt& s, int first, const ObjectKey& object);
  // Runs a prepared statement of the writer to completion; resets it for reuse.
  static absl::Status Step(const Stmt& stmt, const char* what) { return sql::Run(*stmt, what); }

  // A result_counts row: benchmark, section, namespace, status, severity, scored.
  using CountBucket = std::tuple<std::string, std::string, std::string, int, int, int>;

  // A batch in one transaction on `w` (its mu held), a savepoint per report.
  std::vector<absl::StatusOr<CommitStats>> CommitOn(
      WriteSession& w, const std::vector<const v1::NodeReport*>& reports,
      common::Clock::time_point now);
  absl::StatusOr<CommitStats> CommitOne(WriteSession& w, const v1::NodeReport& report,
                                        common::Clock::time_point now);

  // Where a report's rows go.
  struct Target {
    int64_t node_id = 0;
    std::string scan_id;
    int64_t now_ms = 0;
    std::string cluster;
    std::string node;
    bool baseline = false;  // the node had no results before this scan: its news is no news
  };
  // A current result row: what a new result replaces.
  struct CurrentRow {
    std::string check_id, benchmark;
    ObjectKey object;
    int status, severity, scored;
    std::string section, ns;
    int64_t digest;
  };
  // Keyed by check, benchmark and object, joined.
  using CurrentRows = std::unordered_map<std::string, CurrentRow>;
  using Counts = std::map<CountBucket, int64_t>;

  // The head of a commit: duplicate scan id, heartbeat, cluster, node and scan rows. Nothing
  // (with `stats` saying why) when the report needs no more.
  // `in_parts`: the results come later (ReportWriter), so an empty report is no heartbeat.
  absl::StatusOr<std::optional<Target>> StartScan(WriteSession& w, const v1::NodeReport& report,
                                                  common::Clock::time_point now, CommitStats& stats,
                                                  bool in_parts = false);
  // The id of cluster `cluster`, its row inserted when there is none.
  absl::StatusOr<int64_t> FindOrAddCluster(WriteSession& w, const std::string& cluster);
  // The node's current rows (of one check when `check_id` is given) into `out`.
  absl::Status LoadCurrent(WriteSession& w, int64_t node_id, const std::string* check_id,
                           CurrentRows& out);
  absl::Status ReadCurrent(const Stmt& stmt, CurrentRows& out);
  // The current results of one check, under one benchmark, about one object (kind, namespace,
  // name; all empty: the check's cluster-wide results).
  absl::Status LoadCurrentOf(WriteSession& w, int64_t node_id, const std::string& check_id,
                             const std::string& benchmark, const std::array<std::string, 3>& object,
                             CurrentRows& out);
  // The same for every object in namespace `ns`, and the Namespace `ns` itself.
  absl::Status LoadCurrentIn(WriteSession& w, int64_t node_id, const std::string& check_id,
                             const std::string& benchmark, const std::string& ns, CurrentRows& out);
  // Writes what changed among `results`, with transitions; rows written leave `current`. With
  // `new_findings`, new results other than PASS and NOT_APPLICABLE are in `changed` too (old
  // verdict 0).
  // A result whose verdict changed, with its old verdict.
  struct Changed {
    const v1::CheckResult* result;
    int old_status;
  };
  absl::Status WriteResults(WriteSession& w, const Target& target,
                            const std::vector<const v1::CheckResult*>& results,
                            CurrentRows& current, Counts& counts, CommitStats& stats,
                            std::vector<Changed>* changed = nullptr, bool new_findings = false);
  absl::Status InsertDrift(WriteSession& w, const Target& target, const v1::DriftEvent& event);
  // Deletes the rows left in `current` (no longer reported).
  absl::Status DeleteRows(WriteSession& w, int64_t node_id, const CurrentRows& current,
                          Counts& counts);
  absl::Status ApplyCounts(WriteSession& w, int64_t node_id, const Counts& counts);
  // The check ids of the node's current rows.
  absl::StatusOr<std::set<std::string>> CurrentChecks(WriteSession& w, int64_t node_id);

  friend class SqlReportWriter;

  std::string path_;  // a file, or a URL without its password
  std::mutex listener_mu_;
  std::function<void(CommitNews&&)> listener_;           // under listener_mu_
  std::atomic<bool> listening_{false};                   // whether there is one: news is gathered
  std::vector<std::unique_ptr<WriteSession>> sessions_;  // the first: primary()
  // Sessions no batch of reports is using.
  std::mutex idle_mu_;
  std::condition_variable idle_cv_;
  std::vector<WriteSession*> idle_;
  ReaderPool readers_;
};

// The embedded engine: space watched, and the log checkpointed when space is tight.
class SqliteStore final : public SqlStore {
 public:
  SqliteStore(std::string path, Db writer, std::vector<Db> readers);

  StoreSpace Space() const override;
  // Measures the space left; when it is tight (or a commit just failed for lack of it), moves
  // the log into the database and truncates it, so the log never holds space the database
  // needs. A commit that failed is retried by its agent; once space is back the next one
  // succeeds on the same connection, without a restart.
  void AfterCommit(bool full, common::Clock::time_point now) override;
  StoreSpace Measure() const;

 private:
  sqlite3* raw_writer_;
  mutable std::mutex space_mu_;
  StoreSpace space_;
};

}  // namespace kspm::collector::store::internal

namespace kspm::collector::store::internal {
// A libpq connection; errors name `name` (the URL without its password).
[[nodiscard]] absl::StatusOr<std::unique_ptr<sql::Connection>> ConnectPostgres(
    const PostgresOptions& options, const std::string& name);
// Brings a PostgreSQL database's schema to this binary's, once among collectors starting
// together; refuses a standby and a newer schema.
[[nodiscard]] absl::Status MigratePostgresSchema(sql::Connection& c);
// The first column of the first row of `sql` as text; empty without a row.
[[nodiscard]] absl::StatusOr<std::string> QueryOne(sql::Connection& c, const std::string& sql);
}  // namespace kspm::collector::store::internal

namespace kspm::collector::store::sql {
// A sqlite connection over `db`; errors name `name`.
std::unique_ptr<Connection> WrapSqlite(internal::Db db, const std::string& name);
// The handle under a connection WrapSqlite made.
sqlite3* RawSqlite(Connection& connection);
}  // namespace kspm::collector::store::sql

#include <openssl/crypto.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>

#include "kspm/collector/store/store.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store {
namespace {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Schema versions, applied in order. Never edit a released step: append a new one.
const char* const kMigrations[] = {
    // 1: clusters, nodes, scans, current results, transitions.
    R"sql(
CREATE TABLE clusters (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);
CREATE TABLE nodes (
  id INTEGER PRIMARY KEY,
  cluster_id INTEGER NOT NULL REFERENCES clusters(id),
  name TEXT NOT NULL,
  identity BLOB NOT NULL,          -- kspm.v1.NodeIdentity
  first_seen_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  last_scan_id TEXT NOT NULL,
  UNIQUE (cluster_id, name)
);
CREATE TABLE scans (
  scan_id TEXT PRIMARY KEY,
  node_id INTEGER NOT NULL REFERENCES nodes(id),
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  full INTEGER NOT NULL,
  results INTEGER NOT NULL
);
CREATE TABLE results (
  node_id INTEGER NOT NULL REFERENCES nodes(id),
  check_id TEXT NOT NULL,
  benchmark TEXT NOT NULL,
  benchmark_id TEXT NOT NULL,
  status INTEGER NOT NULL,
  severity INTEGER NOT NULL,
  scored INTEGER NOT NULL,
  result BLOB NOT NULL,            -- kspm.v1.CheckResult
  scan_id TEXT NOT NULL,
  updated_ms INTEGER NOT NULL,     -- last report that carried this result
  changed_ms INTEGER NOT NULL,     -- last time the status changed
  PRIMARY KEY (node_id, check_id, benchmark)
) WITHOUT ROWID;
CREATE TABLE transitions (
  id INTEGER PRIMARY KEY,
  node_id INTEGER NOT NULL REFERENCES nodes(id),
  check_id TEXT NOT NULL,
  benchmark TEXT NOT NULL,
  old_status INTEGER NOT NULL,     -- 0 when the result is new
  new_status INTEGER NOT NULL,
  at_ms INTEGER NOT NULL,
  scan_id TEXT NOT NULL
);
CREATE INDEX transitions_by_node ON transitions (node_id, at_ms);
CREATE INDEX transitions_by_check ON transitions (check_id, at_ms);
)sql",
    // 2: each node's scan interval, for staleness.
    R"sql(
ALTER TABLE nodes ADD COLUMN scan_interval_s INTEGER NOT NULL DEFAULT 300;
CREATE INDEX results_by_changed ON results (changed_ms);
)sql",
    // 3: counts of current results per node and bucket, kept up to date by every commit, so
    // that summaries read thousands of rows instead of millions.
    R"sql(
CREATE TABLE result_counts (
  node_id INTEGER NOT NULL REFERENCES nodes(id),
  benchmark TEXT NOT NULL,
  status INTEGER NOT NULL,
  severity INTEGER NOT NULL,
  scored INTEGER NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (node_id, benchmark, status, severity, scored)
) WITHOUT ROWID;
INSERT INTO result_counts
  SELECT node_id, benchmark, status, severity, scored, COUNT(*) FROM results GROUP BY 1, 2, 3, 4, 5;
-- Maintaining this index cost more on every commit than it saves the rare `--since` query.
DROP INDEX IF EXISTS results_by_changed;
)sql",
    // 4: drift events, as the agents observed them.
    R"sql(
CREATE TABLE drift_events (
  id INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  node_id INTEGER NOT NULL REFERENCES nodes(id),
  observed_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  scan_id TEXT NOT NULL,
  event BLOB NOT NULL              -- kspm.v1.DriftEvent
);
CREATE INDEX drift_by_node ON drift_events (node_id, observed_ms);
CREATE INDEX drift_by_time ON drift_events (observed_ms);
)sql",
    // 5: cluster results keyed by their object instead of a suffixed check id, and counts per
    // section and namespace for scores. Schema 4 stored `check[object]` as the check id; the
    // step after this SQL (SplitObjectKeys) splits those rows and rebuilds the counts.
    R"sql(
CREATE TABLE results_v5 (
  node_id INTEGER NOT NULL REFERENCES nodes(id),
  check_id TEXT NOT NULL,
  benchmark TEXT NOT NULL,
  object TEXT NOT NULL,            -- common::ResourceKey of a cluster result; '' on nodes
  namespace TEXT NOT NULL,         -- common::ResourceScope: the namespace it is scored under
  section TEXT NOT NULL,           -- benchmark_id up to its first dot: `1`, `5`, `pod`
  benchmark_id TEXT NOT NULL,
  status INTEGER NOT NULL,
  severity INTEGER NOT NULL,
  scored INTEGER NOT NULL,
  result BLOB NOT NULL,            -- kspm.v1.CheckResult
  scan_id TEXT NOT NULL,
  updated_ms INTEGER NOT NULL,
  changed_ms INTEGER NOT NULL,
  PRIMARY KEY (node_id, check_id, benchmark, object)
) WITHOUT ROWID;
INSERT INTO results_v5
  SELECT node_id, check_id, benchmark, '', '',
         CASE WHEN instr(benchmark_id, '.') > 0
              THEN substr(benchmark_id, 1, instr(benchmark_id, '.') - 1) ELSE benchmark_id END,
         benchmark_id, status, severity, scored, result, scan_id, updated_ms, changed_ms
  FROM results;
DROP TABLE results;
ALTER TABLE results_v5 RENAME TO results;
ALTER TABLE transitions ADD COLUMN object TEXT NOT NULL DEFAULT '';
UPDATE transitions
  SET object = substr(check_id, instr(check_id, '[') + 1, length(check_id) - instr(check_id, '[') - 1),
      check_id = substr(check_id, 1, instr(check_id, '[') - 1)
  WHERE instr(check_id, '[') > 1 AND check_id LIKE '%]';
DROP TABLE result_counts;
CREATE TABLE result_counts (
  node_id INTEGER NOT NULL REFERENCES nodes(id),
  benchmark TEXT NOT NULL,
  section TEXT NOT NULL,
  namespace TEXT NOT NULL,
  status INTEGER NOT NULL,
  severity INTEGER NOT NULL,
  scored INTEGER NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (node_id, benchmark, section, namespace, status, severity, scored)
) WITHOUT ROWID;
)sql",
    // 6: a digest of each stored result, so that a report repeating a result unchanged writes
    // nothing for it (0: not known yet, the next report writes the row once).
    R"sql(
ALTER TABLE results ADD COLUMN digest INTEGER NOT NULL DEFAULT 0;
)sql",
    // 7: fleet identity: join tokens (only a hash of the secret), revocations, certificates
    // issued by enrolment, and the certificate each node last presented.
    R"sql(
CREATE TABLE join_tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 TEXT NOT NULL,
  cluster TEXT NOT NULL,
  node TEXT NOT NULL,              -- '' : any node
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  uses_left INTEGER NOT NULL,
  created_by TEXT NOT NULL
);
CREATE TABLE node_access (
  cluster TEXT NOT NULL,
  node TEXT NOT NULL,
  revoked INTEGER NOT NULL,
  revoked_ms INTEGER NOT NULL,     -- certificates issued before this stay refused
  changed_by TEXT NOT NULL,
  changed_ms INTEGER NOT NULL,
  PRIMARY KEY (cluster, node)
) WITHOUT ROWID;
CREATE TABLE issued_certificates (
  serial TEXT PRIMARY KEY,
  cluster TEXT NOT NULL,
  node TEXT NOT NULL,
  issued_ms INTEGER NOT NULL,
  not_after_ms INTEGER NOT NULL,
  method TEXT NOT NULL,            -- service-account-token, join-token, renewal
  source TEXT NOT NULL             -- the caller's address
);
CREATE INDEX issued_by_node ON issued_certificates (cluster, node, issued_ms);
CREATE TABLE node_certificates (
  cluster TEXT NOT NULL,
  node TEXT NOT NULL,
  serial TEXT NOT NULL,
  not_after_ms INTEGER NOT NULL,
  seen_ms INTEGER NOT NULL,
  PRIMARY KEY (cluster, node)
) WITHOUT ROWID;
)sql",
};

// FNV-1a over a serialized result; never 0, which marks rows stored before schema 6.
int64_t Digest(const std::string& bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h == 0 ? 1 : static_cast<int64_t>(h);
}

// The part of a benchmark item id a section score groups by: `1.2.3` -> `1`, `pod.privileged` ->
// `pod` (same as the SQL of migration 5).
std::string SectionOf(const std::string& benchmark_id) {
  return benchmark_id.substr(0, benchmark_id.find('.'));
}

// Interval assumed for one-shot reports (kspm-agent send), for staleness.
constexpr int kDefaultIntervalSeconds = 300;

// SQL expression: the node row `n` has missed kStaleIntervals scans at ?now (milliseconds).
std::string StaleExpr(const std::string& now_param) {
  return "((" + now_param + " - n.last_seen_ms) > " + std::to_string(kStaleIntervals) +
         " * 1000 * n.scan_interval_s)";
}

// Read-only connections for queries. WAL lets each read in its own snapshot beside the writer,
// so queries neither wait for commits nor for each other (up to the pool's size).
class ReaderPool {
 public:
  explicit ReaderPool(std::vector<Db> readers) : idle_(std::move(readers)) {}

  // A connection for the lifetime of the lease; waits while all are in use.
  class Lease {
   public:
    Lease(ReaderPool& pool, Db db) : pool_(pool), db_(std::move(db)) {}
    ~Lease() { pool_.Return(std::move(db_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    sqlite3* db() const { return db_.get(); }

   private:
    ReaderPool& pool_;
    Db db_;
  };

  Lease Acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !idle_.empty(); });
    Db db = std::move(idle_.back());
    idle_.pop_back();
    return Lease(*this, std::move(db));
  }

 private:
  void Return(Db db) {
    {
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(db));
    }
    cv_.notify_one();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Db> idle_;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, Db writer, std::vector<Db> readers)
      : path_(std::move(path)), writer_(std::move(writer)), readers_(std::move(readers)) {}

  absl::Status Prepare() {
    struct Spec {
      Stmt* out;
      const char* sql;
    };
    const Spec specs[] = {
        {&find_scan_, "SELECT 1 FROM scans WHERE scan_id = ?"},
        {&touch_node_,
         "UPDATE nodes SET identity = ?1, last_seen_ms = ?2, scan_interval_s = ?3 WHERE name = ?4 "
         "AND cluster_id = (SELECT id FROM clusters WHERE name = ?5)"},
        {&upsert_cluster_,
         "INSERT INTO clusters(name) VALUES (?) ON CONFLICT(name) DO UPDATE SET name = name "
         "RETURNING id"},
        {&upsert_node_,
         "INSERT INTO nodes(cluster_id, name, identity, first_seen_ms, last_seen_ms, last_scan_id, "
         "scan_interval_s) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6) ON CONFLICT(cluster_id, name) DO "
         "UPDATE SET identity = excluded.identity, last_seen_ms = excluded.last_seen_ms, "
         "last_scan_id = excluded.last_scan_id, scan_interval_s = excluded.scan_interval_s "
         "RETURNING id"},
        {&insert_scan_,
         "INSERT INTO scans(scan_id, node_id, started_ms, finished_ms, received_ms, full, results) "
         "VALUES (?, ?, ?, ?, ?, ?, ?)"},
        {&current_status_,
         "SELECT check_id, benchmark, object, status, severity, scored, section, namespace, "
         "digest FROM results WHERE node_id = ?"},
        {&bump_count_,
         "INSERT INTO result_counts(node_id, benchmark, section, namespace, status, severity, "
         "scored, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(node_id, benchmark, section, "
         "namespace, status, severity, scored) DO UPDATE SET n = n + excluded.n"},
        {&upsert_result_,
         "INSERT INTO results(node_id, check_id, benchmark, benchmark_id, status, severity, "
         "scored, result, scan_id, updated_ms, changed_ms, object, namespace, section, digest) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14) "
         "ON CONFLICT(node_id, check_id, benchmark, object) DO UPDATE SET "
         "benchmark_id = excluded.benchmark_id, status = excluded.status, "
         "namespace = excluded.namespace, section = excluded.section, "
         "severity = excluded.severity, scored = excluded.scored, result = excluded.result, "
         "scan_id = excluded.scan_id, updated_ms = excluded.updated_ms, digest = excluded.digest, "
         "changed_ms = CASE WHEN results.status = excluded.status THEN results.changed_ms "
         "ELSE excluded.changed_ms END"},
        {&insert_drift_,
         "INSERT OR IGNORE INTO drift_events(event_id, node_id, observed_ms, received_ms, scan_id, "
         "event) VALUES (?, ?, ?, ?, ?, ?)"},
        {&insert_transition_,
         "INSERT INTO transitions(node_id, check_id, benchmark, old_status, new_status, at_ms, "
         "scan_id, object) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"},
        {&delete_result_,
         "DELETE FROM results WHERE node_id = ? AND check_id = ? AND benchmark = ? AND "
         "object = ?"},
    };
    for (const auto& spec : specs) {
      sqlite3_stmt* stmt = nullptr;
      if (sqlite3_prepare_v3(writer_.get(), spec.sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt,
                             nullptr) != SQLITE_OK) {
        return Error(writer_.get(), "preparing statement");
      }
      spec.out->reset(stmt);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<CommitStats> CommitReport(const v1::NodeReport& report,
                                           common::Clock::time_point now) override {
    auto out = CommitBatch({&report}, now);
    return out[0];
  }

  std::vector<absl::StatusOr<CommitStats>> CommitBatch(
      const std::vector<const v1::NodeReport*>& reports, common::Clock::time_point now) override {
    std::lock_guard lock(write_mu_);
    std::vector<absl::StatusOr<CommitStats>> out;
    out.reserve(reports.size());
    if (auto s = Exec(writer_.get(), "BEGIN IMMEDIATE"); !s.ok()) {
      for (size_t i = 0; i < reports.size(); ++i) out.emplace_back(s);
      return out;
    }
    for (const auto* report : reports) {
      (void)Exec(writer_.get(), "SAVEPOINT report");
      auto stats = CommitOne(*report, now);
      if (stats.ok()) {
        (void)Exec(writer_.get(), "RELEASE report");
      } else {
        (void)Exec(writer_.get(), "ROLLBACK TO report");
        (void)Exec(writer_.get(), "RELEASE report");
      }
      out.push_back(std::move(stats));
    }
    if (auto s = Exec(writer_.get(), "COMMIT"); !s.ok()) {
      (void)Exec(writer_.get(), "ROLLBACK");
      for (auto& o : out) {
        if (o.ok()) o = s;
      }
    }
    bool full = false;
    for (const auto& o : out)
      full |= !o.ok() && o.status().code() == absl::StatusCode::kResourceExhausted &&
              o.status().message().find("(disk full)") != std::string::npos;
    AfterCommit(full, now);
    return out;
  }

  StoreSpace Space() const override {
    std::lock_guard lock(space_mu_);
    return space_;
  }

  // Measures the space left; when it is tight (or a commit just failed for lack of it), moves
  // the log into the database and truncates it, so the log never holds space the database
  // needs. A commit that failed is retried by its agent; once space is back the next one
  // succeeds on the same connection, without a restart.
  void AfterCommit(bool full, common::Clock::time_point now) {
    StoreSpace space = Measure();
    if (full || space.tight) {
      const int rc = sqlite3_wal_checkpoint_v2(writer_.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE,
                                               nullptr, nullptr);
      if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        spdlog::warn("{}: checkpoint on a tight disk: {}", path_, sqlite3_errmsg(writer_.get()));
      }
      space = Measure();
    }
    std::lock_guard lock(space_mu_);
    if (full && space_.full_since.empty()) {
      space.full_since = common::FormatRfc3339(now);
      spdlog::error(
          "{}: disk full ({} bytes free): commits fail and agents keep their reports until "
          "space is freed",
          path_, space.free_bytes);
    } else if (full) {
      space.full_since = space_.full_since;
    } else if (!space_.full_since.empty()) {
      spdlog::info("{}: commits succeed again ({} bytes free)", path_, space.free_bytes);
    }
    space_ = std::move(space);
  }

  StoreSpace Measure() const {
    StoreSpace space;
    space.path = path_;
    struct statvfs fs {};
    const std::string dir = path_.find('/') == std::string::npos
                                ? std::string(".")
                                : path_.substr(0, std::max<size_t>(1, path_.rfind('/')));
    if (::statvfs(dir.c_str(), &fs) == 0) {
      space.free_bytes = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
      space.tight = space.free_bytes < kTightFreeBytes;
    }
    struct stat st {};
    if (::stat((path_ + "-wal").c_str(), &st) == 0) space.wal_bytes = st.st_size;
    return space;
  }

  absl::StatusOr<std::vector<v1::Finding>> Findings(const FindingFilter& filter) override {
    const ReaderPool::Lease reader = readers_.Acquire();
    const std::string now = std::to_string(common::ToUnixMillis(filter.now));
    // reported_at is the node's last report: every report (full, or changes only) vouches for
    // the node's results as of its scan, and unchanged rows are not rewritten.
    // The page is chosen on small columns only; the stored results (about a kilobyte each) are
    // read for the chosen rows, so the sort never carries them.
    std::string sql =
        "SELECT c.name AS k1, n.name AS k2, r.node_id AS nid, n.last_seen_ms, r.changed_ms, " +
        StaleExpr(now) +
        ", -r.severity AS k3, r.benchmark AS k4, r.benchmark_id AS k5, r.object AS k6, "
        "r.check_id AS k7 FROM results r JOIN nodes n ON n.id = r.node_id JOIN clusters c "
        "ON c.id = n.cluster_id WHERE 1=1";
    std::vector<std::string> args;
    if (filter.since) {
      sql += " AND r.changed_ms >= " + std::to_string(common::ToUnixMillis(*filter.since));
    }
    if (!filter.cluster.empty()) {
      sql += " AND c.name = ?";
      args.push_back(filter.cluster);
    }
    if (!filter.node.empty()) {
      sql += " AND n.name = ?";
      args.push_back(filter.node);
    }
    if (!filter.benchmark.empty()) {
      sql += " AND r.benchmark = ?";
      args.push_back(filter.benchmark);
    }
    if (!filter.id.empty()) {
      sql += " AND (r.check_id = ? OR r.benchmark_id = ? OR r.benchmark_id LIKE ? || '.%')";
      args.push_back(filter.id);
      args.push_back(filter.id);
      args.push_back(filter.id);
    }
    if (!filter.ns.empty()) {
      sql += " AND r.namespace = ?";
      args.push_back(filter.ns);
    }
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
        "c.name, n.name, -r.severity, r.benchmark, r.benchmark_id, r.object, r.check_id";
    if (filter.after) {
      if (filter.after->size() != 7) return absl::InvalidArgumentError("malformed page token");
      sql += " AND (" + order + ") > (?, ?, ?, ?, ?, ?, ?)";
    }
    sql += " ORDER BY " + order;
    if (filter.limit > 0) sql += " LIMIT " + std::to_string(filter.limit);
    sql =
        "SELECT p.*, (SELECT result FROM results WHERE node_id = p.nid AND check_id = p.k7 AND "
        "benchmark = p.k4 AND object = p.k6) FROM (" +
        sql + ") p ORDER BY k1, k2, k3, k4, k5, k6, k7";
    auto stmt = PrepareRead(reader.db(), sql);
    if (!stmt.ok()) return stmt.status();
    for (size_t i = 0; i < args.size(); ++i) {
      sqlite3_bind_text(stmt->get(), static_cast<int>(i + 1), args[i].c_str(), -1,
                        SQLITE_TRANSIENT);
    }
    if (filter.after) {
      for (size_t i = 0; i < filter.after->size(); ++i) {
        const int index = static_cast<int>(args.size() + i + 1);
        const std::string& value = (*filter.after)[i];
        if (i == 2) {  // -severity, an integer
          sqlite3_bind_int64(stmt->get(), index, std::strtoll(value.c_str(), nullptr, 10));
        } else {
          sqlite3_bind_text(stmt->get(), index, value.c_str(), -1, SQLITE_TRANSIENT);
        }
      }
    }
    std::vector<v1::Finding> out;
    int rc;
    while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
      v1::Finding f;
      f.set_cluster(Text(stmt->get(), 0));
      f.set_node(Text(stmt->get(), 1));
      if (!f.mutable_result()->ParseFromArray(sqlite3_column_blob(stmt->get(), 11),
                                              sqlite3_column_bytes(stmt->get(), 11))) {
        return absl::DataLossError(path_ + ": a stored result does not parse");
      }
      *f.mutable_reported_at() =
          common::ToProto(common::FromUnixMillis(sqlite3_column_int64(stmt->get(), 3)));
      *f.mutable_changed_at() =
          common::ToProto(common::FromUnixMillis(sqlite3_column_int64(stmt->get(), 4)));
      f.set_stale(sqlite3_column_int(stmt->get(), 5) != 0);
      out.push_back(std::move(f));
    }
    if (rc != SQLITE_DONE) return Error(reader.db(), "reading findings");
    return out;
  }

  absl::StatusOr<std::vector<v1::NodeInfo>> Nodes(const std::string& cluster,
                                                  common::Clock::time_point now) override {
    const ReaderPool::Lease reader = readers_.Acquire();
    auto stmt = PrepareRead(
        reader.db(), "SELECT n.id, n.identity, n.last_seen_ms, n.last_scan_id, " +
                         StaleExpr(std::to_string(common::ToUnixMillis(now))) +
                         ", n.scan_interval_s, nc.not_after_ms, COALESCE(na.revoked, 0) "
                         "FROM nodes n JOIN clusters c ON c.id = n.cluster_id "
                         "LEFT JOIN node_certificates nc ON nc.cluster = c.name AND nc.node = "
                         "n.name LEFT JOIN node_access na ON na.cluster = c.name AND na.node = "
                         "n.name WHERE (?1 = '' OR c.name = ?1) ORDER BY c.name, n.name");
    if (!stmt.ok()) return stmt.status();
    sqlite3_bind_text(stmt->get(), 1, cluster.c_str(), -1, SQLITE_TRANSIENT);
    std::vector<v1::NodeInfo> out;
    std::map<int64_t, size_t> index;
    int rc;
    while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
      v1::NodeInfo info;
      if (!info.mutable_identity()->ParseFromArray(sqlite3_column_blob(stmt->get(), 1),
                                                   sqlite3_column_bytes(stmt->get(), 1))) {
        return absl::DataLossError(path_ + ": a stored node identity does not parse");
      }
      *info.mutable_last_seen() =
          common::ToProto(common::FromUnixMillis(sqlite3_column_int64(stmt->get(), 2)));
      info.set_last_scan_id(Text(stmt->get(), 3));
      info.set_stale(sqlite3_column_int(stmt->get(), 4) != 0);
      info.set_scan_interval_seconds(static_cast<uint32_t>(sqlite3_column_int(stmt->get(), 5)));
      if (sqlite3_column_type(stmt->get(), 6) != SQLITE_NULL) {
        *info.mutable_certificate_not_after() =
            common::ToProto(common::FromUnixMillis(sqlite3_column_int64(stmt->get(), 6)));
      }
      info.set_revoked(sqlite3_column_int(stmt->get(), 7) != 0);
      index[sqlite3_column_int64(stmt->get(), 0)] = out.size();
      out.push_back(std::move(info));
    }
    if (rc != SQLITE_DONE) return Error(reader.db(), "reading nodes");
    auto counts = PrepareRead(
        reader.db(), "SELECT node_id, status, SUM(n) FROM result_counts WHERE n > 0 GROUP BY 1, 2");
    if (!counts.ok()) return counts.status();
    while ((rc = sqlite3_step(counts->get())) == SQLITE_ROW) {
      const auto it = index.find(sqlite3_column_int64(counts->get(), 0));
      if (it == index.end()) continue;
      common::AddStatusCount(*out[it->second].mutable_counts(),
                             static_cast<v1::Status>(sqlite3_column_int(counts->get(), 1)),
                             static_cast<uint32_t>(sqlite3_column_int64(counts->get(), 2)));
    }
    return out;
  }

  absl::StatusOr<v1::SummaryResponse> Summary(const std::string& cluster,
                                              common::Clock::time_point now) override {
    const ReaderPool::Lease reader = readers_.Acquire();
    auto node_stmt =
        PrepareRead(reader.db(), "SELECT COUNT(*), COALESCE(SUM(" +
                                     StaleExpr(std::to_string(common::ToUnixMillis(now))) +
                                     "), 0) FROM nodes n JOIN clusters c ON c.id = n.cluster_id "
                                     "WHERE (?1 = '' OR c.name = ?1)");
    if (!node_stmt.ok()) return node_stmt.status();
    sqlite3_bind_text(node_stmt->get(), 1, cluster.c_str(), -1, SQLITE_TRANSIENT);
    uint32_t node_count = 0, stale_count = 0;
    if (sqlite3_step(node_stmt->get()) == SQLITE_ROW) {
      node_count = static_cast<uint32_t>(sqlite3_column_int64(node_stmt->get(), 0));
      stale_count = static_cast<uint32_t>(sqlite3_column_int64(node_stmt->get(), 1));
    }
    // Each node is scored under the Kubernetes benchmark it was judged by (its agent's platform
    // choice): results it also reported under other benchmarks of that family (`--benchmark
    // all`) count for those benchmarks' own rows, not for the node or the overall score.
    std::map<std::string, std::string> judged_by;
    {
      auto ids = PrepareRead(reader.db(),
                             "SELECT n.name, n.identity FROM nodes n JOIN clusters c ON c.id = "
                             "n.cluster_id WHERE (?1 = '' OR c.name = ?1)");
      if (!ids.ok()) return ids.status();
      sqlite3_bind_text(ids->get(), 1, cluster.c_str(), -1, SQLITE_TRANSIENT);
      while (sqlite3_step(ids->get()) == SQLITE_ROW) {
        v1::NodeIdentity identity;
        const void* blob = sqlite3_column_blob(ids->get(), 1);
        const int size = sqlite3_column_bytes(ids->get(), 1);
        if (blob != nullptr && identity.ParseFromArray(blob, size) &&
            !identity.platform_benchmark().empty()) {
          judged_by[Text(ids->get(), 0)] = identity.platform_benchmark();
        }
      }
    }
    // One pass over current results, grouped by what a score needs.
    auto stmt =
        PrepareRead(reader.db(),
                    "SELECT n.name, r.benchmark, r.status, r.severity, r.scored, r.n, r.section, "
                    "r.namespace FROM result_counts r "
                    "JOIN nodes n ON n.id = r.node_id JOIN clusters c ON c.id = n.cluster_id "
                    "WHERE (?1 = '' OR c.name = ?1) AND r.n > 0");
    if (!stmt.ok()) return stmt.status();
    sqlite3_bind_text(stmt->get(), 1, cluster.c_str(), -1, SQLITE_TRANSIENT);
    ScoreAccumulator overall;
    std::map<std::string, ScoreAccumulator> nodes, benchmarks, sections, namespaces;
    std::map<std::string, uint32_t> failed;
    int rc;
    while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
      const std::string node = Text(stmt->get(), 0);
      const std::string benchmark = Text(stmt->get(), 1);
      const auto status = static_cast<v1::Status>(sqlite3_column_int(stmt->get(), 2));
      const auto severity = static_cast<v1::Severity>(sqlite3_column_int(stmt->get(), 3));
      const bool scored = sqlite3_column_int(stmt->get(), 4) != 0;
      const auto count = static_cast<uint32_t>(sqlite3_column_int64(stmt->get(), 5));
      const std::string section = Text(stmt->get(), 6);
      const std::string ns = Text(stmt->get(), 7);
      const auto judged = judged_by.find(node);
      const bool counts_for_node = judged == judged_by.end() ||
                                   !common::IsKubernetesBenchmark(benchmark) ||
                                   benchmark == judged->second;
      for (auto* acc : {&benchmarks[benchmark], &sections[benchmark + " " + section]}) {
        acc->Add(status, severity, scored, count);
      }
      if (counts_for_node) {
        overall.Add(status, severity, scored, count);
        nodes[node].Add(status, severity, scored, count);
      }
      if (!ns.empty()) namespaces[ns].Add(status, severity, scored, count);
      if (status == v1::STATUS_FAIL && counts_for_node) {
        failed[std::string(common::SeverityName(severity))] += count;
      }
    }
    if (rc != SQLITE_DONE) return Error(reader.db(), "reading summary");
    v1::SummaryResponse out;
    out.set_node_count(node_count);
    out.set_stale_node_count(stale_count);
    *out.mutable_overall() = overall.ToScore("overall");
    for (const auto& [name, acc] : nodes) *out.add_nodes() = acc.ToScore(name);
    for (const auto& [name, acc] : benchmarks) *out.add_benchmarks() = acc.ToScore(name);
    for (const auto& [name, acc] : sections) *out.add_sections() = acc.ToScore(name);
    for (const auto& [name, acc] : namespaces) *out.add_namespaces() = acc.ToScore(name);
    for (const auto& [severity, count] : failed)
      (*out.mutable_failed_by_severity())[severity] = count;
    return out;
  }

  absl::StatusOr<std::vector<v1::Transition>> History(const HistoryFilter& filter) override {
    const ReaderPool::Lease reader = readers_.Acquire();
    std::string sql =
        "SELECT c.name, n.name, t.check_id, t.benchmark, COALESCE(r.benchmark_id, ''), "
        "t.old_status, t.new_status, t.at_ms, t.scan_id, t.object FROM transitions t "
        "JOIN nodes n ON n.id = t.node_id JOIN clusters c ON c.id = n.cluster_id "
        "LEFT JOIN results r ON r.node_id = t.node_id AND r.check_id = t.check_id AND "
        "r.benchmark = t.benchmark AND r.object = t.object "
        "WHERE (?1 = '' OR c.name = ?1) AND (?2 = '' OR n.name = ?2) "
        "AND (?3 = '' OR t.check_id = ?3 OR r.benchmark_id = ?3) AND t.at_ms >= ?4 "
        "ORDER BY t.at_ms DESC, t.id DESC LIMIT ?5";
    auto stmt = PrepareRead(reader.db(), sql);
    if (!stmt.ok()) return stmt.status();
    sqlite3_bind_text(stmt->get(), 1, filter.cluster.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt->get(), 2, filter.node.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt->get(), 3, filter.id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt->get(), 4, filter.since ? common::ToUnixMillis(*filter.since) : 0);
    sqlite3_bind_int64(stmt->get(), 5,
                       filter.limit == 0 ? 1000 : static_cast<int64_t>(filter.limit));
    std::vector<v1::Transition> out;
    int rc;
    while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
      v1::Transition t;
      t.set_cluster(Text(stmt->get(), 0));
      t.set_node(Text(stmt->get(), 1));
      t.set_check_id(Text(stmt->get(), 2));
      t.set_benchmark(Text(stmt->get(), 3));
      t.set_benchmark_id(Text(stmt->get(), 4));
      t.set_old_status(static_cast<v1::Status>(sqlite3_column_int(stmt->get(), 5)));
      t.set_new_status(static_cast<v1::Status>(sqlite3_column_int(stmt->get(), 6)));
      *t.mutable_at() =
          common::ToProto(common::FromUnixMillis(sqlite3_column_int64(stmt->get(), 7)));
      t.set_scan_id(Text(stmt->get(), 8));
      t.set_object(Text(stmt->get(), 9));
      out.push_back(std::move(t));
    }
    if (rc != SQLITE_DONE) return Error(reader.db(), "reading history");
    return out;
  }

  absl::StatusOr<std::vector<v1::DriftRecord>> Drift(const DriftFilter& filter) override {
    const ReaderPool::Lease reader = readers_.Acquire();
    auto stmt = PrepareRead(
        reader.db(),
        "SELECT c.name, d.event, d.received_ms FROM drift_events d JOIN nodes n ON n.id = "
        "d.node_id JOIN clusters c ON c.id = n.cluster_id WHERE (?1 = '' OR c.name = ?1) AND "
        "(?2 = '' OR n.name = ?2) AND d.observed_ms >= ?3 ORDER BY d.observed_ms DESC, d.id DESC");
    if (!stmt.ok()) return stmt.status();
    sqlite3_bind_text(stmt->get(), 1, filter.cluster.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt->get(), 2, filter.node.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt->get(), 3, filter.since ? common::ToUnixMillis(*filter.since) : 0);
    std::vector<v1::DriftRecord> out;
    const size_t limit = filter.limit == 0 ? 1000 : filter.limit;
    int rc;
    while (out.size() < limit && (rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
      v1::DriftRecord rec;
      rec.set_cluster(Text(stmt->get(), 0));
      if (!rec.mutable_event()->ParseFromArray(sqlite3_column_blob(stmt->get(), 1),
                                               sqlite3_column_bytes(stmt->get(), 1))) {
        return absl::DataLossError(path_ + ": a stored drift event does not parse");
      }
      if (!filter.id.empty()) {
        bool match = false;
        for (const auto& ch : rec.event().changes()) {
          match |= ch.check_id() == filter.id || ch.result().benchmark_id() == filter.id;
        }
        if (!match) continue;
      }
      *rec.mutable_received_at() =
          common::ToProto(common::FromUnixMillis(sqlite3_column_int64(stmt->get(), 2)));
      out.push_back(std::move(rec));
    }
    return out;
  }

  absl::StatusOr<size_t> PruneHistory(common::Clock::time_point cutoff) override {
    std::lock_guard lock(write_mu_);
    const std::string ms = std::to_string(common::ToUnixMillis(cutoff));
    // Scans still named as a node's last scan stay, so the node keeps its reference.
    const std::string sql = "DELETE FROM transitions WHERE at_ms < " + ms +
                            "; DELETE FROM drift_events WHERE observed_ms < " + ms +
                            "; DELETE FROM scans WHERE received_ms < " + ms +
                            " AND scan_id NOT IN (SELECT last_scan_id FROM nodes);";
    const int before = sqlite3_total_changes(writer_.get());
    if (auto s = Exec(writer_.get(), sql.c_str()); !s.ok()) return s;
    return static_cast<size_t>(sqlite3_total_changes(writer_.get()) - before);
  }

  absl::Status AddJoinToken(const JoinToken& token, common::Clock::time_point now) override {
    std::lock_guard lock(write_mu_);
    auto stmt = PrepareRead(writer_.get(),
                            "INSERT INTO join_tokens(id, secret_sha256, cluster, node, created_ms, "
                            "expires_ms, uses_left, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    BindTexts(stmt->get(), {token.id, token.secret_sha256, token.cluster, token.node});
    sqlite3_bind_int64(stmt->get(), 5, common::ToUnixMillis(now));
    sqlite3_bind_int64(stmt->get(), 6, common::ToUnixMillis(token.expires));
    sqlite3_bind_int64(stmt->get(), 7, token.uses);
    sqlite3_bind_text(stmt->get(), 8, token.created_by.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt->get()) != SQLITE_DONE)
      return Error(writer_.get(), "adding a join token");
    return absl::OkStatus();
  }

  absl::StatusOr<JoinToken> RedeemJoinToken(const std::string& id, const std::string& secret_sha256,
                                            const std::string& node,
                                            common::Clock::time_point now) override {
    std::lock_guard lock(write_mu_);
    auto stmt = PrepareRead(writer_.get(),
                            "SELECT secret_sha256, cluster, node, expires_ms, uses_left, "
                            "created_by FROM join_tokens WHERE id = ?");
    if (!stmt.ok()) return stmt.status();
    sqlite3_bind_text(stmt->get(), 1, id.c_str(), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(stmt->get());
    if (rc == SQLITE_DONE) return absl::PermissionDeniedError("unknown join token");
    if (rc != SQLITE_ROW) return Error(writer_.get(), "reading a join token");
    JoinToken token;
    token.id = id;
    token.secret_sha256 = Text(stmt->get(), 0);
    token.cluster = Text(stmt->get(), 1);
    token.node = Text(stmt->get(), 2);
    token.expires = common::FromUnixMillis(sqlite3_column_int64(stmt->get(), 3));
    const int64_t uses_left = sqlite3_column_int64(stmt->get(), 4);
    token.created_by = Text(stmt->get(), 5);
    stmt->reset();
    if (token.secret_sha256.size() != secret_sha256.size() ||
        CRYPTO_memcmp(token.secret_sha256.data(), secret_sha256.data(), secret_sha256.size()) !=
            0) {
      return absl::PermissionDeniedError("join token " + id + ": wrong secret");
    }
    if (token.expires <= now) {
      return absl::PermissionDeniedError("join token " + id + " expired at " +
                                         common::FormatRfc3339(token.expires));
    }
    if (uses_left <= 0) return absl::PermissionDeniedError("join token " + id + " is used up");
    if (!token.node.empty() && token.node != node) {
      return absl::PermissionDeniedError("join token " + id + " is for node '" + token.node +
                                         "', not '" + node + "'");
    }
    auto use = PrepareRead(writer_.get(),
                           "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ? AND "
                           "uses_left > 0");
    if (!use.ok()) return use.status();
    sqlite3_bind_text(use->get(), 1, id.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(use->get()) != SQLITE_DONE) {
      return Error(writer_.get(), "using a join token");
    }
    if (sqlite3_changes(writer_.get()) != 1) {
      return absl::PermissionDeniedError("join token " + id + " is used up");
    }
    token.uses = static_cast<uint32_t>(uses_left - 1);
    return token;
  }

  absl::Status SetNodeAccess(const NodeAccess& access, const std::string& by,
                             common::Clock::time_point now) override {
    std::lock_guard lock(write_mu_);
    // Allowing keeps the revocation time: certificates from before it stay refused.
    auto stmt = PrepareRead(
        writer_.get(),
        "INSERT INTO node_access(cluster, node, revoked, revoked_ms, changed_by, changed_ms) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(cluster, node) DO UPDATE SET "
        "revoked = excluded.revoked, changed_by = excluded.changed_by, "
        "changed_ms = excluded.changed_ms, revoked_ms = CASE WHEN excluded.revoked = 1 THEN "
        "excluded.revoked_ms ELSE node_access.revoked_ms END");
    if (!stmt.ok()) return stmt.status();
    BindTexts(stmt->get(), {access.cluster, access.node});
    sqlite3_bind_int(stmt->get(), 3, access.revoked ? 1 : 0);
    sqlite3_bind_int64(stmt->get(), 4, common::ToUnixMillis(access.revoked_at));
    sqlite3_bind_text(stmt->get(), 5, by.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt->get(), 6, common::ToUnixMillis(now));
    if (sqlite3_step(stmt->get()) != SQLITE_DONE) {
      return Error(writer_.get(), "recording a node's access");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<NodeAccess>> NodeAccessList() override {
    const ReaderPool::Lease reader = readers_.Acquire();
    auto stmt =
        PrepareRead(reader.db(), "SELECT cluster, node, revoked, revoked_ms FROM node_access");
    if (!stmt.ok()) return stmt.status();
    std::vector<NodeAccess> out;
    int rc;
    while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
      NodeAccess a;
      a.cluster = Text(stmt->get(), 0);
      a.node = Text(stmt->get(), 1);
      a.revoked = sqlite3_column_int(stmt->get(), 2) != 0;
      a.revoked_at = common::FromUnixMillis(sqlite3_column_int64(stmt->get(), 3));
      out.push_back(std::move(a));
    }
    if (rc != SQLITE_DONE) return Error(reader.db(), "reading node access");
    return out;
  }

  absl::Status RecordIssued(const IssuedCertificate& cert, common::Clock::time_point now) override {
    std::lock_guard lock(write_mu_);
    auto stmt =
        PrepareRead(writer_.get(),
                    "INSERT OR REPLACE INTO issued_certificates(serial, cluster, node, "
                    "issued_ms, not_after_ms, method, source) VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    BindTexts(stmt->get(), {cert.serial, cert.cluster, cert.node});
    sqlite3_bind_int64(stmt->get(), 4, common::ToUnixMillis(now));
    sqlite3_bind_int64(stmt->get(), 5, common::ToUnixMillis(cert.not_after));
    sqlite3_bind_text(stmt->get(), 6, cert.method.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt->get(), 7, cert.source.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt->get()) != SQLITE_DONE) {
      return Error(writer_.get(), "recording an issued certificate");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> LastIssueMethod(const std::string& cluster,
                                              const std::string& node) override {
    const ReaderPool::Lease reader = readers_.Acquire();
    auto stmt = PrepareRead(reader.db(),
                            "SELECT method FROM issued_certificates WHERE cluster = ? AND node = ? "
                            "ORDER BY issued_ms DESC LIMIT 1");
    if (!stmt.ok()) return stmt.status();
    BindTexts(stmt->get(), {cluster, node});
    const int rc = sqlite3_step(stmt->get());
    if (rc == SQLITE_ROW) return Text(stmt->get(), 0);
    if (rc != SQLITE_DONE) return Error(reader.db(), "reading issued certificates");
    return std::string();
  }

  absl::Status RecordNodeCertificate(const std::string& cluster, const std::string& node,
                                     const std::string& serial, common::Clock::time_point not_after,
                                     common::Clock::time_point now) override {
    std::lock_guard lock(write_mu_);
    auto stmt = PrepareRead(writer_.get(),
                            "INSERT OR REPLACE INTO node_certificates(cluster, node, serial, "
                            "not_after_ms, seen_ms) VALUES (?, ?, ?, ?, ?)");
    if (!stmt.ok()) return stmt.status();
    BindTexts(stmt->get(), {cluster, node, serial});
    sqlite3_bind_int64(stmt->get(), 4, common::ToUnixMillis(not_after));
    sqlite3_bind_int64(stmt->get(), 5, common::ToUnixMillis(now));
    if (sqlite3_step(stmt->get()) != SQLITE_DONE) {
      return Error(writer_.get(), "recording a node's certificate");
    }
    return absl::OkStatus();
  }

 private:
  static void BindTexts(sqlite3_stmt* stmt, std::initializer_list<std::string> values) {
    int i = 1;
    for (const auto& v : values) sqlite3_bind_text(stmt, i++, v.c_str(), -1, SQLITE_TRANSIENT);
  }

  // Score = 100 * weight of passing scored results / weight of scored results that were
  // evaluated (PASS, FAIL, ERROR). Unscored, manual and not-applicable results do not count.
  struct ScoreAccumulator {
    v1::StatusCounts counts;
    double pass_weight = 0;
    double total_weight = 0;
    void Add(v1::Status status, v1::Severity severity, bool scored, uint32_t n) {
      common::AddStatusCount(counts, status, n);
      if (!scored) return;
      const double w = SeverityWeight(severity) * static_cast<double>(n);
      if (status == v1::STATUS_PASS) {
        pass_weight += w;
        total_weight += w;
      } else if (status == v1::STATUS_FAIL || status == v1::STATUS_ERROR) {
        total_weight += w;
      }
    }
    v1::Score ToScore(const std::string& scope) const {
      v1::Score s;
      s.set_scope(scope);
      s.set_score(total_weight == 0 ? 100.0 : 100.0 * pass_weight / total_weight);
      *s.mutable_counts() = counts;
      return s;
    }
  };

  static std::string Text(sqlite3_stmt* s, int col) {
    const auto* p = sqlite3_column_text(s, col);
    return p ? reinterpret_cast<const char*>(p) : "";
  }

  absl::Status Error(sqlite3* db, const std::string& what) const {
    const int code = sqlite3_extended_errcode(db);
    std::string msg = path_ + ": " + what + ": " + sqlite3_errmsg(db);
    if ((code & 0xff) == SQLITE_FULL) return absl::ResourceExhaustedError(msg + " (disk full)");
    if ((code & 0xff) == SQLITE_BUSY) return absl::UnavailableError(msg);
    return absl::InternalError(msg);
  }

  absl::Status Exec(sqlite3* db, const char* sql) const {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      const int code = sqlite3_extended_errcode(db) & 0xff;
      std::string text = path_ + ": " + sql + ": " + msg;
      if (code == SQLITE_FULL) return absl::ResourceExhaustedError(text + " (disk full)");
      return absl::InternalError(text);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Stmt> PrepareRead(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return Error(db, "preparing query");
    }
    return Stmt(stmt);
  }

  // Runs a prepared statement to completion; resets it for reuse.
  absl::Status Step(const Stmt& stmt, const char* what) {
    const int rc = sqlite3_step(stmt.get());
    sqlite3_reset(stmt.get());
    sqlite3_clear_bindings(stmt.get());
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return Error(writer_.get(), what);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> StepId(const Stmt& stmt, const char* what) {
    const int rc = sqlite3_step(stmt.get());
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(stmt.get(), 0) : -1;
    if (rc == SQLITE_ROW) (void)sqlite3_step(stmt.get());
    sqlite3_reset(stmt.get());
    sqlite3_clear_bindings(stmt.get());
    if (rc != SQLITE_ROW) return Error(writer_.get(), what);
    return id;
  }

  // The bound string must outlive the statement's next step (every caller steps right away).
  static void BindText(const Stmt& s, int i, const std::string& v) {
    sqlite3_bind_text(s.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }

  // A result_counts row: benchmark, section, namespace, status, severity, scored.
  using CountBucket = std::tuple<std::string, std::string, std::string, int, int, int>;

  absl::StatusOr<CommitStats> CommitOne(const v1::NodeReport& report,
                                        common::Clock::time_point now) {
    CommitStats stats;
    if (report.scan_id().empty()) return absl::InvalidArgumentError("report has no scan id");
    const std::string& node_name = report.node().node_name();
    if (node_name.empty()) return absl::InvalidArgumentError("report has no node name");

    BindText(find_scan_, 1, report.scan_id());
    const int found = sqlite3_step(find_scan_.get());
    sqlite3_reset(find_scan_.get());
    sqlite3_clear_bindings(find_scan_.get());
    if (found == SQLITE_ROW) {
      stats.duplicate = true;
      return stats;
    }
    const std::string cluster =
        report.node().cluster().empty() ? "default" : report.node().cluster();
    const int interval = report.scan_interval_seconds() > 0
                             ? static_cast<int>(report.scan_interval_seconds())
                             : kDefaultIntervalSeconds;
    // A heartbeat (a scan that found nothing the collector does not hold) only says the node is
    // alive: no scan row, so the scans table grows with what changes, not with time. Sent again,
    // it does the same. A node not known yet takes the full path.
    if (!report.full() && report.results_size() == 0 && report.drift_size() == 0) {
      const std::string identity = report.node().SerializeAsString();
      sqlite3_bind_blob(touch_node_.get(), 1, identity.data(), static_cast<int>(identity.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_int64(touch_node_.get(), 2, common::ToUnixMillis(now));
      sqlite3_bind_int(touch_node_.get(), 3, interval);
      BindText(touch_node_, 4, node_name);
      BindText(touch_node_, 5, cluster);
      if (auto s = Step(touch_node_, "storing a heartbeat"); !s.ok()) return s;
      if (sqlite3_changes(writer_.get()) > 0) return stats;
    }
    BindText(upsert_cluster_, 1, cluster);
    auto cluster_id = StepId(upsert_cluster_, "storing cluster");
    if (!cluster_id.ok()) return cluster_id.status();

    const int64_t now_ms = common::ToUnixMillis(now);
    const std::string identity = report.node().SerializeAsString();
    sqlite3_bind_int64(upsert_node_.get(), 1, *cluster_id);
    BindText(upsert_node_, 2, node_name);
    sqlite3_bind_blob(upsert_node_.get(), 3, identity.data(), static_cast<int>(identity.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(upsert_node_.get(), 4, now_ms);
    BindText(upsert_node_, 5, report.scan_id());
    sqlite3_bind_int(upsert_node_.get(), 6, interval);
    auto node_id = StepId(upsert_node_, "storing node");
    if (!node_id.ok()) return node_id.status();

    BindText(insert_scan_, 1, report.scan_id());
    sqlite3_bind_int64(insert_scan_.get(), 2, *node_id);
    sqlite3_bind_int64(insert_scan_.get(), 3,
                       common::ToUnixMillis(common::FromProto(report.started_at())));
    sqlite3_bind_int64(insert_scan_.get(), 4,
                       common::ToUnixMillis(common::FromProto(report.finished_at())));
    sqlite3_bind_int64(insert_scan_.get(), 5, now_ms);
    sqlite3_bind_int(insert_scan_.get(), 6, report.full() ? 1 : 0);
    sqlite3_bind_int(insert_scan_.get(), 7, report.results_size());
    if (auto s = Step(insert_scan_, "storing scan"); !s.ok()) return s;

    // The node's current verdicts, in one read: what each result replaces.
    struct Current {
      std::string check_id, benchmark, object;
      int status, severity, scored;
      std::string section, ns;
      int64_t digest;
    };
    std::unordered_map<std::string, Current> current;
    sqlite3_bind_int64(current_status_.get(), 1, *node_id);
    while (sqlite3_step(current_status_.get()) == SQLITE_ROW) {
      sqlite3_stmt* row = current_status_.get();
      Current c{Text(row, 0),
                Text(row, 1),
                Text(row, 2),
                sqlite3_column_int(row, 3),
                sqlite3_column_int(row, 4),
                sqlite3_column_int(row, 5),
                Text(row, 6),
                Text(row, 7),
                sqlite3_column_int64(row, 8)};
      std::string key = c.check_id + '\x1f' + c.benchmark + '\x1f' + c.object;
      current.emplace(std::move(key), std::move(c));
    }
    sqlite3_reset(current_status_.get());
    sqlite3_clear_bindings(current_status_.get());

    // Changes to result_counts, applied once per bucket.
    std::map<CountBucket, int64_t> counts;
    std::unordered_map<std::string, CountBucket> written;  // rows this report carried
    std::string blob, object, ns, section;
    for (const auto& r : report.results()) {
      ++stats.results;
      object = common::ResourceKey(r.resource());
      ns = common::ResourceScope(r);
      section = SectionOf(r.benchmark_id());
      blob.clear();
      r.SerializeToString(&blob);
      const int64_t digest = Digest(blob);
      std::string key = r.check_id() + '\x1f' + r.benchmark() + '\x1f' + object;
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
      written[std::move(key)] = bucket;

      sqlite3_bind_int64(upsert_result_.get(), 1, *node_id);
      BindText(upsert_result_, 2, r.check_id());
      BindText(upsert_result_, 3, r.benchmark());
      BindText(upsert_result_, 4, r.benchmark_id());
      sqlite3_bind_int(upsert_result_.get(), 5, r.status());
      sqlite3_bind_int(upsert_result_.get(), 6, r.severity());
      sqlite3_bind_int(upsert_result_.get(), 7, r.scored() ? 1 : 0);
      sqlite3_bind_blob(upsert_result_.get(), 8, blob.data(), static_cast<int>(blob.size()),
                        SQLITE_STATIC);
      BindText(upsert_result_, 9, report.scan_id());
      sqlite3_bind_int64(upsert_result_.get(), 10, now_ms);
      BindText(upsert_result_, 11, object);
      BindText(upsert_result_, 12, ns);
      BindText(upsert_result_, 13, section);
      sqlite3_bind_int64(upsert_result_.get(), 14, digest);
      if (auto s = Step(upsert_result_, "storing result"); !s.ok()) return s;
      ++stats.written;

      // A result seen for the first time is not a change: history starts at the first change
      // (the first verdict is the oldest change's old status, or the current one).
      if (old_status != 0 && old_status != r.status()) {
        sqlite3_bind_int64(insert_transition_.get(), 1, *node_id);
        BindText(insert_transition_, 2, r.check_id());
        BindText(insert_transition_, 3, r.benchmark());
        sqlite3_bind_int(insert_transition_.get(), 4, old_status);
        sqlite3_bind_int(insert_transition_.get(), 5, r.status());
        sqlite3_bind_int64(insert_transition_.get(), 6, now_ms);
        BindText(insert_transition_, 7, report.scan_id());
        BindText(insert_transition_, 8, object);
        if (auto s = Step(insert_transition_, "storing transition"); !s.ok()) return s;
        ++stats.transitions;
      }
    }
    if (report.full()) {
      // A full report is the whole truth: the current results it did not carry are gone.
      for (const auto& [key, c] : current) {
        sqlite3_bind_int64(delete_result_.get(), 1, *node_id);
        BindText(delete_result_, 2, c.check_id);
        BindText(delete_result_, 3, c.benchmark);
        BindText(delete_result_, 4, c.object);
        if (auto s = Step(delete_result_, "removing stale results"); !s.ok()) return s;
        counts[{c.benchmark, c.section, c.ns, c.status, c.severity, c.scored}]--;
      }
    }
    std::string event_blob;
    for (const auto& d : report.drift()) {
      if (d.event_id().empty()) return absl::InvalidArgumentError("drift event without an id");
      event_blob.clear();
      d.SerializeToString(&event_blob);
      BindText(insert_drift_, 1, d.event_id());
      sqlite3_bind_int64(insert_drift_.get(), 2, *node_id);
      sqlite3_bind_int64(insert_drift_.get(), 3,
                         common::ToUnixMillis(common::FromProto(d.observed_at())));
      sqlite3_bind_int64(insert_drift_.get(), 4, now_ms);
      BindText(insert_drift_, 5, report.scan_id());
      sqlite3_bind_blob(insert_drift_.get(), 6, event_blob.data(),
                        static_cast<int>(event_blob.size()), SQLITE_STATIC);
      if (auto s = Step(insert_drift_, "storing drift event"); !s.ok()) return s;
    }
    for (const auto& [bucket, delta] : counts) {
      if (delta == 0) continue;
      const auto& [benchmark, bucket_section, bucket_ns, status, severity, scored] = bucket;
      sqlite3_bind_int64(bump_count_.get(), 1, *node_id);
      BindText(bump_count_, 2, benchmark);
      BindText(bump_count_, 3, bucket_section);
      BindText(bump_count_, 4, bucket_ns);
      sqlite3_bind_int(bump_count_.get(), 5, status);
      sqlite3_bind_int(bump_count_.get(), 6, severity);
      sqlite3_bind_int(bump_count_.get(), 7, scored);
      sqlite3_bind_int64(bump_count_.get(), 8, delta);
      if (auto s = Step(bump_count_, "counting results"); !s.ok()) return s;
    }
    return stats;
  }

  std::string path_;
  mutable std::mutex space_mu_;
  StoreSpace space_;
  std::mutex write_mu_;
  Db writer_;
  ReaderPool readers_;
  Stmt find_scan_, touch_node_, upsert_cluster_, upsert_node_, insert_scan_, current_status_,
      upsert_result_, insert_transition_, delete_result_, bump_count_, insert_drift_;
};

absl::StatusOr<Db> OpenDb(const std::string& path, bool readonly) {
  sqlite3* raw = nullptr;
  const int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    return absl::InvalidArgumentError("cannot open database " + path + ": " +
                                      (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  sqlite3_extended_result_codes(db.get(), 1);
  return db;
}

absl::Status ExecOn(sqlite3* db, const std::string& path, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return absl::InternalError(path + ": " + msg);
  }
  return absl::OkStatus();
}

// After migration 5's SQL: rows that schema 4 stored as `check[object]` get their check id, object
// and namespace from the stored result, whose check id loses the suffix too, and the pseudo-node
// `cluster`'s other rows (cluster-wide verdicts) their namespace; then the counts are rebuilt
// with their section and namespace.
absl::Status SplitObjectKeys(sqlite3* db, const std::string& path) {
  auto prepare = [&](const char* sql) -> absl::StatusOr<Stmt> {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
      return absl::InternalError(path + ": " + sqlite3_errmsg(db));
    }
    return Stmt(raw);
  };
  auto select = prepare(
      "SELECT node_id, check_id, benchmark, result FROM results WHERE object = '' AND "
      "((instr(check_id, '[') > 1 AND check_id LIKE '%]') OR "
      "node_id IN (SELECT id FROM nodes WHERE name = 'cluster'))");
  auto update = prepare(
      "UPDATE results SET check_id = ?1, object = ?2, namespace = ?3, result = ?4 WHERE "
      "node_id = ?5 AND check_id = ?6 AND benchmark = ?7 AND object = ''");
  if (!select.ok()) return select.status();
  if (!update.ok()) return update.status();
  struct Row {
    int64_t node_id;
    std::string key, benchmark, blob;
  };
  std::vector<Row> rows;  // read first: updating the primary key while scanning it is unsafe
  while (sqlite3_step(select->get()) == SQLITE_ROW) {
    sqlite3_stmt* st = select->get();
    const auto* blob = static_cast<const char*>(sqlite3_column_blob(st, 3));
    rows.push_back(
        {sqlite3_column_int64(st, 0), reinterpret_cast<const char*>(sqlite3_column_text(st, 1)),
         reinterpret_cast<const char*>(sqlite3_column_text(st, 2)),
         std::string(blob ? blob : "", static_cast<size_t>(sqlite3_column_bytes(st, 3)))});
  }
  for (const auto& row : rows) {
    v1::CheckResult r;
    if (!r.ParseFromString(row.blob)) {
      return absl::DataLossError(path + ": stored result " + row.key + " does not parse");
    }
    const bool suffixed = row.key.find('[') != std::string::npos;
    const std::string check_id = row.key.substr(0, row.key.find('['));
    r.set_check_id(check_id);
    std::string object = common::ResourceKey(r.resource());
    if (object.empty() && suffixed) {
      object = row.key.substr(check_id.size() + 1, row.key.size() - check_id.size() - 2);
    }
    const std::string ns = common::ResourceScope(r);
    const std::string blob = r.SerializeAsString();
    sqlite3_stmt* st = update->get();
    sqlite3_bind_text(st, 1, check_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, object.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, ns.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, row.node_id);
    sqlite3_bind_text(st, 6, row.key.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, row.benchmark.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) {
      return absl::InternalError(path + ": splitting " + row.key + ": " + sqlite3_errmsg(db));
    }
    sqlite3_reset(st);
  }
  select->reset();
  update->reset();
  return ExecOn(db, path,
                "INSERT INTO result_counts SELECT node_id, benchmark, section, namespace, status, "
                "severity, scored, COUNT(*) FROM results GROUP BY 1, 2, 3, 4, 5, 6, 7");
}

absl::Status Migrate(sqlite3* db, const std::string& path) {
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &raw, nullptr);
  Stmt stmt(raw);
  int version = 0;
  if (stmt && sqlite3_step(stmt.get()) == SQLITE_ROW) version = sqlite3_column_int(stmt.get(), 0);
  stmt.reset();  // an open statement would lock the schema against DROP
  const int latest = static_cast<int>(std::size(kMigrations));
  if (version > latest) {
    return absl::FailedPreconditionError(path + " has schema version " + std::to_string(version) +
                                         ", newer than this collector's " + std::to_string(latest) +
                                         "; upgrade kspm-collector");
  }
  for (int v = version; v < latest; ++v) {
    // Each step in one transaction: SQL, then the step's code, then the version.
    auto s = ExecOn(db, path, std::string("BEGIN;") + kMigrations[v]);
    if (s.ok() && v + 1 == 5) s = SplitObjectKeys(db, path);
    if (s.ok()) s = ExecOn(db, path, "PRAGMA user_version = " + std::to_string(v + 1) + ";COMMIT;");
    if (!s.ok()) {
      (void)ExecOn(db, path, "ROLLBACK");
      return absl::InternalError("migrating " + path + " to schema " + std::to_string(v + 1) +
                                 ": " + std::string(s.message()));
    }
    spdlog::info("store {}: migrated to schema version {}", path, v + 1);
  }
  return absl::OkStatus();
}

}  // namespace

int SeverityWeight(v1::Severity severity) {
  switch (severity) {
    case v1::SEVERITY_CRITICAL:
      return 10;
    case v1::SEVERITY_HIGH:
      return 7;
    case v1::SEVERITY_MEDIUM:
      return 4;
    case v1::SEVERITY_LOW:
      return 2;
    default:
      return 1;
  }
}

// sqlite's own check of `db`: empty when it answers "ok", else its first complaints.
absl::Status IntegrityOf(sqlite3* db, const std::string& path, bool full) {
  sqlite3_stmt* raw = nullptr;
  const char* sql = full ? "PRAGMA integrity_check(20)" : "PRAGMA quick_check(20)";
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
    const std::string why = sqlite3_errmsg(db);
    sqlite3_finalize(raw);
    return absl::DataLossError("database " + path + " cannot be checked: " + why);
  }
  Stmt stmt(raw);
  std::vector<std::string> problems;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    const auto* text = sqlite3_column_text(stmt.get(), 0);
    const std::string line = text ? reinterpret_cast<const char*>(text) : "";
    if (line != "ok") problems.push_back(line);
  }
  if (rc != SQLITE_DONE) problems.push_back(sqlite3_errmsg(db));
  if (problems.empty()) return absl::OkStatus();
  std::string msg = "database " + path + " is corrupt (" + (full ? "integrity" : "quick") +
                    "_check): " + problems[0];
  if (problems.size() > 1) msg += " (and " + std::to_string(problems.size() - 1) + " more)";
  msg += "; restore a backup (kspm-collector backup) or move the file aside to start empty";
  return absl::DataLossError(msg);
}

namespace {

uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// sqlite's WAL checksum (https://www.sqlite.org/fileformat2.html#walformat): over 32-bit words
// in the byte order the log's magic number names, two running sums seeded by the previous ones.
void WalChecksum(bool big_endian, const unsigned char* data, size_t n, uint32_t& s0, uint32_t& s1) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint32_t x0, x1;
    if (big_endian) {
      x0 = Be32(data + i);
      x1 = Be32(data + i + 4);
    } else {
      std::memcpy(&x0, data + i, 4);
      std::memcpy(&x1, data + i + 4, 4);
    }
    s0 += x0 + s1;
    s1 += x1 + s0;
  }
}

}  // namespace

absl::Status CheckSqliteLog(const std::string& path) {
  const std::string wal = path + "-wal";
  std::ifstream in(wal, std::ios::binary);
  if (!in) return absl::OkStatus();  // no log: nothing waits to be replayed
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  if (bytes.size() < 32) return absl::OkStatus();
  const uint32_t magic = Be32(bytes.data());
  if (magic != 0x377f0682 && magic != 0x377f0683) {
    return absl::DataLossError(wal +
                               ": not a write-ahead log (bad magic number); sqlite would "
                               "ignore it and every commit in it");
  }
  const bool big_endian = (magic & 1) != 0;
  const uint32_t page_size = Be32(bytes.data() + 8);
  const uint32_t salt1 = Be32(bytes.data() + 16), salt2 = Be32(bytes.data() + 20);
  uint32_t s0 = 0, s1 = 0;
  WalChecksum(big_endian, bytes.data(), 24, s0, s1);
  if (s0 != Be32(bytes.data() + 24) || s1 != Be32(bytes.data() + 28)) {
    // A damaged header makes sqlite ignore the whole log; only a concern if frames follow.
    if (bytes.size() > 32) {
      return absl::DataLossError(wal +
                                 ": the log's header fails its checksum; sqlite would "
                                 "ignore the log and every commit in it");
    }
    return absl::OkStatus();
  }
  if (page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)) != 0) {
    return absl::DataLossError(wal + ": the log's header names page size " +
                               std::to_string(page_size));
  }
  const size_t frame_size = 24 + static_cast<size_t>(page_size);
  const size_t frames = (bytes.size() - 32) / frame_size;
  for (size_t i = 0; i < frames; ++i) {
    const unsigned char* f = bytes.data() + 32 + i * frame_size;
    // Frames of an older generation (the log restarts after a checkpoint) carry other salts:
    // they end the log, legitimately.
    if (Be32(f + 8) != salt1 || Be32(f + 12) != salt2) return absl::OkStatus();
    WalChecksum(big_endian, f, 8, s0, s1);
    WalChecksum(big_endian, f + 24, page_size, s0, s1);
    if (s0 == Be32(f + 16) && s1 == Be32(f + 20)) continue;
    // A bad frame at the very end is a write cut short by a crash; a bad frame followed by more
    // frames of the same generation is damage: sqlite stops at it and silently drops every
    // commit after it.
    size_t commits_after = 0;
    for (size_t j = i + 1; j < frames; ++j) {
      const unsigned char* g = bytes.data() + 32 + j * frame_size;
      if (Be32(g + 8) != salt1 || Be32(g + 12) != salt2) break;
      if (Be32(g + 4) != 0) ++commits_after;
    }
    if (commits_after == 0) return absl::OkStatus();
    return absl::DataLossError(
        wal + ": frame " + std::to_string(i + 1) + " (offset " +
        std::to_string(32 + i * frame_size) +
        ") fails its checksum; sqlite would silently drop "
        "it and the " +
        std::to_string(commits_after) +
        " commit(s) after it. Keep a copy of "
        "the file; then restore a backup, or start with --accept-damaged-log to keep the "
        "commits before the damage (agents resend the rest with their next full report)");
  }
  return absl::OkStatus();
}

absl::Status CheckSqliteStore(const std::string& path, bool full) {
  if (auto s = CheckSqliteLog(path); !s.ok()) return s;
  auto db = OpenDb(path, true);
  if (!db.ok()) return db.status();
  return IntegrityOf(db->get(), path, full);
}

absl::Status BackupSqliteStore(const std::string& path, const std::string& to) {
  if (::access(to.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError("backup target " + to + " exists; not overwritten");
  }
  auto db = OpenDb(path, true);
  if (!db.ok()) return db.status();
  // One read transaction: the copy is the database as of its start, writers go on meanwhile.
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db->get(), "VACUUM INTO ?", -1, &raw, nullptr) != SQLITE_OK) {
    const std::string why = sqlite3_errmsg(db->get());
    sqlite3_finalize(raw);
    return absl::InternalError("cannot back up " + path + ": " + why);
  }
  Stmt stmt(raw);
  sqlite3_bind_text(stmt.get(), 1, to.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(stmt.get()) != SQLITE_DONE) {
    return absl::InternalError("cannot back up " + path + " to " + to + ": " +
                               sqlite3_errmsg(db->get()));
  }
  return CheckSqliteStore(to, /*full=*/true);
}

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, int query_readers,
                                                       bool accept_damaged_log) {
  // Before sqlite sees the log: its recovery would drop the damaged part without a word.
  if (auto s = CheckSqliteLog(path); !s.ok()) {
    if (!accept_damaged_log) return s;
    spdlog::error("{} (accepted with --accept-damaged-log: going on without those commits)",
                  std::string(s.message()));
  }
  auto writer = OpenDb(path, false);
  if (!writer.ok()) return writer.status();
  // WAL: readers never block the writer. synchronous=NORMAL: a commit survives a process crash;
  // the last commits may be lost on power failure, and acks are resent by agents then. A 64 MiB
  // page cache keeps the B-tree interior of a few million results in memory.
  for (const char* pragma : {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL",
                             "PRAGMA foreign_keys = ON", "PRAGMA cache_size = -65536",
                             "PRAGMA wal_autocheckpoint = 4000", "PRAGMA temp_store = MEMORY"}) {
    if (auto s = ExecOn(writer->get(), path, pragma); !s.ok()) {
      return absl::InvalidArgumentError("cannot use database " + path + ": " +
                                        std::string(s.message()));
    }
  }
  if (auto s = IntegrityOf(writer->get(), path, /*full=*/false); !s.ok()) return s;
  if (auto s = Migrate(writer->get(), path); !s.ok()) return s;
  std::vector<Db> readers;
  for (int i = 0; i < std::max(1, query_readers); ++i) {
    auto reader = OpenDb(path, true);
    if (!reader.ok()) return reader.status();
    readers.push_back(*std::move(reader));
  }
  auto store = std::make_unique<SqliteStore>(path, *std::move(writer), std::move(readers));
  if (auto s = store->Prepare(); !s.ok()) return s;
  store->AfterCommit(false, common::Clock::now());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace kspm::collector::store

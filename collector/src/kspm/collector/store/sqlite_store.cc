// The sqlite store: opening it (log check, pragmas, integrity, migrations, reader pool), its
// prepared statements and the space it watches.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "kspm/collector/store/sqlite_internal.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store {
namespace internal {

absl::Status SqliteStore::Prepare() {
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
       "SELECT check_id, benchmark, kind, object_namespace, name, container, status, severity, "
       "scored, section, namespace, digest FROM results WHERE node_id = ?"},
      {&current_of_check_,
       "SELECT check_id, benchmark, kind, object_namespace, name, container, status, severity, "
       "scored, section, namespace, digest FROM results WHERE node_id = ? AND check_id = ?"},
      {&current_of_object_,
       "SELECT check_id, benchmark, kind, object_namespace, name, container, status, severity, "
       "scored, section, namespace, digest FROM results WHERE node_id = ? AND check_id = ? AND "
       "benchmark = ? AND kind = ? AND object_namespace = ? AND name = ?"},
      {&current_in_namespace_,
       "SELECT check_id, benchmark, kind, object_namespace, name, container, status, severity, "
       "scored, section, namespace, digest FROM results WHERE node_id = ?1 AND check_id = ?2 AND "
       "benchmark = ?3 AND (object_namespace = ?4 OR (kind = 'Namespace' AND object_namespace = "
       "'' AND name = ?4))"},
      {&current_checks_, "SELECT DISTINCT check_id FROM results WHERE node_id = ?"},
      {&node_has_results_, "SELECT 1 FROM result_counts WHERE node_id = ? AND n > 0 LIMIT 1"},
      {&set_scan_results_, "UPDATE scans SET results = ?, finished_ms = ? WHERE scan_id = ?"},
      {&bump_count_,
       "INSERT INTO result_counts(node_id, benchmark, section, namespace, status, severity, "
       "scored, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(node_id, benchmark, section, "
       "namespace, status, severity, scored) DO UPDATE SET n = n + excluded.n"},
      {&upsert_result_,
       "INSERT INTO results(node_id, check_id, benchmark, benchmark_id, status, severity, "
       "scored, result, scan_id, updated_ms, changed_ms, kind, object_namespace, name, "
       "container, namespace, section, digest) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) "
       "ON CONFLICT(node_id, check_id, benchmark, kind, object_namespace, name, container) "
       "DO UPDATE SET "
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
       "scan_id, kind, object_namespace, name, container) "
       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
      {&delete_result_,
       "DELETE FROM results WHERE node_id = ? AND check_id = ? AND benchmark = ? AND "
       "kind = ? AND object_namespace = ? AND name = ? AND container = ?"},
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

StoreSpace SqliteStore::Space() const {
  std::lock_guard lock(space_mu_);
  return space_;
}

// Measures the space left; when it is tight (or a commit just failed for lack of it), moves
// the log into the database and truncates it, so the log never holds space the database
// needs. A commit that failed is retried by its agent; once space is back the next one
// succeeds on the same connection, without a restart.
void SqliteStore::AfterCommit(bool full, common::Clock::time_point now) {
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

StoreSpace SqliteStore::Measure() const {
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

void SqliteStore::BindTexts(sqlite3_stmt* stmt, std::initializer_list<std::string> values) {
  int i = 1;
  for (const auto& v : values) sqlite3_bind_text(stmt, i++, v.c_str(), -1, SQLITE_TRANSIENT);
}

std::string SqliteStore::Text(sqlite3_stmt* s, int col) {
  const auto* p = sqlite3_column_text(s, col);
  return p ? reinterpret_cast<const char*>(p) : "";
}

absl::Status SqliteStore::Error(sqlite3* db, const std::string& what) const {
  const int code = sqlite3_extended_errcode(db);
  std::string msg = path_ + ": " + what + ": " + sqlite3_errmsg(db);
  if ((code & 0xff) == SQLITE_FULL) return absl::ResourceExhaustedError(msg + " (disk full)");
  if ((code & 0xff) == SQLITE_BUSY) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

absl::Status SqliteStore::Exec(sqlite3* db, const char* sql) const {
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

absl::StatusOr<Stmt> SqliteStore::PrepareRead(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return Error(db, "preparing query");
  }
  return Stmt(stmt);
}

// Runs a prepared statement to completion; resets it for reuse.
absl::Status SqliteStore::Step(const Stmt& stmt, const char* what) {
  const int rc = sqlite3_step(stmt.get());
  sqlite3_reset(stmt.get());
  sqlite3_clear_bindings(stmt.get());
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return Error(writer_.get(), what);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqliteStore::StepId(const Stmt& stmt, const char* what) {
  const int rc = sqlite3_step(stmt.get());
  int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(stmt.get(), 0) : -1;
  if (rc == SQLITE_ROW) (void)sqlite3_step(stmt.get());
  sqlite3_reset(stmt.get());
  sqlite3_clear_bindings(stmt.get());
  if (rc != SQLITE_ROW) return Error(writer_.get(), what);
  return id;
}

// The bound string must outlive the statement's next step (every caller steps right away).
void SqliteStore::BindText(const Stmt& s, int i, const std::string& v) {
  sqlite3_bind_text(s.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

void SqliteStore::BindObject(const Stmt& s, int first, const ObjectKey& object) {
  BindText(s, first, object.kind);
  BindText(s, first + 1, object.ns);
  BindText(s, first + 2, object.name);
  BindText(s, first + 3, object.container);
}

}  // namespace internal

using internal::Db;
using internal::ExecOn;
using internal::IntegrityOf;
using internal::Migrate;
using internal::OpenDb;
using internal::SqliteStore;

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

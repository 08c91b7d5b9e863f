// The sqlite store's schema: migrations in order, each with its SQL and, where rows must be
// rewritten from their stored results, its code.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "kspm/collector/store/sql_store.h"
#include "kspm/common/render.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store::internal {

namespace {

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
    // 8: cluster results keyed by their object's kind, namespace, name and container, each a
    // column, instead of the string made for people (common::ResourceKey); transitions name
    // their object the same way. The step after this SQL (StructureObjectKeys) copies the
    // results, taking each key from the stored result, and splits the transitions' text.
    R"sql(
CREATE TABLE results_v8 (
  node_id INTEGER NOT NULL REFERENCES nodes(id),
  check_id TEXT NOT NULL,
  benchmark TEXT NOT NULL,
  kind TEXT NOT NULL,              -- the object of a cluster result; the four are '' on nodes
  object_namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  container TEXT NOT NULL,
  namespace TEXT NOT NULL,         -- common::ResourceScope: the namespace it is scored under
  section TEXT NOT NULL,
  benchmark_id TEXT NOT NULL,
  status INTEGER NOT NULL,
  severity INTEGER NOT NULL,
  scored INTEGER NOT NULL,
  result BLOB NOT NULL,            -- kspm.v1.CheckResult
  scan_id TEXT NOT NULL,
  updated_ms INTEGER NOT NULL,
  changed_ms INTEGER NOT NULL,
  digest INTEGER NOT NULL,
  PRIMARY KEY (node_id, check_id, benchmark, kind, object_namespace, name, container)
) WITHOUT ROWID;
ALTER TABLE transitions ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE transitions ADD COLUMN object_namespace TEXT NOT NULL DEFAULT '';
ALTER TABLE transitions ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE transitions ADD COLUMN container TEXT NOT NULL DEFAULT '';
)sql",
};

// A statement on `db`; the error names the file.
absl::StatusOr<RawStmt> PrepareOn(sqlite3* db, const std::string& path, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
    return absl::InternalError(path + ": " + sqlite3_errmsg(db));
  }
  return RawStmt(raw);
}

// After migration 5's SQL: rows that schema 4 stored as `check[object]` get their check id, object
// and namespace from the stored result, whose check id loses the suffix too, and the pseudo-node
// `cluster`'s other rows (cluster-wide verdicts) their namespace; then the counts are rebuilt
// with their section and namespace.
absl::Status SplitObjectKeys(sqlite3* db, const std::string& path) {
  auto prepare = [&](const char* sql) { return PrepareOn(db, path, sql); };
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

// Schema 7 keyed a cluster result by `Kind ns/name [container]`; schema 8 by four columns.
// Parses `text` back into them (Kubernetes names hold no space or slash, so the text is not
// ambiguous).
ObjectKey ParseObjectText(const std::string& text) {
  ObjectKey key;
  if (text.empty()) return key;
  std::string rest = text;
  const size_t space = rest.find(' ');
  key.kind = rest.substr(0, space);
  rest = space == std::string::npos ? "" : rest.substr(space + 1);
  if (const size_t open = rest.rfind(" ["); open != std::string::npos && rest.ends_with("]")) {
    key.container = rest.substr(open + 2, rest.size() - open - 3);
    rest = rest.substr(0, open);
  }
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    key.ns = rest.substr(0, slash);
    rest = rest.substr(slash + 1);
  }
  key.name = rest;
  return key;
}

// After migration 8's SQL: each result moves to the new table with its object's columns taken
// from the stored result; each transition's object text is split into the same columns.
absl::Status StructureObjectKeys(sqlite3* db, const std::string& path) {
  auto prepare = [&](const char* sql) { return PrepareOn(db, path, sql); };
  auto select = prepare(
      "SELECT node_id, check_id, benchmark, namespace, section, benchmark_id, status, severity, "
      "scored, result, scan_id, updated_ms, changed_ms, digest FROM results");
  if (!select.ok()) return select.status();
  auto insert = prepare(
      "INSERT INTO results_v8(node_id, check_id, benchmark, kind, object_namespace, name, "
      "container, namespace, section, benchmark_id, status, severity, scored, result, scan_id, "
      "updated_ms, changed_ms, digest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
      "?12, ?13, ?14, ?15, ?16, ?17, ?18)");
  if (!insert.ok()) return insert.status();
  while (sqlite3_step(select->get()) == SQLITE_ROW) {
    sqlite3_stmt* from = select->get();
    sqlite3_stmt* to = insert->get();
    v1::CheckResult r;
    if (!r.ParseFromArray(sqlite3_column_blob(from, 9), sqlite3_column_bytes(from, 9))) {
      return absl::DataLossError(path + ": a stored result of check " +
                                 reinterpret_cast<const char*>(sqlite3_column_text(from, 1)) +
                                 " does not parse");
    }
    const ObjectKey key = ObjectKey::Of(r.resource());
    // Parameters are 1-based, and the object's four come right after the benchmark.
    for (int col : {0, 6, 7, 8, 11, 12, 13}) {
      sqlite3_bind_int64(to, col < 3 ? col + 1 : col + 5, sqlite3_column_int64(from, col));
    }
    for (int col : {1, 2, 3, 4, 5, 10}) {
      sqlite3_bind_text(to, col < 3 ? col + 1 : col + 5,
                        reinterpret_cast<const char*>(sqlite3_column_text(from, col)), -1,
                        SQLITE_TRANSIENT);
    }
    sqlite3_bind_blob(to, 14, sqlite3_column_blob(from, 9), sqlite3_column_bytes(from, 9),
                      SQLITE_TRANSIENT);
    int i = 4;
    for (const std::string* v : {&key.kind, &key.ns, &key.name, &key.container}) {
      sqlite3_bind_text(to, i++, v->c_str(), -1, SQLITE_TRANSIENT);
    }
    if (sqlite3_step(to) != SQLITE_DONE) {
      return absl::InternalError(path + ": copying a result: " + sqlite3_errmsg(db));
    }
    sqlite3_reset(to);
  }
  select->reset();
  insert->reset();
  if (auto s = ExecOn(db, path, "DROP TABLE results; ALTER TABLE results_v8 RENAME TO results");
      !s.ok()) {
    return s;
  }
  auto objects = prepare("SELECT id, object FROM transitions WHERE object <> ''");
  if (!objects.ok()) return objects.status();
  std::vector<std::pair<int64_t, ObjectKey>> split;
  while (sqlite3_step(objects->get()) == SQLITE_ROW) {
    split.emplace_back(
        sqlite3_column_int64(objects->get(), 0),
        ParseObjectText(reinterpret_cast<const char*>(sqlite3_column_text(objects->get(), 1))));
  }
  objects->reset();
  auto update = prepare(
      "UPDATE transitions SET kind = ?, object_namespace = ?, name = ?, container = ? "
      "WHERE id = ?");
  if (!update.ok()) return update.status();
  for (const auto& [id, key] : split) {
    sqlite3_stmt* st = update->get();
    int i = 1;
    for (const std::string* v : {&key.kind, &key.ns, &key.name, &key.container}) {
      sqlite3_bind_text(st, i++, v->c_str(), -1, SQLITE_TRANSIENT);
    }
    sqlite3_bind_int64(st, 5, id);
    if (sqlite3_step(st) != SQLITE_DONE) {
      return absl::InternalError(path + ": splitting a transition's object: " + sqlite3_errmsg(db));
    }
    sqlite3_reset(st);
  }
  update->reset();
  return ExecOn(db, path, "ALTER TABLE transitions DROP COLUMN object");
}

}  // namespace

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

absl::Status Migrate(sqlite3* db, const std::string& path) {
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &raw, nullptr);
  RawStmt stmt(raw);
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
    if (s.ok() && v + 1 == 8) s = StructureObjectKeys(db, path);
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

}  // namespace kspm::collector::store::internal

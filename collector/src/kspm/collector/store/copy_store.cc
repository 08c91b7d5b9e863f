// kspm-collector migrate: a sqlite store copied into PostgreSQL, table by table, resumable (rows
// already there are skipped) and verified by counting both sides.
#include <chrono>

#include "kspm/collector/store/sql_store.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store {

namespace {

using internal::QueryOne;

// In the order their references need. Ids are copied as they are, so references hold.
constexpr const char* kTables[] = {
    "clusters",          "nodes",        "scans",       "results",     "result_counts",
    "transitions",       "drift_events", "join_tokens", "node_access", "issued_certificates",
    "node_certificates",
};
// Tables whose ids come from a sequence on PostgreSQL, set past the copied ids afterwards.
constexpr const char* kSerialTables[] = {"clusters", "nodes", "transitions", "drift_events"};

// Rows per INSERT statement, and per transaction.
constexpr size_t kRowsPerInsert = 100;
constexpr size_t kRowsPerCommit = 5000;

absl::StatusOr<std::vector<std::string>> PostgresColumns(sql::Connection& pg,
                                                         const std::string& table) {
  auto stmt = pg.Prepare(
      "SELECT column_name FROM information_schema.columns WHERE table_schema = "
      "current_schema() AND table_name = ? ORDER BY ordinal_position");
  if (!stmt.ok()) return stmt.status();
  (*stmt)->BindText(1, table);
  std::vector<std::string> out;
  absl::StatusOr<bool> row;
  while ((row = (*stmt)->Next()).ok() && *row) out.push_back((*stmt)->Text(0));
  if (!row.ok()) return row.status();
  return out;
}

std::string InsertSql(const std::string& table, const std::vector<std::string>& columns,
                      size_t rows) {
  std::string sql = "INSERT INTO " + table + "(";
  for (size_t i = 0; i < columns.size(); ++i) sql += (i ? ", \"" : "\"") + columns[i] + '"';
  sql += ") VALUES ";
  for (size_t r = 0; r < rows; ++r) {
    sql += r ? ", (" : "(";
    for (size_t i = 0; i < columns.size(); ++i) sql += i ? ", ?" : "?";
    sql += ")";
  }
  return sql + " ON CONFLICT DO NOTHING";
}

int64_t CountOn(sql::Connection& c, const std::string& table) {
  auto n = QueryOne(c, "SELECT COUNT(*) FROM " + table);
  return n.ok() ? std::strtoll(n->c_str(), nullptr, 10) : -1;
}

// One table: rows read from sqlite in key order, written in multi-row INSERTs that skip rows
// already copied (a run that stopped halfway goes on where it stopped).
absl::StatusOr<int64_t> CopyTable(sqlite3* from, const std::string& from_name, sql::Connection& to,
                                  const std::string& table,
                                  const std::function<void(const std::string&)>& progress) {
  auto columns = PostgresColumns(to, table);
  if (!columns.ok()) return columns.status();
  if (columns->empty()) return absl::InternalError(to.name() + ": no table " + table);
  std::string select = "SELECT ";
  for (size_t i = 0; i < columns->size(); ++i) {
    select += (i ? ", \"" : "\"") + (*columns)[i] + '"';  // quoted: `full` is a keyword
  }
  select += " FROM " + table;
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(from, select.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return absl::InvalidArgumentError(from_name + ": " + select + ": " + sqlite3_errmsg(from));
  }
  internal::RawStmt rows(raw);
  auto full = to.Prepare(InsertSql(table, *columns, kRowsPerInsert));
  if (!full.ok()) return full.status();
  const int width = static_cast<int>(columns->size());
  int64_t copied = 0;
  size_t in_batch = 0, in_transaction = 0;
  auto one = to.Prepare(InsertSql(table, *columns, 1));
  if (!one.ok()) return one.status();
  auto bind = [&](sql::Statement& stmt, int base) {
    for (int c = 0; c < width; ++c) {
      const int index = base + c + 1;
      switch (sqlite3_column_type(raw, c)) {
        case SQLITE_INTEGER:
          stmt.Bind(index, sqlite3_column_int64(raw, c));
          break;
        case SQLITE_TEXT:
          stmt.BindText(index, {reinterpret_cast<const char*>(sqlite3_column_text(raw, c)),
                                static_cast<size_t>(sqlite3_column_bytes(raw, c))});
          break;
        case SQLITE_BLOB: {
          const void* p = sqlite3_column_blob(raw, c);
          stmt.BindBlob(index, {static_cast<const char*>(p ? p : ""),
                                static_cast<size_t>(sqlite3_column_bytes(raw, c))});
          break;
        }
        default:
          break;  // NULL: left unbound
      }
    }
  };
  // Rows past the last whole statement go one by one.
  int64_t total = 0;
  {
    sqlite3_stmt* count = nullptr;
    sqlite3_prepare_v2(from, ("SELECT COUNT(*) FROM " + table).c_str(), -1, &count, nullptr);
    internal::RawStmt owned(count);
    if (count && sqlite3_step(count) == SQLITE_ROW) total = sqlite3_column_int64(count, 0);
  }
  const int64_t whole = total - total % static_cast<int64_t>(kRowsPerInsert);
  if (auto s = to.Begin(); !s.ok()) return s;
  int rc;
  while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
    absl::Status s;
    if (copied < whole) {
      bind(**full, static_cast<int>(in_batch) * width);
      if (++in_batch == kRowsPerInsert) {
        s = sql::Run(**full, "copying " + table);
        in_batch = 0;
      }
    } else {
      bind(**one, 0);
      s = sql::Run(**one, "copying " + table);
    }
    ++copied;
    if (s.ok() && ++in_transaction >= kRowsPerCommit) {
      s = to.Exec("COMMIT").status();
      if (s.ok()) s = to.Begin();
      in_transaction = 0;
      if (s.ok() && progress) progress(table + ": " + std::to_string(copied) + " rows");
    }
    if (!s.ok()) {
      (void)to.Exec("ROLLBACK");
      return s;
    }
  }
  if (rc != SQLITE_DONE) {
    (void)to.Exec("ROLLBACK");
    return absl::DataLossError(from_name + ": reading " + table + ": " + sqlite3_errmsg(from));
  }
  if (auto s = to.Exec("COMMIT"); !s.ok()) return s.status();
  return copied;
}

}  // namespace

absl::StatusOr<std::vector<CopiedTable>> CopySqliteToPostgres(
    const std::string& sqlite_path, const PostgresOptions& to,
    const std::function<void(const std::string&)>& progress) {
  // Opening it as a store first brings an older file to the current schema and checks it.
  {
    auto source = OpenSqliteStore(sqlite_path, 1);
    if (!source.ok()) return source.status();
  }
  auto from = internal::OpenDb(sqlite_path, /*readonly=*/true);
  if (!from.ok()) return from.status();
  const std::string name = RedactPostgresUrl(to.url);
  auto pg = internal::ConnectPostgres(to, name);
  if (!pg.ok()) return pg.status();
  sql::Connection& target = **pg;
  if (auto s = internal::MigratePostgresSchema(target); !s.ok()) return s;
  // A target that already holds posture from elsewhere is refused: merging two stores' ids
  // would attach rows to the wrong nodes.
  if (auto s = target.Exec(
          "CREATE TABLE IF NOT EXISTS kspm_copies (source TEXT PRIMARY KEY, started_ms BIGINT "
          "NOT NULL, finished_ms BIGINT)");
      !s.ok()) {
    return s.status();
  }
  auto stmt =
      target.Prepare("SELECT COUNT(*), COUNT(finished_ms) FROM kspm_copies WHERE source = ?");
  if (!stmt.ok()) return stmt.status();
  (*stmt)->BindText(1, sqlite_path);
  auto row = (*stmt)->Next();
  if (!row.ok()) return row.status();
  const bool resuming = (*stmt)->Int(0) > 0;
  const bool finished = (*stmt)->Int(1) > 0;
  (*stmt)->Reset();
  // A finished copy may have taken reports since: copying again would mix the file into them.
  if (finished) {
    return absl::FailedPreconditionError(name + " holds a finished copy of " + sqlite_path +
                                         "; it is not copied again");
  }
  const int64_t nodes = CountOn(target, "nodes");
  if (!resuming && nodes != 0) {
    return absl::FailedPreconditionError(name + " already holds posture (" + std::to_string(nodes) +
                                         " nodes) that was not copied from " + sqlite_path +
                                         ": copy into an empty database");
  }
  if (!resuming) {
    auto mark = target.Prepare("INSERT INTO kspm_copies(source, started_ms) VALUES (?, ?)");
    if (!mark.ok()) return mark.status();
    (*mark)->BindText(1, sqlite_path);
    (*mark)->Bind(2, common::ToUnixMillis(common::Clock::now()));
    if (auto s = sql::Run(**mark, "recording the copy"); !s.ok()) return s;
  } else if (progress) {
    progress("resuming the copy of " + sqlite_path);
  }
  // Every table read from one snapshot of the file (a read transaction, held to the end): a
  // collector that was not stopped cannot leave a scan copied without its results.
  if (auto s = internal::ExecOn(from->get(), sqlite_path, "BEGIN"); !s.ok()) return s;
  struct EndRead {
    sqlite3* db;
    ~EndRead() { sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr); }
  } end_read{from->get()};
  std::vector<CopiedTable> out;
  for (const char* table : kTables) {
    auto copied = CopyTable(from->get(), sqlite_path, target, table, progress);
    if (!copied.ok()) return sql::Context(copied.status(), std::string("table ") + table);
    const int64_t source_rows = *copied;
    const int64_t target_rows = CountOn(target, table);
    out.push_back({table, source_rows, target_rows});
    if (target_rows != source_rows) {
      return absl::DataLossError(std::string("table ") + table + ": " +
                                 std::to_string(source_rows) + " rows in " + sqlite_path + " but " +
                                 std::to_string(target_rows) + " in " + name +
                                 " (was the target written to during the copy?)");
    }
    if (progress)
      progress(std::string(table) + ": " + std::to_string(target_rows) + " rows, verified");
  }
  for (const char* table : kSerialTables) {
    const std::string t = table;
    if (auto s = target.Exec("SELECT setval(pg_get_serial_sequence('" + t +
                             "', 'id'), "
                             "COALESCE((SELECT MAX(id) FROM " +
                             t + "), 0) + 1, false)");
        !s.ok()) {
      return s.status();
    }
  }
  auto done = target.Prepare("UPDATE kspm_copies SET finished_ms = ? WHERE source = ?");
  if (!done.ok()) return done.status();
  (*done)->Bind(1, common::ToUnixMillis(common::Clock::now()));
  (*done)->BindText(2, sqlite_path);
  if (auto s = sql::Run(**done, "recording the copy"); !s.ok()) return s;
  return out;
}

}  // namespace kspm::collector::store

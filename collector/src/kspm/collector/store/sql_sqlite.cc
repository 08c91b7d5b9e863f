// The sqlite driver of sql.h, and what both drivers share (Run, RunId, Context).
#include <sqlite3.h>

#include <vector>

#include "kspm/collector/store/sql_store.h"

namespace kspm::collector::store::sql {

absl::Status Context(const absl::Status& status, std::string_view what) {
  if (status.ok() || what.empty()) return status;
  return absl::Status(status.code(), std::string(what) + ": " + std::string(status.message()));
}

absl::Status Run(Statement& stmt, std::string_view what) {
  absl::StatusOr<bool> row;
  while ((row = stmt.Next()).ok() && *row) {
  }
  stmt.Reset();
  return row.ok() ? absl::OkStatus() : Context(row.status(), what);
}

absl::StatusOr<int64_t> RunId(Statement& stmt, std::string_view what) {
  auto row = stmt.Next();
  int64_t id = -1;
  if (row.ok() && *row) id = stmt.Int(0);
  if (row.ok() && *row) row = stmt.Next();  // to the end, so that the statement completes
  stmt.Reset();
  if (!row.ok()) return Context(row.status(), what);
  if (id < 0) return absl::InternalError(std::string(what) + ": no id returned");
  return id;
}

namespace {

// The error of the last call on `db`, named after `name`.
absl::Status SqliteError(sqlite3* db, const std::string& name) {
  const int code = sqlite3_extended_errcode(db) & 0xff;
  std::string msg = name + ": " + sqlite3_errmsg(db);
  if (code == SQLITE_FULL) return absl::ResourceExhaustedError(msg + " (disk full)");
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return absl::UnavailableError(msg);
  if (code == SQLITE_READONLY) return absl::FailedPreconditionError(msg);
  return absl::InternalError(msg);
}

class SqliteStatement final : public Statement {
 public:
  SqliteStatement(sqlite3_stmt* stmt, sqlite3* db, const std::string& name)
      : stmt_(stmt), db_(db), name_(name) {}
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }

  void Bind(int index, int64_t value) override { sqlite3_bind_int64(stmt_, index, value); }
  void BindText(int index, std::string_view value) override {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int index, std::string_view value) override {
    sqlite3_bind_blob(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  }
  absl::StatusOr<bool> Next() override {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) {
      changes_ = sqlite3_changes(db_);
      return false;
    }
    return SqliteError(db_, name_);
  }
  int64_t Int(int column) override { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) override {
    const auto* p = sqlite3_column_text(stmt_, column);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, column)))
             : std::string();
  }
  std::string_view Blob(int column) override {
    const void* p = sqlite3_column_blob(stmt_, column);
    if (p == nullptr) return {};
    return {static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, column))};
  }
  bool IsNull(int column) override { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  int64_t Changes() override { return changes_; }
  void Reset() override {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3_stmt* stmt_;
  sqlite3* db_;
  const std::string& name_;
  int64_t changes_ = 0;
};

class SqliteConnection final : public Connection {
 public:
  SqliteConnection(internal::Db db, std::string name)
      : db_(std::move(db)), name_(std::move(name)) {}

  absl::StatusOr<std::unique_ptr<Statement>> Prepare(std::string_view sql) override {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                           SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
      return Context(SqliteError(db_.get(), name_), "preparing a statement");
    }
    return std::unique_ptr<Statement>(new SqliteStatement(stmt, db_.get(), name_));
  }

  absl::StatusOr<int64_t> Exec(std::string_view sql) override {
    const int64_t before = sqlite3_total_changes64(db_.get());
    char* err = nullptr;
    const std::string text(sql);
    if (sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      sqlite3_free(err);
      return Context(SqliteError(db_.get(), name_), text.substr(0, 60));
    }
    return sqlite3_total_changes64(db_.get()) - before;
  }

  absl::Status Begin() override { return Exec("BEGIN IMMEDIATE").status(); }

  const std::string& name() const override { return name_; }

  sqlite3* raw() const { return db_.get(); }

 private:
  internal::Db db_;
  std::string name_;
};

}  // namespace

std::unique_ptr<Connection> WrapSqlite(internal::Db db, const std::string& name) {
  return std::make_unique<SqliteConnection>(std::move(db), name);
}

sqlite3* RawSqlite(Connection& connection) {
  return static_cast<SqliteConnection&>(connection).raw();
}

}  // namespace kspm::collector::store::sql

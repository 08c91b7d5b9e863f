// The PostgreSQL store: the libpq driver of sql.h, the schema's migrations, and the store itself
// (SqlStore with a lock per node, so that several collectors can share one database).
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "kspm/collector/store/sql_store.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store {

std::string RedactPostgresUrl(const std::string& url) {
  std::string out = url;
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const size_t start = scheme + 3;
    const size_t at = out.find('@', start);
    const size_t slash = out.find('/', start);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      const size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon, at - colon, ":***");
    }
  }
  // Keyword form, or a URI's query: password=... up to the next space or '&'.
  for (size_t pos = 0; (pos = out.find("password=", pos)) != std::string::npos;) {
    pos += 9;
    size_t end = pos;
    if (end < out.size() && out[end] == '\'') {  // a quoted keyword value, spaces and all
      ++end;
      while (end < out.size() && out[end] != '\'') end += out[end] == '\\' ? 2 : 1;
      end = std::min(out.size(), end + 1);
    } else {
      while (end < out.size() && out[end] != ' ' && out[end] != '&') ++end;
    }
    out.replace(pos, end - pos, "***");
  }
  return out;
}

namespace {

using sql::Connection;
using sql::Statement;

// `?N` and `?` (sqlite's forms, outside quotes) as `$N`; `count` gets the highest index.
std::string ToDollarParams(std::string_view sql, int& count) {
  std::string out;
  out.reserve(sql.size() + 16);
  count = 0;
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote) {
      out += c;
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      continue;
    }
    if (c != '?') {
      out += c;
      continue;
    }
    size_t j = i + 1;
    while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9') ++j;
    const int index = j > i + 1 ? std::stoi(std::string(sql.substr(i + 1, j - i - 1))) : count + 1;
    count = std::max(count, index);
    out += '$' + std::to_string(index);
    i = j - 1;
  }
  return out;
}

// PostgreSQL's error of `result` (or of the connection, without one) as sql.h's codes.
absl::Status PgError(PGconn* conn, const PGresult* result, const std::string& name) {
  std::string msg = result ? PQresultErrorMessage(result) : PQerrorMessage(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  // libpq's messages run over lines (a hint on the next, indented): one line for logs.
  for (size_t at; (at = msg.find('\n')) != std::string::npos;) {
    size_t end = at + 1;
    while (end < msg.size() && (msg[end] == '\t' || msg[end] == ' ')) ++end;
    msg.replace(at, end - at, " ");
  }
  if (msg.empty()) msg = "connection lost";
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string code = state ? state : "";
  std::string text = name + ": " + msg;
  if (!code.empty()) text += " (SQLSTATE " + code + ")";
  if (PQstatus(conn) == CONNECTION_BAD || code.starts_with("08") || code.starts_with("57P")) {
    return absl::UnavailableError(text);
  }
  if (code == "40001" || code == "40P01" || code == "55P03") return absl::UnavailableError(text);
  if (code == "53100") return absl::ResourceExhaustedError(text + " (disk full)");
  if (code == "25006") return absl::FailedPreconditionError(text);
  return absl::InternalError(text);
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

class PgConnection;

class PgStatement final : public Statement {
 public:
  PgStatement(PgConnection& conn, std::string sql, int params)
      : conn_(conn), sql_(std::move(sql)), values_(params), formats_(params, 0), set_(params) {}
  ~PgStatement() override;

  void Bind(int index, int64_t value) override { Set(index, std::to_string(value), 0); }
  void BindText(int index, std::string_view value) override { Set(index, std::string(value), 0); }
  void BindBlob(int index, std::string_view value) override { Set(index, std::string(value), 1); }
  absl::StatusOr<bool> Next() override;
  int64_t Int(int column) override {
    const char* v = PQgetvalue(result_.get(), row_, column);
    if (*v == 't') return 1;  // a boolean
    if (*v == 'f') return 0;
    return std::strtoll(v, nullptr, 10);
  }
  std::string Text(int column) override {
    return std::string(PQgetvalue(result_.get(), row_, column),
                       static_cast<size_t>(PQgetlength(result_.get(), row_, column)));
  }
  std::string_view Blob(int column) override;
  bool IsNull(int column) override { return PQgetisnull(result_.get(), row_, column) != 0; }
  int64_t Changes() override { return changes_; }
  void Reset() override {
    result_.reset();
    row_ = -1;
    std::fill(set_.begin(), set_.end(), false);
  }

 private:
  void Set(int index, std::string value, int format) {
    if (index < 1 || index > static_cast<int>(values_.size())) return;
    values_[index - 1] = std::move(value);
    formats_[index - 1] = format;
    set_[index - 1] = true;
  }

  PgConnection& conn_;
  std::string sql_;
  std::string name_;       // the server-side prepared statement
  uint64_t prepared_ = 0;  // the connection generation it was prepared on; 0: not yet
  uint64_t runs_ = 0;
  std::vector<std::string> values_;
  std::vector<int> formats_;
  std::vector<bool> set_;  // unset parameters are NULL
  Result result_;
  int row_ = -1;
  int64_t changes_ = 0;
  std::string blob_;  // the last Blob, decoded from bytea's hex text
  friend class PgConnection;
};

class PgConnection final : public Connection {
 public:
  PgConnection(PGconn* conn, std::string name) : conn_(conn), name_(std::move(name)) {}
  ~PgConnection() override { PQfinish(conn_); }

  absl::StatusOr<std::unique_ptr<Statement>> Prepare(std::string_view sql) override {
    int params = 0;
    std::string text = ToDollarParams(sql, params);
    auto stmt = std::make_unique<PgStatement>(*this, std::move(text), params);
    stmt->name_ = "kspm_" + std::to_string(++statements_);
    return std::unique_ptr<Statement>(std::move(stmt));
  }

  absl::StatusOr<int64_t> Exec(std::string_view sql) override {
    const bool ending = sql == "COMMIT" || sql == "ROLLBACK";
    if (lost_in_transaction_) {
      // The transaction died with the connection: its statements since are not run, and COMMIT
      // must fail, or a report would be acked with part of it kept.
      if (sql == "ROLLBACK") {
        lost_in_transaction_ = false;
        return 0;
      }
      return LostError();
    }
    if (auto s = Connected(); !s.ok()) return sql::Context(s, sql);
    // A COMMIT outside a transaction succeeds with a warning: after a reconnect it would ack
    // statements that ran one by one.
    if (sql == "COMMIT" && PQtransactionStatus(conn_) == PQTRANS_IDLE) {
      in_transaction_ = false;
      return absl::UnavailableError(name_ + ": COMMIT: no transaction is open (it was lost)");
    }
    const std::string text(sql);
    Result r(PQexec(conn_, text.c_str()));
    const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      auto error = PgError(conn_, r.get(), name_);
      Broken();
      if (sql == "ROLLBACK") lost_in_transaction_ = false;
      return sql::Context(error, sql.substr(0, std::min<size_t>(sql.size(), 60)));
    }
    // COMMIT of a transaction that failed is answered ROLLBACK, without an error.
    if (sql == "COMMIT" && std::string_view(PQcmdStatus(r.get())) == "ROLLBACK") {
      in_transaction_ = false;
      return absl::AbortedError(name_ + ": COMMIT: the transaction had failed and was rolled back");
    }
    if (ending) in_transaction_ = false;
    if (sql.starts_with("BEGIN")) in_transaction_ = true;
    return std::strtoll(PQcmdTuples(r.get()), nullptr, 10);
  }

  // READ COMMITTED whatever the database's default: after waiting for a node's lock, the next
  // statement must see what the other collector committed (its scan id).
  // A connection that sat idle may have been closed by the server (a restart, a failover, an
  // idle timeout) without libpq knowing yet: BEGIN finds out, and is sent once more on a new
  // connection, since nothing of the transaction had run.
  absl::Status Begin() override {
    auto begun = Exec("BEGIN ISOLATION LEVEL READ COMMITTED");
    if (!begun.ok() && PQstatus(conn_) == CONNECTION_BAD && !lost_in_transaction_) {
      begun = Exec("BEGIN ISOLATION LEVEL READ COMMITTED");
    }
    return begun.status();
  }

  const std::string& name() const override { return name_; }

  // Drops the server's copy of a statement prepared on this connection.
  void Deallocate(const PgStatement& stmt) {
    if (stmt.prepared_ != generation_ || PQstatus(conn_) != CONNECTION_OK) return;
    Result r(PQexec(conn_, ("DEALLOCATE " + stmt.name_).c_str()));
    Broken();
  }

  // Runs `stmt`. A query outside a transaction that finds the connection closed by the server
  // (a restart, a failover: every idle connection of the pool is gone) is sent once more on a
  // new connection; it changes nothing, so running it twice is harmless.
  absl::Status Execute(PgStatement& stmt) {
    auto s = ExecuteOnce(stmt);
    if (!s.ok() && !in_transaction_ && !lost_in_transaction_ && PQstatus(conn_) == CONNECTION_BAD &&
        stmt.sql_.starts_with("SELECT")) {
      s = ExecuteOnce(stmt);
    }
    return s;
  }

  // Runs `stmt` (preparing it on this connection first if needed).
  absl::Status ExecuteOnce(PgStatement& stmt) {
    if (lost_in_transaction_) return LostError();
    if (auto s = Connected(); !s.ok()) return s;
    // A statement run once (most queries) is sent with its parameters, unnamed; one run again
    // is prepared on the server, once per connection.
    if (stmt.runs_++ > 0 && stmt.prepared_ != generation_) {
      Result p(PQprepare(conn_, stmt.name_.c_str(), stmt.sql_.c_str(), 0, nullptr));
      if (!p || PQresultStatus(p.get()) != PGRES_COMMAND_OK) {
        auto error = PgError(conn_, p.get(), name_);
        Broken();
        return sql::Context(error, "preparing a statement");
      }
      stmt.prepared_ = generation_;
    }
    const size_t n = stmt.values_.size();
    std::vector<const char*> values(n);
    std::vector<int> lengths(n);
    for (size_t i = 0; i < n; ++i) {
      values[i] = stmt.set_[i] ? stmt.values_[i].data() : nullptr;
      lengths[i] = static_cast<int>(stmt.values_[i].size());
    }
    stmt.result_.reset(stmt.prepared_ == generation_
                           ? PQexecPrepared(conn_, stmt.name_.c_str(), static_cast<int>(n),
                                            values.data(), lengths.data(), stmt.formats_.data(), 0)
                           : PQexecParams(conn_, stmt.sql_.c_str(), static_cast<int>(n), nullptr,
                                          values.data(), lengths.data(), stmt.formats_.data(), 0));
    const auto status = stmt.result_ ? PQresultStatus(stmt.result_.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      auto error = PgError(conn_, stmt.result_.get(), name_);
      stmt.result_.reset();
      Broken();
      return error;
    }
    stmt.changes_ = std::strtoll(PQcmdTuples(stmt.result_.get()), nullptr, 10);
    return absl::OkStatus();
  }

 private:
  // Reconnects a connection that broke (outside a transaction); its statements are prepared
  // again on first use.
  absl::Status Connected() {
    if (PQstatus(conn_) == CONNECTION_OK) return absl::OkStatus();
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK) return PgError(conn_, nullptr, name_);
    ++generation_;
    spdlog::info("{}: connected again", name_);
    return absl::OkStatus();
  }
  // After an error: a connection that broke in a transaction stays unusable until ROLLBACK.
  void Broken() {
    if (PQstatus(conn_) != CONNECTION_BAD) return;
    if (in_transaction_) lost_in_transaction_ = true;
    in_transaction_ = false;
  }
  absl::Status LostError() const {
    return absl::UnavailableError(name_ +
                                  ": the connection was lost in a transaction, which is undone");
  }

  PGconn* conn_;
  std::string name_;
  uint64_t generation_ = 1;
  uint64_t statements_ = 0;
  bool in_transaction_ = false;
  bool lost_in_transaction_ = false;
};

PgStatement::~PgStatement() { conn_.Deallocate(*this); }

absl::StatusOr<bool> PgStatement::Next() {
  if (!result_) {
    if (auto s = conn_.Execute(*this); !s.ok()) return s;
    row_ = -1;
  }
  ++row_;
  return row_ < PQntuples(result_.get());
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view PgStatement::Blob(int column) {
  const char* v = PQgetvalue(result_.get(), row_, column);
  const size_t len = static_cast<size_t>(PQgetlength(result_.get(), row_, column));
  blob_.clear();
  if (len >= 2 && v[0] == '\\' && v[1] == 'x') {
    blob_.reserve((len - 2) / 2);
    for (size_t i = 2; i + 1 < len; i += 2) {
      const int hi = HexValue(v[i]), lo = HexValue(v[i + 1]);
      if (hi < 0 || lo < 0) break;
      blob_ += static_cast<char>(hi << 4 | lo);
    }
  } else {
    blob_.assign(v, len);
  }
  return blob_;
}

// Schema versions, applied in order under an advisory lock (collectors starting together run
// them once). Never edit a released step: append a new one. Version 1 is the sqlite schema's
// version 8 (sqlite_schema.cc), with text compared byte by byte (COLLATE "C") as sqlite does, so
// that both engines order findings and pages alike.
const char* const kPgMigrations[] = {
    R"sql(
CREATE TABLE clusters (
  id BIGSERIAL PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL UNIQUE
);
CREATE TABLE nodes (
  id BIGSERIAL PRIMARY KEY,
  cluster_id BIGINT NOT NULL REFERENCES clusters(id),
  name TEXT COLLATE "C" NOT NULL,
  identity BYTEA NOT NULL,
  first_seen_ms BIGINT NOT NULL,
  last_seen_ms BIGINT NOT NULL,
  last_scan_id TEXT NOT NULL,
  scan_interval_s BIGINT NOT NULL DEFAULT 300,
  UNIQUE (cluster_id, name)
);
CREATE TABLE scans (
  scan_id TEXT PRIMARY KEY,
  node_id BIGINT NOT NULL REFERENCES nodes(id),
  started_ms BIGINT NOT NULL,
  finished_ms BIGINT NOT NULL,
  received_ms BIGINT NOT NULL,
  "full" BIGINT NOT NULL,
  results BIGINT NOT NULL
);
CREATE TABLE results (
  node_id BIGINT NOT NULL REFERENCES nodes(id),
  check_id TEXT COLLATE "C" NOT NULL,
  benchmark TEXT COLLATE "C" NOT NULL,
  kind TEXT COLLATE "C" NOT NULL,
  object_namespace TEXT COLLATE "C" NOT NULL,
  name TEXT COLLATE "C" NOT NULL,
  container TEXT COLLATE "C" NOT NULL,
  namespace TEXT COLLATE "C" NOT NULL,
  section TEXT COLLATE "C" NOT NULL,
  benchmark_id TEXT COLLATE "C" NOT NULL,
  status BIGINT NOT NULL,
  severity BIGINT NOT NULL,
  scored BIGINT NOT NULL,
  result BYTEA NOT NULL,
  scan_id TEXT NOT NULL,
  updated_ms BIGINT NOT NULL,
  changed_ms BIGINT NOT NULL,
  digest BIGINT NOT NULL,
  PRIMARY KEY (node_id, check_id, benchmark, kind, object_namespace, name, container)
);
CREATE TABLE transitions (
  id BIGSERIAL PRIMARY KEY,
  node_id BIGINT NOT NULL REFERENCES nodes(id),
  check_id TEXT COLLATE "C" NOT NULL,
  benchmark TEXT COLLATE "C" NOT NULL,
  old_status BIGINT NOT NULL,
  new_status BIGINT NOT NULL,
  at_ms BIGINT NOT NULL,
  scan_id TEXT NOT NULL,
  kind TEXT COLLATE "C" NOT NULL DEFAULT '',
  object_namespace TEXT COLLATE "C" NOT NULL DEFAULT '',
  name TEXT COLLATE "C" NOT NULL DEFAULT '',
  container TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX transitions_by_node ON transitions (node_id, at_ms);
CREATE INDEX transitions_by_check ON transitions (check_id, at_ms);
CREATE INDEX transitions_by_time ON transitions (at_ms);
CREATE TABLE result_counts (
  node_id BIGINT NOT NULL REFERENCES nodes(id),
  benchmark TEXT COLLATE "C" NOT NULL,
  section TEXT COLLATE "C" NOT NULL,
  namespace TEXT COLLATE "C" NOT NULL,
  status BIGINT NOT NULL,
  severity BIGINT NOT NULL,
  scored BIGINT NOT NULL,
  n BIGINT NOT NULL,
  PRIMARY KEY (node_id, benchmark, section, namespace, status, severity, scored)
);
CREATE TABLE drift_events (
  id BIGSERIAL PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  node_id BIGINT NOT NULL REFERENCES nodes(id),
  observed_ms BIGINT NOT NULL,
  received_ms BIGINT NOT NULL,
  scan_id TEXT NOT NULL,
  event BYTEA NOT NULL
);
CREATE INDEX drift_by_node ON drift_events (node_id, observed_ms);
CREATE INDEX drift_by_time ON drift_events (observed_ms);
CREATE TABLE join_tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 TEXT NOT NULL,
  cluster TEXT NOT NULL,
  node TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL,
  uses_left BIGINT NOT NULL,
  created_by TEXT NOT NULL
);
CREATE TABLE node_access (
  cluster TEXT COLLATE "C" NOT NULL,
  node TEXT COLLATE "C" NOT NULL,
  revoked BIGINT NOT NULL,
  revoked_ms BIGINT NOT NULL,
  changed_by TEXT NOT NULL,
  changed_ms BIGINT NOT NULL,
  PRIMARY KEY (cluster, node)
);
CREATE TABLE issued_certificates (
  serial TEXT PRIMARY KEY,
  cluster TEXT COLLATE "C" NOT NULL,
  node TEXT COLLATE "C" NOT NULL,
  issued_ms BIGINT NOT NULL,
  not_after_ms BIGINT NOT NULL,
  method TEXT NOT NULL,
  source TEXT NOT NULL
);
CREATE INDEX issued_by_node ON issued_certificates (cluster, node, issued_ms);
CREATE TABLE node_certificates (
  cluster TEXT COLLATE "C" NOT NULL,
  node TEXT COLLATE "C" NOT NULL,
  serial TEXT NOT NULL,
  not_after_ms BIGINT NOT NULL,
  seen_ms BIGINT NOT NULL,
  PRIMARY KEY (cluster, node)
);
)sql",
    // The rows written by the hundred per report check their node by the same rule sqlite
    // declares and does not enforce: a trigger and a query per row cost the server more than
    // the results' own insert (node ids come from the node's row in the same transaction, and
    // nodes are never deleted). Scans and drift events, a row per report, keep the check.
    R"sql(
ALTER TABLE results DROP CONSTRAINT results_node_id_fkey;
ALTER TABLE transitions DROP CONSTRAINT transitions_node_id_fkey;
ALTER TABLE result_counts DROP CONSTRAINT result_counts_node_id_fkey;
)sql",
};

// Arbitrary keys of kspm's advisory locks (pg_advisory_lock takes one bigint).
constexpr int64_t kMigrationLock = 0x6b73706d00000001;  // "kspm" 1

absl::Status ExecAll(Connection& c, std::initializer_list<std::string_view> statements) {
  for (const auto sql : statements) {
    if (auto s = c.Exec(sql); !s.ok()) return s.status();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> internal::QueryOne(sql::Connection& c, const std::string& sql) {
  auto stmt = c.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  auto row = (*stmt)->Next();
  if (!row.ok()) return row.status();
  if (!*row) return std::string();
  return (*stmt)->Text(0);
}

namespace {

using internal::QueryOne;

}  // namespace

namespace internal {

absl::Status MigratePostgresSchema(sql::Connection& c) {
  // A replica in recovery takes no writes: refuse it by name rather than fail on the first one.
  auto read_only = QueryOne(c, "SELECT current_setting('transaction_read_only')");
  if (!read_only.ok()) return read_only.status();
  if (*read_only == "on") {
    auto recovery = QueryOne(c, "SELECT pg_is_in_recovery()");
    return absl::FailedPreconditionError(c.name() + " takes no writes (" +
                                         (recovery.ok() && *recovery == "t"
                                              ? "a standby in recovery: connect to the primary"
                                              : "transaction_read_only is on") +
                                         "); the collector needs a writable primary");
  }
  if (auto s = c.Exec("SELECT pg_advisory_lock(" + std::to_string(kMigrationLock) + ")"); !s.ok()) {
    return s.status();
  }
  auto body = [&]() -> absl::Status {
    if (auto s = c.Exec("CREATE TABLE IF NOT EXISTS kspm_schema (version BIGINT NOT NULL)");
        !s.ok()) {
      return s.status();
    }
    auto version_text = QueryOne(c, "SELECT COALESCE(MAX(version), 0) FROM kspm_schema");
    if (!version_text.ok()) return version_text.status();
    const int64_t version = std::strtoll(version_text->c_str(), nullptr, 10);
    const int64_t newest = static_cast<int64_t>(std::size(kPgMigrations));
    if (version > newest) {
      return absl::FailedPreconditionError(
          c.name() + " has schema version " + std::to_string(version) +
          ", newer than this collector's " + std::to_string(newest) +
          ": upgrade the collector (a downgrade would lose what the newer one stores)");
    }
    for (int64_t v = version; v < newest; ++v) {
      auto step = ExecAll(c, {"BEGIN", kPgMigrations[v]});
      if (step.ok()) {
        step = c.Exec("INSERT INTO kspm_schema(version) VALUES (" + std::to_string(v + 1) + ")")
                   .status();
      }
      if (step.ok()) step = c.Exec("COMMIT").status();
      if (!step.ok()) {
        (void)c.Exec("ROLLBACK");
        return sql::Context(step, "migrating to schema " + std::to_string(v + 1));
      }
      spdlog::info("{}: schema version {}", c.name(), v + 1);
    }
    return absl::OkStatus();
  };
  auto s = body();
  (void)c.Exec("SELECT pg_advisory_unlock(" + std::to_string(kMigrationLock) + ")");
  return s;
}

}  // namespace internal

namespace {

using internal::ConnectPostgres;

class PostgresStore final : public internal::SqlStore {
 public:
  PostgresStore(std::string name, std::vector<std::unique_ptr<Connection>> writers,
                std::vector<std::unique_ptr<Connection>> readers, PostgresOptions options)
      : SqlStore(std::move(name), std::move(writers), std::move(readers)),
        options_(std::move(options)) {}

  // Session advisory locks on a connection of their own: the server drops them when that
  // connection ends (the process died, or the network to it failed past the keepalives).
  absl::StatusOr<bool> HoldLease(const std::string& lease) override {
    std::lock_guard lock(lease_mu_);
    if (!lease_conn_) {
      auto conn = ConnectPostgres(options_, path_);
      if (!conn.ok()) return conn.status();
      lease_conn_ = *std::move(conn);
    }
    // The connection's server process (its pid and the server's start, since a restarted server
    // may hand out the same pid): another one than took the locks means the connection was made
    // again, and the locks went with the old one.
    auto pid = QueryOne(*lease_conn_,
                        "SELECT pg_backend_pid() || ' ' || pg_postmaster_start_time()::text");
    if (!pid.ok()) {
      held_.clear();
      return pid.status();
    }
    if (*pid != lease_pid_) held_.clear();
    lease_pid_ = *pid;
    if (held_.contains(lease)) return true;
    auto taken =
        QueryOne(*lease_conn_, "SELECT pg_try_advisory_lock(" +
                                   std::to_string(internal::Digest("lease\x1f" + lease)) + ")");
    if (!taken.ok()) return taken.status();
    if (*taken != "t") return false;
    held_.insert(lease);
    return true;
  }

  StoreSpace Space() const override {
    StoreSpace space;
    space.path = path_;
    return space;
  }

 protected:
  // Reports of one node are written one at a time across collectors: the lock lasts until the
  // transaction ends. Keyed by a 64-bit hash of cluster and node; a collision only serializes
  // two nodes' commits.
  absl::Status LockNode(internal::WriteSession& w, const std::string& cluster,
                        const std::string& node) override {
    if (!w.lock_node) {
      auto stmt = w.conn->Prepare("SELECT pg_advisory_xact_lock(?)");
      if (!stmt.ok()) return stmt.status();
      w.lock_node = *std::move(stmt);
    }
    w.lock_node->Bind(1, NodeKey(cluster, node));
    return sql::Run(*w.lock_node, "locking node " + cluster + "/" + node);
  }

 private:
  PostgresOptions options_;
  std::mutex lease_mu_;
  std::unique_ptr<Connection> lease_conn_;
  std::string lease_pid_;
  std::set<std::string> held_;
};

}  // namespace

namespace internal {

absl::StatusOr<std::unique_ptr<sql::Connection>> ConnectPostgres(const PostgresOptions& options,
                                                                 const std::string& name) {
  // A malformed URL is the user's to fix, not a server to wait for.
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.url.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string why = parse_error ? parse_error : "cannot be parsed";
    PQfreemem(parse_error);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    // libpq may quote the URL, password and all.
    for (size_t at; (at = why.find(options.url)) != std::string::npos;) {
      why.replace(at, options.url.size(), name);
    }
    return absl::InvalidArgumentError("store " + name + ": " + why);
  }
  PQconninfoFree(parsed);
  std::vector<const char*> keys, values;
  std::string password;
  keys.push_back("dbname");
  values.push_back(options.url.c_str());
  keys.push_back("application_name");
  values.push_back("kspm-collector");
  const std::string timeout = std::to_string(std::max(1, options.connect_timeout_seconds));
  keys.push_back("connect_timeout");
  values.push_back(timeout.c_str());
  // A server that vanished without closing (a node lost) is noticed in about 30 s, and its
  // leases taken over; libpq's default is the kernel's two hours.
  for (const char* k : {"keepalives_idle", "keepalives_interval"}) {
    keys.push_back(k);
    values.push_back("10");
  }
  keys.push_back("keepalives_count");
  values.push_back("3");
  // The server's side, for every connection (kept across reconnects, unlike SET): a collector
  // gone without closing (its node lost) frees its locks and leases in about 30 s; a node lock
  // waited on for 10 s fails the report (UNAVAILABLE: the agent resends it) instead of holding
  // every commit of this collector behind it; a transaction left idle is ended.
  keys.push_back("options");
  values.push_back(
      "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3 "
      "-c lock_timeout=10s -c idle_in_transaction_session_timeout=60s");
  if (!options.password_file.empty()) {
    std::ifstream in(options.password_file);
    if (!in) {
      return absl::InvalidArgumentError("cannot read the database password file " +
                                        options.password_file);
    }
    std::getline(in, password);
    while (!password.empty() && password.back() == '\r') password.pop_back();
    keys.push_back("password");
    values.push_back(password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  // Later keywords win over the URL's (expand_dbname): the file's password over none.
  PGconn* conn = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr) return absl::ResourceExhaustedError(name + ": out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    auto error = PgError(conn, nullptr, name);
    PQfinish(conn);
    return error;
  }
  // The server's notices (a table that exists already, skipped) are not the user's business.
  PQsetNoticeProcessor(
      conn, [](void*, const char* message) { spdlog::debug("postgres: {}", message); }, nullptr);
  return std::unique_ptr<sql::Connection>(new PgConnection(conn, name));
}

}  // namespace internal

bool IsPostgresUrl(const std::string& spec) {
  return spec.starts_with("postgres://") || spec.starts_with("postgresql://");
}

absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options) {
  const std::string name = RedactPostgresUrl(options.url);
  // The database may come up after the collector (a pod beside it, a failover): retry with
  // backoff for up to `wait`, then give up naming it.
  const auto deadline = std::chrono::steady_clock::now() + options.wait;
  std::chrono::milliseconds backoff{250};
  absl::StatusOr<std::unique_ptr<sql::Connection>> writer;
  while (true) {
    writer = ConnectPostgres(options, name);
    if (writer.ok() || writer.status().code() != absl::StatusCode::kUnavailable ||
        std::chrono::steady_clock::now() + backoff > deadline) {
      break;
    }
    spdlog::warn("{} (retrying in {} ms)", std::string(writer.status().message()), backoff.count());
    if (options.on_retry) options.on_retry(writer.status());
    for (auto until = std::chrono::steady_clock::now() + backoff;
         std::chrono::steady_clock::now() < until;) {
      if (options.stop_waiting && options.stop_waiting()) {
        return absl::CancelledError("stopped while waiting for " + name + ": " +
                                    std::string(writer.status().message()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
  }
  if (!writer.ok()) return writer.status();
  if (auto s = internal::MigratePostgresSchema(**writer); !s.ok()) return s;
  std::vector<std::unique_ptr<sql::Connection>> writers;
  writers.push_back(*std::move(writer));
  for (int i = 1; i < std::max(1, options.writers); ++i) {
    auto more = ConnectPostgres(options, name);
    if (!more.ok()) return more.status();
    writers.push_back(*std::move(more));
  }
  std::vector<std::unique_ptr<sql::Connection>> readers;
  for (int i = 0; i < std::max(1, options.pool_size); ++i) {
    auto reader = ConnectPostgres(options, name);
    if (!reader.ok()) return reader.status();
    readers.push_back(*std::move(reader));
  }
  auto store =
      std::make_unique<PostgresStore>(name, std::move(writers), std::move(readers), options);
  if (auto s = store->Prepare(); !s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace kspm::collector::store

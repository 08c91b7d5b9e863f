#pragma once

// The two SQL engines the store runs on (sqlite, embedded; PostgreSQL, over libpq) behind one
// small interface, so that one implementation of the store's logic (sql_store.h) serves both.
// SQL given to Prepare uses sqlite's parameter forms (`?` and `?N`); the PostgreSQL driver
// rewrites them to `$N`. Nothing here is used outside store/.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kspm::collector::store::sql {

// One prepared statement on one connection. Parameters are numbered from 1; bound values are
// copied and kept until Reset. Not thread-safe: a statement belongs to its connection's user.
class Statement {
 public:
  virtual ~Statement() = default;
  virtual void Bind(int index, int64_t value) = 0;
  virtual void BindText(int index, std::string_view value) = 0;
  virtual void BindBlob(int index, std::string_view value) = 0;
  // Runs the statement on the first call, then moves to the next row: true on a row, false when
  // there are no more. Errors are named as Connection's are.
  [[nodiscard]] virtual absl::StatusOr<bool> Next() = 0;
  // Columns of the current row, from 0. Blob's view lasts until the next Next or Reset.
  virtual int64_t Int(int column) = 0;
  virtual std::string Text(int column) = 0;
  virtual std::string_view Blob(int column) = 0;
  virtual bool IsNull(int column) = 0;
  // Rows the last run inserted, updated or deleted.
  virtual int64_t Changes() = 0;
  // Ends the run and clears the parameters.
  virtual void Reset() = 0;
};

// One connection. Errors carry the store's name (a file, or a URL without its password) and the
// engine's message, with codes a caller can act on:
//   Unavailable         the server cannot be reached, or a lock or serialization conflict (retry)
//   ResourceExhausted   the disk is full (the message says "(disk full)")
//   FailedPrecondition  the database takes no writes (a read-only replica)
//   Internal            anything else
class Connection {
 public:
  virtual ~Connection() = default;
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<Statement>> Prepare(
      std::string_view sql) = 0;
  // Runs statements without results; returns the rows they changed.
  [[nodiscard]] virtual absl::StatusOr<int64_t> Exec(std::string_view sql) = 0;
  // Starts a transaction that will write (sqlite takes its write lock at once).
  [[nodiscard]] virtual absl::Status Begin() = 0;
  // The name errors carry.
  virtual const std::string& name() const = 0;
};

// Runs `stmt` to its end and resets it. Errors say what was being done.
[[nodiscard]] absl::Status Run(Statement& stmt, std::string_view what);
// Runs `stmt`, whose first row's first column is an id (RETURNING id), and resets it.
[[nodiscard]] absl::StatusOr<int64_t> RunId(Statement& stmt, std::string_view what);
// `status` with "what: " before its message, its code kept.
absl::Status Context(const absl::Status& status, std::string_view what);

}  // namespace kspm::collector::store::sql

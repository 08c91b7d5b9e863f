// The sqlite store: opening it (log check, pragmas, integrity, migrations, reader pool) and the
// space it watches.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "kspm/collector/store/sql_store.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store {
namespace internal {

namespace {

std::vector<Connection> WrapAll(std::vector<Db> dbs, const std::string& path) {
  std::vector<Connection> out;
  for (auto& db : dbs) out.push_back(sql::WrapSqlite(std::move(db), path));
  return out;
}

// One writer: sqlite takes one write transaction at a time.
std::vector<Connection> OneWriter(Db writer, const std::string& path) {
  std::vector<Connection> out;
  out.push_back(sql::WrapSqlite(std::move(writer), path));
  return out;
}

}  // namespace

SqliteStore::SqliteStore(std::string path, Db writer, std::vector<Db> readers)
    : SqlStore(path, OneWriter(std::move(writer), path), WrapAll(std::move(readers), path)),
      raw_writer_(sql::RawSqlite(*primary().conn)) {}

StoreSpace SqliteStore::Space() const {
  std::lock_guard lock(space_mu_);
  return space_;
}

void SqliteStore::AfterCommit(bool full, common::Clock::time_point now) {
  StoreSpace space = Measure();
  if (full || space.tight) {
    const int rc = sqlite3_wal_checkpoint_v2(raw_writer_, nullptr, SQLITE_CHECKPOINT_TRUNCATE,
                                             nullptr, nullptr);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      spdlog::warn("{}: checkpoint on a tight disk: {}", path_, sqlite3_errmsg(raw_writer_));
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

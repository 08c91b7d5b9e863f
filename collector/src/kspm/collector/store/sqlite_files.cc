// The sqlite store's files: sqlite's integrity checks, the write-ahead log's own check before
// sqlite recovers it, and consistent backups.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "kspm/collector/store/sql_store.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store::internal {

// sqlite's own check of `db`: empty when it answers "ok", else its first complaints.
absl::Status IntegrityOf(sqlite3* db, const std::string& path, bool full) {
  sqlite3_stmt* raw = nullptr;
  const char* sql = full ? "PRAGMA integrity_check(20)" : "PRAGMA quick_check(20)";
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
    const std::string why = sqlite3_errmsg(db);
    sqlite3_finalize(raw);
    return absl::DataLossError("database " + path + " cannot be checked: " + why);
  }
  RawStmt stmt(raw);
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

}  // namespace kspm::collector::store::internal

namespace kspm::collector::store {

using internal::Db;
using internal::IntegrityOf;
using internal::OpenDb;
using internal::RawStmt;

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
  RawStmt stmt(raw);
  sqlite3_bind_text(stmt.get(), 1, to.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(stmt.get()) != SQLITE_DONE) {
    return absl::InternalError("cannot back up " + path + " to " + to + ": " +
                               sqlite3_errmsg(db->get()));
  }
  return CheckSqliteStore(to, /*full=*/true);
}

}  // namespace kspm::collector::store

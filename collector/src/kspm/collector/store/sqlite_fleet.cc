// The sqlite store's fleet identity records: join tokens, node access (revocation), issued
// certificates and the certificate each node last used.
#include <openssl/crypto.h>

#include "kspm/collector/store/sqlite_internal.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store::internal {

absl::Status SqliteStore::AddJoinToken(const JoinToken& token, common::Clock::time_point now) {
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
  if (sqlite3_step(stmt->get()) != SQLITE_DONE) return Error(writer_.get(), "adding a join token");
  return absl::OkStatus();
}

absl::StatusOr<JoinToken> SqliteStore::RedeemJoinToken(const std::string& id,
                                                       const std::string& secret_sha256,
                                                       const std::string& node,
                                                       common::Clock::time_point now) {
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
      CRYPTO_memcmp(token.secret_sha256.data(), secret_sha256.data(), secret_sha256.size()) != 0) {
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

absl::Status SqliteStore::SetNodeAccess(const NodeAccess& access, const std::string& by,
                                        common::Clock::time_point now) {
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

absl::StatusOr<std::vector<NodeAccess>> SqliteStore::NodeAccessList() {
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

absl::Status SqliteStore::RecordIssued(const IssuedCertificate& cert,
                                       common::Clock::time_point now) {
  std::lock_guard lock(write_mu_);
  auto stmt = PrepareRead(writer_.get(),
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

absl::StatusOr<std::string> SqliteStore::LastIssueMethod(const std::string& cluster,
                                                         const std::string& node) {
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

absl::Status SqliteStore::RecordNodeCertificate(const std::string& cluster, const std::string& node,
                                                const std::string& serial,
                                                common::Clock::time_point not_after,
                                                common::Clock::time_point now) {
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

}  // namespace kspm::collector::store::internal

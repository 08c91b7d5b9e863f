// The store's fleet identity records: join tokens, node access (revocation), issued
// certificates and the certificate each node last used.
#include <openssl/crypto.h>

#include "kspm/collector/store/sql_store.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "kspm/common/scoring.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::store::internal {

namespace {

void BindTexts(sql::Statement& stmt, std::initializer_list<std::string_view> values) {
  int i = 1;
  for (const auto v : values) stmt.BindText(i++, v);
}

}  // namespace

absl::Status SqlStore::AddJoinToken(const JoinToken& token, common::Clock::time_point now) {
  WriteSession& w = primary();
  std::lock_guard lock(w.mu);
  auto stmt = w.conn->Prepare(
      "INSERT INTO join_tokens(id, secret_sha256, cluster, node, created_ms, "
      "expires_ms, uses_left, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  if (!stmt.ok()) return stmt.status();
  BindTexts(**stmt, {token.id, token.secret_sha256, token.cluster, token.node});
  (*stmt)->Bind(5, common::ToUnixMillis(now));
  (*stmt)->Bind(6, common::ToUnixMillis(token.expires));
  (*stmt)->Bind(7, token.uses);
  (*stmt)->BindText(8, token.created_by);
  if (auto s = sql::Run(**stmt, "adding a join token"); !s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<JoinToken> SqlStore::RedeemJoinToken(const std::string& id,
                                                    const std::string& secret_sha256,
                                                    const std::string& node,
                                                    common::Clock::time_point now) {
  WriteSession& w = primary();
  std::lock_guard lock(w.mu);
  auto stmt = w.conn->Prepare(
      "SELECT secret_sha256, cluster, node, expires_ms, uses_left, "
      "created_by FROM join_tokens WHERE id = ?");
  if (!stmt.ok()) return stmt.status();
  (*stmt)->BindText(1, id);
  auto found = (*stmt)->Next();
  if (!found.ok()) return sql::Context(found.status(), "reading a join token");
  if (!*found) return absl::PermissionDeniedError("unknown join token");
  JoinToken token;
  token.id = id;
  token.secret_sha256 = (*stmt)->Text(0);
  token.cluster = (*stmt)->Text(1);
  token.node = (*stmt)->Text(2);
  token.expires = common::FromUnixMillis((*stmt)->Int(3));
  const int64_t uses_left = (*stmt)->Int(4);
  token.created_by = (*stmt)->Text(5);
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
  auto use = w.conn->Prepare(
      "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ? AND "
      "uses_left > 0");
  if (!use.ok()) return use.status();
  (*use)->BindText(1, id);
  auto used = (*use)->Next();
  if (!used.ok()) return sql::Context(used.status(), "using a join token");
  if ((*use)->Changes() != 1) {
    return absl::PermissionDeniedError("join token " + id + " is used up");
  }
  token.uses = static_cast<uint32_t>(uses_left - 1);
  return token;
}

absl::Status SqlStore::SetNodeAccess(const NodeAccess& access, const std::string& by,
                                     common::Clock::time_point now) {
  WriteSession& w = primary();
  std::lock_guard lock(w.mu);
  // Allowing keeps the revocation time: certificates from before it stay refused.
  auto stmt = w.conn->Prepare(
      "INSERT INTO node_access(cluster, node, revoked, revoked_ms, changed_by, changed_ms) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(cluster, node) DO UPDATE SET "
      "revoked = excluded.revoked, changed_by = excluded.changed_by, "
      "changed_ms = excluded.changed_ms, revoked_ms = CASE WHEN excluded.revoked = 1 THEN "
      "excluded.revoked_ms ELSE node_access.revoked_ms END");
  if (!stmt.ok()) return stmt.status();
  BindTexts(**stmt, {access.cluster, access.node});
  (*stmt)->Bind(3, access.revoked ? 1 : 0);
  (*stmt)->Bind(4, common::ToUnixMillis(access.revoked_at));
  (*stmt)->BindText(5, by);
  (*stmt)->Bind(6, common::ToUnixMillis(now));
  if (auto s = sql::Run(**stmt, "recording a node's access"); !s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NodeAccess>> SqlStore::NodeAccessList() {
  const ReaderPool::Lease reader = readers_.Acquire();
  auto stmt = reader.db().Prepare("SELECT cluster, node, revoked, revoked_ms FROM node_access");
  if (!stmt.ok()) return stmt.status();
  std::vector<NodeAccess> out;
  absl::StatusOr<bool> row;
  while ((row = (*stmt)->Next()).ok() && *row) {
    NodeAccess a;
    a.cluster = (*stmt)->Text(0);
    a.node = (*stmt)->Text(1);
    a.revoked = (*stmt)->Int(2) != 0;
    a.revoked_at = common::FromUnixMillis((*stmt)->Int(3));
    out.push_back(std::move(a));
  }
  if (!row.ok()) return sql::Context(row.status(), "reading node access");
  return out;
}

absl::Status SqlStore::RecordIssued(const IssuedCertificate& cert, common::Clock::time_point now) {
  WriteSession& w = primary();
  std::lock_guard lock(w.mu);
  auto stmt = w.conn->Prepare(
      "INSERT INTO issued_certificates(serial, cluster, node, issued_ms, not_after_ms, "
      "method, source) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(serial) DO UPDATE SET "
      "cluster = excluded.cluster, node = excluded.node, issued_ms = excluded.issued_ms, "
      "not_after_ms = excluded.not_after_ms, method = excluded.method, source = excluded.source");
  if (!stmt.ok()) return stmt.status();
  BindTexts(**stmt, {cert.serial, cert.cluster, cert.node});
  (*stmt)->Bind(4, common::ToUnixMillis(now));
  (*stmt)->Bind(5, common::ToUnixMillis(cert.not_after));
  (*stmt)->BindText(6, cert.method);
  (*stmt)->BindText(7, cert.source);
  if (auto s = sql::Run(**stmt, "recording an issued certificate"); !s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<std::string> SqlStore::LastIssueMethod(const std::string& cluster,
                                                      const std::string& node) {
  const ReaderPool::Lease reader = readers_.Acquire();
  auto stmt = reader.db().Prepare(
      "SELECT method FROM issued_certificates WHERE cluster = ? AND node = ? "
      "ORDER BY issued_ms DESC LIMIT 1");
  if (!stmt.ok()) return stmt.status();
  BindTexts(**stmt, {cluster, node});
  auto row = (*stmt)->Next();
  if (!row.ok()) return sql::Context(row.status(), "reading issued certificates");
  return *row ? (*stmt)->Text(0) : std::string();
}

absl::Status SqlStore::RecordNodeCertificate(const std::string& cluster, const std::string& node,
                                             const std::string& serial,
                                             common::Clock::time_point not_after,
                                             common::Clock::time_point now) {
  WriteSession& w = primary();
  std::lock_guard lock(w.mu);
  auto stmt = w.conn->Prepare(
      "INSERT INTO node_certificates(cluster, node, serial, not_after_ms, seen_ms) "
      "VALUES (?, ?, ?, ?, ?) ON CONFLICT(cluster, node) DO UPDATE SET serial = excluded.serial, "
      "not_after_ms = excluded.not_after_ms, seen_ms = excluded.seen_ms");
  if (!stmt.ok()) return stmt.status();
  BindTexts(**stmt, {cluster, node, serial});
  (*stmt)->Bind(4, common::ToUnixMillis(not_after));
  (*stmt)->Bind(5, common::ToUnixMillis(now));
  if (auto s = sql::Run(**stmt, "recording a node's certificate"); !s.ok()) return s;
  return absl::OkStatus();
}

}  // namespace kspm::collector::store::internal

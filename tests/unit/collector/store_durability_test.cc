// The store's file over time and under damage: schema versions and the migrations from older
// collectors, files it refuses (from a newer collector, garbage, corrupt, with a damaged log),
// backups, and a full disk.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "fixtures/host_builder.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/time.h"
#include "unit/collector/store_test_support.h"

namespace kspm::collector::store {
namespace {

TEST_F(SqliteStoreTest, SchemaVersionIsRecordedAndReopenKeepsData) {
  ASSERT_TRUE(
      store_->CommitReport(Report("s1", "a", {Result("x", "1", v1::STATUS_FAIL)}), now_).ok());
  store_.reset();
  EXPECT_EQ(Count("PRAGMA user_version"), 8);
  auto reopened = OpenSqliteStore(path_);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->Findings({})->size(), 1u);
}

// The tables as kspm 0.1's collector (schema 4) left them, written out here rather than taken
// from the migrations, so that a change to an old migration step shows up as a failure.
constexpr char kSchema4[] = R"sql(
CREATE TABLE clusters (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE nodes (id INTEGER PRIMARY KEY, cluster_id INTEGER NOT NULL REFERENCES clusters(id),
  name TEXT NOT NULL, identity BLOB NOT NULL, first_seen_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL, last_scan_id TEXT NOT NULL,
  scan_interval_s INTEGER NOT NULL DEFAULT 300, UNIQUE (cluster_id, name));
CREATE TABLE scans (scan_id TEXT PRIMARY KEY, node_id INTEGER NOT NULL REFERENCES nodes(id),
  started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
  full INTEGER NOT NULL, results INTEGER NOT NULL);
CREATE TABLE results (node_id INTEGER NOT NULL REFERENCES nodes(id), check_id TEXT NOT NULL,
  benchmark TEXT NOT NULL, benchmark_id TEXT NOT NULL, status INTEGER NOT NULL,
  severity INTEGER NOT NULL, scored INTEGER NOT NULL, result BLOB NOT NULL,
  scan_id TEXT NOT NULL, updated_ms INTEGER NOT NULL, changed_ms INTEGER NOT NULL,
  PRIMARY KEY (node_id, check_id, benchmark)) WITHOUT ROWID;
CREATE TABLE transitions (id INTEGER PRIMARY KEY, node_id INTEGER NOT NULL REFERENCES nodes(id),
  check_id TEXT NOT NULL, benchmark TEXT NOT NULL, old_status INTEGER NOT NULL,
  new_status INTEGER NOT NULL, at_ms INTEGER NOT NULL, scan_id TEXT NOT NULL);
CREATE INDEX transitions_by_node ON transitions (node_id, at_ms);
CREATE INDEX transitions_by_check ON transitions (check_id, at_ms);
CREATE TABLE result_counts (node_id INTEGER NOT NULL REFERENCES nodes(id),
  benchmark TEXT NOT NULL, status INTEGER NOT NULL, severity INTEGER NOT NULL,
  scored INTEGER NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (node_id, benchmark, status, severity, scored)) WITHOUT ROWID;
CREATE TABLE drift_events (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
  node_id INTEGER NOT NULL REFERENCES nodes(id), observed_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL, scan_id TEXT NOT NULL, event BLOB NOT NULL);
PRAGMA user_version = 4;
)sql";

// A schema-4 file holding node `a` of cluster `prod` with result x (4.2.1, FAIL, high) and, as
// schema 4 stored cluster results, node `cluster` with `pod.privileged[Deployment shop/web [app]]`
// (5.2.2, WARN) and one transition of it.
void WriteSchema4Database(const std::string& path, common::Clock::time_point now) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, kSchema4, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  v1::NodeIdentity a, cluster;
  a.set_node_name("a");
  a.set_cluster("prod");
  cluster.set_node_name("cluster");
  cluster.set_cluster("prod");
  auto node_result = Result("x", "4.2.1", v1::STATUS_FAIL);
  auto cluster_result = Result("pod.privileged[Deployment shop/web [app]]", "5.2.2",
                               v1::STATUS_WARN, v1::SEVERITY_CRITICAL, false);
  auto* res = cluster_result.mutable_resource();
  res->set_kind("Deployment");
  res->set_namespace_("shop");
  res->set_name("web");
  res->set_container("app");
  // A cluster-wide verdict of the pseudo-node: no suffix, resource kind Cluster.
  auto cluster_wide = Result("rbac.no-bindings", "5.1.1", v1::STATUS_PASS);
  cluster_wide.mutable_resource()->set_kind("Cluster");
  const std::string ms = std::to_string(common::ToUnixMillis(now));
  auto hex = [](const std::string& bytes) {
    static const char* digits = "0123456789ABCDEF";
    std::string out = "X'";
    for (unsigned char c : bytes) {
      out += digits[c >> 4];
      out += digits[c & 15];
    }
    return out + "'";
  };
  const std::string sql =
      "INSERT INTO clusters VALUES (1, 'prod');"
      "INSERT INTO nodes VALUES (1, 1, 'a', " +
      hex(a.SerializeAsString()) + ", " + ms + ", " + ms +
      ", 's-a', 300);"
      "INSERT INTO nodes VALUES (2, 1, 'cluster', " +
      hex(cluster.SerializeAsString()) + ", " + ms + ", " + ms +
      ", 's-c', 600);"
      "INSERT INTO results VALUES (1, 'x', 'cis-kubernetes-1.12', '4.2.1', 2, 4, 1, " +
      hex(node_result.SerializeAsString()) + ", 's-a', " + ms + ", " + ms +
      ");"
      "INSERT INTO results VALUES (2, 'pod.privileged[Deployment shop/web [app]]', "
      "'cis-kubernetes-1.12', '5.2.2', 3, 5, 0, " +
      hex(cluster_result.SerializeAsString()) + ", 's-c', " + ms + ", " + ms +
      ");"
      "INSERT INTO results VALUES (2, 'rbac.no-bindings', 'cis-kubernetes-1.12', '5.1.1', 1, 4, "
      "1, " +
      hex(cluster_wide.SerializeAsString()) + ", 's-c', " + ms + ", " + ms +
      ");"
      "INSERT INTO result_counts VALUES (2, 'cis-kubernetes-1.12', 1, 4, 1, 1);"
      "INSERT INTO result_counts VALUES (1, 'cis-kubernetes-1.12', 2, 4, 1, 1);"
      "INSERT INTO result_counts VALUES (2, 'cis-kubernetes-1.12', 3, 5, 0, 1);"
      "INSERT INTO transitions(node_id, check_id, benchmark, old_status, new_status, at_ms, "
      "scan_id) VALUES (2, 'pod.privileged[Deployment shop/web [app]]', 'cis-kubernetes-1.12', 1, "
      "3, " +
      ms + ", 's-c');";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, MigratesASchemaFourDatabaseSplittingClusterResultKeys) {
  store_.reset();
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  WriteSchema4Database(path_, now_);
  auto reopened = OpenSqliteStore(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(Count("PRAGMA user_version"), 8);
  // The cluster result is found by its bare check id, with the suffix gone from the stored result.
  FindingFilter filter;
  filter.id = "pod.privileged";
  auto found = (*reopened)->Findings(filter);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].result().check_id(), "pod.privileged");
  EXPECT_EQ((*found)[0].result().resource().name(), "web");
  // Keyed by the object's own columns (schema 8), not by the text people read.
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE kind = 'Deployment' AND "
                  "object_namespace = 'shop' AND name = 'web' AND container = 'app'"),
            1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM transitions WHERE kind = 'Deployment' AND "
                  "object_namespace = 'shop' AND name = 'web' AND container = 'app'"),
            1);
  filter.id.clear();
  filter.ns = "shop";
  EXPECT_EQ((*reopened)->Findings(filter)->size(), 1u);
  // Counts rebuilt per section and namespace.
  auto summary = (*reopened)->Summary("", now_);
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->overall().counts().fail(), 1u);
  EXPECT_EQ(summary->overall().counts().warn(), 1u);
  ASSERT_EQ(summary->namespaces_size(), 2);
  EXPECT_EQ(summary->namespaces(0).scope(), "(cluster)");  // the cluster-wide verdict
  EXPECT_EQ(summary->namespaces(1).scope(), "shop");
  std::set<std::string> sections;
  for (const auto& sc : summary->sections()) sections.insert(sc.scope());
  EXPECT_EQ(sections, (std::set<std::string>{"cis-kubernetes-1.12 4", "cis-kubernetes-1.12 5"}));
  // History keeps the change, now with its object.
  HistoryFilter hf;
  hf.id = "pod.privileged";
  auto history = (*reopened)->History(hf);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0].object(), "Deployment shop/web [app]");
  EXPECT_EQ((*history)[0].benchmark_id(), "5.2.2");
  // The next cluster scan updates that row instead of adding one.
  v1::CheckResult again = (*found)[0].result();
  auto next = Report("s-c2", "cluster", {again});
  ASSERT_TRUE((*reopened)->CommitReport(next, now_).ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 2);  // the full report dropped the other
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"), 2);
}

TEST_F(SqliteStoreTest, MigratesAVersionOneDatabaseKeepingItsData) {
  store_.reset();
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  WriteSchema4Database(path_, now_);
  // Turn the file back into what schema 1 looked like.
  sqlite3* db = nullptr;
  sqlite3_open(path_.c_str(), &db);
  ASSERT_EQ(
      sqlite3_exec(db,
                   "DROP TABLE drift_events; DROP TABLE result_counts; ALTER TABLE nodes DROP "
                   "COLUMN scan_interval_s; PRAGMA user_version = 1;",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  auto reopened = OpenSqliteStore(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(Count("PRAGMA user_version"), 8);  // every migration ran again
  auto nodes = (*reopened)->Nodes("", now_);
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].scan_interval_seconds(), 300u);  // the default for old rows
  EXPECT_EQ((*reopened)->Findings({})->size(), 2u);
  // Counts were built from the existing rows.
  EXPECT_EQ((*reopened)->Summary("", now_)->overall().counts().fail(), 1u);
}

TEST_F(SqliteStoreTest, RefusesADatabaseFromANewerCollector) {
  store_.reset();
  sqlite3* db = nullptr;
  sqlite3_open(path_.c_str(), &db);
  sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto s = OpenSqliteStore(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("newer"), std::string::npos);
}

TEST(SqliteStore, UnusablePathNamesTheFile) {
  auto s = OpenSqliteStore("/nonexistent-dir/kspm.db");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("/nonexistent-dir/kspm.db"), std::string::npos);
}

TEST(SqliteStore, GarbageFileIsRejectedWithItsName) {
  kspm::testing::TempDir dir;
  const std::string path = dir.path() + "/garbage.db";
  FILE* f = fopen(path.c_str(), "w");
  fputs("this is not a database, just text that is long enough to be read as a header....", f);
  fclose(f);
  auto s = OpenSqliteStore(path);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find(path), std::string::npos) << s.status();
}

}  // namespace
}  // namespace kspm::collector::store

namespace kspm::collector::store {
namespace {

// A store with 40 nodes of 25 results each: enough pages that a damaged one is a table page.
void Fill(Store& store, common::Clock::time_point now) {
  for (int n = 0; n < 40; ++n) {
    std::vector<v1::CheckResult> results;
    for (int i = 0; i < 25; ++i) {
      v1::CheckResult r;
      r.set_check_id("check-" + std::to_string(i));
      r.set_benchmark("cis-kubernetes-1.12");
      r.set_benchmark_id("4.2." + std::to_string(i));
      r.set_status(v1::STATUS_FAIL);
      r.set_reason(std::string(300, 'x'));
      results.push_back(std::move(r));
    }
    v1::NodeReport rep;
    rep.set_scan_id("scan-" + std::to_string(n));
    rep.mutable_node()->set_node_name("node-" + std::to_string(n));
    rep.mutable_node()->set_cluster("prod");
    rep.set_full(true);
    for (auto& r : results) *rep.add_results() = std::move(r);
    ASSERT_TRUE(store.CommitReport(rep, now).ok());
  }
}

TEST(StoreIntegrity, ACorruptFileIsRefusedAtOpenNamingIt) {
  kspm::testing::TempDir dir;
  const std::string path = dir.path() + "/kspm.db";
  {
    auto store = OpenSqliteStore(path);
    ASSERT_TRUE(store.ok());
    Fill(**store, common::Clock::now());
  }  // closed: the WAL is checkpointed into the file
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  ASSERT_GT(st.st_size, 16 * 4096);
  // Garbage over pages 6 to 9, as a bad disk or a stray writer would leave it.
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::string garbage(4 * 4096, '\x5a');
  ASSERT_EQ(::pwrite(fd, garbage.data(), garbage.size(), 5 * 4096),
            static_cast<ssize_t>(garbage.size()));
  ::close(fd);
  const auto reopened = OpenSqliteStore(path);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(reopened.status().message().find(path + " is corrupt"), std::string::npos)
      << reopened.status();
  EXPECT_FALSE(CheckSqliteStore(path, /*full=*/true).ok());
}

// One flipped byte in the write-ahead log: sqlite's own recovery stops at the bad frame and
// drops every commit after it without a word (acked reports gone). The store reads the log
// first and refuses to start, naming the log and the frame; --accept-damaged-log goes on.
TEST(StoreIntegrity, ADamagedLogIsRefusedNamingTheFrame) {
  kspm::testing::TempDir dir;
  const std::string path = dir.path() + "/kspm.db";
  auto store = OpenSqliteStore(path);
  ASSERT_TRUE(store.ok());
  const auto now = common::Clock::now();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE((*store)
                    ->CommitReport(Report("scan-" + std::to_string(i), "node-" + std::to_string(i),
                                          {Result("a", "4.2.1", v1::STATUS_FAIL)}),
                                   now)
                    .ok());
  }
  // The files as a crash would leave them: the commits are in the log, not yet in the file.
  auto copy = [&](const std::string& name) {
    const std::string to = dir.path() + "/" + name;
    std::filesystem::copy_file(path, to);
    std::filesystem::copy_file(path + "-wal", to + "-wal");
    return to;
  };
  const std::string intact = copy("intact.db"), damaged = copy("damaged.db"),
                    torn = copy("torn.db");
  const auto wal_size = std::filesystem::file_size(damaged + "-wal");
  ASSERT_GT(wal_size, 32u + 6 * (24 + 4096)) << "the commits are not in the log";
  auto flip = [](const std::string& file, uint64_t offset) {
    const int fd = ::open(file.c_str(), O_RDWR);
    char c = 0;
    ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(offset)), 1);
    c = static_cast<char>(c ^ 0x01);
    ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(offset)), 1);
    ::close(fd);
  };
  flip(damaged + "-wal", 32 + 24 + 100);  // inside the first frame's page
  flip(torn + "-wal", wal_size - 100);    // inside the last frame: a write cut short

  EXPECT_TRUE(CheckSqliteLog(intact).ok());
  EXPECT_TRUE(CheckSqliteLog(torn).ok()) << "a torn last frame is what a crash leaves";
  auto intact_store = OpenSqliteStore(intact);
  ASSERT_TRUE(intact_store.ok()) << intact_store.status();
  FindingFilter all;
  all.now = now;
  EXPECT_EQ((*intact_store)->Findings(all)->size(), 5u);

  const auto refused = OpenSqliteStore(damaged);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.status().message().find(damaged + "-wal: frame 1 "), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("--accept-damaged-log"), std::string::npos);
  EXPECT_EQ(CheckSqliteStore(damaged, /*full=*/false).code(), absl::StatusCode::kDataLoss);

  // Accepted: it opens, and shows what sqlite alone would have hidden.
  auto accepted = OpenSqliteStore(damaged, 4, /*accept_damaged_log=*/true);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_LT((*accepted)->Findings(all)->size(), 5u);
}

TEST(StoreIntegrity, BackupIsAConsistentCheckedCopyTakenWhileWriting) {
  kspm::testing::TempDir dir;
  const std::string path = dir.path() + "/kspm.db", copy = dir.path() + "/backup.db";
  auto store = OpenSqliteStore(path);
  ASSERT_TRUE(store.ok());
  Fill(**store, common::Clock::now());
  ASSERT_TRUE(BackupSqliteStore(path, copy).ok());  // the writer's connection stays open
  EXPECT_TRUE(CheckSqliteStore(path, /*full=*/true).ok());
  auto restored = OpenSqliteStore(copy);
  ASSERT_TRUE(restored.ok()) << restored.status();
  FindingFilter all;
  EXPECT_EQ((*restored)->Findings(all)->size(), (*store)->Findings(all)->size());
  EXPECT_EQ((*restored)->Findings(all)->size(), 1000u);
  const auto again = BackupSqliteStore(path, copy);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace kspm::collector::store

namespace kspm::collector::store {
namespace {

// A real small file system (tmpfs of 3 MiB, mounted by the test as root): commits fail with a
// clear "disk full" while there is no space, the log does not keep space the database needs,
// and once space is freed the same store commits again, without a restart, and nothing
// committed before is lost.
class FullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs";
    mnt_ = dir_.path() + "/small";
    ::mkdir(mnt_.c_str(), 0700);
    if (::mount("kspm-small", mnt_.c_str(), "tmpfs", 0, "size=3m") != 0) {
      GTEST_SKIP() << "cannot mount tmpfs: " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    store_.reset();
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }
  static v1::NodeReport Big(int i) {
    std::vector<v1::CheckResult> results;
    for (int k = 0; k < 20; ++k) {
      auto r = Result("check-" + std::to_string(k), "4.2." + std::to_string(k), v1::STATUS_FAIL);
      r.set_reason(std::string(2000, static_cast<char>('a' + (i + k) % 26)));
      results.push_back(std::move(r));
    }
    return Report("scan-" + std::to_string(i), "node-" + std::to_string(i), std::move(results));
  }

  kspm::testing::TempDir dir_;
  std::string mnt_;
  bool mounted_ = false;
  std::unique_ptr<Store> store_;
};

TEST_F(FullDiskTest, CommitsFailClearlyWhileFullAndResumeOnceSpaceIsFreed) {
  auto opened = OpenSqliteStore(mnt_ + "/kspm.db");
  ASSERT_TRUE(opened.ok()) << opened.status();
  store_ = *std::move(opened);
  EXPECT_TRUE(store_->Space().tight) << "3 MiB free is below the tight mark";
  // Leave little room: a filler file takes most of the space.
  const std::string filler = mnt_ + "/filler";
  {
    const int fd = ::open(filler.c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    const std::string chunk(64 << 10, 'f');
    while (::write(fd, chunk.data(), chunk.size()) > 0) {
    }
    ::close(fd);
    // Give 1 MiB back so that some reports fit.
    struct stat st {};
    ASSERT_EQ(::stat(filler.c_str(), &st), 0);
    ASSERT_EQ(::truncate(filler.c_str(), std::max<off_t>(0, st.st_size - (1 << 20))), 0);
  }
  const auto now = common::Clock::now();
  int committed = 0;
  absl::Status failure;
  for (int i = 0; i < 500 && failure.ok(); ++i) {
    auto out = store_->CommitReport(Big(i), now);
    if (out.ok()) {
      ++committed;
    } else {
      failure = out.status();
    }
  }
  ASSERT_FALSE(failure.ok()) << "the disk never filled: the test proves nothing";
  EXPECT_GT(committed, 0);
  EXPECT_EQ(failure.code(), absl::StatusCode::kResourceExhausted) << failure;
  EXPECT_NE(failure.message().find("disk full"), std::string::npos) << failure;
  EXPECT_NE(failure.message().find(mnt_ + "/kspm.db"), std::string::npos) << failure;
  const StoreSpace full = store_->Space();
  EXPECT_FALSE(full.full_since.empty());
  // The log was truncated after each batch on this tight disk: it holds no stale space.
  EXPECT_LT(full.wal_bytes, 256 << 10) << "the log keeps " << full.wal_bytes << " bytes";

  // Space comes back: the same store commits the report that failed, and the next ones.
  ASSERT_EQ(::unlink(filler.c_str()), 0);
  auto retried = store_->CommitReport(Big(committed), now);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_TRUE(store_->Space().full_since.empty());
  FindingFilter all;
  all.now = now;
  const auto found = store_->Findings(all);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->size(), static_cast<size_t>((committed + 1) * 20));
}

}  // namespace
}  // namespace kspm::collector::store

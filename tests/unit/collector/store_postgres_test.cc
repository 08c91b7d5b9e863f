// What only the PostgreSQL store does, on the real server (kspm::testing::PostgresServer):
// several stores (collectors) on one database, leases, the copy from sqlite, and the faults a
// server brings (unreachable, newer schema, a read-only replica).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fixtures/postgres_test.h"
#include "fixtures/process.h"
#include "kspm/collector/server/ingest.h"
#include "kspm/collector/store/sql_store.h"
#include "kspm/collector/store/store.h"
#include "unit/collector/store_test_support.h"

namespace kspm::collector::store {
namespace {

using namespace std::chrono_literals;

class PostgresStoreTest : public kspm::testing::PostgresDatabaseTest {
 protected:
  std::unique_ptr<Store> Open(const std::string& url) {
    PostgresOptions options;
    options.url = url;
    options.wait = 2s;
    auto s = OpenPostgresStore(options);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  kspm::testing::TempDir dir_;
  common::Clock::time_point now_ = common::Clock::now();
};

// Two collectors commit the same reports at once (an agent that resent to the other replica
// what the first had not acknowledged yet): each scan is stored once, its changes once.
TEST_F(PostgresStoreTest, TwoStoresCommittingTheSameReportsStoreEachOnce) {
  auto one = Open(pg_->Url(db_));
  auto two = Open(pg_->Url(db_));
  ASSERT_TRUE(one && two);
  constexpr int kScans = 60;
  std::vector<v1::NodeReport> reports;
  for (int i = 0; i < kScans; ++i) {
    // Each scan flips check x on its node: every scan is one transition.
    const auto status = i % 2 == 0 ? v1::STATUS_FAIL : v1::STATUS_PASS;
    reports.push_back(Report("scan-" + std::to_string(i), "node-" + std::to_string(i % 3),
                             {Result("x", "1.1.1", status), Result("y", "1.1.2", v1::STATUS_PASS)},
                             false));
  }
  std::atomic<int> duplicates{0}, failures{0};
  auto feed = [&](Store& store) {
    for (const auto& r : reports) {
      auto s = store.CommitReport(r, now_);
      if (!s.ok()) {
        ++failures;
        ADD_FAILURE() << s.status();
      } else if (s->duplicate) {
        ++duplicates;
      }
    }
  };
  std::thread a([&] { feed(*one); });
  std::thread b([&] { feed(*two); });
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(duplicates.load(), kScans);  // each report was refused once as already stored
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), kScans);
  // Per node, 20 scans alternating FAIL and PASS: 19 changes after the first verdict.
  EXPECT_EQ(Count("SELECT COUNT(*) FROM transitions"), 3 * 19);
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"),
            Count("SELECT COUNT(*) FROM results"));
}

// One collector at a time holds a lease; when it goes (its connection closes), another takes it.
TEST_F(PostgresStoreTest, ALeaseIsHeldByOneStoreAndTakenOverWhenItGoes) {
  auto one = Open(pg_->Url(db_));
  auto two = Open(pg_->Url(db_));
  ASSERT_TRUE(one && two);
  auto first = one->HoldLease("cluster-scan/prod");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(*first);
  EXPECT_TRUE(*one->HoldLease("cluster-scan/prod"));  // still held, asked again
  EXPECT_FALSE(*two->HoldLease("cluster-scan/prod"));
  EXPECT_TRUE(*two->HoldLease("cluster-scan/staging"));  // another lease is free
  one.reset();
  EXPECT_TRUE(kspm::testing::WaitUntil([&] {
    auto held = two->HoldLease("cluster-scan/prod");
    return held.ok() && *held;
  }));
}

// A sqlite store copied into PostgreSQL answers every query as the original does; a second run
// resumes (nothing doubled), and a database holding other posture is refused.
TEST_F(PostgresStoreTest, ACopyFromSqliteAnswersAsTheOriginalAndResumes) {
  const std::string file = dir_.path() + "/kspm.db";
  {
    auto sqlite = OpenSqliteStore(file);
    ASSERT_TRUE(sqlite.ok());
    for (int i = 0; i < 30; ++i) {
      auto rep = Report("s" + std::to_string(i), "node-" + std::to_string(i % 4),
                        {Result("x", "4.2.1", (i / 4) % 2 ? v1::STATUS_PASS : v1::STATUS_FAIL),
                         Result("y", "4.2.2", v1::STATUS_WARN, v1::SEVERITY_LOW)});
      auto* drift = rep.add_drift();
      drift->set_event_id("e" + std::to_string(i));
      drift->set_path("/etc/kubernetes/kubelet.conf");
      ASSERT_TRUE((*sqlite)->CommitReport(rep, now_ + std::chrono::seconds(i)).ok());
    }
    ASSERT_TRUE(
        (*sqlite)->AddJoinToken({"tok", "hash", "prod", "", now_ + 1h, 2, "ops"}, now_).ok());
  }
  PostgresOptions to;
  to.url = pg_->Url(db_);
  auto copied = CopySqliteToPostgres(file, to);
  ASSERT_TRUE(copied.ok()) << copied.status();
  for (const auto& t : *copied) EXPECT_EQ(t.source_rows, t.target_rows) << t.table;
  const int transitions = Count("SELECT COUNT(*) FROM transitions");
  EXPECT_GT(transitions, 0);
  // A finished copy is not copied again (it may have taken reports since).
  auto twice = CopySqliteToPostgres(file, to);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("holds a finished copy"), std::string::npos)
      << twice.status();
  // One that stopped halfway (as if killed after some tables) is resumed: the rows missing are
  // copied, those there are kept, and the counts agree again.
  pg_->Exec(db_, "UPDATE kspm_copies SET finished_ms = NULL");
  pg_->Exec(db_, "DELETE FROM transitions WHERE id > (SELECT MIN(id) FROM transitions)");
  pg_->Exec(db_, "DELETE FROM drift_events WHERE id > 10");
  auto again = CopySqliteToPostgres(file, to);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Count("SELECT COUNT(*) FROM transitions"), transitions);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM drift_events"), 30);

  auto original = OpenSqliteStore(file);
  ASSERT_TRUE(original.ok());
  auto copy = Open(to.url);
  ASSERT_TRUE(copy);
  const auto later = now_ + std::chrono::seconds(40);
  EXPECT_EQ((*original)->Summary("", later)->DebugString(),
            copy->Summary("", later)->DebugString());
  FindingFilter f;
  f.now = later;
  auto a = (*original)->Findings(f);
  auto b = copy->Findings(f);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ((*a)[i].DebugString(), (*b)[i].DebugString());
  HistoryFilter h;
  auto ha = (*original)->History(h);
  auto hb = copy->History(h);
  ASSERT_TRUE(ha.ok() && hb.ok());
  ASSERT_EQ(ha->size(), hb->size());
  ASSERT_FALSE(ha->empty());
  for (size_t i = 0; i < ha->size(); ++i) EXPECT_EQ((*ha)[i].DebugString(), (*hb)[i].DebugString());
  EXPECT_EQ((*original)->Drift({})->size(), copy->Drift({})->size());
  // The copy takes new reports: its ids go on after the copied ones.
  ASSERT_TRUE(
      copy->CommitReport(Report("s-new", "node-9", {Result("x", "4.2.1", v1::STATUS_FAIL)}), later)
          .ok());
  EXPECT_TRUE(copy->RedeemJoinToken("tok", "hash", "node-9", later).ok());

  // Another file into the same database: refused, naming why.
  const std::string other = dir_.path() + "/other.db";
  ASSERT_TRUE(OpenSqliteStore(other).ok());
  auto refused = CopySqliteToPostgres(other, to);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("not copied from " + other), std::string::npos)
      << refused.status();
}

// A database written by a newer collector is refused, as is a server that takes no writes.
TEST_F(PostgresStoreTest, ANewerSchemaAndAReadOnlyServerAreRefusedNamingWhy) {
  ASSERT_TRUE(Open(pg_->Url(db_)));
  pg_->Exec(db_, "INSERT INTO kspm_schema(version) VALUES (99)");
  PostgresOptions options;
  options.url = pg_->Url(db_);
  options.wait = 1s;
  auto newer = OpenPostgresStore(options);
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(newer.status().message().find("schema version 99, newer"), std::string::npos)
      << newer.status();

  const std::string replica = pg_->NewDatabase();
  pg_->Exec("postgres", "ALTER DATABASE " + replica + " SET default_transaction_read_only = on");
  options.url = pg_->Url(replica);
  auto read_only = OpenPostgresStore(options);
  ASSERT_FALSE(read_only.ok());
  EXPECT_EQ(read_only.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(read_only.status().message().find("takes no writes"), std::string::npos)
      << read_only.status();
}

// A server that cannot be reached is retried until the wait ends, then named (without its
// password); a malformed URL is not retried at all.
TEST_F(PostgresStoreTest, AnUnreachableServerIsRetriedThenNamedWithoutItsPassword) {
  PostgresOptions options;
  options.url = "postgresql://kspm:s3cret@/kspm?host=" + dir_.path() + "/no-such-socket-dir";
  options.wait = 1500ms;
  const auto started = std::chrono::steady_clock::now();
  auto s = OpenPostgresStore(options);
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_GE(took, 700ms);  // retried (250 ms, then 500 ms) before giving up
  EXPECT_EQ(s.status().message().find("s3cret"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("kspm:***@"), std::string::npos) << s.status();

  options.url = "postgresql://kspm@/kspm?host";
  const auto bad_started = std::chrono::steady_clock::now();
  auto bad = OpenPostgresStore(options);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_LT(std::chrono::steady_clock::now() - bad_started, 500ms);
}

// The server ends the collector's connection (a failover, an administrator, a network cut)
// while a check's slices share an open transaction: the transaction dies with the connection,
// nothing of it is committed in pieces, that report fails (its agent resends it), and the next
// commit reconnects and succeeds.
TEST_F(PostgresStoreTest, AConnectionLostInATransactionCommitsNothingOfItAndTheNextReconnects) {
  auto store = Open(pg_->Url(db_));
  ASSERT_TRUE(store);
  auto head = Report("scan-1", "cluster", {});
  auto writer = store->BeginReport(head, now_);
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto deployed = [](const std::string& name) {
    auto r = Result("x", "5.2.2", v1::STATUS_FAIL);
    r.mutable_resource()->set_kind("Deployment");
    r.mutable_resource()->set_namespace_("shop");
    r.mutable_resource()->set_name(name);
    return r;
  };
  // The first slice is written inside a transaction held open for the next one.
  ASSERT_TRUE((*writer)->Add({deployed("web")}, /*more=*/true).ok());
  // Every server process of this database but the test's own is ended.
  pg_->Exec(db_,
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid()");
  auto second = (*writer)->Add({deployed("db")}, /*more=*/false);
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.code(), absl::StatusCode::kUnavailable) << second;
  EXPECT_FALSE((*writer)->Finish(now_).ok());
  writer->reset();
  // The query connections went too: a query finds that out and is sent again on a new one.
  for (int i = 0; i < 6; ++i) {
    auto summary = store->Summary("", now_);
    EXPECT_TRUE(summary.ok()) << summary.status();
  }
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 0);  // the first slice went with it
  // The next report reconnects and is stored whole.
  auto next = store->CommitReport(
      Report("scan-2", "node-a", {Result("y", "4.2.1", v1::STATUS_FAIL)}), now_);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results"), 1);
  EXPECT_EQ(Count("SELECT COALESCE(SUM(n), 0) FROM result_counts"), 1);
}

// A report committed to the file while the copy runs (a collector that was not stopped) is
// either wholly in the copy or not at all: every table is read from one snapshot.
TEST_F(PostgresStoreTest, ACopyReadsTheFileInOneSnapshot) {
  const std::string file = dir_.path() + "/kspm.db";
  auto sqlite = OpenSqliteStore(file);
  ASSERT_TRUE(sqlite.ok());
  ASSERT_TRUE(
      (*sqlite)
          ->CommitReport(Report("early", "node-a", {Result("x", "4.2.1", v1::STATUS_FAIL)}), now_)
          .ok());
  PostgresOptions to;
  to.url = pg_->Url(db_);
  bool committed = false;
  // After the first table (clusters) is copied, before scans and results are read.
  auto copied = CopySqliteToPostgres(file, to, [&](const std::string&) {
    if (committed) return;
    committed = true;
    auto late = (*sqlite)->CommitReport(
        Report("late", "node-a", {Result("x", "4.2.1", v1::STATUS_PASS)}), now_ + 1s);
    EXPECT_TRUE(late.ok()) << late.status();
  });
  ASSERT_TRUE(copied.ok()) << copied.status();
  ASSERT_TRUE(committed);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans WHERE scan_id = 'early'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans WHERE scan_id = 'late'"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM results WHERE scan_id = 'late'"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM transitions"), 0);
}

// A batch whose cluster is new, waiting for a node's lock that another collector holds, does
// not hold the new cluster's row: the other collector, storing the same cluster, goes on (no
// wait in a circle, which PostgreSQL would break by failing one of them after a second).
TEST_F(PostgresStoreTest, ANewClusterIsNotHeldWhileABatchWaitsForANodeLock) {
  auto store = Open(pg_->Url(db_));
  ASSERT_TRUE(store);
  std::unique_ptr<PGconn, void (*)(PGconn*)> other(PQconnectdb(pg_->Url(db_).c_str()), PQfinish);
  ASSERT_EQ(PQstatus(other.get()), CONNECTION_OK);
  auto exec = [&](const std::string& sql) {
    PGresult* r = PQexec(other.get(), sql.c_str());
    const auto status = PQresultStatus(r);
    std::string error = PQresultErrorMessage(r);
    PQclear(r);
    return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ? std::string() : error;
  };
  // The other collector commits node east/c: it holds the node's lock.
  ASSERT_EQ(exec("BEGIN; SELECT pg_advisory_xact_lock(" +
                 std::to_string(internal::Digest(std::string("east\x1f") + "c")) + ")"),
            "");
  auto a = Report("a-1", "a", {Result("x", "1.1.1", v1::STATUS_FAIL)});
  auto c = Report("c-1", "c", {Result("x", "1.1.1", v1::STATUS_FAIL)});
  a.mutable_node()->set_cluster("east");
  c.mutable_node()->set_cluster("east");
  std::vector<absl::StatusOr<CommitStats>> out;
  std::thread batch([&] { out = store->CommitBatch({&a, &c}, now_); });
  // Until this store's batch waits for that lock.
  EXPECT_TRUE(kspm::testing::WaitUntil([&] {
    return pg_->Exec(db_,
                     "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT "
                     "granted") == "1";
  }));
  // The other collector stores cluster east too, and commits.
  EXPECT_EQ(exec("SET statement_timeout = '5s'"), "");
  EXPECT_EQ(exec("INSERT INTO clusters(name) VALUES ('east') ON CONFLICT (name) DO NOTHING"), "");
  EXPECT_EQ(exec("COMMIT"), "");
  batch.join();
  ASSERT_EQ(out.size(), 2u);
  for (const auto& o : out) EXPECT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(Count("SELECT COUNT(*) FROM clusters WHERE name = 'east'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 2);
}

// The collector's writers (server::Ingest over a store with two write sessions): while one
// node's report waits (its node lock held by another session, as another collector's commit
// would), reports of other nodes are committed on the other session; and a node's reports are
// committed in the order they came, whichever writer takes them.
TEST_F(PostgresStoreTest, SeveralWritersCommitOtherNodesWhileOneWaitsAndKeepEachNodesOrder) {
  PostgresOptions options;
  options.url = pg_->Url(db_);
  options.wait = 2s;
  options.writers = 2;
  auto opened = OpenPostgresStore(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Store& store = **opened;
  ASSERT_EQ(store.WriteConcurrency(), 2u);
  // Declared before the writers, whose callbacks use them.
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, absl::Status> done;  // by scan id
  // Another connection holds node prod/held's lock in an open transaction.
  std::unique_ptr<PGconn, void (*)(PGconn*)> connection(PQconnectdb(pg_->Url(db_).c_str()),
                                                        PQfinish);
  PGconn* other = connection.get();
  ASSERT_EQ(PQstatus(other), CONNECTION_OK) << PQerrorMessage(other);
  const std::string lock = "BEGIN; SELECT pg_advisory_xact_lock(" +
                           std::to_string(internal::Digest(std::string("prod\x1fheld"))) + ")";
  PGresult* held = PQexec(other, lock.c_str());
  ASSERT_EQ(PQresultStatus(held), PGRES_TUPLES_OK) << PQresultErrorMessage(held);
  PQclear(held);

  server::Ingest ingest(store, /*max_batch=*/3);
  ingest.Start();
  auto submit = [&](v1::NodeReport r) {
    const std::string scan = r.scan_id();
    ingest.Submit(std::make_shared<const v1::NodeReport>(std::move(r)),
                  [&, scan](const absl::StatusOr<CommitStats>& outcome) {
                    std::lock_guard l(mu);
                    done[scan] = outcome.status();
                    cv.notify_all();
                  });
  };
  submit(Report("held-1", "held", {Result("x", "1.1.1", v1::STATUS_FAIL)}));
  // Taken by a writer alone (which then waits for the lock, up to lock_timeout's 10 s).
  for (int i = 0; i < 1000 && ingest.queued() > 0; ++i) std::this_thread::sleep_for(2ms);
  ASSERT_EQ(ingest.queued(), 0u);
  for (int i = 0; i < 10; ++i) {
    submit(Report("n-" + std::to_string(i), "n" + std::to_string(i),
                  {Result("x", "1.1.1", v1::STATUS_PASS)}));
  }
  {
    std::unique_lock l(mu);
    // The other nodes' reports are committed while the held node's waits.
    ASSERT_TRUE(cv.wait_for(l, 8s, [&] { return done.size() >= 10; }));
    EXPECT_EQ(done.size(), 10u);
    EXPECT_FALSE(done.contains("held-1"));
  }
  held = PQexec(other, "COMMIT");
  PQclear(held);
  connection.reset();
  // Then 5 nodes' reports, 30 each flipping check x, interleaved, with both writers free.
  constexpr int kNodes = 5, kFlips = 30;
  for (int i = 0; i < kFlips; ++i) {
    for (int n = 0; n < kNodes; ++n) {
      submit(Report("b" + std::to_string(n) + "-" + std::to_string(100 + i),
                    "b" + std::to_string(n),
                    {Result("x", "1.1.1", i % 2 == 0 ? v1::STATUS_FAIL : v1::STATUS_PASS)}));
    }
  }
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, 60s, [&] { return done.size() == 11 + kNodes * kFlips; }));
  }
  ingest.Stop();
  for (const auto& [scan, status] : done) EXPECT_TRUE(status.ok()) << scan << ": " << status;
  // Each node's changes are one chain in its reports' order: FAIL, PASS, FAIL, ... as sent.
  for (int n = 0; n < kNodes; ++n) {
    const std::string node = "b" + std::to_string(n);
    const std::string chain = pg_->Exec(
        db_,
        "SELECT string_agg(t.scan_id || ':' || t.old_status || '>' || t.new_status, ',' ORDER BY "
        "t.id) FROM transitions t JOIN nodes n ON n.id = t.node_id WHERE n.name = '" +
            node + "'");
    std::string expected;
    for (int i = 1; i < kFlips; ++i) {
      const int from = i % 2 == 1 ? v1::STATUS_FAIL : v1::STATUS_PASS;
      const int to = i % 2 == 1 ? v1::STATUS_PASS : v1::STATUS_FAIL;
      expected += (i > 1 ? "," : "") + node + "-" + std::to_string(100 + i) + ":" +
                  std::to_string(from) + ">" + std::to_string(to);
    }
    EXPECT_EQ(chain, expected) << node;
  }
  EXPECT_EQ(Count("SELECT COUNT(*) FROM scans"), 11 + kNodes * kFlips);
}

TEST(PostgresUrl, PasswordsAreRedactedInEveryForm) {
  EXPECT_EQ(RedactPostgresUrl("postgres://kspm:pw@db:5432/kspm"),
            "postgres://kspm:***@db:5432/kspm");
  EXPECT_EQ(RedactPostgresUrl("postgres://kspm@db/kspm?password=pw&sslmode=require"),
            "postgres://kspm@db/kspm?password=***&sslmode=require");
  EXPECT_EQ(RedactPostgresUrl("host=db password=pw dbname=kspm"),
            "host=db password=*** dbname=kspm");
  EXPECT_EQ(RedactPostgresUrl("postgres://db/kspm"), "postgres://db/kspm");
  EXPECT_EQ(RedactPostgresUrl("host=db password='a b\\' c' dbname=kspm"),
            "host=db password=*** dbname=kspm");
}

}  // namespace
}  // namespace kspm::collector::store

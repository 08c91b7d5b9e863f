#pragma once

// What the store tests share: results and reports to commit, and fixtures holding a new store
// (with a read-only counter of rows, `Count`).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fixtures/host_builder.h"
#include "fixtures/postgres.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/time.h"
#include "kspm/v1/results.pb.h"

namespace kspm::collector::store {

inline v1::CheckResult Result(const std::string& id, const std::string& item, v1::Status status,
                              v1::Severity severity = v1::SEVERITY_HIGH, bool scored = true) {
  v1::CheckResult r;
  r.set_check_id(id);
  r.set_benchmark("cis-kubernetes-1.12");
  r.set_benchmark_id(item);
  r.set_title("title of " + id);
  r.set_status(status);
  r.set_severity(severity);
  r.set_scored(scored);
  r.set_reason("because");
  return r;
}

inline v1::NodeReport Report(const std::string& scan_id, const std::string& node,
                             std::vector<v1::CheckResult> results, bool full = true) {
  v1::NodeReport rep;
  rep.set_scan_id(scan_id);
  rep.mutable_node()->set_node_name(node);
  rep.mutable_node()->set_cluster("prod");
  rep.set_full(full);
  for (auto& r : results) *rep.add_results() = std::move(r);
  return rep;
}

// A new sqlite store in a temporary directory (tests of what only sqlite has: files, its log,
// migrations of old files).
class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenSqliteStore(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  int Count(const std::string& sql) { return CountIn(path_, sql); }

 public:
  static int CountIn(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
    int n = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) n = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
  }

 protected:
  kspm::testing::TempDir dir_;
  std::string path_ = dir_.path() + "/kspm.db";
  std::unique_ptr<Store> store_;
  common::Clock::time_point now_ = common::Clock::now();
};

// A new store on each engine: `sqlite` (a file in a temporary directory) and `postgres` (a new
// database on the real server of kspm::testing::PostgresServer; skipped where none can run).
class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgres") {
      std::string why;
      pg_ = kspm::testing::PostgresServer::Get(&why);
      if (pg_ == nullptr) GTEST_SKIP() << why;
      db_ = pg_->NewDatabase();
      spec_ = pg_->Url(db_);
    } else {
      spec_ = "sqlite:" + dir_.path() + "/kspm.db";
    }
    Open();
  }
  void Open() {
    StoreOptions options;
    options.spec = spec_;
    options.postgres.wait = std::chrono::seconds(5);
    auto s = OpenStore(options);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  void Reopen() {
    store_.reset();
    Open();
  }
  bool postgres() const { return pg_ != nullptr; }
  // The first column of the first row of `sql` as a number (a boolean as 1 or 0); -1 for none.
  int Count(const std::string& sql) {
    if (!pg_) return SqliteStoreTest::CountIn(SqlitePathOf(spec_), sql);
    const std::string v = pg_->Exec(db_, sql);
    if (v == "t" || v == "f") return v == "t" ? 1 : 0;
    if (v.empty() || v.starts_with("error")) {
      ADD_FAILURE() << sql << ": " << v;
      return -1;
    }
    return std::stoi(v);
  }
  kspm::testing::TempDir dir_;
  kspm::testing::PostgresServer* pg_ = nullptr;
  std::string db_, spec_;
  std::unique_ptr<Store> store_;
  common::Clock::time_point now_ = common::Clock::now();
};

// Both engines, named in test names (`Engines/StoreTest.X/postgres`).
#define KSPM_STORE_ENGINES(fixture)                                                   \
  INSTANTIATE_TEST_SUITE_P(Engines, fixture, ::testing::Values("sqlite", "postgres"), \
                           [](const auto& info) { return info.param; })

}  // namespace kspm::collector::store

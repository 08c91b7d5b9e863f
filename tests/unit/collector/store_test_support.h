#pragma once

// What the store tests share: results and reports to commit, and a fixture holding a new sqlite
// store in a temporary directory (with a read-only counter of rows, `Count`).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fixtures/host_builder.h"
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

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenSqliteStore(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  int Count(const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
    int n = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) n = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
  }
  kspm::testing::TempDir dir_;
  std::string path_ = dir_.path() + "/kspm.db";
  std::unique_ptr<Store> store_;
  common::Clock::time_point now_ = common::Clock::now();
};

}  // namespace kspm::collector::store

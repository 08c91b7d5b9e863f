#pragma once

// The evaluator's table-driven cases: each builds a host root (real files, modes, owners and fake
// /proc entries) and evaluates one catalogue check on it. The Verdict test (evaluator_test.cc) runs
// every table instantiated for EvaluatorCase, each under the prefix Checks.
#include <gtest/gtest.h>

#include <ostream>

#include "kspm/v1/results.pb.h"

namespace kspm::agent::checks {

struct Case {
  const char* name;
  const char* host;      // fixture description
  const char* check_id;  // catalogue id
  v1::Status want;
  const char* reason_has = "";                          // substring of the reason
  v1::SourceKind source = v1::SOURCE_KIND_UNSPECIFIED;  // kind of the first evidence
  bool needs_root = false;
};

inline void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class EvaluatorCase : public ::testing::TestWithParam<Case> {};

}  // namespace kspm::agent::checks

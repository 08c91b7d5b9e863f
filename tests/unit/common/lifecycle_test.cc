// Ordered start-up and tear-down steps (common::Lifecycle).
#include "kspm/common/lifecycle.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kspm::common {
namespace {

Lifecycle::Step Recorded(const std::string& name, std::vector<std::string>& log,
                         absl::Status result = absl::OkStatus()) {
  return {name,
          [&log, name, result] {
            log.push_back("start " + name);
            return result;
          },
          [&log, name] { log.push_back("stop " + name); }};
}

TEST(LifecycleTest, StopsInReverseOrderOnce) {
  std::vector<std::string> log;
  {
    Lifecycle life;
    ASSERT_TRUE(life.Start({Recorded("a", log), Recorded("b", log)}).ok());
    ASSERT_TRUE(life.Start({Recorded("c", log)}).ok());
    EXPECT_EQ(life.started(), (std::vector<std::string>{"a", "b", "c"}));
    life.Stop();
    life.Stop();
  }  // the destructor stops nothing more
  EXPECT_EQ(log, (std::vector<std::string>{"start a", "start b", "start c", "stop c", "stop b",
                                           "stop a"}));
}

TEST(LifecycleTest, AFailedStepStopsWhatStartedAndNamesItself) {
  std::vector<std::string> log;
  Lifecycle life;
  const absl::Status s =
      life.Start({Recorded("spool", log), Recorded("health", log, absl::InternalError("in use")),
                  Recorded("never", log)});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(s.message(), "health: in use");
  // The failed step did not start, so it is not stopped; the one before it is.
  EXPECT_EQ(log, (std::vector<std::string>{"start spool", "start health", "stop spool"}));
  EXPECT_TRUE(life.started().empty());
}

TEST(LifecycleTest, DestructorStopsWhatIsStillRunning) {
  std::vector<std::string> log;
  {
    Lifecycle life;
    ASSERT_TRUE(
        life.Start({Recorded("a", log), {"no stop", [] { return absl::OkStatus(); }, nullptr}})
            .ok());
  }
  EXPECT_EQ(log, (std::vector<std::string>{"start a", "stop a"}));
}

}  // namespace
}  // namespace kspm::common

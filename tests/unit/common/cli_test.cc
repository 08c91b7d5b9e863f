// Command-line conventions (common/cli) and CI gates (common/gate).
#include "kspm/common/cli.h"

#include <gtest/gtest.h>

#include <vector>

#include "kspm/common/gate.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"

namespace kspm::common {
namespace {

TEST(ClosestMatch, SuggestsOnlyLikelyTypos) {
  const std::vector<std::string> commands = {"scan", "send", "run", "checks", "enroll"};
  EXPECT_EQ(ClosestMatch("scna", commands), "scan");  // two letters swapped: one edit
  EXPECT_EQ(ClosestMatch("chekcs", commands), "checks");
  EXPECT_EQ(ClosestMatch("enrol", commands), "enroll");
  EXPECT_EQ(ClosestMatch("delete", commands), "");  // nothing close
  EXPECT_EQ(ClosestMatch("x", commands), "");
}

int Parse(CLI::App& app, std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  auto exit = ParseCommandLine(app, static_cast<int>(argv.size()), argv.data(), "tool");
  return exit ? *exit : -1;
}

TEST(ParseCommandLine, UsageErrorsExitTwoAndHelpExitsZero) {
  CLI::App app{"tool"};
  std::string format;
  int count = 0;
  CLI::App* scan = app.add_subcommand("scan", "scan");
  scan->add_option("--format", format, "format");
  scan->add_option("--count", count, "count");
  testing::internal::CaptureStderr();
  EXPECT_EQ(Parse(app, {"tool", "scan", "--format", "json"}), -1);  // go on
  EXPECT_EQ(format, "json");
  EXPECT_EQ(Parse(app, {"tool", "scan", "--fromat", "json"}), kExitUsage);
  EXPECT_EQ(Parse(app, {"tool", "scan", "--count", "many"}), kExitUsage);
  EXPECT_EQ(Parse(app, {"tool", "sacn"}), kExitUsage);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("tool: unknown flag '--fromat'; did you mean '--format'?"), std::string::npos)
      << err;
  EXPECT_NE(err.find("tool: unknown command 'sacn'; did you mean 'scan'?"), std::string::npos)
      << err;
  EXPECT_NE(err.find("Run 'tool scan --help' for usage."), std::string::npos) << err;
  testing::internal::CaptureStdout();
  EXPECT_EQ(Parse(app, {"tool", "--help"}), 0);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("scan"), std::string::npos);
}

TEST(ParseRfc3339, TakesAnyOffsetAndFractionAndRefusesTheRest) {
  const auto utc = ParseRfc3339("2026-11-26T08:00:00Z");
  ASSERT_TRUE(utc.has_value());
  EXPECT_EQ(FormatRfc3339(*utc), "2026-11-26T08:00:00Z");
  EXPECT_EQ(ParseRfc3339("2026-11-26T09:00:00+01:00"), utc);
  EXPECT_EQ(ParseRfc3339("2026-11-26T02:30:00-05:30"), utc);
  EXPECT_EQ(ParseRfc3339("2026-11-26t08:00:00z"), utc);
  EXPECT_EQ(ParseRfc3339("2026-11-26 08:00:00Z"), utc);
  const auto fraction = ParseRfc3339("2026-11-26T08:00:00.250Z");
  ASSERT_TRUE(fraction.has_value());
  EXPECT_EQ(*fraction - *utc, std::chrono::milliseconds(250));
  for (const char* bad : {"2026-11-26T08:00:00", "2026-11-26", "2026-13-01T00:00:00Z",
                          "2026-02-30T00:00:00Z", "2026-11-26T08:00:00+0100", "yesterday",
                          "2026-11-26T08:00:00Zjunk", "2026-11-26T08:00:00."}) {
    EXPECT_FALSE(ParseRfc3339(bad).has_value()) << bad;
  }
}

TEST(NaturalLess, CountsRunsOfDigitsByValue) {
  EXPECT_TRUE(NaturalLess("5.1.2", "5.1.10"));
  EXPECT_FALSE(NaturalLess("5.1.10", "5.1.2"));
  EXPECT_TRUE(NaturalLess("4.2", "4.2.1"));
  EXPECT_TRUE(NaturalLess("1.2.9", "1.10.1"));
  EXPECT_FALSE(NaturalLess("1.2", "1.2"));
  EXPECT_TRUE(NaturalLess("pod.a", "pod.b"));
}

TEST(WrapText, WrapsAtSpacesAndCutsOnlyWordsLongerThanALine) {
  EXPECT_EQ(WrapText("short", 40), std::vector<std::string>{"short"});
  EXPECT_EQ(WrapText("one two three four", 9),
            (std::vector<std::string>{"one two", "three", "four"}));
  EXPECT_EQ(WrapText("abcdefghij", 4), (std::vector<std::string>{"abcd", "efgh", "ij"}));
  EXPECT_EQ(WrapText("no wrap at width zero", 0),
            std::vector<std::string>{"no wrap at width zero"});
}

v1::CheckResult Result(const std::string& id, v1::Status status, v1::Severity severity) {
  v1::CheckResult r;
  r.set_check_id("check." + id);
  r.set_benchmark_id(id);
  r.set_status(status);
  r.set_severity(severity);
  r.set_scored(true);
  return r;
}

TEST(Gate, FailOnCountsUnacceptedFailsAtOrAboveTheSeverity) {
  auto high = Result("4.2.1", v1::STATUS_FAIL, v1::SEVERITY_HIGH);
  auto low = Result("4.2.2", v1::STATUS_FAIL, v1::SEVERITY_LOW);
  auto accepted = Result("4.2.3", v1::STATUS_FAIL, v1::SEVERITY_CRITICAL);
  accepted.mutable_accepted()->set_exception("x");
  const std::vector<const v1::CheckResult*> results = {&high, &low, &accepted};
  EXPECT_EQ(GateFailure(*ParseGate("high", ""), results), "1 FAIL at high or above: 4.2.1");
  EXPECT_EQ(GateFailure(*ParseGate("critical", ""), results), "");  // the critical is accepted
  EXPECT_EQ(GateFailure(*ParseGate("low", ""), results), "2 FAIL at low or above: 4.2.1, 4.2.2");
  EXPECT_FALSE(ParseGate("severe", "").ok());
  EXPECT_FALSE(ParseGate("", "101").ok());
  EXPECT_FALSE(ParseGate("", "80%").ok());
}

TEST(Gate, MinScoreUsesTheScoreFormulaAndNothingEvaluatedIsNotAFailure) {
  auto pass = Result("1", v1::STATUS_PASS, v1::SEVERITY_HIGH);
  auto fail = Result("2", v1::STATUS_FAIL, v1::SEVERITY_HIGH);
  const std::vector<const v1::CheckResult*> half = {&pass, &fail};
  EXPECT_EQ(GateFailure(*ParseGate("", "60"), half), "score 50.0 is below 60.0");
  EXPECT_EQ(GateFailure(*ParseGate("", "50"), half), "");
  auto manual = Result("3", v1::STATUS_MANUAL, v1::SEVERITY_HIGH);
  std::string note;
  EXPECT_EQ(GateFailure(*ParseGate("", "90"), {&manual}, &note), "");
  EXPECT_EQ(note, "score n/a: nothing scored was evaluated");
}

}  // namespace
}  // namespace kspm::common

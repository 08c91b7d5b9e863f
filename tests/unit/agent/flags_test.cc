#include "kspm/agent/discovery/flags.h"

#include <gtest/gtest.h>

namespace kspm::agent::discovery {
namespace {

const std::set<std::string, std::less<>> kBools = {"anonymous-auth", "profiling"};

TEST(FlagSet, ReadsEqualsAndSpaceSeparatedValues) {
  auto f =
      FlagSet::Parse({"kubelet", "--read-only-port", "10255", "--config=/etc/k.yaml"}, 1, kBools);
  EXPECT_EQ(f.Value("read-only-port"), "10255");  // kube-bench reads "true" here
  EXPECT_EQ(f.Value("config"), "/etc/k.yaml");
}

TEST(FlagSet, BooleanFlagDoesNotSwallowTheNextArgument) {
  auto f = FlagSet::Parse({"x", "--profiling", "--anonymous-auth", "false"}, 1, kBools);
  EXPECT_EQ(f.Value("profiling"), "true");
  EXPECT_EQ(f.Value("anonymous-auth"), "true");  // pflag: a bare boolean is true
  ASSERT_EQ(f.positional().size(), 1u);
  EXPECT_EQ(f.positional()[0], "false");
}

TEST(FlagSet, BooleanTakesAValueOnlyThroughEquals) {
  auto f = FlagSet::Parse({"x", "--anonymous-auth=false"}, 1, kBools);
  EXPECT_EQ(f.Value("anonymous-auth"), "false");
}

TEST(FlagSet, LastOccurrenceWins) {
  auto f = FlagSet::Parse(
      {"x", "--v=2", "--authorization-mode=Webhook", "--authorization-mode=AlwaysAllow"}, 1,
      kBools);
  EXPECT_EQ(f.Value("authorization-mode"), "AlwaysAllow");
  EXPECT_EQ(f.All("authorization-mode").size(), 2u);
}

TEST(FlagSet, NonBooleanTakesNextArgumentEvenIfItLooksLikeAFlag) {
  auto f = FlagSet::Parse({"x", "--event-qps", "-1"}, 1, kBools);
  EXPECT_EQ(f.Value("event-qps"), "-1");
}

TEST(FlagSet, SingleDashAndDoubleDashEndFlags) {
  auto f = FlagSet::Parse({"etcd", "-data-dir=/d", "--", "--not-a-flag=1"}, 1, kBools);
  EXPECT_EQ(f.Value("data-dir"), "/d");
  EXPECT_FALSE(f.Has("not-a-flag"));
  EXPECT_EQ(f.positional().back(), "--not-a-flag=1");
}

TEST(FlagSet, EmptyValueIsKeptAsEmpty) {
  auto f = FlagSet::Parse({"x", "--token-auth-file="}, 1, kBools);
  ASSERT_TRUE(f.Has("token-auth-file"));
  EXPECT_EQ(f.Value("token-auth-file"), "");
}

TEST(FlagSet, MissingValueAtEndIsAbsentValue) {
  auto f = FlagSet::Parse({"x", "--config"}, 1, kBools);
  ASSERT_TRUE(f.Has("config"));
  EXPECT_FALSE(f.Get("config")->has_value);
}

}  // namespace
}  // namespace kspm::agent::discovery

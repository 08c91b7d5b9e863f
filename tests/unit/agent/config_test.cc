// The typed settings of `kspm-agent run`: precedence (flag, environment, file, default) and an
// error that names the setting and where its bad value came from.
#include "kspm/agent/config.h"

#include <fstream>
#include <map>

#include "fixtures/host_builder.h"
#include "gtest/gtest.h"

namespace kspm::agent {
namespace {

class AgentConfigTest : public ::testing::Test {
 protected:
  AgentConfigSources Sources(const std::string& yaml) {
    AgentConfigSources s;
    s.path = tmp_.path() + "/agent.yaml";
    std::ofstream(s.path) << yaml;
    s.getenv = [this](const char* name) -> const char* {
      const auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    };
    return s;
  }

  kspm::testing::TempDir tmp_;
  std::map<std::string, std::string> env_;
};

TEST_F(AgentConfigTest, FlagWinsOverEnvironmentWhichWinsOverFile) {
  env_["KSPM_INTERVAL"] = "120";
  env_["KSPM_CLUSTER"] = "from-env";
  auto s = Sources("collector: c:7443\ninterval: 60\ncluster: from-file\nresync: 900\n");
  s.flags["interval"] = "30";
  auto c = LoadAgentConfig(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->interval, std::chrono::seconds(30));
  EXPECT_EQ(c->cluster, "from-env");
  EXPECT_EQ(c->resync, std::chrono::seconds(900));
  EXPECT_EQ(c->collector, "c:7443");
}

TEST_F(AgentConfigTest, DefaultsApplyWithoutTheFile) {
  AgentConfigSources s;
  s.path = tmp_.path() + "/absent.yaml";
  s.getenv = [](const char*) -> const char* { return nullptr; };
  s.flags["collector"] = "c:1";
  auto c = LoadAgentConfig(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->interval, std::chrono::seconds(300));
  EXPECT_EQ(c->spool_max_bytes, size_t{64} << 20);
  EXPECT_EQ(c->drift_mode, "");  // auto
  EXPECT_EQ(c->state_dir, "/var/lib/kspm-agent");
  s.path_given = true;
  EXPECT_NE(LoadAgentConfig(s).status().message().find("cannot read --config"), std::string::npos);
}

TEST_F(AgentConfigTest, ListsAndEveryFlagNameAreAcceptedInTheFile) {
  auto s = Sources(
      "collector: c:1\nbenchmark: [cis-kubernetes-1.12, cis-docker-1.6]\nonly: 4.2,4.1\n"
      "drift-mode: inotify\nspool-max-mb: 8\nread-timeout: 2.5\ninsecure: true\n");
  auto c = LoadAgentConfig(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->benchmarks, (std::vector<std::string>{"cis-kubernetes-1.12", "cis-docker-1.6"}));
  EXPECT_EQ(c->only, (std::vector<std::string>{"4.2", "4.1"}));
  EXPECT_EQ(c->drift_mode, "inotify");
  EXPECT_EQ(c->spool_max_bytes, size_t{8} << 20);
  EXPECT_DOUBLE_EQ(c->read_timeout_seconds, 2.5);
  EXPECT_TRUE(c->tls.insecure);
}

TEST_F(AgentConfigTest, ErrorsNameTheSettingAndWhereItsValueCameFrom) {
  struct Case {
    std::string yaml;
    std::map<std::string, std::string> env;
    std::map<std::string, std::string> flags;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"collector: c:1\n\ninterval: soon\n", {}, {}, "agent.yaml:3: setting 'interval' must be"},
      {"collector: c:1\n", {{"KSPM_INTERVAL", "-5"}}, {}, "$KSPM_INTERVAL: setting 'interval'"},
      {"collector: c:1\n", {}, {{"resync", "0"}}, "--resync: setting 'resync'"},
      {"collector: c:1\ndrift-mode: fast\n", {}, {}, "setting 'drift-mode' must be auto, ebpf"},
      {"collector: c:1\nread-timeout: 5s\n", {}, {}, "setting 'read-timeout' must be a number"},
      {"collector: c:1\ninsecure: maybe\n", {}, {}, "setting 'insecure' must be true or false"},
      {"collector: c:1\nintervall: 5\n", {}, {}, "agent.yaml:2: unknown setting 'intervall'"},
      {"collector: c:1\ncluster: [a, b]\n", {}, {}, "setting 'cluster' must be a single value"},
      {"interval: 60\n", {}, {}, "no collector"},
      {"collector: [unclosed\n", {}, {}, "agent.yaml:"},
      {"- a list\n", {}, {}, "expected a map of settings"},
  };
  for (const auto& tc : cases) {
    env_ = tc.env;
    auto s = Sources(tc.yaml);
    s.flags = tc.flags;
    auto c = LoadAgentConfig(s);
    ASSERT_FALSE(c.ok()) << tc.yaml;
    EXPECT_NE(c.status().message().find(tc.want), std::string::npos)
        << tc.yaml << " gave: " << c.status().message();
  }
}

}  // namespace
}  // namespace kspm::agent

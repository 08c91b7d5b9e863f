#include "kspm/agent/checks/catalog.h"

#include <gtest/gtest.h>

#include <set>

namespace kspm::agent::checks {

// The generated sources (agent/embed_catalog.cmake, agent/tools/catalog_to_cpp.cc).
extern const std::vector<std::pair<std::string_view, std::string_view>>& BuiltinCatalogFiles();
extern const std::vector<std::pair<std::string_view, YAML::Node (*)()>>& BuiltinCatalogTrees();

namespace {

TEST(Catalog, BuiltinLoadsAndIsConsistent) {
  auto catalog = Catalog::Builtin();
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  std::set<std::string> ids;
  std::map<std::string, std::set<std::string>> items;  // benchmark -> item ids
  for (const auto& c : catalog->checks()) {
    EXPECT_TRUE(ids.insert(c.id).second) << "duplicate id " << c.id;
    const ComponentSpec* comp = catalog->FindComponent(c.component);
    ASSERT_NE(comp, nullptr) << c.id << " names unknown component " << c.component;
    if (c.file && !c.file->role.empty() && c.file->role != "config") {
      EXPECT_TRUE(comp->files.contains(c.file->role)) << c.id << " role " << c.file->role;
    }
    if (c.file && c.file->role == "config") {
      EXPECT_TRUE(comp->config.has_value()) << c.id;
    }
    EXPECT_FALSE(c.remediation.empty() && c.manual.empty()) << c.id << " has no remediation";
    for (const auto& [b, item] : c.benchmarks) {
      EXPECT_TRUE(items[b].insert(item).second) << b << " item " << item << " mapped twice";
    }
  }
  // Every host item of CIS Kubernetes 1.12 sections 1-4 is in the catalogue.
  const auto& k8s = items["cis-kubernetes-1.12"];
  for (const char* id : {"1.1.1", "1.1.21", "1.2.1", "1.2.30", "1.3.7", "1.4.2", "2.1", "2.7",
                         "3.2.1", "4.1.1", "4.1.10", "4.2.1", "4.2.14", "4.3.1"}) {
    EXPECT_TRUE(k8s.contains(id)) << "missing CIS Kubernetes item " << id;
  }
  EXPECT_EQ(k8s.size(), 97u);  // 60 + 7 + 5 + 25
  EXPECT_TRUE(items["cis-docker-1.6"].contains("3.15"));
}

// A node's content without its style (flow or block) or anchors: what the loader reads.
std::string Canonical(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      return "'" + n.Scalar() + "'";
    case YAML::NodeType::Sequence: {
      std::string out = "[";
      for (const auto& c : n) out += Canonical(c) + ",";
      return out + "]";
    }
    case YAML::NodeType::Map: {
      std::string out = "{";
      for (const auto& kv : n) out += Canonical(kv.first) + ":" + Canonical(kv.second) + ",";
      return out + "}";
    }
    default:
      return "~";
  }
}

// The built-in catalogue is compiled into code that builds its YAML trees (no parsing at start);
// each tree must be exactly what parsing the file gives.
TEST(Catalog, CompiledTreesEqualTheParsedFiles) {
  const auto& files = BuiltinCatalogFiles();
  const auto& trees = BuiltinCatalogTrees();
  ASSERT_EQ(files.size(), trees.size());
  ASSERT_GE(files.size(), 4u);
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(files[i].first, trees[i].first);
    EXPECT_EQ(Canonical(YAML::Load(std::string(files[i].second))), Canonical(trees[i].second()))
        << files[i].first;
  }
  // And the catalogue built from the parsed text has the same checks, in the same order.
  Catalog from_text;
  for (const auto& [name, text] : files) ASSERT_TRUE(from_text.AddYaml(text, name).ok()) << name;
  auto builtin = Catalog::Builtin();
  ASSERT_TRUE(builtin.ok());
  ASSERT_EQ(from_text.checks().size(), builtin->checks().size());
  for (size_t i = 0; i < builtin->checks().size(); ++i) {
    EXPECT_EQ(from_text.checks()[i].id, builtin->checks()[i].id);
    EXPECT_EQ(from_text.checks()[i].remediation, builtin->checks()[i].remediation);
  }
}

TEST(Catalog, MalformedYamlNamesFileLineAndColumn) {
  Catalog c;
  auto s = c.AddYaml("checks:\n  - id: x\n    title: [unclosed\n", "rules/bad.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("rules/bad.yaml:"), std::string::npos) << s;
}

TEST(Catalog, UnknownOperatorIsRejectedWithPosition) {
  Catalog c;
  auto s = c.AddYaml(R"(checks:
  - id: custom.x
    benchmarks: {custom: "1"}
    title: t
    component: kubelet
    setting: {flag: x}
    expect: {roughly: 3}
)",
                     "custom.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("custom.yaml:7:"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("roughly"), std::string::npos) << s;
}

TEST(Catalog, DuplicateIdAcrossFilesIsRejected) {
  Catalog c;
  const char* rule =
      "checks:\n  - {id: a.b, benchmarks: {x: '1'}, title: t, component: kubelet, "
      "setting: {flag: f}, expect: {present: true}}\n";
  ASSERT_TRUE(c.AddYaml(rule, "one.yaml").ok());
  auto s = c.AddYaml(rule, "two.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("one.yaml"), std::string::npos);
}

TEST(TypedValues, DurationsParseLikeGo) {
  EXPECT_EQ(ParseDurationNanos("0s"), 0);
  EXPECT_EQ(ParseDurationNanos("0"), 0);
  EXPECT_EQ(ParseDurationNanos("4h0m0s"), 4LL * 3600 * 1000000000);
  EXPECT_EQ(ParseDurationNanos("1.5h"), 5400LL * 1000000000);
  EXPECT_EQ(ParseDurationNanos("300ms"), 300LL * 1000000);
  EXPECT_EQ(ParseDurationNanos("5m30s"), 330LL * 1000000000);
  EXPECT_FALSE(ParseDurationNanos("5 minutes").has_value());
  EXPECT_FALSE(ParseDurationNanos("").has_value());
  EXPECT_FALSE(ParseDurationNanos("10").has_value());  // Go requires a unit except for 0
}

TEST(TypedValues, BooleansParseLikeGo) {
  for (const char* t : {"true", "True", "TRUE", "t", "1"}) EXPECT_EQ(ParseBool(t), true) << t;
  for (const char* f : {"false", "False", "FALSE", "f", "0"}) EXPECT_EQ(ParseBool(f), false) << f;
  EXPECT_FALSE(ParseBool("yes").has_value());
}

TEST(TypedValues, IntegersRejectGarbage) {
  EXPECT_EQ(ParseInt("-1"), -1);
  EXPECT_EQ(ParseInt(" 30 "), 30);
  EXPECT_FALSE(ParseInt("30d").has_value());
  EXPECT_FALSE(ParseInt("99999999999999999999").has_value());
}

TEST(TypedValues, MapsAndLists) {
  auto m = SplitMap("RotateKubeletServerCertificate=false, Foo=true");
  EXPECT_EQ(m["RotateKubeletServerCertificate"], "false");
  EXPECT_EQ(m["Foo"], "true");
  EXPECT_EQ(SplitList("Node, RBAC,,"), (std::vector<std::string>{"Node", "RBAC"}));
}

}  // namespace
}  // namespace kspm::agent::checks

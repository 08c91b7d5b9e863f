#include "kspm/agent/checks/catalog.h"

#include <gtest/gtest.h>

#include <set>

#include "kspm/agent/checks/evaluator.h"
#include "kspm/agent/host/host_view.h"

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

namespace kspm::agent::checks {
namespace {

// A distribution profile reports every check of its base benchmark under its own name, with the
// items its guide marks Not Applicable as such (whatever the node shows) and its own scoring;
// the order of files does not matter.
TEST(CatalogProfiles, AProfileFollowsItsBaseWithItsOwnExceptionsAndScoring) {
  const std::string profile = R"(
profiles:
  - name: distro-cis-1.0
    base: base-1.0
    not_applicable: {"1.1": "the distribution has no such file"}
    scored: {"1.2": false}
)";
  const std::string checks = R"(
components:
  - {name: widget, processes: [widget]}
checks:
  - {id: a, benchmarks: {base-1.0: "1.1"}, title: A, component: widget, setting: {flag: x},
     expect: {equals: "1"}, remediation: r}
  - {id: b, benchmarks: {base-1.0: "1.2", other-2: "9"}, title: B, component: widget,
     setting: {flag: y}, expect: {equals: "1"}, remediation: r}
  - {id: c, benchmarks: {other-2: "3"}, title: C, component: widget, setting: {flag: z},
     expect: {equals: "1"}, remediation: r}
)";
  for (const bool profile_first : {true, false}) {
    Catalog catalog;
    ASSERT_TRUE(catalog.AddYaml(profile_first ? profile : checks, "one").ok());
    ASSERT_TRUE(catalog.AddYaml(profile_first ? checks : profile, "two").ok());
    const Check* a = catalog.FindCheck("a");
    const Check* b = catalog.FindCheck("b");
    const Check* c = catalog.FindCheck("c");
    EXPECT_EQ(a->benchmarks.at("distro-cis-1.0"), "1.1");
    EXPECT_EQ(b->benchmarks.at("distro-cis-1.0"), "1.2");
    EXPECT_FALSE(c->benchmarks.contains("distro-cis-1.0"));  // not in the base benchmark
    EXPECT_TRUE(a->ScoredIn("distro-cis-1.0"));
    EXPECT_FALSE(b->ScoredIn("distro-cis-1.0"));
    EXPECT_TRUE(b->ScoredIn("base-1.0"));

    discovery::HostState state;
    state.components["widget"].name = "widget";
    state.components["widget"].present = true;
    auto host = host::MakeFsHostView("/");
    ASSERT_TRUE(host.ok());
    const auto under_profile = Evaluate(*a, "distro-cis-1.0", **host, state);
    EXPECT_EQ(under_profile.status(), v1::STATUS_NOT_APPLICABLE);
    EXPECT_EQ(under_profile.reason(), "the distribution has no such file");
    EXPECT_EQ(under_profile.benchmark_id(), "1.1");
    const auto under_base = Evaluate(*a, "base-1.0", **host, state);
    EXPECT_NE(under_base.status(), v1::STATUS_NOT_APPLICABLE) << under_base.reason();
  }
  Catalog twice;
  ASSERT_TRUE(twice.AddYaml(profile, "one").ok());
  const auto again = twice.AddYaml(profile, "two");
  EXPECT_FALSE(again.ok());
  EXPECT_NE(again.message().find("profile 'distro-cis-1.0' is defined twice"), std::string::npos);
}

// The built-in k3s and RKE2 profiles cover every CIS Kubernetes 1.12 item, and the items their
// guides mark Not Applicable are items of that benchmark.
TEST(CatalogProfiles, TheBuiltinDistributionProfilesCoverTheirBase) {
  auto catalog = Catalog::Builtin();
  ASSERT_TRUE(catalog.ok());
  ASSERT_EQ(catalog->profiles().size(), 2u);
  for (const auto& p : catalog->profiles()) {
    std::set<std::string> base_items;
    size_t covered = 0;
    for (const auto& c : catalog->checks()) {
      if (!c.benchmarks.contains(p.base)) continue;
      base_items.insert(c.benchmarks.at(p.base));
      EXPECT_EQ(c.benchmarks.at(p.name), c.benchmarks.at(p.base)) << p.name << " " << c.id;
      ++covered;
    }
    EXPECT_GE(covered, 97u) << p.name;
    for (const auto& [item, why] : p.not_applicable) {
      EXPECT_TRUE(base_items.contains(item)) << p.name << " marks unknown item " << item;
      EXPECT_FALSE(why.empty());
    }
    for (const auto& [item, scored] : p.scored) {
      EXPECT_TRUE(base_items.contains(item)) << p.name << " scores unknown item " << item;
    }
  }
}

}  // namespace
}  // namespace kspm::agent::checks

namespace kspm::agent::checks {
namespace {

// A custom rule's mode is refused at load, with its position, when it is not a permission mode
// (a 25-digit octal number used to throw out of the evaluator).
TEST(Catalog, AModeThatIsNoPermissionModeIsRefusedAtLoad) {
  for (const char* mode : {"7777777777777777777777777", "0x644", "", "88"}) {
    Catalog c;
    auto s = c.AddYaml(std::string(R"(checks:
  - id: custom.mode
    benchmarks: {custom: "1"}
    title: t
    component: kubelet
    file: {paths: [/etc/x]}
    expect: {mode_at_most: ")") +
                           mode + "\"}\n",
                       "custom.yaml");
    ASSERT_FALSE(s.ok()) << mode;
    EXPECT_NE(std::string(s.message()).find("custom.yaml:7:"), std::string::npos) << s;
    EXPECT_NE(std::string(s.message()).find("octal mode"), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace kspm::agent::checks

namespace kspm::agent::checks {
namespace {

// The kind of a check is decided once, at load; `evaluate:` may name it and must agree.
TEST(Catalog, TheKindOfACheckIsDecidedAtLoadAndEvaluateMustAgree) {
  auto load = [](const std::string& extra, const std::string& body) {
    Catalog c;
    auto s = c.AddYaml(
        "checks:\n  - id: custom.k\n    benchmarks: {custom: \"1\"}\n    title: t\n"
        "    component: kubelet\n" +
            body + extra,
        "custom.yaml");
    return std::make_pair(
        s, c.FindCheck("custom.k") ? c.FindCheck("custom.k")->kind : CheckKind::kSettings);
  };
  const std::string settings = "    setting: {flag: x}\n    expect: {equals: \"1\"}\n";
  const std::string files = "    file: {paths: [/etc/x]}\n    expect: {mode_at_most: 600}\n";
  const std::string manual = "    manual: look at it\n";
  EXPECT_EQ(load("", settings).second, CheckKind::kSettings);
  EXPECT_EQ(load("", files).second, CheckKind::kFiles);
  EXPECT_EQ(load("", manual).second, CheckKind::kManual);
  EXPECT_EQ(load("    audit: {path: /usr/bin/dockerd}\n", "").second, CheckKind::kAudit);
  auto ok = load("    evaluate: files\n", files);
  EXPECT_TRUE(ok.first.ok()) << ok.first;
  auto wrong = load("    evaluate: settings\n", files);
  ASSERT_FALSE(wrong.first.ok());
  EXPECT_NE(std::string(wrong.first.message()).find("describe another kind"), std::string::npos)
      << wrong.first;
  auto unknown = load("    evaluate: vibes\n", settings);
  ASSERT_FALSE(unknown.first.ok());
  EXPECT_NE(std::string(unknown.first.message()).find("unknown 'evaluate' kind 'vibes'"),
            std::string::npos)
      << unknown.first;
}

}  // namespace
}  // namespace kspm::agent::checks

namespace kspm::agent::checks {
namespace {

// The built-in catalogue names the kind of every check (custom rules may leave it out).
TEST(Catalog, EveryBuiltinCheckNamesItsKind) {
  for (const auto& [name, text] : BuiltinCatalogFiles()) {
    size_t checks = 0, kinds = 0;
    for (std::string_view rest = text; !rest.empty();) {
      const size_t nl = rest.find('\n');
      const std::string_view line = rest.substr(0, nl);
      checks += line.starts_with("  - id: ") ? 1 : 0;
      kinds += line.starts_with("    evaluate: ") ? 1 : 0;
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
    EXPECT_EQ(checks, kinds) << name;
  }
}

}  // namespace
}  // namespace kspm::agent::checks

namespace kspm::agent::checks {
namespace {

// yaml-cpp does not merge `<<: *anchor`: a catalogue entry written with one would quietly lose
// the merged fields, so it is refused with its position.
TEST(Catalog, AYamlMergeKeyIsRefusedWithItsPosition) {
  Catalog c;
  auto s = c.AddYaml(R"(checks:
  - &base
    id: custom.a
    benchmarks: {custom: "1"}
    title: t
    component: kubelet
    manual: look
  - <<: *base
    id: custom.b
)",
                     "custom.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("custom.yaml:8:"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("merge keys"), std::string::npos) << s;
}

}  // namespace
}  // namespace kspm::agent::checks

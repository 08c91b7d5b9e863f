// The compact tree snapshots keep objects in (k8s/value.h): read as nlohmann::json reads the
// same text, printed the same, bounded on hostile nesting.
#include "kspm/collector/k8s/value.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kspm/collector/k8s/object.h"
#include "nlohmann/json.hpp"

namespace kspm::cluster_test {
namespace {

using collector::k8s::Doc;
using collector::k8s::Value;
using nlohmann::json;

// A pod as the API serves it, with every JSON type and the awkward corners: negative, unsigned
// and float numbers, empty containers, escapes, non-ASCII text, keys that sort before and after
// one another byte-wise.
json AwkwardPod() {
  return json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-7d9f8c6b5-x2x9q", "namespace": "shop",
                 "labels": {"app": "web", "Zone": "a", "app.kubernetes.io/name": "web"},
                 "annotations": {}, "ownerReferences": [
                   {"kind": "ReplicaSet", "name": "web-7d9f8c6b5", "controller": true}]},
    "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.2",
                             "args": ["--quote=\"x\"", "tab\there", "é ü 日本"],
                             "securityContext": {"runAsUser": 0, "privileged": false},
                             "resources": {"limits": {"cpu": 0.5, "memory": "128Mi"}}}],
             "volumes": [], "nodeSelector": null,
             "terminationGracePeriodSeconds": 18446744073709551615,
             "priority": -7}
  })");
}

TEST(CompactValue, ReadsAndPrintsAsTheParsedTreeDoes) {
  const json pod = AwkwardPod();
  const Doc doc(pod);
  EXPECT_EQ(doc.ToJson(), pod);
  EXPECT_EQ(doc.dump(), pod.dump());
  EXPECT_EQ(Doc(json::parse("\"plain\"")).dump(), "\"plain\"");

  const Value& c = doc["spec"]["containers"][0];
  EXPECT_TRUE(c.is_object());
  EXPECT_EQ(c["image"], "registry.example/web:1.2");
  EXPECT_EQ(c["image"].get<std::string>(), "registry.example/web:1.2");
  EXPECT_EQ(c["args"].size(), 3u);
  EXPECT_EQ(c["args"][2].str(), "é ü 日本");
  EXPECT_TRUE(c["securityContext"]["runAsUser"].is_number_integer());
  EXPECT_EQ(c["securityContext"]["runAsUser"].get<int64_t>(), 0);
  EXPECT_TRUE(c["securityContext"]["privileged"].is_boolean());
  EXPECT_FALSE(c["securityContext"]["privileged"].get<bool>());
  EXPECT_DOUBLE_EQ(c["resources"]["limits"]["cpu"].get<double>(), 0.5);
  EXPECT_TRUE(doc["spec"]["terminationGracePeriodSeconds"].is_number_unsigned());
  EXPECT_EQ(doc["spec"]["terminationGracePeriodSeconds"].get<uint64_t>(), 18446744073709551615u);
  EXPECT_EQ(doc["spec"]["priority"].get<int64_t>(), -7);
  EXPECT_EQ(c.value("image", ""), "registry.example/web:1.2");
  EXPECT_EQ(c.value("missing", "fallback"), "fallback");
  EXPECT_EQ(c["securityContext"].value("runAsUser", 5), 0);
  EXPECT_EQ(c["securityContext"].value("runAsGroup", 5), 5);

  // Absent members, out-of-range elements and wrong types read as null, as nothing, or as the
  // type's zero; never as another member.
  EXPECT_TRUE(doc["status"].is_null());
  EXPECT_FALSE(doc.contains("status"));
  EXPECT_EQ(doc.find("status"), doc.end());
  EXPECT_TRUE(doc["spec"]["containers"][7].is_null());
  EXPECT_TRUE(doc["spec"]["containers"]["name"].is_null());
  EXPECT_EQ(doc["kind"].get<int64_t>(), 0);
  EXPECT_EQ(doc["spec"].str(), "");

  // Members in nlohmann::json's order (byte-wise by name), with their names.
  std::vector<std::string> names;
  for (const auto& [name, value] : doc["metadata"]["labels"].items()) {
    names.push_back(std::string(name) + "=" + value.get<std::string>());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"Zone=a", "app=web", "app.kubernetes.io/name=web"}));
  const auto it = doc["metadata"].find("namespace");
  ASSERT_NE(it, doc["metadata"].end());
  EXPECT_EQ(it.key(), "namespace");
  EXPECT_EQ(*it, "shop");
}

TEST(CompactValue, SizeAndEmptinessFollowNlohmannForEveryType) {
  for (const char* text :
       {"null", "true", "0", "-3", "2.5", "\"\"", "\"x\"", "[]", "[1,2]", "{}", "{\"a\":1}"}) {
    const json j = json::parse(text);
    const Doc d(j);
    EXPECT_EQ(d.size(), j.size()) << text;
    EXPECT_EQ(d.empty(), j.empty()) << text;
    EXPECT_EQ(d.is_null(), j.is_null()) << text;
    EXPECT_EQ(d.is_boolean(), j.is_boolean()) << text;
    EXPECT_EQ(d.is_number(), j.is_number()) << text;
    EXPECT_EQ(d.is_number_integer(), j.is_number_integer()) << text;
    EXPECT_EQ(d.is_number_float(), j.is_number_float()) << text;
    EXPECT_EQ(d.is_string(), j.is_string()) << text;
    EXPECT_EQ(d.is_array(), j.is_array()) << text;
    EXPECT_EQ(d.is_object(), j.is_object()) << text;
    size_t visited = 0;
    for ([[maybe_unused]] const auto& v : d) ++visited;
    EXPECT_EQ(visited, j.is_array() || j.is_object() ? j.size() : 0) << text;
  }
}

TEST(CompactValue, EqualityComparesValuesNotRepresentations) {
  EXPECT_TRUE(Doc(json(1)) == Doc(json(1u)));
  EXPECT_TRUE(Doc(json(1)) == Doc(json(1.0)));
  EXPECT_FALSE(Doc(json(-1)) == Doc(json(18446744073709551615u)));
  EXPECT_FALSE(Doc(json(1)) == Doc(json("1")));
  EXPECT_TRUE(Doc(AwkwardPod()) == Doc(AwkwardPod()));
  json changed = AwkwardPod();
  changed["spec"]["containers"][0]["args"][1] = "tab here";
  EXPECT_FALSE(Doc(AwkwardPod()) == Doc(changed));
  changed = AwkwardPod();
  changed["metadata"]["labels"]["app"] = "api";
  EXPECT_FALSE(Doc(AwkwardPod()) == Doc(changed));
}

TEST(CompactValue, EraseGivesBackTheMemberAndKeepsTheRest) {
  const json pod = AwkwardPod();
  Doc doc(pod);
  const size_t before = doc.bytes();
  EXPECT_EQ(doc.erase("status"), 0u);
  EXPECT_EQ(doc.bytes(), before);
  EXPECT_EQ(doc.erase("spec"), 1u);
  EXPECT_LT(doc.bytes(), before / 2);
  json expected = pod;
  expected.erase("spec");
  EXPECT_EQ(doc.ToJson(), expected);
  EXPECT_EQ(doc["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");

  // Copies own their tree: the original may go.
  auto original = std::make_unique<Doc>(pod);
  const Doc copy = *original;
  original.reset();
  EXPECT_EQ(copy.ToJson(), pod);
}

TEST(CompactValue, MemberNamesAreSharedAcrossDocs) {
  const Doc a(AwkwardPod()), b(AwkwardPod());
  ASSERT_FALSE(a.items().empty());
  EXPECT_EQ(a.items()[0].name, b.items()[0].name);  // the same bytes, not equal copies
  // A pod without its spec, as most pods of a large cluster are kept, fits in well under a
  // kilobyte: its names are shared, its values and members in one allocation.
  json replica = AwkwardPod();
  replica.erase("spec");
  EXPECT_LT(Doc(replica).bytes(), 600u);
}

TEST(CompactValue, InvalidUtf8IsPrintedReplacedNotThrown) {
  const json j = std::string("ab\xff\xfe");
  const Doc d(j);
  EXPECT_EQ(d.str(), std::string("ab\xff\xfe"));
  EXPECT_NO_THROW({ EXPECT_EQ(d.dump(), "\"ab\xEF\xBF\xBD\xEF\xBF\xBD\""); });
}

TEST(CompactValue, HostileNestingIsCutAndTheObjectRefused) {
  json deep = json::array();
  for (int i = 0; i < 5000; ++i) deep = json::array({std::move(deep)});
  const Doc d(deep);
  EXPECT_TRUE(d.truncated());
  EXPECT_FALSE(Doc(AwkwardPod()).truncated());

  json pod = AwkwardPod();
  pod["spec"]["deep"] = std::move(deep);
  collector::k8s::Snapshot snapshot;
  const auto added = collector::k8s::AddDocument(pod, "pods.json", snapshot);
  EXPECT_FALSE(added.ok());
  EXPECT_NE(added.message().find("nests deeper"), std::string::npos) << added.message();
  EXPECT_EQ(snapshot.size(), 0u);

  // Two replicas of a ReplicaSet the snapshot lacks: the first is refused, so the second is
  // the one that keeps the pod spec (checks read it in the owner's place).
  const auto replica = [](const std::string& name) {
    json p = AwkwardPod();
    p["metadata"]["name"] = name;
    return p;
  };
  json items = json::array({replica("web-1"), replica("web-2")});
  items[0]["spec"]["deep"] = pod["spec"]["deep"];
  collector::k8s::Snapshot replicas;
  EXPECT_FALSE(collector::k8s::AddDocument(
                   json{{"apiVersion", "v1"}, {"kind", "List"}, {"items", std::move(items)}},
                   "pods.json", replicas)
                   .ok());
  const auto* kept = replicas.Find("Pod", "shop", "web-2");
  ASSERT_NE(kept, nullptr);
  EXPECT_TRUE(kept->doc.contains("spec"));
  EXPECT_EQ(replicas.Find("Pod", "shop", "web-1"), nullptr);
}

}  // namespace
}  // namespace kspm::cluster_test

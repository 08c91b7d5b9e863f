// Offline snapshots: what `kubectl get -A -o json` writes, what the API returns, plain YAML
// manifests, and files that do not parse.
#include <gtest/gtest.h>

#include <fstream>

#include "cluster_test_util.h"
#include "fixtures/host_builder.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/snapshot_dir.h"

namespace kspm::cluster_test {
namespace {

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(Snapshot, LoadsKubectlListsApiListsAndMultiDocumentYamlUnderAnyName) {
  kspm::testing::TempDir dir;
  // kubectl get -A -o json: kind List, every item with its kind.
  Write(dir.path() + "/everything.out", R"({"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "web", "namespace": "shop"}, "spec": {}}]})");
  // The API's own answer: PodList, items without kind.
  Write(dir.path() + "/pods", R"({"apiVersion": "v1", "kind": "PodList",
    "metadata": {"resourceVersion": "91"},
    "items": [{"metadata": {"name": "debug", "namespace": "shop"}, "spec": {}}]})");
  // Manifests with several documents, and an empty document.
  Write(dir.path() + "/rbac.yml", R"(apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: shop}
rules: []
---
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: shop}
roleRef: {kind: Role, name: reader}
)");
  ::mkdir((dir.path() + "/.git").c_str(), 0755);
  Write(dir.path() + "/.git/config", "not a manifest");

  k8s::Snapshot s;
  ASSERT_TRUE(k8s::LoadSnapshotDir(dir.path(), s).ok());
  EXPECT_TRUE(s.errors().empty()) << s.errors().front();
  EXPECT_EQ(s.size(), 5u);
  EXPECT_EQ(s.Of("Pod").size(), 1u);
  EXPECT_EQ(s.Of("Pod")[0].api_version, "v1");
  EXPECT_NE(s.Find("Deployment", "shop", "web"), nullptr);
  EXPECT_NE(s.Find("RoleBinding", "shop", "reader"), nullptr);
  EXPECT_EQ(s.Find("Namespace", "", "shop")->origin, "everything.out");
}

TEST(Snapshot, MalformedJsonIsNamedWithLineAndColumnAndOtherFilesStillLoad) {
  kspm::testing::TempDir dir;
  Write(dir.path() + "/a-good.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n");
  Write(dir.path() + "/b-bad.json",
        "{\"kind\": \"List\", \"items\": [\n  {\"kind\": \"Secret\",\n   \"metadata\": {,}}]}");
  Write(dir.path() + "/c-bad.yaml", "kind: ClusterRole\nmetadata:\n  name: [unclosed\n");
  // JSON is parsed from the file as it is read; the position still counts what precedes it.
  Write(dir.path() + "/d-bad.json", "\n\n  {\"kind\": \"Role\", \"metadata\": {\"name\": tru}}");
  k8s::Snapshot s;
  ASSERT_TRUE(k8s::LoadSnapshotDir(dir.path(), s).ok());
  EXPECT_NE(s.Find("Namespace", "", "ok"), nullptr);
  ASSERT_EQ(s.errors().size(), 3u);
  EXPECT_NE(s.errors()[0].find("b-bad.json: line 3, column 17"), std::string::npos)
      << s.errors()[0];
  EXPECT_NE(s.errors()[1].find("c-bad.yaml: line "), std::string::npos) << s.errors()[1];
  // The same position as when the text is parsed from memory.
  k8s::Snapshot from_text;
  const auto in_memory = k8s::LoadSnapshotText(
      "\n\n  {\"kind\": \"Role\", \"metadata\": {\"name\": tru}}", "d-bad.json", from_text);
  EXPECT_EQ(s.errors()[2], in_memory.message());
  EXPECT_NE(s.errors()[2].find("d-bad.json: line 3, column 44"), std::string::npos)
      << s.errors()[2];
  EXPECT_TRUE(s.failed_kinds().contains("Role"));
  // What the broken files held cannot be trusted: checks reading those kinds become ERROR.
  EXPECT_TRUE(s.failed_kinds().contains("Secret"));
  EXPECT_TRUE(s.failed_kinds().contains("ClusterRole"));
}

TEST(Snapshot, AFileOfUnknownKindsMakesTheSnapshotIncomplete) {
  k8s::Snapshot s;
  EXPECT_FALSE(k8s::LoadSnapshotText("{\"items\": [1, 2,, 3]}", "x.json", s).ok());
  kspm::testing::TempDir dir;
  Write(dir.path() + "/x.json", "[1, 2,, 3]");
  ASSERT_TRUE(k8s::LoadSnapshotDir(dir.path(), s).ok());
  ASSERT_TRUE(s.incomplete().has_value());
  EXPECT_NE(s.incomplete()->find("x.json"), std::string::npos);
  // Every check that would pass or not apply is ERROR instead.
  const auto scan = Scan(s);
  for (const auto& r : scan.results) {
    EXPECT_NE(r.status(), v1::STATUS_PASS) << r.check_id();
    EXPECT_NE(r.status(), v1::STATUS_NOT_APPLICABLE) << r.check_id();
  }
}

TEST(Snapshot, ObjectsWithoutKindOrNameAreReportedAndTheRestKept) {
  k8s::Snapshot s;
  const auto status = k8s::LoadSnapshotText(
      R"({"kind": "List", "items": [{"kind": "Pod", "metadata": {}},
         {"kind": "Pod", "metadata": {"name": "p", "namespace": "a"}}, {"metadata": {"name": "x"}}]})",
      "pods.json", s);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("items[0] has no metadata.name"), std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find("items[2] has no kind"), std::string::npos);
  EXPECT_EQ(s.size(), 1u);
}

TEST(Snapshot, PruningDropsStatusDataManagedFieldsAndTheLastAppliedCopy) {
  k8s::Snapshot s;
  ASSERT_TRUE(k8s::LoadSnapshotText(R"(apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"data": {"password": "aHVudGVyMg=="}}'
    team: payments
  managedFields: [{manager: kubectl}]
type: Opaque
data: {password: aHVudGVyMg==}
stringData: {user: admin}
status: {}
)",
                                    "secret.yaml", s)
                  .ok());
  const auto& doc = s.Of("Secret")[0].doc;
  EXPECT_FALSE(doc.contains("data"));
  EXPECT_FALSE(doc.contains("stringData"));
  EXPECT_FALSE(doc.contains("status"));
  EXPECT_FALSE(doc["metadata"].contains("managedFields"));
  EXPECT_FALSE(
      doc["metadata"]["annotations"].contains("kubectl.kubernetes.io/last-applied-configuration"));
  EXPECT_EQ(doc["metadata"]["annotations"]["team"], "payments");
  EXPECT_EQ(doc["type"], "Opaque");
}

TEST(Snapshot, YamlScalarsAreTypedLikeTheApiServerReadsThem) {
  k8s::Snapshot s;
  ASSERT_TRUE(k8s::LoadSnapshotText(R"(kind: Pod
metadata: {name: p, namespace: a}
spec:
  hostPID: true
  hostIPC: "true"
  containers:
    - name: c
      securityContext: {runAsUser: 0, privileged: ~}
)",
                                    "p.yaml", s)
                  .ok());
  const auto& spec = s.Of("Pod")[0].doc["spec"];
  EXPECT_TRUE(spec["hostPID"].is_boolean());
  EXPECT_TRUE(spec["hostIPC"].is_string());  // quoted: a string, which the API would refuse
  EXPECT_TRUE(spec["containers"][0]["securityContext"]["runAsUser"].is_number_integer());
  EXPECT_TRUE(spec["containers"][0]["securityContext"]["privileged"].is_null());
}

TEST(Snapshot, TheFirstCopyOfAnObjectWins) {
  k8s::Snapshot s;
  ASSERT_TRUE(k8s::LoadSnapshotText("kind: Namespace\nmetadata: {name: a}\n", "1.yaml", s).ok());
  ASSERT_TRUE(k8s::LoadSnapshotText("kind: Namespace\nmetadata: {name: a}\n", "2.yaml", s).ok());
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.duplicates(), 1u);
  EXPECT_EQ(s.Of("Namespace")[0].origin, "1.yaml");
}

TEST(Snapshot, AMissingDirectoryIsAnError) {
  k8s::Snapshot s;
  const auto status = k8s::LoadSnapshotDir("/nonexistent/kspm-snapshot", s);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("/nonexistent/kspm-snapshot"), std::string::npos);
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

// A watched cluster changes its snapshot object by object.
TEST(LiveSnapshot, UpsertReplacesRemoveFillsTheGapAndReplaceKindStartsTheKindAfresh) {
  k8s::Snapshot s;
  s.set_live(true);
  auto add = [&](const json& doc) {
    size_t added = 0;
    ASSERT_TRUE(k8s::AddDocument(doc, "test", s, &added).ok());
  };
  add(Deployment("shop", "web", PodSpec({Container("app")})));
  const json owner = {{"apiVersion", "apps/v1"},
                      {"kind", "ReplicaSet"},
                      {"name", "web-5d9f"},
                      {"controller", true}};
  json rs = {{"apiVersion", "apps/v1"},
             {"kind", "ReplicaSet"},
             {"metadata",
              {{"name", "web-5d9f"},
               {"namespace", "shop"},
               {"ownerReferences",
                {{{"apiVersion", "apps/v1"},
                  {"kind", "Deployment"},
                  {"name", "web"},
                  {"controller", true}}}}}},
             {"spec", {{"template", {{"spec", PodSpec({Container("app")})}}}}}};
  add(rs);
  for (const char* name : {"web-5d9f-a", "web-5d9f-b", "web-5d9f-c"}) {
    json pod = Pod("shop", name, PodSpec({Container("app")}), owner);
    k8s::Snapshot one;
    ASSERT_TRUE(k8s::AddDocument(pod, "test", one).ok());
    EXPECT_FALSE(s.Upsert(std::move(one.MutableOf("Pod")->front())).has_value());
  }
  ASSERT_EQ(s.Of("Pod").size(), 3u);
  // Owners here: the replicas keep no spec (the Deployment's template is read).
  EXPECT_FALSE(s.Find("Pod", "shop", "web-5d9f-a")->doc.contains("spec"));
  EXPECT_FALSE(s.Find("ReplicaSet", "shop", "web-5d9f")->doc.contains("spec"));
  // Every replica is reported at its Deployment.
  EXPECT_EQ(collector::cluster::ReportedAt(s, *s.Find("Pod", "shop", "web-5d9f-b")),
            collector::cluster::WorkloadKey("Deployment", "shop", "web"));

  // Replacing keeps one object; removing the first moves the last into its place.
  k8s::Snapshot again;
  ASSERT_TRUE(
      k8s::AddDocument(Pod("shop", "web-5d9f-a", PodSpec({Container("v2")}), owner), "test", again)
          .ok());
  auto replaced = s.Upsert(std::move(again.MutableOf("Pod")->front()));
  ASSERT_TRUE(replaced.has_value());
  EXPECT_EQ(replaced->name, "web-5d9f-a");
  EXPECT_EQ(s.Of("Pod").size(), 3u);
  EXPECT_EQ(s.size(), 5u);
  auto removed = s.Remove("Pod", "shop", "web-5d9f-a");
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(s.Find("Pod", "shop", "web-5d9f-a"), nullptr);
  ASSERT_NE(s.Find("Pod", "shop", "web-5d9f-c"), nullptr);
  EXPECT_EQ(s.Find("Pod", "shop", "web-5d9f-c")->name, "web-5d9f-c");
  EXPECT_EQ(s.Of("Pod").size(), 2u);
  EXPECT_FALSE(s.Remove("Pod", "shop", "web-5d9f-a").has_value());

  // Once the Deployment and its ReplicaSet are gone (orphaned), a bare pod is its own workload
  // and, added now, keeps its spec.
  (void)s.Remove("Deployment", "shop", "web");
  (void)s.Remove("ReplicaSet", "shop", "web-5d9f");
  k8s::Snapshot orphan;
  ASSERT_TRUE(
      k8s::AddDocument(Pod("shop", "web-5d9f-b", PodSpec({Container("app")})), "test", orphan)
          .ok());
  (void)s.Upsert(std::move(orphan.MutableOf("Pod")->front()));
  EXPECT_TRUE(s.Find("Pod", "shop", "web-5d9f-b")->doc.contains("spec"));
  EXPECT_EQ(collector::cluster::ReportedAt(s, *s.Find("Pod", "shop", "web-5d9f-b")),
            collector::cluster::WorkloadKey("Pod", "shop", "web-5d9f-b"));
  // A pod whose ReplicaSet is missing (and without a pod-template-hash label) is reported at it.
  EXPECT_EQ(collector::cluster::ReportedAt(s, *s.Find("Pod", "shop", "web-5d9f-c")),
            collector::cluster::WorkloadKey("ReplicaSet", "shop", "web-5d9f"));

  // A kind listed again: the old objects go, the new ones come, its failed mark is cleared.
  s.MarkFailed("Pod", "403");
  k8s::Snapshot relisted;
  ASSERT_TRUE(
      k8s::AddDocument(Pod("shop", "fresh", PodSpec({Container("app")})), "test", relisted).ok());
  s.ReplaceKind("Pod", std::move(*relisted.MutableOf("Pod")));
  EXPECT_EQ(s.Of("Pod").size(), 1u);
  EXPECT_NE(s.Find("Pod", "shop", "fresh"), nullptr);
  EXPECT_EQ(s.Find("Pod", "shop", "web-5d9f-b"), nullptr);
  EXPECT_FALSE(s.failed_kinds().contains("Pod"));
  EXPECT_EQ(s.size(), 1u);
}

}  // namespace
}  // namespace kspm::cluster_test

// Offline snapshots: what `kubectl get -A -o json` writes, what the API returns, plain YAML
// manifests, and files that do not parse.
#include <gtest/gtest.h>

#include <fstream>

#include "cluster_test_util.h"
#include "fixtures/host_builder.h"
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
  k8s::Snapshot s;
  ASSERT_TRUE(k8s::LoadSnapshotDir(dir.path(), s).ok());
  EXPECT_NE(s.Find("Namespace", "", "ok"), nullptr);
  ASSERT_EQ(s.errors().size(), 2u);
  EXPECT_NE(s.errors()[0].find("b-bad.json: line 3, column 17"), std::string::npos)
      << s.errors()[0];
  EXPECT_NE(s.errors()[1].find("c-bad.yaml: line "), std::string::npos) << s.errors()[1];
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

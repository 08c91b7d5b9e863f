// The classes of false verdicts found by comparing kspm with third-party check suites on the same
// manifests: capability names as runtimes compare them, YAML 1.1 scalars as Kubernetes reads
// them, Kubernetes' own objects known by exact name, and network policies of every kind.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "cluster_test_util.h"
#include "kspm/collector/cluster/netpol.h"
#include "kspm/collector/k8s/snapshot_dir.h"

namespace kspm::cluster_test {
namespace {

using collector::cluster::CalicoSelectorMatches;
using collector::cluster::LabelSelectorMatches;

std::vector<json> Web(json security_context = nullptr, json pod = json::object()) {
  return {Namespace("shop"),
          Deployment("shop", "web", PodSpec({Container("app", security_context)}, pod))};
}

v1::Status StatusOf(const std::vector<json>& objects, const std::string& check,
                    const std::string& benchmark = "cis-kubernetes-1.12") {
  const auto scan = Scan(Snapshot(objects));
  const auto r = ResultsOf(scan, check, benchmark);
  EXPECT_EQ(r.size(), 1u) << check;
  return r.empty() ? v1::STATUS_UNSPECIFIED : r[0]->status();
}

json Caps(json add, json drop) {
  json caps = json::object();
  if (!add.is_null()) caps["add"] = add;
  if (!drop.is_null()) caps["drop"] = drop;
  return {{"capabilities", caps}};
}

// containerd and CRI-O upper-case capability names and accept them with or without CAP_.
TEST(Capabilities, NamesCompareAsTheRuntimesCompareThem) {
  EXPECT_EQ(StatusOf(Web(Caps(nullptr, {"all"})), "pod.net-raw"), v1::STATUS_PASS);
  EXPECT_EQ(StatusOf(Web(Caps(nullptr, {"All"})), "pod.capabilities"), v1::STATUS_PASS);
  EXPECT_EQ(StatusOf(Web(Caps(nullptr, {"cap_net_raw"})), "pod.net-raw"), v1::STATUS_PASS);
  EXPECT_EQ(StatusOf(Web(Caps({"net_raw"}, {"ALL"})), "pod.net-raw"), v1::STATUS_WARN);
  EXPECT_EQ(StatusOf(Web(Caps({"Net_Bind_Service"}, {"all"})), "pod.capabilities"),
            v1::STATUS_PASS);

  // Evidence shows the names as written, not as normalised.
  const auto scan = Scan(Snapshot(Web(Caps({"net_raw"}, {"all"}))));
  const auto r = ResultsOf(scan, "pod.net-raw", "cis-kubernetes-1.12");
  ASSERT_EQ(r.size(), 1u);
  bool shown = false;
  for (const auto& e : r[0]->evidence()) {
    if (e.key().ends_with("capabilities.add")) shown = e.value() == "[net_raw]";
  }
  EXPECT_TRUE(shown);
}

k8s::Snapshot FromYaml(const std::string& text) {
  k8s::Snapshot s;
  const auto status = k8s::LoadSnapshotText(text, "manifest.yaml", s);
  EXPECT_TRUE(status.ok()) << status.message();
  return s;
}

std::string PodYaml(const std::string& pod_fields, const std::string& container_fields) {
  return "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"
         "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n" +
         pod_fields + "  containers:\n  - name: app\n    image: nginx:1.27\n" + container_fields;
}

v1::Status YamlStatus(const std::string& yaml, const std::string& check) {
  const auto scan = Scan(FromYaml(yaml));
  const auto r = ResultsOf(scan, check, "cis-kubernetes-1.12");
  EXPECT_EQ(r.size(), 1u) << check;
  return r.empty() ? v1::STATUS_UNSPECIFIED : r[0]->status();
}

// sigs.k8s.io/yaml reads manifests with go-yaml v2: YAML 1.1 booleans and octal integers.
TEST(Yaml11, BooleansAndOctalsAreReadAsKubernetesReadsThem) {
  EXPECT_EQ(YamlStatus(PodYaml("  hostPID: yes\n", ""), "pod.host-pid"), v1::STATUS_WARN);
  EXPECT_EQ(YamlStatus(PodYaml("  hostPID: On\n", ""), "pod.host-pid"), v1::STATUS_WARN);
  EXPECT_EQ(YamlStatus(PodYaml("  hostPID: no\n", ""), "pod.host-pid"), v1::STATUS_PASS);
  EXPECT_EQ(
      YamlStatus(PodYaml("", "    securityContext:\n      privileged: on\n"), "pod.privileged"),
      v1::STATUS_WARN);
  EXPECT_EQ(
      YamlStatus(PodYaml("", "    securityContext:\n      privileged: Off\n"), "pod.privileged"),
      v1::STATUS_PASS);

  const auto s = FromYaml(
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: shop\n"
      "  labels: {quoted: 'yes', plain: y, mode: 0644, hex: 0x1F, bin: 0b101, big: 1_000, "
      "dec: 0.5, on: 1, ver: '0644'}\n");
  const auto* c = s.Find("ConfigMap", "shop", "c");
  ASSERT_NE(c, nullptr);
  const json l = c->labels().ToJson();
  EXPECT_EQ(l["quoted"], "yes");  // quoted: a string
  EXPECT_EQ(l["plain"], true);
  EXPECT_EQ(l["mode"], 420);  // 0644 octal
  EXPECT_EQ(l["hex"], 31);
  EXPECT_EQ(l["bin"], 5);
  EXPECT_EQ(l["big"], 1000);
  EXPECT_EQ(l["dec"], 0.5);
  EXPECT_EQ(l["true"], 1);  // the key `on` is the boolean true, written "true"
  EXPECT_EQ(l["ver"], "0644");
}

json Object(const std::string& api_version, const std::string& kind, const std::string& ns,
            const std::string& name, json extra = json::object()) {
  json o = {{"apiVersion", api_version},
            {"kind", kind},
            {"metadata", {{"name", name}, {"namespace", ns}}}};
  o.update(extra);
  return o;
}

// CIS 5.6.4: Kubernetes' own objects in `default` are known by exact kind and name.
TEST(DefaultNamespace, KubernetesOwnObjectsAreKnownByExactName) {
  const auto status = [](json object) {
    return StatusOf({Namespace("default"), object}, "namespace.default-unused");
  };
  EXPECT_EQ(status(Object("v1", "Service", "default", "kubernetes")), v1::STATUS_PASS);
  EXPECT_EQ(status(Object("v1", "Endpoints", "default", "kubernetes")), v1::STATUS_PASS);
  EXPECT_EQ(status(Object("discovery.k8s.io/v1", "EndpointSlice", "default", "kubernetes")),
            v1::STATUS_PASS);
  EXPECT_EQ(status(Object("v1", "ConfigMap", "default", "kube-root-ca.crt")), v1::STATUS_PASS);
  // A name that starts like Kubernetes' own is someone's object.
  EXPECT_EQ(status(Object("v1", "Service", "default", "kubernetes-dashboard")), v1::STATUS_WARN);
  EXPECT_EQ(status(Object("discovery.k8s.io/v1", "EndpointSlice", "default", "kubernetes-abcde")),
            v1::STATUS_WARN);
  // Kubernetes keeps its Leases in kube-node-lease and kube-system, never in default.
  EXPECT_EQ(status(Object("coordination.k8s.io/v1", "Lease", "default", "my-operator-lock")),
            v1::STATUS_WARN);
  // A token Secret is Kubernetes' own only for the default account.
  const json token_type = {{"type", "kubernetes.io/service-account-token"}};
  auto own = Object("v1", "Secret", "default", "default-token-x7k2p", token_type);
  own["metadata"]["annotations"] = {{"kubernetes.io/service-account.name", "default"}};
  EXPECT_EQ(status(own), v1::STATUS_PASS);
  auto other = Object("v1", "Secret", "default", "ci-token", token_type);
  other["metadata"]["annotations"] = {{"kubernetes.io/service-account.name", "ci"}};
  EXPECT_EQ(status(other), v1::STATUS_WARN);
}

TEST(Selectors, LabelSelectorsFollowTheApiSemantics) {
  const k8s::Doc labels(json{{"app", "web"}, {"tier", "front"}});
  const k8s::Doc empty(json::object());
  EXPECT_TRUE(LabelSelectorMatches(&empty, labels));
  EXPECT_FALSE(LabelSelectorMatches(nullptr, labels));
  const k8s::Doc by_label(json{{"matchLabels", {{"app", "web"}}}});
  EXPECT_TRUE(LabelSelectorMatches(&by_label, labels));
  const k8s::Doc other(json{{"matchLabels", {{"app", "db"}}}});
  EXPECT_FALSE(LabelSelectorMatches(&other, labels));
  const auto expr = [](const char* key, const char* op, json values = nullptr) {
    json e = {{"key", key}, {"operator", op}};
    if (!values.is_null()) e["values"] = values;
    return json{{"matchExpressions", {e}}};
  };
  const k8s::Doc in(expr("tier", "In", {"front", "edge"}));
  const k8s::Doc not_in(expr("tier", "NotIn", {"front"}));
  const k8s::Doc exists(expr("app", "Exists"));
  const k8s::Doc absent(expr("debug", "DoesNotExist"));
  const k8s::Doc absent_not_in(expr("debug", "NotIn", {"x"}));
  EXPECT_TRUE(LabelSelectorMatches(&in, labels));
  EXPECT_FALSE(LabelSelectorMatches(&not_in, labels));
  EXPECT_TRUE(LabelSelectorMatches(&exists, labels));
  EXPECT_TRUE(LabelSelectorMatches(&absent, labels));
  EXPECT_TRUE(LabelSelectorMatches(&absent_not_in, labels));
  const k8s::Doc bad(expr("tier", "Like", {"f"}));
  std::string error;
  EXPECT_FALSE(LabelSelectorMatches(&bad, labels, &error));
  EXPECT_NE(error.find("Like"), std::string::npos);
}

TEST(Selectors, CalicoSelectorsFollowCalicosLanguage) {
  const k8s::Doc labels(
      json{{"app", "web"}, {"tier", "front"}, {"projectcalico.org/namespace", "shop"}});
  const auto m = [&](const char* expr) { return CalicoSelectorMatches(expr, labels); };
  EXPECT_TRUE(m(""));
  EXPECT_TRUE(m("all()"));
  EXPECT_FALSE(m("global()"));
  EXPECT_TRUE(m("app == 'web'"));
  EXPECT_TRUE(m("app == \"web\""));
  EXPECT_FALSE(m("app == 'db'"));
  EXPECT_TRUE(m("app != 'db'"));
  EXPECT_TRUE(m("debug != 'x'"));  // absent: not equal
  EXPECT_TRUE(m("has(tier)"));
  EXPECT_TRUE(m("!has(debug)"));
  EXPECT_TRUE(m("tier in {'front', 'edge'}"));
  EXPECT_FALSE(m("tier not in {'front'}"));
  EXPECT_TRUE(m("debug not in {'x'}"));
  EXPECT_TRUE(m("app contains 'e'"));
  EXPECT_TRUE(m("app starts with 'w' && app ends with 'b'"));
  EXPECT_TRUE(m("app == 'db' || (tier == 'front' && !has(debug))"));
  EXPECT_FALSE(m("!(app == 'web')"));
  EXPECT_TRUE(m("projectcalico.org/namespace == 'shop'"));
  std::string error;
  EXPECT_FALSE(CalicoSelectorMatches("app = 'web'", labels, &error));
  EXPECT_FALSE(error.empty());
  error.clear();
  EXPECT_FALSE(CalicoSelectorMatches("app == 'web' &&", labels, &error));
  EXPECT_FALSE(error.empty());
}

json WithSpec(json o, json spec) {
  o["spec"] = spec;
  return o;
}

struct Coverage {
  v1::Status ns;
  v1::Status workload;
};

Coverage CoverageOf(std::vector<json> objects) {
  auto base = Web();
  base.push_back(Namespace("other"));
  base.insert(base.end(), objects.begin(), objects.end());
  return {StatusOf(base, "netpol.namespace-coverage"),
          StatusOf(base, "netpol.workload-coverage", "nsa-cisa-1.2")};
}

void ExpectCoverage(const std::vector<json>& objects, v1::Status ns, v1::Status workload) {
  const auto c = CoverageOf(objects);
  EXPECT_EQ(c.ns, ns);
  EXPECT_EQ(c.workload, workload);
}

TEST(NetworkPolicies, EveryKindThatSelectsPodsCounts) {
  const auto pass = v1::STATUS_PASS, warn = v1::STATUS_WARN, fail = v1::STATUS_FAIL;
  SCOPED_TRACE("nothing");
  ExpectCoverage({}, warn, fail);
  {
    SCOPED_TRACE("a NetworkPolicy for other pods: the namespace has one, web is not covered");
    ExpectCoverage({NetworkPolicy("shop", "db", {{"matchLabels", {{"app", "db"}}}})}, pass, fail);
  }
  {
    SCOPED_TRACE("a NetworkPolicy of another namespace");
    ExpectCoverage({NetworkPolicy("other", "all", json::object())}, warn, fail);
  }
  {
    SCOPED_TRACE("CiliumNetworkPolicy with a k8s: source prefix");
    ExpectCoverage({WithSpec(Object("cilium.io/v2", "CiliumNetworkPolicy", "shop", "web"),
                             {{"endpointSelector", {{"matchLabels", {{"k8s:app", "web"}}}}}})},
                   pass, pass);
  }
  {
    SCOPED_TRACE("CiliumNetworkPolicy with several specs, one selecting web");
    ExpectCoverage({Object("cilium.io/v2", "CiliumNetworkPolicy", "shop", "multi",
                           {{"specs",
                             {{{"endpointSelector", {{"matchLabels", {{"app", "db"}}}}}},
                              {{"endpointSelector", {{"matchLabels", {{"any:app", "web"}}}}}}}}})},
                   pass, pass);
  }
  {
    SCOPED_TRACE("a CiliumClusterwideNetworkPolicy selecting every endpoint");
    auto ccnp = WithSpec(Object("cilium.io/v2", "CiliumClusterwideNetworkPolicy", "", "deny-all"),
                         {{"endpointSelector", json::object()}});
    ccnp["metadata"].erase("namespace");
    ExpectCoverage({ccnp}, pass, pass);
  }
  {
    SCOPED_TRACE("a CiliumClusterwideNetworkPolicy by namespace label");
    auto ccnp = WithSpec(
        Object("cilium.io/v2", "CiliumClusterwideNetworkPolicy", "", "shop-ns"),
        {{"endpointSelector", {{"matchLabels", {{"k8s:io.kubernetes.pod.namespace", "shop"}}}}}});
    ccnp["metadata"].erase("namespace");
    ExpectCoverage({ccnp}, pass, pass);
  }
  {
    SCOPED_TRACE("a host policy (nodeSelector) selects no pod");
    auto host = WithSpec(Object("cilium.io/v2", "CiliumClusterwideNetworkPolicy", "", "host"),
                         {{"nodeSelector", json::object()}});
    host["metadata"].erase("namespace");
    ExpectCoverage({host}, warn, fail);
  }
  {
    SCOPED_TRACE("Calico NetworkPolicy, kept apart from networking.k8s.io's of the same name");
    const auto calico = WithSpec(Object("projectcalico.org/v3", "NetworkPolicy", "shop", "web"),
                                 {{"selector", "app == 'web'"}});
    ExpectCoverage({calico, NetworkPolicy("shop", "web", {{"matchLabels", {{"app", "db"}}}})}, pass,
                   pass);
    const auto s = Snapshot({calico, NetworkPolicy("shop", "web", json::object())});
    EXPECT_EQ(s.Of("NetworkPolicy").size(), 1u);
    EXPECT_EQ(s.Of("NetworkPolicy.projectcalico.org").size(), 1u);
    EXPECT_EQ(s.duplicates(), 0u);
  }
  {
    SCOPED_TRACE("Calico CRD form (crd.projectcalico.org/v1) selecting other pods");
    ExpectCoverage({WithSpec(Object("crd.projectcalico.org/v1", "NetworkPolicy", "shop", "db"),
                             {{"selector", "app == 'db'"}})},
                   pass, fail);
  }
  {
    SCOPED_TRACE("a GlobalNetworkPolicy for every pod");
    auto gnp = WithSpec(Object("projectcalico.org/v3", "GlobalNetworkPolicy", "", "deny"),
                        {{"selector", "all()"}, {"types", {"Ingress"}}});
    gnp["metadata"].erase("namespace");
    ExpectCoverage({gnp}, pass, pass);
  }
  {
    SCOPED_TRACE("a GlobalNetworkPolicy whose namespaceSelector names another namespace");
    auto gnp = WithSpec(Object("projectcalico.org/v3", "GlobalNetworkPolicy", "", "other"),
                        {{"namespaceSelector", "projectcalico.org/name == 'other'"}});
    gnp["metadata"].erase("namespace");
    ExpectCoverage({gnp}, warn, fail);
  }
  {
    SCOPED_TRACE("a pre-DNAT GlobalNetworkPolicy applies to host endpoints only");
    auto gnp = WithSpec(Object("projectcalico.org/v3", "GlobalNetworkPolicy", "", "prednat"),
                        {{"selector", "all()"}, {"preDNAT", true}, {"applyOnForward", true}});
    gnp["metadata"].erase("namespace");
    ExpectCoverage({gnp}, warn, fail);
  }
  {
    SCOPED_TRACE("AdminNetworkPolicy by namespace, BaselineAdminNetworkPolicy by pods");
    auto anp = WithSpec(
        Object("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy", "", "shop"),
        {{"priority", 10},
         {"subject",
          {{"namespaces", {{"matchLabels", {{"kubernetes.io/metadata.name", "shop"}}}}}}}});
    anp["metadata"].erase("namespace");
    ExpectCoverage({anp}, pass, pass);
    auto banp = WithSpec(
        Object("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy", "", "default"),
        {{"subject",
          {{"pods",
            {{"namespaceSelector", json::object()},
             {"podSelector", {{"matchLabels", {{"app", "web"}}}}}}}}}});
    banp["metadata"].erase("namespace");
    ExpectCoverage({banp}, pass, pass);
  }
}

TEST(NetworkPolicies, AnUnreadableSelectorIsAnErrorNotAFailure) {
  const auto c = CoverageOf({WithSpec(Object("projectcalico.org/v3", "NetworkPolicy", "shop", "x"),
                                      {{"selector", "app = 'web'"}})});
  EXPECT_EQ(c.workload, v1::STATUS_ERROR);
  auto base = Web();
  base.push_back(WithSpec(Object("projectcalico.org/v3", "NetworkPolicy", "shop", "x"),
                          {{"selector", "app = 'web'"}}));
  const auto scan = Scan(Snapshot(base));
  const auto r = ResultsOf(scan, "netpol.workload-coverage", "nsa-cisa-1.2");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_NE(r[0]->reason().find("NetworkPolicy.projectcalico.org shop/x"), std::string::npos)
      << r[0]->reason();
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

// Upstream policies (tests/fixtures/cluster/netpol-upstream, sources in its SOURCES.md), each
// against pods it selects and pods it does not, as the projects document their selectors.
struct UpstreamCase {
  const char* file;
  const char* policy;      // metadata.name
  const char* applied_in;  // namespace for a namespaced policy that names none (kubectl -n)
  const char* ns;
  json ns_labels;
  json pod_labels;
  bool selects;
};

TEST(NetworkPolicies, UpstreamPoliciesSelectWhatTheirProjectsDocument) {
  const json none = json::object();
  const std::vector<UpstreamCase> cases = {
      {"cilium-cnp-l3-rule.yaml", "l3-rule", "shop", "shop", none, {{"role", "backend"}}, true},
      {"cilium-cnp-l3-rule.yaml", "l3-rule", "shop", "shop", none, {{"role", "frontend"}}, false},
      {"cilium-cnp-l3-rule.yaml", "l3-rule", "shop", "other", none, {{"role", "backend"}}, false},
      {"cilium-cnp-sw-l3-l4-rule1.yaml",
       "rule1",
       "default",
       "default",
       none,
       {{"org", "empire"}, {"class", "deathstar"}},
       true},
      {"cilium-cnp-sw-l3-l4-rule1.yaml",
       "rule1",
       "default",
       "default",
       none,
       {{"org", "empire"}, {"class", "xwing"}},
       false},
      {"cilium-cnp-isolate-namespaces.yaml", "isolate-ns1", "", "ns1", none, {{"a", "b"}}, true},
      {"cilium-cnp-isolate-namespaces.yaml", "isolate-ns1", "", "ns3", none, {{"a", "b"}}, false},
      {"cilium-ccnp-external-lockdown.yaml", "external-lockdown", "", "any", none, none, true},
      {"cilium-ccnp-wildcard-from-endpoints.yaml",
       "wildcard-from-endpoints",
       "",
       "kube-system",
       none,
       {{"k8s-app", "kube-dns"}},
       true},
      {"cilium-ccnp-wildcard-from-endpoints.yaml",
       "wildcard-from-endpoints",
       "",
       "shop",
       none,
       {{"k8s-app", "kube-dns"}},
       false},
      {"cilium-ccnp-demo-host-policy.yaml",
       "demo-host-policy",
       "",
       "shop",
       none,
       {{"node-access", "ssh"}},
       false},
      {"calico-np-convert-test-network-policy.yaml",
       "test-network-policy",
       "",
       "default",
       none,
       {{"role", "db"}},
       true},
      {"calico-np-convert-test-network-policy.yaml",
       "test-network-policy",
       "",
       "default",
       none,
       {{"role", "web"}},
       false},
      {"calico-gnp-default-deny.yaml", "default-deny", "", "shop", none, none, true},
      {"calico-gnp-deny-app-policy.yaml", "deny-app-policy", "", "shop", none, none, true},
      {"calico-gnp-deny-app-policy.yaml", "deny-app-policy", "", "calico-system", none, none,
       false},
      {"calico-gnp-app-policy-demo.yaml", "summary", "", "shop", none, {{"app", "summary"}}, true},
      {"calico-gnp-app-policy-demo.yaml",
       "summary",
       "",
       "shop",
       none,
       {{"app", "customer"}},
       false},
      {"calico-policies-migration-seed.yaml",
       "test-allow-web",
       "",
       "migration-test",
       none,
       {{"app", "web"}},
       true},
      {"calico-policies-migration-seed.yaml",
       "test-deny-all",
       "",
       "x",
       none,
       {{"migration-test", "true"}},
       true},
      {"anp-cluster-wide-deny-example.yaml", "cluster-wide-deny-example", "", "sensitive-ns", none,
       none, true},
      {"anp-cluster-wide-deny-example.yaml", "cluster-wide-deny-example", "", "shop", none, none,
       false},
      {"anp-inline-cidr-as-peers-example.yaml",
       "inline-cidr-as-peers-example",
       "",
       "hogwarts",
       {{"conformance-house", "gryffindor"}},
       {{"conformance-house", "gryffindor"}},
       true},
      {"anp-inline-cidr-as-peers-example.yaml",
       "inline-cidr-as-peers-example",
       "",
       "hogwarts",
       {{"conformance-house", "gryffindor"}},
       {{"conformance-house", "slytherin"}},
       false},
      {"anp-walkthrough-anp1.yaml", "anp1", "", "anything", none, none, true},
      {"banp-default-deny-user-story-5.yaml", "default", "", "shop", none, none, true},
      {"banp-conformance-egress-inline-cidr.yaml", "default", "",
       "network-policy-conformance-gryffindor", none, none, true},
      {"banp-conformance-egress-inline-cidr.yaml", "default", "", "shop", none, none, false},
  };
  std::set<std::string> files;
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.file) + " " + c.policy + " on a pod in " + c.ns + " labelled " +
                 c.pod_labels.dump());
    files.insert(c.file);
    std::ifstream in(SourceDir() + "/tests/fixtures/cluster/netpol-upstream/" + c.file);
    ASSERT_TRUE(in) << c.file;
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    k8s::Snapshot s;
    ASSERT_TRUE(k8s::LoadSnapshotText(text, c.file, s).ok());
    const k8s::Object* policy = nullptr;
    for (const auto& kind : collector::cluster::NetworkPolicyKinds()) {
      for (const auto& o : s.Of(kind)) {
        if (o.name == c.policy && (policy == nullptr || o.ns == c.ns)) policy = &o;
      }
    }
    ASSERT_NE(policy, nullptr);
    k8s::Object placed = *policy;
    if (placed.ns.empty() && !collector::cluster::IsClusterWidePolicyKind(placed.kind)) {
      placed.ns = c.applied_in;
    }
    const k8s::Doc ns_labels(c.ns_labels), pod_labels(c.pod_labels);
    const collector::cluster::PodView pod{.ns = c.ns,
                                          .ns_labels = &ns_labels,
                                          .pod_labels = &pod_labels,
                                          .service_account = "default"};
    const auto selection = collector::cluster::PolicySelects(placed, pod);
    EXPECT_TRUE(selection.error.empty()) << selection.error;
    EXPECT_EQ(selection.selects, c.selects);
  }
  // Every upstream file is exercised.
  for (const auto& entry : std::filesystem::directory_iterator(
           SourceDir() + "/tests/fixtures/cluster/netpol-upstream")) {
    if (entry.path().extension() == ".yaml") {
      EXPECT_TRUE(files.contains(entry.path().filename().string())) << entry.path();
    }
  }
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

// A credential in plain env is reported by name and form; its value never appears anywhere in
// the result. AWS's documented example key id and a private key are recognised by their form.
TEST(Credentials, PlainEnvCredentialsAreReportedWithoutTheirValue) {
  const std::string password = "correct-horse-battery-staple";
  const std::string key_id = "AKIAIOSFODNN7EXAMPLE";
  auto objects = Web(nullptr);
  objects[1]["spec"]["template"]["spec"]["containers"][0]["env"] = {
      {{"name", "DB_PASSWORD"}, {"value", password}},
      {{"name", "AWS_KEY"}, {"value", key_id}},
      {{"name", "TLS"},
       {"value", "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----"}},
      {{"name", "GREETING"}, {"value", "hello"}}};
  const auto scan = Scan(Snapshot(objects));
  const auto r = ResultsOf(scan, "secrets.env-literal");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]->status(), v1::STATUS_FAIL);
  const std::string all = r[0]->SerializeAsString();
  EXPECT_EQ(all.find(password), std::string::npos);
  EXPECT_EQ(all.find(key_id), std::string::npos);
  EXPECT_EQ(all.find("MHc"), std::string::npos);
  EXPECT_NE(r[0]->reason().find("$DB_PASSWORD"), std::string::npos);
  EXPECT_NE(r[0]->reason().find("AWS access key id"), std::string::npos);
  EXPECT_NE(r[0]->reason().find("private key"), std::string::npos);
  EXPECT_EQ(r[0]->reason().find("GREETING"), std::string::npos);
  EXPECT_EQ(r[0]->evidence_size(), 3);
}

}  // namespace
}  // namespace kspm::cluster_test

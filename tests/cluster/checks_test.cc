// Every cluster check: a case that fails, one that passes and one where it does not apply. Then
// the behaviours that peers get wrong: controllers reported once, system defaults quiet, the
// exact field path in evidence, unreadable input never passing.
#include <gtest/gtest.h>

#include <set>

#include "cluster_test_util.h"
#include "kspm/collector/cluster/catalog.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/credentials.h"
#include "kspm/collector/k8s/snapshot_dir.h"

namespace kspm::cluster_test {
namespace {

using collector::cluster::BuiltinCatalog;

json Sc(json fields) { return fields; }

// A namespace with one Deployment whose single container has `sc` and whose pod has `pod`.
std::vector<json> App(json sc, json pod = json::object(), const std::string& ns = "shop",
                      json container_extra = json::object()) {
  return {Namespace(ns),
          Deployment(ns, "web", PodSpec({Container("app", sc, container_extra)}, pod))};
}

struct Case {
  const char* check;
  std::vector<json> fails;
  std::vector<json> passes;
  std::vector<json> not_applicable;
  const char* failing_kind;  // kind of the resource the failure is reported on
};

std::vector<Case> Cases() {
  const json full = {{"runAsNonRoot", true},
                     {"allowPrivilegeEscalation", false},
                     {"readOnlyRootFilesystem", true},
                     {"capabilities", {{"drop", {"ALL"}}}}};
  const std::vector<json> nothing = {Namespace("shop")};
  const std::vector<json> no_rbac = {Namespace("shop")};
  auto alice = [] { return std::vector<json>{Subject("User", "alice")}; };
  return {
      {"pod.privileged", App(Sc({{"privileged", true}})), App(Sc({{"privileged", false}})), nothing,
       "Deployment"},
      {"pod.host-pid", App(nullptr, {{"hostPID", true}}), App(nullptr, {{"hostPID", false}}),
       nothing, "Deployment"},
      {"pod.host-ipc", App(nullptr, {{"hostIPC", true}}), App(nullptr), nothing, "Deployment"},
      {"pod.host-network", App(nullptr, {{"hostNetwork", true}}), App(nullptr), nothing,
       "Deployment"},
      {"pod.privilege-escalation", App(nullptr), App(Sc({{"allowPrivilegeEscalation", false}})),
       nothing, "Deployment"},
      {"pod.run-as-root", App(Sc({{"runAsUser", 0}})),
       App(nullptr, {{"securityContext", {{"runAsNonRoot", true}}}}), nothing, "Deployment"},
      {"pod.net-raw", App(Sc({{"capabilities", {{"add", {"NET_RAW"}}, {"drop", {"ALL"}}}}})),
       App(Sc({{"capabilities", {{"drop", {"ALL"}}}}})), nothing, "Deployment"},
      {"pod.capabilities", App(Sc({{"capabilities", {{"add", {"SYS_ADMIN"}}, {"drop", {"ALL"}}}}})),
       App(Sc({{"capabilities", {{"add", {"NET_BIND_SERVICE"}}, {"drop", {"ALL"}}}}})), nothing,
       "Deployment"},
      {"pod.windows-host-process",
       App(nullptr, {{"securityContext", {{"windowsOptions", {{"hostProcess", true}}}}}}),
       App(nullptr), nothing, "Deployment"},
      {"pod.host-path",
       App(nullptr,
           {{"volumes", {{{"name", "docker"}, {"hostPath", {{"path", "/var/run/docker.sock"}}}}}}}),
       App(nullptr, {{"volumes", {{{"name", "tmp"}, {"emptyDir", json::object()}}}}}), nothing,
       "Deployment"},
      {"pod.host-port",
       App(nullptr, {}, "shop", {{"ports", {{{"containerPort", 80}, {"hostPort", 8080}}}}}),
       App(nullptr, {}, "shop", {{"ports", {{{"containerPort", 80}}}}}), nothing, "Deployment"},
      {"secrets.env",
       App(nullptr, {}, "shop",
           {{"env",
             {{{"name", "DB_PASSWORD"},
               {"valueFrom", {{"secretKeyRef", {{"name", "db"}, {"key", "password"}}}}}}}}}),
       App(nullptr, {}, "shop", {{"env", {{{"name", "MODE"}, {"value", "prod"}}}}}), nothing,
       "Deployment"},
      {"pod.seccomp", App(Sc({{"seccompProfile", {{"type", "Unconfined"}}}})),
       App(nullptr, {{"securityContext", {{"seccompProfile", {{"type", "RuntimeDefault"}}}}}}),
       nothing, "Deployment"},
      {"pod.security-context", App(nullptr), App(full), nothing, "Deployment"},
      {"sa.token-automount", App(nullptr), App(nullptr, {{"automountServiceAccountToken", false}}),
       nothing, "Deployment"},
      {"sa.default-not-used",
       {Namespace("shop"), ServiceAccount("shop", "default"),
        Deployment("shop", "web", PodSpec({Container("app")}))},
       {Namespace("shop"), ServiceAccount("shop", "default", false), ServiceAccount("shop", "web"),
        Deployment("shop", "web", PodSpec({Container("app")}, {{"serviceAccountName", "web"}}))},
       {Namespace("shop")},
       "ServiceAccount"},
      {"rbac.cluster-admin-bindings",
       {ClusterRoleBinding("alice-admin", "cluster-admin", alice())},
       {ClusterRoleBinding("alice-view", "view", alice())},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.secrets-read",
       {Role("shop", "reader", {Rule({""}, {"secrets"}, {"list"})}),
        RoleBinding("shop", "reader", "Role", "reader", alice())},
       {Role("shop", "reader", {Rule({""}, {"configmaps"}, {"list"})}),
        RoleBinding("shop", "reader", "Role", "reader", alice())},
       no_rbac,
       "RoleBinding"},
      {"rbac.wildcards",
       {Role("shop", "all", {Rule({"apps"}, {"deployments"}, {"*"})})},
       {Role("shop", "some", {Rule({"apps"}, {"deployments"}, {"get"})})},
       no_rbac,
       "Role"},
      {"rbac.pod-create",
       {Role("shop", "deployer", {Rule({"apps"}, {"deployments"}, {"create"})}),
        RoleBinding("shop", "deployer", "Role", "deployer", alice())},
       {Role("shop", "watcher", {Rule({""}, {"pods"}, {"get", "list", "watch"})}),
        RoleBinding("shop", "watcher", "Role", "watcher", alice())},
       no_rbac,
       "RoleBinding"},
      {"rbac.system-masters",
       {ClusterRoleBinding("break-glass", "view", {Subject("Group", "system:masters")})},
       {ClusterRole("cluster-admin", {Rule({"*"}, {"*"}, {"*"})}),
        ClusterRoleBinding("cluster-admin", "cluster-admin", {Subject("Group", "system:masters")},
                           {{"kubernetes.io/bootstrapping", "rbac-defaults"}})},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.escalation-verbs",
       {ClusterRole("role-editor",
                    {Rule({"rbac.authorization.k8s.io"}, {"clusterroles"}, {"escalate"})}),
        ClusterRoleBinding("role-editor", "role-editor", alice())},
       {ClusterRole("role-reader",
                    {Rule({"rbac.authorization.k8s.io"}, {"clusterroles"}, {"get"})}),
        ClusterRoleBinding("role-reader", "role-reader", alice())},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.pv-create",
       {ClusterRole("pv-maker", {Rule({""}, {"persistentvolumes"}, {"create"})}),
        ClusterRoleBinding("pv-maker", "pv-maker", alice())},
       // The same role through a RoleBinding: a cluster-scoped resource is not granted.
       {ClusterRole("pv-maker", {Rule({""}, {"persistentvolumes"}, {"create"})}),
        RoleBinding("shop", "pv-maker", "ClusterRole", "pv-maker", alice())},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.node-proxy",
       {ClusterRole("kubelet-user", {Rule({""}, {"nodes/proxy"}, {"get"})}),
        ClusterRoleBinding("kubelet-user", "kubelet-user", alice())},
       {ClusterRole("node-reader", {Rule({""}, {"nodes"}, {"get", "list"})}),
        ClusterRoleBinding("node-reader", "node-reader", alice())},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.csr-approval",
       {ClusterRole("approver", {Rule({"certificates.k8s.io"},
                                      {"certificatesigningrequests/approval"}, {"update"})}),
        ClusterRoleBinding("approver", "approver", alice())},
       {ClusterRole("requester",
                    {Rule({"certificates.k8s.io"}, {"certificatesigningrequests"}, {"create"})}),
        ClusterRoleBinding("requester", "requester", alice())},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.webhook-config",
       {ClusterRole("hooks", {Rule({"admissionregistration.k8s.io"},
                                   {"mutatingwebhookconfigurations"}, {"patch"})}),
        ClusterRoleBinding("hooks", "hooks", alice())},
       {ClusterRole("hooks", {Rule({"admissionregistration.k8s.io"},
                                   {"mutatingwebhookconfigurations"}, {"get", "list"})}),
        ClusterRoleBinding("hooks", "hooks", alice())},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.sa-token-create",
       {Role("shop", "minter", {Rule({""}, {"serviceaccounts/token"}, {"create"})}),
        RoleBinding("shop", "minter", "Role", "minter", alice())},
       {Role("shop", "sa-maker", {Rule({""}, {"serviceaccounts"}, {"create"})}),
        RoleBinding("shop", "sa-maker", "Role", "sa-maker", alice())},
       no_rbac,
       "RoleBinding"},
      {"rbac.anonymous-bindings",
       {ClusterRoleBinding("anon-view", "view", {Subject("User", "system:anonymous")})},
       {ClusterRoleBinding("system:public-info-viewer", "system:public-info-viewer",
                           {Subject("Group", "system:unauthenticated")},
                           {{"kubernetes.io/bootstrapping", "rbac-defaults"}})},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.authenticated-rights",
       {ClusterRoleBinding("everyone-views", "view", {Subject("Group", "system:authenticated")})},
       {ClusterRoleBinding("system:discovery", "system:discovery",
                           {Subject("Group", "system:authenticated")},
                           {{"kubernetes.io/bootstrapping", "rbac-defaults"}})},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.pod-exec-attach",
       // edit grants pods/exec only through its aggregated system:aggregate-to-edit.
       {ClusterRole(
            "edit", {}, {{"kubernetes.io/bootstrapping", "rbac-defaults"}},
            {{"clusterRoleSelectors",
              {{{"matchLabels", {{"rbac.authorization.k8s.io/aggregate-to-edit", "true"}}}}}}}),
        ClusterRole("system:aggregate-to-edit", {Rule({""}, {"pods/exec"}, {"create"})},
                    {{"rbac.authorization.k8s.io/aggregate-to-edit", "true"},
                     {"kubernetes.io/bootstrapping", "rbac-defaults"}}),
        RoleBinding("shop", "devs-edit", "ClusterRole", "edit", {Subject("Group", "devs")})},
       {ClusterRole("view", {Rule({""}, {"pods", "pods/log"}, {"get"})}),
        RoleBinding("shop", "devs-view", "ClusterRole", "view", {Subject("Group", "devs")})},
       no_rbac,
       "RoleBinding"},
      {"admission.policy-control",
       App(nullptr),
       [] {
         auto objects = App(nullptr);
         objects[0] = Namespace("shop", {{"pod-security.kubernetes.io/enforce", "baseline"}});
         return objects;
       }(),
       {Namespace("shop")},
       "Namespace"},
      {"rbac.workload-takeover",
       [] {
         auto objects = App(nullptr);
         objects.push_back(Role("shop", "reader", {Rule({""}, {"secrets"}, {"get", "list"})}));
         objects.push_back(RoleBinding("shop", "reader", "Role", "reader",
                                       {Subject("ServiceAccount", "default", "shop")}));
         return objects;
       }(),
       [] {
         auto objects = App(nullptr);
         objects.push_back(Role("shop", "reader", {Rule({""}, {"configmaps"}, {"get"})}));
         objects.push_back(RoleBinding("shop", "reader", "Role", "reader",
                                       {Subject("ServiceAccount", "default", "shop")}));
         return objects;
       }(),
       nothing, "Deployment"},
      {"pod.proc-mount", App(Sc({{"procMount", "Unmasked"}})), App(Sc({{"procMount", "Default"}})),
       nothing, "Deployment"},
      {"pod.selinux", App(Sc({{"seLinuxOptions", {{"type", "spc_t"}}}})),
       App(Sc({{"seLinuxOptions", {{"type", "container_t"}, {"level", "s0:c123,c456"}}}})), nothing,
       "Deployment"},
      {"pod.apparmor", App(Sc({{"appArmorProfile", {{"type", "Unconfined"}}}})),
       App(nullptr, {{"securityContext", {{"appArmorProfile", {{"type", "RuntimeDefault"}}}}}}),
       nothing, "Deployment"},
      {"pod.sysctls",
       App(nullptr,
           {{"securityContext", {{"sysctls", {{{"name", "kernel.msgmax"}, {"value", "65536"}}}}}}}),
       App(nullptr,
           {{"securityContext",
             {{"sysctls", {{{"name", "net.ipv4.ip_unprivileged_port_start"}, {"value", "0"}}}}}}}),
       nothing, "Deployment"},
      {"pod.volume-types",
       App(nullptr,
           {{"volumes", {{{"name", "data"}, {"nfs", {{"server", "nas"}, {"path", "/x"}}}}}}}),
       App(nullptr,
           {{"volumes", {{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "d"}}}}}}}),
       nothing, "Deployment"},
      {"secrets.env-literal",
       App(nullptr, {}, "shop",
           {{"env", {{{"name", "DB_PASSWORD"}, {"value", "hunter2-but-longer"}}}}}),
       App(nullptr, {}, "shop",
           {{"env",
             {{{"name", "DB_PASSWORD_FILE"}, {"value", ""}},
              {{"name", "MODE"}, {"value", "prod"}},
              {{"name", "TOKEN_URL"}, {"value", "$(ISSUER)"}}}}}),
       nothing, "Deployment"},
      {"rbac.port-forward",
       {Role("shop", "tunnel", {Rule({""}, {"pods/portforward"}, {"create"})}),
        RoleBinding("shop", "tunnel", "Role", "tunnel", alice())},
       {Role("shop", "logs", {Rule({""}, {"pods/log"}, {"get"})}),
        RoleBinding("shop", "logs", "Role", "logs", alice())},
       no_rbac,
       "RoleBinding"},
      {"rbac.delete-events",
       {ClusterRole("cleaner", {Rule({"events.k8s.io"}, {"events"}, {"deletecollection"})}),
        ClusterRoleBinding("cleaner", "cleaner", alice())},
       {ClusterRole("reader", {Rule({"events.k8s.io"}, {"events"}, {"get", "list"})}),
        ClusterRoleBinding("reader", "reader", alice())},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.kubeconfig-configmaps",
       {Role("kube-system", "cm-editor", {Rule({""}, {"configmaps"}, {"patch"})}),
        RoleBinding("kube-system", "cm-editor", "Role", "cm-editor", alice())},
       // The same rights in an application namespace reach no kubeconfig.
       {Role("shop", "cm-editor", {Rule({""}, {"configmaps"}, {"patch", "update"})}),
        RoleBinding("shop", "cm-editor", "Role", "cm-editor", alice())},
       no_rbac,
       "RoleBinding"},
      {"rbac.broad-delete",
       {ClusterRole("janitor", {Rule({"apps"}, {"deployments"}, {"deletecollection"})}),
        ClusterRoleBinding("janitor", "janitor", alice())},
       {ClusterRole("viewer", {Rule({"apps"}, {"deployments"}, {"get", "list", "watch"})}),
        ClusterRoleBinding("viewer", "viewer", alice())},
       no_rbac,
       "ClusterRoleBinding"},
      {"rbac.missing-role",
       {RoleBinding("shop", "ghost", "Role", "not-there", alice())},
       {Role("shop", "here", {Rule({""}, {"pods"}, {"get"})}),
        RoleBinding("shop", "here", "Role", "here", alice())},
       no_rbac,
       "RoleBinding"},
      {"namespace.resource-policies",
       [] {
         auto objects = App(nullptr);
         objects.push_back({{"apiVersion", "v1"},
                            {"kind", "LimitRange"},
                            {"metadata", {{"name", "defaults"}, {"namespace", "shop"}}},
                            {"spec",
                             {{"limits",
                               {{{"type", "Container"},
                                 {"default", {{"cpu", "500m"}, {"memory", "256Mi"}}}}}}}}});
         return objects;  // no ResourceQuota
       }(),
       [] {
         auto objects = App(nullptr);
         objects.push_back({{"apiVersion", "v1"},
                            {"kind", "LimitRange"},
                            {"metadata", {{"name", "defaults"}, {"namespace", "shop"}}},
                            {"spec",
                             {{"limits",
                               {{{"type", "Container"},
                                 {"default", {{"cpu", "500m"}, {"memory", "256Mi"}}}}}}}}});
         objects.push_back(
             {{"apiVersion", "v1"},
              {"kind", "ResourceQuota"},
              {"metadata", {{"name", "team"}, {"namespace", "shop"}}},
              {"spec", {{"hard", {{"limits.cpu", "20"}, {"limits.memory", "64Gi"}}}}}});
         return objects;
       }(),
       {Namespace("shop")},
       "Namespace"},
      {"ingress.tls",
       {Namespace("shop"),
        {{"apiVersion", "networking.k8s.io/v1"},
         {"kind", "Ingress"},
         {"metadata", {{"name", "web"}, {"namespace", "shop"}}},
         {"spec",
          {{"tls", {{{"hosts", {"shop.example.com"}}, {"secretName", "shop-tls"}}}},
           {"rules", {{{"host", "shop.example.com"}}, {{"host", "admin.example.com"}}}}}}}},
       {Namespace("shop"),
        {{"apiVersion", "networking.k8s.io/v1"},
         {"kind", "Ingress"},
         {"metadata", {{"name", "web"}, {"namespace", "shop"}}},
         {"spec",
          {{"tls", {{{"hosts", {"*.example.com"}}, {"secretName", "wildcard-tls"}}}},
           {"rules", {{{"host", "shop.example.com"}}, {{"host", "admin.example.com"}}}}}}}},
       nothing,
       "Ingress"},
      {"pod.image-tag", App(nullptr, {}, "shop", {{"image", "registry.example.com:5000/app"}}),
       App(nullptr, {}, "shop", {{"image", "registry.example.com:5000/app:1.4.2"}}), nothing,
       "Deployment"},
      {"pod.image-digest", App(nullptr, {}, "shop", {{"image", "nginx:1.27"}}),
       App(nullptr, {}, "shop", {{"image", "nginx:1.27@sha256:" + std::string(64, 'a')}}), nothing,
       "Deployment"},
      {"pod.pull-policy",
       App(nullptr, {}, "shop", {{"image", "nginx:latest"}, {"imagePullPolicy", "IfNotPresent"}}),
       App(nullptr, {}, "shop", {{"image", "nginx:1.27"}, {"imagePullPolicy", "IfNotPresent"}}),
       nothing, "Deployment"},
      {"pod.resource-limits",
       App(nullptr, {}, "shop", {{"resources", {{"limits", {{"memory", "256Mi"}}}}}}),
       App(nullptr, {}, "shop",
           {{"resources", {{"limits", {{"cpu", "500m"}, {"memory", "256Mi"}}}}}}),
       nothing, "Deployment"},
      {"netpol.workload-coverage",
       // A policy that selects other pods does not cover web's.
       [] {
         auto objects = App(nullptr);
         objects.push_back(NetworkPolicy("shop", "db-only", {{"matchLabels", {{"app", "db"}}}}));
         return objects;
       }(),
       [] {
         auto objects = App(nullptr);
         objects.push_back(NetworkPolicy("shop", "web", {{"matchLabels", {{"app", "web"}}}}));
         return objects;
       }(),
       {Namespace("shop")},
       "Deployment"},
      {"netpol.namespace-coverage",
       App(nullptr),
       [] {
         auto objects = App(nullptr);
         objects.push_back(NetworkPolicy("shop", "default-deny", json::object()));
         return objects;
       }(),
       {Namespace("shop")},
       "Namespace"},
      {"namespace.default-unused",
       App(nullptr, {}, "default"),
       {Namespace("default"),
        {{"apiVersion", "v1"},
         {"kind", "Service"},
         {"metadata", {{"name", "kubernetes"}, {"namespace", "default"}}}}},
       {},
       "Deployment"},
  };
}

TEST(Checks, EveryCheckFailsPassesAndDoesNotApply) {
  std::set<std::string> covered;
  for (const auto& c : Cases()) {
    SCOPED_TRACE(c.check);
    covered.insert(c.check);
    const auto fail = Scan(Snapshot(c.fails));
    const auto failing = ResultsOf(fail, c.check);
    ASSERT_FALSE(failing.empty());
    bool any_fail = false;
    for (const auto* r : failing) {
      if (r->status() != v1::STATUS_FAIL && r->status() != v1::STATUS_WARN) continue;
      any_fail = true;
      EXPECT_EQ(r->resource().kind(), c.failing_kind);
      EXPECT_FALSE(r->evidence().empty());
      EXPECT_FALSE(r->reason().empty());
      for (const auto& e : r->evidence()) {
        EXPECT_EQ(e.source_kind(), v1::SOURCE_KIND_API_OBJECT);
        EXPECT_FALSE(e.source().empty());
      }
      // Unscored CIS items fail as WARN; NSA/CISA items are scored and FAIL.
      EXPECT_EQ(r->status(), r->scored() ? v1::STATUS_FAIL : v1::STATUS_WARN);
    }
    EXPECT_TRUE(any_fail);

    const auto pass = Scan(Snapshot(c.passes));
    for (const auto* r : ResultsOf(pass, c.check)) {
      EXPECT_EQ(r->status(), v1::STATUS_PASS) << r->reason();
    }
    EXPECT_FALSE(ResultsOf(pass, c.check).empty());

    const auto na = Scan(Snapshot(c.not_applicable));
    const auto none = ResultsOf(na, c.check);
    ASSERT_FALSE(none.empty());
    for (const auto* r : none) {
      EXPECT_EQ(r->status(), v1::STATUS_NOT_APPLICABLE);
      EXPECT_FALSE(r->reason().empty());
    }
  }
  // The Pod Security Admission items, one per 5.2.x control, from the catalogue's own levels.
  for (const auto& check : BuiltinCatalog()) {
    if (check.evaluate != "psa-level") continue;
    SCOPED_TRACE(check.id);
    covered.insert(check.id);
    const std::string below = check.level == "restricted" ? "baseline" : "privileged";
    auto objects = App(nullptr);
    objects[0] = Namespace("shop", {{"pod-security.kubernetes.io/enforce", below}});
    const auto fail_scan = Scan(Snapshot(objects));
    const auto fail = ResultsOf(fail_scan, check.id);
    ASSERT_EQ(fail.size(), 1u);
    EXPECT_EQ(fail[0]->status(), v1::STATUS_WARN);
    EXPECT_EQ(fail[0]->resource().name(), "shop");
    objects[0] = Namespace("shop", {{"pod-security.kubernetes.io/enforce", check.level}});
    const auto pass_scan = Scan(Snapshot(objects));
    const auto pass = ResultsOf(pass_scan, check.id);
    ASSERT_EQ(pass.size(), 1u);
    EXPECT_EQ(pass[0]->status(), v1::STATUS_PASS);
    const auto na_scan = Scan(Snapshot({Namespace("shop")}));
    const auto na = ResultsOf(na_scan, check.id);
    ASSERT_EQ(na.size(), 1u);
    EXPECT_EQ(na[0]->status(), v1::STATUS_NOT_APPLICABLE);
  }
  // ConfigMap contents are judged only when read on purpose (--scan-configmaps).
  {
    const std::string id = "secrets.configmap-credentials";
    SCOPED_TRACE(id);
    covered.insert(id);
    const auto read = [](const std::vector<json>& objects, bool contents) {
      k8s::Snapshot s;
      s.set_inspect_config_data(contents);
      for (const auto& o : objects) EXPECT_TRUE(k8s::AddDocument(o, "test", s).ok());
      return s;
    };
    const auto configmap = [](const std::string& name, json data) {
      return json{{"apiVersion", "v1"},
                  {"kind", "ConfigMap"},
                  {"metadata", {{"name", name}, {"namespace", "shop"}}},
                  {"data", std::move(data)}};
    };
    const auto leaky = configmap("app", {{"LOG_LEVEL", "info"}, {"DB_PASSWORD", "hunter2-s3cr3t"}});
    const auto fail_snapshot = read({Namespace("shop"), leaky}, true);
    // The value is never kept, only which key and why.
    EXPECT_EQ(fail_snapshot.Find("ConfigMap", "shop", "app")->doc.dump().find("hunter2"),
              std::string::npos);
    const auto fail_scan = Scan(fail_snapshot);
    const auto fail = ResultsOf(fail_scan, id);
    ASSERT_EQ(fail.size(), 1u);
    EXPECT_EQ(fail[0]->status(), v1::STATUS_FAIL);
    EXPECT_EQ(fail[0]->resource().kind(), "ConfigMap");
    EXPECT_NE(fail[0]->reason().find("key DB_PASSWORD: it is named like a credential"),
              std::string::npos)
        << fail[0]->reason();
    ASSERT_EQ(fail[0]->evidence_size(), 1);
    EXPECT_EQ(fail[0]->evidence(0).value(), "(a value of 14 characters, not shown)");
    EXPECT_EQ(fail[0]->SerializeAsString().find("hunter2"), std::string::npos);
    const auto pass_scan =
        Scan(read({Namespace("shop"), configmap("app", {{"LOG_LEVEL", "info"}})}, true));
    const auto pass = ResultsOf(pass_scan, id);
    ASSERT_EQ(pass.size(), 1u);
    EXPECT_EQ(pass[0]->status(), v1::STATUS_PASS);
    const auto na_scan = Scan(read({Namespace("shop"), leaky}, false));
    const auto na = ResultsOf(na_scan, id);
    ASSERT_EQ(na.size(), 1u);
    EXPECT_EQ(na[0]->status(), v1::STATUS_NOT_APPLICABLE);
    EXPECT_NE(na[0]->reason().find("--scan-configmaps"), std::string::npos);
  }
  for (const auto& check : BuiltinCatalog()) EXPECT_TRUE(covered.contains(check.id)) << check.id;
}

// The kubeadm ConfigMaps (kube-proxy's kubeconfig names a token file, cluster-info's carries
// no user) hold no credentials; a kubeconfig with a client key or a token does, and so does a
// private key, whatever the key's name.
TEST(Checks, ConfigMapCredentialsAreFoundInRealShapesAndNotInKubeadmsOwn) {
  k8s::Snapshot demo;
  demo.set_inspect_config_data(true);
  ASSERT_TRUE(k8s::LoadSnapshotDir(SourceDir() + "/tests/fixtures/cluster/demo", demo).ok());
  ASSERT_NE(demo.Find("ConfigMap", "kube-system", "kube-proxy"), nullptr);
  collector::cluster::ScanOptions options;
  options.policy.include_system = true;
  const auto stock = collector::cluster::EvaluateCluster(demo, options);
  for (const auto& r : stock.results) {
    if (r.check_id() != "secrets.configmap-credentials") continue;
    EXPECT_EQ(r.status(), v1::STATUS_PASS) << r.reason();
  }
  EXPECT_EQ(k8s::CredentialLike("kubeconfig",
                                "apiVersion: v1\nkind: Config\nusers:\n- name: ci\n"
                                "  user:\n    token: eyJhbGciOi\n"),
            "its value is a kubeconfig with a credential in it");
  EXPECT_EQ(k8s::CredentialLike("kubeconfig.conf",
                                "apiVersion: v1\nkind: Config\nusers:\n- name: "
                                "default\n  user:\n    tokenFile: /var/run/"
                                "secrets/kubernetes.io/serviceaccount/token\n"),
            "");
  EXPECT_EQ(k8s::CredentialLike("tls.key", "-----BEGIN EC PRIVATE KEY-----\nMHc...\n"),
            "its value is a private key");
  EXPECT_EQ(k8s::CredentialLike("LOG_LEVEL", "debug"), "");
}

// CIS 5.1.5 (sa.default-not-used) and its 5.1.6 twin: the `default` namespace's default
// ServiceAccount automounts its token in every stock cluster (nothing sets
// automountServiceAccountToken: false), which the CIS audit fails, used or not. Unscored in CIS
// 1.12, so a WARN. Every other result of a stock cluster passes or does not apply.
TEST(Checks, AStockClustersDefaultAccountAutomountsItsTokenAndCisFailsIt) {
  const auto scan = Scan(KubeadmSnapshot());
  size_t found = 0;
  for (const auto& r : scan.results) {
    if (!IsStockDefaultAccountFinding(r)) continue;
    ++found;
    EXPECT_EQ(r.resource().namespace_(), "default");
    EXPECT_NE(r.reason().find("automountServiceAccountToken is not set (not false)"),
              std::string::npos)
        << r.reason();
  }
  EXPECT_GE(found, 1u);
}

TEST(Checks, AStockKubeadmClusterHasNoFindingsUnlessSystemObjectsAreIncluded) {
  const auto snapshot = KubeadmSnapshot();
  const auto scan = Scan(snapshot);
  for (const auto& r : scan.results) {
    if (IsStockDefaultAccountFinding(r)) continue;
    EXPECT_TRUE(r.status() == v1::STATUS_PASS || r.status() == v1::STATUS_NOT_APPLICABLE)
        << r.check_id() << " " << r.benchmark() << ": " << r.reason();
  }
  EXPECT_EQ(scan.stats.system_workloads, 6u);  // coredns, kube-proxy, four static pods
  EXPECT_EQ(scan.stats.owned, 4u);             // the ReplicaSet and three replica pods

  // Asked for, the defaults are reported like anything else.
  const auto all = Scan(snapshot, true);
  bool masters = false;
  for (const auto* r : ResultsOf(all, "rbac.system-masters")) {
    if (r->resource().name() == "cluster-admin") masters = r->status() == v1::STATUS_WARN;
  }
  EXPECT_TRUE(masters);
  const auto proxy = ResultsOf(all, "pod.privileged", "cis-kubernetes-1.12");
  ASSERT_FALSE(proxy.empty());
  bool kube_proxy = false;
  for (const auto* r : proxy) {
    if (r->resource().name() == "kube-proxy") {
      kube_proxy = true;
      EXPECT_EQ(r->resource().kind(), "DaemonSet");
      EXPECT_EQ(r->status(), v1::STATUS_WARN);
    }
  }
  EXPECT_TRUE(kube_proxy);
}

TEST(Checks, WorkloadsAreReportedOnceAtTheirController) {
  const json rs_owner = {{"apiVersion", "apps/v1"},
                         {"kind", "ReplicaSet"},
                         {"name", "web-5d9f7c8b6"},
                         {"controller", true}};
  const json spec = PodSpec({Container("app", {{"privileged", true}})});
  const json hash = {{"pod-template-hash", "5d9f7c8b6"}};
  // Only Pods in the snapshot: their ReplicaSet is missing, so they resolve to the Deployment.
  const auto pods_only = Scan(
      Snapshot({Namespace("shop"), Pod("shop", "web-5d9f7c8b6-a", spec, rs_owner, hash),
                Pod("shop", "web-5d9f7c8b6-b", spec, rs_owner, hash),
                Pod("shop", "web-5d9f7c8b6-c", spec, rs_owner, hash), Pod("shop", "debug", spec)}));
  const auto results = ResultsOf(pods_only, "pod.privileged", "cis-kubernetes-1.12");
  ASSERT_EQ(results.size(), 2u);
  std::set<std::string> resources;
  for (const auto* r : results) resources.insert(r->resource().kind() + " " + r->resource().name());
  EXPECT_TRUE(resources.contains("Deployment web"));
  EXPECT_TRUE(resources.contains("Pod debug"));  // a bare Pod, on its own
  for (const auto* r : results) {
    if (r->resource().kind() != "Deployment") continue;
    EXPECT_NE(r->evidence(0).source().find("not in the snapshot"), std::string::npos);
    EXPECT_EQ(r->evidence(0).key(), "spec.containers[app].securityContext.privileged");
  }

  // With the controller present, its own spec is read and the replicas are skipped.
  auto deployment = Deployment("shop", "web", spec);
  const auto full = Scan(Snapshot(
      {Namespace("shop"), deployment, Pod("shop", "web-5d9f7c8b6-a", spec, rs_owner, hash)}));
  const auto one = ResultsOf(full, "pod.privileged", "cis-kubernetes-1.12");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0]->resource().kind(), "Deployment");
  EXPECT_EQ(one[0]->resource().container(), "app");
  EXPECT_EQ(one[0]->evidence(0).key(),
            "spec.template.spec.containers[app].securityContext.privileged");
  EXPECT_EQ(one[0]->evidence(0).value(), "true");
  EXPECT_EQ(one[0]->evidence(0).source(), "Deployment shop/web");
}

TEST(Checks, CronJobsAreReadAtTheirJobTemplateAndInitContainersCount) {
  const json cron = {
      {"apiVersion", "batch/v1"},
      {"kind", "CronJob"},
      {"metadata", {{"name", "backup"}, {"namespace", "ops"}}},
      {"spec",
       {{"schedule", "0 3 * * *"},
        {"jobTemplate",
         {{"spec",
           {{"template",
             {{"spec",
               {{"initContainers", {Container("prepare", {{"runAsUser", 0}})}},
                {"containers",
                 {Container("backup", {{"runAsNonRoot", true}, {"runAsUser", 1000}})}}}}}}}}}}}}};
  const auto scan = Scan(Snapshot({Namespace("ops"), cron}));
  const auto r = ResultsOf(scan, "pod.run-as-root", "cis-kubernetes-1.12");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]->status(), v1::STATUS_WARN);
  EXPECT_EQ(r[0]->resource().container(), "prepare");
  EXPECT_EQ(
      r[0]->evidence(1).key(),
      "spec.jobTemplate.spec.template.spec.initContainers[prepare].securityContext.runAsUser");
}

TEST(Checks, ContainerSettingsOverridePodSettings) {
  // The pod says non-root; one container overrides with UID 0.
  const auto scan = Scan(
      Snapshot({Namespace("shop"),
                Deployment("shop", "web",
                           PodSpec({Container("app"), Container("sidecar", {{"runAsUser", 0}})},
                                   {{"securityContext", {{"runAsNonRoot", true}}}}))}));
  const auto r = ResultsOf(scan, "pod.run-as-root", "cis-kubernetes-1.12");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]->status(), v1::STATUS_WARN);
  EXPECT_EQ(r[0]->resource().container(), "sidecar");
  EXPECT_NE(r[0]->reason().find("UID 0"), std::string::npos);
}

TEST(Checks, PolicyEnginesMakeAdmissionItemsManualNotFail) {
  auto objects = App(nullptr);
  objects.push_back({{"apiVersion", "admissionregistration.k8s.io/v1"},
                     {"kind", "ValidatingWebhookConfiguration"},
                     {"metadata", {{"name", "kyverno-resource-validating-webhook-cfg"}}}});
  const auto scan = Scan(Snapshot(objects));
  const auto privileged = ResultsOf(scan, "admission.privileged");
  ASSERT_EQ(privileged.size(), 1u);
  EXPECT_EQ(privileged[0]->status(), v1::STATUS_MANUAL);
  const auto control = ResultsOf(scan, "admission.policy-control");
  ASSERT_EQ(control.size(), 1u);
  EXPECT_EQ(control[0]->status(), v1::STATUS_PASS);
}

TEST(Checks, StaticPodsMountNoToken) {
  json mirror =
      Pod("kube-system", "etcd-cp-1", PodSpec({Container("etcd")}),
          {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", "cp-1"}, {"controller", true}});
  mirror["metadata"]["annotations"] = {{"kubernetes.io/config.mirror", "abc"}};
  const auto scan = Scan(Snapshot({mirror}), true);
  const auto r = ResultsOf(scan, "sa.token-automount", "cis-kubernetes-1.12");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]->status(), v1::STATUS_PASS);
  EXPECT_EQ(r[0]->resource().kind(), "Pod");
}

TEST(Checks, UnreadableKindsTurnPassIntoError) {
  auto snapshot =
      Snapshot({ClusterRoleBinding("alice-admin", "cluster-admin", {Subject("User", "alice")})});
  snapshot.MarkFailed("RoleBinding", "403 Forbidden: list rolebindings");
  const auto scan = Scan(snapshot);
  const auto admin = ResultsOf(scan, "rbac.cluster-admin-bindings", "cis-kubernetes-1.12");
  ASSERT_EQ(admin.size(), 2u);  // the failure that was seen stands, plus the error
  EXPECT_EQ(admin[0]->status(), v1::STATUS_WARN);
  EXPECT_EQ(admin[1]->status(), v1::STATUS_ERROR);
  EXPECT_NE(admin[1]->reason().find("403 Forbidden"), std::string::npos);
  for (const auto* r : ResultsOf(scan, "rbac.secrets-read")) {
    EXPECT_EQ(r->status(), v1::STATUS_ERROR);
  }
  // Checks that read other kinds are unaffected.
  for (const auto* r : ResultsOf(scan, "pod.privileged")) {
    EXPECT_EQ(r->status(), v1::STATUS_NOT_APPLICABLE);
  }
}

TEST(Checks, SeccompAnnotationsAreShownButNoLongerCount) {
  json d = Deployment("shop", "web", PodSpec({Container("app")}));
  d["spec"]["template"]["metadata"]["annotations"] = {
      {"seccomp.security.alpha.kubernetes.io/pod", "runtime/default"}};
  const auto scan = Scan(Snapshot({Namespace("shop"), d}));
  const auto r = ResultsOf(scan, "pod.seccomp");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]->status(), v1::STATUS_WARN);
  bool shown = false;
  for (const auto& e : r[0]->evidence()) {
    shown = shown || e.source().find("ignored since Kubernetes 1.27") != std::string::npos;
  }
  EXPECT_TRUE(shown);
}

TEST(Checks, EmptyNamespacesAreCountedNotJudged) {
  const auto scan = Scan(Snapshot({Namespace("empty"), Namespace("shop"),
                                   Deployment("shop", "web", PodSpec({Container("app")}))}));
  const auto r = ResultsOf(scan, "netpol.namespace-coverage", "cis-kubernetes-1.12");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]->resource().name(), "shop");
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

TEST(Checks, CompactingOwnedReplicasChangesNoResult) {
  auto full = KubeadmSnapshot();
  auto compact = KubeadmSnapshot();
  // coredns' ReplicaSet and two Pods, kube-proxy's Pod; static pods (owned by the Node) stay.
  EXPECT_EQ(collector::cluster::CompactOwnedObjects(compact), 4u);
  for (const auto& pod : compact.Of("Pod")) {
    EXPECT_EQ(pod.doc.contains("spec"), pod.name.find("-cp-1") != std::string::npos) << pod.name;
  }
  const auto a = Scan(full, true);
  const auto b = Scan(compact, true);
  ASSERT_EQ(a.results.size(), b.results.size());
  for (size_t i = 0; i < a.results.size(); ++i) {
    EXPECT_EQ(a.results[i].SerializeAsString(), b.results[i].SerializeAsString())
        << a.results[i].check_id();
  }
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

// What the collector's periodic scan streams to the store: each check's results in catalogue
// order, the same results as the whole evaluation, on any number of threads; a check judged per
// workload comes in slices of `workloads_per_part` workloads, `more` on all but its last; a sink
// that fails stops the evaluation.
TEST(Checks, EvaluationInPartsHandsOverEachCheckOnceInCatalogueOrder) {
  const auto snapshot = KubeadmSnapshot();
  collector::cluster::ScanOptions options;
  options.policy.include_system = true;
  const auto whole = collector::cluster::EvaluateCluster(snapshot, options);
  ASSERT_GE(whole.stats.workloads, 3u);
  for (unsigned threads : {1u, 3u}) {
    for (size_t slice : {size_t{0}, size_t{1}, size_t{2}}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, slices of " + std::to_string(slice));
      options.threads = threads;
      options.workloads_per_part = slice;
      std::vector<v1::CheckResult> joined;
      std::vector<std::string> order;  // each check once, when its last part came
      std::string open;                // the check whose slices are coming
      size_t sliced = 0;               // parts handed with `more`
      auto stats = collector::cluster::EvaluateClusterInParts(
          snapshot, options, [&](std::vector<v1::CheckResult>&& part, bool more) {
            // Only the last part of a sliced check may be empty.
            EXPECT_TRUE(!part.empty() || (!more && !open.empty()));
            const std::string id = part.empty() ? open : part.front().check_id();
            EXPECT_TRUE(open.empty() || open == id) << id << " came while " << open << " was open";
            for (const auto& r : part) EXPECT_EQ(r.check_id(), id);
            sliced += more;
            open = more ? id : "";
            if (!more) order.push_back(id);
            std::move(part.begin(), part.end(), std::back_inserter(joined));
            return absl::OkStatus();
          });
      ASSERT_TRUE(stats.ok());
      EXPECT_TRUE(open.empty());
      // Slices of one or two workloads cut every per-workload check of this cluster.
      if (slice == 0) {
        EXPECT_EQ(sliced, 0u);
      } else {
        EXPECT_GE(sliced, 20u);
      }
      EXPECT_EQ(stats->workloads, whole.stats.workloads);
      ASSERT_EQ(joined.size(), whole.results.size());
      for (size_t i = 0; i < joined.size(); ++i) {
        EXPECT_EQ(joined[i].SerializeAsString(), whole.results[i].SerializeAsString());
      }
      EXPECT_EQ(std::set<std::string>(order.begin(), order.end()).size(), order.size());
    }
  }
  for (size_t slice : {size_t{0}, size_t{1}}) {
    options.workloads_per_part = slice;
    size_t parts = 0;
    auto stopped = collector::cluster::EvaluateClusterInParts(
        snapshot, options, [&](std::vector<v1::CheckResult>&&, bool) {
          return ++parts == 3 ? absl::ResourceExhaustedError("disk full") : absl::OkStatus();
        });
    EXPECT_TRUE(absl::IsResourceExhausted(stopped.status()));
    EXPECT_EQ(parts, 3u);
  }
}

// A watched cluster re-evaluates per-workload checks for the workloads a change touched alone
// (Focus): for every workload of the demo cluster, that gives exactly the results the whole
// evaluation gives it; checks named whole give the whole evaluation's results.
TEST(Checks, AFocusOnOneWorkloadGivesWhatTheWholeEvaluationGivesIt) {
  k8s::Snapshot snapshot;
  ASSERT_TRUE(k8s::LoadSnapshotDir(SourceDir() + "/tests/fixtures/cluster/demo", snapshot).ok());
  collector::cluster::ScanOptions options;
  const auto whole = collector::cluster::EvaluateCluster(snapshot, options);
  std::set<std::string> per_workload;
  for (const auto& c : collector::cluster::BuiltinCatalog()) {
    if (collector::cluster::JudgedPerWorkload(c.evaluate)) per_workload.insert(c.id);
  }
  ASSERT_GE(per_workload.size(), 20u);
  const auto text = [](const v1::CheckResult& r) { return r.SerializeAsString(); };
  std::map<collector::cluster::WorkloadKey, std::multiset<std::string>> expected;
  for (const auto& r : whole.results) {
    if (!per_workload.contains(r.check_id()) || r.resource().kind() == "Cluster") continue;
    expected[{r.resource().kind(), r.resource().namespace_(), r.resource().name()}].insert(text(r));
  }
  ASSERT_GE(expected.size(), 5u) << "the demo cluster should have workloads";
  for (const auto& [key, results] : expected) {
    SCOPED_TRACE(std::get<0>(key) + " " + std::get<1>(key) + "/" + std::get<2>(key));
    collector::cluster::Focus focus;
    focus.workload_checks = per_workload;
    focus.workloads = {key};
    options.focus = &focus;
    const auto part = collector::cluster::EvaluateCluster(snapshot, options);
    std::multiset<std::string> got;
    for (const auto& r : part.results) got.insert(text(r));
    EXPECT_EQ(got, results);
  }
  // Checks judged per namespace, focused on one namespace: that namespace's results.
  std::set<std::string> per_namespace;
  for (const auto& c : collector::cluster::BuiltinCatalog()) {
    if (collector::cluster::JudgedPerNamespace(c.evaluate, "Pod")) per_namespace.insert(c.id);
  }
  ASSERT_GE(per_namespace.size(), 5u);
  std::map<std::string, std::multiset<std::string>> in_namespace;
  for (const auto& r : whole.results) {
    if (!per_namespace.contains(r.check_id()) || r.resource().kind() == "Cluster") continue;
    const auto& res = r.resource();
    in_namespace[res.kind() == "Namespace" ? res.name() : res.namespace_()].insert(text(r));
  }
  ASSERT_GE(in_namespace.size(), 2u);
  for (const auto& [ns, results] : in_namespace) {
    SCOPED_TRACE("namespace " + ns);
    collector::cluster::Focus focus;
    focus.namespace_checks = per_namespace;
    focus.namespaces = {ns};
    options.focus = &focus;
    const auto part = collector::cluster::EvaluateCluster(snapshot, options);
    std::multiset<std::string> got;
    for (const auto& r : part.results) got.insert(text(r));
    EXPECT_EQ(got, results);
  }
  // A whole check in focus: the same results as in the whole evaluation, and nothing else.
  collector::cluster::Focus focus;
  focus.checks = {"rbac.cluster-admin-bindings"};
  options.focus = &focus;
  const auto part = collector::cluster::EvaluateCluster(snapshot, options);
  std::vector<std::string> want, got;
  for (const auto& r : whole.results) {
    if (r.check_id() == "rbac.cluster-admin-bindings") want.push_back(text(r));
  }
  for (const auto& r : part.results) got.push_back(text(r));
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace kspm::cluster_test

namespace kspm::cluster_test {
namespace {

// A takeover path is reported at the workload with the whole join; an unmounted token has none.
TEST(Checks, TakeoverPathsNameTheAccountBindingRoleAndRule) {
  auto objects = App(nullptr, {{"serviceAccountName", "deployer"}});
  objects.push_back(ClusterRole("deployer", {Rule({"apps"}, {"deployments"}, {"create"})}));
  objects.push_back(RoleBinding("shop", "deployer", "ClusterRole", "deployer",
                                {Subject("ServiceAccount", "deployer", "shop")}));
  const auto scan = Scan(Snapshot(objects));
  const auto r = ResultsOf(scan, "rbac.workload-takeover");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]->status(), v1::STATUS_FAIL);
  EXPECT_EQ(r[0]->resource().name(), "web");
  EXPECT_NE(r[0]->reason().find("ServiceAccount shop/deployer -> RoleBinding shop/deployer -> "
                                "ClusterRole deployer: create on apps/deployments in namespace "
                                "shop"),
            std::string::npos)
      << r[0]->reason();

  auto unmounted =
      App(nullptr, {{"serviceAccountName", "deployer"}, {"automountServiceAccountToken", false}});
  unmounted.insert(unmounted.end(), objects.begin() + 2, objects.end());
  const auto quiet = Scan(Snapshot(unmounted));
  const auto q = ResultsOf(quiet, "rbac.workload-takeover");
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0]->status(), v1::STATUS_PASS);
  EXPECT_NE(q[0]->reason().find("no token is mounted"), std::string::npos);
}

}  // namespace
}  // namespace kspm::cluster_test

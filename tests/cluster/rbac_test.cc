// RBAC evaluated as the authorizer does: rule matching, aggregation, RoleBinding scope, and what
// counts as a system object.
#include "kspm/collector/cluster/rbac.h"

#include <gtest/gtest.h>

#include "cluster_test_util.h"

namespace kspm::cluster_test {
namespace {

using collector::cluster::GrantSpec;
using collector::cluster::PolicyRule;
using collector::cluster::Rbac;
using collector::cluster::RuleGrants;
using collector::cluster::SystemPolicy;

struct GrantCase {
  const char* name;
  PolicyRule rule;
  const char* group;
  const char* resource;
  const char* verb;
  bool grants;
};

TEST(RbacRules, MatchLikeTheAuthorizer) {
  const GrantCase cases[] = {
      {"exact", {{""}, {"secrets"}, {"get"}, {}, {}}, "", "secrets", "get", true},
      {"verb wildcard", {{""}, {"secrets"}, {"*"}, {}, {}}, "", "secrets", "list", true},
      {"resource wildcard", {{""}, {"*"}, {"get"}, {}, {}}, "", "pods/exec", "get", true},
      {"group wildcard",
       {{"*"}, {"deployments"}, {"create"}, {}, {}},
       "apps",
       "deployments",
       "create",
       true},
      {"other group", {{"apps"}, {"secrets"}, {"get"}, {}, {}}, "", "secrets", "get", false},
      {"plain resource does not cover its subresource",
       {{""}, {"pods"}, {"create"}, {}, {}},
       "",
       "pods/exec",
       "create",
       false},
      {"*/subresource", {{""}, {"*/exec"}, {"create"}, {}, {}}, "", "pods/exec", "create", true},
      {"*/subresource is not the resource",
       {{""}, {"*/exec"}, {"create"}, {}, {}},
       "",
       "pods",
       "create",
       false},
      {"resourceNames cannot grant create",
       {{""}, {"pods"}, {"create"}, {"web"}, {}},
       "",
       "pods",
       "create",
       false},
      {"resourceNames cannot grant list",
       {{""}, {"secrets"}, {"list"}, {"db"}, {}},
       "",
       "secrets",
       "list",
       false},
      {"resourceNames narrow get, which still reads",
       {{""}, {"secrets"}, {"get"}, {"db"}, {}},
       "",
       "secrets",
       "get",
       true},
      {"named subresource create",
       {{""}, {"serviceaccounts/token"}, {"create"}, {"ci"}, {}},
       "",
       "serviceaccounts/token",
       "create",
       true},
      {"nonResourceURLs grant no resource",
       {{}, {}, {"*"}, {}, {"*"}},
       "",
       "secrets",
       "get",
       false},
      {"any subresource question",
       {{"authentication.k8s.io"}, {"userextras/scopes"}, {"impersonate"}, {}, {}},
       "authentication.k8s.io",
       "userextras/*",
       "impersonate",
       true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(RuleGrants(c.rule, c.group, c.resource, c.verb), c.grants) << c.name;
  }
}

TEST(Rbac, AggregatedClusterRolesTakeTheRulesOfTheRolesTheySelectRecursively) {
  // The stock admin/edit/view chain: admin selects edit, edit selects view, none has own rules.
  const auto snapshot = KubeadmSnapshot();
  const SystemPolicy policy;
  const Rbac rbac(snapshot, policy);
  const collector::cluster::Role* admin = nullptr;
  for (const auto& r : rbac.roles()) {
    if (r.object->name == "admin") admin = &r;
  }
  ASSERT_NE(admin, nullptr);
  EXPECT_TRUE(admin->rules.empty());
  bool exec = false, view = false;
  for (const auto& ref : rbac.RulesOf(*admin)) {
    ASSERT_NE(ref.via, nullptr);
    if (RuleGrants(*ref.rule, "", "pods/exec", "create")) {
      exec = true;
      EXPECT_EQ(ref.via->object->name, "system:aggregate-to-edit");
    }
    if (RuleGrants(*ref.rule, "batch", "cronjobs", "list")) {
      view = true;
      EXPECT_EQ(ref.via->object->name, "system:aggregate-to-view");
    }
  }
  EXPECT_TRUE(exec);
  EXPECT_TRUE(view);
}

TEST(Rbac, MatchExpressionsSelectAndCyclesTerminate) {
  const auto s = Snapshot({
      ClusterRole("a", {}, {{"team", "x"}},
                  {{"clusterRoleSelectors",
                    {{{"matchExpressions",
                       {{{"key", "tier"}, {"operator", "In"}, {"values", {"gold"}}}}}}}}}),
      ClusterRole("b", {Rule({""}, {"secrets"}, {"get"})}, {{"tier", "gold"}},
                  {{"clusterRoleSelectors", {{{"matchLabels", {{"team", "x"}}}}}}}),
      ClusterRole("c", {Rule({""}, {"pods"}, {"get"})}, {{"tier", "silver"}}),
  });
  const SystemPolicy policy;
  const Rbac rbac(s, policy);
  for (const auto& r : rbac.roles()) {
    if (r.object->name != "a") continue;
    const auto& rules = rbac.RulesOf(r);
    ASSERT_EQ(rules.size(), 1u);  // b's own rule; c is not selected; b -> a -> b stops
    EXPECT_EQ(rules[0].rule->resources[0], "secrets");
  }
}

TEST(Rbac, ARoleBindingNeverGrantsAClusterScopedResource) {
  const auto s = Snapshot({
      ClusterRole("pv-maker", {Rule({""}, {"persistentvolumes"}, {"create"})}),
      RoleBinding("team", "local", "ClusterRole", "pv-maker", {Subject("User", "alice")}),
      ClusterRoleBinding("global", "pv-maker", {Subject("User", "bob")}),
  });
  const SystemPolicy policy;
  const Rbac rbac(s, policy);
  const GrantSpec pv{{""}, {"persistentvolumes"}, {"create"}, true, {}};
  for (const auto& b : rbac.bindings()) {
    EXPECT_EQ(rbac.FindGrant(b, pv).has_value(), b.cluster_binding) << b.object->name;
  }
}

// A grant that matters in some namespaces only (ConfigMaps of kube-system and kube-public hold
// kubeconfigs): a RoleBinding elsewhere does not reach them, a ClusterRoleBinding does.
TEST(Rbac, AGrantLimitedToNamespacesIsFoundOnlyWhereItReachesThem) {
  const auto s = Snapshot({
      ClusterRole("cm-writer", {Rule({""}, {"configmaps"}, {"patch"})}),
      RoleBinding("shop", "app", "ClusterRole", "cm-writer", {Subject("User", "alice")}),
      RoleBinding("kube-public", "bootstrap", "ClusterRole", "cm-writer", {Subject("User", "bob")}),
      ClusterRoleBinding("everywhere", "cm-writer", {Subject("User", "carol")}),
  });
  const SystemPolicy policy;
  const Rbac rbac(s, policy);
  const GrantSpec kubeconfigs{
      {""}, {"configmaps"}, {"patch"}, false, {"kube-system", "kube-public"}};
  std::map<std::string, bool> found;
  for (const auto& b : rbac.bindings())
    found[b.object->name] = rbac.FindGrant(b, kubeconfigs).has_value();
  EXPECT_FALSE(found["app"]);
  EXPECT_TRUE(found["bootstrap"]);
  EXPECT_TRUE(found["everywhere"]);
}

TEST(Rbac, SystemObjectsAreTheBootstrapPolicyKubeadmAndKubeSystem) {
  const auto snapshot = KubeadmSnapshot();
  const SystemPolicy policy;
  const Rbac rbac(snapshot, policy);
  for (const auto& r : rbac.roles()) EXPECT_TRUE(r.system) << r.object->Describe();
  for (const auto& b : rbac.bindings()) EXPECT_TRUE(b.system) << b.object->Describe();
}

TEST(Rbac, ASystemLookingBindingToAPersonIsNotSystem) {
  const auto s = Snapshot({
      ClusterRoleBinding("system:ops-shortcut", "cluster-admin", {Subject("User", "mallory")}),
      ClusterRoleBinding("system:fine", "view", {Subject("Group", "system:nodes")}),
      ClusterRoleBinding("ci-anon", "view", {Subject("User", "system:anonymous")}),
      RoleBinding("team", "sa-user", "ClusterRole", "view",
                  {Subject("User", "system:serviceaccount:team:deployer")}),
  });
  const SystemPolicy policy;
  const Rbac rbac(s, policy);
  std::map<std::string, bool> system;
  for (const auto& b : rbac.bindings()) system[b.object->name] = b.system;
  EXPECT_FALSE(system["system:ops-shortcut"]);
  EXPECT_TRUE(system["system:fine"]);
  EXPECT_FALSE(system["ci-anon"]);  // a system subject, but a binding someone made
  EXPECT_FALSE(system["sa-user"]);
}

}  // namespace
}  // namespace kspm::cluster_test

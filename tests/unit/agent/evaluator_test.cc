// Table-driven cases per behaviour: each builds a host root (real files, modes, owners and fake
// /proc entries) and evaluates one catalogue check on it. Several cases are kube-bench's known
// blind spots (../shared/reference/cis-benchmarks.md, "Where existing tools go wrong"). The cases
// of the kubelet and kube-proxy are here, those of the control plane and Docker in
// evaluator_control_plane_test.cc; the Verdict test below runs both tables.
#include "kspm/agent/checks/evaluator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "fixtures/host_builder.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"
#include "unit/agent/evaluator_test_support.h"

namespace kspm::agent::checks {
namespace {

// A kubelet that runs from a config file; cases add their own config.
constexpr const char* kKubeletWithConfig = R"(
processes:
  - {pid: 812, comm: kubelet, argv: [/usr/bin/kubelet, --config=/var/lib/kubelet/config.yaml]}
)";

const Case kCases[] = {
    {"FailsWhenFlagOverridesSecureConfigFile", R"(
entries:
  - path: /var/lib/kubelet/config.yaml
    content: "authentication: {anonymous: {enabled: false}}"
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml, --anonymous-auth=true]}
)",
     "kubelet.anonymous-auth", v1::STATUS_FAIL, "is true", v1::SOURCE_KIND_FLAG},

    // kube-bench blind spot 5: the v1beta1 default (anonymous off) applies when a config file
    // is used and does not mention the setting.
    {"PassesOnConfigFileDefaultWhenNothingSetsIt", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "kind: KubeletConfiguration"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.anonymous-auth", v1::STATUS_PASS, "", v1::SOURCE_KIND_DEFAULT},

    {"FailsOnLegacyDefaultWithoutConfigFile", R"(
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --kubeconfig=/etc/kubernetes/kubelet.conf]}
)",
     "kubelet.anonymous-auth", v1::STATUS_FAIL, "", v1::SOURCE_KIND_DEFAULT},

    {"LegacyAuthorizationDefaultIsAlwaysAllow", R"(
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet]}
)",
     "kubelet.authorization-mode", v1::STATUS_FAIL, "AlwaysAllow", v1::SOURCE_KIND_DEFAULT},

    // Blind spot 6: `--read-only-port 10255` is the value 10255, not "true".
    {"SpaceSeparatedFlagValueIsRead", R"(
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --read-only-port, "10255"]}
)",
     "kubelet.read-only-port", v1::STATUS_WARN, "10255", v1::SOURCE_KIND_FLAG},

    {"DropInOverridesConfigFile", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "readOnlyPort: 10255"}
  - {path: /etc/kubernetes/kubelet.conf.d/10-secure.conf, content: "readOnlyPort: 0"}
  - {path: /etc/kubernetes/kubelet.conf.d/ignored.yaml, content: "readOnlyPort: 9999"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml, --config-dir=/etc/kubernetes/kubelet.conf.d]}
)",
     "kubelet.read-only-port", v1::STATUS_PASS, "", v1::SOURCE_KIND_DROP_IN},

    // Component defaulting (class 1 of issue 13), as SetDefaults_KubeletConfiguration
    // (kubernetes/kubernetes pkg/kubelet/apis/config/v1beta1/defaults.go) does it: a zero
    // streamingConnectionIdleTimeout in the config file becomes 4h (kubeadm writes 0s on every
    // node); only the flag set to 0 disables it ("0 indicates no timeout", options.go); a
    // drop-in is merged after defaulting and keeps its 0 (cmd/kubelet/app/server.go,
    // mergeKubeletConfigurations).
    {"ZeroIdleTimeoutInTheConfigFileIsDefaultedTo4h", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "streamingConnectionIdleTimeout: 0s"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.streaming-idle-timeout", v1::STATUS_PASS, "4h0m0s", v1::SOURCE_KIND_DEFAULT},
    {"ZeroIdleTimeoutFlagDisablesIt", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "streamingConnectionIdleTimeout: 0s"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml, --streaming-connection-idle-timeout=0]}
)",
     "kubelet.streaming-idle-timeout", v1::STATUS_WARN, "is 0", v1::SOURCE_KIND_FLAG},
    {"ZeroIdleTimeoutInADropInStaysZero", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "kind: KubeletConfiguration"}
  - {path: /etc/kubelet.d/10.conf, content: "streamingConnectionIdleTimeout: 0s"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml, --config-dir=/etc/kubelet.d]}
)",
     "kubelet.streaming-idle-timeout", v1::STATUS_WARN, "0s", v1::SOURCE_KIND_DROP_IN},
    // Blind spot 7 still holds where nothing defaults: `0s` is a zero duration.
    {"ZeroDurationFromAFlagWithUnitFails", R"(
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --streaming-connection-idle-timeout=0s]}
)",
     "kubelet.streaming-idle-timeout", v1::STATUS_WARN, "0s", v1::SOURCE_KIND_FLAG},
    // An empty authorization.mode in the config file becomes Webhook (same function).
    {"EmptyAuthorizationModeInTheConfigFileIsWebhook", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "authorization: {mode: ''}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.authorization-mode", v1::STATUS_PASS, "Webhook", v1::SOURCE_KIND_DEFAULT},
    // kube-proxy: SetDefaults_KubeProxyConfiguration (pkg/proxy/apis/config/v1alpha1/
    // defaults.go) turns "" into 127.0.0.1:10249; kubeadm's kube-proxy ConfigMap has "".
    {"EmptyMetricsBindAddressInKubeProxyConfigIsLoopback", R"(
entries:
  - {path: /var/lib/kube-proxy/config.conf, content: "kind: KubeProxyConfiguration\nmetricsBindAddress: \"\"\n"}
processes:
  - {pid: 900, comm: kube-proxy, argv: [kube-proxy, --config=/var/lib/kube-proxy/config.conf]}
)",
     "kube-proxy.metrics-bind-address", v1::STATUS_PASS, "127.0.0.1:10249",
     v1::SOURCE_KIND_DEFAULT},
    // A port alone is kept as it is (AppendPortIfNeeded): every interface.
    {"PortOnlyMetricsBindAddressListensEverywhere", R"(
entries:
  - {path: /var/lib/kube-proxy/config.conf, content: "metricsBindAddress: ':10249'"}
processes:
  - {pid: 900, comm: kube-proxy, argv: [kube-proxy, --config=/var/lib/kube-proxy/config.conf]}
)",
     "kube-proxy.metrics-bind-address", v1::STATUS_FAIL, ":10249", v1::SOURCE_KIND_CONFIG_FILE},

    // Drop-ins without --config (class 2): RKE2 runs its kubelet with --config-dir only
    // (k3s-io/k3s pkg/daemons/agent/agent_linux.go, kubeletArgsAndConfig) and sets anonymous
    // auth and the authorization mode in 00-rke2-defaults.conf.
    {"DropInsApplyWithoutAConfigFile", R"(
entries:
  - path: /var/lib/rancher/rke2/agent/etc/kubelet.conf.d/00-rke2-defaults.conf
    content: |
      apiVersion: kubelet.config.k8s.io/v1beta1
      kind: KubeletConfiguration
      authentication: {anonymous: {enabled: false}, webhook: {enabled: true}}
      authorization: {mode: Webhook}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config-dir=/var/lib/rancher/rke2/agent/etc/kubelet.conf.d, --read-only-port=0]}
)",
     "kubelet.authorization-mode", v1::STATUS_PASS, "Webhook", v1::SOURCE_KIND_DROP_IN},
    // Without a config file the base under the drop-ins is the flag defaults: a drop-in that
    // does not set anonymous auth leaves it on.
    {"DropInsWithoutAConfigFileSitOnFlagDefaults", R"(
entries:
  - {path: /etc/kubelet.d/10.conf, content: "authorization: {mode: Webhook}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config-dir=/etc/kubelet.d]}
)",
     "kubelet.anonymous-auth", v1::STATUS_FAIL, "true", v1::SOURCE_KIND_DEFAULT},
    // The walk is filepath.WalkDir's: lexical, into subdirectories where they sort, .conf only.
    {"DropInsAreWalkedRecursivelyInLexicalOrder", R"(
entries:
  - {path: /etc/kubelet.d/10.conf, content: "authorization: {mode: AlwaysAllow}"}
  - {path: /etc/kubelet.d/20-site/30.conf, content: "authorization: {mode: Webhook}"}
  - {path: /etc/kubelet.d/20-site/40.yaml, content: "authorization: {mode: AlwaysAllow}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config-dir=/etc/kubelet.d]}
)",
     "kubelet.authorization-mode", v1::STATUS_PASS, "Webhook", v1::SOURCE_KIND_DROP_IN},
    {"ALaterTopLevelDropInWinsOverASubdirectory", R"(
entries:
  - {path: /etc/kubelet.d/10-site/1.conf, content: "authorization: {mode: Webhook}"}
  - {path: /etc/kubelet.d/90.conf, content: "authorization: {mode: AlwaysAllow}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config-dir=/etc/kubelet.d]}
)",
     "kubelet.authorization-mode", v1::STATUS_FAIL, "AlwaysAllow", v1::SOURCE_KIND_DROP_IN},

    // Absent passes where the CIS audit says so (class 3): 4.2.10 "not present, or set to
    // true"; only an explicit false fails.
    {"RotateCertificatesAbsentPassesAsTheAuditSays", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "kind: KubeletConfiguration"}
  - path: /etc/kubernetes/kubelet.conf
    content: |
      apiVersion: v1
      kind: Config
      current-context: default
      contexts: [{name: default, context: {cluster: default, user: default-auth}}]
      users: [{name: default-auth, user: {client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem, client-key: /var/lib/kubelet/pki/kubelet-client-current.pem}}]
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml, --kubeconfig=/etc/kubernetes/kubelet.conf]}
)",
     "kubelet.rotate-certificates", v1::STATUS_PASS, "not set", v1::SOURCE_KIND_DEFAULT},
    {"RotateCertificatesExplicitFalseFails", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "rotateCertificates: false"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.rotate-certificates", v1::STATUS_FAIL, "false", v1::SOURCE_KIND_CONFIG_FILE},
    // The item's note: a kubelet authenticating with an exec plugin (EKS:
    // aws-iam-authenticator, awslabs/amazon-eks-ami templates/al2/runtime/kubelet-kubeconfig)
    // has no API-server-issued client certificate to rotate.
    {"RotateCertificatesDoesNotApplyToAnExecPluginKubelet", R"(
entries:
  - {path: /etc/kubernetes/kubelet/kubelet-config.json, content: "{\"rotateCertificates\": false}"}
  - path: /var/lib/kubelet/kubeconfig
    content: |
      apiVersion: v1
      kind: Config
      clusters: [{name: kubernetes, cluster: {certificate-authority: /etc/kubernetes/pki/ca.crt, server: https://example.eks.amazonaws.com}}]
      contexts: [{name: kubelet, context: {cluster: kubernetes, user: kubelet}}]
      current-context: kubelet
      users:
      - name: kubelet
        user:
          exec:
            apiVersion: client.authentication.k8s.io/v1beta1
            command: /usr/bin/aws-iam-authenticator
            args: [token, -i, example]
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/etc/kubernetes/kubelet/kubelet-config.json, --kubeconfig=/var/lib/kubelet/kubeconfig]}
)",
     "kubelet.rotate-certificates", v1::STATUS_NOT_APPLICABLE, "aws-iam-authenticator",
     v1::SOURCE_KIND_CONFIG_FILE},

    // Blind spot 7: a pid limit of -1 is no limit, although the key is present.
    {"UnlimitedPodPidsFails", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "podPidsLimit: -1"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.pod-pids-limit", v1::STATUS_WARN, "-1", v1::SOURCE_KIND_CONFIG_FILE},

    {"MalformedConfigIsErrorNamingFileAndLine", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "authentication:\n  anonymous: [enabled\n"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.anonymous-auth", v1::STATUS_ERROR, "/var/lib/kubelet/config.yaml:"},

    {"ConfigFileNamedButMissingFailsTheFileCheck", R"(
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.config-file.mode", v1::STATUS_FAIL, "named but missing"},

    {"ConfigFileNamedButMissingIsErrorForSettings", R"(
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.anonymous-auth", v1::STATUS_ERROR, "does not exist"},

    {"AbsentComponentIsNotApplicable", "entries: []", "kubelet.anonymous-auth",
     v1::STATUS_NOT_APPLICABLE, "no kubelet process"},

    // Blind spot 1: an optional file that does not exist is not a failure.
    {"MissingOptionalFileIsNotApplicable", R"(
processes:
  - {pid: 1201, comm: kube-apiserver, argv: [kube-apiserver]}
)",
     "admin-kubeconfig.mode", v1::STATUS_NOT_APPLICABLE, "not exist"},

    // Blind spot 3: a more restrictive mode passes; setuid is a bit outside the mask.
    {"MoreRestrictiveModePasses", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, mode: "0400", content: "{}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.config-file.mode", v1::STATUS_PASS, "", v1::SOURCE_KIND_FILE_METADATA},

    {"SetuidBitFailsTheMask", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, mode: "4600", content: "{}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.config-file.mode", v1::STATUS_FAIL, "4000"},

    // Blind spot 4: the file the kubelet names wins over a candidate path that also exists.
    {"ChecksTheConfigFileTheKubeletNamesNotACandidate", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, mode: "0600", content: "{}"}
  - {path: /etc/custom/kubelet.yaml, mode: "0666", content: "{}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/etc/custom/kubelet.yaml]}
)",
     "kubelet.config-file.mode", v1::STATUS_FAIL, "/etc/custom/kubelet.yaml"},

    // Blind spot 9: the client CA named in the config file, not only by the flag.
    {"ClientCaFromConfigFileKey", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "authentication: {x509: {clientCAFile: /srv/pki/ca.crt}}"}
  - {path: /srv/pki/ca.crt, mode: "0666", content: "-----BEGIN CERTIFICATE-----"}
  - {path: /etc/kubernetes/pki/ca.crt, mode: "0644", content: "-----BEGIN CERTIFICATE-----"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.client-ca.mode", v1::STATUS_WARN, "/srv/pki/ca.crt"},

    // Blind spot 8: kube-proxy's metricsBindAddress comes from its --config file.
    {"KubeProxyMetricsAddressFromConfigFile", R"(
entries:
  - {path: /var/lib/kube-proxy/config.conf, content: "metricsBindAddress: 0.0.0.0:10249"}
processes:
  - {pid: 900, comm: kube-proxy, argv: [/usr/local/bin/kube-proxy, --config=/var/lib/kube-proxy/config.conf]}
)",
     "kube-proxy.metrics-bind-address", v1::STATUS_FAIL, "every interface",
     v1::SOURCE_KIND_CONFIG_FILE},

    // kubeadm runs kube-proxy in a pod: --config names a file of its ConfigMap volume, which
    // exists only in the pod's mount namespace (relative symlinks, as the kubelet lays them out).
    {"KubeProxyConfigIsReadInsideItsContainer", R"(
entries:
  - {path: /proc/900/root/var/lib/kube-proxy/..2026_11_27_02_00_00.1/config.conf, content: "metricsBindAddress: 0.0.0.0:10249"}
  - {path: /proc/900/root/var/lib/kube-proxy/..data, type: symlink, target: ..2026_11_27_02_00_00.1}
  - {path: /proc/900/root/var/lib/kube-proxy/config.conf, type: symlink, target: ..data/config.conf}
processes:
  - {pid: 900, comm: kube-proxy, argv: [/usr/local/bin/kube-proxy, --config=/var/lib/kube-proxy/config.conf]}
)",
     "kube-proxy.metrics-bind-address", v1::STATUS_FAIL, "every interface",
     v1::SOURCE_KIND_CONFIG_FILE},

    // An absolute symlink inside the container resolves against the container's root, not the
    // host's: the host's files of the same names (mode 0600, a stale kubeconfig and the link's
    // target) are not the ones kube-proxy reads.
    {"KubeProxyKubeconfigLinkResolvesInsideTheContainer", R"(
entries:
  - {path: /proc/900/root/var/lib/kube-proxy/config.conf, content: "clientConnection: {kubeconfig: /var/lib/kube-proxy/kubeconfig.conf}"}
  - {path: /proc/900/root/srv/data/kubeconfig.conf, mode: "0644", content: "kind: Config"}
  - {path: /proc/900/root/var/lib/kube-proxy/kubeconfig.conf, type: symlink, target: /srv/data/kubeconfig.conf}
  - {path: /srv/data/kubeconfig.conf, mode: "0600", content: "kind: Config"}
  - {path: /var/lib/kube-proxy/kubeconfig.conf, mode: "0600", content: "kind: Config"}
processes:
  - {pid: 900, comm: kube-proxy, argv: [/usr/local/bin/kube-proxy, --config=/var/lib/kube-proxy/config.conf]}
)",
     "kube-proxy.kubeconfig.mode", v1::STATUS_WARN, "", v1::SOURCE_KIND_FILE_METADATA},

    // Missing on the host and where the process would see it: an error naming the file.
    {"KubeProxyConfigMissingEverywhereIsAnError", R"(
entries:
  - {path: /proc/900/root/var/lib/kube-proxy/other.conf, content: "metricsBindAddress: 127.0.0.1:10249"}
processes:
  - {pid: 900, comm: kube-proxy, argv: [/usr/local/bin/kube-proxy, --config=/var/lib/kube-proxy/config.conf]}
)",
     "kube-proxy.metrics-bind-address", v1::STATUS_ERROR,
     "/var/lib/kube-proxy/config.conf (--config of pid 900 (kube-proxy)) does not exist"},

    {"KubeProxyDefaultMetricsAddressIsLoopback", R"(
processes:
  - {pid: 900, comm: kube-proxy, argv: [kube-proxy]}
)",
     "kube-proxy.metrics-bind-address", v1::STATUS_PASS, "", v1::SOURCE_KIND_DEFAULT},

    {"FeatureGateFromFlagOverridesConfig", R"(
entries:
  - {path: /var/lib/kubelet/config.yaml, content: "featureGates: {RotateKubeletServerCertificate: true}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml, "--feature-gates=Foo=true,RotateKubeletServerCertificate=false"]}
)",
     "kubelet.rotate-server-certificates", v1::STATUS_WARN, "false", v1::SOURCE_KIND_FLAG},

    {"OwnerFailsWhenNotRoot", R"(
users: [{name: kube, uid: 1500}]
groups: [{name: kube, gid: 1500}]
entries:
  - {path: /var/lib/kubelet/config.yaml, mode: "0600", owner: kube:kube, content: "{}"}
processes:
  - {pid: 812, comm: kubelet, argv: [kubelet, --config=/var/lib/kubelet/config.yaml]}
)",
     "kubelet.config-file.owner", v1::STATUS_FAIL, "kube:kube", v1::SOURCE_KIND_FILE_METADATA,
     /*needs_root=*/true},
};

TEST_P(EvaluatorCase, Verdict) {
  const Case& c = GetParam();
  if (c.needs_root && ::geteuid() != 0) GTEST_SKIP() << "needs root to chown fixture files";
  kspm::testing::TempDir dir;
  bool owners = false;
  ASSERT_TRUE(kspm::testing::BuildHostRoot(c.host, dir.path(), &owners).ok());
  auto catalog = Catalog::Builtin();
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const Check* check = catalog->FindCheck(c.check_id);
  ASSERT_NE(check, nullptr) << "no check " << c.check_id;
  auto host = host::MakeFsHostView(dir.path());
  ASSERT_TRUE(host.ok());
  const auto state = discovery::Discover(**host, *catalog);
  const auto result = Evaluate(
      *check,
      (check->benchmarks.contains("cis-kubernetes-1.12") ? std::string("cis-kubernetes-1.12")
                                                         : check->benchmarks.begin()->first),
      **host, state);
  EXPECT_EQ(common::StatusName(result.status()), common::StatusName(c.want))
      << "reason: " << result.reason() << "\nevidence: " << common::EvidenceSummary(result);
  EXPECT_NE(result.reason().find(c.reason_has), std::string::npos) << "reason: " << result.reason();
  if (c.source != v1::SOURCE_KIND_UNSPECIFIED) {
    ASSERT_GT(result.evidence_size(), 0);
    EXPECT_EQ(common::SourceKindName(result.evidence(0).source_kind()),
              common::SourceKindName(c.source))
        << common::EvidenceSummary(result);
  }
  // Every verdict says why.
  EXPECT_FALSE(result.reason().empty());
}

INSTANTIATE_TEST_SUITE_P(Checks, EvaluatorCase, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Meets, TypedComparisons) {
  std::string why;
  Expectation eq{Expectation::Op::kEquals, "false", {}};
  EXPECT_TRUE(Meets(eq, ValueType::kBool, "False", &why));  // Go accepts False
  EXPECT_FALSE(Meets(eq, ValueType::kBool, "no", &why));
  EXPECT_NE(why.find("not a boolean"), std::string::npos);
  Expectation ge{Expectation::Op::kAtLeast, "30", {}};
  EXPECT_TRUE(Meets(ge, ValueType::kInt, "30", &why));
  EXPECT_FALSE(Meets(ge, ValueType::kInt, "7", &why));
  Expectation sub{Expectation::Op::kSubsetOf, "", {"A", "B"}};
  EXPECT_TRUE(Meets(sub, ValueType::kList, "A,B", &why));
  EXPECT_FALSE(Meets(sub, ValueType::kList, "A,C", &why));
  EXPECT_NE(why.find("C"), std::string::npos);
  Expectation lo{Expectation::Op::kLoopback, "", {}};
  EXPECT_TRUE(Meets(lo, ValueType::kString, "127.0.0.1:10249", &why));
  EXPECT_TRUE(Meets(lo, ValueType::kString, "[::1]:10249", &why));
  EXPECT_FALSE(Meets(lo, ValueType::kString, ":10249", &why));
  EXPECT_FALSE(Meets(lo, ValueType::kString, "10.0.0.1", &why));
}

}  // namespace
}  // namespace kspm::agent::checks

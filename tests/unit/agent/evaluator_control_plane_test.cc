// The evaluator's table-driven cases for the control plane (the API server and its encryption
// configuration, the controller manager, etcd) and for Docker hosts, run by the Verdict test of
// evaluator_test.cc.
#include <gtest/gtest.h>

#include <string>

#include "kspm/v1/results.pb.h"
#include "unit/agent/evaluator_test_support.h"

namespace kspm::agent::checks {
namespace {

const Case kCases[] = {
    // kube-bench blind spot 13 reads only the line after the first `providers:`. The API server
    // uses the first entry that lists a resource: here events come first with identity, and
    // Secrets are still encrypted by the later entry.
    {"EncryptionJudgesTheEntryThatCoversSecrets", R"(
entries:
  - path: /etc/kubernetes/enc/enc.yaml
    content: |
      apiVersion: apiserver.config.k8s.io/v1
      kind: EncryptionConfiguration
      resources:
        - resources: [events]
          providers: [{identity: {}}]
        - resources: [secrets, configmaps]
          providers:
            - kms: {apiVersion: v2, name: vault, endpoint: unix:///var/run/kms.sock}
            - identity: {}
processes:
  - {pid: 1200, comm: kube-apiserver, argv: [kube-apiserver, --encryption-provider-config=/etc/kubernetes/enc/enc.yaml]}
)",
     "apiserver.encryption-providers", v1::STATUS_PASS, "written with kms",
     v1::SOURCE_KIND_CONFIG_FILE},

    // A wildcard entry before the secrets entry decides for Secrets: identity there wins.
    {"EncryptionWildcardFirstWithIdentityFails", R"(
entries:
  - path: /etc/kubernetes/enc/enc.yaml
    content: |
      kind: EncryptionConfiguration
      resources:
        - resources: ["*.*"]
          providers: [{identity: {}}, {aescbc: {keys: [{name: k, secret: c2VjcmV0}]}}]
        - resources: [secrets]
          providers: [{aescbc: {keys: [{name: k, secret: c2VjcmV0}]}}]
processes:
  - {pid: 1200, comm: kube-apiserver, argv: [kube-apiserver, --encryption-provider-config=/etc/kubernetes/enc/enc.yaml]}
)",
     "apiserver.encryption-providers", v1::STATUS_WARN, "is identity", v1::SOURCE_KIND_CONFIG_FILE},

    {"EncryptionWithoutSecretsListedFails", R"(
entries:
  - path: /etc/kubernetes/enc/enc.yaml
    content: |
      kind: EncryptionConfiguration
      resources:
        - resources: [configmaps]
          providers: [{secretbox: {keys: [{name: k, secret: c2VjcmV0}]}}]
processes:
  - {pid: 1200, comm: kube-apiserver, argv: [kube-apiserver, --encryption-provider-config=/etc/kubernetes/enc/enc.yaml]}
)",
     "apiserver.encryption-providers", v1::STATUS_WARN, "lists secrets"},

    {"EncryptionConfigThatDoesNotParseIsAnError", R"(
entries:
  - {path: /etc/kubernetes/enc/enc.yaml, content: "resources: [ {"}
processes:
  - {pid: 1200, comm: kube-apiserver, argv: [kube-apiserver, --encryption-provider-config=/etc/kubernetes/enc/enc.yaml]}
)",
     "apiserver.encryption-providers", v1::STATUS_ERROR, "/etc/kubernetes/enc/enc.yaml"},

    // kube-bench passes 1.3.7 when --bind-address is absent; the real default is 0.0.0.0.
    {"ControllerManagerDefaultBindAddressFails", R"(
processes:
  - {pid: 1190, comm: kube-controller, argv: [kube-controller-manager]}
)",
     "controller-manager.bind-address", v1::STATUS_FAIL, "every interface",
     v1::SOURCE_KIND_DEFAULT},

    {"EtcdSettingFromEnvironment", R"(
processes:
  - {pid: 1188, comm: etcd, argv: [etcd], env: [ETCD_CLIENT_CERT_AUTH=true]}
)",
     "etcd.client-cert-auth", v1::STATUS_PASS, "", v1::SOURCE_KIND_ENVIRONMENT},

    // etcd ignores flags and ETCD_* variables when --config-file is given.
    {"EtcdConfigFileReplacesFlags", R"(
entries:
  - path: /etc/etcd/etcd.yaml
    content: |
      client-transport-security:
        client-cert-auth: false
processes:
  - {pid: 1188, comm: etcd, argv: [etcd, --config-file=/etc/etcd/etcd.yaml, --client-cert-auth=true]}
)",
     "etcd.client-cert-auth", v1::STATUS_FAIL, "", v1::SOURCE_KIND_CONFIG_FILE},

    {"ApiServerFlagsFromStaticPodManifestWhenNoProcessIsVisible", R"(
entries:
  - path: /etc/kubernetes/manifests/kube-apiserver.yaml
    content: |
      spec:
        containers:
          - name: kube-apiserver
            command: [kube-apiserver, --profiling=false]
)",
     "apiserver.profiling", v1::STATUS_PASS, "", v1::SOURCE_KIND_MANIFEST},

    {"TruncatedCommandLineIsError", R"(
processes:
  - {pid: 1201, comm: kube-apiserver, argv: [kube-apiserver, --authorization-mode=Node], truncated: true}
)",
     "apiserver.profiling", v1::STATUS_ERROR, "truncated"},

    {"DockerSocketMustBeOwnedByDockerGroup", R"(
groups: [{name: docker, gid: 998}]
entries:
  - {path: /run/docker.sock, type: socket, mode: "0660", owner: root:docker}
  - {path: /var/run, type: symlink, target: /run}
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd, -H, "fd://"]}
)",
     "docker.sock.owner", v1::STATUS_PASS, "", v1::SOURCE_KIND_FILE_METADATA, true},
    // Docker host: daemon.json is read as the config file of dockerd.
    {"DockerEmptyInsecureRegistryListIsNone", R"(
entries:
  - {path: /etc/docker/daemon.json, content: '{"insecure-registries": [], "icc": false}'}
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd]}
)",
     "docker.insecure-registries", v1::STATUS_PASS, "not set"},

    {"DockerRepeatedInsecureRegistryFlagsAccumulate", R"(
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd, --insecure-registry, a.local:5000, --insecure-registry=b.local]}
)",
     "docker.insecure-registries", v1::STATUS_FAIL, "a.local:5000,b.local", v1::SOURCE_KIND_FLAG},

    {"DockerBaseSizeInDaemonJsonList", R"(
entries:
  - {path: /etc/docker/daemon.json, content: '{"storage-opts": ["dm.thinpooldev=/dev/x", "dm.basesize=20G"]}'}
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd]}
)",
     "docker.base-device-size", v1::STATUS_FAIL, "20G", v1::SOURCE_KIND_CONFIG_FILE},

    {"DockerTlsVerifyDoesNotApplyToUnixSocketOnly", R"(
entries:
  - {path: /etc/docker/daemon.json, content: '{"hosts": ["unix:///var/run/docker.sock"]}'}
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd]}
)",
     "docker.tls-verify", v1::STATUS_NOT_APPLICABLE, "applies only when"},

    {"DockerTcpListenerWithoutTlsVerifyFails", R"(
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd, -H, "tcp://0.0.0.0:2375", -H, "unix:///var/run/docker.sock"]}
)",
     "docker.tls-verify", v1::STATUS_FAIL, "", v1::SOURCE_KIND_DEFAULT},

    // The short flags dockerd accepts (-l for --log-level, -s for --storage-driver) are read.
    {"DockerShortLogLevelFlagIsRead", R"(
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd, -l, debug]}
)",
     "docker.log-level", v1::STATUS_FAIL, "debug", v1::SOURCE_KIND_FLAG},

    {"DockerShortStorageDriverFlagIsRead", R"(
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd, -s, aufs]}
)",
     "docker.storage-driver", v1::STATUS_FAIL, "aufs", v1::SOURCE_KIND_FLAG},

    // dockerd treats an empty cgroup-parent as unset.
    {"DockerEmptyCgroupParentIsNotSet", R"(
entries:
  - {path: /etc/docker/daemon.json, content: '{"cgroup-parent": ""}'}
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd]}
)",
     "docker.cgroup-parent", v1::STATUS_PASS, "not set"},

    // CIS 1.2.17: the audit asks for the flag; absent is "not set", not a made-up default of 0
    // (Kubernetes 1.36 defaults it to 366 days, which the audit does not accept either).
    {"ApiServerAuditLogMaxAgeAbsentIsNotSet", R"(
processes:
  - {pid: 900, comm: kube-apiserver, argv: [kube-apiserver, --audit-log-path=/var/log/a.log]}
)",
     "apiserver.audit-log-maxage", v1::STATUS_FAIL, "--audit-log-maxage is not set"},

    {"DockerIccFromDaemonJson", R"(
entries:
  - {path: /etc/docker/daemon.json, content: '{"icc": false}'}
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd]}
)",
     "docker.icc", v1::STATUS_PASS, "", v1::SOURCE_KIND_CONFIG_FILE},

    // Found by the fuzzer: a number JSON's grammar allows but no daemon can hold.
    {"DockerOverflowingNumberIsErrorNotCrash", R"(
entries:
  - {path: /etc/docker/daemon.json, content: '{"icc": 5E555555555555}'}
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd]}
)",
     "docker.icc", v1::STATUS_ERROR, "overflow"},

    {"DockerMalformedDaemonJsonIsError", R"(
entries:
  - {path: /etc/docker/daemon.json, content: '{"icc": false,, }'}
processes:
  - {pid: 700, comm: dockerd, argv: [/usr/bin/dockerd]}
)",
     "docker.icc", v1::STATUS_ERROR, "/etc/docker/daemon.json:1:"},
};

INSTANTIATE_TEST_SUITE_P(Checks, EvaluatorCase, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kspm::agent::checks

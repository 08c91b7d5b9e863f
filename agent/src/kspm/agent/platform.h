#pragma once

// Which platform a node belongs to, from what the node itself shows, and the benchmark that
// platform's users are audited against. Every decision says why, in words that name the file or
// process that decided it.
#include <string>

#include "kspm/agent/checks/catalog.h"
#include "kspm/agent/discovery/discovery.h"
#include "kspm/agent/host/host_view.h"

namespace kspm::agent {

struct Platform {
  std::string name;       // eks, gke, aks, rke2, k3s, kubernetes, or none (no kubelet)
  std::string benchmark;  // the benchmark to judge the node by
  std::string why;        // what decided it
  std::string version;    // the node's Kubernetes minor version (v1.31), when known
};

// The Kubernetes version a node runs, read without running anything: kind's /kind/version, the
// image tag of a static pod manifest, or the kubelet's dpkg package. Zero when none says.
struct KubernetesVersion {
  int major = 0;
  int minor = 0;
  std::string where;
};
KubernetesVersion DetectKubernetesVersion(const host::HostView& host,
                                          const discovery::HostState& state);

// Rules, first match wins:
//   eks   the kubelet's kubeconfig authenticates with aws-iam-authenticator or `aws eks
//         get-token`, or /etc/eks exists (the EKS AMIs' bootstrap and nodeadm files)
//   gke   the kubelet runs from /home/kubernetes (COS and GKE Ubuntu images)
//   aks   /etc/kubernetes/azure.json exists
//   rke2  the kubelet's binary or drop-ins live under /var/lib/rancher/rke2
//   k3s   the kubelet runs inside `k3s server` or `k3s agent`
//   kubernetes  any other kubelet (kubeadm, kind, hand-made)
// The benchmark is the platform's when the catalogue has it, else CIS Kubernetes (and `why`
// says the platform benchmark is not in the catalogue); among a platform's versions, the one
// covering the node's Kubernetes version (1.12 for 1.32+, 1.11 for 1.29-1.31), the newest when
// the version is unknown.
Platform DetectPlatform(const host::HostView& host, const discovery::HostState& state,
                        const checks::Catalog& catalog);

}  // namespace kspm::agent

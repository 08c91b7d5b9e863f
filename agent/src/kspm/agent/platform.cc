#include "kspm/agent/platform.h"

#include <algorithm>

namespace kspm::agent {
namespace {

// The benchmark of each platform, newest first; the first one the catalogue has is used.
const std::map<std::string, std::vector<std::string>>& PlatformBenchmarks() {
  static const std::map<std::string, std::vector<std::string>> kBenchmarks = {
      {"eks", {"cis-eks-1.8"}},
      {"gke", {"cis-gke-1.9"}},
      {"aks", {"cis-aks-1.8"}},
      {"rke2", {}},
      {"k3s", {}},
      {"kubernetes", {}},
  };
  return kBenchmarks;
}

constexpr const char* kDefaultBenchmark = "cis-kubernetes-1.12";

bool Exists(const host::HostView& host, const std::string& path) { return host.Stat(path).ok(); }

}  // namespace

Platform DetectPlatform(const host::HostView& host, const discovery::HostState& state,
                        const checks::Catalog& catalog) {
  Platform p;
  const auto it = state.components.find("kubelet");
  if (it == state.components.end() || !it->second.present) {
    p.name = "none";
    p.benchmark = kDefaultBenchmark;
    p.why = "no kubelet runs on this node";
    return p;
  }
  const discovery::Component& kubelet = it->second;
  const std::string binary = kubelet.argv.empty() ? "" : kubelet.argv[0];
  std::string kubeconfig_text;
  std::string kubeconfig_path;
  if (const auto f = kubelet.files.find("kubeconfig"); f != kubelet.files.end()) {
    kubeconfig_path = f->second.path;
    if (auto text = host.ReadFile(f->second.path); text.ok()) kubeconfig_text = *text;
  }
  bool rke2_dropins = false;
  for (const auto& layer : kubelet.layers) {
    rke2_dropins = rke2_dropins || layer.path.find("/var/lib/rancher/rke2/") != std::string::npos;
  }

  if (kubeconfig_text.find("aws-iam-authenticator") != std::string::npos ||
      (kubeconfig_text.find("eks") != std::string::npos &&
       kubeconfig_text.find("get-token") != std::string::npos)) {
    p = {"eks", "",
         "the kubelet's kubeconfig " + kubeconfig_path +
             " authenticates with AWS IAM (an EKS node)"};
  } else if (Exists(host, "/etc/eks")) {
    p = {"eks", "", "/etc/eks exists (the EKS AMI's bootstrap files)"};
  } else if (binary.starts_with("/home/kubernetes/")) {
    p = {"gke", "", "the kubelet runs from " + binary + " (a GKE node image)"};
  } else if (Exists(host, "/etc/kubernetes/azure.json")) {
    p = {"aks", "", "/etc/kubernetes/azure.json exists (an AKS node)"};
  } else if (binary.find("/rancher/rke2/") != std::string::npos || rke2_dropins) {
    p = {"rke2", "", "the kubelet runs from RKE2's data directory (/var/lib/rancher/rke2)"};
  } else if (kubelet.flags_source.find("k3s") != std::string::npos) {
    p = {"k3s", "", "the kubelet runs inside " + kubelet.flags_source};
  } else {
    p = {"kubernetes", "", "a kubelet with no platform's marks (kubeadm, kind or hand-made)"};
  }
  const auto known = catalog.Benchmarks();
  for (const auto& b : PlatformBenchmarks().at(p.name)) {
    if (std::find(known.begin(), known.end(), b) != known.end()) {
      p.benchmark = b;
      return p;
    }
  }
  p.benchmark = kDefaultBenchmark;
  if (!PlatformBenchmarks().at(p.name).empty()) {
    p.why += "; its platform benchmark is not in the catalogue, so " + p.benchmark;
  }
  return p;
}

}  // namespace kspm::agent

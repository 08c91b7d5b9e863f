#include "kspm/agent/platform.h"

#include <algorithm>
#include <regex>

namespace kspm::agent {
namespace {

// A benchmark and the oldest Kubernetes minor version it covers.
struct Candidate {
  std::string benchmark;
  int from_minor = 0;
};

// The benchmarks of each platform, newest first: the first the catalogue has whose version
// range covers the node's Kubernetes (any, when the version is unknown) is used. CIS Kubernetes
// 1.12 covers 1.32 and later, 1.11 covers 1.29-1.31 (kube-bench cfg/config.yaml version_mapping
// @ a73ce378418c71c5861e6963753f50dec3badadf); older clusters get the oldest kspm has.
const std::map<std::string, std::vector<Candidate>>& PlatformBenchmarks() {
  static const std::map<std::string, std::vector<Candidate>> kBenchmarks = {
      {"eks", {{"cis-eks-1.8"}}},
      {"gke", {{"cis-gke-1.9", 31}, {"cis-gke-1.6", 0}}},
      {"aks", {{"cis-aks-1.8"}}},
      {"rke2", {{"rke2-cis-1.12", 32}, {"rke2-cis-1.11", 29}}},
      {"k3s", {{"k3s-cis-1.12", 32}, {"k3s-cis-1.11", 29}}},
      {"kubernetes", {}},
  };
  return kBenchmarks;
}

const std::vector<Candidate>& CisKubernetes() {
  static const std::vector<Candidate> kCis = {{"cis-kubernetes-1.12", 32},
                                              {"cis-kubernetes-1.11", 29}};
  return kCis;
}

bool Exists(const host::HostView& host, const std::string& path) { return host.Stat(path).ok(); }

}  // namespace

KubernetesVersion DetectKubernetesVersion(const host::HostView& host,
                                          const discovery::HostState& state) {
  KubernetesVersion v;
  auto parse = [&v](const std::string& text, const std::regex& re, const std::string& where) {
    std::smatch m;
    if (!std::regex_search(text, m, re)) return false;
    try {
      v.major = std::stoi(m[1].str());
      v.minor = std::stoi(m[2].str());
    } catch (const std::exception&) {
      return false;
    }
    if (v.major != 1 || v.minor <= 0 || v.minor > 999) return false;
    v.where = where;
    return true;
  };
  // kind writes the node image's Kubernetes version in /kind/version.
  if (auto text = host.ReadFile("/kind/version"); text.ok()) {
    if (parse(*text, std::regex(R"(^v(\d+)\.(\d+)\.)"), "/kind/version")) return v;
  }
  // A control-plane or kube-proxy static pod's image tag (kubeadm, RKE2's hardened images).
  for (const auto& [name, c] : state.components) {
    if (c.manifest_path.empty()) continue;
    auto text = host.ReadFile(c.manifest_path);
    if (!text.ok()) continue;
    if (parse(*text, std::regex(R"(image:\s*\S*kube[a-z-]*:v(\d+)\.(\d+)\.)"),
              "the image tag in " + c.manifest_path)) {
      return v;
    }
  }
  // The kubelet package of a Debian-family node (pkgs.k8s.io's deb): its stanza's Version.
  if (auto text = host.ReadFile("/var/lib/dpkg/status"); text.ok()) {
    const size_t at = text->find("Package: kubelet\n");
    if (at != std::string::npos && (at == 0 || (*text)[at - 1] == '\n')) {
      const size_t end = std::min(text->find("\n\n", at), text->size());
      const size_t version = text->find("\nVersion: ", at);
      if (version != std::string::npos && version < end &&
          parse(text->substr(version, 40), std::regex(R"(^\nVersion: (\d+)\.(\d+)\.)"),
                "the kubelet package in /var/lib/dpkg/status")) {
        return v;
      }
    }
  }
  return {};
}

Platform DetectPlatform(const host::HostView& host, const discovery::HostState& state,
                        const checks::Catalog& catalog) {
  Platform p;
  const auto it = state.components.find("kubelet");
  if (it == state.components.end() || !it->second.present) {
    p.name = "none";
    p.benchmark = CisKubernetes().front().benchmark;
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
    p = {
        "eks", "",
        "the kubelet's kubeconfig " + kubeconfig_path + " authenticates with AWS IAM (an EKS node)",
        ""};
  } else if (Exists(host, "/etc/eks")) {
    p = {"eks", "", "/etc/eks exists (the EKS AMI's bootstrap files)", ""};
  } else if (binary.starts_with("/home/kubernetes/")) {
    p = {"gke", "", "the kubelet runs from " + binary + " (a GKE node image)", ""};
  } else if (Exists(host, "/etc/kubernetes/azure.json")) {
    p = {"aks", "", "/etc/kubernetes/azure.json exists (an AKS node)", ""};
  } else if (binary.find("/rancher/rke2/") != std::string::npos || rke2_dropins) {
    p = {"rke2", "", "the kubelet runs from RKE2's data directory (/var/lib/rancher/rke2)", ""};
  } else if (kubelet.flags_source.find("k3s") != std::string::npos) {
    p = {"k3s", "", "the kubelet runs inside " + kubelet.flags_source, ""};
  } else {
    p = {"kubernetes", "", "a kubelet with no platform's marks (kubeadm, kind or hand-made)", ""};
  }
  const KubernetesVersion version = DetectKubernetesVersion(host, state);
  if (version.minor > 0) {
    p.version = "v1." + std::to_string(version.minor);
    p.why += "; Kubernetes " + p.version + " (" + version.where + ")";
  }
  const auto known = catalog.Benchmarks();
  auto choose = [&](const std::vector<Candidate>& candidates) {
    std::string oldest;
    for (const auto& c : candidates) {
      if (std::find(known.begin(), known.end(), c.benchmark) == known.end()) continue;
      if (version.minor == 0 || version.minor >= c.from_minor) return c.benchmark;
      oldest = c.benchmark;
    }
    return oldest;
  };
  p.benchmark = choose(PlatformBenchmarks().at(p.name));
  if (!p.benchmark.empty()) return p;
  p.benchmark = choose(CisKubernetes());
  if (p.benchmark.empty()) p.benchmark = CisKubernetes().front().benchmark;
  if (!PlatformBenchmarks().at(p.name).empty()) {
    p.why += "; its platform benchmark is not in the catalogue, so " + p.benchmark;
  } else if (version.minor > 0 && version.minor < CisKubernetes().back().from_minor) {
    p.why += ", older than any benchmark kspm has: " + p.benchmark + " is the closest";
  }
  return p;
}

}  // namespace kspm::agent

#include "kspm/agent/platform.h"

#include <algorithm>

#include "kspm/common/strings.h"

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

namespace {

// `MAJOR.MINOR.` at the start of `text` (after an optional `v`), as Kubernetes versions and
// their package versions are written. No regular expression: the text comes from host files of
// up to 4 MiB, and libstdc++'s regex recurses per character.
bool ParseMinor(std::string_view text, KubernetesVersion& v) {
  if (text.starts_with("v")) text.remove_prefix(1);
  int parts[2] = {0, 0};
  for (int& part : parts) {
    size_t n = 0;
    while (n < text.size() && n < 4 && text[n] >= '0' && text[n] <= '9') {
      part = part * 10 + (text[n] - '0');
      ++n;
    }
    if (n == 0 || n >= text.size() || text[n] != '.') return false;
    text.remove_prefix(n + 1);
  }
  if (parts[0] != 1 || parts[1] <= 0) return false;
  v.major = parts[0];
  v.minor = parts[1];
  return true;
}

}  // namespace

KubernetesVersion DetectKubernetesVersion(const host::HostView& host,
                                          const discovery::HostState& state) {
  KubernetesVersion v;
  // kind writes the node image's Kubernetes version in /kind/version.
  if (auto text = host.ReadFile("/kind/version"); text.ok() && ParseMinor(*text, v)) {
    v.where = "/kind/version";
    return v;
  }
  // A control-plane or kube-proxy static pod's image tag (kubeadm's registry.k8s.io/kube-*,
  // RKE2's rancher/hardened-kubernetes).
  for (const auto& [name, c] : state.components) {
    if (c.manifest_path.empty()) continue;
    auto text = host.ReadFile(c.manifest_path);
    if (!text.ok()) continue;
    for (std::string_view line : common::Split(*text, '\n')) {
      const size_t at = line.find("image:");
      if (at == std::string_view::npos) continue;
      std::string_view image = common::Trim(line.substr(at + 6));
      while (!image.empty() && (image.front() == '"' || image.front() == '\'')) {
        image.remove_prefix(1);
      }
      const size_t colon = image.rfind(':');
      if (colon == std::string_view::npos ||
          image.substr(0, colon).find("kube") == std::string_view::npos) {
        continue;
      }
      if (ParseMinor(image.substr(colon + 1), v)) {
        v.where = "the image tag in " + c.manifest_path;
        return v;
      }
    }
  }
  // The kubelet package of a Debian-family node (pkgs.k8s.io's deb): its stanza's Version.
  if (auto text = host.ReadFile("/var/lib/dpkg/status"); text.ok()) {
    const size_t at = text->find("Package: kubelet\n");
    if (at != std::string::npos && (at == 0 || (*text)[at - 1] == '\n')) {
      const size_t end = std::min(text->find("\n\n", at), text->size());
      const size_t version = text->find("\nVersion: ", at);
      if (version != std::string::npos && version < end &&
          ParseMinor(std::string_view(*text).substr(version + 10, 40), v)) {
        v.where = "the kubelet package in /var/lib/dpkg/status";
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

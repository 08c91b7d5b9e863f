// Pod-spec evaluators (CIS 5.2.x, 5.4.1, 5.6.2, 5.6.3), one finding per workload at its
// controller. Containers, init containers and ephemeral containers are all read; fields that
// exist at both levels (runAsUser, runAsNonRoot, seccompProfile, windowsOptions) take the
// container's value over the pod's, as the kubelet does.
#include <algorithm>
#include <cctype>
#include <set>

#include "kspm/collector/cluster/checks_internal.h"
#include "kspm/collector/k8s/credentials.h"
#include "kspm/common/strings.h"

namespace kspm::collector::cluster::internal {
namespace {

// Evidence entries kept for a passing workload: enough to show what was read, bounded so that
// pods with many containers do not make every result large (a cluster has ~25 results per
// workload, most of them passing).
constexpr size_t kMaxPassEvidence = 2;

struct Container {
  const k8s::Value* spec;
  std::string name;
  std::string path;  // e.g. `spec.template.spec.containers[app]`
};

std::vector<Container> Containers(const Workload& w) {
  std::vector<Container> out;
  for (const char* list : {"initContainers", "containers", "ephemeralContainers"}) {
    const auto* items = Field(*w.spec, list);
    if (items == nullptr || !items->is_array()) continue;
    for (const auto& c : *items) {
      const std::string name = StrField(c, "name");
      out.push_back({&c, name, w.spec_path + "." + list + "[" + name + "]"});
    }
  }
  return out;
}

// A value read from a path, with the path it came from (or where it would be).
struct Read {
  const k8s::Value* value = nullptr;
  std::string path;
  std::optional<std::string> Text() const {
    return value ? std::optional(ValueText(*value)) : std::nullopt;
  }
  bool IsTrue() const { return value && value->is_boolean() && value->get<bool>(); }
  bool IsFalse() const { return value && value->is_boolean() && !value->get<bool>(); }
};

const k8s::Value* SecurityContext(const k8s::Value& j) { return Field(j, "securityContext"); }

Read ContainerField(const Container& c, const char* field) {
  Read r{nullptr, c.path + ".securityContext." + field};
  if (const auto* sc = SecurityContext(*c.spec)) r.value = Field(*sc, field);
  return r;
}

// The pod's own securityContext setting, with its path.
Read PodField(const Workload& w, const char* field) {
  Read r{nullptr, w.spec_path + ".securityContext." + field};
  if (const auto* sc = SecurityContext(*w.spec)) r.value = Field(*sc, field);
  return r;
}

// `judge(read, container)` for the pod's setting (container "") and then each container's.
template <typename Judge>
void EachLevel(const Workload& w, const std::vector<Container>& cs, const char* field,
               Judge judge) {
  judge(PodField(w, field), std::string());
  for (const auto& c : cs) judge(ContainerField(c, field), c.name);
}

// Container setting over pod setting; the path names where the value was found.
Read Effective(const Workload& w, const Container& c, const char* field) {
  Read r = ContainerField(c, field);
  if (r.value) return r;
  if (Read pod = PodField(w, field); pod.value) return pod;
  return r;
}

// A container's capabilities.add or .drop as written.
std::vector<std::string> WrittenCapabilities(const Container& c, const char* which) {
  std::vector<std::string> out;
  const auto* sc = SecurityContext(*c.spec);
  const auto* caps = sc ? Field(*sc, "capabilities") : nullptr;
  const auto* list = caps ? Field(*caps, which) : nullptr;
  if (list == nullptr || !list->is_array()) return out;
  for (const auto& v : *list) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

// The same names as the runtimes compare them: containerd and CRI-O upper-case each name and
// accept it with or without `CAP_`, so `drop: [all]` drops every capability and `net_raw` is
// NET_RAW.
std::vector<std::string> Capabilities(const Container& c, const char* which) {
  std::vector<std::string> out = WrittenCapabilities(c, which);
  for (auto& cap : out) {
    std::transform(cap.begin(), cap.end(), cap.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
    if (cap.starts_with("CAP_")) cap = cap.substr(4);
  }
  return out;
}

bool Has(const std::vector<std::string>& list, std::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

std::string ListText(const std::vector<std::string>& list) {
  return "[" + common::Join(list, ", ") + "]";
}

// What one rule found in one workload.
struct Outcome {
  std::vector<v1::Evidence> evidence;
  std::vector<std::string> violations;  // one line each
  std::set<std::string> containers;     // containers at fault ("" for pod-level faults)
  bool not_applicable = false;
  std::string na_reason;
  void Fail(const std::string& container, std::string line) {
    containers.insert(container);
    violations.push_back(std::move(line));
  }
};

using Rule = void (*)(const Workload&, const std::vector<Container>&, Outcome&);

void PodFlag(const Workload& w, const char* field, Outcome& o) {
  const auto* v = Field(*w.spec, field);
  o.evidence.push_back(ApiEvidence(w.spec_path + "." + field, w.evidence_source,
                                   v ? std::optional(ValueText(*v)) : std::nullopt));
  if (v && v->is_boolean() && v->get<bool>()) o.Fail("", std::string(field) + " is true");
}

void Privileged(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    const Read r = ContainerField(c, "privileged");
    o.evidence.push_back(ApiEvidence(r.path, w.evidence_source, r.Text()));
    if (r.IsTrue()) o.Fail(c.name, "container " + c.name + " is privileged");
  }
}

void HostPid(const Workload& w, const std::vector<Container>&, Outcome& o) {
  PodFlag(w, "hostPID", o);
}
void HostIpc(const Workload& w, const std::vector<Container>&, Outcome& o) {
  PodFlag(w, "hostIPC", o);
}
void HostNetwork(const Workload& w, const std::vector<Container>&, Outcome& o) {
  PodFlag(w, "hostNetwork", o);
}

void PrivilegeEscalation(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    const Read r = ContainerField(c, "allowPrivilegeEscalation");
    o.evidence.push_back(ApiEvidence(r.path, w.evidence_source, r.Text()));
    if (r.IsFalse()) continue;
    std::string line = "container " + c.name + ": allowPrivilegeEscalation is " +
                       (r.value ? ValueText(*r.value) : "not set (the default allows it)");
    if (ContainerField(c, "privileged").IsTrue()) line += "; privileged implies it";
    o.Fail(c.name, std::move(line));
  }
}

bool IsWindows(const Workload& w) {
  const auto* os = Field(*w.spec, "os");
  return os && StrField(*os, "name") == "windows";
}

void RunAsRoot(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  if (IsWindows(w)) {
    o.not_applicable = true;
    o.na_reason = "a Windows pod (spec.os.name windows): runAsUser does not apply";
    return;
  }
  for (const auto& c : cs) {
    const Read non_root = Effective(w, c, "runAsNonRoot");
    const Read user = Effective(w, c, "runAsUser");
    o.evidence.push_back(ApiEvidence(non_root.path, w.evidence_source, non_root.Text()));
    o.evidence.push_back(ApiEvidence(user.path, w.evidence_source, user.Text()));
    const bool uid_zero =
        user.value && user.value->is_number_integer() && user.value->get<int64_t>() == 0;
    const bool uid_set_non_zero =
        user.value && user.value->is_number_integer() && user.value->get<int64_t>() != 0;
    if (uid_zero) {
      o.Fail(c.name, "container " + c.name + " runs as UID 0 (" + user.path + ")");
    } else if (!non_root.IsTrue() && !uid_set_non_zero) {
      o.Fail(c.name, "container " + c.name +
                         ": runAsNonRoot is not true and runAsUser is not set, so the image's "
                         "user (often root) applies");
    }
  }
}

// A container's capabilities.add and .drop, each recorded as evidence (unset when empty).
std::pair<std::vector<std::string>, std::vector<std::string>> RecordCapabilities(const Workload& w,
                                                                                 const Container& c,
                                                                                 Outcome& o) {
  std::pair<std::vector<std::string>, std::vector<std::string>> lists{Capabilities(c, "add"),
                                                                      Capabilities(c, "drop")};
  const std::string base = c.path + ".securityContext.capabilities.";
  for (const char* field : {"add", "drop"}) {
    const auto written = WrittenCapabilities(c, field);
    o.evidence.push_back(
        ApiEvidence(base + field, w.evidence_source,
                    written.empty() ? std::nullopt : std::optional(ListText(written))));
  }
  return lists;
}

void NetRaw(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    const auto [add, drop] = RecordCapabilities(w, c, o);
    if (ContainerField(c, "privileged").IsTrue()) {
      o.Fail(c.name, "container " + c.name + " is privileged and so holds NET_RAW");
    } else if (Has(add, "NET_RAW") || Has(add, "ALL")) {
      o.Fail(c.name, "container " + c.name + " adds " + (Has(add, "ALL") ? "ALL" : "NET_RAW"));
    } else if (!Has(drop, "NET_RAW") && !Has(drop, "ALL")) {
      o.Fail(c.name,
             "container " + c.name + " does not drop NET_RAW (runtimes grant it by default)");
    }
  }
}

void CapabilitiesRule(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    const auto [add, drop] = RecordCapabilities(w, c, o);
    std::vector<std::string> extra;
    for (const auto& cap : add) {
      if (cap != "NET_BIND_SERVICE") extra.push_back(cap);
    }
    std::vector<std::string> problems;
    if (!extra.empty()) problems.push_back("adds " + common::Join(extra, ", "));
    if (!Has(drop, "ALL")) problems.push_back("does not drop ALL");
    if (!problems.empty()) {
      o.Fail(c.name, "container " + c.name + " " + common::Join(problems, " and "));
    }
  }
}

void WindowsHostProcess(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  auto host_process = [](const k8s::Value* sc) -> const k8s::Value* {
    const auto* win = sc ? Field(*sc, "windowsOptions") : nullptr;
    return win ? Field(*win, "hostProcess") : nullptr;
  };
  const auto* pod = host_process(SecurityContext(*w.spec));
  const std::string pod_path = w.spec_path + ".securityContext.windowsOptions.hostProcess";
  o.evidence.push_back(ApiEvidence(pod_path, w.evidence_source,
                                   pod ? std::optional(ValueText(*pod)) : std::nullopt));
  if (pod && pod->is_boolean() && pod->get<bool>()) o.Fail("", "the pod runs as HostProcess");
  for (const auto& c : cs) {
    const auto* v = host_process(SecurityContext(*c.spec));
    if (v == nullptr) continue;
    o.evidence.push_back(ApiEvidence(c.path + ".securityContext.windowsOptions.hostProcess",
                                     w.evidence_source, ValueText(*v)));
    if (v->is_boolean() && v->get<bool>()) {
      o.Fail(c.name, "container " + c.name + " runs as HostProcess");
    }
  }
}

void HostPath(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  static const std::set<std::string> kSockets = {"/var/run/docker.sock",
                                                 "/run/docker.sock",
                                                 "/run/containerd/containerd.sock",
                                                 "/var/run/containerd/containerd.sock",
                                                 "/var/run/crio/crio.sock",
                                                 "/run/crio/crio.sock"};
  const auto* volumes = Field(*w.spec, "volumes");
  size_t host_paths = 0;
  if (volumes && volumes->is_array()) {
    for (const auto& v : *volumes) {
      const auto* hp = Field(v, "hostPath");
      if (hp == nullptr) continue;
      ++host_paths;
      const std::string vol = StrField(v, "name");
      const std::string path = StrField(*hp, "path");
      o.evidence.push_back(ApiEvidence(w.spec_path + ".volumes[" + vol + "].hostPath.path",
                                       w.evidence_source, path));
      // Which containers mount it, and whether writable.
      std::vector<std::string> mounts;
      std::string at_fault;
      bool writable = false;
      for (const auto& c : cs) {
        const auto* vms = Field(*c.spec, "volumeMounts");
        if (vms == nullptr || !vms->is_array()) continue;
        for (const auto& m : *vms) {
          if (StrField(m, "name") != vol) continue;
          const auto* ro = Field(m, "readOnly");
          const bool read_only = ro && ro->is_boolean() && ro->get<bool>();
          writable = writable || !read_only;
          mounts.push_back(c.name + (read_only ? " (read-only)" : " (writable)"));
          at_fault = c.name;
        }
      }
      std::string line = "volume " + vol + " mounts host path " + path;
      if (kSockets.contains(path)) line += ", a container runtime socket (control of the node)";
      if (!mounts.empty()) line += " into " + common::Join(mounts, ", ");
      o.Fail(mounts.size() == 1 ? at_fault : "", std::move(line));
      (void)writable;
    }
  }
  if (host_paths == 0) {
    o.evidence.push_back(
        ApiEvidence(w.spec_path + ".volumes[].hostPath", w.evidence_source, std::nullopt));
  }
}

// The Pod Security Standards controls, as the pod-security admission plugin judges them.

// Baseline: /proc is masked (procMount unset or Default).
void ProcMount(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    const Read r = ContainerField(c, "procMount");
    o.evidence.push_back(ApiEvidence(r.path, w.evidence_source, r.Text()));
    if (r.value && !(r.value->is_string() && r.value->get<std::string>() == "Default")) {
      o.Fail(c.name, "container " + c.name + " sets procMount " + ValueText(*r.value) +
                         " (an unmasked /proc)");
    }
  }
}

// Baseline: SELinux type unset or one of the container types; user and role unset.
void SeLinux(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  static const std::set<std::string> kTypes = {"container_t", "container_init_t", "container_kvm_t",
                                               "container_engine_t"};
  const auto judge = [&](const k8s::Value* options, const std::string& path,
                         const std::string& container) {
    if (options == nullptr) return;
    o.evidence.push_back(ApiEvidence(path, w.evidence_source, ValueText(*options)));
    const std::string who = container.empty() ? "the pod" : "container " + container;
    const std::string type = StrField(*options, "type");
    if (!type.empty() && !kTypes.contains(type)) {
      o.Fail(container, who + " sets SELinux type " + type);
    }
    for (const char* key : {"user", "role"}) {
      if (!StrField(*options, key).empty()) {
        o.Fail(container, who + " sets SELinux " + key + " " + StrField(*options, key));
      }
    }
  };
  EachLevel(w, cs, "seLinuxOptions", [&](const Read& r, const std::string& container) {
    judge(r.value, r.path, container);
  });
  if (o.evidence.empty()) {
    o.evidence.push_back(ApiEvidence(w.spec_path + ".securityContext.seLinuxOptions",
                                     w.evidence_source, std::nullopt));
  }
}

// Baseline: no AppArmor profile of type Unconfined, by field (pod or container) or by the
// annotation older clusters read (anything but runtime/default or localhost/...).
void AppArmor(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  const auto judge = [&](const k8s::Value* profile, const std::string& path,
                         const std::string& container) {
    if (profile == nullptr) return;
    o.evidence.push_back(ApiEvidence(path, w.evidence_source, ValueText(*profile)));
    const std::string type = StrField(*profile, "type");
    if (type != "RuntimeDefault" && type != "Localhost") {
      o.Fail(container, (container.empty() ? "the pod" : "container " + container) +
                            " sets AppArmor profile type " + (type.empty() ? "(none)" : type));
    }
  };
  EachLevel(w, cs, "appArmorProfile", [&](const Read& r, const std::string& container) {
    judge(r.value, r.path, container);
  });
  const k8s::Value* annotations =
      w.template_metadata ? Field(*w.template_metadata, "annotations") : nullptr;
  if (annotations && annotations->is_object()) {
    constexpr std::string_view kPrefix = "container.apparmor.security.beta.kubernetes.io/";
    for (const auto& [name, value] : annotations->items()) {
      if (!name.starts_with(kPrefix)) continue;
      const std::string key(name);
      const std::string container = key.substr(kPrefix.size());
      const std::string v = value.is_string() ? value.get<std::string>() : ValueText(value);
      o.evidence.push_back(
          ApiEvidence(w.metadata_path + ".annotations[" + key + "]", w.evidence_source, v));
      if (v != "runtime/default" && !v.starts_with("localhost/")) {
        o.Fail(container, "container " + container + " is annotated AppArmor " + v);
      }
    }
  }
  if (o.evidence.empty()) {
    o.evidence.push_back(ApiEvidence(w.spec_path + ".securityContext.appArmorProfile",
                                     w.evidence_source, std::nullopt));
  }
}

// Baseline: only the sysctls the pod-security admission plugin calls safe (namespaced, isolated
// from the node), as of the newest Kubernetes: older servers refuse some of these themselves.
void Sysctls(const Workload& w, const std::vector<Container>&, Outcome& o) {
  static const std::set<std::string> kSafe = {"kernel.shm_rmid_forced",
                                              "net.ipv4.ip_local_port_range",
                                              "net.ipv4.tcp_syncookies",
                                              "net.ipv4.ping_group_range",
                                              "net.ipv4.ip_unprivileged_port_start",
                                              "net.ipv4.ip_local_reserved_ports",
                                              "net.ipv4.tcp_keepalive_time",
                                              "net.ipv4.tcp_fin_timeout",
                                              "net.ipv4.tcp_keepalive_intvl",
                                              "net.ipv4.tcp_keepalive_probes",
                                              "net.ipv4.tcp_rmem",
                                              "net.ipv4.tcp_wmem",
                                              "net.ipv4.tcp_slow_start_after_idle",
                                              "net.ipv4.tcp_notsent_lowat"};
  const auto* sc = SecurityContext(*w.spec);
  const auto* list = sc ? Field(*sc, "sysctls") : nullptr;
  const std::string path = w.spec_path + ".securityContext.sysctls";
  if (list == nullptr || !list->is_array() || list->empty()) {
    o.evidence.push_back(ApiEvidence(path, w.evidence_source, std::nullopt));
    return;
  }
  for (const auto& item : *list) {
    const std::string name = StrField(item, "name");
    o.evidence.push_back(
        ApiEvidence(path + "[" + name + "]", w.evidence_source, ValueText(item["value"])));
    if (!kSafe.contains(name)) o.Fail("", "the pod sets the unsafe sysctl " + name);
  }
}

// Restricted: volumes only of the kinds that cannot reach the node or other tenants' data.
void VolumeTypes(const Workload& w, const std::vector<Container>&, Outcome& o) {
  static const std::set<std::string> kAllowed = {"configMap", "csi",       "downwardAPI",
                                                 "emptyDir",  "ephemeral", "persistentVolumeClaim",
                                                 "projected", "secret",    "name"};
  const auto* volumes = Field(*w.spec, "volumes");
  if (volumes == nullptr || !volumes->is_array() || volumes->empty()) {
    o.evidence.push_back(ApiEvidence(w.spec_path + ".volumes", w.evidence_source, std::nullopt));
    return;
  }
  for (const auto& v : *volumes) {
    const std::string name = StrField(v, "name");
    if (!v.is_object()) continue;
    for (const auto& [member, _] : v.items()) {
      const std::string type(member);
      if (kAllowed.contains(type)) continue;
      o.evidence.push_back(
          ApiEvidence(w.spec_path + ".volumes[" + name + "]." + type, w.evidence_source, type));
      o.Fail("", "volume " + name + " is of type " + type);
    }
  }
  if (o.violations.empty()) {
    o.evidence.push_back(ApiEvidence(w.spec_path + ".volumes", w.evidence_source,
                                     std::to_string(volumes->size()) + " volumes"));
  }
}

// An image reference taken apart: [registry[:port]/]repository[:tag][@digest].
struct ImageRef {
  std::string tag;     // empty when none is written
  std::string digest;  // e.g. `sha256:...`, empty when none
};

ImageRef ParseImage(const std::string& image) {
  ImageRef out;
  std::string rest = image;
  if (const size_t at = rest.find('@'); at != std::string::npos) {
    out.digest = rest.substr(at + 1);
    rest.resize(at);
  }
  // A tag follows the last ':' after the last '/' (a ':' before it is a registry's port).
  const size_t slash = rest.rfind('/');
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    out.tag = rest.substr(colon + 1);
  }
  return out;
}

// Ephemeral containers are started by hand for debugging and take no resources or pull policy.
bool IsEphemeral(const Container& c) {
  return c.path.find(".ephemeralContainers[") != std::string::npos;
}

void ImageEvidence(const Workload& w, const Container& c, Outcome& o) {
  const auto* image = Field(*c.spec, "image");
  o.evidence.push_back(ApiEvidence(c.path + ".image", w.evidence_source,
                                   image ? std::optional(ValueText(*image)) : std::nullopt));
}

// A tag names whatever was pushed last under it; `latest` (also when no tag is written) moves
// with every push, so what runs is not what was reviewed.
void ImageTag(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    ImageEvidence(w, c, o);
    const std::string image = StrField(*c.spec, "image");
    const ImageRef ref = ParseImage(image);
    if (!ref.digest.empty()) continue;  // pinned: the tag does not decide what runs
    if (ref.tag.empty()) {
      o.Fail(c.name, "container " + c.name + " runs " + image + " with no tag (latest)");
    } else if (ref.tag == "latest") {
      o.Fail(c.name, "container " + c.name + " runs " + image + " (the latest tag)");
    }
  }
}

void ImageDigest(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    ImageEvidence(w, c, o);
    const std::string image = StrField(*c.spec, "image");
    if (ParseImage(image).digest.empty()) {
      o.Fail(c.name, "container " + c.name + " runs " + image + ", not pinned by digest");
    }
  }
}

// A moving tag with IfNotPresent or Never runs whatever image the node pulled first: nodes of one
// Deployment can run different code. Kubernetes defaults such images to Always.
void PullPolicy(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    if (IsEphemeral(c)) continue;
    ImageEvidence(w, c, o);
    const std::string image = StrField(*c.spec, "image");
    const ImageRef ref = ParseImage(image);
    const auto* policy = Field(*c.spec, "imagePullPolicy");
    o.evidence.push_back(ApiEvidence(c.path + ".imagePullPolicy", w.evidence_source,
                                     policy ? std::optional(ValueText(*policy)) : std::nullopt));
    const bool moving = ref.digest.empty() && (ref.tag.empty() || ref.tag == "latest");
    const std::string p = policy && policy->is_string() ? policy->get<std::string>() : "";
    if (moving && (p == "IfNotPresent" || p == "Never")) {
      o.Fail(c.name, "container " + c.name + " runs the moving tag of " + image +
                         " with imagePullPolicy " + p);
    }
  }
}

// CPU and memory limits on every container: without them one workload can starve its node.
void ResourceLimits(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    if (IsEphemeral(c)) continue;
    const auto* resources = Field(*c.spec, "resources");
    const auto* limits = resources ? Field(*resources, "limits") : nullptr;
    std::vector<std::string> missing;
    for (const char* what : {"cpu", "memory"}) {
      const auto* v = limits ? Field(*limits, what) : nullptr;
      o.evidence.push_back(ApiEvidence(c.path + ".resources.limits." + what, w.evidence_source,
                                       v ? std::optional(ValueText(*v)) : std::nullopt));
      if (v == nullptr) missing.push_back(what);
    }
    if (!missing.empty()) {
      o.Fail(c.name, "container " + c.name + " has no " + common::Join(missing, " or ") + " limit");
    }
  }
}

void HostPort(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  bool any = false;
  for (const auto& c : cs) {
    const auto* ports = Field(*c.spec, "ports");
    if (ports == nullptr || !ports->is_array()) continue;
    for (const auto& p : *ports) {
      const auto* hp = Field(p, "hostPort");
      if (hp == nullptr) continue;
      any = true;
      const std::string port = std::to_string(p.value("containerPort", 0));
      o.evidence.push_back(
          ApiEvidence(c.path + ".ports[" + port + "].hostPort", w.evidence_source, ValueText(*hp)));
      if (hp->is_number_integer() && hp->get<int64_t>() != 0) {
        o.Fail(c.name, "container " + c.name + " binds host port " + ValueText(*hp));
      }
    }
  }
  if (!any) {
    o.evidence.push_back(ApiEvidence(w.spec_path + ".containers[].ports[].hostPort",
                                     w.evidence_source, std::nullopt));
  }
}

}  // namespace

std::vector<Finding> ConfigMapCredentials(const CheckDef&, const Context& ctx) {
  if (!ctx.snapshot.inspect_config_data()) {
    return {NotApplicable(
        "ConfigMap contents are read only when asked: --scan-configmaps (and, in a cluster, the "
        "kspm-collector-configmaps ClusterRole) turns this check on")};
  }
  std::vector<Finding> out;
  size_t read = 0, skipped = 0;
  for (const auto& cm : ctx.snapshot.Of("ConfigMap")) {
    if (ctx.policy.skip() && ctx.policy.IsSystemNamespace(cm.ns)) {
      ++skipped;
      continue;
    }
    ++read;
    const auto* keys = Field(cm.doc, k8s::kCredentialKeysField);
    if (keys == nullptr || !keys->is_array() || keys->empty()) continue;
    Finding f;
    f.status = v1::STATUS_FAIL;
    f.resource = MakeResource("ConfigMap", cm.ns, cm.name);
    f.labels = &cm.labels();
    std::vector<std::string> whys;
    for (const auto& k : *keys) {
      const std::string key = StrField(k, "key");
      f.evidence.push_back(ApiEvidence(
          "data[" + key + "]", cm.Describe(),
          "(a value of " + std::to_string(k.value("length", 0)) + " characters, not shown)"));
      whys.push_back("key " + key + ": " + StrField(k, "why"));
    }
    f.reason = cm.Describe() + " holds credentials in plain text (" + common::Join(whys, "; ") +
               "); ConfigMaps are readable by anyone who may read the namespace's configuration";
    out.push_back(std::move(f));
  }
  if (out.empty()) {
    out.push_back(ClusterVerdict(v1::STATUS_PASS, "no ConfigMap holds a credential-like value; " +
                                                      std::to_string(read) + " ConfigMaps read" +
                                                      SkipNote(skipped, "ConfigMaps")));
  }
  return out;
}

namespace {

void EnvCredentials(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    const auto* env = Field(*c.spec, "env");
    if (env == nullptr || !env->is_array()) continue;
    for (const auto& e : *env) {
      const auto* v = Field(e, "value");
      if (v == nullptr || !v->is_string()) continue;
      const std::string var = StrField(e, "name");
      const std::string why = k8s::CredentialLike(var, v->get<std::string>());
      if (why.empty()) continue;
      o.evidence.push_back(ApiEvidence(
          c.path + ".env[" + var + "].value", w.evidence_source,
          "(a literal of " + std::to_string(v->str().size()) + " characters, not shown)"));
      o.Fail(c.name, "container " + c.name + " sets $" + var + " in plain text: " + why);
    }
  }
  if (o.evidence.empty()) {
    o.evidence.push_back(ApiEvidence(w.spec_path + ".containers[].env[].value", w.evidence_source,
                                     "no credential-like literal"));
  }
}

void SecretEnv(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    if (const auto* env = Field(*c.spec, "env"); env && env->is_array()) {
      for (const auto& e : *env) {
        const auto* from = Field(e, "valueFrom");
        const auto* ref = from ? Field(*from, "secretKeyRef") : nullptr;
        if (ref == nullptr) continue;
        const std::string var = StrField(e, "name");
        const std::string secret = StrField(*ref, "name") + "/" + StrField(*ref, "key");
        o.evidence.push_back(ApiEvidence(c.path + ".env[" + var + "].valueFrom.secretKeyRef",
                                         w.evidence_source, secret));
        o.Fail(c.name, "container " + c.name + " reads Secret " + secret + " into $" + var);
      }
    }
    if (const auto* env_from = Field(*c.spec, "envFrom"); env_from && env_from->is_array()) {
      for (size_t i = 0; i < env_from->size(); ++i) {
        const auto* ref = Field((*env_from)[i], "secretRef");
        if (ref == nullptr) continue;
        const std::string secret = StrField(*ref, "name");
        o.evidence.push_back(ApiEvidence(c.path + ".envFrom[" + std::to_string(i) + "].secretRef",
                                         w.evidence_source, secret));
        o.Fail(c.name, "container " + c.name + " loads every key of Secret " + secret +
                           " into its environment");
      }
    }
  }
  if (o.evidence.empty()) {
    o.evidence.push_back(ApiEvidence(w.spec_path + ".containers[].env[].valueFrom.secretKeyRef",
                                     w.evidence_source, std::nullopt));
  }
}

void Seccomp(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  // The annotations were the pre-1.19 way; the kubelet has ignored them since Kubernetes 1.27.
  if (w.template_metadata) {
    if (const auto* ann = Field(*w.template_metadata, "annotations"); ann && ann->is_object()) {
      for (const auto& [name, v] : ann->items()) {
        const std::string k(name);
        if (k == "seccomp.security.alpha.kubernetes.io/pod" ||
            k.starts_with("container.seccomp.security.alpha.kubernetes.io/")) {
          o.evidence.push_back(ApiEvidence(w.metadata_path + ".annotations[" + k + "]",
                                           w.evidence_source + " (ignored since Kubernetes 1.27)",
                                           ValueText(v)));
        }
      }
    }
  }
  for (const auto& c : cs) {
    Read profile = ContainerField(c, "seccompProfile");
    if (!profile.value) {
      if (const auto* sc = SecurityContext(*w.spec)) {
        if (const auto* v = Field(*sc, "seccompProfile")) {
          profile = {v, w.spec_path + ".securityContext.seccompProfile"};
        }
      }
    }
    const std::string type = profile.value ? StrField(*profile.value, "type") : "";
    o.evidence.push_back(ApiEvidence(profile.path + ".type", w.evidence_source,
                                     type.empty() ? std::nullopt : std::optional(type)));
    if (type == "RuntimeDefault" || type == "Localhost") continue;
    o.Fail(c.name, "container " + c.name + ": seccompProfile.type is " +
                       (type.empty() ? "not set (Unconfined unless the kubelet runs with "
                                       "seccompDefault, node item 4.2.14)"
                                     : type));
  }
}

void SecurityContextRule(const Workload& w, const std::vector<Container>& cs, Outcome& o) {
  for (const auto& c : cs) {
    const Read non_root = Effective(w, c, "runAsNonRoot");
    const Read user = Effective(w, c, "runAsUser");
    const Read ape = ContainerField(c, "allowPrivilegeEscalation");
    const Read rofs = ContainerField(c, "readOnlyRootFilesystem");
    const auto drop = Capabilities(c, "drop");
    std::vector<std::string> missing;
    const bool uid_ok =
        user.value && user.value->is_number_integer() && user.value->get<int64_t>() != 0;
    if (!non_root.IsTrue() && !uid_ok) missing.push_back("runAsNonRoot");
    if (!ape.IsFalse()) missing.push_back("allowPrivilegeEscalation: false");
    if (!rofs.IsTrue()) missing.push_back("readOnlyRootFilesystem: true");
    if (!Has(drop, "ALL")) missing.push_back("capabilities.drop ALL");
    const std::string sc_path = c.path + ".securityContext";
    const auto* sc = SecurityContext(*c.spec);
    o.evidence.push_back(
        ApiEvidence(sc_path, w.evidence_source, sc ? std::optional(sc->dump()) : std::nullopt));
    if (!missing.empty()) {
      o.Fail(c.name, "container " + c.name + " lacks " + common::Join(missing, ", "));
    }
  }
}

Rule FindRule(std::string_view name) {
  static const std::map<std::string, Rule, std::less<>> kRules = {
      {"privileged", Privileged},
      {"host-pid", HostPid},
      {"host-ipc", HostIpc},
      {"host-network", HostNetwork},
      {"privilege-escalation", PrivilegeEscalation},
      {"run-as-root", RunAsRoot},
      {"net-raw", NetRaw},
      {"capabilities", CapabilitiesRule},
      {"windows-host-process", WindowsHostProcess},
      {"host-path", HostPath},
      {"host-port", HostPort},
      {"secret-env", SecretEnv},
      {"env-credentials", EnvCredentials},
      {"seccomp", Seccomp},
      {"image-tag", ImageTag},
      {"image-digest", ImageDigest},
      {"pull-policy", PullPolicy},
      {"resource-limits", ResourceLimits},
      {"proc-mount", ProcMount},
      {"selinux", SeLinux},
      {"apparmor", AppArmor},
      {"sysctls", Sysctls},
      {"volume-types", VolumeTypes},
      {"security-context", SecurityContextRule},
  };
  const auto it = kRules.find(name);
  return it == kRules.end() ? nullptr : it->second;
}

}  // namespace

std::vector<Finding> PodRule(const CheckDef& c, const Context& ctx) {
  const Rule rule = FindRule(c.rule);
  if (rule == nullptr) {
    return {ClusterVerdict(v1::STATUS_ERROR, "unknown pod rule '" + c.rule + "'")};
  }
  if (ctx.workloads.workloads.empty()) return {NoWorkloads(ctx)};
  std::vector<Finding> out;
  out.reserve(ctx.workloads.workloads.size());
  for (const auto& w : ctx.workloads.workloads) {
    const auto containers = Containers(w);
    Outcome o;
    rule(w, containers, o);
    Finding f = WorkloadFinding(w);
    if (o.not_applicable) {
      f.status = v1::STATUS_NOT_APPLICABLE;
      f.reason = o.na_reason;
    } else if (o.violations.empty()) {
      f.status = v1::STATUS_PASS;
      if (o.evidence.size() > kMaxPassEvidence) o.evidence.resize(kMaxPassEvidence);
      f.reason = "every container complies (" + std::to_string(containers.size()) + " read)";
    } else {
      f.status = v1::STATUS_FAIL;
      // Evidence of the containers at fault first: that is what a reader needs.
      std::vector<v1::Evidence> ordered, rest;
      for (auto& e : o.evidence) {
        const bool about_fault =
            std::any_of(o.containers.begin(), o.containers.end(), [&](const std::string& n) {
              return n.empty() || e.key().find("[" + n + "]") != std::string::npos;
            });
        (about_fault ? ordered : rest).push_back(std::move(e));
      }
      for (auto& e : rest) ordered.push_back(std::move(e));
      o.evidence = std::move(ordered);
      f.reason = o.violations.front();
      if (o.violations.size() > 1) {
        f.reason = common::Join(o.violations, "; ");
      }
      for (const auto& name : o.containers) f.containers.push_back(name);
      if (o.containers.size() == 1 && !o.containers.begin()->empty()) {
        f.resource.set_container(*o.containers.begin());
      }
    }
    f.evidence = std::move(o.evidence);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace kspm::collector::cluster::internal

namespace kspm::collector::cluster {

bool IsPodRule(std::string_view name) { return internal::FindRule(name) != nullptr; }

}  // namespace kspm::collector::cluster

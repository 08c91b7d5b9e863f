#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/v1/results.pb.h"
#include "yaml-cpp/yaml.h"

namespace kspm::agent::checks {

// How a setting's text is interpreted when compared.
enum class ValueType { kString, kBool, kInt, kDuration, kList, kMap };

// Where a component setting can be read, in precedence order: flag (or env), then the config
// file's drop-ins and the config file itself (`key`), then the default.
struct SettingSpec {
  std::string flag;   // without dashes; empty when the component has no such flag
  std::string alias;  // a short form of the flag (dockerd -H for --host)
  std::string key;    // dotted path in the component's config file; empty when none
  std::string env;    // environment variable (etcd's ETCD_*); empty when none
  ValueType type = ValueType::kString;
  // For kMap settings (feature gates): the entry of the map this check reads.
  std::string map_key;
  // The component's default when nothing sets the value; absent when there is none.
  std::optional<std::string> default_value;
  // The default that applies instead when the component runs from a config file (the kubelet's
  // KubeletConfiguration v1beta1 defaults differ from its legacy flag defaults).
  std::optional<std::string> config_default;
  // What the component makes of the zero value of this (non-pointer) field when its config file
  // holds it: its SetDefaults function replaces 0s, 0 or "" with this (the kubelet's
  // streamingConnectionIdleTimeout 0s becomes 4h; kube-proxy's metricsBindAddress "" becomes
  // 127.0.0.1:10249). Only the config file is defaulted; a flag or a drop-in keeps its zero.
  std::optional<std::string> config_zero;

  // `--anonymous-auth` or `authentication.anonymous.enabled`, for messages.
  std::string Describe() const;
};

// Which files a file check reads.
struct FileSpec {
  std::string role;                // a file role of the check's component (`config`, ...)
  std::vector<std::string> paths;  // literal host paths
  // Directories whose files (recursively) are all checked; those that do not exist are skipped
  // (each distribution keeps its PKI elsewhere).
  std::vector<std::string> walk;
  std::vector<std::string> match;  // name suffixes kept by `walk`; empty keeps all files
  bool include_dir = false;        // `walk` also checks the directory itself
};

// The expected value. One operator per expectation.
struct Expectation {
  enum class Op {
    kEquals,         // typed equality
    kNotEquals,      // typed inequality
    kAtLeast,        // numeric or duration >=
    kAtMost,         // numeric or duration <=
    kContains,       // list (or comma-separated text) has the item
    kNotContains,    // list does not have the item
    kSubsetOf,       // every element is one of `values`
    kPresent,        // set to a non-empty value by anything but a default
    kAbsent,         // not set
    kNonZero,        // duration or integer not 0
    kModeAtMost,     // file permission bits within the octal mask (more restrictive passes)
    kOwner,          // file `user:group` is one of `values`
    kIsSocket,       // the file is a Unix socket (combined with nothing else)
    kLoopback,       // an address (`host`, `host:port`) bound to loopback only
    kAnyStartsWith,  // some item of a list starts with the value (`tcp://`)
  };
  Op op = Op::kPresent;
  std::string value;                // operand for single-value operators
  std::vector<std::string> values;  // operands for subset_of / owner

  // "false", "mode 0600 or stricter", "root:root", ...
  std::string Describe() const;
};

// A path that must be watched by the Linux audit system (CIS Docker 1.1.x): a `-w PATH` rule, or a
// syscall rule with `-F path=PATH` / `-F dir=PATH`, in the host's auditd rule files.
struct AuditSpec {
  std::string path;  // a literal host path
  std::string role;  // or a file role of the check's component (docker.service)
};

// The API server's EncryptionConfiguration (CIS 1.2.28), named by a file role of the component:
// the provider that writes Secrets must be a real cipher. The expectation is implied.
struct EncryptionSpec {
  std::string role;  // encryption-config (--encryption-provider-config)
};

// A condition that must hold for a check to apply at all; otherwise NOT_APPLICABLE.
struct Precondition {
  SettingSpec setting;
  Expectation expect;
};

// What a check evaluates, named by `evaluate:` in the catalogue or decided once from its fields
// when it is left out (custom rules): each kind has one evaluator (evaluator.cc).
enum class CheckKind {
  kSettings,    // setting(s) + expect
  kFiles,       // file + expect
  kAudit,       // audit
  kEncryption,  // encryption
  kManual,      // manual: a person must look
};

// One check of the catalogue.
struct Check {
  std::string id;                                 // stable internal id
  std::map<std::string, std::string> benchmarks;  // benchmark name -> item id
  std::map<std::string, bool> scored_in;          // benchmarks that score it otherwise
  // Benchmarks (distribution profiles) under which the item cannot apply, and why.
  std::map<std::string, std::string> not_applicable_in;
  bool ScoredIn(const std::string& benchmark) const {
    const auto it = scored_in.find(benchmark);
    return it == scored_in.end() ? scored : it->second;
  }
  std::string title;
  v1::Severity severity = v1::SEVERITY_MEDIUM;
  bool scored = true;
  std::string component;              // the component the check is about
  std::vector<SettingSpec> settings;  // every setting must meet `expect`
  std::optional<FileSpec> file;
  std::optional<Precondition> only_if;
  // A file role of the component holding a kubeconfig: the check applies only when that
  // kubeconfig authenticates with a client certificate (CIS 4.2.10 is about certificates the API
  // server issues; an exec plugin or a token has none to rotate).
  std::string only_if_client_certificate;
  // Non-empty: the item passes when nothing sets the value (the CIS audit text says so, even
  // where the component's own default differs); the text says why, for the result.
  std::string absent_passes;
  std::optional<AuditSpec> audit;
  std::optional<EncryptionSpec> encryption;
  Expectation expect;
  std::string manual;  // non-empty: no program can judge this; what a person must look at
  CheckKind kind = CheckKind::kSettings;
  std::string remediation;
  // Where the check came from (`builtin:kubernetes.yaml` or a --rules file), for errors.
  std::string origin;
};

// A distribution's CIS profile (k3s, RKE2): a CIS Kubernetes version as the distribution's own
// self-assessment applies it. Every check of the base benchmark is reported under the profile too,
// with the same item id; the profile says which items cannot apply to the distribution (and why)
// and which it scores differently.
struct Profile {
  std::string name;                                   // rke2-cis-1.12
  std::string base;                                   // cis-kubernetes-1.12
  std::string source;                                 // the self-assessment it follows
  std::map<std::string, std::string> not_applicable;  // item id -> why
  std::map<std::string, bool> scored;                 // item id -> scored in the profile
};

// How a component's configuration file is read.
struct ConfigSpec {
  std::string flag;                     // flag naming the file (kubelet --config)
  std::string env;                      // environment variable naming it (ETCD_CONFIG_FILE)
  std::string dropin_flag;              // flag naming a drop-in directory (kubelet --config-dir)
  std::vector<std::string> candidates;  // used only when no process says where it is
  // The file the component reads when no flag names one (dockerd: /etc/docker/daemon.json).
  std::string default_path;
  // When true, a config file replaces flags and environment entirely (etcd --config-file).
  bool exclusive = false;
};

// A file a component uses: named by a flag or config key of the running component, or found
// among known candidate paths.
struct FileRoleSpec {
  std::string flag;
  std::string key;
  std::vector<std::string> candidates;
};

// When a distribution option applies: any of `options` is set (to anything but "false") or any
// of `paths` exists or any of `missing` does not; and none of `unless` is set. Empty `options`,
// `paths` and `missing` hold always.
struct EmbeddedCondition {
  std::vector<std::string> options;
  std::vector<std::string> paths;
  std::vector<std::string> missing;
  std::vector<std::string> unless;
};

// Arguments a distribution gives a component only under a condition (k3s gives the API server
// --encryption-provider-config when `secrets-encryption` is set).
struct ConditionalArgs {
  EmbeddedCondition when;
  std::vector<std::string> args;
};

// A component that runs inside another process (k3s runs the kubelet, the API server and the
// rest in one `k3s server` process). Its effective command line is built from the host
// process's built-in arguments (with the conditional ones), then the `arg_flag` list of the
// host's options, in that order. The host's options come from its config file and that file's
// `.d` drop-ins, then its command line; k3s hides its command line (setproctitle), so the
// ExecStart of its systemd unit stands in for it.
struct EmbeddedSpec {
  std::vector<std::string> process;  // argv[0] basename and sub-command: [k3s, server]
  std::string arg_flag;              // host flag carrying one argument each (kubelet-arg)
  std::string config;                // host config file (/etc/rancher/k3s/config.yaml)
  std::string config_flag;           // host flag naming another config file (config)
  std::vector<std::string> units;    // systemd units whose ExecStart starts the host process
  std::set<std::string, std::less<>> bool_options;  // host flags that take no separate value
  std::vector<std::string> base_args;               // arguments the host process always passes
  std::vector<ConditionalArgs> conditional_args;
  std::optional<EmbeddedCondition> runs_if;  // the component runs only then (embedded etcd)
};

// A component kspm knows how to find.
struct ComponentSpec {
  std::string name;
  v1::NodeRole role = v1::NODE_ROLE_UNSPECIFIED;
  // Command lines that identify the process: each entry is argv[0]'s basename optionally
  // followed by sub-commands (`hyperkube kubelet`).
  std::vector<std::vector<std::string>> processes;
  std::set<std::string, std::less<>> bool_flags;
  std::optional<ConfigSpec> config;
  // Static pod manifests that hold the component's command when its process is not visible.
  std::vector<std::string> manifests;
  std::map<std::string, FileRoleSpec> files;
  std::vector<EmbeddedSpec> embedded;
};

class Catalog {
 public:
  // Parses catalogue YAML (one document with `components:` and/or `checks:`). `origin` names the
  // source in errors, which also carry the line and column.
  [[nodiscard]] absl::Status AddYaml(std::string_view text, std::string_view origin);
  // The same for a document already parsed (the built-in catalogue is compiled into trees).
  [[nodiscard]] absl::Status AddTree(const YAML::Node& root, std::string_view origin);
  // The catalogue built into the binary.
  [[nodiscard]] static absl::StatusOr<Catalog> Builtin();
  // Adds every *.yaml file of a directory (custom rules).
  [[nodiscard]] absl::Status AddDirectory(const std::string& dir);

  const std::vector<Check>& checks() const { return checks_; }
  const std::vector<ComponentSpec>& components() const { return components_; }
  const std::vector<Profile>& profiles() const { return profiles_; }
  const ComponentSpec* FindComponent(std::string_view name) const;
  const Check* FindCheck(std::string_view id) const;
  // Benchmarks named by any check, sorted.
  std::vector<std::string> Benchmarks() const;
  const std::string& version() const { return version_; }

 private:
  std::vector<Check> checks_;
  std::vector<ComponentSpec> components_;
  std::vector<Profile> profiles_;
  std::string version_ = "0";
};

// Typed value helpers shared by the evaluator and its tests.
std::optional<bool> ParseBool(std::string_view text);              // Go's strconv.ParseBool
std::optional<int64_t> ParseInt(std::string_view text);            // base 10, optional sign
std::optional<int64_t> ParseDurationNanos(std::string_view text);  // Go's time.ParseDuration
std::vector<std::string> SplitList(std::string_view text);         // comma-separated, trimmed
// Feature-gate style `A=true,B=false` into a map.
std::map<std::string, std::string> SplitMap(std::string_view text);

}  // namespace kspm::agent::checks

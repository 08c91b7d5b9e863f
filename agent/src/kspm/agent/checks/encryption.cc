// The encryption check (CIS 1.2.28): the provider that writes Secrets.
#include <algorithm>

#include "kspm/agent/checks/evaluate_kinds.h"
#include "kspm/common/strings.h"

namespace kspm::agent::checks::internal {
namespace {

// Providers that encrypt. kms is v1 or v2 (apiVersion inside); identity stores plain text.
bool IsCipher(const std::string& provider) {
  return provider == "kms" || provider == "aescbc" || provider == "aesgcm" ||
         provider == "secretbox";
}

// Whether an EncryptionConfiguration resource entry covers Secrets: `secrets`, `secrets.` or a
// wildcard over the core group (`*.`, `*.*`).
bool CoversSecrets(const YAML::Node& names) {
  if (!names || !names.IsSequence()) return false;
  for (const auto& n : names) {
    const std::string v = n.IsScalar() ? n.Scalar() : "";
    if (v == "secrets" || v == "secrets." || v == "*." || v == "*.*") return true;
  }
  return false;
}

}  // namespace

// CIS 1.2.28: the API server applies, for each resource, the first `resources` entry that
// lists it, and in that entry the first provider encrypts new data (later ones only decrypt).
// So Secrets are protected when the first entry covering them starts with a real cipher.
void EvaluateEncryption(const Check& check, const Component& c, const host::HostView& host,
                        v1::CheckResult& out) {
  const auto it = c.files.find(check.encryption->role);
  if (it == c.files.end() && c.cmdline_truncated) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason("the command line of " + c.flags_source +
                   " is cut short; --encryption-provider-config may be in the lost part");
    return;
  }
  if (it == c.files.end()) {
    *out.add_evidence() = MakeEvidence("--encryption-provider-config", "", false, c.flags_kind,
                                       "flag of " + c.flags_source, "", c.pid);
    out.set_status(FailStatus(out));
    out.set_reason(
        "no --encryption-provider-config: Secrets are written to etcd unencrypted (see 1.2.27)");
    return;
  }
  const discovery::ResolvedFile& file = it->second;
  const std::string where = file.path + ", " + file.how;
  auto text = host.ReadFile(file.path);
  if (!text.ok()) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason(text.status().code() == absl::StatusCode::kNotFound
                       ? "encryption config " + file.path + " (" + file.how + ") does not exist"
                       : std::string(text.status().message()));
    return;
  }
  auto root = discovery::ParseYaml(*text, file.path);
  if (!root.ok()) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason(std::string(root.status().message()));
    return;
  }
  const YAML::Node entries = (*root)["resources"];
  if (!root->IsMap() || !entries || !entries.IsSequence()) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason(file.path + " is not an EncryptionConfiguration: no 'resources' list");
    return;
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const YAML::Node entry = entries[i];
    if (!entry.IsMap() || !CoversSecrets(entry["resources"])) continue;
    const YAML::Node providers = entry["providers"];
    std::string first;
    if (providers && providers.IsSequence() && providers.size() > 0 && providers[0].IsMap() &&
        providers[0].size() > 0) {
      first = providers[0].begin()->first.Scalar();
    }
    *out.add_evidence() =
        MakeEvidence("resources[" + std::to_string(i) + "] (" +
                         discovery::RenderYaml(entry["resources"]) + ").providers[0]",
                     first, !first.empty(), v1::SOURCE_KIND_CONFIG_FILE, where, file.path);
    if (IsCipher(first)) {
      out.set_status(v1::STATUS_PASS);
      out.set_reason("Secrets are written with " + first + " (resources[" + std::to_string(i) +
                     "] of " + file.path + ")" +
                     (first == "kms" ? "; prefer KMS v2 (apiVersion: v2), v1 is deprecated" : ""));
    } else {
      out.set_status(FailStatus(out));
      out.set_reason(
          "the first provider for Secrets in " + file.path + " is " +
          (first.empty() ? "missing" : first) +
          (first == "identity" ? ", which stores them unencrypted" : ", which is not a cipher") +
          "; expected " + out.expected());
    }
    return;
  }
  *out.add_evidence() = MakeEvidence("resources[].resources", "secrets", false,
                                     v1::SOURCE_KIND_CONFIG_FILE, where, file.path);
  out.set_status(FailStatus(out));
  out.set_reason("no entry of " + file.path + " lists secrets: they are written unencrypted");
}

}  // namespace kspm::agent::checks::internal

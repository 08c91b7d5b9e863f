#pragma once

// What looks like a credential written in plain text, in an environment variable or a ConfigMap
// key: judged from its name and from the forms keys and tokens are issued in. Callers keep the
// verdict and the value's length, never the value.
#include <string>

#include "nlohmann/json.hpp"

namespace kspm::collector::k8s {

// Why `value` under `name` looks like a credential (`its value is a private key`), or "" when
// it does not. Names are compared upper-cased; a reference such as `$(VAR)` is not a value.
std::string CredentialLike(const std::string& name, const std::string& value);

// The field a ConfigMap read with its contents (Snapshot::set_inspect_config_data) keeps instead
// of `data`: [{"key", "why", "length"}] for each key whose value looks like a credential.
inline constexpr char kCredentialKeysField[] = "kspm.io/credential-keys";

// Replaces a ConfigMap's `data` by the kCredentialKeysField summary (an empty list when nothing
// looks like a credential); `binaryData` is dropped unread.
void SummariseConfigData(nlohmann::json& configmap);

}  // namespace kspm::collector::k8s

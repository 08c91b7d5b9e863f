#include "kspm/collector/k8s/credentials.h"

#include <algorithm>
#include <cctype>

namespace kspm::collector::k8s {
namespace {

// A kubeconfig (YAML or JSON) that carries a credential of its own, not a path to one: a client
// key, a token or a password in a user entry.
bool KubeconfigWithCredential(const std::string& value) {
  const bool config = value.find("kind: Config") != std::string::npos ||
                      value.find("\"kind\": \"Config\"") != std::string::npos ||
                      value.find("\"kind\":\"Config\"") != std::string::npos;
  if (!config || value.find("users") == std::string::npos) return false;
  for (const char* field : {"client-key-data", "token:", "\"token\"", "password:"}) {
    if (value.find(field) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

std::string CredentialLike(const std::string& name, const std::string& value) {
  if (value.empty() || value.starts_with("$(")) return "";  // empty, or a reference to a var
  if (value.find("-----BEGIN") != std::string::npos &&
      value.find("PRIVATE KEY-----") != std::string::npos) {
    return "its value is a private key";
  }
  if (KubeconfigWithCredential(value)) return "its value is a kubeconfig with a credential in it";
  const auto all_of = [&](size_t from, size_t n, auto pred) {
    if (value.size() < from + n) return false;
    for (size_t i = from; i < from + n; ++i) {
      if (!pred(static_cast<unsigned char>(value[i]))) return false;
    }
    return true;
  };
  const auto upper_or_digit = [](unsigned char ch) { return std::isupper(ch) || std::isdigit(ch); };
  if ((value.starts_with("AKIA") || value.starts_with("ASIA")) && value.size() == 20 &&
      all_of(4, 16, upper_or_digit)) {
    return "its value has the form of an AWS access key id";
  }
  for (const char* prefix : {"ghp_", "gho_", "ghs_", "github_pat_", "glpat-", "xoxb-", "xoxp-"}) {
    if (value.starts_with(prefix) && value.size() >= 20) {
      return std::string("its value has the form of a token (") + prefix + "...)";
    }
  }
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  for (const char* word : {"PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY",
                           "ACCESS_KEY", "PRIVATE_KEY", "CREDENTIAL"}) {
    if (upper.find(word) != std::string::npos) {
      return "it is named like a credential (" + std::string(word) + ") and holds a literal value";
    }
  }
  return "";
}

void SummariseConfigData(nlohmann::json& configmap) {
  if (!configmap.is_object()) return;
  nlohmann::json found = nlohmann::json::array();
  if (const auto data = configmap.find("data"); data != configmap.end() && data->is_object()) {
    for (const auto& [key, value] : data->items()) {
      if (!value.is_string()) continue;
      const auto& text = value.get_ref<const std::string&>();
      std::string why = CredentialLike(key, text);
      if (!why.empty()) {
        found.push_back({{"key", key}, {"why", std::move(why)}, {"length", text.size()}});
      }
    }
  }
  configmap.erase("data");
  configmap.erase("binaryData");
  configmap[kCredentialKeysField] = std::move(found);
}

}  // namespace kspm::collector::k8s

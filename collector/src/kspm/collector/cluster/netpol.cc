#include "kspm/collector/cluster/netpol.h"

#include <cctype>
#include <optional>
#include <set>

namespace kspm::collector::cluster {
namespace {

using k8s::Doc;
using k8s::Value;
using nlohmann::json;

const Value& EmptyObject() {
  static const Doc kEmpty = Doc::FromJson(json::object());
  return kEmpty;
}

const Value* Member(const Value& j, const char* key) {
  if (!j.is_object()) return nullptr;
  const auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

// A label's value as a string (labels are strings; a manifest may hold a number or boolean).
std::optional<std::string> LabelValue(const Value& labels, std::string_view key) {
  if (!labels.is_object()) return std::nullopt;
  const auto it = labels.find(key);
  if (it == labels.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string ValueString(const Value& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// Labels as an editable tree, for the label sets selectors are matched against.
json Editable(const Value* labels) {
  return labels && labels->is_object() ? labels->ToJson() : json::object();
}

// A namespace's labels, with the name label the API server sets on every namespace (since 1.21),
// also when the snapshot holds no Namespace object.
json NamespaceLabelsJson(const PodView& pod) {
  json out = Editable(pod.ns_labels);
  out["kubernetes.io/metadata.name"] = std::string(pod.ns);
  return out;
}
Doc NamespaceLabels(const PodView& pod) { return Doc::FromJson(NamespaceLabelsJson(pod)); }

// ---- Calico's selector language ----------------------------------------------------------

class CalicoParser {
 public:
  CalicoParser(std::string_view text, const Value& labels) : s_(text), labels_(labels) {}

  // The value of the whole expression; nullopt with error() set when it does not parse.
  std::optional<bool> Run() {
    Skip();
    if (pos_ == s_.size()) return true;  // empty: all()
    const auto v = Or();
    Skip();
    if (v && pos_ != s_.size())
      return Fail("unexpected '" + std::string(s_.substr(pos_, 10)) + "'");
    return v;
  }
  const std::string& error() const { return error_; }

 private:
  std::optional<bool> Fail(std::string message) {
    if (error_.empty()) error_ = message + " at offset " + std::to_string(pos_);
    return std::nullopt;
  }
  void Skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Eat(std::string_view token) {
    Skip();
    if (s_.substr(pos_, token.size()) != token) return false;
    pos_ += token.size();
    return true;
  }
  // A keyword such as `in`: not followed by a key character.
  bool EatWord(std::string_view word) {
    Skip();
    if (s_.substr(pos_, word.size()) != word) return false;
    const size_t end = pos_ + word.size();
    if (end < s_.size() && IsKeyChar(s_[end])) return false;
    pos_ = end;
    return true;
  }
  static bool IsKeyChar(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' ||
           c == '-';
  }
  std::optional<std::string> Key() {
    Skip();
    const size_t start = pos_;
    while (pos_ < s_.size() && IsKeyChar(s_[pos_])) ++pos_;
    if (pos_ == start) {
      Fail("expected a label key");
      return std::nullopt;
    }
    return std::string(s_.substr(start, pos_ - start));
  }
  std::optional<std::string> Quoted() {
    Skip();
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) {
      Fail("expected a quoted string");
      return std::nullopt;
    }
    const char quote = s_[pos_++];
    const size_t end = s_.find(quote, pos_);
    if (end == std::string_view::npos) {
      Fail("unterminated string");
      return std::nullopt;
    }
    std::string out(s_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }
  std::optional<std::set<std::string>> Set() {
    if (!Eat("{")) {
      Fail("expected '{'");
      return std::nullopt;
    }
    std::set<std::string> out;
    if (Eat("}")) return out;
    for (;;) {
      auto v = Quoted();
      if (!v) return std::nullopt;
      out.insert(*v);
      if (Eat("}")) return out;
      if (!Eat(",")) {
        Fail("expected ',' or '}'");
        return std::nullopt;
      }
    }
  }

  std::optional<bool> Or() {
    auto left = And();
    while (left && Eat("||")) {
      const auto right = And();
      if (!right) return std::nullopt;
      left = *left || *right;
    }
    return left;
  }
  std::optional<bool> And() {
    auto left = Unary();
    while (left && Eat("&&")) {
      const auto right = Unary();
      if (!right) return std::nullopt;
      left = *left && *right;
    }
    return left;
  }
  std::optional<bool> Unary() {
    Skip();
    if (pos_ < s_.size() && s_[pos_] == '!' && s_.substr(pos_, 2) != "!=") {
      ++pos_;
      const auto v = Unary();
      if (!v) return std::nullopt;
      return !*v;
    }
    if (Eat("(")) {
      const auto v = Or();
      if (!v) return std::nullopt;
      if (!Eat(")")) return Fail("expected ')'");
      return v;
    }
    return Term();
  }
  std::optional<bool> Term() {
    if (EatWord("all")) {
      if (!Eat("(") || !Eat(")")) return Fail("expected all()");
      return true;
    }
    // global() selects objects outside namespaces (host endpoints), never a pod.
    if (EatWord("global")) {
      if (!Eat("(") || !Eat(")")) return Fail("expected global()");
      return false;
    }
    if (EatWord("has")) {
      if (!Eat("(")) return Fail("expected has(key)");
      const auto key = Key();
      if (!key) return std::nullopt;
      if (!Eat(")")) return Fail("expected ')'");
      return LabelValue(labels_, *key).has_value();
    }
    const auto key = Key();
    if (!key) return std::nullopt;
    const auto value = LabelValue(labels_, *key);
    if (Eat("==")) {
      const auto v = Quoted();
      if (!v) return std::nullopt;
      return value && *value == *v;
    }
    if (Eat("!=")) {
      const auto v = Quoted();
      if (!v) return std::nullopt;
      return !value || *value != *v;
    }
    if (EatWord("not")) {
      if (!EatWord("in")) return Fail("expected 'not in'");
      const auto set = Set();
      if (!set) return std::nullopt;
      return !value || !set->contains(*value);
    }
    if (EatWord("in")) {
      const auto set = Set();
      if (!set) return std::nullopt;
      return value && set->contains(*value);
    }
    if (EatWord("contains")) {
      const auto v = Quoted();
      if (!v) return std::nullopt;
      return value && value->find(*v) != std::string::npos;
    }
    if (EatWord("starts")) {
      if (!EatWord("with")) return Fail("expected 'starts with'");
      const auto v = Quoted();
      if (!v) return std::nullopt;
      return value && value->starts_with(*v);
    }
    if (EatWord("ends")) {
      if (!EatWord("with")) return Fail("expected 'ends with'");
      const auto v = Quoted();
      if (!v) return std::nullopt;
      return value && value->ends_with(*v);
    }
    return Fail("expected an operator after '" + *key + "'");
  }

  std::string_view s_;
  const Value& labels_;
  size_t pos_ = 0;
  std::string error_;
};

// ---- Cilium ------------------------------------------------------------------------------------

// The labels Cilium gives a pod's endpoint: its own, its namespace's name and labels, its
// service account (all from the `k8s` source).
Doc CiliumLabels(const PodView& pod) {
  json out = Editable(pod.pod_labels);
  out["io.kubernetes.pod.namespace"] = std::string(pod.ns);
  out["io.cilium.k8s.policy.serviceaccount"] = std::string(pod.service_account);
  const json ns_labels = NamespaceLabelsJson(pod);
  for (const auto& [k, v] : ns_labels.items()) {
    out["io.cilium.k8s.namespace.labels." + k] = v;
  }
  return Doc::FromJson(out);
}

// A Cilium selector: keys may carry a source (`k8s:app`, `any:app`); other sources (`reserved:`,
// `cidr:`) never name a pod label, so the selector cannot select a pod. Rewritten as a plain
// LabelSelector, or null when it cannot select pods.
std::optional<Doc> PlainCiliumSelector(const Value& selector) {
  const auto strip = [](std::string_view key) -> std::optional<std::string> {
    const size_t colon = key.find(':');
    if (colon == std::string::npos) return std::string(key);
    const std::string_view source = key.substr(0, colon);
    if (source == "k8s" || source == "any") return std::string(key.substr(colon + 1));
    return std::nullopt;
  };
  json out = json::object();
  if (const auto* labels = Member(selector, "matchLabels"); labels && labels->is_object()) {
    out["matchLabels"] = json::object();
    for (const auto& [k, v] : labels->items()) {
      const auto key = strip(k);
      if (!key) return std::nullopt;
      out["matchLabels"][*key] = v.ToJson();
    }
  }
  if (const auto* exprs = Member(selector, "matchExpressions"); exprs && exprs->is_array()) {
    out["matchExpressions"] = json::array();
    for (const auto& expr : *exprs) {
      json e = expr.ToJson();
      if (const auto* k = Member(expr, "key"); k && k->is_string()) {
        const auto key = strip(k->str());
        if (!key) return std::nullopt;
        e["key"] = *key;
      }
      out["matchExpressions"].push_back(std::move(e));
    }
  }
  return Doc::FromJson(out);
}

Selection CiliumSelects(const k8s::Object& policy, const PodView& pod, bool clusterwide) {
  if (!clusterwide && policy.ns != pod.ns) return {};
  std::vector<const Value*> selectors;
  const auto collect = [&](const Value& spec) {
    // A spec with nodeSelector (a host policy) and no endpointSelector selects no pod.
    if (const auto* s = Member(spec, "endpointSelector")) selectors.push_back(s);
  };
  if (const auto* spec = Member(policy.doc, "spec")) collect(*spec);
  if (const auto* specs = Member(policy.doc, "specs"); specs && specs->is_array()) {
    for (const auto& s : *specs) collect(s);
  }
  const Doc labels = CiliumLabels(pod);
  Selection out;
  for (const auto* s : selectors) {
    const auto plain = PlainCiliumSelector(*s);
    if (!plain) continue;
    std::string error;
    if (LabelSelectorMatches(&*plain, labels, &error)) return {.selects = true, .error = ""};
    if (!error.empty()) out.error = "endpointSelector: " + error;
  }
  return out;
}

// ---- Calico ------------------------------------------------------------------------------------

Selection CalicoSelects(const k8s::Object& policy, const PodView& pod, bool global) {
  if (!global && policy.ns != pod.ns) return {};
  const Value* spec = Member(policy.doc, "spec");
  const Value& s = spec ? *spec : EmptyObject();
  // Untracked and pre-DNAT policies apply to host endpoints only.
  for (const char* host_only : {"doNotTrack", "preDNAT"}) {
    if (const auto* v = Member(s, host_only); v && v->is_boolean() && v->get<bool>()) return {};
  }
  const auto text = [&](const char* key) {
    const auto* v = Member(s, key);
    return v && v->is_string() ? v->get<std::string>() : std::string();
  };
  json editable = Editable(pod.pod_labels);
  editable["projectcalico.org/namespace"] = std::string(pod.ns);
  editable["projectcalico.org/orchestrator"] = "k8s";
  editable["projectcalico.org/serviceaccount"] = std::string(pod.service_account);
  const Doc labels = Doc::FromJson(editable);
  // The parsers hold views: the texts live here.
  const std::string selector_text = text("selector"), ns_text = text("namespaceSelector");
  CalicoParser selector(selector_text, labels);
  const auto selected = selector.Run();
  if (!selected) return {.selects = false, .error = "selector: " + selector.error()};
  if (!*selected) return {};
  if (global) {
    json ns_labels = NamespaceLabelsJson(pod);
    ns_labels["projectcalico.org/name"] = std::string(pod.ns);
    const Doc ns_doc = Doc::FromJson(ns_labels);
    CalicoParser ns_selector(ns_text, ns_doc);
    const auto in_ns = ns_selector.Run();
    if (!in_ns) return {.selects = false, .error = "namespaceSelector: " + ns_selector.error()};
    if (!*in_ns) return {};
  }
  const std::string sa = text("serviceAccountSelector");
  if (!sa.empty()) {
    const Doc sa_labels =
        Doc::FromJson(json{{"projectcalico.org/name", std::string(pod.service_account)}});
    CalicoParser sa_selector(sa, sa_labels);
    const auto by_sa = sa_selector.Run();
    if (!by_sa) {
      return {.selects = false, .error = "serviceAccountSelector: " + sa_selector.error()};
    }
    if (!*by_sa) return {};
  }
  return {.selects = true, .error = ""};
}

// ---- AdminNetworkPolicy ------------------------------------------------------------------------

Selection AdminSelects(const k8s::Object& policy, const PodView& pod) {
  const Value* subject = Member(policy.doc, "spec");
  subject = subject ? Member(*subject, "subject") : nullptr;
  if (subject == nullptr) return {};
  const Doc ns_labels = NamespaceLabels(pod);
  const Value& pod_labels = pod.pod_labels ? *pod.pod_labels : EmptyObject();
  std::string error;
  if (const auto* namespaces = Member(*subject, "namespaces")) {
    const bool in = LabelSelectorMatches(namespaces, ns_labels, &error);
    return {.selects = in, .error = error.empty() ? "" : "subject.namespaces: " + error};
  }
  if (const auto* pods = Member(*subject, "pods")) {
    const bool in = LabelSelectorMatches(Member(*pods, "namespaceSelector"), ns_labels, &error) &&
                    LabelSelectorMatches(Member(*pods, "podSelector"), pod_labels, &error);
    return {.selects = in, .error = error.empty() ? "" : "subject.pods: " + error};
  }
  return {};
}

}  // namespace

const std::vector<std::string>& NetworkPolicyKinds() {
  static const std::vector<std::string> kKinds = {"NetworkPolicy",
                                                  "CiliumNetworkPolicy",
                                                  "CiliumClusterwideNetworkPolicy",
                                                  "NetworkPolicy.projectcalico.org",
                                                  "GlobalNetworkPolicy",
                                                  "AdminNetworkPolicy",
                                                  "BaselineAdminNetworkPolicy"};
  return kKinds;
}

bool IsClusterWidePolicyKind(std::string_view kind) {
  return kind == "CiliumClusterwideNetworkPolicy" || kind == "GlobalNetworkPolicy" ||
         kind == "AdminNetworkPolicy" || kind == "BaselineAdminNetworkPolicy";
}

bool LabelSelectorMatches(const Value* selector, const Value& labels, std::string* error) {
  if (selector == nullptr || selector->is_null()) return false;
  if (!selector->is_object()) {
    if (error) *error = "not an object";
    return false;
  }
  if (const auto* match = Member(*selector, "matchLabels"); match && match->is_object()) {
    for (const auto& [k, v] : match->items()) {
      const auto have = LabelValue(labels, k);
      if (!have || *have != ValueString(v)) return false;
    }
  }
  const auto* exprs = Member(*selector, "matchExpressions");
  if (exprs == nullptr || !exprs->is_array()) return true;
  for (const auto& e : *exprs) {
    const auto* key = Member(e, "key");
    const auto* op = Member(e, "operator");
    if (key == nullptr || !key->is_string() || op == nullptr || !op->is_string()) {
      if (error) *error = "a matchExpressions entry without key or operator";
      return false;
    }
    std::set<std::string> values;
    if (const auto* vs = Member(e, "values"); vs && vs->is_array()) {
      for (const auto& v : *vs) values.insert(ValueString(v));
    }
    const auto have = LabelValue(labels, key->str());
    const std::string o = op->get<std::string>();
    bool ok;
    if (o == "In") {
      ok = have && values.contains(*have);
    } else if (o == "NotIn") {
      ok = !have || !values.contains(*have);
    } else if (o == "Exists") {
      ok = have.has_value();
    } else if (o == "DoesNotExist") {
      ok = !have.has_value();
    } else {
      if (error) *error = "unknown operator '" + o + "'";
      return false;
    }
    if (!ok) return false;
  }
  return true;
}

bool CalicoSelectorMatches(std::string_view expr, const Value& labels, std::string* error) {
  CalicoParser p(expr, labels);
  const auto v = p.Run();
  if (!v && error) *error = p.error();
  return v.value_or(false);
}

Selection PolicySelects(const k8s::Object& policy, const PodView& pod) {
  const std::string& kind = policy.kind;
  if (kind == "NetworkPolicy") {
    if (policy.ns != pod.ns) return {};
    const Value* spec = Member(policy.doc, "spec");
    const Value* selector = spec ? Member(*spec, "podSelector") : nullptr;
    // podSelector is required; the API server stores an empty one as `{}`.
    std::string error;
    const bool in = LabelSelectorMatches(selector ? selector : &EmptyObject(),
                                         pod.pod_labels ? *pod.pod_labels : EmptyObject(), &error);
    return {.selects = in, .error = error.empty() ? "" : "podSelector: " + error};
  }
  if (kind == "CiliumNetworkPolicy") return CiliumSelects(policy, pod, false);
  if (kind == "CiliumClusterwideNetworkPolicy") return CiliumSelects(policy, pod, true);
  if (kind == "NetworkPolicy.projectcalico.org") return CalicoSelects(policy, pod, false);
  if (kind == "GlobalNetworkPolicy") return CalicoSelects(policy, pod, true);
  if (kind == "AdminNetworkPolicy" || kind == "BaselineAdminNetworkPolicy") {
    return AdminSelects(policy, pod);
  }
  return {};
}

}  // namespace kspm::collector::cluster

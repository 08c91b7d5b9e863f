// Evaluating a check: applicability (component present, profile, only_if, the client
// certificate), then the evaluator of the check's kind (settings.cc, files.cc, audit_rules.cc,
// encryption.cc).
#include "kspm/agent/checks/evaluator.h"

#include <algorithm>
#include <map>

#include "kspm/agent/checks/evaluate_kinds.h"
#include "kspm/common/names.h"
#include "kspm/common/strings.h"

namespace kspm::agent::checks {
namespace {

using discovery::Component;
using internal::MakeEvidence;

// One evaluator per kind of check, and what its result expects.
struct KindEvaluator {
  void (*evaluate)(const Check&, const Component&, const host::HostView&, v1::CheckResult&);
  std::string (*expected)(const Check&);
};

const KindEvaluator& EvaluatorOf(CheckKind kind) {
  static const std::map<CheckKind, KindEvaluator> kRegistry = {
      {CheckKind::kSettings,
       {internal::EvaluateSettings, [](const Check& c) { return c.expect.Describe(); }}},
      {CheckKind::kFiles,
       {internal::EvaluateFiles, [](const Check& c) { return c.expect.Describe(); }}},
      {CheckKind::kAudit,
       {internal::EvaluateAudit,
        [](const Check&) { return std::string("an auditd rule watching the path (-w PATH)"); }}},
      {CheckKind::kEncryption,
       {internal::EvaluateEncryption,
        [](const Check&) {
          return std::string(
              "the first provider of the first entry listing secrets is kms, aescbc, aesgcm or "
              "secretbox");
        }}},
      {CheckKind::kManual, {nullptr, [](const Check&) { return std::string(); }}},
  };
  return kRegistry.at(kind);
}

bool Matches(const Check& check, const std::string& benchmark_id,
             const std::set<std::string>& ids) {
  if (ids.contains(check.id)) return true;
  for (const auto& id : ids) {
    if (benchmark_id == id || (benchmark_id.starts_with(id + "."))) return true;
  }
  return false;
}

}  // namespace

// Whether the kubeconfig of file role `role` authenticates with a client certificate. False (and
// `why` says how it does authenticate) only when the file is read and its user has none but an
// exec plugin, a token or an auth provider; a file that cannot be read or parsed says nothing,
// and the check applies.
bool AuthenticatesWithClientCertificate(const Component& c, const std::string& role,
                                        const host::HostView& host, v1::CheckResult& out,
                                        std::string* why) {
  const auto file = c.files.find(role);
  if (file == c.files.end() || file->second.path.empty()) return true;
  const std::string& path = file->second.path;
  auto text = host.ReadFile(path);
  if (!text.ok()) return true;
  auto parsed = discovery::ParseYaml(*text, path);  // bounded: aliases, nesting
  if (!parsed.ok()) return true;
  const YAML::Node root = *parsed;
  if (!root.IsMap() || !root["users"] || !root["users"].IsSequence()) return true;
  // The user of the current context, or the only user.
  std::string user_name;
  const std::string current = root["current-context"] && root["current-context"].IsScalar()
                                  ? root["current-context"].Scalar()
                                  : "";
  if (root["contexts"] && root["contexts"].IsSequence()) {
    for (const auto& ctx : root["contexts"]) {
      if (ctx["name"] && ctx["name"].Scalar() == current && ctx["context"] &&
          ctx["context"]["user"]) {
        user_name = ctx["context"]["user"].Scalar();
      }
    }
  }
  YAML::Node user;
  for (const auto& u : root["users"]) {
    if ((user_name.empty() && root["users"].size() == 1) ||
        (u["name"] && u["name"].Scalar() == user_name)) {
      user = u["user"];
    }
  }
  if (!user || !user.IsMap()) return true;
  if (user["client-certificate"] || user["client-certificate-data"]) return true;
  std::string how;
  if (user["exec"] && user["exec"]["command"]) {
    how = "an exec plugin (" + user["exec"]["command"].Scalar() + ")";
  } else if (user["token"] || user["tokenFile"]) {
    how = "a bearer token";
  } else if (user["auth-provider"]) {
    how = "an auth provider";
  } else {
    return true;
  }
  *out.add_evidence() =
      MakeEvidence("users[" + (user_name.empty() ? std::string("0") : user_name) + "]", how, true,
                   v1::SOURCE_KIND_CONFIG_FILE, file->second.how, path);
  *why = c.name + " authenticates to the API server with " + how + " (" + path +
         "), not with a client certificate the API server issued: there is none to rotate";
  return false;
}

v1::CheckResult Evaluate(const Check& check, const std::string& benchmark,
                         const host::HostView& host, const discovery::HostState& state) {
  v1::CheckResult out;
  out.set_check_id(check.id);
  out.set_benchmark(benchmark);
  if (auto it = check.benchmarks.find(benchmark); it != check.benchmarks.end()) {
    out.set_benchmark_id(it->second);
  }
  out.set_title(check.title);
  out.set_scored(check.ScoredIn(benchmark));
  out.set_severity(check.severity);
  out.set_remediation(check.remediation);
  out.set_component(check.component);
  const KindEvaluator& kind = EvaluatorOf(check.kind);
  out.set_expected(kind.expected(check));

  if (const auto na = check.not_applicable_in.find(benchmark);
      na != check.not_applicable_in.end()) {
    out.set_status(v1::STATUS_NOT_APPLICABLE);
    out.set_reason(na->second);
    return out;
  }
  const auto it = state.components.find(check.component);
  if (it == state.components.end()) {
    out.set_status(v1::STATUS_ERROR);
    out.set_reason("check " + check.id + " names unknown component '" + check.component + "'");
    return out;
  }
  const Component& c = it->second;
  if (!c.present) {
    out.set_status(v1::STATUS_NOT_APPLICABLE);
    out.set_reason(c.absent_reason);
    return out;
  }
  if (check.kind == CheckKind::kManual) {
    out.set_status(v1::STATUS_MANUAL);
    out.set_reason(check.manual);
    return out;
  }
  if (check.only_if) {
    // The item applies only in some configurations (Docker 2.7: a TCP listener).
    const ResolvedSetting pre = ResolveSetting(c, check.only_if->setting);
    std::string why;
    if (!pre.error && (!pre.found || !Meets(check.only_if->expect, check.only_if->setting.type,
                                            pre.value, &why))) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason("applies only when " + check.only_if->setting.Describe() + " " +
                     check.only_if->expect.Describe() + "; it is " +
                     (pre.found && !pre.value.empty() ? pre.value : "not set"));
      for (const auto& e : pre.evidence) *out.add_evidence() = e;
      return out;
    }
  }
  if (!check.only_if_client_certificate.empty()) {
    std::string why;
    if (!AuthenticatesWithClientCertificate(c, check.only_if_client_certificate, host, out, &why)) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason(why);
      return out;
    }
  }
  kind.evaluate(check, c, host, out);
  return out;
}

bool IsKubernetesBenchmark(const std::string& benchmark) {
  return common::IsKubernetesBenchmark(benchmark);
}

std::vector<std::string> UnknownSelectors(const Catalog& catalog,
                                          const std::set<std::string>& selectors) {
  std::vector<std::string> unknown;
  for (const auto& id : selectors) {
    const std::set<std::string> one{id};
    const bool known =
        std::any_of(catalog.checks().begin(), catalog.checks().end(), [&one](const Check& check) {
          return std::any_of(check.benchmarks.begin(), check.benchmarks.end(),
                             [&](const auto& b) { return Matches(check, b.second, one); });
        });
    if (!known) unknown.push_back(id);
  }
  return unknown;
}

std::vector<v1::CheckResult> EvaluateAll(const Catalog& catalog, const Selection& selection,
                                         const host::HostView& host,
                                         const discovery::HostState& state,
                                         const std::set<std::string>* components) {
  std::vector<v1::CheckResult> out;
  out.reserve(catalog.checks().size());
  for (const auto& check : catalog.checks()) {
    if (components != nullptr && !components->contains(check.component)) continue;
    for (const auto& [benchmark, item] : check.benchmarks) {
      if (!selection.benchmarks.empty() && !selection.benchmarks.contains(benchmark)) continue;
      if (!selection.only.empty() && !Matches(check, item, selection.only)) continue;
      if (Matches(check, item, selection.skip)) continue;
      out.push_back(Evaluate(check, benchmark, host, state));
    }
  }
  return out;
}

}  // namespace kspm::agent::checks

// Every check of the catalogue, generated from its own definition: a host where it passes, one
// where it fails, one where it does not apply, and (for settings) one where it cannot be
// evaluated. A catalogue entry whose expectation, default or file role is wrong fails here.
#include <gtest/gtest.h>
#include <unistd.h>

#include "fixtures/host_builder.h"
#include "kspm/agent/checks/evaluator.h"
#include "kspm/common/names.h"
#include "kspm/common/render.h"

namespace kspm::agent::checks {
namespace {

using Op = Expectation::Op;

// A value that meets (or misses) an expectation, in the setting's type.
std::optional<std::string> Value(const Expectation& e, ValueType type, bool pass) {
  auto other = [&](const std::string& v) -> std::string {
    switch (type) {
      case ValueType::kBool:
        return ParseBool(v).value_or(false) ? "false" : "true";
      case ValueType::kInt:
        return std::to_string(ParseInt(v).value_or(0) + 1);
      case ValueType::kDuration:
        return v == "1h0m0s" ? "2h0m0s" : "1h0m0s";
      default:
        return "KspmOther";
    }
  };
  switch (e.op) {
    case Op::kEquals:
      return pass ? e.value : other(e.value);
    case Op::kNotEquals:
      return pass ? other(e.value) : e.value;
    case Op::kAtLeast:
      if (type == ValueType::kDuration) return pass ? "8760h0m0s" : "0s";
      return std::to_string(ParseInt(e.value).value_or(0) + (pass ? 0 : -1));
    case Op::kAtMost:
      return std::to_string(ParseInt(e.value).value_or(0) + (pass ? 0 : 1));
    case Op::kContains:
      return pass ? "KspmOther," + e.value : "KspmOther";
    case Op::kNotContains:
      return pass ? "KspmOther" : "KspmOther," + e.value;
    case Op::kSubsetOf:
      return pass ? e.values.front() : e.values.front() + ",TLS_RSA_WITH_RC4_128_SHA";
    case Op::kPresent:
      return pass ? std::optional<std::string>("/etc/kspm/set-by-test") : std::nullopt;
    case Op::kAbsent:
      return pass ? std::nullopt : std::optional<std::string>("/etc/kspm/set-by-test");
    case Op::kNonZero:
      return type == ValueType::kDuration ? (pass ? "5m0s" : "0s") : (pass ? "5" : "0");
    case Op::kLoopback:
      return pass ? "127.0.0.1:10249" : "0.0.0.0:10249";
    case Op::kAnyStartsWith:
      return pass ? e.value + "x" : "unix:///x";
    default:
      return std::nullopt;
  }
}

std::string ProcessLine(const ComponentSpec& spec, const std::vector<std::string>& flags,
                        bool truncated = false) {
  std::string argv = "[";
  for (const auto& w : spec.processes.front()) argv += "\"" + w + "\", ";
  for (const auto& f : flags) argv += "\"" + f + "\", ";
  argv += "]";
  return "  - {pid: 4242, comm: \"" + spec.processes.front()[0].substr(0, 15) +
         "\", argv: " + argv + (truncated ? ", truncated: true" : "") + "}\n";
}

std::string FlagFor(const SettingSpec& s, const std::string& value) {
  if (!s.map_key.empty()) return "--" + s.flag + "=" + s.map_key + "=" + value;
  return "--" + s.flag + "=" + value;
}

struct Item {
  const Check* check;
  const ComponentSpec* component;
};

class CatalogItem : public ::testing::TestWithParam<Item> {
 protected:
  v1::CheckResult Run(const std::string& description) {
    kspm::testing::TempDir dir;
    bool owners = false;
    EXPECT_TRUE(kspm::testing::BuildHostRoot(description, dir.path(), &owners).ok()) << description;
    auto host = host::MakeFsHostView(dir.path());
    const auto state = discovery::Discover(**host, TheCatalog());
    const auto& c = *GetParam().check;
    return Evaluate(c, Benchmark(c), **host, state);
  }
  // The benchmark each item is judged under here: the first, as the check scores it itself.
  static std::string Benchmark(const Check& c) {
    for (const auto& [b, id] : c.benchmarks) {
      if (c.ScoredIn(b) == c.scored) return b;
    }
    return c.benchmarks.begin()->first;
  }
  static const Catalog& TheCatalog() {
    static const checks::Catalog catalog = *checks::Catalog::Builtin();
    return catalog;
  }
  // Flags that satisfy an only_if precondition.
  std::vector<std::string> Preconditions() const {
    const auto& c = *GetParam().check;
    if (!c.only_if) return {};
    return {FlagFor(c.only_if->setting, *Value(c.only_if->expect, c.only_if->setting.type, true))};
  }
  void Expect(const v1::CheckResult& r, v1::Status want, const std::string& what) {
    EXPECT_EQ(common::StatusName(r.status()), common::StatusName(want))
        << GetParam().check->id << " (" << what << "): " << r.reason() << " ["
        << common::EvidenceSummary(r) << "]";
    EXPECT_FALSE(r.reason().empty());
  }
};

TEST_P(CatalogItem, PassesFailsDoesNotApplyAndErrs) {
  const Check& c = *GetParam().check;
  const ComponentSpec& comp = *GetParam().component;
  const v1::Status fail = c.scored ? v1::STATUS_FAIL : v1::STATUS_WARN;
  // Not applicable: nothing of the component on the host.
  Expect(Run("entries: []\n"), v1::STATUS_NOT_APPLICABLE, "absent component");
  if (!c.manual.empty()) {
    Expect(Run("processes:\n" + ProcessLine(comp, Preconditions())), v1::STATUS_MANUAL, "manual");
    return;
  }
  if (!c.settings.empty()) {
    for (bool pass : {true, false}) {
      std::vector<std::string> flags = Preconditions();
      for (size_t i = 0; i < c.settings.size(); ++i) {
        const auto& s = c.settings[i];
        ASSERT_FALSE(s.flag.empty()) << c.id << " reads a setting without a flag";
        // To fail, one setting missing the expectation is enough; the others pass.
        const auto v = Value(c.expect, s.type, pass || i > 0);
        if (v) flags.push_back(FlagFor(s, *v));
      }
      Expect(Run("processes:\n" + ProcessLine(comp, flags)), pass ? v1::STATUS_PASS : fail,
             pass ? "passing flags" : "failing flags");
    }
    // Error: the command line is cut and the flag may be in the lost part.
    Expect(Run("processes:\n" + ProcessLine(comp, Preconditions(), true)), v1::STATUS_ERROR,
           "truncated command line");
    return;
  }
  if (c.audit) {
    std::vector<std::string> flags = Preconditions();
    std::string path = c.audit->path;
    if (path.empty()) path = comp.files.at(c.audit->role).candidates.front();
    const std::string base = "entries:\n  - {path: \"" + path + "\", content: x}\n";
    const std::string procs = "processes:\n" + ProcessLine(comp, flags);
    Expect(Run(base + "  - {path: /etc/audit/rules.d/docker.rules, content: \"-w " + path +
               " -p wa -k docker\\n\"}\n" + procs),
           v1::STATUS_PASS, "rule present");
    Expect(
        Run(base +
            "  - {path: /etc/audit/rules.d/other.rules, content: \"-w /etc/passwd -k id\\n\"}\n" +
            procs),
        fail, "no rule");
    Expect(Run("processes:\n" + ProcessLine(comp, flags)), v1::STATUS_NOT_APPLICABLE,
           "nothing to audit");
    return;
  }
  if (c.encryption) {
    const std::string path = "/etc/kspm-test/encryption.yaml";
    const std::string procs =
        "processes:\n" +
        ProcessLine(comp, {"--" + comp.files.at(c.encryption->role).flag + "=" + path});
    auto config = [&](const std::string& first) {
      return "entries:\n  - path: " + path +
             "\n    content: |\n      kind: EncryptionConfiguration\n      resources:\n"
             "        - resources: [secrets]\n          providers:\n            - " +
             first + "\n            - identity: {}\n" + procs;
    };
    Expect(Run(config("aescbc: {keys: [{name: k1, secret: c2VjcmV0}]}")), v1::STATUS_PASS,
           "aescbc first");
    Expect(Run(config("identity: {}")), fail, "identity first");
    Expect(Run(procs), v1::STATUS_ERROR, "named file missing");
    Expect(Run("processes:\n" + ProcessLine(comp, {})), fail, "no encryption config");
    Expect(Run("processes:\n" + ProcessLine(comp, {}, true)), v1::STATUS_ERROR,
           "truncated command line");
    return;
  }
  ASSERT_TRUE(c.file.has_value()) << c.id;
  if (c.expect.op == Op::kOwner && ::geteuid() != 0) GTEST_SKIP() << "owners need root";
  // The file: named through its role's flag, or a literal path, or one file under the walk.
  std::vector<std::string> flags = Preconditions();
  std::string path;
  const auto& f = *c.file;
  if (!f.role.empty()) {
    if (f.role == "config" && comp.config) {
      path = comp.config->default_path.empty() ? "/etc/kspm-test/config.yaml"
                                               : comp.config->default_path;
      if (!comp.config->flag.empty()) flags.push_back("--" + comp.config->flag + "=" + path);
    } else {
      const auto& role = comp.files.at(f.role);
      path = role.flag.empty() ? role.candidates.front() : "/etc/kspm-test/" + f.role;
      if (!role.flag.empty()) flags.push_back("--" + role.flag + "=" + path);
    }
  } else if (!f.paths.empty()) {
    path = f.paths.front();
  } else {
    path = f.walk.front() + "/item" + (f.match.empty() ? ".conf" : f.match.front());
  }
  const bool dir =
      c.id.find("data-dir") != std::string::npos || (path == "/etc/docker" && f.walk.empty());
  const bool socket = c.id.find("sock") != std::string::npos;
  const std::string type = dir ? "dir" : (socket ? "socket" : "file");
  auto host_with = [&](const std::string& mode, const std::string& owner) {
    std::string d =
        "users: [{name: etcd, uid: 2379}, {name: nobody2, uid: 4321}]\n"
        "groups: [{name: etcd, gid: 2379}, {name: docker, gid: 998}, "
        "{name: nobody2, gid: 4321}]\nentries:\n";
    d += "  - {path: \"" + path + "\", type: " + type + ", mode: \"" + mode + "\", owner: \"" +
         owner + "\", content: \"{}\"}\n";
    if (c.component == "kubelet" && f.role != "config") {
      d += "  - {path: /etc/kspm-test/config.yaml, content: \"{}\"}\n";
    }
    return d + "processes:\n" + ProcessLine(comp, flags);
  };
  if (c.expect.op == Op::kModeAtMost) {
    const std::string mask = c.expect.value.size() < 4 ? "0" + c.expect.value : c.expect.value;
    const unsigned allowed = std::stoul(mask, nullptr, 8);
    char failing[16];
    std::snprintf(failing, sizeof failing, "0%o", allowed | 0002);
    Expect(Run(host_with(mask, "root:root")), v1::STATUS_PASS, "mode " + mask);
    Expect(Run(host_with(failing, "root:root")), fail, std::string("mode ") + failing);
  } else if (c.expect.op == Op::kOwner) {
    Expect(Run(host_with("0600", c.expect.values.front())), v1::STATUS_PASS, "owner");
    Expect(Run(host_with("0600", "nobody2:nobody2")), fail, "wrong owner");
  }
}

std::vector<Item> AllItems() {
  static const Catalog catalog = *Catalog::Builtin();
  std::vector<Item> out;
  for (const auto& c : catalog.checks()) out.push_back({&c, catalog.FindComponent(c.component)});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Catalogue, CatalogItem, ::testing::ValuesIn(AllItems()),
                         [](const auto& info) {
                           std::string name = info.param.check->id;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace kspm::agent::checks

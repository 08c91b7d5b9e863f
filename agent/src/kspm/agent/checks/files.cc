// File checks: the modes and owners of the files a component uses, found from the component
// itself, then from known paths.
#include <algorithm>

#include "kspm/agent/checks/evaluate_kinds.h"
#include "kspm/common/strings.h"

namespace kspm::agent::checks::internal {
namespace {

// Collects the files a file check reads, with how each was found.
struct Target {
  std::string path;
  std::string how;
  bool named = false;
};
}  // namespace

void EvaluateFiles(const Check& check, const Component& c, const host::HostView& host,
                   v1::CheckResult& out) {
  const FileSpec& spec = *check.file;
  std::vector<Target> targets;
  std::vector<std::string> looked_at;
  if (!spec.role.empty()) {
    const auto it = c.files.find(spec.role);
    // The config role covers the drop-ins too: they configure the component as much as its
    // config file does (RKE2's kubelet has drop-ins only, k3s writes them 0600).
    std::vector<Target> dropins;
    if (spec.role == "config") {
      for (const auto& layer : c.layers) {
        if (layer.kind == v1::SOURCE_KIND_DROP_IN) {
          dropins.push_back(
              {layer.path,
               "drop-in of --" + (c.spec && c.spec->config ? c.spec->config->dropin_flag
                                                           : std::string("config-dir")),
               true});
        }
      }
    }
    if (it == c.files.end() && dropins.empty()) {
      std::string where;
      if (const auto* role = c.spec ? &c.spec->files : nullptr; role && role->contains(spec.role)) {
        const auto& r = role->at(spec.role);
        std::vector<std::string> sources;
        if (!r.flag.empty()) sources.push_back("--" + r.flag);
        if (!r.key.empty()) sources.push_back(r.key);
        if (!r.candidates.empty()) sources.push_back(common::Join(r.candidates, ", "));
        where = common::Join(sources, ", ");
      } else if (spec.role == "config" && c.spec && c.spec->config) {
        where = "--" + c.spec->config->flag;
      }
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason(c.name + " uses no " + spec.role + " file on this node" +
                     (where.empty() ? "" : " (looked at " + where + ")"));
      return;
    }
    if (it != c.files.end()) targets.push_back({it->second.path, it->second.how, it->second.named});
    targets.insert(targets.end(), dropins.begin(), dropins.end());
  }
  for (const auto& p : spec.paths) targets.push_back({p, "known path", false});
  if (!spec.walk.empty()) {
    std::vector<std::string> walked;
    for (const auto& top : spec.walk) {
      auto root = host.Stat(top);
      if (!root.ok()) {
        if (root.status().code() == absl::StatusCode::kNotFound) continue;
        out.set_status(v1::STATUS_ERROR);
        out.set_reason(std::string(root.status().message()));
        return;
      }
      walked.push_back(top);
      if (spec.include_dir) targets.push_back({top, "directory walked", false});
      std::vector<std::string> stack{top};
      size_t visited = 0;
      while (!stack.empty() && visited < 10000) {
        const std::string dir = stack.back();
        stack.pop_back();
        auto names = host.ListDir(dir);
        if (!names.ok()) {
          out.set_status(v1::STATUS_ERROR);
          out.set_reason(std::string(names.status().message()));
          return;
        }
        for (const auto& name : *names) {
          ++visited;
          const std::string path = dir + "/" + name;
          auto info = host.Stat(path);
          if (!info.ok()) continue;  // vanished or dangling: not a file the component can use
          if (info->IsDirectory()) {
            stack.push_back(path);
            continue;
          }
          const bool keep = spec.match.empty() ||
                            std::any_of(spec.match.begin(), spec.match.end(),
                                        [&](const std::string& m) { return name.ends_with(m); });
          if (keep) targets.push_back({path, "under " + top, false});
        }
      }
    }
    if (walked.empty() && targets.empty()) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason(common::Join(spec.walk, ", ") +
                     (spec.walk.size() == 1 ? " does not exist" : ": none exists") +
                     " on this node");
      return;
    }
    if (targets.empty()) {
      out.set_status(v1::STATUS_NOT_APPLICABLE);
      out.set_reason("no matching files under " + common::Join(walked, ", "));
      return;
    }
  }

  std::vector<std::string> failures;
  std::vector<std::string> missing_named;
  size_t present = 0;
  size_t shown = 0;
  for (const auto& t : targets) {
    auto info = host.Stat(t.path);
    if (!info.ok()) {
      if (info.status().code() == absl::StatusCode::kNotFound) {
        if (t.named) {
          missing_named.push_back(t.path + " (" + t.how + ")");
          *out.add_evidence() = MakeEvidence("exists", "false", true, v1::SOURCE_KIND_FILE_METADATA,
                                             t.path + ", " + t.how, t.path);
        }
        continue;
      }
      out.set_status(v1::STATUS_ERROR);
      out.set_reason(std::string(info.status().message()));
      return;
    }
    ++present;
    std::string actual;
    std::string key;
    bool ok = true;
    std::string why;
    switch (check.expect.op) {
      case Op::kModeAtMost: {
        key = "mode";
        actual = OctalMode(info->mode);
        // The catalogue holds at most four octal digits (ParseExpectation), so this cannot throw.
        uint32_t allowed = 0;
        for (char d : check.expect.value) allowed = allowed * 8 + static_cast<uint32_t>(d - '0');
        ok = (info->mode & ~allowed) == 0;
        if (!ok)
          why = "grants " + OctalMode(info->mode & ~allowed) + " beyond " + OctalMode(allowed);
        break;
      }
      case Op::kOwner: {
        key = "owner";
        actual = info->Owner();
        ok = std::find(check.expect.values.begin(), check.expect.values.end(), actual) !=
             check.expect.values.end();
        break;
      }
      case Op::kIsSocket: {
        key = "type";
        actual = info->IsSocket() ? "socket" : (info->IsDirectory() ? "directory" : "file");
        ok = info->IsSocket();
        break;
      }
      default:
        out.set_status(v1::STATUS_ERROR);
        out.set_reason("check " + check.id +
                       " compares a file with an operator that needs a value");
        return;
    }
    if (!ok || shown < kMaxFileEvidence) {
      std::string source = t.path;
      if (info->is_symlink) source += " -> " + info->resolved_path;
      source += ", " + t.how;
      *out.add_evidence() =
          MakeEvidence(key, actual, true, v1::SOURCE_KIND_FILE_METADATA, std::move(source), t.path);
      ++shown;
    }
    if (!ok) failures.push_back(t.path + " is " + actual + (why.empty() ? "" : " (" + why + ")"));
  }
  if (!missing_named.empty()) {
    out.set_status(FailStatus(out));
    out.set_reason(common::Join(missing_named, "; ") + ": named but missing");
    return;
  }
  if (present == 0) {
    out.set_status(v1::STATUS_NOT_APPLICABLE);
    std::vector<std::string> paths;
    for (const auto& t : targets) paths.push_back(t.path);
    out.set_reason(common::Join(paths, ", ") + (paths.size() == 1 ? " does" : " do") +
                   " not exist on this node");
    return;
  }
  if (!failures.empty()) {
    out.set_status(FailStatus(out));
    std::string reason = failures.size() > 3
                             ? std::to_string(failures.size()) + " of " + std::to_string(present) +
                                   " files fail, e.g. " + failures[0]
                             : common::Join(failures, "; ");
    out.set_reason(reason + "; expected " + out.expected());
  } else {
    out.set_status(v1::STATUS_PASS);
    out.set_reason(present == 1 ? targets[0].path + " meets " + out.expected()
                                : std::to_string(present) + " files meet " + out.expected());
  }
}

}  // namespace kspm::agent::checks::internal

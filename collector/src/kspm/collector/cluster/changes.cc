// A watched cluster's changes, re-evaluated and committed as partial reports.
#include <algorithm>
#include <map>

#include "kspm/collector/cluster/rbac.h"
#include "kspm/collector/cluster/report.h"
#include "kspm/collector/cluster/scanner.h"
#include "kspm/common/names.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::cluster {
namespace {

// Whether any workload is judged in the cluster (else per-workload checks are NOT_APPLICABLE as a
// whole, which only a whole evaluation says).
bool HasWorkloads(const k8s::Snapshot& snapshot, const SystemPolicy& policy) {
  for (const auto& kind : WorkloadKinds()) {
    for (const auto& o : snapshot.Of(kind)) {
      if (!policy.skip() || !policy.IsSystemNamespace(o.ns)) return true;
    }
  }
  return false;
}

std::string KeyText(const std::string& kind, const std::string& ns, const std::string& name) {
  return kind + " " + (ns.empty() ? "" : ns + "/") + name;
}

// Whether a drift event's `path` (common::ResourceKey of a result, perhaps with ` [container]`)
// is about `object` (`Kind ns/name`).
bool PathIsAbout(const std::string& path, const std::string& object) {
  return path == object || (path.starts_with(object) && path.compare(object.size(), 2, " [") == 0);
}

// The namespace a change is in, for checks judged per namespace: a Namespace is in itself.
const std::string& NamespaceOf(const ObjectChange& c) {
  return c.kind == "Namespace" ? c.name : c.ns;
}

// The checks a batch can change: whole, per workload for the workloads it changed, or per
// namespace for the namespaces it changed something in. Without any workload in the cluster,
// every check is evaluated whole (its verdict is the cluster-wide "no workloads").
Focus FocusOf(const ChangeBatch& batch, bool any_workload) {
  Focus focus;
  for (const auto& check : BuiltinCatalog()) {
    bool whole = false, per_workload = false, per_namespace = false;
    for (const auto& kind : batch.relisted) {
      // Any namespace, `default` included.
      whole |= ChangeCanAffect(check.evaluate, kind, "default");
    }
    // Checks of workloads' service-account tokens, and of namespaces' default accounts: a
    // binding reaches only the namespaces of the accounts it names.
    const bool through_accounts = check.evaluate == "workload-takeover" ||
                                  check.evaluate == "sa-token-automount" ||
                                  check.evaluate == "sa-default";
    for (const auto& c : batch.changes) {
      if (whole) break;
      if (!ChangeCanAffect(check.evaluate, c.kind, c.ns)) continue;
      if (any_workload && through_accounts && c.reaches) {
        per_namespace |= !c.reaches->empty();
        continue;
      }
      if (any_workload && JudgedPerWorkload(check.evaluate) && c.owner_change && !c.ns.empty()) {
        per_namespace = true;  // every workload of the namespace: dependents may move
      } else if (any_workload && JudgedPerWorkload(check.evaluate) && !c.workloads.empty()) {
        per_workload = true;
      } else if (any_workload && JudgedPerNamespace(check.evaluate, c.kind) &&
                 !NamespaceOf(c).empty()) {
        per_namespace = true;
      } else {
        whole = true;
      }
    }
    if (whole) {
      focus.checks.insert(check.id);
    } else if (per_namespace) {
      // Judged for whole namespaces (those of every change), which covers any workload in them.
      focus.namespace_checks.insert(check.id);
    } else if (per_workload) {
      focus.workload_checks.insert(check.id);
    }
  }
  for (const auto& c : batch.changes) {
    if (!focus.workload_checks.empty()) {
      focus.workloads.insert(c.workloads.begin(), c.workloads.end());
    }
    if (focus.namespace_checks.empty()) continue;
    if (c.reaches) {
      focus.namespaces.insert(c.reaches->begin(), c.reaches->end());
    } else if (!NamespaceOf(c).empty()) {
      focus.namespaces.insert(NamespaceOf(c));
    }
  }
  return focus;
}

}  // namespace

absl::StatusOr<PeriodicClusterScan::ChangeStats> PeriodicClusterScan::RunChanges() {
  std::lock_guard run(run_mu_);
  ChangeStats out;
  const auto started = common::Clock::now();
  std::map<std::string, const CheckDef*> checks;
  for (const auto& c : BuiltinCatalog()) checks[c.id] = &c;
  const auto scan = [&](const k8s::Snapshot& snapshot, const std::string& version) -> absl::Status {
    // Taken while the objects cannot change: every change in the batch is in them.
    ChangeBatch batch = source_->TakeChanges();
    if (batch.empty()) return absl::OkStatus();
    out.changes = batch.changes.size() + batch.relisted.size();
    out.oldest_seen = started;
    for (const auto& c : batch.changes) out.oldest_seen = std::min(out.oldest_seen, c.seen);
    const Focus focus = FocusOf(batch, HasWorkloads(snapshot, settings_.policy));
    out.checks = focus.checks.size();
    out.workload_checks = focus.workload_checks.size();
    out.workloads = focus.workloads.size();
    out.namespace_checks = focus.namespace_checks.size();
    if (focus.checks.empty() && focus.workload_checks.empty() && focus.namespace_checks.empty()) {
      return absl::OkStatus();
    }

    ScanOptions options;
    options.workloads_per_part = settings_.workloads_per_part;
    options.policy = settings_.policy;
    options.exceptions = &exceptions_;
    options.now = started;
    options.focus = &focus;
    // Indexing 45,000 roles and bindings costs more than judging one workload: the index is
    // kept until an RBAC object changes.
    const std::array<uint64_t, 5> rbac_key = {
        reinterpret_cast<uintptr_t>(&snapshot), snapshot.Generation("Role"),
        snapshot.Generation("ClusterRole"), snapshot.Generation("RoleBinding"),
        snapshot.Generation("ClusterRoleBinding")};
    if (!rbac_ || rbac_key != rbac_key_) {
      rbac_ = std::make_unique<Rbac>(snapshot, settings_.policy);
      rbac_key_ = rbac_key;
    }
    options.rbac = rbac_.get();
    const v1::NodeReport header =
        ClusterReportHeader(settings_.cluster, started, started,
                            static_cast<uint32_t>(settings_.interval.count()), version);
    auto writer = store_.BeginReport(header, started, /*partial=*/true);
    if (!writer.ok()) return writer.status();
    // Each object whose verdicts changed names the changes that reach it: its own, or its pods'
    // for a workload; a change that reaches it indirectly (a binding, a policy) names them all.
    (*writer)->AnnotateDrift([&batch](v1::DriftEvent& e) {
      e.set_source("watch");
      std::vector<const ObjectChange*> causes;
      for (const auto& c : batch.changes) {
        bool about = PathIsAbout(e.path(), KeyText(c.kind, c.ns, c.name));
        for (const auto& [kind, ns, name] : c.workloads) {
          about |= PathIsAbout(e.path(), KeyText(kind, ns, name));
        }
        if (about) causes.push_back(&c);
      }
      if (causes.empty()) {
        for (const auto& c : batch.changes) causes.push_back(&c);
      }
      constexpr size_t kMaxNamed = 10;
      for (size_t i = 0; i < causes.size() && i < kMaxNamed; ++i) {
        e.add_caused_by(causes[i]->Describe());
      }
      if (causes.size() > kMaxNamed) {
        e.add_caused_by("and " + std::to_string(causes.size() - kMaxNamed) + " more changes");
      }
      for (const auto& kind : batch.relisted) e.add_caused_by(kind + " listed again");
      if (!causes.empty()) {
        e.set_operation(causes.front()->verb);
        e.set_comm(causes.front()->manager);
      } else {
        e.set_operation("relist");
      }
    });
    // The benchmarks each check is reported under, for the scope of its part.
    const auto scope_of = [&](const std::string& id) {
      store::ResultScope scope;
      auto& benchmarks = scope.checks[id];
      for (const auto& b : checks.at(id)->benchmarks) benchmarks.push_back(b.benchmark);
      if (focus.workload_checks.contains(id)) {
        for (const auto& [kind, ns, name] : focus.workloads) {
          scope.objects.push_back({kind, ns, name});
        }
      } else {
        scope.namespaces.assign(focus.namespaces.begin(), focus.namespaces.end());
      }
      return scope;
    };
    std::set<std::string> carried;
    std::string open;  // a check whose slices are coming (evaluated whole, per workload)
    const auto add = [&](std::vector<v1::CheckResult>&& part, bool more) -> absl::Status {
      // The last slice of a check may carry nothing: it ends the check.
      const std::string id = part.empty() ? open : part.front().check_id();
      open = more ? id : "";
      carried.insert(id);
      for (auto& r : part) PrepareClusterResult(r);
      out.results += part.size();
      const auto t0 = std::chrono::steady_clock::now();
      const auto s = focus.workload_checks.contains(id) || focus.namespace_checks.contains(id)
                         ? (*writer)->AddScoped(std::move(part), scope_of(id))
                         : (*writer)->Add(std::move(part), more);
      out.store_time += std::chrono::steady_clock::now() - t0;
      return s;
    };
    if (auto evaluated = EvaluateClusterInParts(snapshot, options, add); !evaluated.ok()) {
      return evaluated.status();
    }
    // A scoped check with nothing to say about the changed workloads or namespaces (deleted, or
    // now in a system namespace): their results go.
    for (const auto* scoped : {&focus.workload_checks, &focus.namespace_checks}) {
      for (const auto& id : *scoped) {
        if (carried.contains(id)) continue;
        if (auto s = (*writer)->AddScoped({}, scope_of(id)); !s.ok()) return s;
      }
    }
    auto committed = (*writer)->Finish(common::Clock::now());
    if (!committed.ok()) return committed.status();
    out.written = committed->written;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(common::Clock::now() -
                                                                          out.oldest_seen)
                        .count();
    const std::string first = batch.changes.empty() ? *batch.relisted.begin() + " listed again"
                                                    : batch.changes.front().Describe();
    spdlog::log(committed->written > 0 ? spdlog::level::info : spdlog::level::debug,
                "cluster watch of {}: {} and {} more changes; {} checks whole, {} per workload, "
                "{} per namespace, {} results, {} written, {} ms after the first event",
                settings_.cluster, first, out.changes - 1, out.checks, out.workload_checks,
                out.namespace_checks, out.results, out.written, ms);
    return absl::OkStatus();
  };
  if (auto s = source_->With(scan); !s.ok()) {
    return absl::Status(s.code(), "cluster watch of " + settings_.cluster + " (" +
                                      source_->Describe() + "): " + std::string(s.message()));
  }
  if (out.changes > 0) {
    change_batches_++;
    changes_seen_ += out.changes;
  }
  return out;
}

}  // namespace kspm::collector::cluster

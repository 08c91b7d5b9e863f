#include "kspm/collector/cluster/scan.h"

#include <algorithm>
#include <condition_variable>
#include <iterator>
#include <mutex>
#include <thread>

#include "kspm/collector/cluster/evaluators.h"
#include "kspm/collector/cluster/rbac.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/common/strings.h"

namespace kspm::collector::cluster {
namespace {

// Why the input of a check is incomplete, or nothing.
std::optional<std::string> MissingInput(const k8s::Snapshot& snapshot,
                                        const std::vector<std::string>& reads) {
  std::vector<std::string> reasons;
  for (const auto& kind : reads) {
    const auto it = snapshot.failed_kinds().find(kind);
    if (it != snapshot.failed_kinds().end()) reasons.push_back(kind + ": " + it->second);
  }
  if (snapshot.incomplete()) reasons.push_back(*snapshot.incomplete());
  if (reasons.empty()) return std::nullopt;
  return common::Join(reasons, "; ");
}

void FillResult(const CheckDef& c, const BenchmarkItem& b, Finding&& f, v1::CheckResult& out) {
  out.set_check_id(c.id);
  out.set_benchmark(b.benchmark);
  out.set_benchmark_id(b.item);
  out.set_title(c.title);
  out.set_scored(b.scored);
  out.set_severity(c.severity);
  out.set_component(c.component);
  out.set_expected(c.expected);
  // Remediation where there is something to do: a cluster has ~25 results per workload, most of
  // them passing, and the text would otherwise be most of their size.
  if (f.status != v1::STATUS_PASS && f.status != v1::STATUS_NOT_APPLICABLE) {
    out.set_remediation(c.remediation);
  }
  out.set_reason(std::move(f.reason));
  *out.mutable_resource() = std::move(f.resource);
  out.mutable_evidence()->Reserve(static_cast<int>(f.evidence.size()));
  for (auto& e : f.evidence) *out.add_evidence() = std::move(e);
  v1::Status status = f.status;
  // CIS "Manual" items that can be evaluated are, and fail as WARN (as on the nodes).
  if (status == v1::STATUS_FAIL && !b.scored) status = v1::STATUS_WARN;
  out.set_status(status);
}

}  // namespace

std::string DescribeResource(const v1::Resource& r) {
  if (r.kind() == "Cluster" || r.kind().empty()) return "cluster";
  std::string out =
      r.kind() + " " + (r.namespace_().empty() ? "" : r.namespace_() + "/") + r.name();
  if (!r.container().empty()) out += " [" + r.container() + "]";
  return out;
}

bool JudgedPerWorkload(const std::string& evaluate) {
  return evaluate == "pod" || evaluate == "workload-takeover" ||
         evaluate == "netpol-workload-coverage" || evaluate == "sa-token-automount";
}

bool JudgedPerNamespace(const std::string& evaluate, std::string_view kind) {
  if (evaluate != "psa-level" && evaluate != "policy-control" && evaluate != "netpol-coverage" &&
      evaluate != "namespace-resource-policies" && evaluate != "sa-default") {
    return false;
  }
  // A namespaced network policy selects pods of its own namespace only; RBAC bindings and
  // cluster-wide policies reach other namespaces.
  static const std::set<std::string, std::less<>> kLocal = [] {
    std::set<std::string, std::less<>> out(WorkloadKinds().begin(), WorkloadKinds().end());
    for (const char* k :
         {"Namespace", "ServiceAccount", "LimitRange", "ResourceQuota", "NetworkPolicy",
          "CiliumNetworkPolicy", "NetworkPolicy.projectcalico.org"}) {
      out.insert(k);
    }
    return out;
  }();
  return kLocal.contains(kind);
}

bool ChangeCanAffect(const std::string& evaluate, std::string_view kind, std::string_view ns) {
  if (evaluate == "default-namespace") return ns == "default" || kind == "Namespace";
  const auto ev = Evaluators().find(evaluate);
  if (ev == Evaluators().end()) return true;
  const auto& reads = ev->second.reads;
  return std::find(reads.begin(), reads.end(), kind) != reads.end();
}

absl::StatusOr<ScanStats> EvaluateClusterInParts(const k8s::Snapshot& snapshot,
                                                 const ScanOptions& options,
                                                 const ResultSink& part) {
  ScanStats stats;
  const Focus* focus = options.focus;
  std::optional<Rbac> own_rbac;
  if (!options.rbac) own_rbac.emplace(snapshot, options.policy);
  const Rbac& rbac = options.rbac ? *options.rbac : *own_rbac;
  // Every workload when a check is evaluated whole; the focused ones for per-workload checks.
  WorkloadSet workloads;
  if (!focus || !focus->checks.empty()) workloads = CollectWorkloads(snapshot, options.policy);
  WorkloadSet focused, in_namespaces;
  if (focus && !focus->workload_checks.empty()) {
    focused = CollectWorkloads(snapshot, options.policy, &focus->workloads);
  }
  if (focus && !focus->namespace_checks.empty()) {
    in_namespaces = CollectWorkloads(snapshot, options.policy, nullptr, &focus->namespaces);
  }
  // Every workload, collected when a namespace-focused check needs the whole cluster's view.
  std::once_flag whole_once;
  WorkloadSet whole_workloads;
  const Context ctx{snapshot, options.policy, rbac, workloads};
  const Context focused_ctx{snapshot, options.policy, rbac, focused};
  const Context namespaces_ctx{snapshot, options.policy, rbac, in_namespaces};
  stats.objects = snapshot.size();
  stats.workloads = workloads.workloads.size();
  stats.owned = workloads.owned;
  stats.system_workloads = workloads.system_skipped;
  stats.roles = rbac.roles().size();
  stats.bindings = rbac.bindings().size();

  // The work: each check on its own, or a check judged per workload, evaluated whole and on
  // complete input, a slice of workloads at a time. Each task fills its own slot; slots are handed
  // over in catalogue order, so the output does not depend on the number of threads.
  const auto& catalog = BuiltinCatalog();
  const auto& evaluators = Evaluators();
  struct Task {
    const CheckDef* check;
    std::vector<const BenchmarkItem*> items;  // the benchmarks it is reported under
    std::optional<std::string> missing;       // why its input is incomplete
    std::span<const Workload> slice;          // when sliced: the workloads of this task
    bool sliced = false;
    bool last = true;  // the check's last task
  };
  std::vector<Task> tasks;
  for (const auto& check : catalog) {
    Task task{&check, {}, std::nullopt, {}};
    for (const auto& b : check.benchmarks) {
      if (options.benchmarks.empty() || options.benchmarks.contains(b.benchmark)) {
        task.items.push_back(&b);
      }
    }
    if (task.items.empty()) continue;
    const bool in_focus = focus && (focus->workload_checks.contains(check.id) ||
                                    focus->namespace_checks.contains(check.id));
    if (focus && !in_focus && !focus->checks.contains(check.id)) continue;
    const auto ev = evaluators.find(check.evaluate);
    if (ev != evaluators.end()) task.missing = MissingInput(snapshot, ev->second.reads);
    const size_t size = options.workloads_per_part;
    const std::span<const Workload> all(workloads.workloads);
    if (in_focus || ev == evaluators.end() || task.missing || size == 0 ||
        !JudgedPerWorkload(check.evaluate) || all.size() <= size) {
      tasks.push_back(std::move(task));
      continue;
    }
    for (size_t at = 0; at < all.size(); at += size) {
      Task part = task;
      part.sliced = true;
      part.slice = all.subspan(at, std::min(size, all.size() - at));
      part.last = at + size >= all.size();
      tasks.push_back(std::move(part));
    }
  }
  struct Slot {
    std::vector<v1::CheckResult> results;
    size_t accepted = 0, expired = 0;
    bool done = false;
    unsigned worker = 0;  // the thread that made the results
  };
  std::vector<Slot> slots(tasks.size());
  auto evaluate = [&](const Task& task, Slot& slot) {
    const CheckDef& check = *task.check;
    const auto& items = task.items;
    const bool per_workload = focus && focus->workload_checks.contains(check.id);
    const bool per_namespace = focus && focus->namespace_checks.contains(check.id);
    const auto ev = evaluators.find(check.evaluate);
    std::vector<Finding> findings;
    if (ev == evaluators.end()) {
      Finding f;
      f.status = v1::STATUS_ERROR;
      f.resource.set_kind("Cluster");
      f.reason = "no evaluator named '" + check.evaluate + "'";
      findings.push_back(std::move(f));
    } else if (task.sliced) {
      const Context part{snapshot, options.policy, rbac,
                         WorkloadRange(task.slice, workloads.system_skipped)};
      findings = ev->second.run(check, part);
    } else {
      findings = ev->second.run(check, per_workload    ? focused_ctx
                                       : per_namespace ? namespaces_ctx
                                                       : ctx);
      if (per_workload) {
        std::erase_if(findings, [](const Finding& f) {
          return f.resource.kind() == "Cluster" && f.status == v1::STATUS_NOT_APPLICABLE;
        });
      }
      if (per_namespace) {
        // Only the focused namespaces' verdicts: the others were judged without their workloads.
        std::erase_if(findings, [&](const Finding& f) {
          const auto& r = f.resource;
          if (r.kind() == "Cluster") return f.status == v1::STATUS_NOT_APPLICABLE;
          const std::string& ns = r.kind() == "Namespace" ? r.name() : r.namespace_();
          return !focus->namespaces.contains(ns);
        });
        // Nothing judged in the focused namespaces (their pods came before their Namespace, or
        // left): the check's cluster-wide verdict ("no namespace runs workloads") is the whole
        // cluster's to give, and the scoped part replaces it.
        if (findings.empty()) {
          std::call_once(whole_once, [&] {
            if (workloads.workloads.empty()) {
              whole_workloads = CollectWorkloads(snapshot, options.policy);
            }
          });
          const Context whole{snapshot, options.policy, rbac,
                              workloads.workloads.empty() ? whole_workloads : workloads};
          for (auto& f : ev->second.run(check, whole)) {
            if (f.resource.kind() == "Cluster") findings.push_back(std::move(f));
          }
        }
      }
      // Never PASS or NOT_APPLICABLE on input that could not be read: the objects that would
      // fail may be the missing ones. Failures found in what was read still stand.
      if (task.missing) {
        std::vector<Finding> kept;
        for (auto& f : findings) {
          if (f.status == v1::STATUS_FAIL) kept.push_back(std::move(f));
        }
        Finding error;
        error.status = v1::STATUS_ERROR;
        error.resource.set_kind("Cluster");
        error.reason = "could not read everything this check needs: " + *task.missing;
        kept.push_back(std::move(error));
        findings = std::move(kept);
      }
    }
    slot.results.reserve(findings.size() * items.size());
    for (auto& f : findings) {
      const ExceptionRule* rule = nullptr;
      const ExceptionRule* expired = nullptr;
      if (f.status == v1::STATUS_FAIL && options.exceptions) {
        rule = options.exceptions->Match(check, f, options.now, &expired);
      }
      if (rule) {
        slot.accepted += items.size();
        f.reason = "accepted until " + rule->expires_text + " by exception '" + rule->name + "' (" +
                   rule->reason + "): " + f.reason;
      } else if (expired) {
        slot.expired += items.size();
        f.reason += " (exception '" + expired->name + "' expired on " + expired->expires_text + ")";
      }
      for (size_t k = 0; k < items.size(); ++k) {
        const auto* b = items[k];
        v1::CheckResult& r = slot.results.emplace_back();
        // The last benchmark's result takes the finding's evidence instead of a copy.
        FillResult(check, *b, k + 1 == items.size() ? std::move(f) : Finding(f), r);
        if (rule) {
          auto* a = r.mutable_accepted();
          a->set_exception(rule->name);
          a->set_reason(rule->reason);
          *a->mutable_expires_at() = common::ToProto(rule->expires);
          a->set_source(rule->source);
          a->set_approved_by(rule->approved_by);
        }
      }
    }
  };
  // Workers take the next task as they finish one (check costs differ by orders of magnitude:
  // a pod check visits every workload, an RBAC check every binding), at most `window` tasks
  // ahead of the one being handed over, so memory holds a few tasks' results, not all.
  unsigned threads = options.threads;
  if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  const size_t window = threads;
  std::mutex mu;
  std::condition_variable cv;
  size_t next = 0, handed = 0;
  bool stop = false;
  // Results handed over go back to the thread that made them, to be freed there: freed by the
  // handing thread, every string goes back to the maker's malloc arena under its lock, while the
  // maker allocates from it. That contention made two threads use half again the CPU of one.
  std::vector<std::vector<std::vector<v1::CheckResult>>> spent(threads);
  auto work = [&](unsigned worker) {
    for (;;) {
      std::vector<std::vector<v1::CheckResult>> freed;
      std::optional<size_t> task;
      bool finished = false;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] {
          return stop || next >= tasks.size() || next < handed + window || !spent[worker].empty();
        });
        freed.swap(spent[worker]);
        if (stop || next >= tasks.size()) {
          finished = true;
        } else if (next < handed + window) {
          task = next++;
        }
      }
      freed.clear();  // outside the lock
      if (finished) return;
      if (!task) continue;
      const size_t i = *task;
      evaluate(tasks[i], slots[i]);
      {
        std::lock_guard lock(mu);
        slots[i].done = true;
        slots[i].worker = worker;
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) workers.emplace_back(work, t);
  absl::Status failed;
  bool opened = false;  // a slice of the current check went with `more`
  for (size_t i = 0; i < tasks.size(); ++i) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return slots[i].done; });
    }
    Slot& slot = slots[i];
    const bool more = !tasks[i].last;
    // A sliced check's last call ends it, with or without results.
    if (failed.ok() && (!slot.results.empty() || (opened && !more))) {
      failed = part(std::move(slot.results), more);
      opened = more;
    }
    {
      std::lock_guard lock(mu);
      if (!slot.results.empty()) spent[slot.worker].push_back(std::move(slot.results));
      slot.results = {};
      handed = i + 1;
      if (!failed.ok()) stop = true;
    }
    cv.notify_all();
    if (!failed.ok()) break;
  }
  for (auto& t : workers) t.join();
  for (const auto& slot : slots) {
    stats.accepted += slot.accepted;
    stats.expired += slot.expired;
  }
  if (!failed.ok()) return failed;
  return stats;
}

ClusterScan EvaluateCluster(const k8s::Snapshot& snapshot, const ScanOptions& options) {
  ClusterScan scan;
  auto stats =
      EvaluateClusterInParts(snapshot, options, [&](std::vector<v1::CheckResult>&& part, bool) {
        std::move(part.begin(), part.end(), std::back_inserter(scan.results));
        return absl::OkStatus();
      });
  scan.stats = *stats;  // the sink never fails
  return scan;
}

}  // namespace kspm::collector::cluster

#include "kspm/agent/drift/engine.h"

#include "kspm/common/safe_text.h"
#include "kspm/common/time.h"
#include "spdlog/spdlog.h"

namespace kspm::agent::drift {
namespace {

std::string Basename(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// The kernel's comm: the executable's name cut to 15 bytes.
std::string Comm(const std::string& name) { return name.substr(0, 15); }

}  // namespace

WatchSet ComputeWatchSet(const checks::Catalog& catalog, const discovery::HostState& state,
                         const v1::NodeReport& last_full,
                         std::map<std::string, std::set<std::string>>* owners) {
  WatchSet set;
  auto add = [&](const std::string& path, const std::string& component) {
    if (path.empty() || path[0] != '/') return;
    set.paths.insert(path);
    (*owners)[path].insert(component);
  };
  for (const auto& spec : catalog.components()) {
    for (const auto& p : spec.processes) set.comms.insert(Comm(p[0]));
    for (const auto& e : spec.embedded) set.comms.insert(Comm(e.process[0]));
    const auto it = state.components.find(spec.name);
    if (it == state.components.end() || !it->second.present) continue;
    const auto& c = it->second;
    for (const auto& layer : c.layers) add(layer.path, c.name);
    for (const auto& [role, file] : c.files) add(file.path, c.name);
    add(c.manifest_path, c.name);
  }
  // Literal paths of file checks, and every file the last results read.
  for (const auto& check : catalog.checks()) {
    if (check.file) {
      for (const auto& p : check.file->paths) add(p, check.component);
    }
  }
  for (const auto& r : last_full.results()) {
    for (const auto& e : r.evidence()) {
      if (e.source_kind() == v1::SOURCE_KIND_FILE_METADATA ||
          e.source_kind() == v1::SOURCE_KIND_CONFIG_FILE ||
          e.source_kind() == v1::SOURCE_KIND_DROP_IN) {
        add(e.path(), r.component());
      }
    }
  }
  return set;
}

std::string DriftEngine::Start(const std::string& forced, const std::string& host_root,
                               const std::string& proc_root) {
  if (forced == "rescan") {
    mode_ = "rescan";
    notes_ = "drift watching turned off; changes are seen at the next scan";
  } else {
    auto w = StartBestWatcher(
        forced, host_root, proc_root, [this](RawEvent ev) { OnEvent(std::move(ev)); }, &notes_);
    if (w.ok()) {
      watcher_ = *std::move(w);
      mode_ = watcher_->mode();
    } else {
      mode_ = "rescan";
      notes_ += (notes_.empty() ? "" : "; ") + std::string(w.status().message()) +
                "; falling back to periodic rescans";
    }
  }
  if (!notes_.empty()) spdlog::warn("drift: {}", notes_);
  spdlog::info("drift mode: {}", mode_);
  thread_ = std::thread([this] { Run(); });
  if (watcher_ && (options_.link_poll.count() > 0 || options_.sweep.count() > 0)) {
    poll_thread_ = std::thread([this] { PollLoop(); });
  }
  return mode_;
}

void DriftEngine::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  poll_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (poll_thread_.joinable()) poll_thread_.join();
  watcher_.reset();
}

void DriftEngine::SetBaseline(const v1::NodeReport& full) {
  if (!full.node().platform().empty()) {
    std::lock_guard lock(mu_);
    platform_ = Platform{full.node().platform(), full.node().platform_benchmark(),
                         full.node().platform_reason(), ""};
  }
  const discovery::HostState state = discovery::Discover(host_, catalog_);
  std::map<std::string, std::set<std::string>> owners;
  WatchSet set = ComputeWatchSet(catalog_, state, full, &owners);
  // What the files look like now: the next polls compare with this.
  std::map<std::string, Signature> signatures;
  std::map<uint64_t, std::set<std::string>> by_inode;
  if (watcher_) {
    for (const auto& path : set.paths) {
      const Signature sig = StatWatched(path);
      signatures[path] = sig;
      if (sig.exists) {
        by_inode[sig.ino].insert(path);
        set.inodes.insert(sig.ino);
      }
    }
  }
  {
    std::lock_guard lock(mu_);
    owners_ = std::move(owners);
    signatures_ = std::move(signatures);
    paths_by_inode_ = std::move(by_inode);
  }
  if (watcher_) {
    if (auto s = watcher_->Update(set); !s.ok()) spdlog::warn("drift: {}", s.ToString());
  }
}

DriftEngine::Signature DriftEngine::StatWatched(const std::string& path) const {
  Signature sig;
  const auto info = host_.Stat(path);
  if (!info.ok()) return sig;
  sig.exists = true;
  sig.dev = info->device;
  sig.ino = info->inode;
  sig.nlink = info->links;
  sig.mode = info->type | info->mode;
  sig.uid = info->uid;
  sig.gid = info->gid;
  sig.size = info->size;
  sig.mtime_ns = info->mtime_ns;
  sig.ctime_ns = info->ctime_ns;
  return sig;
}

void DriftEngine::Poll(bool all) {
  std::vector<std::pair<std::string, Signature>> targets;
  {
    std::lock_guard lock(mu_);
    for (const auto& [path, sig] : signatures_) {
      if (all || sig.nlink > 1) targets.emplace_back(path, sig);
    }
  }
  for (const auto& [path, before] : targets) {
    const Signature now = StatWatched(path);
    if (now == before) continue;
    {
      std::lock_guard lock(mu_);
      signatures_[path] = now;
      if (before.exists) paths_by_inode_[before.ino].erase(path);
      if (now.exists) paths_by_inode_[now.ino].insert(path);
    }
    RawEvent ev;
    ev.operation = now.exists && before.exists && now.nlink != before.nlink ? "link" : "attrib";
    ev.path = path;
    ev.source = "stat-poll";
    ev.seen = std::chrono::steady_clock::now();
    OnEvent(std::move(ev));
  }
}

void DriftEngine::PollLoop() {
  // On a thread of its own, so that a sweep never delays the handling of an event.
  using Clock = std::chrono::steady_clock;
  const auto far = Clock::time_point::max();
  auto next_link = options_.link_poll.count() > 0 ? Clock::now() + options_.link_poll : far;
  auto next_sweep = options_.sweep.count() > 0 ? Clock::now() + options_.sweep : far;
  std::unique_lock lock(mu_);
  while (!stop_) {
    poll_cv_.wait_until(lock,
                        std::min({next_link, next_sweep, Clock::now() + std::chrono::seconds(1)}),
                        [this] { return stop_ || sweep_now_; });
    if (stop_) break;
    const bool now_asked = std::exchange(sweep_now_, false);
    const auto now = Clock::now();
    const bool all = now_asked || now >= next_sweep;
    if (!all && now < next_link) continue;
    lock.unlock();
    Poll(all);
    lock.lock();
    if (all && options_.sweep.count() > 0 && now >= next_sweep) next_sweep = now + options_.sweep;
    if (options_.link_poll.count() > 0) next_link = now + options_.link_poll;
  }
}

void DriftEngine::Resign(const std::vector<RawEvent>& batch) {
  std::set<std::string> paths;
  {
    std::lock_guard lock(mu_);
    for (const auto& ev : batch) {
      if (ev.source != "stat-poll" && signatures_.contains(ev.path)) paths.insert(ev.path);
    }
  }
  for (const auto& path : paths) {
    const Signature now = StatWatched(path);
    std::lock_guard lock(mu_);
    const Signature before = std::exchange(signatures_[path], now);
    if (before.exists) paths_by_inode_[before.ino].erase(path);
    if (now.exists) paths_by_inode_[now.ino].insert(path);
  }
}

void DriftEngine::OnEvent(RawEvent ev) {
  events_++;
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(ev));
  }
  cv_.notify_all();
}

std::set<std::string> DriftEngine::AffectedComponents(const RawEvent& ev) const {
  std::set<std::string> out;
  if (ev.operation == "exec" || ev.operation == "exit") {
    for (const auto& spec : catalog_.components()) {
      for (const auto& p : spec.processes) {
        if (Comm(p[0]) == ev.comm) out.insert(spec.name);
      }
      for (const auto& e : spec.embedded) {
        if (Comm(e.process[0]) == ev.comm) out.insert(spec.name);
      }
    }
    return out;
  }
  std::lock_guard lock(mu_);
  auto add = [&](const std::string& path) {
    const auto it = owners_.find(path);
    if (it == owners_.end()) return false;
    out.insert(it->second.begin(), it->second.end());
    return true;
  };
  bool matched = !ev.path.empty() && add(ev.path);
  if (ev.inode != 0) {
    if (const auto it = paths_by_inode_.find(ev.inode); it != paths_by_inode_.end()) {
      for (const auto& path : it->second) matched |= add(path);
    }
  }
  if (matched || ev.name.empty()) return out;
  // Matched by name only and not resolved to a watched path (the caller was gone, or sees
  // another mount namespace): every watched file of that name.
  for (const auto& [path, components] : owners_) {
    if (Basename(path) == ev.name) out.insert(components.begin(), components.end());
  }
  return out;
}

void DriftEngine::Run() {
  struct Pending {
    std::chrono::steady_clock::time_point due;
    std::set<std::string> components;
    std::vector<RawEvent> cause;
  };
  using Clock = std::chrono::steady_clock;
  std::vector<Pending> later;  // second looks after writes
  const bool polling = watcher_ != nullptr;
  std::unique_lock lock(mu_);
  while (!stop_) {
    auto next_due = Clock::now() + std::chrono::seconds(1);
    for (const auto& p : later) next_due = std::min(next_due, p.due);
    cv_.wait_until(lock, next_due, [this] { return stop_ || !queue_.empty(); });
    if (stop_) break;
    std::vector<RawEvent> batch;
    if (!queue_.empty()) {
      // Let a burst settle, then take everything that arrived.
      lock.unlock();
      std::this_thread::sleep_for(options_.settle);
      lock.lock();
      batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
      queue_.clear();
    }
    lock.unlock();
    if (!batch.empty()) {
      std::set<std::string> components;
      bool writes = false;
      bool links = false;
      for (const auto& ev : batch) {
        auto affected = AffectedComponents(ev);
        components.insert(affected.begin(), affected.end());
        writes |= ev.operation == "write" || ev.operation == "truncate";
        links |= ev.operation == "link" && ev.source != "stat-poll";
      }
      // A new link to a watched file: from now on it is polled (see DriftOptions::link_poll).
      if (links && polling && options_.link_poll.count() > 0) {
        std::lock_guard lock(mu_);
        sweep_now_ = true;
        poll_cv_.notify_all();
      }
      if (!components.empty()) {
        Reevaluate(components, batch);
        if (writes) {
          later.push_back({Clock::now() + std::chrono::milliseconds(250), components, batch});
        }
      }
      // What the watcher reported is handled: the polls' record of those files moves on, so
      // the next sweep does not re-check them again.
      if (polling) Resign(batch);
    }
    const auto now = Clock::now();
    for (auto it = later.begin(); it != later.end();) {
      if (it->due <= now) {
        Reevaluate(it->components, it->cause);
        it = later.erase(it);
      } else {
        ++it;
      }
    }
    lock.lock();
  }
}

bool DriftEngine::Reevaluate(const std::set<std::string>& components,
                             const std::vector<RawEvent>& cause) {
  // From the read to the queue, no other report may be built: the spool's order is the order
  // of what was read.
  const auto sequence = held_.Sequence();
  const discovery::HostState state = discovery::Discover(host_, catalog_);
  std::optional<Platform> platform;
  {
    std::lock_guard lock(mu_);
    platform = platform_;
  }
  if (!platform) platform = DetectPlatform(host_, state, catalog_);
  auto results = EvaluateNode(host_, catalog_, selection_, state, *platform, &components);
  v1::NodeReport report;
  v1::DriftEvent event;
  for (auto& r : results) {
    if (held_.WillHold(r)) continue;
    auto* change = event.add_changes();
    change->set_check_id(r.check_id());
    change->set_old_status(held_.HeldStatus(r));
    change->set_new_status(r.status());
    *change->mutable_result() = r;
    *report.add_results() = std::move(r);
  }
  if (report.results_size() == 0) return false;
  const RawEvent& first = cause.front();
  event.set_event_id(common::NewUuid());
  event.set_node_name(ResolveNodeName(node_, host_));
  *event.mutable_observed_at() =
      common::ToProto(common::Clock::now() - std::chrono::duration_cast<common::Clock::duration>(
                                                 std::chrono::steady_clock::now() - first.seen));
  event.set_operation(first.operation);
  event.set_path(first.path.empty() ? first.name : first.path);
  event.set_pid(first.pid);
  event.set_comm(first.comm);
  event.set_uid(first.uid);
  event.set_source(first.source);
  report.set_scan_id(common::NewUuid());
  *report.mutable_started_at() = event.observed_at();
  *report.mutable_finished_at() = common::ToProto(common::Clock::now());
  *report.mutable_node() = MakeIdentity(state, node_, host_, &catalog_);
  report.set_full(false);
  report.set_host_root(host_.root());
  *report.add_drift() = event;
  common::MakeValidUtf8(&report);
  spdlog::info("drift: {} {} by pid {} ({}) changed {} result(s)", event.operation(), event.path(),
               event.pid(), event.comm(), event.changes_size());
  if (!emit_(report)) {
    held_.Lost();
    return false;
  }
  held_.Queued(report);
  return true;
}

}  // namespace kspm::agent::drift

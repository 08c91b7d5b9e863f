#include "kspm/agent/host/guarded_host_view.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kspm::agent::host {

namespace {

using Clock = std::chrono::steady_clock;

std::string Seconds(Clock::duration d) {
  const double s = std::chrono::duration<double>(d).count();
  return absl::StrCat(static_cast<int64_t>(s * 10 + 0.5) / 10.0, "s");
}

// Threads kept waiting for work; more are started while calls are blocked or run at once.
constexpr size_t kIdleWorkers = 2;

}  // namespace

struct GuardedHostView::Pool {
  struct BlockedCall {
    uint64_t id;
    std::string what;
    Clock::time_point since;
  };

  std::mutex mu;
  std::condition_variable work_cv;
  std::deque<std::function<void()>> queue;
  size_t workers = 0;  // live threads
  size_t idle = 0;     // threads waiting for work
  bool shutdown = false;
  uint64_t next_id = 1;
  uint64_t timeouts = 0;
  std::vector<BlockedCall> blocked;  // abandoned calls still running, oldest first

  static void Work(const std::shared_ptr<Pool>& pool) {
    std::unique_lock lock(pool->mu);
    for (;;) {
      ++pool->idle;
      pool->work_cv.wait(lock, [&] { return pool->shutdown || !pool->queue.empty(); });
      --pool->idle;
      if (pool->queue.empty()) break;  // shut down
      auto job = std::move(pool->queue.front());
      pool->queue.pop_front();
      lock.unlock();
      job();
      lock.lock();
      // A call that was blocked came back: the thread that replaced it is still there, so
      // this one leaves when enough are idle.
      if (pool->idle >= kIdleWorkers && pool->queue.empty()) break;
    }
    --pool->workers;
  }

  std::string Oldest(Clock::time_point now) const {
    if (blocked.empty()) return "";
    return absl::StrCat(blocked.front().what, " for ", Seconds(now - blocked.front().since));
  }
};

GuardedHostView::GuardedHostView(std::unique_ptr<HostView> inner, ReadGuardOptions options)
    : inner_(std::move(inner)),
      options_(options),
      root_(inner_->root()),
      pool_(std::make_shared<Pool>()) {}

GuardedHostView::~GuardedHostView() {
  {
    std::lock_guard lock(pool_->mu);
    pool_->shutdown = true;
  }
  pool_->work_cv.notify_all();
  // Idle workers leave now; a blocked one leaves when the kernel lets it go. They own what they
  // use (the pool and the inner view), so nothing here waits for them.
}

template <typename T, typename F>
absl::StatusOr<T> GuardedHostView::Run(std::string what, F fn) const {
  struct Call {
    std::condition_variable cv;
    bool done = false;
    bool abandoned = false;
    uint64_t id = 0;
    std::optional<absl::StatusOr<T>> result;
  };
  auto call = std::make_shared<Call>();
  const std::shared_ptr<Pool>& pool = pool_;
  std::unique_lock lock(pool->mu);
  const auto now = Clock::now();
  if (pool->shutdown) return absl::UnavailableError(what + ": the host view is shutting down");
  for (const auto& b : pool->blocked) {
    if (b.what == what) {
      return absl::DeadlineExceededError(absl::StrCat(
          what, ": not tried; the previous attempt has been blocked in the kernel for ",
          Seconds(now - b.since), " (a hung NFS or FUSE mount?)"));
    }
  }
  if (pool->blocked.size() >= options_.max_blocked) {
    return absl::UnavailableError(
        absl::StrCat(what, ": not tried; ", pool->blocked.size(),
                     " host calls are blocked in the kernel (oldest: ", pool->Oldest(now), ")"));
  }
  call->id = pool->next_id++;
  pool->queue.push_back([call, pool, inner = inner_, fn = std::move(fn)] {
    absl::StatusOr<T> result = fn(*inner);
    std::lock_guard done_lock(pool->mu);
    call->result = std::move(result);
    call->done = true;
    if (call->abandoned) {
      std::erase_if(pool->blocked, [&](const Pool::BlockedCall& b) { return b.id == call->id; });
    }
    call->cv.notify_all();
  });
  if (pool->queue.size() > pool->idle) {
    try {
      std::thread(&Pool::Work, pool).detach();
      ++pool->workers;
    } catch (const std::system_error& e) {
      pool->queue.pop_back();
      return absl::ResourceExhaustedError(
          absl::StrCat(what, ": no thread to run it on (", e.what(), ")"));
    }
  }
  pool->work_cv.notify_one();
  if (!call->cv.wait_for(lock, options_.call_timeout, [&] { return call->done; })) {
    call->abandoned = true;
    ++pool->timeouts;
    pool->blocked.push_back({call->id, what, Clock::now()});
    return absl::DeadlineExceededError(
        absl::StrCat(what, ": no answer from the kernel within ",
                     Seconds(std::chrono::duration_cast<Clock::duration>(options_.call_timeout)),
                     " (a hung NFS or FUSE mount?); abandoned, the rest of the scan goes on"));
  }
  return std::move(*call->result);
}

absl::StatusOr<std::string> GuardedHostView::ReadFile(std::string_view path) const {
  return Run<std::string>("read " + std::string(path),
                          [p = std::string(path)](const HostView& h) { return h.ReadFile(p); });
}

absl::StatusOr<FileInfo> GuardedHostView::Stat(std::string_view path) const {
  return Run<FileInfo>("stat " + std::string(path),
                       [p = std::string(path)](const HostView& h) { return h.Stat(p); });
}

absl::StatusOr<std::vector<std::string>> GuardedHostView::ListDir(std::string_view path) const {
  return Run<std::vector<std::string>>(
      "list " + std::string(path),
      [p = std::string(path)](const HostView& h) { return h.ListDir(p); });
}

absl::StatusOr<std::vector<ProcessInfo>> GuardedHostView::ListProcesses() const {
  return Run<std::vector<ProcessInfo>>("list processes",
                                       [](const HostView& h) { return h.ListProcesses(); });
}

absl::StatusOr<std::vector<std::string>> GuardedHostView::ProcessEnviron(int pid) const {
  return Run<std::vector<std::string>>(absl::StrCat("read environment of process ", pid),
                                       [pid](const HostView& h) { return h.ProcessEnviron(pid); });
}

ReadGuardState GuardedHostView::State() const {
  std::lock_guard lock(pool_->mu);
  ReadGuardState state;
  state.timeouts = pool_->timeouts;
  const auto now = Clock::now();
  for (const auto& b : pool_->blocked) state.blocked.push_back({b.what, now - b.since});
  return state;
}

std::string GuardedHostView::BlockedReason() const {
  std::lock_guard lock(pool_->mu);
  if (pool_->blocked.empty()) return "";
  return absl::StrCat(pool_->blocked.size(),
                      " host call(s) blocked in the kernel (oldest: ", pool_->Oldest(Clock::now()),
                      ")");
}

}  // namespace kspm::agent::host

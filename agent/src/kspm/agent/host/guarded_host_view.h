#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kspm/agent/host/host_view.h"

namespace kspm::agent::host {

// Bounds on how long the agent waits for the host's kernel.
struct ReadGuardOptions {
  // One call (a read, a stat, a directory listing, the process list). A read stuck on a hung
  // NFS or FUSE mount is abandoned after this and the call fails with DeadlineExceeded.
  std::chrono::milliseconds call_timeout{5000};
  // Calls left blocked in the kernel at once. Beyond this every call fails at once
  // (Unavailable), so a host whose file systems all hang costs a scan at most
  // max_blocked * call_timeout, never forever.
  size_t max_blocked = 4;
};

// What the guard has seen, for health and logs.
struct ReadGuardState {
  uint64_t timeouts = 0;  // calls abandoned since start
  struct Blocked {
    std::string what;  // "read /etc/kubernetes/kubelet.conf"
    std::chrono::steady_clock::duration for_how_long{};
  };
  std::vector<Blocked> blocked;  // calls still blocked in the kernel, oldest first
};

// A HostView whose calls cannot stall their caller. Each call runs on a small pool of worker
// threads and the caller waits at most `call_timeout`. A thread blocked in the kernel (which no
// signal can free from an uninterruptible wait) is left behind and replaced; while it stays
// blocked, further calls on the same path fail at once instead of blocking another thread.
// When the blocked call finally returns, its thread goes back to the pool (or exits) and the
// path may be read again. Safe to call from several threads, like every HostView.
class GuardedHostView : public HostView {
 public:
  GuardedHostView(std::unique_ptr<HostView> inner, ReadGuardOptions options);
  ~GuardedHostView() override;

  absl::StatusOr<std::string> ReadFile(std::string_view path) const override;
  absl::StatusOr<FileInfo> Stat(std::string_view path) const override;
  absl::StatusOr<std::vector<std::string>> ListDir(std::string_view path) const override;
  absl::StatusOr<std::vector<ProcessInfo>> ListProcesses() const override;
  absl::StatusOr<std::vector<std::string>> ProcessEnviron(int pid) const override;
  const std::string& root() const override { return root_; }

  ReadGuardState State() const;
  // Empty while nothing is blocked; else one line for /readyz and logs.
  std::string BlockedReason() const;

  struct Pool;  // shared with the worker threads, which may outlive this object

 private:
  template <typename T, typename F>
  absl::StatusOr<T> Run(std::string what, F fn) const;

  std::shared_ptr<HostView> inner_;
  const ReadGuardOptions options_;
  const std::string root_;
  std::shared_ptr<Pool> pool_;
};

}  // namespace kspm::agent::host

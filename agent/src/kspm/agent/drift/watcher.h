#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"

namespace kspm::agent::drift {

// A change to something a check reads, as a watcher saw it.
struct RawEvent {
  // chmod, chown, write, rename, unlink, truncate, link, exec, exit, or attrib (a metadata
  // change found by the engine's stat poll).
  std::string operation;
  // The absolute host path changed, when known: given absolute, or resolved from the caller's
  // working directory, `dirfd` or descriptor under /proc.
  std::string path;
  // When the kernel matched by file name only (a relative path, a descriptor): that name. The
  // engine falls back to every watched file of this name when `path` is empty or not watched.
  std::string name;
  // Set when the kernel matched the inode of a watched file (a descriptor's file, whatever name
  // or link it was opened through).
  uint64_t inode = 0;
  int pid = 0;  // the process that made the change; 0 when unknown (inotify)
  uint32_t uid = 0;
  std::string comm;
  std::string source;                          // ebpf, inotify, proc-poll
  std::chrono::steady_clock::time_point seen;  // when the agent received it
};

// What the checks read: host paths (as the host sees them), their file names, and the comm of
// component processes.
struct WatchSet {
  std::set<std::string> paths;
  std::set<std::string> comms;
  // Inode numbers of the watched files, for matching descriptors opened through any link.
  std::set<uint64_t> inodes;
};

// Watches a WatchSet and reports changes through a callback, on its own thread.
class Watcher {
 public:
  using Callback = std::function<void(RawEvent)>;
  virtual ~Watcher() = default;
  // `ebpf` or `inotify`.
  virtual std::string mode() const = 0;
  // Replaces what is watched. Thread-safe.
  [[nodiscard]] virtual absl::Status Update(const WatchSet& set) = 0;
  // Events dropped because the kernel's buffer was full.
  virtual uint64_t lost() const { return 0; }
};

// Syscall and scheduler tracepoints (CO-RE BPF), filtered in the kernel. `host_root` is where
// the host's files appear to the agent; paths are matched both as the host sees them and under
// `host_root`. Fails when BPF is not built in, BTF is missing, or the kernel refuses the program.
// Relative paths and descriptors are resolved through `proc_root`/<pid>/{cwd,fd} while the
// caller still exists.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Watcher>> StartEbpfWatcher(
    std::string host_root, Watcher::Callback cb, std::string proc_root = "/proc");

// inotify on the folders of the watched files (so replace-by-rename is seen), and a poll of
// `proc_root` every `poll` for component processes starting and ending.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Watcher>> StartInotifyWatcher(
    std::string host_root, std::string proc_root, Watcher::Callback cb,
    std::chrono::milliseconds poll = std::chrono::milliseconds(500));

// The first mode that works, in the order eBPF, inotify; `forced` picks one ("ebpf", "inotify").
// `notes` receives why a better mode was not used, for the log and the collector.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Watcher>> StartBestWatcher(
    const std::string& forced, const std::string& host_root, const std::string& proc_root,
    Watcher::Callback cb, std::string* notes);

}  // namespace kspm::agent::drift

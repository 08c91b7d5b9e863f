#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kspm::agent::host {

// What stat(2) says about a host path, with names resolved through the host's own
// /etc/passwd and /etc/group (never the agent's).
struct FileInfo {
  std::string path;           // the host path asked for
  std::string resolved_path;  // host path after following symlinks (== path when none)
  bool is_symlink = false;    // whether `path` itself, or a directory on the way, was a symlink
  uint32_t type = 0;          // S_IFMT bits
  uint32_t mode = 0;          // permission bits including setuid/setgid/sticky (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user;   // name from the host's passwd; the number as text when unknown
  std::string group;  // name from the host's group; the number as text when unknown
  int64_t size = 0;
  // Identity and change times, for noticing changes between two looks (drift).
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t links = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;

  bool IsDirectory() const;
  bool IsRegular() const;
  bool IsSocket() const;
  // `root:root`.
  std::string Owner() const { return user + ":" + group; }
};

// A process seen under the host's /proc.
struct ProcessInfo {
  int pid = 0;
  std::string comm;               // /proc/<pid>/comm without the newline
  std::vector<std::string> argv;  // /proc/<pid>/cmdline split on NUL
  // cmdline did not end in NUL: the kernel cut it or the process rewrote it.
  bool cmdline_truncated = false;
};

// The most a host file may hold for the agent to read it (config files are kilobytes; a larger
// file is refused with an error naming it rather than read into memory).
inline constexpr size_t kMaxFileBytes = 4 << 20;

// The seam between checks and the machine they check. The agent reads a live host (`/`, or the
// host's root mounted at `/host` in a DaemonSet) or a fixture root through the same interface.
// Every path argument is a host path (absolute, as the host sees it). A host path under
// `/proc/<pid>/root/` names a file as that process sees it in its own mount namespace: it is read
// through the proc root, and its symlinks resolve inside the process's root, not the host's.
// Implementations are safe to call from several threads.
class HostView {
 public:
  virtual ~HostView() = default;

  // NotFound when the file is absent, PermissionDenied/Internal with the path otherwise.
  // FailedPrecondition for anything but a regular file (a FIFO, a device: never waited on),
  // ResourceExhausted beyond kMaxFileBytes.
  virtual absl::StatusOr<std::string> ReadFile(std::string_view path) const = 0;
  // Follows symlinks (relative to the host root). NotFound when absent.
  virtual absl::StatusOr<FileInfo> Stat(std::string_view path) const = 0;
  // Entry names (no `.`/`..`), sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(std::string_view path) const = 0;
  // Every process visible in the host's /proc. Processes that vanish while reading are skipped.
  virtual absl::StatusOr<std::vector<ProcessInfo>> ListProcesses() const = 0;
  // /proc/<pid>/environ as KEY=VALUE strings.
  virtual absl::StatusOr<std::vector<std::string>> ProcessEnviron(int pid) const = 0;
  // Where host paths live on the agent's file system ("/" or "/host"), for messages.
  virtual const std::string& root() const = 0;
};

// A HostView over a directory that holds the host's root file system. `proc_root` defaults to
// `<host_root>/proc`.
[[nodiscard]] absl::StatusOr<std::unique_ptr<HostView>> MakeFsHostView(
    std::string host_root, std::optional<std::string> proc_root = std::nullopt);

// Joins a host path below a root without letting `..` escape it.
std::string JoinUnderRoot(std::string_view root, std::string_view host_path);

}  // namespace kspm::agent::host

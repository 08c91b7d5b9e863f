#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "kspm/agent/host/host_view.h"
#include "kspm/common/strings.h"

namespace kspm::agent::host {

bool FileInfo::IsDirectory() const { return type == S_IFDIR; }
bool FileInfo::IsRegular() const { return type == S_IFREG; }
bool FileInfo::IsSocket() const { return type == S_IFSOCK; }

namespace {

absl::Status ErrnoStatus(int err, std::string_view what, std::string_view path) {
  std::string msg = std::string(what) + " " + std::string(path) + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// An owned file descriptor (-1: none), closed on destruction.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd& operator=(Fd&&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFIFO:
      return "a FIFO";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFSOCK:
      return "a socket";
    case S_IFDIR:
      return "a directory";
    case S_IFLNK:
      return "a symlink";
    default:
      return "not a regular file";
  }
}

std::string MiB(size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// Reads a whole open file, refusing anything but a regular file and more than kMaxFileBytes.
absl::StatusOr<std::string> SlurpFd(int fd, std::string_view shown) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "cannot stat", shown);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(std::string(shown) + " is " + TypeName(st.st_mode) +
                                         ", not a regular file: not read");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes) {
    return absl::ResourceExhaustedError(std::string(shown) + " is " + std::to_string(st.st_size) +
                                        " bytes, over the " + MiB(kMaxFileBytes) +
                                        " a file may have: not read");
  }
  std::string out;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot read", shown);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    // Files that grow while read, and /proc files (which say size 0), are bounded here.
    if (out.size() > kMaxFileBytes) {
      return absl::ResourceExhaustedError(std::string(shown) + " holds more than the " +
                                          MiB(kMaxFileBytes) + " a file may have: not read");
    }
  }
  return out;
}

// Never waits on a FIFO or a device, never becomes a controlling terminal.
constexpr int kReadFlags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;

// Reads a whole file by its real (agent-side) path.
absl::StatusOr<std::string> Slurp(const std::string& real, std::string_view shown) {
  const Fd fd(::open(real.c_str(), kReadFlags));
  if (fd.get() < 0) return ErrnoStatus(errno, "cannot open", shown);
  return SlurpFd(fd.get(), shown);
}

// Parses /etc/passwd or /etc/group: name:x:id:...
std::unordered_map<uint32_t, std::string> ParseIdFile(const std::string& text) {
  std::unordered_map<uint32_t, std::string> out;
  for (std::string_view line : common::Split(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string_view> parts = common::Split(line, ':');
    if (parts.size() < 3) continue;
    uint32_t id = 0;
    bool ok = !parts[2].empty();
    for (char c : parts[2]) {
      if (c < '0' || c > '9') {
        ok = false;
        break;
      }
      id = id * 10 + static_cast<uint32_t>(c - '0');
    }
    if (ok) out.emplace(id, std::string(parts[0]));  // first entry wins, as getpwuid does
  }
  return out;
}

class FsHostView final : public HostView {
 public:
  FsHostView(std::string root, std::string proc_root)
      : root_(std::move(root)), proc_root_(std::move(proc_root)) {
    char buf[PATH_MAX];
    real_root_ = ::realpath(root_.c_str(), buf) != nullptr ? buf : root_;
  }
  ~FsHostView() override {
    if (root_fd_ >= 0) ::close(root_fd_);
  }
  FsHostView(const FsHostView&) = delete;
  FsHostView& operator=(const FsHostView&) = delete;

  absl::StatusOr<std::string> ReadFile(std::string_view path) const override {
    auto fd = OpenInRoot(path, kReadFlags);
    if (!fd.ok()) return fd.status();
    return SlurpFd(fd->get(), path);
  }

  absl::StatusOr<FileInfo> Stat(std::string_view path) const override {
    auto resolved = Resolve(path);
    if (!resolved.ok()) return resolved.status();
    struct stat st {};
    auto fd = OpenInRoot(path, O_PATH | O_CLOEXEC);
    if (!fd.ok()) return fd.status();
    if (::fstat(fd->get(), &st) != 0) return ErrnoStatus(errno, "cannot stat", path);
    FileInfo info;
    info.path = std::string(path);
    info.resolved_path = resolved->first;
    info.is_symlink = resolved->second;
    info.type = st.st_mode & S_IFMT;
    info.mode = st.st_mode & 07777;
    info.uid = st.st_uid;
    info.gid = st.st_gid;
    info.size = st.st_size;
    info.device = st.st_dev;
    info.inode = st.st_ino;
    info.links = st.st_nlink;
    info.mtime_ns = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    info.ctime_ns = st.st_ctim.tv_sec * 1000000000LL + st.st_ctim.tv_nsec;
    info.user = NameOf(st.st_uid, /*group=*/false);
    info.group = NameOf(st.st_gid, /*group=*/true);
    return info;
  }

  absl::StatusOr<std::vector<std::string>> ListDir(std::string_view path) const override {
    auto resolved = Resolve(path);
    if (!resolved.ok()) return resolved.status();
    return ListReal(Real(resolved->first), path);
  }

  absl::StatusOr<std::vector<ProcessInfo>> ListProcesses() const override {
    auto entries = ListReal(proc_root_, proc_root_);
    if (!entries.ok()) return entries.status();
    std::vector<ProcessInfo> out;
    for (const auto& name : *entries) {
      if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
      ProcessInfo p;
      // A directory a container made can have any digits: only what fits a pid is one.
      if (name.size() > 9) continue;
      p.pid = std::stoi(name);
      if (p.pid <= 0) continue;
      const std::string dir = proc_root_ + "/" + name;
      auto cmdline = Slurp(dir + "/cmdline", dir + "/cmdline");
      if (!cmdline.ok()) continue;     // exited while we looked, or a kernel thread we cannot read
      if (cmdline->empty()) continue;  // kernel threads have no command line
      p.cmdline_truncated = cmdline->back() != '\0';
      for (std::string_view arg : common::Split(*cmdline, '\0')) p.argv.emplace_back(arg);
      if (!p.cmdline_truncated && !p.argv.empty()) p.argv.pop_back();  // after the final NUL
      auto comm = Slurp(dir + "/comm", dir + "/comm");
      if (comm.ok()) {
        p.comm = *comm;
        while (!p.comm.empty() && p.comm.back() == '\n') p.comm.pop_back();
      }
      out.push_back(std::move(p));
    }
    std::sort(out.begin(), out.end(),
              [](const ProcessInfo& a, const ProcessInfo& b) { return a.pid < b.pid; });
    return out;
  }

  absl::StatusOr<std::vector<std::string>> ProcessEnviron(int pid) const override {
    const std::string path = proc_root_ + "/" + std::to_string(pid) + "/environ";
    auto text = Slurp(path, path);
    if (!text.ok()) return text.status();
    std::vector<std::string> out;
    for (std::string_view kv : common::Split(*text, '\0', true)) {
      out.emplace_back(kv);
    }
    return out;
  }

  const std::string& root() const override { return root_; }

 private:
  // Opens a host path with the kernel resolving it inside its root (the host root, or the
  // process's root for /proc/<pid>/root/...): openat2 RESOLVE_IN_ROOT and no magic links, so a
  // directory swapped for a symlink between Resolve and the open cannot lead outside. Where the
  // kernel lacks openat2 (before 5.6), the path Resolve walked is opened without following a
  // final symlink, and the descriptor is checked to be under the root after the fact.
  absl::StatusOr<Fd> OpenInRoot(std::string_view path, int flags) const {
    if (auto fd = OpenInProcessRoot(path, flags)) {
      if (fd->get() < 0) return ErrnoStatus(errno, "cannot open", path);
      return std::move(*fd);
    }
    if (openat2_works_.load()) {
      std::call_once(root_once_, [this] {
        root_fd_ = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      });
      if (root_fd_ < 0) return absl::InternalError("cannot open the host root " + root_);
      open_how how{};
      how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
      how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
      const std::string rest =
          std::string(path.empty() || path[0] != '/' ? "./" : ".") + std::string(path);
      const long fd = ::syscall(SYS_openat2, root_fd_, rest.c_str(), &how, sizeof how);
      if (fd >= 0) return Fd(static_cast<int>(fd));
      if (errno != ENOSYS) return ErrnoStatus(errno, "cannot open", path);
      openat2_works_ = false;
    }
    auto resolved = Resolve(path);
    if (!resolved.ok()) return resolved.status();
    Fd fd(::open(Real(resolved->first).c_str(), flags | O_NOFOLLOW));
    if (fd.get() < 0) return ErrnoStatus(errno, "cannot open", path);
    if (root_ != "/") {
      char buf[4096];
      const std::string link = "/proc/self/fd/" + std::to_string(fd.get());
      const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
      const std::string target(buf, n > 0 ? static_cast<size_t>(n) : 0);
      if (!target.starts_with(real_root_ + "/") && target != real_root_) {
        return absl::PermissionDeniedError(std::string(path) + " resolved outside the host root (" +
                                           target + "): not read");
      }
    }
    return fd;
  }

  // For a path under /proc/<pid>/root: the file opened by the kernel with that root as the floor
  // (openat2 RESOLVE_IN_ROOT, no magic links), so that a container swapping a directory for a
  // symlink between our checks and the open cannot lead the agent out of it. The fd is -1 (and
  // errno set) when the open failed; nothing at all when the path is a host path or the kernel
  // lacks openat2 (before 5.6), where the resolution walked by Resolve stands.
  std::optional<Fd> OpenInProcessRoot(std::string_view path, int flags) const {
    std::vector<std::string> parts;
    for (std::string_view p : common::Split(path, '/', true)) parts.emplace_back(p);
    const auto pid = ProcessRootPid(parts);
    if (!pid) return std::nullopt;
    std::string rest = ".";
    for (size_t i = 3; i < parts.size(); ++i) rest += "/" + parts[i];
    Fd dir(::open((proc_root_ + "/" + *pid + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0) return Fd(-1);
    open_how how{};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    const long fd = ::syscall(SYS_openat2, dir.get(), rest.c_str(), &how, sizeof how);
    if (fd < 0 && errno == ENOSYS) return std::nullopt;
    return Fd(static_cast<int>(fd));
  }

  // `/proc/<pid>/root` at the start of a host path: the pid, and how many components it spans.
  static std::optional<std::string> ProcessRootPid(const std::vector<std::string>& parts) {
    if (parts.size() < 3 || parts[0] != "proc" || parts[2] != "root" || parts[1].empty() ||
        !std::all_of(parts[1].begin(), parts[1].end(), ::isdigit)) {
      return std::nullopt;
    }
    return parts[1];
  }

  // Where a resolved host path is on the agent's file system: below the host root, or below the
  // proc root for `/proc/<pid>/root/...` (with --proc-root the two differ).
  std::string Real(const std::string& host_path) const {
    std::vector<std::string> parts;
    for (std::string_view p : common::Split(host_path, '/', true)) parts.emplace_back(p);
    if (auto pid = ProcessRootPid(parts)) {
      std::string rest;
      for (size_t i = 3; i < parts.size(); ++i) rest += "/" + parts[i];
      return JoinUnderRoot(proc_root_ + "/" + *pid + "/root", rest.empty() ? "/" : rest);
    }
    return JoinUnderRoot(root_, host_path);
  }

  // Resolves every symlink on the way to `path`, treating absolute targets as relative to the
  // host root. Returns the resolved host path and whether any symlink was followed.
  absl::StatusOr<std::pair<std::string, bool>> Resolve(std::string_view path) const {
    std::vector<std::string> pending;
    for (std::string_view part : common::Split(path, '/', true)) {
      pending.emplace_back(part);
    }
    // Under /proc/<pid>/root the process's root is the floor: `..` and absolute symlink targets
    // stay inside it, as they do for the process itself.
    std::vector<std::string> floor;
    if (auto pid = ProcessRootPid(pending)) {
      floor = {"proc", *pid, "root"};
      pending.erase(pending.begin(), pending.begin() + 3);
    }
    std::reverse(pending.begin(), pending.end());
    std::vector<std::string> done = floor;
    bool followed = false;
    int links = 0;
    while (!pending.empty()) {
      std::string part = std::move(pending.back());
      pending.pop_back();
      if (part == ".") continue;
      if (part == "..") {
        if (done.size() > floor.size()) done.pop_back();
        continue;
      }
      done.push_back(part);
      std::string host_path;
      for (const auto& d : done) host_path += "/" + d;
      const std::string real = Real(host_path);
      struct stat st {};
      if (::lstat(real.c_str(), &st) != 0) {
        if (errno == ENOENT && !pending.empty()) return ErrnoStatus(errno, "cannot stat", path);
        if (errno == ENOENT) break;  // the caller reports the missing leaf itself
        return ErrnoStatus(errno, "cannot stat", path);
      }
      if (!S_ISLNK(st.st_mode)) continue;
      if (++links > 40)
        return absl::FailedPreconditionError("too many symlinks: " + std::string(path));
      char buf[4096];
      const ssize_t n = ::readlink(real.c_str(), buf, sizeof buf - 1);
      if (n < 0) return ErrnoStatus(errno, "cannot read link", path);
      const std::string target(buf, static_cast<size_t>(n));
      followed = true;
      done.pop_back();
      if (!target.empty() && target[0] == '/') done = floor;
      std::vector<std::string> target_parts;
      for (std::string_view p : common::Split(target, '/', true)) {
        target_parts.emplace_back(p);
      }
      for (auto it = target_parts.rbegin(); it != target_parts.rend(); ++it) {
        pending.push_back(*it);
      }
    }
    std::string out;
    for (const auto& d : done) out += "/" + d;
    if (out.empty()) out = "/";
    return std::make_pair(out, followed);
  }

  absl::StatusOr<std::vector<std::string>> ListReal(const std::string& real,
                                                    std::string_view shown) const {
    DIR* dir = ::opendir(real.c_str());
    if (dir == nullptr) return ErrnoStatus(errno, "cannot list", shown);
    std::vector<std::string> out;
    while (const dirent* e = ::readdir(dir)) {
      const std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      out.emplace_back(name);
    }
    ::closedir(dir);
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string NameOf(uint32_t id, bool group) const {
    std::call_once(ids_once_, [this] {
      auto passwd = Slurp(JoinUnderRoot(root_, "/etc/passwd"), "/etc/passwd");
      if (passwd.ok()) users_ = ParseIdFile(*passwd);
      auto groups = Slurp(JoinUnderRoot(root_, "/etc/group"), "/etc/group");
      if (groups.ok()) groups_ = ParseIdFile(*groups);
    });
    const auto& table = group ? groups_ : users_;
    const auto it = table.find(id);
    return it == table.end() ? std::to_string(id) : it->second;
  }

  std::string root_;
  std::string real_root_;  // root_ with symlinks resolved, for the check after a plain open
  std::string proc_root_;
  mutable std::atomic<bool> openat2_works_{true};
  // The host root, opened once: every openat2 resolves from it.
  mutable std::once_flag root_once_;
  mutable int root_fd_ = -1;
  mutable std::once_flag ids_once_;
  mutable std::unordered_map<uint32_t, std::string> users_;
  mutable std::unordered_map<uint32_t, std::string> groups_;
};

}  // namespace

std::string JoinUnderRoot(std::string_view root, std::string_view host_path) {
  std::string out(root);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  if (out == "/") out.clear();
  std::vector<std::string_view> kept;
  for (std::string_view part : common::Split(host_path, '/', true)) {
    if (part == ".") continue;
    if (part == "..") {
      if (!kept.empty()) kept.pop_back();
      continue;
    }
    kept.push_back(part);
  }
  for (auto part : kept) {
    out += '/';
    out += part;
  }
  return out.empty() ? "/" : out;
}

absl::StatusOr<std::unique_ptr<HostView>> MakeFsHostView(std::string host_root,
                                                         std::optional<std::string> proc_root) {
  struct stat st {};
  if (::stat(host_root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError("host root '" + host_root + "' is not a directory");
  }
  std::string proc = proc_root ? *proc_root : JoinUnderRoot(host_root, "/proc");
  return std::unique_ptr<HostView>(new FsHostView(std::move(host_root), std::move(proc)));
}

}  // namespace kspm::agent::host

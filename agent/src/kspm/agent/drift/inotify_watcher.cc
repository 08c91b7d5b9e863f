#include <dirent.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "kspm/agent/drift/watcher.h"
#include "kspm/agent/host/host_view.h"
#include "spdlog/spdlog.h"

namespace kspm::agent::drift {
namespace {

std::string Dirname(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
}

// inotify on folders (a file replaced by rename keeps being watched) plus a /proc poll for
// component processes.
class InotifyWatcher final : public Watcher {
 public:
  InotifyWatcher(std::string host_root, std::string proc_root, Callback cb,
                 std::chrono::milliseconds poll)
      : host_root_(std::move(host_root)),
        proc_root_(std::move(proc_root)),
        cb_(std::move(cb)),
        poll_(poll) {}
  ~InotifyWatcher() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Init() {
    fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) return absl::UnavailableError(std::string("inotify: ") + std::strerror(errno));
    procs_ = ScanProcesses();
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  std::string mode() const override { return "inotify"; }

  absl::Status Update(const WatchSet& set) override {
    std::lock_guard lock(mu_);
    comms_ = set.comms;
    files_.clear();
    std::set<std::string> dirs;
    for (const auto& p : set.paths) {
      dirs.insert(Dirname(p));
      files_.insert(p);
    }
    for (const auto& dir : dirs) {
      if (watched_dirs_.contains(dir)) continue;
      const std::string real = host::JoinUnderRoot(host_root_, dir);
      const int wd = ::inotify_add_watch(fd_, real.c_str(),
                                         IN_ATTRIB | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO |
                                             IN_MOVED_FROM | IN_CREATE | IN_DELETE);
      if (wd < 0) {
        if (errno == ENOSPC) {
          return absl::ResourceExhaustedError("inotify watch limit reached at " + real +
                                              " (raise fs.inotify.max_user_watches)");
        }
        continue;  // a folder that does not exist yet
      }
      watched_dirs_[dir] = wd;
      dir_of_wd_[wd] = dir;
    }
    return absl::OkStatus();
  }

 private:
  void Run() {
    auto next_poll = std::chrono::steady_clock::now() + poll_;
    alignas(inotify_event) char buf[8192];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      ::poll(&p, 1, 50);
      for (;;) {
        const ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
          const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
          off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
          if (e->len == 0) continue;
          std::string path;
          {
            std::lock_guard lock(mu_);
            const auto it = dir_of_wd_.find(e->wd);
            if (it == dir_of_wd_.end()) continue;
            path = (it->second == "/" ? "" : it->second) + "/" + e->name;
            if (!files_.contains(path)) continue;
          }
          RawEvent ev;
          ev.operation = (e->mask & IN_ATTRIB)                       ? "chmod"
                         : (e->mask & (IN_MOVED_TO | IN_MOVED_FROM)) ? "rename"
                         : (e->mask & IN_DELETE)                     ? "unlink"
                                                                     : "write";
          ev.path = path;
          ev.source = "inotify";
          ev.seen = std::chrono::steady_clock::now();
          cb_(std::move(ev));
        }
      }
      if (std::chrono::steady_clock::now() >= next_poll) {
        PollProcesses();
        next_poll = std::chrono::steady_clock::now() + poll_;
      }
    }
  }

  // pid -> comm of the watched components.
  std::map<int, std::string> ScanProcesses() {
    std::set<std::string> comms;
    {
      std::lock_guard lock(mu_);
      comms = comms_;
    }
    std::map<int, std::string> out;
    DIR* d = ::opendir(proc_root_.c_str());
    if (d == nullptr) return out;
    while (const dirent* e = ::readdir(d)) {
      const char* name = e->d_name;
      if (*name < '0' || *name > '9' || std::strlen(name) > 9) continue;  // not a pid
      std::ifstream in(proc_root_ + "/" + name + "/comm");
      std::string comm;
      if (!std::getline(in, comm) || !comms.contains(comm)) continue;
      out[std::atoi(name)] = comm;
    }
    ::closedir(d);
    return out;
  }

  void PollProcesses() {
    auto now = ScanProcesses();
    for (const auto& [pid, comm] : now) {
      if (!procs_.contains(pid)) Emit("exec", pid, comm);
    }
    for (const auto& [pid, comm] : procs_) {
      if (!now.contains(pid)) Emit("exit", pid, comm);
    }
    procs_ = std::move(now);
  }

  void Emit(const char* op, int pid, const std::string& comm) {
    RawEvent ev;
    ev.operation = op;
    ev.pid = pid;
    ev.comm = comm;
    ev.source = "proc-poll";
    ev.seen = std::chrono::steady_clock::now();
    cb_(std::move(ev));
  }

  const std::string host_root_;
  const std::string proc_root_;
  Callback cb_;
  const std::chrono::milliseconds poll_;
  int fd_ = -1;
  std::mutex mu_;
  std::set<std::string> files_;
  std::set<std::string> comms_;
  std::map<std::string, int> watched_dirs_;
  std::map<int, std::string> dir_of_wd_;
  std::map<int, std::string> procs_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Watcher>> StartInotifyWatcher(std::string host_root,
                                                             std::string proc_root,
                                                             Watcher::Callback cb,
                                                             std::chrono::milliseconds poll) {
  auto w = std::make_unique<InotifyWatcher>(std::move(host_root), std::move(proc_root),
                                            std::move(cb), poll);
  if (auto s = w->Init(); !s.ok()) return s;
  return std::unique_ptr<Watcher>(std::move(w));
}

absl::StatusOr<std::unique_ptr<Watcher>> StartBestWatcher(const std::string& forced,
                                                          const std::string& host_root,
                                                          const std::string& proc_root,
                                                          Watcher::Callback cb,
                                                          std::string* notes) {
  if (forced.empty() || forced == "ebpf") {
    auto w = StartEbpfWatcher(host_root, cb, proc_root);
    if (w.ok() || forced == "ebpf") return w;
    if (notes) *notes = "eBPF unavailable: " + std::string(w.status().message());
  }
  if (forced.empty() || forced == "inotify") {
    auto w = StartInotifyWatcher(host_root, proc_root, cb);
    if (w.ok() || forced == "inotify") return w;
    if (notes) *notes += "; inotify unavailable: " + std::string(w.status().message());
    return w.status();
  }
  return absl::InvalidArgumentError("unknown drift mode '" + forced + "' (ebpf, inotify, rescan)");
}

}  // namespace kspm::agent::drift

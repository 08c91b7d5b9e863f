#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include "kspm/agent/drift/watcher.h"
#include "spdlog/spdlog.h"

#ifdef KSPM_WITH_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "drift.h"
#include "drift.skel.h"
#endif

namespace kspm::agent::drift {

#ifndef KSPM_WITH_BPF

absl::StatusOr<std::unique_ptr<Watcher>> StartEbpfWatcher(std::string, Watcher::Callback,
                                                          std::string) {
  return absl::UnimplementedError("this kspm-agent was built without eBPF support");
}

#else

namespace {

static_assert(sizeof(kspm_drift_event) == 4 * 6 + 8 * 3 + KSPM_COMM_LEN + KSPM_PATH_MAX,
              "the event layout must match bpf/drift.h exactly");

int LibbpfLog(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[1024];
  const int n = vsnprintf(buf, sizeof buf, format, args);
  std::string line(buf, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1) : 0);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (level == LIBBPF_WARN) {
    spdlog::debug("libbpf: {}", line);  // attach failures are reported by our own errors
  } else {
    spdlog::debug("libbpf: {}", line);
  }
  return 0;
}

const char* OpName(unsigned op) {
  switch (op) {
    case KSPM_OP_CHMOD:
      return "chmod";
    case KSPM_OP_CHOWN:
      return "chown";
    case KSPM_OP_OPEN_WRITE:
      return "write";
    case KSPM_OP_RENAME:
      return "rename";
    case KSPM_OP_UNLINK:
      return "unlink";
    case KSPM_OP_TRUNCATE:
      return "truncate";
    case KSPM_OP_EXEC:
      return "exec";
    case KSPM_OP_EXIT:
      return "exit";
    case KSPM_OP_LINK:
      return "link";
    default:
      return "unknown";
  }
}

// Makes sure tracefs is mounted: libbpf attaches tracepoints through it.
void EnsureTracefs() {
  struct stat st {};
  if (::stat("/sys/kernel/tracing/events", &st) == 0) return;
  if (::stat("/sys/kernel/debug/tracing/events", &st) == 0) return;
  if (::mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) == 0) {
    spdlog::info("mounted tracefs at /sys/kernel/tracing for the drift tracepoints");
  } else {
    spdlog::debug("cannot mount tracefs: {}", std::strerror(errno));
  }
}

struct SkelDeleter {
  void operator()(drift_bpf* s) const { drift_bpf::destroy(s); }
};
struct RingDeleter {
  void operator()(ring_buffer* r) const { ring_buffer__free(r); }
};

// `dir` + "/" + `rel` with `.` and `..` folded lexically (symlinks are not followed: the kernel
// already did, and the result is only used to find a watched path).
std::string JoinLexically(const std::string& dir, const std::string& rel) {
  std::vector<std::string> parts;
  auto push = [&](std::string_view all) {
    size_t start = 0;
    while (start <= all.size()) {
      size_t end = all.find('/', start);
      if (end == std::string_view::npos) end = all.size();
      const std::string_view part = all.substr(start, end - start);
      if (part == "..") {
        if (!parts.empty()) parts.pop_back();
      } else if (!part.empty() && part != ".") {
        parts.emplace_back(part);
      }
      start = end + 1;
    }
  };
  push(dir);
  push(rel);
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

// The target of a /proc magic link, or "" when the process is gone or the file was deleted.
std::string ReadProcLink(const std::string& link) {
  char buf[4096];
  const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string target(buf, static_cast<size_t>(n));
  if (target.empty() || target[0] != '/' || target.ends_with(" (deleted)")) return "";
  return target;
}

class EbpfWatcher final : public Watcher {
 public:
  EbpfWatcher(std::string host_root, std::string proc_root, Callback cb)
      : host_root_(std::move(host_root)), proc_root_(std::move(proc_root)), cb_(std::move(cb)) {}
  ~EbpfWatcher() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  absl::Status Init() {
    libbpf_set_print(LibbpfLog);
    EnsureTracefs();
    skel_.reset(drift_bpf::open());
    if (!skel_) return absl::UnavailableError("cannot open the drift BPF program");
    skel_->rodata->agent_tgid = static_cast<__u32>(::getpid());
    // fchmodat2 exists from Linux 6.6 on: skip it where the tracepoint is missing.
    struct stat st {};
    if (::stat("/sys/kernel/tracing/events/syscalls/sys_enter_fchmodat2", &st) != 0 &&
        ::stat("/sys/kernel/debug/tracing/events/syscalls/sys_enter_fchmodat2", &st) != 0) {
      bpf_program__set_autoload(skel_->progs.fchmodat2_enter, false);
    }
    if (int err = drift_bpf::load(skel_.get()); err != 0) {
      return absl::UnavailableError(std::string("the kernel refused the drift BPF program: ") +
                                    std::strerror(-err) +
                                    " (needs BTF, CAP_BPF and CAP_PERFMON or root)");
    }
    if (int err = drift_bpf::attach(skel_.get()); err != 0) {
      return absl::UnavailableError(std::string("cannot attach the drift tracepoints: ") +
                                    std::strerror(-err) + " (is tracefs mounted?)");
    }
    ring_.reset(
        ring_buffer__new(bpf_map__fd(skel_->maps.events), &EbpfWatcher::OnSample, this, nullptr));
    if (!ring_) return absl::UnavailableError("cannot open the drift ring buffer");
    thread_ = std::thread([this] {
      while (!stop_) {
        const int n = ring_buffer__poll(ring_.get(), 100);
        if (n < 0 && n != -EINTR) {
          spdlog::error("drift ring buffer poll failed: {}", std::strerror(-n));
          break;
        }
      }
    });
    return absl::OkStatus();
  }

  std::string mode() const override { return "ebpf"; }

  absl::Status Update(const WatchSet& set) override {
    std::lock_guard lock(mu_);
    std::set<std::string> keys;
    for (const auto& p : set.paths) {
      // The path as the host and as the agent see it, and every suffix of either that starts
      // at a component: what a relative path naming the file can be (see check_path).
      std::vector<std::string> spellings = {p};
      if (host_root_ != "/" && !host_root_.empty()) spellings.push_back(host_root_ + p);
      for (const auto& spelling : spellings) {
        keys.insert(spelling);
        for (size_t slash = spelling.find('/'); slash != std::string::npos;
             slash = spelling.find('/', slash + 1)) {
          if (slash + 1 < spelling.size()) keys.insert(spelling.substr(slash + 1));
        }
      }
    }
    const int fd = bpf_map__fd(skel_->maps.watched);
    for (const auto& old : keys_) {
      if (keys.contains(old)) continue;
      char key[KSPM_PATH_MAX] = {};
      std::strncpy(key, old.c_str(), sizeof key - 1);
      bpf_map_delete_elem(fd, key);
    }
    const __u8 one = 1;
    const int prefix_fd = bpf_map__fd(skel_->maps.watched_prefixes);
    for (const auto& k : keys) {
      if (k.size() >= KSPM_PATH_MAX) continue;  // longer than any path the program can read
      char key[KSPM_PATH_MAX] = {};
      std::memcpy(key, k.data(), k.size());
      if (bpf_map_update_elem(fd, key, &one, BPF_ANY) != 0) {
        return absl::ResourceExhaustedError("drift watch map is full at " + k);
      }
      // The first 16 bytes, zero-padded, as the program's first filter reads them. Stale
      // prefixes only cost a full lookup, so they are never removed.
      char prefix[16] = {};
      std::memcpy(prefix, k.data(), std::min<size_t>(k.size(), sizeof prefix));
      bpf_map_update_elem(prefix_fd, prefix, &one, BPF_ANY);
    }
    keys_ = std::move(keys);
    const int inode_fd = bpf_map__fd(skel_->maps.watched_inodes);
    for (const __u64 old : inodes_) {
      if (!set.inodes.contains(old)) bpf_map_delete_elem(inode_fd, &old);
    }
    for (const __u64 ino : set.inodes) {
      if (bpf_map_update_elem(inode_fd, &ino, &one, BPF_ANY) != 0) {
        return absl::ResourceExhaustedError("drift inode map is full");
      }
    }
    inodes_ = set.inodes;
    const int comm_fd = bpf_map__fd(skel_->maps.watched_comms);
    for (const auto& c : set.comms) {
      char key[KSPM_COMM_LEN] = {};
      std::strncpy(key, c.c_str(), sizeof key - 1);
      bpf_map_update_elem(comm_fd, key, &one, BPF_ANY);
    }
    return absl::OkStatus();
  }

  uint64_t lost() const override {
    const int fd = bpf_map__fd(skel_->maps.lost);
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return 0;
    std::vector<__u64> values(static_cast<size_t>(cpus));
    __u32 zero = 0;
    if (bpf_map_lookup_elem(fd, &zero, values.data()) != 0) return 0;
    uint64_t total = 0;
    for (auto v : values) total += v;
    return total;
  }

 private:
  static int OnSample(void* self, void* data, size_t size) {
    if (size < sizeof(kspm_drift_event)) return 0;
    const auto* e = static_cast<const kspm_drift_event*>(data);
    if (e->version != KSPM_DRIFT_EVENT_VERSION) return 0;
    auto* watcher = static_cast<EbpfWatcher*>(self);
    RawEvent ev;
    ev.operation = OpName(e->op);
    const std::string seen(e->path, strnlen(e->path, sizeof e->path));
    ev.pid = static_cast<int>(e->pid);
    ev.uid = e->uid;
    ev.inode = e->match == KSPM_MATCH_INODE ? e->ino : 0;
    ev.comm.assign(e->comm, strnlen(e->comm, sizeof e->comm));
    ev.source = "ebpf";
    ev.seen = std::chrono::steady_clock::now();
    const std::string proc = watcher->proc_root_ + "/" + std::to_string(e->pid);
    switch (e->match) {
      case KSPM_MATCH_RELATIVE: {
        // Resolved now, while the caller most likely still exists.
        const size_t slash = seen.rfind('/');
        ev.name = slash == std::string::npos ? seen : seen.substr(slash + 1);
        const std::string dir = ReadProcLink(
            e->dirfd == -100 ? proc + "/cwd" : proc + "/fd/" + std::to_string(e->dirfd));
        if (!dir.empty()) ev.path = watcher->HostPath(JoinLexically(dir, seen));
        break;
      }
      case KSPM_MATCH_FD_NAME:
      case KSPM_MATCH_INODE: {
        ev.name = seen;
        const std::string target = ReadProcLink(proc + "/fd/" + std::to_string(e->dirfd));
        if (!target.empty()) ev.path = watcher->HostPath(target);
        break;
      }
      default:
        ev.path = watcher->HostPath(seen);
    }
    watcher->cb_(std::move(ev));
    return 0;
  }

  // Paths seen under the host root (the agent's own view) are reported as host paths.
  std::string HostPath(const std::string& path) const {
    if (host_root_.size() > 1 && path.starts_with(host_root_ + "/")) {
      return path.substr(host_root_.size());
    }
    return path;
  }

  std::string host_root_;
  std::string proc_root_;
  Callback cb_;
  std::unique_ptr<drift_bpf, SkelDeleter> skel_;
  std::unique_ptr<ring_buffer, RingDeleter> ring_;
  std::mutex mu_;
  std::set<std::string> keys_;
  std::set<uint64_t> inodes_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Watcher>> StartEbpfWatcher(std::string host_root,
                                                          Watcher::Callback cb,
                                                          std::string proc_root) {
  auto w = std::make_unique<EbpfWatcher>(std::move(host_root), std::move(proc_root), std::move(cb));
  if (auto s = w->Init(); !s.ok()) return s;
  return std::unique_ptr<Watcher>(std::move(w));
}

#endif

}  // namespace kspm::agent::drift

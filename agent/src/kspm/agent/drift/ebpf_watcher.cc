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

absl::StatusOr<std::unique_ptr<Watcher>> StartEbpfWatcher(std::string, Watcher::Callback) {
  return absl::UnimplementedError("this kspm-agent was built without eBPF support");
}

#else

namespace {

static_assert(sizeof(kspm_drift_event) == 4 * 6 + 8 * 2 + KSPM_COMM_LEN + KSPM_PATH_MAX,
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

class EbpfWatcher final : public Watcher {
 public:
  EbpfWatcher(std::string host_root, Callback cb)
      : host_root_(std::move(host_root)), cb_(std::move(cb)) {}
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
      keys.insert(p);
      if (host_root_ != "/" && !host_root_.empty()) keys.insert(host_root_ + p);
      const size_t slash = p.rfind('/');
      keys.insert(slash == std::string::npos ? p : p.substr(slash + 1));
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
    RawEvent ev;
    ev.operation = OpName(e->op);
    ev.path.assign(e->path, strnlen(e->path, sizeof e->path));
    ev.relative = e->match == KSPM_MATCH_RELATIVE || e->match == KSPM_MATCH_FD_NAME;
    ev.pid = static_cast<int>(e->pid);
    ev.uid = e->uid;
    ev.comm.assign(e->comm, strnlen(e->comm, sizeof e->comm));
    ev.source = "ebpf";
    ev.seen = std::chrono::steady_clock::now();
    auto* watcher = static_cast<EbpfWatcher*>(self);
    // Paths seen under the host root (the agent's own view) are reported as host paths.
    const std::string& root = watcher->host_root_;
    if (!ev.relative && root.size() > 1 && ev.path.starts_with(root + "/")) {
      ev.path = ev.path.substr(root.size());
    }
    watcher->cb_(std::move(ev));
    return 0;
  }

  std::string host_root_;
  Callback cb_;
  std::unique_ptr<drift_bpf, SkelDeleter> skel_;
  std::unique_ptr<ring_buffer, RingDeleter> ring_;
  std::mutex mu_;
  std::set<std::string> keys_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Watcher>> StartEbpfWatcher(std::string host_root,
                                                          Watcher::Callback cb) {
  auto w = std::make_unique<EbpfWatcher>(std::move(host_root), std::move(cb));
  if (auto s = w->Init(); !s.ok()) return s;
  return std::unique_ptr<Watcher>(std::move(w));
}

#endif

}  // namespace kspm::agent::drift

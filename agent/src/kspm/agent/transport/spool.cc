#include "kspm/agent/transport/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <filesystem>

#include "spdlog/spdlog.h"

namespace kspm::agent::transport {
namespace {

constexpr char kSuffix[] = ".report";

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  const int err = errno;
  const std::string msg = what + " " + path + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", path);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path);
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(std::string dir, size_t max_bytes,
                                                   size_t max_items) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InvalidArgumentError("cannot create spool directory " + dir + ": " + ec.message());
  }
  ::chmod(dir.c_str(), 0700);  // reports hold the node's whole posture
  std::unique_ptr<Spool> spool(new Spool(std::move(dir), max_bytes, max_items));
  DIR* d = ::opendir(spool->dir_.c_str());
  if (d == nullptr) return ErrnoError("cannot open spool directory", spool->dir_);
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.ends_with(".tmp")) {
      ::unlink((spool->dir_ + "/" + name).c_str());  // an interrupted write: never acked
    } else if (name.ends_with(kSuffix)) {
      names.push_back(name);
    }
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string path = spool->dir_ + "/" + name;
    uint64_t seq = 0;
    if (std::sscanf(name.c_str(), "%" SCNu64, &seq) != 1) continue;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    spool->entries_.push_back({seq, path, static_cast<size_t>(st.st_size)});
    spool->bytes_ += static_cast<size_t>(st.st_size);
    spool->next_sequence_ = std::max(spool->next_sequence_, seq + 1);
  }
  if (!spool->entries_.empty()) {
    spdlog::info("spool {}: {} undelivered reports from an earlier run", spool->dir_,
                 spool->entries_.size());
  }
  return spool;
}

std::string Spool::PathOf(uint64_t sequence) const {
  char name[32];
  std::snprintf(name, sizeof name, "%020" PRIu64, sequence);
  return dir_ + "/" + name + kSuffix;
}

absl::Status Spool::Append(const v1::NodeReport& report) {
  std::string data;
  if (!report.SerializeToString(&data)) return absl::InternalError("cannot serialize report");
  std::lock_guard lock(mu_);
  const uint64_t seq = next_sequence_++;
  const std::string path = PathOf(seq);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  absl::Status s = WriteAll(fd, data, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoError("cannot sync", tmp);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoError("cannot rename", tmp);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  entries_.push_back({seq, path, data.size()});
  bytes_ += data.size();
  while (entries_.size() > 1 && (bytes_ > max_bytes_ || entries_.size() > max_items_)) {
    DropOldestLocked();
  }
  return absl::OkStatus();
}

void Spool::DropOldestLocked() {
  const Entry& oldest = entries_.front();
  spdlog::warn("spool {} is full ({} reports, {} bytes): dropping the oldest report {}", dir_,
               entries_.size(), bytes_, oldest.path);
  ::unlink(oldest.path.c_str());
  bytes_ -= oldest.bytes;
  entries_.pop_front();
  dropped_ = true;
}

std::optional<Spool::Item> Spool::Front() const {
  std::lock_guard lock(mu_);
  while (!entries_.empty()) {
    const Entry& e = entries_.front();
    auto data = ReadAll(e.path);
    Item item;
    item.sequence = e.sequence;
    if (data.ok() && item.report.ParseFromString(*data)) return item;
    // Unreadable: set it aside for a person, and go on with the rest.
    spdlog::error("spool: {} is unreadable or corrupt; moved to {}.corrupt", e.path, e.path);
    ::rename(e.path.c_str(), (e.path + ".corrupt").c_str());
    bytes_ -= e.bytes;
    entries_.pop_front();
  }
  return std::nullopt;
}

void Spool::Pop(uint64_t sequence) {
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->sequence != sequence) continue;
    ::unlink(it->path.c_str());
    bytes_ -= it->bytes;
    entries_.erase(it);
    return;
  }
}

size_t Spool::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

size_t Spool::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

bool Spool::TakeDropped() {
  std::lock_guard lock(mu_);
  const bool d = dropped_;
  dropped_ = false;
  return d;
}

}  // namespace kspm::agent::transport

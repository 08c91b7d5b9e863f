#include "kspm/collector/server/ingest.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "spdlog/spdlog.h"

namespace kspm::collector::server {

void Ingest::Start() {
  std::lock_guard lock(mu_);
  if (running_) return;
  running_ = true;
  stopping_ = false;
  for (size_t i = 0; i < writers_; ++i) threads_.emplace_back([this] { Run(); });
}

void Ingest::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::lock_guard lock(mu_);
  running_ = false;
}

void Ingest::Submit(std::shared_ptr<const v1::NodeReport> report, Done done) {
  {
    std::lock_guard lock(mu_);
    if (running_ && !stopping_) {
      std::string node = NodeOf(*report);
      ++queued_[node];
      queue_.push_back({std::move(report), std::move(done), std::move(node)});
      cv_.notify_one();
      return;
    }
  }
  done(absl::UnavailableError("collector is shutting down"));
}

size_t Ingest::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void Ingest::Run() {
  // Commits yield the CPU to queries: an ack may wait a few milliseconds more, a person at
  // kspmctl or a dashboard should not (Linux applies nice per thread).
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 5) != 0) {
    spdlog::debug("writer thread keeps its priority: {}", std::strerror(errno));
  }
  for (;;) {
    std::vector<Item> batch;
    std::set<std::string> nodes;  // of this batch
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return (stopping_ && queue_.empty()) || ReadyLocked(); });
      if (queue_.empty() && stopping_) return;
      // In queue order, skipping nodes another writer holds, and a node's later reports once
      // one was skipped.
      std::set<std::string> skipped;
      for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
        if (busy_.contains(it->node) || skipped.contains(it->node)) {
          skipped.insert(it->node);
          ++it;
          continue;
        }
        if (--queued_[it->node] == 0) queued_.erase(it->node);
        nodes.insert(it->node);
        batch.push_back(std::move(*it));
        it = queue_.erase(it);
      }
      busy_.insert(nodes.begin(), nodes.end());
    }
    std::vector<const v1::NodeReport*> reports;
    reports.reserve(batch.size());
    for (const auto& item : batch) reports.push_back(item.report.get());
    const auto started = std::chrono::steady_clock::now();
    auto outcomes = store_.CommitBatch(reports, common::Clock::now());
    stats_.commit_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    for (size_t i = 0; i < batch.size(); ++i) {
      if (outcomes[i].ok()) {
        stats_.reports++;
        stats_.results += outcomes[i]->results;
        stats_.written += outcomes[i]->written;
        stats_.transitions += outcomes[i]->transitions;
      } else {
        stats_.failed++;
        spdlog::error("commit of scan {} from node {} failed: {}", batch[i].report->scan_id(),
                      batch[i].report->node().node_name(), outcomes[i].status().ToString());
      }
      batch[i].done(outcomes[i]);
    }
    {
      std::lock_guard lock(mu_);
      for (const auto& node : nodes) busy_.erase(node);
    }
    // Writers waiting for these nodes, and Stop's last batch.
    cv_.notify_all();
  }
}

bool Ingest::ReadyLocked() const {
  // Some node with queued reports is not busy: more such nodes than busy ones among them.
  size_t busy_and_queued = 0;
  for (const auto& node : busy_) busy_and_queued += queued_.contains(node) ? 1 : 0;
  return queued_.size() > busy_and_queued;
}

}  // namespace kspm::collector::server

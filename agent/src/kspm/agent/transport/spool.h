#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "kspm/v1/results.pb.h"

namespace kspm::agent::transport {

// A bounded on-disk queue of reports not yet acknowledged by the collector. Survives agent
// restarts; drained oldest first. Each report is one file written atomically (temporary file,
// fsync, rename), named by a sequence number. Thread-safe.
//
// When a new report would exceed the bounds, the oldest reports are dropped first and
// `TakeDropped()` reports it, so that the agent sends its next report in full (later deltas
// would otherwise refer to a base the collector never saw).
class Spool {
 public:
  struct Item {
    uint64_t sequence = 0;
    v1::NodeReport report;
  };

  // Opens (creating) `dir` and loads what an earlier run left. Files that do not parse are
  // moved aside as `*.corrupt` and logged; they never block the queue.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Spool>> Open(std::string dir,
                                                                   size_t max_bytes,
                                                                   size_t max_items);

  // Persists a report. Fails (ResourceExhausted with the path) only when the disk refuses it;
  // the report is then not queued.
  [[nodiscard]] absl::Status Append(const v1::NodeReport& report);
  // The oldest report, if any.
  std::optional<Item> Front() const;
  // Removes a delivered report.
  void Pop(uint64_t sequence);
  size_t size() const;
  size_t bytes() const;
  // Whether reports were dropped for space since the last call.
  bool TakeDropped();

 private:
  struct Entry {
    uint64_t sequence;
    std::string path;
    size_t bytes;
  };
  Spool(std::string dir, size_t max_bytes, size_t max_items)
      : dir_(std::move(dir)), max_bytes_(max_bytes), max_items_(max_items) {}
  std::string PathOf(uint64_t sequence) const;
  void DropOldestLocked();

  const std::string dir_;
  const size_t max_bytes_;
  const size_t max_items_;
  mutable std::mutex mu_;
  mutable std::deque<Entry> entries_;  // Front() sets corrupt files aside
  mutable size_t bytes_ = 0;
  uint64_t next_sequence_ = 1;
  bool dropped_ = false;
};

}  // namespace kspm::agent::transport

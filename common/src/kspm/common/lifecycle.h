#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kspm::common {

// Start-up and tear-down as one ordered list of steps (as falco's application runs its
// actions): each step starts one thing and says how to stop it. Steps start in order; the
// first that fails stops the ones already started, last first, so no start-up path unwinds by
// hand. Stop (or the destructor) stops every started step, last first.
//
// Not thread-safe: `main` owns it.
class Lifecycle {
 public:
  struct Step {
    std::string name;  // for logs and errors: "spool", "health listener"
    std::function<absl::Status()> start;
    std::function<void()> stop;  // may be empty: nothing to undo
  };

  Lifecycle() = default;
  Lifecycle(const Lifecycle&) = delete;
  Lifecycle& operator=(const Lifecycle&) = delete;
  ~Lifecycle() { Stop(); }

  // Starts `steps` in order after those already started. On a failure the started steps are
  // stopped (last first) and the error is returned with the step's name: "spool: ...".
  [[nodiscard]] absl::Status Start(std::vector<Step> steps);
  // Stops every started step, last first. Idempotent.
  void Stop();
  // The names of the started steps, in start order (for tests and logs).
  std::vector<std::string> started() const;

 private:
  std::vector<Step> started_;
};

}  // namespace kspm::common

#pragma once

// Reads a JSON List (`kubectl get -A -o json`, a saved API list) item by item, fast: a scan that
// follows only strings and brackets finds each element of the top-level `items` array, and each
// item is then parsed on its own by simdjson and built straight into a compact Doc, with what
// checks never read left out (Prune's lists) and a replica's pod spec never built. A cluster's
// pods.json of hundreds of megabytes is read in a buffer the size of its largest item, never
// whole. An item simdjson refuses (an integer past 64 bits, say) is parsed by nlohmann, which
// reads everything JSON allows; an item neither can parse is a syntax error.
#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "kspm/collector/k8s/object.h"

namespace kspm::collector::k8s {

// Where the bytes come from: a file, or text in memory.
class JsonInput {
 public:
  virtual ~JsonInput() = default;
  // Up to `n` bytes into `dst`: how many (0 at the end), or -1 on a read error (errno set).
  virtual ssize_t Read(char* dst, size_t n) = 0;
};

struct ListRead {
  enum class Outcome {
    kNotAList,     // not an object with an `items` array: nothing was added
    kDone,         // every item read; `problems` names those that were not added
    kSyntaxError,  // not JSON at `byte` (items before it were added)
    kReadError,    // the input failed (`error`); items before it were added
  };
  Outcome outcome = Outcome::kNotAList;
  size_t byte = 0;
  std::string error;
  std::vector<std::string> problems;
  size_t added = 0;
  nlohmann::json metadata;  // the list's own `metadata` (resourceVersion, continue); null if none
};

// Adds the items of the List in `in` to `out` (`origin`: the file's name, in each object and
// message); items of a list that names no kind (`List`) and have none take `default_kind`.
// ConfigMaps read with their contents (Snapshot::inspect_config_data) go through nlohmann, to be
// summarised as AddDocument does.
ListRead ReadJsonList(JsonInput& in, const std::string& origin, Snapshot& out,
                      std::string_view default_kind = {});

// The same reading with nothing parsed or added: whether `in` is a List and JSON in its
// structure (items are not checked), and its `metadata`.
ListRead ScanJsonList(JsonInput& in);

// Input from text in memory.
class TextInput : public JsonInput {
 public:
  explicit TextInput(std::string_view text) : text_(text) {}
  ssize_t Read(char* dst, size_t n) override;

 private:
  std::string_view text_;
};

}  // namespace kspm::collector::k8s

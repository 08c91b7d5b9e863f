#include "kspm/collector/k8s/snapshot_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "kspm/collector/k8s/list_reader.h"

namespace kspm::collector::k8s {
namespace {

namespace fs = std::filesystem;

// An integer as YAML 1.1 spells it and Go's strconv.ParseInt(s, 0, 64) reads it (after dropping
// `_`): an optional sign, then decimal, `0x` hex, `0b` binary or `0` octal (`0644` is 420).
std::optional<long long> Yaml11Integer(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) negative = s[i++] == '-';
  int base = 10;
  if (s.size() - i > 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
    base = 16;
    i += 2;
  } else if (s.size() - i > 2 && s[i] == '0' && (s[i + 1] == 'b' || s[i + 1] == 'B')) {
    base = 2;
    i += 2;
  } else if (s.size() - i > 1 && s[i] == '0') {
    base = 8;
    i += 1;
  }
  if (i >= s.size()) return std::nullopt;
  unsigned long long value = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    if (digit < 0 || digit >= base) return std::nullopt;
    if (value > (static_cast<unsigned long long>(INT64_MAX) - digit) / base) return std::nullopt;
    value = value * base + digit;
  }
  return negative ? -static_cast<long long>(value) : static_cast<long long>(value);
}

bool IsFloat(const std::string& s) {
  static const std::regex kFloat(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  return std::regex_match(s, kFloat);
}

// A plain (unquoted) scalar typed as Kubernetes reads manifests: sigs.k8s.io/yaml decodes with
// go-yaml v2, whose YAML 1.1 rules make `yes`, `on`, `y` true and `no`, `off`, `n` false, and
// read `0644` as octal. Quoted scalars stay strings.
nlohmann::json Scalar(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  // yaml-cpp tags quoted scalars "!" and plain ones "?": only plain scalars are typed.
  if (node.Tag() == "!") return s;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  static const std::set<std::string, std::less<>> kTrue = {
      "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
  static const std::set<std::string, std::less<>> kFalse = {
      "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"};
  if (kTrue.contains(s)) return true;
  if (kFalse.contains(s)) return false;
  const char first = s[0];
  if ((first >= '0' && first <= '9') || first == '-' || first == '+') {
    if (const auto n = Yaml11Integer(s)) return *n;
  }
  if (IsFloat(s) && s.size() < 40) {
    try {
      return std::stod(s);
    } catch (...) {
      return s;
    }
  }
  return s;
}

// Line and column (1-based) of a byte offset.
std::pair<size_t, size_t> Position(const std::string& text, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

// The kinds a file that does not parse seems to hold, read with a pattern: enough to say
// which checks cannot be trusted.
std::set<std::string> SniffKinds(const std::string& text) {
  static const std::regex kPattern(R"((?:"kind"\s*:\s*"|(?:^|\n)\s*-?\s*kind:\s*)([A-Za-z]+))");
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kPattern);
       it != std::sregex_iterator(); ++it) {
    std::string kind = (*it)[1].str();
    if (kind == "List") continue;
    if (kind.size() > 4 && kind.ends_with("List")) kind.resize(kind.size() - 4);
    out.insert(kind);
  }
  return out;
}

// When a file is read: 0 for workload controllers, 1 for ReplicaSets and Jobs, 2 for Pods, 1
// for anything else; told from the first kind named in its first 64 KiB (a List's first item).
int LoadRank(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string head(64 * 1024, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  for (size_t pos = 0; (pos = head.find("kind", pos)) != std::string::npos; pos += 4) {
    // `"kind": "X"` in JSON, `kind: X` in YAML.
    size_t i = pos + 4;
    if (i < head.size() && head[i] == '"') ++i;
    while (i < head.size() && (head[i] == ' ' || head[i] == ':' || head[i] == '"')) ++i;
    size_t end = i;
    while (end < head.size() && std::isalpha(static_cast<unsigned char>(head[end]))) ++end;
    const std::string kind = head.substr(i, end - i);
    if (kind.empty() || kind == "List" || kind.ends_with("List")) continue;
    if (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" || kind == "CronJob" ||
        kind == "ReplicationController") {
      return 0;
    }
    return kind == "Pod" ? 2 : 1;
  }
  return 1;
}

}  // namespace

nlohmann::json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return Scalar(node);
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(YamlToJson(item));
      return out;
    }
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& kv : node) {
        // Keys are typed like values, then written as JSON keys (`on:` is the key "true").
        std::string key = kv.first.IsScalar() ? kv.first.Scalar() : kv.first.as<std::string>();
        if (kv.first.IsScalar()) {
          const auto typed = Scalar(kv.first);
          if (typed.is_boolean() || typed.is_number_integer()) key = typed.dump();
        }
        out[key] = YamlToJson(kv.second);
      }
      return out;
    }
  }
  return nullptr;
}

namespace {

// nlohmann's syntax error as kspm reports it: the file, line and column, and what was wrong.
absl::Status SyntaxError(const std::string& name, const nlohmann::json::parse_error& e,
                         const std::function<std::pair<size_t, size_t>(size_t)>& position) {
  const auto [line, col] = position(e.byte > 0 ? e.byte - 1 : 0);
  std::string what = e.what();
  // Keep nlohmann's description, not its prefix with the position we print ourselves.
  if (const auto pos = what.find(": syntax error"); pos != std::string::npos) {
    what = what.substr(pos + 2);
  }
  return absl::InvalidArgumentError(name + ": line " + std::to_string(line) + ", column " +
                                    std::to_string(col) + ": " + what);
}

// Where `input` stops being JSON, as SyntaxError words it; OK when it is JSON. Nothing is built.
template <typename Input>
absl::Status CheckSyntax(Input&& input, const std::string& name,
                         const std::function<std::pair<size_t, size_t>(size_t)>& position) {
  struct Validate : nlohmann::json_sax<nlohmann::json> {
    std::optional<nlohmann::json::parse_error> error;
    std::string other;  // an error that is not about the grammar (a number past a double)
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return true; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&,
                     const nlohmann::detail::exception& e) override {
      // nlohmann passes its out_of_range errors (a number past a double) here too.
      if (const auto* grammar = dynamic_cast<const nlohmann::json::parse_error*>(&e)) {
        error.emplace(*grammar);
      } else {
        other = e.what();
      }
      return false;
    }
  } validate;
  nlohmann::json::sax_parse(std::forward<Input>(input), &validate);
  if (validate.error) return SyntaxError(name, *validate.error, position);
  if (!validate.other.empty()) return absl::InvalidArgumentError(name + ": " + validate.other);
  return absl::OkStatus();
}

// What the fast list reader (list_reader.h) found, as LoadJson would say it; nothing when the
// input is not a list it reads (LoadJson reads it then). `check_syntax` words a syntax error.
std::optional<absl::Status> ListOutcome(const ListRead& read, const std::string& name,
                                        const std::function<absl::Status()>& check_syntax) {
  switch (read.outcome) {
    case ListRead::Outcome::kNotAList:
      return std::nullopt;
    case ListRead::Outcome::kDone:
      return ItemProblems(name, read.problems);
    case ListRead::Outcome::kReadError:
      return absl::DataLossError(name + ": cannot read (" + read.error + ")");
    case ListRead::Outcome::kSyntaxError:
      break;
  }
  if (auto s = check_syntax(); !s.ok()) return s;
  // The reader and nlohmann disagree: say where the reader stopped.
  return absl::InvalidArgumentError(name + ": not JSON at byte " + std::to_string(read.byte));
}

// Input from an open file, which it closes.
class FileInput : public JsonInput {
 public:
  explicit FileInput(int fd) : fd_(fd) {}
  ~FileInput() override { ::close(fd_); }
  FileInput(const FileInput&) = delete;
  FileInput& operator=(const FileInput&) = delete;
  ssize_t Read(char* dst, size_t n) override { return ::read(fd_, dst, n); }

 private:
  int fd_;
};

}  // namespace

// The problems of the items that could not be added, as one error (OK when none).
absl::Status ProblemsStatus(const std::vector<std::string>& problems) {
  if (problems.empty()) return absl::OkStatus();
  std::string msg;
  for (const auto& p : problems) msg += (msg.empty() ? "" : "; ") + p;
  return absl::InvalidArgumentError(msg);
}

// A JSON document (a List, an object, or an array of objects) from `input` (a string or a
// stream); `position` turns a byte offset into (line, column) for messages.
template <typename Input>
absl::Status LoadJson(Input&& input, const std::string& name, Snapshot& out,
                      const std::function<std::pair<size_t, size_t>(size_t)>& position,
                      std::vector<std::string>& problems) {
  // A list's items are taken out as soon as each is parsed, and pruned: the whole document
  // never exists at once (a cluster's pods.json can be hundreds of megabytes).
  // What Prune would drop is not even built: status, data and managedFields are most of a
  // live object's size.
  bool top_object = false;
  std::string top_key, item_key, list_kind, list_version;
  std::vector<nlohmann::json> items;
  size_t first_index = 0;  // of items[0] in the list, for messages
  // Items join the snapshot in chunks while the rest of the list is parsed, so that replicas
  // drop their pod spec as they arrive (Snapshot::Add). Items without a kind wait until the
  // list's kind is known (the API writes it before `items`, kubectl after).
  const auto flush = [&](bool at_end) {
    const bool kinds_known = !list_kind.empty() || at_end;
    if (!kinds_known) {
      for (const auto& item : items) {
        if (!item.is_object() || !item.contains("kind")) return;
      }
    }
    if (items.empty()) return;
    const std::string kind = list_kind.empty() ? "List" : list_kind;
    const size_t n = items.size();
    if (auto st =
            AddListItems(std::move(items), kind, list_version, name, out, nullptr, {}, first_index);
        !st.ok() && problems.size() < 3) {
      problems.emplace_back(st.message());
    }
    first_index += n;
    items.clear();
  };
  const auto take_items = [&](int depth, nlohmann::json::parse_event_t event,
                              nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (depth == 0 && event == Event::object_start) top_object = true;
    if (depth == 1 && event == Event::key && top_object) top_key = parsed.get<std::string>();
    if (depth == 1 && event == Event::value && top_object && parsed.is_string()) {
      if (top_key == "kind") list_kind = parsed.get<std::string>();
      if (top_key == "apiVersion") list_version = parsed.get<std::string>();
    }
    const bool in_items = top_object && top_key == "items";
    if (in_items && event == Event::key && depth == 3) {
      item_key = parsed.get<std::string>();
      // ConfigMap contents are kept until the item is added (and summarised) only when asked.
      const bool contents = item_key == "data" || item_key == "binaryData";
      if (item_key == "status" || item_key == "stringData" ||
          (contents && !out.inspect_config_data())) {
        return false;  // the key and its value are skipped
      }
    }
    if (in_items && event == Event::key && depth == 4 && item_key == "metadata" &&
        parsed.get<std::string>() == "managedFields") {
      return false;
    }
    if (in_items && depth == 2 && event == Event::object_end) {
      if (!out.inspect_config_data()) Prune(parsed);  // else AddItem summarises, then prunes
      items.push_back(std::move(parsed));
      if (items.size() >= 256) flush(false);
      return false;  // not kept in the document
    }
    return true;
  };
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(std::forward<Input>(input), take_items);
  } catch (const nlohmann::json::parse_error& e) {
    return SyntaxError(name, e, position);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(name + ": " + e.what());
  }
  if (doc.is_object()) {
    // Items that are not objects stayed in the document: hand them over to be reported.
    if (const auto it = doc.find("items"); it != doc.end() && it->is_array()) {
      for (auto& v : *it) items.push_back(std::move(v));
    }
  }
  if (first_index > 0 || !items.empty() || (doc.is_object() && doc.contains("items"))) {
    if (doc.is_object()) {
      list_kind = doc.value("kind", std::string());
      list_version = doc.value("apiVersion", std::string());
    }
    flush(true);
  } else {
    auto docs = doc.is_array() ? std::move(doc) : nlohmann::json::array({std::move(doc)});
    for (size_t i = 0; i < docs.size(); ++i) {
      const std::string origin = docs.size() > 1 ? name + "[" + std::to_string(i) + "]" : name;
      if (auto s = AddDocument(std::move(docs[i]), origin, out); !s.ok()) {
        problems.emplace_back(s.message());
      }
    }
  }
  return absl::OkStatus();
}

absl::Status LoadSnapshotText(const std::string& text, const std::string& name, Snapshot& out) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return absl::OkStatus();
  std::vector<std::string> problems;
  if (text[first] == '{' || text[first] == '[') {
    const auto position = [&](size_t byte) { return Position(text, byte); };
    TextInput input(text);
    const auto listed = ListOutcome(ReadJsonList(input, name, out), name,
                                    [&] { return CheckSyntax(text, name, position); });
    if (listed) return *listed;
    if (auto s = LoadJson(text, name, out, position, problems); !s.ok()) return s;
  } else {
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(text);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(name + ": line " + std::to_string(e.mark.line + 1) +
                                        ", column " + std::to_string(e.mark.column + 1) + ": " +
                                        e.msg);
    }
    for (size_t i = 0; i < docs.size(); ++i) {
      const std::string origin =
          docs.size() > 1 ? name + " (document " + std::to_string(i + 1) + ")" : name;
      nlohmann::json doc;
      try {
        doc = YamlToJson(docs[i]);
      } catch (const std::exception& e) {
        problems.push_back(origin + ": " + e.what());
        continue;
      }
      if (auto s = AddDocument(std::move(doc), origin, out); !s.ok()) {
        problems.emplace_back(s.message());
      }
    }
  }
  return ProblemsStatus(problems);
}

namespace {

// The file's text; empty when it cannot be read (a read error can throw from the stream buffer).
std::string ReadWhole(const fs::path& path) {
  try {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception&) {
    return "";
  }
}

// A file that could not be read fails the checks of the kinds it names (or, naming none, makes
// the snapshot incomplete).
void MarkUnreadable(const std::string& text, const std::string& name, const absl::Status& s,
                    Snapshot& out) {
  const auto kinds = SniffKinds(text);
  if (kinds.empty()) out.MarkIncomplete(name + " could not be read: " + std::string(s.message()));
  for (const auto& kind : kinds) out.MarkFailed(kind, "snapshot file " + std::string(s.message()));
}

// Skips the blanks LoadSnapshotText skips before telling JSON from YAML; how many (nlohmann
// counts bytes from after them).
size_t SkipBlanks(std::istream& in) {
  size_t skipped = 0;
  for (int c = in.peek(); c == ' ' || c == '\t' || c == '\r' || c == '\n'; c = in.peek()) {
    in.get();
    ++skipped;
  }
  return skipped;
}

// Line and column of a byte nlohmann counted after `skipped` blanks of the file at `path`: the
// file is read again for it, only when there is an error to place.
std::function<std::pair<size_t, size_t>(size_t)> PositionIn(const fs::path& path, size_t skipped) {
  return [path, skipped](size_t byte) { return Position(ReadWhole(path), skipped + byte); };
}

// `parse()`, with a read error of the stream it reads reported as DataLoss: nlohmann reads the
// stream buffer directly, so a read error (EIO, a vanished NFS file) comes as an exception, not
// as the stream's bad bit.
absl::Status ReadingStream(const std::string& name, const std::function<absl::Status()>& parse) {
  try {
    return parse();
  } catch (const std::exception& e) {
    return absl::DataLossError(name + ": cannot read (" + e.what() + ")");
  }
}

// A JSON file parsed from the stream; nothing when it is not JSON (or cannot be opened: the
// caller says so).
std::optional<absl::Status> LoadJsonFile(const fs::path& path, const std::string& name,
                                         Snapshot& out, bool fast_lists) {
  // A List (what large files are) is read by the fast reader; anything else by nlohmann.
  if (const int fd = fast_lists ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC) : -1; fd >= 0) {
    FileInput input(fd);
    const auto listed = ListOutcome(ReadJsonList(input, name, out), name, [&] {
      std::ifstream in(path, std::ios::binary);
      const size_t skipped = SkipBlanks(in);
      return ReadingStream(name, [&] {
        return CheckSyntax(static_cast<std::istream&>(in), name, PositionIn(path, skipped));
      });
    });
    if (listed) return *listed;
  }
  std::vector<char> buffer(1 << 20);
  std::ifstream in;
  in.rdbuf()->pubsetbuf(buffer.data(), static_cast<std::streamsize>(buffer.size()));
  in.open(path, std::ios::binary);
  if (!in) return std::nullopt;
  const size_t skipped = SkipBlanks(in);
  if (in.peek() != '{' && in.peek() != '[') return std::nullopt;
  std::vector<std::string> problems;
  if (auto s = ReadingStream(name,
                             [&] {
                               return LoadJson(static_cast<std::istream&>(in), name, out,
                                               PositionIn(path, skipped), problems);
                             });
      !s.ok()) {
    return s;
  }
  return ProblemsStatus(problems);
}

}  // namespace

absl::Status LoadSnapshotDir(const std::string& dir, Snapshot& out, bool fast_lists) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError("snapshot directory " + dir + " does not exist or is not a " +
                                      "directory");
  }
  std::vector<fs::path> files;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) return absl::InvalidArgumentError("cannot read " + dir + ": " + ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return absl::InvalidArgumentError("cannot read " + dir + ": " + ec.message());
    const std::string base = it->path().filename().string();
    if (!base.empty() && base[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec)) files.push_back(it->path());
  }
  // Owners before what they own (Deployments before ReplicaSets before Pods), so that replicas
  // drop their pod spec as they are read; name order otherwise.
  std::vector<std::pair<int, fs::path>> ordered;
  for (auto& path : files) ordered.emplace_back(LoadRank(path), std::move(path));
  std::sort(ordered.begin(), ordered.end());
  for (const auto& [rank, path] : ordered) {
    const std::string name = fs::relative(path, dir, ec).string();
    // JSON is parsed as it is read: a large cluster's pods.json is hundreds of megabytes, and
    // holding its text would add that much to the peak.
    if (auto streamed = LoadJsonFile(path, name, out, fast_lists)) {
      if (absl::IsDataLoss(*streamed)) {
        out.AddError(std::string(streamed->message()));
        out.MarkIncomplete(name + " could not be read");
      } else if (!streamed->ok()) {
        out.AddError(std::string(streamed->message()));
        MarkUnreadable(ReadWhole(path), name, *streamed, out);
      }
      continue;
    }
    // YAML: read straight into one string (a stringstream would hold a second copy).
    std::ifstream in(path, std::ios::binary);
    std::string text;
    if (in) {
      in.seekg(0, std::ios::end);
      const auto size = in.tellg();
      in.seekg(0, std::ios::beg);
      if (size > 0) {
        text.resize(static_cast<size_t>(size));
        in.read(text.data(), size);
        text.resize(static_cast<size_t>(in.gcount()));
      }
    }
    if (!in.good() && !in.eof()) {
      out.AddError(name + ": cannot read");
      out.MarkIncomplete(name + " could not be read");
      continue;
    }
    if (auto s = LoadSnapshotText(text, name, out); !s.ok()) {
      out.AddError(std::string(s.message()));
      MarkUnreadable(text, name, s, out);
    }
  }
  return absl::OkStatus();
}

}  // namespace kspm::collector::k8s

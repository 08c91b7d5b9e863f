#include "kspm/collector/k8s/list_reader.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>

#include "kspm/collector/k8s/resources.h"
#include "simdjson.h"

namespace kspm::collector::k8s {
namespace {

using simdjson::dom::element;

// The last member named `key` of an object (nlohmann keeps the last of duplicate names).
std::optional<element> Last(element object, std::string_view key) {
  simdjson::dom::object members;
  if (object.get_object().get(members) != simdjson::SUCCESS) return std::nullopt;
  std::optional<element> found;
  for (const auto field : members) {
    if (field.key == key) found = field.value;
  }
  return found;
}

std::string_view LastString(element object, std::string_view key) {
  const auto v = Last(object, key);
  std::string_view s;
  if (!v || v->get_string().get(s) != simdjson::SUCCESS) return {};
  return s;
}

std::optional<OwnerRef> ControllerOfItem(element item) {
  const auto meta = Last(item, "metadata");
  if (!meta) return std::nullopt;
  const auto refs = Last(*meta, "ownerReferences");
  simdjson::dom::array list;
  if (!refs || refs->get_array().get(list) != simdjson::SUCCESS) return std::nullopt;
  for (const auto ref : list) {
    const auto controller = Last(ref, "controller");
    bool on = false;
    if (!controller || controller->get_bool().get(on) != simdjson::SUCCESS || !on) continue;
    return OwnerRef{std::string(LastString(ref, "kind")), std::string(LastString(ref, "name"))};
  }
  return std::nullopt;
}

// The input in a buffer that holds at least the item being read, with simdjson's padding after
// the data. Positions are offsets in the buffer; `base_` is the input offset of its first byte.
class Reader {
 public:
  // `out` null: the items' extents are checked and nothing is parsed or added.
  Reader(JsonInput& in, const std::string& origin, Snapshot* out, std::string_view default_kind)
      : in_(in), origin_(origin), out_(out), default_kind_(default_kind) {}

  ListRead Run() {
    SkipBlanks();
    if (failed_) return Finish();
    if (Peek() != '{') return result_;  // not a list: nothing read is used
    ++pos_;
    bool first = true;
    for (;;) {
      SkipBlanks();
      if (Peek() == '}' && first) {
        ++pos_;
        break;
      }
      if (!first) {
        if (Peek() == '}') {
          ++pos_;
          break;
        }
        if (!Expect(',')) return Finish();
        SkipBlanks();
      }
      first = false;
      if (Peek() != '"') return Syntax();
      const size_t key_start = base_ + pos_;  // input offsets: the buffer may move
      if (!ScanValue()) return Finish();
      const auto key = Decode(key_start);
      if (!key) return Syntax(key_start);
      SkipBlanks();
      if (!Expect(':')) return Finish();
      SkipBlanks();
      if (*key == "items" && Peek() == '[') {
        if (!Items()) return Finish();
        continue;
      }
      const size_t value_start = base_ + pos_;
      if (!ScanValue()) return Finish();
      // The list's other members (metadata, kind) are small: parsed whole, which also checks
      // them.
      const auto value = Decode(value_start);
      if (!value) return Syntax(value_start);
      if (*key == "metadata") result_.metadata = *value;
      if ((*key == "kind" || *key == "apiVersion") && value->is_string()) {
        (*key == "kind" ? list_kind_ : list_version_) = value->get<std::string>();
        (*key == "kind" ? seen_kind_ : seen_version_) = true;
      }
      Consume();
    }
    SkipBlanks();
    if (failed_) return Finish();
    if (Peek() != kEnd) return Syntax();
    if (!saw_items_) {
      result_.outcome = ListRead::Outcome::kNotAList;
      return result_;
    }
    // Items that waited for the list's kind or version.
    header_known_ = true;
    for (auto& [index, text] : deferred_) {
      const simdjson::padded_string padded(text);
      Item(padded.data(), padded.size(), index);
    }
    result_.outcome = ListRead::Outcome::kDone;
    return result_;
  }

 private:
  static constexpr int kEnd = -1;
  static constexpr size_t kChunk = 1 << 20;

  // The byte at pos_, reading more when needed; kEnd at the end of the input (or on a failure).
  int Peek() {
    if (pos_ >= end_ && !More()) return kEnd;
    return static_cast<unsigned char>(buf_[pos_]);
  }

  // Reads more input after end_, first moving what is still needed (from mark_) to the front.
  bool More() {
    if (failed_ || eof_) return false;
    if (mark_ > 0 && mark_ >= buf_.size() / 2) {
      std::memmove(buf_.data(), buf_.data() + mark_, end_ - mark_);
      base_ += mark_;
      pos_ -= mark_;
      end_ -= mark_;
      mark_ = 0;
    }
    if (buf_.size() < end_ + kChunk + simdjson::SIMDJSON_PADDING) {
      buf_.resize(std::max(buf_.size() * 2, end_ + kChunk + simdjson::SIMDJSON_PADDING));
    }
    for (;;) {
      const ssize_t n = in_.Read(buf_.data() + end_, kChunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        failed_ = true;
        result_.outcome = ListRead::Outcome::kReadError;
        result_.error = std::strerror(errno);
        return false;
      }
      if (n == 0) {
        eof_ = true;
        return false;
      }
      end_ += static_cast<size_t>(n);
      return true;
    }
  }

  // Forgets what precedes pos_ (it may be moved out on the next read).
  void Consume() { mark_ = pos_; }

  void SkipBlanks() {
    for (int c = Peek(); c == ' ' || c == '\t' || c == '\n' || c == '\r'; c = Peek()) ++pos_;
  }

  bool Expect(char c) {
    if (Peek() != c) {
      Syntax();
      return false;
    }
    ++pos_;
    return true;
  }

  // Not JSON at input offset `at` (by default, pos_).
  ListRead Syntax(std::optional<size_t> at = std::nullopt) {
    if (!failed_) {
      failed_ = true;
      result_.outcome = ListRead::Outcome::kSyntaxError;
      result_.byte = at.value_or(base_ + pos_);
    }
    return result_;
  }

  ListRead Finish() { return failed_ ? result_ : Syntax(); }

  // Moves pos_ past one JSON value (its extent only: strings and brackets are followed, the
  // rest is left to the parser). False on a syntax error or the end of the input.
  bool ScanValue() {
    int depth = 0;
    for (;;) {
      int c = Peek();
      if (c == kEnd) {
        Syntax();
        return false;
      }
      if (c == '"') {
        ++pos_;
        if (!ScanString()) return false;
        if (depth == 0) return true;
        continue;
      }
      if (c == '{' || c == '[') {
        ++depth;
        ++pos_;
        continue;
      }
      if (c == '}' || c == ']') {
        if (depth == 0) return true;  // a scalar's end (or an empty value: the parser says)
        ++pos_;
        if (--depth == 0) return true;
        continue;
      }
      if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
        return true;  // a scalar's end
      }
      ++pos_;
    }
  }

  // pos_ is just past an opening quote: moves past the closing one. Each byte is searched once:
  // the next quote found is kept (as an input offset: the buffer may move) until pos_ passes
  // it, so a string of many escapes costs no more than one without.
  bool ScanString() {
    std::optional<size_t> quote;  // input offset of the next `"` at or after pos_, if known
    for (;;) {
      if (pos_ >= end_ && !More()) {
        Syntax();
        return false;
      }
      if (quote && *quote < base_ + pos_) quote.reset();
      if (!quote) {
        const void* q = std::memchr(buf_.data() + pos_, '"', end_ - pos_);
        if (q) quote = base_ + static_cast<size_t>(static_cast<const char*>(q) - buf_.data());
      }
      const size_t limit = quote ? *quote - base_ : end_;  // where this search for `\` stops
      const void* escape = std::memchr(buf_.data() + pos_, '\\', limit - pos_);
      if (escape) {
        // The escaped byte is skipped (a `\"` is not the end).
        pos_ = static_cast<size_t>(static_cast<const char*>(escape) - buf_.data()) + 1;
        if (pos_ >= end_ && !More()) {
          Syntax();
          return false;
        }
        ++pos_;
        continue;
      }
      if (quote) {
        pos_ = *quote - base_ + 1;
        return true;
      }
      pos_ = end_;
    }
  }

  // The value from input offset `from` to pos_, parsed; nothing when it is not JSON.
  std::optional<nlohmann::json> Decode(size_t from) {
    const char* begin = buf_.data() + (from - base_);
    const char* end = buf_.data() + pos_;
    auto j = nlohmann::json::parse(begin, end, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }

  // pos_ is at the `[` of `items`: reads every element, leaving pos_ past the `]`.
  bool Items() {
    saw_items_ = true;
    ++pos_;
    bool first = true;
    for (;;) {
      SkipBlanks();
      Consume();
      if (Peek() == ']') {
        ++pos_;
        Consume();
        return true;
      }
      if (!first && !Expect(',')) return false;
      if (!first) SkipBlanks();
      first = false;
      Consume();
      const size_t start = base_ + pos_;  // an input offset: the buffer may move
      if (!ScanValue()) return false;
      const char* text = buf_.data() + (start - base_);
      const size_t size = base_ + pos_ - start;
      // The parser may read up to the padding past the item: the buffer always has it.
      if (size == 0 || (out_ && !Item(text, size, index_++))) {
        Syntax(start);
        return false;
      }
    }
  }

  // One item's text. False when it is not JSON.
  bool Item(const char* text, size_t size, size_t index) {
    element item;
    if (parser_.parse(text, size, false).get(item) != simdjson::SUCCESS) {
      return ItemByNlohmann(text, size, index);
    }
    const std::string where = "items[" + std::to_string(index) + "]";
    if (!item.is_object()) {
      result_.problems.push_back(where + " is not an object");
      return true;
    }
    std::string kind(LastString(item, "kind"));
    std::string version(LastString(item, "apiVersion"));
    if (Waits(kind.empty() || version.empty())) {
      deferred_.emplace_back(index, std::string(text, size));
      return true;
    }
    const auto [item_kind, item_version] = Defaults();
    if (kind.empty()) kind = item_kind;
    if (version.empty()) version = item_version;
    if (SnapshotKind(version, kind) == "ConfigMap" && out_->inspect_config_data()) {
      return ItemByNlohmann(text, size, index);  // summarised on the way in
    }
    Object head;
    if (const auto meta = Last(item, "metadata")) {
      head.name = LastString(*meta, "name");
      head.ns = LastString(*meta, "namespace");
    }
    if (kind.empty() || head.name.empty()) {
      result_.problems.push_back(where + " has no " + (kind.empty() ? "kind" : "metadata.name"));
      return true;
    }
    head.kind = SnapshotKind(version, kind);
    head.api_version = std::move(version);
    head.origin = origin_;
    const bool has_spec = Last(item, "spec").has_value();
    const bool added =
        out_->AddBuilt(std::move(head), ControllerOfItem(item), has_spec, [&](bool drop_spec) {
          static constexpr auto kWithSpec = [] {
            std::array<std::string_view, std::size(kPrunedTop) + 1> out{};
            std::copy(std::begin(kPrunedTop), std::end(kPrunedTop), out.begin());
            out.back() = "spec";
            return out;
          }();
          KeyFilter filter{kPrunedTop, kPrunedMetadata, kPrunedAnnotations};
          if (drop_spec) filter.top = kWithSpec;
          return Doc::FromSimdjson(item, filter);
        });
    if (!added) {
      result_.problems.push_back(where + " nests deeper than any Kubernetes object");
      return true;
    }
    ++result_.added;
    return true;
  }

  // An item simdjson refused: nlohmann reads all JSON allows (integers past 64 bits, any depth).
  bool ItemByNlohmann(const char* text, size_t size, size_t index) {
    nlohmann::json item;
    try {
      item = nlohmann::json::parse(text, text + size);
    } catch (const nlohmann::json::exception&) {
      return false;
    }
    if (Waits(item.is_object() && (!item.contains("kind") || !item.contains("apiVersion")))) {
      deferred_.emplace_back(index, std::string(text, size));
      return true;
    }
    const auto [item_kind, item_version] = Defaults();
    result_.added +=
        AddListItem(std::move(item), item_kind, item_version,
                    "items[" + std::to_string(index) + "]", origin_, *out_, result_.problems);
    return true;
  }

  // Whether the list's own kind and version are known (the API writes them before the items;
  // kubectl after, but its items name their own). A plain `List` gives its items no version.
  bool HeaderKnown() const {
    return header_known_ || (seen_kind_ && (seen_version_ || list_kind_ == "List"));
  }

  // Whether an item waits for the end of the list: it needs the list's kind or version
  // (`needs_header`) and they are not known yet, or an earlier item waits (items are added in
  // list order: the first copy of an object wins, and replicas drop their spec in order).
  bool Waits(bool needs_header) const {
    return !HeaderKnown() && (needs_header || !deferred_.empty());
  }

  std::pair<std::string, std::string> Defaults() const {
    return ListItemDefaults(list_kind_.empty() ? "List" : list_kind_, list_version_, default_kind_);
  }

  JsonInput& in_;
  const std::string& origin_;
  Snapshot* out_;
  std::string_view default_kind_;
  simdjson::dom::parser parser_;
  std::vector<char> buf_;
  size_t base_ = 0, pos_ = 0, end_ = 0, mark_ = 0;
  bool eof_ = false, failed_ = false;
  bool saw_items_ = false, seen_kind_ = false, seen_version_ = false, header_known_ = false;
  std::string list_kind_, list_version_;
  size_t index_ = 0;
  std::vector<std::pair<size_t, std::string>> deferred_;
  ListRead result_;
};

}  // namespace

ListRead ReadJsonList(JsonInput& in, const std::string& origin, Snapshot& out,
                      std::string_view default_kind) {
  return Reader(in, origin, &out, default_kind).Run();
}

ssize_t TextInput::Read(char* dst, size_t n) {
  n = std::min(n, text_.size());
  std::memcpy(dst, text_.data(), n);
  text_.remove_prefix(n);
  return static_cast<ssize_t>(n);
}

ListRead ScanJsonList(JsonInput& in) {
  static const std::string kOrigin;
  return Reader(in, kOrigin, nullptr, {}).Run();
}

}  // namespace kspm::collector::k8s

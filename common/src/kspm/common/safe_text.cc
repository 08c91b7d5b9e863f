#include "kspm/common/safe_text.h"

#include <cstdio>
#include <sstream>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/exceptions.h"
#include "yaml-cpp/mark.h"
#include "yaml-cpp/parser.h"

namespace kspm::common {
namespace {

std::string Hex(unsigned char c) {
  char buf[5];
  std::snprintf(buf, sizeof buf, "\\x%02x", c);
  return buf;
}

// Length of the well-formed UTF-8 sequence at `s[i]` (RFC 3629: no overlongs, no surrogates,
// nothing past U+10FFFF), or 0.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

// Counts nodes as a loaded tree would hold them once aliases are expanded, and nesting depth.
class ExpansionCounter final : public YAML::EventHandler {
 public:
  struct TooBig {
    std::string why;
    YAML::Mark mark;
  };
  explicit ExpansionCounter(YamlLimits limits) : limits_(limits) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { Leaf(mark, anchor); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string&) override {
    Leaf(mark, anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Add(mark, anchor < sizes_.size() ? sizes_[anchor] : 1);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Open_ {
    YAML::anchor_t anchor;
    size_t nodes;
    YAML::Mark mark;
  };
  void Record(YAML::anchor_t anchor, size_t nodes) {
    if (anchor == YAML::NullAnchor) return;
    if (sizes_.size() <= anchor) sizes_.resize(anchor + 1, 1);
    sizes_[anchor] = nodes;
  }
  void Add(const YAML::Mark& mark, size_t nodes) {
    total_ += nodes;
    if (total_ > limits_.max_nodes) {
      throw TooBig{"expands to more than " + std::to_string(limits_.max_nodes) +
                       " nodes (aliases counted at their full size)",
                   mark};
    }
    if (!open_.empty()) open_.back().nodes += nodes;
  }
  void Leaf(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Record(anchor, 1);
    Add(mark, 1);
  }
  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (open_.size() >= limits_.max_depth) {
      throw TooBig{"nests deeper than " + std::to_string(limits_.max_depth) + " levels", mark};
    }
    Add(mark, 1);
    open_.push_back({anchor, 1, mark});
  }
  void Close() {
    if (open_.empty()) return;
    const Open_ done = open_.back();
    open_.pop_back();
    Record(done.anchor, done.nodes);
    // The collection's own node was counted at its start; its children were added to it and,
    // through Add, to the total already. The parent gains everything below too.
    if (!open_.empty()) open_.back().nodes += done.nodes - 1;
  }

  const YamlLimits limits_;
  std::vector<Open_> open_;
  std::vector<size_t> sizes_;
  size_t total_ = 0;
};

}  // namespace

bool MakeValidUtf8(std::string* text) {
  std::string_view s = *text;
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = Utf8Length(s, i);
    if (n == 0) break;
    i += n;
  }
  if (i == s.size()) return false;
  std::string out(s.substr(0, i));
  while (i < s.size()) {
    const size_t n = Utf8Length(s, i);
    if (n == 0) {
      out += Hex(static_cast<unsigned char>(s[i]));
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  *text = std::move(out);
  return true;
}

size_t MakeValidUtf8(google::protobuf::Message* message) {
  using google::protobuf::FieldDescriptor;
  const auto* descriptor = message->GetDescriptor();
  const auto* reflection = message->GetReflection();
  size_t changed = 0;
  for (int f = 0; f < descriptor->field_count(); ++f) {
    const FieldDescriptor* field = descriptor->field(f);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
        field->type() == FieldDescriptor::TYPE_STRING) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(*message, field); ++i) {
          std::string value = reflection->GetRepeatedString(*message, field, i);
          if (MakeValidUtf8(&value)) {
            reflection->SetRepeatedString(message, field, i, std::move(value));
            ++changed;
          }
        }
      } else if (reflection->HasField(*message, field) || !field->has_presence()) {
        std::string value = reflection->GetString(*message, field);
        if (MakeValidUtf8(&value)) {
          reflection->SetString(message, field, std::move(value));
          ++changed;
        }
      }
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(*message, field); ++i) {
          changed += MakeValidUtf8(reflection->MutableRepeatedMessage(message, field, i));
        }
      } else if (reflection->HasField(*message, field)) {
        changed += MakeValidUtf8(reflection->MutableMessage(message, field));
      }
    }
  }
  return changed;
}

std::string TerminalSafe(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) {
      out += Hex(c);
    } else if (c == 0xC2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      // U+0080..U+009F: C1 controls, CSI among them.
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(text[i + 1]));
      out += buf;
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

absl::Status CheckYamlSize(const std::string& text, const std::string& path, YamlLimits limits) {
  std::istringstream in(text);
  ExpansionCounter counter(limits);
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(counter)) {
    }
  } catch (const ExpansionCounter::TooBig& e) {
    return absl::InvalidArgumentError(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                      std::to_string(e.mark.column + 1) + ": refused: the YAML " +
                                      e.why);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                      std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return absl::OkStatus();
}

}  // namespace kspm::common

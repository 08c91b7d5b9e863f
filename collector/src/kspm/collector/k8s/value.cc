#include "kspm/collector/k8s/value.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "simdjson.h"

namespace kspm::collector::k8s {
namespace {

const Value& Null() {
  static const Value kNull;
  return kNull;
}

std::string_view NameAt(const char* name) {
  uint32_t n = 0;
  std::memcpy(&n, name - sizeof(uint32_t), sizeof n);
  return {name, n};
}

// Member names shared by every Doc of the process: a cluster's objects use a few thousand
// distinct names (field names, label and annotation keys) millions of times. Bounded, so that a
// stream of objects with ever new keys cannot grow it without end: past the bound, and for long
// names, each Doc keeps its own copy.
class NameTable {
 public:
  static constexpr size_t kMaxBytes = 16 << 20;
  static constexpr size_t kMaxName = 253;  // a label key's prefix limit; longer ones are rare
  static constexpr size_t kChunk = 64 << 10;

  // The shared copy of `name`, or null when it is not (and will not be) shared.
  const char* Find(std::string_view name) {
    if (name.size() > kMaxName) return nullptr;
    std::lock_guard lock(mu_);
    if (const auto it = names_.find(name); it != names_.end()) return it->data();
    if (bytes_ + name.size() + sizeof(uint32_t) > kMaxBytes) return nullptr;
    const size_t need = name.size() + sizeof(uint32_t);
    if (chunks_.empty() || used_ + need > kChunk) {
      chunks_.push_back(std::make_unique<char[]>(kChunk));
      used_ = 0;
    }
    char* at = chunks_.back().get() + used_;
    const auto n = static_cast<uint32_t>(name.size());
    std::memcpy(at, &n, sizeof n);
    std::memcpy(at + sizeof n, name.data(), name.size());
    used_ += need;
    bytes_ += need;
    names_.insert(std::string_view(at + sizeof n, name.size()));
    return at + sizeof n;
  }

  size_t bytes() {
    std::lock_guard lock(mu_);
    return chunks_.size() * kChunk;
  }

 private:
  std::mutex mu_;
  std::unordered_set<std::string_view> names_;
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t used_ = 0, bytes_ = 0;
};

NameTable& Names() {
  static auto* table = new NameTable();  // never destroyed: Docs may outlive static destruction
  return *table;
}

// The two trees a Doc is built from, read through the same few functions.
Value::Type TypeOf(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::boolean:
      return Value::Type::kBool;
    case nlohmann::json::value_t::number_integer:
      return Value::Type::kInt;
    case nlohmann::json::value_t::number_unsigned:
      return Value::Type::kUint;
    case nlohmann::json::value_t::number_float:
      return Value::Type::kDouble;
    case nlohmann::json::value_t::string:
      return Value::Type::kString;
    case nlohmann::json::value_t::array:
      return Value::Type::kArray;
    case nlohmann::json::value_t::object:
      return Value::Type::kObject;
    default:  // null, discarded, binary (never from JSON text)
      return Value::Type::kNull;
  }
}
Value::Type TypeOf(const Value& v) { return v.type(); }
std::string_view StrOf(const nlohmann::json& j) { return j.get_ref<const std::string&>(); }
std::string_view StrOf(const Value& v) { return v.str(); }
template <class F>
void EachElement(const nlohmann::json& j, F&& f) {
  for (const auto& e : j) f(e);
}
template <class F>
void EachElement(const Value& v, F&& f) {
  for (const auto& e : v) f(e);
}
template <class F>
void EachMember(const nlohmann::json& j, F&& f) {
  for (auto it = j.begin(); it != j.end(); ++it) f(std::string_view(it.key()), *it);
}
template <class F>
void EachMember(const Value& v, F&& f) {
  for (const auto& m : v.items()) f(m.key(), m.value);
}
bool BoolOf(const nlohmann::json& j) { return j.get<bool>(); }
bool BoolOf(const Value& v) { return v.get<bool>(); }
int64_t IntOf(const nlohmann::json& j) { return j.get<int64_t>(); }
int64_t IntOf(const Value& v) { return v.get<int64_t>(); }
uint64_t UintOf(const nlohmann::json& j) { return j.get<uint64_t>(); }
uint64_t UintOf(const Value& v) { return v.get<uint64_t>(); }
double DoubleOf(const nlohmann::json& j) { return j.get<double>(); }
double DoubleOf(const Value& v) { return v.get<double>(); }

// A simdjson value on its way into a Doc: how deep it is (for the scratch space of its members)
// and where it sits, for the filter.
struct SimdSource {
  enum class Place : uint8_t { kRoot, kMetadata, kAnnotations, kElsewhere };
  simdjson::dom::element e;
  const KeyFilter* filter;
  int depth;
  Place place;
};

Value::Type TypeOf(const SimdSource& s) {
  using T = simdjson::dom::element_type;
  switch (s.e.type()) {
    case T::BOOL:
      return Value::Type::kBool;
    case T::INT64:
      // nlohmann reads an integer without a sign as unsigned.
      return s.e.get_int64().value_unsafe() < 0 ? Value::Type::kInt : Value::Type::kUint;
    case T::UINT64:
      return Value::Type::kUint;
    case T::DOUBLE:
      return Value::Type::kDouble;
    case T::STRING:
      return Value::Type::kString;
    case T::ARRAY:
      return Value::Type::kArray;
    case T::OBJECT:
      return Value::Type::kObject;
    default:
      return Value::Type::kNull;
  }
}
std::string_view StrOf(const SimdSource& s) { return s.e.get_string().value_unsafe(); }
bool BoolOf(const SimdSource& s) { return s.e.get_bool().value_unsafe(); }
int64_t IntOf(const SimdSource& s) { return s.e.get_int64().value_unsafe(); }
uint64_t UintOf(const SimdSource& s) {
  if (s.e.type() == simdjson::dom::element_type::UINT64) return s.e.get_uint64().value_unsafe();
  return static_cast<uint64_t>(s.e.get_int64().value_unsafe());
}
double DoubleOf(const SimdSource& s) { return s.e.get_double().value_unsafe(); }
template <class F>
void EachElement(const SimdSource& s, F&& f) {
  const simdjson::dom::array elements = s.e.get_array().value_unsafe();
  for (const auto e : elements) {
    f(SimdSource{e, s.filter, s.depth + 1, SimdSource::Place::kElsewhere});
  }
}

// One scratch vector per depth, past DocBuilder's cut (checked below): deeper objects would
// share one, which recursion would clear under the caller.
constexpr size_t kScratchDepths = 256;

// An object's members in the order nlohmann::json keeps them: sorted by name, the last of equal
// names winning. Sorted in scratch space per depth (reused, one object per depth at a time).
template <class F>
void EachMember(const SimdSource& s, F&& f) {
  using Pair = std::pair<std::string_view, simdjson::dom::element>;
  thread_local std::vector<std::vector<Pair>> scratch(kScratchDepths);
  auto& members = scratch[std::min(static_cast<size_t>(s.depth), kScratchDepths - 1)];
  members.clear();
  std::span<const std::string_view> skipped;
  if (s.place == SimdSource::Place::kRoot) skipped = s.filter->top;
  if (s.place == SimdSource::Place::kMetadata) skipped = s.filter->metadata;
  if (s.place == SimdSource::Place::kAnnotations) skipped = s.filter->annotations;
  const simdjson::dom::object fields = s.e.get_object().value_unsafe();
  for (const auto field : fields) {
    if (std::find(skipped.begin(), skipped.end(), field.key) == skipped.end()) {
      members.emplace_back(field.key, field.value);
    }
  }
  const auto by_name = [](const Pair& a, const Pair& b) { return a.first < b.first; };
  if (!std::is_sorted(members.begin(), members.end(), by_name)) {
    std::stable_sort(members.begin(), members.end(), by_name);
  }
  for (size_t i = 0; i < members.size(); ++i) {
    const auto& [key, value] = members[i];
    if (i + 1 < members.size() && members[i + 1].first == key) continue;
    auto place = SimdSource::Place::kElsewhere;
    if (s.place == SimdSource::Place::kRoot && key == "metadata") {
      place = SimdSource::Place::kMetadata;
    } else if (s.place == SimdSource::Place::kMetadata && key == "annotations") {
      place = SimdSource::Place::kAnnotations;
    }
    f(key, SimdSource{value, s.filter, s.depth + 1, place});
  }
}

}  // namespace

// Builds a Doc in two passes over the source: the first counts members, elements and bytes
// (and resolves shared names), the second fills the one allocation.
class DocBuilder {
 public:
  // Deeper trees are cut (the deeper values become null) and the Doc says so: no Kubernetes
  // object nests anywhere near this, and the recursion must stay bounded on hostile input.
  static constexpr int kMaxDepth = 200;

  template <class J>
  static Doc Build(const J& root, std::string_view skip_top = {}) {
    DocBuilder b;
    b.skip_ = skip_top;
    b.Measure(root, 0);
    Doc doc;
    const size_t bytes = b.members_ * sizeof(Member) + b.elements_ * sizeof(Value) + b.bytes_;
    if (bytes > 0) {
      doc.buffer_ = std::make_unique<std::byte[]>(bytes);
      doc.bytes_ = bytes;
    }
    std::byte* base = doc.buffer_.get();
    b.next_member_ = reinterpret_cast<Member*>(base);
    b.next_element_ = reinterpret_cast<Value*>(base + b.members_ * sizeof(Member));
    b.next_byte_ =
        reinterpret_cast<char*>(base + b.members_ * sizeof(Member) + b.elements_ * sizeof(Value));
    b.name_at_ = 0;
    b.Fill(root, doc, 0);
    doc.truncated_ = b.truncated_;
    return doc;
  }

 private:
  template <class J>
  void Measure(const J& j, int depth) {
    if (depth > kMaxDepth) return;
    switch (TypeOf(j)) {
      case Value::Type::kString:
        bytes_ += StrOf(j).size();
        break;
      case Value::Type::kArray:
        EachElement(j, [&](const auto& e) {
          ++elements_;
          Measure(e, depth + 1);
        });
        break;
      case Value::Type::kObject:
        EachMember(j, [&](std::string_view key, const auto& v) {
          if (depth == 0 && !skip_.empty() && key == skip_) return;
          ++members_;
          const char* shared = Names().Find(key);
          if (shared == nullptr) bytes_ += key.size() + sizeof(uint32_t);
          names_.push_back(shared);
          Measure(v, depth + 1);
        });
        break;
      default:
        break;
    }
  }

  template <class J>
  void Fill(const J& j, Value& out, int depth) {
    if (depth > kMaxDepth) {
      truncated_ = true;
      return;  // stays null
    }
    out.type_ = TypeOf(j);
    switch (out.type_) {
      case Value::Type::kNull:
        break;
      case Value::Type::kBool:
        out.u_.b = BoolOf(j);
        break;
      case Value::Type::kInt:
        out.u_.i = IntOf(j);
        break;
      case Value::Type::kUint:
        out.u_.u = UintOf(j);
        break;
      case Value::Type::kDouble:
        out.u_.d = DoubleOf(j);
        break;
      case Value::Type::kString: {
        const std::string_view s = StrOf(j);
        std::memcpy(next_byte_, s.data(), s.size());
        out.u_.s = next_byte_;
        out.size_ = static_cast<uint32_t>(s.size());
        next_byte_ += s.size();
        break;
      }
      case Value::Type::kArray: {
        size_t n = 0;
        EachElement(j, [&](const auto&) { ++n; });
        Value* first = next_element_;
        next_element_ += n;
        out.u_.elements = first;
        out.size_ = static_cast<uint32_t>(n);
        size_t i = 0;
        EachElement(j, [&](const auto& e) {
          new (&first[i]) Value();
          Fill(e, first[i++], depth + 1);
        });
        break;
      }
      case Value::Type::kObject: {
        size_t n = 0;
        EachMember(j, [&](std::string_view key, const auto&) {
          n += !(depth == 0 && !skip_.empty() && key == skip_);
        });
        Member* first = next_member_;
        next_member_ += n;
        out.u_.members = first;
        out.size_ = static_cast<uint32_t>(n);
        size_t i = 0;
        EachMember(j, [&](std::string_view key, const auto& v) {
          if (depth == 0 && !skip_.empty() && key == skip_) return;
          Member& m = first[i++];
          const char* name = names_[name_at_++];
          if (name == nullptr) {
            const auto len = static_cast<uint32_t>(key.size());
            std::memcpy(next_byte_, &len, sizeof len);
            std::memcpy(next_byte_ + sizeof len, key.data(), key.size());
            name = next_byte_ + sizeof len;
            next_byte_ += sizeof len + key.size();
          }
          m.name = name;
          new (&m.value) Value();
          Fill(v, m.value, depth + 1);
        });
        break;
      }
    }
  }

  std::string_view skip_;
  size_t members_ = 0, elements_ = 0, bytes_ = 0;
  std::vector<const char*> names_;  // each member's shared name (or null), in visiting order
  size_t name_at_ = 0;
  Member* next_member_ = nullptr;
  Value* next_element_ = nullptr;
  char* next_byte_ = nullptr;
  bool truncated_ = false;
};

static_assert(DocBuilder::kMaxDepth + 2 < static_cast<int>(kScratchDepths));

Value::Iterator& Value::Iterator::operator++() {
  if (member_) {
    ++member_;
  } else {
    ++element_;
  }
  return *this;
}

const Value& Value::Iterator::operator*() const { return member_ ? member_->value : *element_; }

std::string_view Value::Iterator::key() const {
  return member_ ? member_->key() : std::string_view();
}

std::string_view Member::key() const { return NameAt(name); }

size_t Value::size() const {
  switch (type_) {
    case Type::kNull:
      return 0;
    case Type::kArray:
    case Type::kObject:
      return size_;
    default:
      return 1;
  }
}

template <>
std::string Value::get<std::string>() const {
  return std::string(str());
}
template <>
bool Value::get<bool>() const {
  return is_boolean() && u_.b;
}
template <>
int64_t Value::get<int64_t>() const {
  switch (type_) {
    case Type::kInt:
      return u_.i;
    case Type::kUint:
      return static_cast<int64_t>(u_.u);
    case Type::kDouble:
      return static_cast<int64_t>(u_.d);
    default:
      return 0;
  }
}
template <>
int Value::get<int>() const {
  return static_cast<int>(get<int64_t>());
}
template <>
uint64_t Value::get<uint64_t>() const {
  return type_ == Type::kUint ? u_.u : static_cast<uint64_t>(get<int64_t>());
}
template <>
double Value::get<double>() const {
  switch (type_) {
    case Type::kInt:
      return static_cast<double>(u_.i);
    case Type::kUint:
      return static_cast<double>(u_.u);
    case Type::kDouble:
      return u_.d;
    default:
      return 0;
  }
}

Value::Iterator Value::begin() const {
  Iterator it;
  if (is_array()) it.element_ = u_.elements;
  if (is_object()) it.member_ = u_.members;
  return it;
}

Value::Iterator Value::end() const {
  Iterator it;
  if (is_array()) it.element_ = u_.elements + size_;
  if (is_object()) it.member_ = u_.members + size_;
  return it;
}

const Value& Value::operator[](size_t i) const {
  return is_array() && i < size_ ? u_.elements[i] : Null();
}

Value::Iterator Value::find(std::string_view key) const {
  if (!is_object()) return end();
  const Member* first = u_.members;
  const Member* last = first + size_;
  const Member* at = std::lower_bound(
      first, last, key, [](const Member& m, std::string_view k) { return m.key() < k; });
  Iterator it;
  it.member_ = at != last && at->key() == key ? at : last;
  return it;
}

const Value& Value::operator[](std::string_view key) const {
  const auto it = find(key);
  return it == end() ? Null() : *it;
}

std::span<const Member> Value::items() const {
  if (!is_object()) return {};
  return {u_.members, size_};
}

std::string Value::value(std::string_view key, const char* fallback) const {
  const Value& v = (*this)[key];
  return v.is_string() ? std::string(v.str()) : std::string(fallback);
}

int64_t Value::value(std::string_view key, int fallback) const {
  const Value& v = (*this)[key];
  return v.is_number() ? v.get<int64_t>() : fallback;
}

bool Value::value(std::string_view key, bool fallback) const {
  const Value& v = (*this)[key];
  return v.is_boolean() ? v.get<bool>() : fallback;
}

nlohmann::json Value::ToJson() const {
  switch (type_) {
    case Type::kNull:
      return nullptr;
    case Type::kBool:
      return u_.b;
    case Type::kInt:
      return u_.i;
    case Type::kUint:
      return u_.u;
    case Type::kDouble:
      return u_.d;
    case Type::kString:
      return std::string(str());
    case Type::kArray: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& e : *this) out.push_back(e.ToJson());
      return out;
    }
    case Type::kObject: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& m : items()) out.emplace(std::string(m.key()), m.value.ToJson());
      return out;
    }
  }
  return nullptr;
}

std::string Value::dump() const {
  // Bytes that are not UTF-8 (a YAML file may hold them) print as U+FFFD instead of throwing.
  return ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool operator==(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_number_float() || b.is_number_float()) return a.get<double>() == b.get<double>();
    if (a.type_ == b.type_) return a.u_.i == b.u_.i;
    // One signed, one unsigned: equal only as the same non-negative number.
    return a.get<int64_t>() >= 0 && b.get<int64_t>() >= 0 && a.get<uint64_t>() == b.get<uint64_t>();
  }
  if (a.type_ != b.type_ || a.size_ != b.size_) return false;
  switch (a.type_) {
    case Value::Type::kNull:
      return true;
    case Value::Type::kBool:
      return a.u_.b == b.u_.b;
    case Value::Type::kString:
      return a.str() == b.str();
    case Value::Type::kArray:
      return std::equal(a.begin(), a.end(), b.begin());
    case Value::Type::kObject:
      for (size_t i = 0; i < a.size_; ++i) {
        const Member& x = a.u_.members[i];
        const Member& y = b.u_.members[i];
        if (x.key() != y.key() || !(x.value == y.value)) return false;
      }
      return true;
    default:
      return false;
  }
}

Doc Doc::FromJson(const nlohmann::json& j) { return DocBuilder::Build(j); }

Doc Doc::FromSimdjson(const simdjson::dom::element& j, const KeyFilter& filter) {
  return DocBuilder::Build(SimdSource{j, &filter, 0, SimdSource::Place::kRoot});
}

Doc::Doc(Doc&& o) noexcept
    : Value(o), buffer_(std::move(o.buffer_)), bytes_(o.bytes_), truncated_(o.truncated_) {
  static_cast<Value&>(o) = Value();
  o.bytes_ = 0;
}

Doc& Doc::operator=(Doc&& o) noexcept {
  if (this == &o) return *this;
  static_cast<Value&>(*this) = o;
  buffer_ = std::move(o.buffer_);
  bytes_ = o.bytes_;
  truncated_ = o.truncated_;
  static_cast<Value&>(o) = Value();
  o.bytes_ = 0;
  return *this;
}

Doc::Doc(const Doc& o) : Doc(DocBuilder::Build(static_cast<const Value&>(o))) {
  truncated_ = o.truncated_;
}

Doc& Doc::operator=(const Doc& o) {
  if (this != &o) *this = Doc(o);
  return *this;
}

size_t Doc::erase(std::string_view key) {
  if (!contains(key)) return 0;
  const bool truncated = truncated_;
  *this = DocBuilder::Build(static_cast<const Value&>(*this), key);
  truncated_ = truncated;
  return 1;
}

size_t SharedNameBytes() { return Names().bytes(); }

}  // namespace kspm::collector::k8s

#pragma once

// A compact, read-only JSON value: how a snapshot keeps Kubernetes objects. A parsed
// nlohmann::json tree costs ~100 bytes per object member (a std::map node, a std::string key, a
// separately allocated value) and ~100 more per string value; a Doc holds a whole object in one
// allocation (16 bytes per value, 24 per member, string bytes inline) with member names shared
// process-wide. At 150,000 pods that is the difference between a snapshot of over a gigabyte
// and one of a few hundred megabytes.
//
// The read interface follows nlohmann::json's (is_*, find/end, items, get<T>, value, dump), so
// checks read a Doc as they read JSON. Objects keep their members sorted by name, as
// nlohmann::json does: dump() prints the same text. A Value is a view into the Doc that owns it
// and lives as long as that Doc; a Doc never changes after it is built, so readers need no lock.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "nlohmann/json.hpp"

namespace simdjson::dom {
class element;
}

namespace kspm::collector::k8s {

class Value;
struct Member;

class Value {
 public:
  enum class Type : uint8_t { kNull, kBool, kInt, kUint, kDouble, kString, kArray, kObject };

  // Iterates array elements or object members (as their values, like nlohmann::json); `key()`
  // names the member.
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Value;
    using difference_type = std::ptrdiff_t;
    using pointer = const Value*;
    using reference = const Value&;
    Iterator() = default;
    const Value& operator*() const;
    const Value* operator->() const { return &**this; }
    Iterator& operator++();
    Iterator operator++(int) {
      Iterator out = *this;
      ++*this;
      return out;
    }
    bool operator==(const Iterator& o) const {
      return element_ == o.element_ && member_ == o.member_;
    }
    std::string_view key() const;
    const Value& value() const { return **this; }

   private:
    friend class Value;
    const Value* element_ = nullptr;
    const Member* member_ = nullptr;
  };

  Value() = default;  // null

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_boolean() const { return type_ == Type::kBool; }
  bool is_number() const { return is_number_integer() || type_ == Type::kDouble; }
  bool is_number_integer() const { return type_ == Type::kInt || type_ == Type::kUint; }
  bool is_number_unsigned() const { return type_ == Type::kUint; }
  bool is_number_float() const { return type_ == Type::kDouble; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // As nlohmann::json: members or elements; 0 for null, 1 for any other scalar.
  size_t size() const;
  bool empty() const { return size() == 0; }

  // The string (empty when not a string).
  std::string_view str() const {
    return is_string() ? std::string_view(u_.s, size_) : std::string_view();
  }
  // std::string, bool, integers or double. A value of another type gives the type's zero (or
  // "" for a string): callers check the type first, as they must with nlohmann::json.
  template <class T>
  T get() const;

  // Arrays: elements; objects: member values.
  Iterator begin() const;
  Iterator end() const;
  const Value& operator[](size_t i) const;  // null when out of range or not an array
  // (`v[0]` would otherwise be ambiguous; a negative index reads null.)
  const Value& operator[](int i) const { return (*this)[static_cast<size_t>(i)]; }

  // Objects: the member named `key`, or end() (also when not an object).
  Iterator find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != end(); }
  const Value& operator[](std::string_view key) const;  // null when absent
  const Value& operator[](const char* key) const { return (*this)[std::string_view(key)]; }
  // The members (empty when not an object), for `for (const auto& [key, value] : v.items())`.
  std::span<const Member> items() const;
  // Member `key` as a T when it is of T's JSON type, else `fallback`.
  std::string value(std::string_view key, const char* fallback) const;
  std::string value(std::string_view key, const std::string& fallback) const {
    return value(key, fallback.c_str());
  }
  int64_t value(std::string_view key, int fallback) const;
  bool value(std::string_view key, bool fallback) const;

  // Compact JSON text, byte for byte what nlohmann::json's dump() prints for the same value;
  // bytes that are not UTF-8 print as U+FFFD (nlohmann::json would throw).
  std::string dump() const;
  nlohmann::json ToJson() const;

  // Deep equality, as nlohmann::json compares (numbers by value across integer and float).
  friend bool operator==(const Value& a, const Value& b);
  friend bool operator==(const Value& v, std::string_view s) {
    return v.is_string() && v.str() == s;
  }
  friend bool operator==(const Value& v, const char* s) { return v == std::string_view(s); }

 protected:
  friend class DocBuilder;
  Type type_ = Type::kNull;
  uint32_t size_ = 0;  // string bytes, array elements, object members
  union Payload {
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    const char* s;
    const Value* elements;
    const Member* members;
  } u_{.i = 0};
};
static_assert(sizeof(Value) == 16);

// An object member. `name` points at the member name's bytes, preceded by their length as a
// uint32_t (in the process-wide name table, or in the Doc for long or unusual names).
struct Member {
  const char* name;
  Value value;

  std::string_view key() const;
  template <size_t I>
  decltype(auto) get() const {
    if constexpr (I == 0) {
      return key();
    } else {
      return static_cast<const Value&>(value);
    }
  }
};
static_assert(sizeof(Member) == 24);

// A Value that owns its tree: one allocation holding every element, member and string byte.
// Members left out of a Doc built from parsed text: at the top (`top`), under `metadata`
// (`metadata`) and under `metadata.annotations` (`annotations`).
struct KeyFilter {
  std::span<const std::string_view> top, metadata, annotations;
};

class Doc : public Value {
 public:
  Doc() = default;
  // Builds from a parsed tree. Never fails: every JSON value has a Doc.
  static Doc FromJson(const nlohmann::json& j);
  // Builds from simdjson's parsed tree, without the members `filter` names. Members come out
  // sorted by name with the last of duplicate names kept, and integers typed, as
  // nlohmann::json would read the same text.
  static Doc FromSimdjson(const simdjson::dom::element& j, const KeyFilter& filter);
  explicit Doc(const nlohmann::json& j) : Doc(FromJson(j)) {}
  Doc(Doc&& o) noexcept;
  Doc& operator=(Doc&& o) noexcept;
  Doc(const Doc& o);
  Doc& operator=(const Doc& o);
  ~Doc() = default;

  // Removes a top-level member (the tree is rebuilt without it, so its memory is given back);
  // returns how many were removed (0 or 1), as nlohmann::json's erase does.
  size_t erase(std::string_view key);
  // Bytes held by this Doc (its one allocation).
  size_t bytes() const { return bytes_; }
  // Whether the source nested deeper than any Kubernetes object does and was cut there (the
  // deeper values are null): such an object is refused where it is read.
  bool truncated() const { return truncated_; }

 private:
  friend class DocBuilder;
  std::unique_ptr<std::byte[]> buffer_;
  size_t bytes_ = 0;
  bool truncated_ = false;
};

template <>
std::string Value::get<std::string>() const;
template <>
bool Value::get<bool>() const;
template <>
int64_t Value::get<int64_t>() const;
template <>
int Value::get<int>() const;
template <>
uint64_t Value::get<uint64_t>() const;
template <>
double Value::get<double>() const;

// Bytes held by the process-wide member-name table (bounded: names past the bound are kept in
// each Doc instead).
size_t SharedNameBytes();

}  // namespace kspm::collector::k8s

template <>
struct std::tuple_size<kspm::collector::k8s::Member> : std::integral_constant<size_t, 2> {};
template <>
struct std::tuple_element<0, kspm::collector::k8s::Member> {
  using type = std::string_view;
};
template <>
struct std::tuple_element<1, kspm::collector::k8s::Member> {
  using type = const kspm::collector::k8s::Value&;
};

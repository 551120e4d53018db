#include "formats/json_strict.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

namespace alloy::formats {
namespace {

using nlohmann::json;

// Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no
// overlong forms, no encoded surrogates, nothing above U+10FFFF), or npos.
size_t FindInvalidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80;  // allowed range of the second byte
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (n - i < len) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

// A char iterator that records how far nlohmann's lexer has read, so SAX
// callbacks (which get no position) can report byte offsets.
class TrackingIterator {
 public:
  using iterator_category = std::forward_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackingIterator() = default;
  TrackingIterator(const char* p, const char** high_water) : p_(p), high_water_(high_water) {}

  reference operator*() const { return *p_; }
  TrackingIterator& operator++() {
    ++p_;
    if (high_water_ != nullptr && p_ > *high_water_) *high_water_ = p_;
    return *this;
  }
  TrackingIterator operator++(int) {
    TrackingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const TrackingIterator& other) const { return p_ == other.p_; }
  bool operator!=(const TrackingIterator& other) const { return p_ != other.p_; }

 private:
  const char* p_ = nullptr;
  const char** high_water_ = nullptr;
};

// Builds the DOM like nlohmann's json_sax_dom_parser, but refuses duplicate
// keys and excessive nesting, and keeps the first error with its position.
class StrictDomBuilder final : public json::json_sax_t {
 public:
  StrictDomBuilder(std::string_view text, const char** high_water)
      : text_(text), high_water_(high_water) {}

  bool null() override { return HandleValue(nullptr); }
  bool boolean(bool val) override { return HandleValue(val); }
  bool number_integer(number_integer_t val) override { return HandleValue(val); }
  bool number_unsigned(number_unsigned_t val) override { return HandleValue(val); }
  bool number_float(number_float_t val, const string_t& s) override {
    // nlohmann turns 1e400 into inf; serde_json refuses it.
    if (!std::isfinite(val)) return Fail("number " + s + " out of range", Consumed() - 1);
    return HandleValue(val);
  }
  bool string(string_t& val) override { return HandleValue(std::move(val)); }
  bool binary(binary_t&) override { return Fail("unexpected binary value", Consumed()); }

  bool start_object(std::size_t) override {
    if (!EnterContainer()) return false;
    json* value = HandleValue(json::value_t::object) ? last_value_ : nullptr;
    if (value == nullptr) return false;
    stack_.push_back(value);
    return true;
  }
  bool key(string_t& val) override {
    json& object = *stack_.back();
    if (object.find(val) != object.end()) {
      return Fail("duplicate key " + Quote(val), KeyStart());
    }
    object_element_ = &object[val];
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (!EnterContainer()) return false;
    json* value = HandleValue(json::value_t::array) ? last_value_ : nullptr;
    if (value == nullptr) return false;
    stack_.push_back(value);
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }

  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    // nlohmann's position counts the characters read, the offending one
    // included; report the 0-based offset of that character.
    size_t pos = position > 0 ? position - 1 : 0;
    return Fail(StripNlohmannPrefix(ex.what()), pos);
  }

  json& root() { return root_; }
  bool failed() const { return failed_; }
  const std::string& reason() const { return reason_; }
  size_t error_pos() const { return error_pos_; }

 private:
  static std::string Quote(const std::string& s) {
    return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // "[json.exception.parse_error.101] parse error at line 1, column 2: syntax
  // error ..." -> "syntax error ...": alloy reports byte offsets instead.
  static std::string StripNlohmannPrefix(const std::string& what) {
    size_t column = what.find("column ");
    if (column != std::string::npos) {
      size_t colon = what.find(": ", column);
      if (colon != std::string::npos) return what.substr(colon + 2);
    }
    size_t bracket = what.find("] ");
    return bracket == std::string::npos ? what : what.substr(bracket + 2);
  }

  size_t Consumed() const { return static_cast<size_t>(*high_water_ - text_.data()); }

  // The lexer has consumed the key's closing quote; walk back to the opening
  // quote, the first '"' not preceded by an odd run of backslashes.
  size_t KeyStart() const {
    size_t close = Consumed() - 1;
    for (size_t i = close; i-- > 0;) {
      if (text_[i] != '"') continue;
      size_t slashes = 0;
      while (slashes < i && text_[i - 1 - slashes] == '\\') ++slashes;
      if (slashes % 2 == 0) return i;
    }
    return close;
  }

  bool EnterContainer() {
    if (stack_.size() + 1 > static_cast<size_t>(kMaxJsonDepth)) {
      return Fail("nesting depth exceeds " + std::to_string(kMaxJsonDepth), Consumed() - 1);
    }
    return true;
  }

  template <typename Value>
  bool HandleValue(Value&& v) {
    if (stack_.empty()) {
      root_ = json(std::forward<Value>(v));
      last_value_ = &root_;
    } else if (stack_.back()->is_array()) {
      stack_.back()->emplace_back(std::forward<Value>(v));
      last_value_ = &stack_.back()->back();
    } else {
      *object_element_ = json(std::forward<Value>(v));
      last_value_ = object_element_;
    }
    return true;
  }

  bool Fail(std::string reason, size_t pos) {
    if (!failed_) {
      failed_ = true;
      reason_ = std::move(reason);
      error_pos_ = pos;
    }
    return false;
  }

  std::string_view text_;
  const char** high_water_;
  json root_;
  std::vector<json*> stack_;  // open containers; parents never grow while a child is open
  json* object_element_ = nullptr;
  json* last_value_ = nullptr;
  bool failed_ = false;
  std::string reason_;
  size_t error_pos_ = 0;
};

Status JsonError(std::string_view what, const std::string& reason, size_t pos) {
  return Status::Corrupt("invalid JSON in " + std::string(what) + ": " + reason + " at byte " +
                         std::to_string(pos));
}

}  // namespace

Result<nlohmann::json> ParseStrictJson(std::string_view text, std::string_view what) {
  if (size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    return Status::Corrupt("invalid UTF-8 in " + std::string(what) + " at byte " +
                           std::to_string(bad));
  }
  // nlohmann's lexer treats a NUL byte as end of input (so `{}\0junk` would
  // parse) and silently skips a leading UTF-8 byte order mark. Raw NUL is
  // never valid JSON and serde_json refuses the BOM, so refuse both here.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos) {
    return JsonError(what, "unexpected NUL byte", nul);
  }
  if (text.substr(0, 3) == "\xEF\xBB\xBF") {
    return JsonError(what, "unexpected byte order mark", 0);
  }
  const char* high_water = text.data();
  StrictDomBuilder builder(text, &high_water);
  bool ok = false;
  try {
    ok = json::sax_parse(TrackingIterator(text.data(), &high_water),
                         TrackingIterator(text.data() + text.size(), nullptr), &builder,
                         json::input_format_t::json, /*strict=*/true,
                         /*ignore_comments=*/false);
  } catch (const json::exception& ex) {
    return JsonError(what, ex.what(), static_cast<size_t>(high_water - text.data()));
  }
  if (!ok || builder.failed()) {
    if (!builder.failed()) {
      return JsonError(what, "parse failed", static_cast<size_t>(high_water - text.data()));
    }
    return JsonError(what, builder.reason(), builder.error_pos());
  }
  return std::move(builder.root());
}

}  // namespace alloy::formats

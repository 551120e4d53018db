#include "tests/testing/safetensors_builder.h"

#include <algorithm>
#include <cstring>
#include <tuple>

#include <nlohmann/json.hpp>

namespace alloy::testing {
namespace {

std::string JsonString(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

template <typename T>
std::string LeBytes(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));  // the test hosts are little-endian
    out.append(bytes, sizeof(T));
  }
  return out;
}

// "[a,b,...]" (also used for data_offsets, which stay below 2^63 in tests).
std::string ShapeJson(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(shape[i]);
  }
  out += ']';
  return out;
}

}  // namespace

std::string LeU64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

std::string F32Bytes(std::initializer_list<float> values) { return LeBytes(values); }
std::string I32Bytes(std::initializer_list<int32_t> values) { return LeBytes(values); }

StEntry& SafetensorsBuilder::Add(std::string name, std::string dtype, std::vector<int64_t> shape,
                                 std::string data) {
  StEntry entry;
  entry.name = std::move(name);
  entry.dtype = std::move(dtype);
  entry.shape = std::move(shape);
  entry.data = std::move(data);
  return Add(std::move(entry));
}

StEntry& SafetensorsBuilder::Add(StEntry entry) {
  entries_.push_back(std::move(entry));
  return entries_.back();
}

SafetensorsBuilder& SafetensorsBuilder::Metadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
  return *this;
}
SafetensorsBuilder& SafetensorsBuilder::MetadataJson(std::string raw) {
  metadata_json_ = std::move(raw);
  return *this;
}
SafetensorsBuilder& SafetensorsBuilder::ExtraTopLevel(std::string raw) {
  extra_top_level_ = std::move(raw);
  return *this;
}
SafetensorsBuilder& SafetensorsBuilder::HeaderJson(std::string raw) {
  header_json_ = std::move(raw);
  return *this;
}
SafetensorsBuilder& SafetensorsBuilder::LeadingBytes(std::string prefix) {
  leading_ = std::move(prefix);
  return *this;
}
SafetensorsBuilder& SafetensorsBuilder::PadTo(uint64_t alignment, char fill) {
  alignment_ = alignment == 0 ? 1 : alignment;
  fill_ = fill;
  return *this;
}
SafetensorsBuilder& SafetensorsBuilder::HeaderLength(uint64_t n) {
  header_length_ = n;
  return *this;
}
SafetensorsBuilder& SafetensorsBuilder::AppendBytes(std::string tail) {
  tail_ = std::move(tail);
  return *this;
}
SafetensorsBuilder& SafetensorsBuilder::TruncateBytes(size_t n) {
  truncate_ = n;
  return *this;
}

std::string SafetensorsBuilder::Json() const {
  if (header_json_) return *header_json_;
  std::string out = "{";
  bool first = true;
  auto member = [&](const std::string& key_json, const std::string& value_json) {
    if (!first) out += ",";
    first = false;
    out += key_json + ":" + value_json;
  };
  if (metadata_json_) {
    member("\"__metadata__\"", *metadata_json_);
  } else if (!metadata_.empty()) {
    std::string meta = "{";
    for (const auto& [key, value] : metadata_) {
      if (meta.size() > 1) meta += ",";
      meta += JsonString(key) + ":" + JsonString(value);
    }
    member("\"__metadata__\"", meta + "}");
  }
  uint64_t offset = 0;
  for (const StEntry& e : entries_) {
    uint64_t begin = offset;
    uint64_t end = offset + e.data.size();
    offset = end;
    if (e.offsets) std::tie(begin, end) = *e.offsets;
    std::string body = "{";
    auto field = [&](const char* key, const std::string& value_json) {
      if (body.size() > 1) body += ',';
      body += '"';
      body += key;
      body += "\":";
      body += value_json;
    };
    if (!e.omit_dtype) field("dtype", e.dtype_json.empty() ? JsonString(e.dtype) : e.dtype_json);
    if (!e.omit_shape) field("shape", e.shape_json.empty() ? ShapeJson(e.shape) : e.shape_json);
    if (!e.omit_offsets) {
      field("data_offsets", e.offsets_json.empty() ? ShapeJson({static_cast<int64_t>(begin),
                                                                 static_cast<int64_t>(end)})
                                                   : e.offsets_json);
    }
    body += e.extra_fields;
    body += '}';
    member(e.name_json.empty() ? JsonString(e.name) : e.name_json, body);
  }
  out += extra_top_level_;
  return out + "}";
}

std::string SafetensorsBuilder::Header() const {
  std::string header = leading_ + Json();
  while (header.size() % alignment_ != 0) header += fill_;
  return header;
}

std::string SafetensorsBuilder::Build() const {
  std::string header = Header();
  std::string out = LeU64(header_length_ ? *header_length_ : header.size()) + header;
  for (const StEntry& e : entries_) out += e.data;
  out += tail_;
  out.resize(out.size() - std::min(truncate_, out.size()));
  return out;
}

std::string WorkedExampleBytes() {
  std::string out("\x38\0\0\0\0\0\0\0", 8);
  out += "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";
  out += std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
  return out;
}

}  // namespace alloy::testing

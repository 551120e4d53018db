#include "tests/testing/gguf_builder.h"

#include <algorithm>
#include <utility>

namespace alloy::testing {
namespace {

uint64_t PadTo(uint64_t x, uint64_t align) { return (x + align - 1) / align * align; }

// "47475546 0300..." → bytes (spaces ignored).
std::string Hex(std::string_view hex) {
  std::string out;
  int hi = -1;
  for (char c : hex) {
    int v = -1;
    if (c >= '0' && c <= '9') v = c - '0';
    if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    if (v < 0) continue;
    if (hi < 0) {
      hi = v;
    } else {
      out += static_cast<char>(hi * 16 + v);
      hi = -1;
    }
  }
  return out;
}

}  // namespace

std::string GgString(std::string_view s) { return GgLe<uint64_t>(s.size()) + std::string(s); }

std::string GgArray(uint32_t elem_type, uint64_t count, std::string_view elements) {
  return GgLe<uint32_t>(elem_type) + GgLe<uint64_t>(count) + std::string(elements);
}

std::string GgF32s(std::initializer_list<float> values) {
  std::string out;
  for (float f : values) out += GgLe<float>(f);
  return out;
}

std::string GgStrings(std::initializer_list<std::string_view> items) {
  std::string out;
  for (std::string_view s : items) out += GgString(s);
  return out;
}

GgufBuilder& GgufBuilder::Magic(std::string four_bytes) {
  magic_ = std::move(four_bytes);
  return *this;
}
GgufBuilder& GgufBuilder::Version(uint32_t v) {
  version_ = v;
  return *this;
}
GgufBuilder& GgufBuilder::TensorCount(int64_t n) {
  n_tensors_ = n;
  return *this;
}
GgufBuilder& GgufBuilder::KvCount(int64_t n) {
  n_kv_ = n;
  return *this;
}

GgKv& GgufBuilder::Kv(std::string key, uint32_t type, std::string payload) {
  GgKv kv;
  kv.key = std::move(key);
  kv.type = type;
  kv.payload = std::move(payload);
  kvs_.push_back(std::move(kv));
  return kvs_.back();
}
GgufBuilder& GgufBuilder::RawKv(std::string bytes) {
  GgKv kv;
  kv.raw = std::move(bytes);
  kvs_.push_back(std::move(kv));
  return *this;
}
GgufBuilder& GgufBuilder::KvString(std::string key, std::string_view value) {
  Kv(std::move(key), kGgString, GgString(value));
  return *this;
}
GgufBuilder& GgufBuilder::KvU32(std::string key, uint32_t value) {
  Kv(std::move(key), kGgU32, GgLe<uint32_t>(value));
  return *this;
}
GgufBuilder& GgufBuilder::KvI32(std::string key, int32_t value) {
  Kv(std::move(key), kGgI32, GgLe<int32_t>(value));
  return *this;
}
GgufBuilder& GgufBuilder::KvBool(std::string key, uint8_t byte) {
  Kv(std::move(key), kGgBool, std::string(1, static_cast<char>(byte)));
  return *this;
}
GgufBuilder& GgufBuilder::KvArray(std::string key, uint32_t elem_type, uint64_t count,
                                  std::string elements) {
  Kv(std::move(key), kGgArray, GgArray(elem_type, count, elements));
  return *this;
}

GgTensor& GgufBuilder::Tensor(std::string name, std::vector<int64_t> ne, uint32_t type,
                              std::string data) {
  GgTensor t;
  t.name = std::move(name);
  t.ne = std::move(ne);
  t.type = type;
  t.data = std::move(data);
  tensors_.push_back(std::move(t));
  return tensors_.back();
}

GgufBuilder& GgufBuilder::Alignment(uint64_t a) {
  alignment_ = a;
  return *this;
}
GgufBuilder& GgufBuilder::HeaderPadding(std::string bytes) {
  header_padding_ = std::move(bytes);
  return *this;
}
GgufBuilder& GgufBuilder::AppendBytes(std::string tail) {
  tail_ = std::move(tail);
  return *this;
}
GgufBuilder& GgufBuilder::TruncateBytes(size_t n) {
  truncate_ = n;
  return *this;
}
GgufBuilder& GgufBuilder::TruncateAt(size_t n) {
  truncate_at_ = n;
  return *this;
}

std::string GgufBuilder::Prefix() const {
  std::string out = magic_;
  out += GgLe<uint32_t>(version_);
  out += GgLe<int64_t>(n_tensors_.value_or(static_cast<int64_t>(tensors_.size())));
  out += GgLe<int64_t>(n_kv_.value_or(static_cast<int64_t>(kvs_.size())));
  for (const GgKv& kv : kvs_) {
    if (!kv.raw.empty()) {
      out += kv.raw;
      continue;
    }
    out += GgLe<uint64_t>(kv.key_length.value_or(kv.key.size()));
    out += kv.key;
    out += GgLe<uint32_t>(kv.type);
    out += kv.payload;
  }
  return out;
}

std::string GgufBuilder::Infos() const {
  std::string out = Prefix();
  uint64_t running = 0;
  for (const GgTensor& t : tensors_) {
    out += GgLe<uint64_t>(t.name_length.value_or(t.name.size()));
    out += t.name;
    out += GgLe<uint32_t>(t.n_dims.value_or(static_cast<uint32_t>(t.ne.size())));
    for (int64_t d : t.ne) out += GgLe<int64_t>(d);
    out += GgLe<uint32_t>(t.type);
    out += GgLe<uint64_t>(t.offset.value_or(running));
    running = PadTo(running + t.data.size(), alignment_);
  }
  return out;
}

std::string GgufBuilder::Header() const {
  std::string out = Infos();
  if (header_padding_) {
    out += *header_padding_;
  } else {
    out.resize(static_cast<size_t>(PadTo(out.size(), alignment_)), '\0');
  }
  return out;
}

std::string GgufBuilder::Build() const {
  std::string out = Header();
  const size_t data_start = out.size();
  for (const GgTensor& t : tensors_) {
    out += t.data;
    out.resize(data_start + static_cast<size_t>(PadTo(out.size() - data_start, alignment_)), '\0');
  }
  out += tail_;
  out.resize(out.size() - std::min(truncate_, out.size()));
  if (truncate_at_ && *truncate_at_ < out.size()) out.resize(*truncate_at_);
  return out;
}

std::string GgufSpecExampleBytes() {
  // checkpoint-formats.md §4.1, "Minimal example", piece by piece.
  std::string out = Hex("47475546 03000000 0100000000000000 0100000000000000");  // bytes 0-23
  out += Hex("1400000000000000") + "general.architecture" + Hex("08000000") +
         Hex("0500000000000000") + "llama";  // the KV
  out += Hex("0100000000000000") + "t" + Hex("01000000 0200000000000000 00000000") +
         Hex("0000000000000000");  // the tensor info, ends at byte 102
  out.resize(128, '\0');           // padded to 128
  out += Hex("0000803f 00000040");  // [1.0f, 2.0f]
  out.resize(160, '\0');            // + 24 zero bytes
  return out;
}

}  // namespace alloy::testing

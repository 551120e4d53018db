#include "formats/gguf.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <set>
#include <utility>

#include "formats/tensor_info.h"

namespace alloy::formats {
namespace {

constexpr std::array<GgmlTypeTraits, kGgmlTypeCount> kTypes = {{
    {"F32", 1, 4},       {"F16", 1, 2},      {"Q4_0", 32, 18},     {"Q4_1", 32, 20},
    {"Q4_2", 0, 0},      {"Q4_3", 0, 0},     {"Q5_0", 32, 22},     {"Q5_1", 32, 24},
    {"Q8_0", 32, 34},    {"Q8_1", 32, 36},   {"Q2_K", 256, 84},    {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},  {"Q5_K", 256, 176}, {"Q6_K", 256, 210},   {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},  {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},  {"IQ4_XS", 256, 136},
    {"I8", 1, 1},        {"I16", 1, 2},      {"I32", 1, 4},        {"I64", 1, 8},
    {"F64", 1, 8},       {"IQ1_M", 256, 56}, {"BF16", 1, 2},       {"Q4_0_4_4", 0, 0},
    {"Q4_0_4_8", 0, 0},  {"Q4_0_8_8", 0, 0}, {"TQ1_0", 256, 54},   {"TQ2_0", 256, 66},
    {"IQ4_NL_4_4", 0, 0}, {"IQ4_NL_4_8", 0, 0}, {"IQ4_NL_8_8", 0, 0}, {"MXFP4", 32, 17},
    {"NVFP4", 64, 36},   {"Q1_0", 128, 18},  {"Q2_0", 64, 18},
}};

constexpr std::array<std::pair<GgmlType, DType>, 8> kPlain = {{
    {GgmlType::kF32, DType::kF32},
    {GgmlType::kF16, DType::kF16},
    {GgmlType::kBF16, DType::kBF16},
    {GgmlType::kF64, DType::kF64},
    {GgmlType::kI8, DType::kI8},
    {GgmlType::kI16, DType::kI16},
    {GgmlType::kI32, DType::kI32},
    {GgmlType::kI64, DType::kI64},
}};

constexpr uint64_t kMaxString = uint64_t{1} << 30;  // ggml's GGUF_MAX_STRING_LENGTH
constexpr uint64_t kMaxArray = uint64_t{1} << 30;   // ggml's GGUF_MAX_ARRAY_ELEMENTS
constexpr uint32_t kMaxDims = 4;
// Vectors of records are reserved up to this many entries; past it they grow
// as records are actually read, so memory follows the bytes parsed rather
// than the counts a (possibly corrupt) header claims.
constexpr uint64_t kMaxReserve = 4096;

int ScalarSize(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool: return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16: return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32: return 4;
    case GgufValueType::kU64:
    case GgufValueType::kI64:
    case GgufValueType::kF64: return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray: return 0;
  }
  return 0;
}

template <typename T>
T LoadLe(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  return v;
}

template <typename T>
void AppendLe(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

uint64_t PadTo(uint64_t x, uint64_t align) { return (x + align - 1) / align * align; }

// Keys whose value types consumers rely on (llama.cpp #26690: scores read as
// f32 while stored as u8). A listed key with another type is refused.
struct KnownKey {
  std::string_view key;
  GgufValueType type;
  GgufValueType elem;  // arrays
};
constexpr std::array<KnownKey, 8> kKnownKeys = {{
    {"general.architecture", GgufValueType::kString, GgufValueType::kU8},
    {"general.alignment", GgufValueType::kU32, GgufValueType::kU8},
    {"tokenizer.ggml.model", GgufValueType::kString, GgufValueType::kU8},
    {"tokenizer.ggml.tokens", GgufValueType::kArray, GgufValueType::kString},
    {"tokenizer.ggml.scores", GgufValueType::kArray, GgufValueType::kF32},
    {"tokenizer.ggml.token_type", GgufValueType::kArray, GgufValueType::kI32},
    {"tokenizer.ggml.merges", GgufValueType::kArray, GgufValueType::kString},
    {"general.quantization_version", GgufValueType::kU32, GgufValueType::kU8},
}};


// Reads the header through a bounded cursor: every length is checked against
// the bytes left in the file before anything is allocated.
class HeaderReader {
 public:
  explicit HeaderReader(const ByteSource& src) : src_(src), size_(src.size()) {}

  Result<GgufHeader> Parse() {
    GgufHeader h;
    char magic[4];
    ALLOY_RETURN_IF_ERROR(Bytes(magic, 4, "magic"));
    if (std::memcmp(magic, "GGUF", 4) != 0) {
      return Error(0, "bad magic '" + PrintableText(std::string_view(magic, 4)) +
                          "' (a GGUF file starts with 'GGUF')");
    }
    uint32_t version = 0;
    ALLOY_RETURN_IF_ERROR(Scalar(&version, "version"));
    if ((version & 0xFFFF) == 0 && version != 0) {
      return Status::Unsupported(src_.name() + ": byte 4: version " + std::to_string(version) +
                                 " reads byte-swapped: a big-endian GGUF file, which alloy does "
                                 "not read");
    }
    if (version != 2 && version != 3) {
      return Error(4, "unsupported GGUF version " + std::to_string(version) +
                          " (alloy reads versions 2 and 3)");
    }
    h.version = version;
    int64_t n_tensors = 0, n_kv = 0;
    ALLOY_RETURN_IF_ERROR(Scalar(&n_tensors, "tensor count"));
    ALLOY_RETURN_IF_ERROR(Scalar(&n_kv, "metadata count"));
    // The smallest KV is 8 (key length) + 1 (key) + 4 (type) + 1 (value);
    // the smallest tensor info is 8 + 1 + 4 (n_dims) + 4 (type) + 8 (offset).
    if (n_kv < 0 || static_cast<uint64_t>(n_kv) > Remaining() / 14) {
      return Error(16, "metadata count " + std::to_string(n_kv) + " is impossible for the " +
                           std::to_string(Remaining()) + " bytes left in the file");
    }
    if (n_tensors < 0 || static_cast<uint64_t>(n_tensors) > Remaining() / 25) {
      return Error(8, "tensor count " + std::to_string(n_tensors) + " is impossible for the " +
                          std::to_string(Remaining()) + " bytes left in the file");
    }

    std::set<std::string, std::less<>> keys;
    h.kvs.reserve(
        static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(n_kv), kMaxReserve)));
    for (int64_t i = 0; i < n_kv; ++i) {
      const uint64_t at = pos_;
      GgufKv kv;
      ALLOY_RETURN_IF_ERROR(String(&kv.key, "metadata key"));
      if (kv.key.empty()) return Error(at, "metadata key " + std::to_string(i) + " is empty");
      if (!keys.insert(kv.key).second) {
        return Error(at, "duplicate metadata key '" + PrintableText(kv.key) + "'");
      }
      ALLOY_RETURN_IF_ERROR(Value(kv.key, &kv.value));
      h.kvs.push_back(std::move(kv));
    }
    for (const KnownKey& k : kKnownKeys) {
      const GgufValue* v = h.Find(k.key);
      if (!v) continue;
      const bool ok = v->type == k.type && (k.type != GgufValueType::kArray || v->elem_type == k.elem);
      if (!ok) {
        std::string want(GgufValueTypeName(k.type));
        if (k.type == GgufValueType::kArray) want += " of " + std::string(GgufValueTypeName(k.elem));
        std::string got(GgufValueTypeName(v->type));
        if (v->type == GgufValueType::kArray) got += " of " + std::string(GgufValueTypeName(v->elem_type));
        return Status::Corrupt(src_.name() + ": metadata '" + std::string(k.key) + "' is " + got +
                               ", expected " + want);
      }
    }
    if (const GgufValue* a = h.Find("general.alignment")) {
      const uint32_t align = LoadLe<uint32_t>(a->raw.data());
      if (align == 0 || (align & (align - 1)) != 0) {
        return Status::Corrupt(src_.name() + ": general.alignment " + std::to_string(align) +
                               " is not a power of two");
      }
      h.alignment = align;
    }

    std::set<std::string, std::less<>> names;
    h.tensors.reserve(
        static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(n_tensors), kMaxReserve)));
    for (int64_t i = 0; i < n_tensors; ++i) {
      const uint64_t at = pos_;
      GgufTensor t;
      ALLOY_RETURN_IF_ERROR(String(&t.name, "tensor name"));
      const std::string label = "tensor '" + PrintableText(t.name) + "'";
      if (t.name.size() > kGgufMaxTensorName) {
        return Error(at, label + ": name is " + std::to_string(t.name.size()) +
                             " bytes (ggml allows at most 63)");
      }
      if (!names.insert(t.name).second) return Error(at, "duplicate " + label);
      uint32_t n_dims = 0;
      ALLOY_RETURN_IF_ERROR(Scalar(&n_dims, "dimension count"));
      if (n_dims > kMaxDims) {
        return Error(pos_ - 4, label + ": " + std::to_string(n_dims) +
                                   " dimensions (ggml allows at most 4)");
      }
      t.ne.resize(n_dims);
      for (uint32_t d = 0; d < n_dims; ++d) {
        ALLOY_RETURN_IF_ERROR(Scalar(&t.ne[d], "dimension"));
        if (t.ne[d] < 0) {
          return Error(pos_ - 8, label + ": negative dimension " + std::to_string(t.ne[d]));
        }
      }
      ALLOY_RETURN_IF_ERROR(Scalar(&t.type, "tensor type"));
      const GgmlTypeTraits traits = GgmlTypeTraitsOf(t.type);
      if (traits.block_elems == 0) {
        return Error(pos_ - 4, label + ": " +
                                   (traits.name.empty() ? "unknown type id " + std::to_string(t.type)
                                                        : "removed type " + std::string(traits.name)));
      }
      Result<uint64_t> nbytes = GgmlByteSize(t.type, t.ne);
      if (!nbytes.ok()) return Error(at, label + ": " + nbytes.status().message());
      t.nbytes = *nbytes;
      ALLOY_RETURN_IF_ERROR(Scalar(&t.offset, "tensor offset"));
      h.tensors.push_back(std::move(t));
    }

    h.data_offset = PadTo(pos_, h.alignment);
    uint64_t expected = 0;
    for (const GgufTensor& t : h.tensors) {
      const std::string label = "tensor '" + PrintableText(t.name) + "'";
      if (t.offset != expected) {
        return Status::Corrupt(src_.name() + ": " + label + ": data offset " +
                               std::to_string(t.offset) + " but the previous tensors end at " +
                               std::to_string(expected) +
                               " (tensors must be back to back, each padded to " +
                               std::to_string(h.alignment) + " bytes)");
      }
      uint64_t begin = 0, end = 0;
      if (!CheckedAdd(h.data_offset, t.offset, &begin) || !CheckedAdd(begin, t.nbytes, &end) ||
          end > size_) {
        return Status::Corrupt(src_.name() + ": " + label + ": data [" + std::to_string(begin) +
                               ", +" + std::to_string(t.nbytes) +
                               ") is not within the file's " + std::to_string(size_) +
                               " bytes (truncated or corrupt)");
      }
      uint64_t padded = 0;
      if (!CheckedAdd(t.nbytes, h.alignment - 1, &padded) ||
          !CheckedAdd(expected, padded / h.alignment * h.alignment, &expected)) {
        return Status::Corrupt(src_.name() + ": " + label + ": data offsets overflow");
      }
    }
    return h;
  }

 private:
  uint64_t Remaining() const { return size_ - pos_; }

  Status Error(uint64_t at, const std::string& msg) const {
    return Status::Corrupt(src_.name() + ": byte " + std::to_string(at) + ": " + msg);
  }

  Status Bytes(void* out, uint64_t n, std::string_view what) {
    if (n > Remaining()) {
      return Error(pos_, "file ends inside the " + std::string(what) + " (" + std::to_string(n) +
                             " bytes needed, " + std::to_string(Remaining()) + " left)");
    }
    ALLOY_RETURN_IF_ERROR(Fill(out, n));
    return Status::OK();
  }

  // Copies n bytes at pos_ through a 1 MiB window (one ReadAt per window).
  Status Fill(void* out, uint64_t n) {
    auto* dst = static_cast<char*>(out);
    while (n > 0) {
      if (pos_ < win_begin_ || pos_ >= win_begin_ + window_.size()) {
        const uint64_t len = std::min<uint64_t>(kWindow, size_ - pos_);
        window_.resize(static_cast<size_t>(len));
        ALLOY_RETURN_IF_ERROR(src_.ReadAt(
            pos_, std::span<uint8_t>(reinterpret_cast<uint8_t*>(window_.data()), window_.size())));
        win_begin_ = pos_;
      }
      const uint64_t in_win = win_begin_ + window_.size() - pos_;
      const uint64_t k = std::min(n, in_win);
      std::memcpy(dst, window_.data() + (pos_ - win_begin_), static_cast<size_t>(k));
      dst += k;
      pos_ += k;
      n -= k;
    }
    return Status::OK();
  }

  template <typename T>
  Status Scalar(T* out, std::string_view what) {
    char b[sizeof(T)];
    ALLOY_RETURN_IF_ERROR(Bytes(b, sizeof(T), what));
    *out = LoadLe<T>(b);
    return Status::OK();
  }

  Status String(std::string* out, std::string_view what) {
    const uint64_t at = pos_;
    uint64_t len = 0;
    ALLOY_RETURN_IF_ERROR(Scalar(&len, std::string(what) + " length"));
    if (len > kMaxString || len > Remaining()) {
      return Error(at, std::string(what) + " length " + std::to_string(len) + " exceeds the " +
                           std::to_string(Remaining()) + " bytes left in the file");
    }
    out->resize(static_cast<size_t>(len));
    return Bytes(out->data(), len, what);
  }

  Status Value(const std::string& key, GgufValue* v) {
    const uint64_t at = pos_;
    uint32_t type = 0;
    ALLOY_RETURN_IF_ERROR(Scalar(&type, "value type"));
    if (type > static_cast<uint32_t>(GgufValueType::kF64)) {
      return Error(at, "metadata '" + PrintableText(key) + "': invalid value type " +
                           std::to_string(type));
    }
    v->type = static_cast<GgufValueType>(type);
    if (v->type == GgufValueType::kString) return String(&v->raw, "metadata string");
    if (v->type != GgufValueType::kArray) return ScalarValue(key, v->type, &v->raw);

    uint32_t elem = 0;
    ALLOY_RETURN_IF_ERROR(Scalar(&elem, "array element type"));
    if (elem > static_cast<uint32_t>(GgufValueType::kF64) ||
        elem == static_cast<uint32_t>(GgufValueType::kArray)) {
      return Error(pos_ - 4, "metadata '" + PrintableText(key) + "': " +
                                 (elem == static_cast<uint32_t>(GgufValueType::kArray)
                                      ? std::string("nested arrays are not allowed")
                                      : "invalid array element type " + std::to_string(elem)));
    }
    v->elem_type = static_cast<GgufValueType>(elem);
    uint64_t count = 0;
    ALLOY_RETURN_IF_ERROR(Scalar(&count, "array length"));
    const uint64_t min_elem =
        v->elem_type == GgufValueType::kString ? 8 : static_cast<uint64_t>(ScalarSize(v->elem_type));
    if (count > kMaxArray || count > Remaining() / min_elem) {
      return Error(pos_ - 8, "metadata '" + PrintableText(key) + "': array of " +
                                 std::to_string(count) + " elements exceeds the " +
                                 std::to_string(Remaining()) + " bytes left in the file");
    }
    v->count = count;
    if (v->elem_type == GgufValueType::kString) {
      v->strings.reserve(static_cast<size_t>(std::min(count, kMaxReserve)));
      for (uint64_t i = 0; i < count; ++i) {
        ALLOY_RETURN_IF_ERROR(String(&v->strings.emplace_back(), "array string"));
      }
      return Status::OK();
    }
    v->raw.resize(static_cast<size_t>(count * min_elem));
    ALLOY_RETURN_IF_ERROR(Bytes(v->raw.data(), v->raw.size(), "array"));
    if (v->elem_type == GgufValueType::kBool) {
      for (size_t i = 0; i < v->raw.size(); ++i) {
        if (static_cast<unsigned char>(v->raw[i]) > 1) {
          return Error(pos_ - v->raw.size() + i,
                       "metadata '" + PrintableText(key) + "': bool element is not 0 or 1");
        }
      }
    }
    return Status::OK();
  }

  Status ScalarValue(const std::string& key, GgufValueType t, std::string* raw) {
    raw->resize(static_cast<size_t>(ScalarSize(t)));
    ALLOY_RETURN_IF_ERROR(Bytes(raw->data(), raw->size(), "metadata value"));
    if (t == GgufValueType::kBool && static_cast<unsigned char>((*raw)[0]) > 1) {
      return Error(pos_ - 1, "metadata '" + PrintableText(key) + "': bool value " +
                                 std::to_string(static_cast<unsigned char>((*raw)[0])) +
                                 " is not 0 or 1");
    }
    return Status::OK();
  }

  static constexpr uint64_t kWindow = uint64_t{1} << 20;
  const ByteSource& src_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t win_begin_ = 0;
  std::string window_;
};

void AppendString(std::string& out, std::string_view s) {
  AppendLe<uint64_t>(out, s.size());
  out.append(s);
}

void AppendValue(std::string& out, const GgufValue& v) {
  AppendLe<uint32_t>(out, static_cast<uint32_t>(v.type));
  if (v.type == GgufValueType::kString) {
    AppendString(out, v.raw);
  } else if (v.type == GgufValueType::kArray) {
    AppendLe<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
    AppendLe<uint64_t>(out, v.count);
    if (v.elem_type == GgufValueType::kString) {
      for (const std::string& s : v.strings) AppendString(out, s);
    } else {
      out += v.raw;
    }
  } else {
    out += v.raw;
  }
}

template <typename T>
GgufValue Scalar(GgufValueType type, T x) {
  GgufValue v;
  v.type = type;
  AppendLe<T>(v.raw, x);
  return v;
}

template <typename T>
GgufValue NumericArray(GgufValueType elem, std::span<const T> items) {
  GgufValue v;
  v.type = GgufValueType::kArray;
  v.elem_type = elem;
  v.count = items.size();
  v.raw.resize(items.size_bytes());
  if (!items.empty()) std::memcpy(v.raw.data(), items.data(), items.size_bytes());
  return v;
}

}  // namespace

GgmlTypeTraits GgmlTypeTraitsOf(uint32_t id) {
  return id < kTypes.size() ? kTypes[id] : GgmlTypeTraits{};
}

std::string GgmlTypeName(uint32_t id) {
  const GgmlTypeTraits t = GgmlTypeTraitsOf(id);
  return t.name.empty() ? "type " + std::to_string(id) : std::string(t.name);
}

std::optional<DType> GgmlPlainDType(uint32_t id) {
  for (const auto& [g, d] : kPlain) {
    if (static_cast<uint32_t>(g) == id) return d;
  }
  return std::nullopt;
}

std::optional<GgmlType> GgmlTypeOfDType(DType d) {
  for (const auto& [g, dt] : kPlain) {
    if (dt == d) return g;
  }
  return std::nullopt;
}

std::optional<GgmlType> ParseGgmlTypeName(std::string_view name) {
  std::string upper;
  for (char c : name) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (uint32_t id = 0; id < kTypes.size(); ++id) {
    if (kTypes[id].block_elems != 0 && kTypes[id].name == upper) return static_cast<GgmlType>(id);
  }
  return std::nullopt;
}

Result<uint64_t> GgmlByteSize(uint32_t type, std::span<const int64_t> ne) {
  const GgmlTypeTraits traits = GgmlTypeTraitsOf(type);
  if (traits.block_elems == 0) {
    return Status::Corrupt("unknown or removed type " + GgmlTypeName(type));
  }
  // A 0 dim does not excuse the others: their product must fit too, so that
  // the shape passes CheckedNumel in any order (GgufSource lists it reversed).
  uint64_t numel = 1, nonzero = 1;
  for (int64_t d : ne) {
    if (d < 0) return Status::Corrupt("negative dimension " + std::to_string(d));
    if (d != 0 && (!CheckedMul(nonzero, static_cast<uint64_t>(d), &nonzero) ||
                   nonzero > static_cast<uint64_t>(INT64_MAX))) {
      return Status::Corrupt("element count of " + ShapeString(ne) + " overflows int64");
    }
    numel *= static_cast<uint64_t>(d);  // ≤ nonzero
  }
  const uint64_t row = ne.empty() ? 1 : static_cast<uint64_t>(ne[0]);
  if (row % traits.block_elems != 0) {
    return Status::Corrupt("row length " + std::to_string(row) + " is not a multiple of " +
                           std::string(traits.name) + "'s block of " +
                           std::to_string(traits.block_elems));
  }
  uint64_t bytes = 0;
  if (!CheckedMul(numel / traits.block_elems, traits.block_bytes, &bytes)) {
    return Status::Corrupt("byte size of " + ShapeString(ne) + " overflows");
  }
  return bytes;
}

std::string_view GgufValueTypeName(GgufValueType t) {
  static constexpr std::array<std::string_view, 13> kNames = {
      "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<size_t>(t);
  return i < kNames.size() ? kNames[i] : "invalid";
}

std::optional<uint64_t> GgufValue::AsUint() const {
  const std::optional<int64_t> s = AsInt();
  if (type == GgufValueType::kU64) return LoadLe<uint64_t>(raw.data());
  if (s && *s >= 0) return static_cast<uint64_t>(*s);
  return std::nullopt;
}

std::optional<int64_t> GgufValue::AsInt() const {
  const char* p = raw.data();
  switch (type) {
    case GgufValueType::kU8: return LoadLe<uint8_t>(p);
    case GgufValueType::kI8: return LoadLe<int8_t>(p);
    case GgufValueType::kU16: return LoadLe<uint16_t>(p);
    case GgufValueType::kI16: return LoadLe<int16_t>(p);
    case GgufValueType::kU32: return LoadLe<uint32_t>(p);
    case GgufValueType::kI32: return LoadLe<int32_t>(p);
    case GgufValueType::kI64: return LoadLe<int64_t>(p);
    case GgufValueType::kU64: {
      const uint64_t u = LoadLe<uint64_t>(p);
      if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
      return static_cast<int64_t>(u);
    }
    default: return std::nullopt;
  }
}

std::optional<double> GgufValue::AsFloat() const {
  if (type == GgufValueType::kF32) return LoadLe<float>(raw.data());
  if (type == GgufValueType::kF64) return LoadLe<double>(raw.data());
  if (const std::optional<int64_t> i = AsInt()) return static_cast<double>(*i);
  return std::nullopt;
}

const std::string* GgufValue::AsString() const {
  return type == GgufValueType::kString ? &raw : nullptr;
}

std::string GgufValue::Describe() const {
  switch (type) {
    case GgufValueType::kString: return PrintableText(raw);
    case GgufValueType::kBool: return raw[0] ? "true" : "false";
    case GgufValueType::kArray:
      return "[" + std::to_string(count) + " × " + std::string(GgufValueTypeName(elem_type)) + "]";
    case GgufValueType::kF32:
    case GgufValueType::kF64: {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%g", *AsFloat());
      return buf;
    }
    case GgufValueType::kU64: return std::to_string(LoadLe<uint64_t>(raw.data()));
    default: return std::to_string(*AsInt());
  }
}

GgufValue GgufValue::String(std::string s) {
  GgufValue v;
  v.type = GgufValueType::kString;
  v.raw = std::move(s);
  return v;
}
GgufValue GgufValue::Uint32(uint32_t x) { return Scalar(GgufValueType::kU32, x); }
GgufValue GgufValue::Int32(int32_t x) { return Scalar(GgufValueType::kI32, x); }
GgufValue GgufValue::Float32(float x) { return Scalar(GgufValueType::kF32, x); }
GgufValue GgufValue::Bool(bool x) { return Scalar(GgufValueType::kBool, static_cast<uint8_t>(x)); }
GgufValue GgufValue::StringArray(std::vector<std::string> items) {
  GgufValue v;
  v.type = GgufValueType::kArray;
  v.elem_type = GgufValueType::kString;
  v.count = items.size();
  v.strings = std::move(items);
  return v;
}
GgufValue GgufValue::Float32Array(std::span<const float> items) {
  return NumericArray(GgufValueType::kF32, items);
}
GgufValue GgufValue::Int32Array(std::span<const int32_t> items) {
  return NumericArray(GgufValueType::kI32, items);
}

const GgufValue* GgufHeader::Find(std::string_view key) const {
  for (const GgufKv& kv : kvs) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

std::string GgufHeader::Architecture() const {
  const GgufValue* v = Find("general.architecture");
  return v && v->AsString() ? *v->AsString() : std::string();
}

Result<GgufHeader> ReadGgufHeader(const ByteSource& src) { return HeaderReader(src).Parse(); }

bool LooksLikeGguf(const ByteSource& src) {
  uint8_t magic[4];
  return src.size() >= 4 && src.ReadAt(0, magic).ok() && std::memcmp(magic, "GGUF", 4) == 0;
}

Result<GgufLayout> PlanGgufLayout(const std::vector<GgufKv>& kvs, std::vector<GgufTensor>& tensors,
                                  uint32_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return Status::InvalidArgument("GGUF alignment " + std::to_string(alignment) +
                                   " is not a power of two");
  }
  // Readers take the alignment from general.alignment (32 without it), so the
  // header must state the alignment the layout uses: a contradicting KV is
  // refused, and a non-default alignment is recorded.
  const GgufKv* align_kv = nullptr;
  for (const GgufKv& kv : kvs) {
    if (kv.key == "general.alignment") align_kv = &kv;
  }
  if (align_kv) {
    const GgufValue& v = align_kv->value;
    const bool u32 = v.type == GgufValueType::kU32 && v.raw.size() == 4;
    if (!u32 || LoadLe<uint32_t>(v.raw.data()) != alignment) {
      return Status::InvalidArgument(
          "GGUF metadata general.alignment is " +
          (u32 ? "u32 " + std::to_string(LoadLe<uint32_t>(v.raw.data()))
               : std::string(GgufValueTypeName(v.type))) +
          ", but the layout is aligned to " + std::to_string(alignment) + " bytes");
    }
  }
  const bool add_align_kv = !align_kv && alignment != kGgufDefaultAlignment;
  GgufLayout layout;
  std::string& out = layout.header;
  out.append("GGUF", 4);
  AppendLe<uint32_t>(out, 3);
  AppendLe<int64_t>(out, static_cast<int64_t>(tensors.size()));
  AppendLe<int64_t>(out, static_cast<int64_t>(kvs.size() + (add_align_kv ? 1 : 0)));
  std::set<std::string_view> keys;
  for (const GgufKv& kv : kvs) {
    if (kv.key.empty() || !keys.insert(kv.key).second) {
      return Status::InvalidArgument("GGUF metadata key '" + kv.key + "' is empty or repeated");
    }
    AppendString(out, kv.key);
    AppendValue(out, kv.value);
  }
  if (add_align_kv) {
    AppendString(out, "general.alignment");
    AppendValue(out, GgufValue::Uint32(alignment));
  }
  std::set<std::string_view> names;
  uint64_t running = 0;
  for (GgufTensor& t : tensors) {
    if (t.name.empty() || t.name.size() > kGgufMaxTensorName || !names.insert(t.name).second) {
      return Status::InvalidArgument("GGUF tensor name '" + t.name +
                                     "' is empty, repeated or longer than 63 bytes");
    }
    if (t.ne.size() > kMaxDims) {
      return Status::InvalidArgument("GGUF tensor '" + t.name + "' has more than 4 dimensions");
    }
    Result<uint64_t> nbytes = GgmlByteSize(t.type, t.ne);
    if (!nbytes.ok()) {
      return Status::InvalidArgument("GGUF tensor '" + t.name + "': " + nbytes.status().message());
    }
    t.nbytes = *nbytes;
    t.offset = running;
    running = PadTo(running + t.nbytes, alignment);
    AppendString(out, t.name);
    AppendLe<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) AppendLe<int64_t>(out, d);
    AppendLe<uint32_t>(out, t.type);
    AppendLe<uint64_t>(out, t.offset);
  }
  out.resize(static_cast<size_t>(PadTo(out.size(), alignment)), '\0');
  layout.file_size = out.size() + running;
  return layout;
}

// ---- GgufSource ----

GgufSource::GgufSource(std::unique_ptr<ByteSource> src, GgufHeader header)
    : src_(std::move(src)), header_(std::move(header)) {
  files_.push_back(src_->name());
  tensors_.reserve(header_.tensors.size());
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    const GgufTensor& g = header_.tensors[i];
    TensorInfo t;
    t.name = g.name;
    t.shape.assign(g.ne.rbegin(), g.ne.rend());
    const std::optional<DType> plain = GgmlPlainDType(g.type);
    t.dtype = plain.value_or(DType::kF32);
    t.nbytes = plain ? g.nbytes : CheckedNumel(t.shape).value() * 4;  // validated by the reader
    t.file_offset = header_.data_offset + g.offset;
    by_name_.emplace(t.name, i);
    tensors_.push_back(std::move(t));
  }
  for (const GgufKv& kv : header_.kvs) {
    if (kv.value.type != GgufValueType::kArray) metadata_.emplace(kv.key, kv.value.Describe());
  }
}

Result<std::unique_ptr<GgufSource>> GgufSource::Open(std::unique_ptr<ByteSource> src) {
  ALLOY_ASSIGN_OR_RETURN(GgufHeader header, ReadGgufHeader(*src));
  return std::unique_ptr<GgufSource>(new GgufSource(std::move(src), std::move(header)));
}

Result<std::unique_ptr<GgufSource>> GgufSource::OpenFile(const std::string& path,
                                                         FileAccess access) {
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> src, OpenFileSource(path, access));
  return Open(std::move(src));
}

size_t GgufSource::IndexOf(const TensorInfo& info) const {
  if (!tensors_.empty() && &info >= tensors_.data() && &info < tensors_.data() + tensors_.size()) {
    return static_cast<size_t>(&info - tensors_.data());
  }
  auto it = by_name_.find(info.name);
  return it == by_name_.end() ? tensors_.size() : it->second;
}

const GgufTensor& GgufSource::gguf_tensor(const TensorInfo& info) const {
  return header_.tensors[IndexOf(info)];
}

bool GgufSource::quantized(const TensorInfo& info) const {
  const size_t i = IndexOf(info);
  return i < tensors_.size() && !GgmlPlainDType(header_.tensors[i].type);
}

const TensorInfo* GgufSource::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Status GgufSource::RefuseQuantized(const TensorInfo& info) const {
  return Status::Unsupported(name() + ": tensor '" + info.name + "' is " +
                             GgmlTypeName(gguf_tensor(info).type) +
                             "-quantized; open the model through alloy's merge layer to "
                             "dequantize it");
}

Result<std::span<const uint8_t>> GgufSource::View(const TensorInfo& info) {
  if (IndexOf(info) >= tensors_.size()) return Status::NotFound(name() + ": no tensor " + info.name);
  if (quantized(info)) return RefuseQuantized(info);
  return src_->View(info.file_offset, info.nbytes);
}

Status GgufSource::Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const {
  if (IndexOf(info) >= tensors_.size()) return Status::NotFound(name() + ": no tensor " + info.name);
  if (quantized(info)) return RefuseQuantized(info);
  uint64_t end = 0;
  if (!CheckedAdd(offset, out.size(), &end) || end > info.nbytes) {
    return Status::InvalidArgument(name() + ": tensor '" + info.name + "': read past its end");
  }
  return src_->ReadAt(info.file_offset + offset, out);
}

Status GgufSource::ReadRaw(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const {
  const size_t i = IndexOf(info);
  if (i >= tensors_.size()) return Status::NotFound(name() + ": no tensor " + info.name);
  uint64_t end = 0;
  if (!CheckedAdd(offset, out.size(), &end) || end > header_.tensors[i].nbytes) {
    return Status::InvalidArgument(name() + ": tensor '" + info.name + "': read past its end");
  }
  return src_->ReadAt(tensors_[i].file_offset + offset, out);
}

void GgufSource::Release(const TensorInfo& info, uint64_t offset, uint64_t len) {
  const size_t i = IndexOf(info);
  if (i >= tensors_.size()) return;
  const uint64_t stored = header_.tensors[i].nbytes;
  if (offset >= stored) return;
  src_->Release(tensors_[i].file_offset + offset, std::min(len, stored - offset));
}

// ---- GgufWriter ----

Status GgufWriter::Begin(const std::vector<GgufKv>& kvs, std::vector<GgufTensor> tensors,
                         uint32_t alignment) {
  if (file_.created()) return Status::InvalidArgument(file_.path() + ": Begin() called twice");
  Result<GgufLayout> layout = PlanGgufLayout(kvs, tensors, alignment);
  if (!layout.ok()) return layout.status().WithContext(file_.path());
  std::vector<PlannedFile::Region> regions(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    regions[i] = {"tensor '" + tensors[i].name + "'", layout->header.size() + tensors[i].offset,
                  tensors[i].nbytes};
  }
  tensors_ = std::move(tensors);
  return file_.Create(layout->header, layout->file_size, std::move(regions));
}

}  // namespace alloy::formats

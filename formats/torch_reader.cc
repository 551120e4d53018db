#include "formats/torch_reader.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "formats/pickle.h"
#include "formats/tensor_info.h"
#include "formats/zip_reader.h"

namespace alloy::formats {
namespace {

constexpr uint64_t kMaxSmallEntryBytes = 64;
constexpr size_t kMaxDims = 64;
constexpr int kMaxWrapperDepth = 4;
constexpr int kMaxRebuildDepth = 4;
// PROTO 2, LONG1 of 10 bytes: the legacy magic number 0x1950a86a20f9469cfc6c.
constexpr uint8_t kLegacyMagic[] = {0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C,
                                    0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19};


// Storage classes (numel counts elements of the dtype); nullopt for the
// untyped byte storage. complex128 has no alloy type.
struct StorageClass {
  std::string_view name;
  std::optional<DType> dtype;
  bool untyped = false;
};
constexpr StorageClass kStorageClasses[] = {
    {"DoubleStorage", DType::kF64},      {"FloatStorage", DType::kF32},
    {"HalfStorage", DType::kF16},        {"BFloat16Storage", DType::kBF16},
    {"LongStorage", DType::kI64},        {"IntStorage", DType::kI32},
    {"ShortStorage", DType::kI16},       {"CharStorage", DType::kI8},
    {"ByteStorage", DType::kU8},         {"BoolStorage", DType::kBool},
    {"ComplexFloatStorage", DType::kC64}, {"ComplexDoubleStorage", std::nullopt},
    {"UntypedStorage", std::nullopt, true},
};

// torch.<dtype> markers (argument 7 of _rebuild_tensor_v3).
std::optional<DType> TorchDType(std::string_view name) {
  static const std::map<std::string_view, DType> kMap = {
      {"float64", DType::kF64},          {"double", DType::kF64},
      {"float32", DType::kF32},          {"float", DType::kF32},
      {"float16", DType::kF16},          {"half", DType::kF16},
      {"bfloat16", DType::kBF16},        {"int64", DType::kI64},
      {"long", DType::kI64},             {"int32", DType::kI32},
      {"int", DType::kI32},              {"int16", DType::kI16},
      {"short", DType::kI16},            {"int8", DType::kI8},
      {"uint8", DType::kU8},             {"bool", DType::kBool},
      {"complex64", DType::kC64},        {"cfloat", DType::kC64},
      {"float8_e4m3fn", DType::kF8_E4M3}, {"float8_e5m2", DType::kF8_E5M2},
      {"float8_e4m3fnuz", DType::kF8_E4M3FNUZ}, {"float8_e5m2fnuz", DType::kF8_E5M2FNUZ},
      {"float8_e8m0fnu", DType::kF8_E8M0}, {"uint16", DType::kU16},
      {"uint32", DType::kU32},           {"uint64", DType::kU64},
  };
  auto it = kMap.find(name);
  if (it == kMap.end()) return std::nullopt;
  return it->second;
}

uint64_t ItemSize(DType d) { return static_cast<uint64_t>(DTypeBits(d)) / 8; }

// One storage entry, shared by every tensor that references its key.
struct Storage {
  std::string key;
  std::string type_name;       // "FloatStorage"
  uint64_t numel = 0;          // as the pid says
  uint64_t data_offset = 0;    // absolute file offset of the entry's payload
  uint64_t nbytes = 0;
  std::string first_user;      // the first tensor that referenced it, for messages
  size_t n_users = 0;
};

// Where a tensor's elements live.
struct TensorView {
  size_t storage = 0;
  uint64_t data_offset = 0;  // absolute file offset of element [0, ..., 0]
  uint64_t span_bytes = 0;   // bytes from data_offset covering every element
  std::vector<int64_t> stride;  // elements
  bool contiguous = true;
};

// The arguments of one tensor rebuild, after unwrapping Parameter/subclass
// rebuilds.
struct Rebuild {
  const PickleValue* pid = nullptr;
  const PickleValue* offset = nullptr;
  const PickleValue* size = nullptr;
  const PickleValue* stride = nullptr;
  const PickleValue* dtype = nullptr;  // v3 only
};

class StateDictParser {
 public:
  StateDictParser(const ByteSource& src, const ZipArchive& zip, std::string prefix)
      : src_(src), zip_(zip), prefix_(std::move(prefix)) {}

  Status Parse(const PickleValue& root, std::vector<TensorInfo>* tensors,
               std::vector<TensorView>* views, std::vector<Storage>* storages) {
    ALLOY_ASSIGN_OR_RETURN(const PickleValue* dict, FindStateDict(root));
    std::unordered_map<std::string_view, size_t> seen;
    for (size_t item_idx = 0; item_idx + 1 < dict->items.size(); item_idx += 2) {
      const PickleValue& key = *dict->items[item_idx];
      const PickleValue& value = *dict->items[item_idx + 1];
      if (key.kind != PickleKind::kString || key.text.empty()) {
        return Corrupt("state dict key " + std::to_string(item_idx / 2) + " is a " +
                       DescribePickleValue(key) + ", not a non-empty string");
      }
      if (!seen.emplace(key.text, item_idx).second) {
        return Corrupt("duplicate state dict key " + QuotedText(key.text));
      }
      TensorInfo info;
      TensorView view;
      ALLOY_RETURN_IF_ERROR(ParseTensor(key.text, value, &info, &view));
      tensors->push_back(std::move(info));
      views->push_back(std::move(view));
    }
    *storages = std::move(storages_);
    return Status::OK();
  }

 private:
  Status Corrupt(const std::string& msg) const { return Status::Corrupt(src_.name() + ": " + msg); }
  Status Unsupported(const std::string& msg) const {
    return Status::Unsupported(src_.name() + ": " + msg);
  }

  static const PickleValue* DictGet(const PickleValue& dict, std::string_view key) {
    for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
      const PickleValue& k = *dict.items[i];
      if (k.kind == PickleKind::kString && k.text == key) return dict.items[i + 1];
    }
    return nullptr;
  }

  // The dict holding the tensors: the top level, or the dict under
  // "state_dict" / "model" when the top level has no tensor.
  Result<const PickleValue*> FindStateDict(const PickleValue& root) const {
    const PickleValue* dict = &root;
    for (int depth = 0; depth <= kMaxWrapperDepth; ++depth) {
      if (dict->kind != PickleKind::kDict) {
        return Corrupt("the pickled object is a " + DescribePickleValue(*dict) +
                       ", not a state dict (a dict of tensors)");
      }
      bool has_tensor = false;
      for (size_t i = 1; i < dict->items.size(); i += 2) {
        has_tensor |= dict->items[i]->kind == PickleKind::kCall;
      }
      if (has_tensor || dict->items.empty()) return dict;
      const PickleValue* inner = nullptr;
      for (std::string_view wrapper : {"state_dict", "model"}) {
        const PickleValue* v = DictGet(*dict, wrapper);
        if (v != nullptr && v->kind == PickleKind::kDict) {
          inner = v;
          break;
        }
      }
      if (inner == nullptr) break;
      dict = inner;
    }
    std::string keys;
    for (size_t i = 0; i < dict->items.size() && i < 20; i += 2) {
      if (!keys.empty()) keys += ", ";
      keys += dict->items[i]->kind == PickleKind::kString ? QuotedText(dict->items[i]->text)
                                                           : DescribePickleValue(*dict->items[i]);
    }
    return Corrupt("no tensors found: the dict holds no tensor values (keys: " + keys +
                   ") and no 'state_dict' or 'model' dict of tensors");
  }

  // Unwraps _rebuild_parameter(_with_state) and _rebuild_from_type_v2 down to
  // _rebuild_tensor_v2/v3.
  Result<Rebuild> UnwrapRebuild(const std::string& name, const PickleValue& value) const {
    if (value.kind != PickleKind::kCall) {
      return Corrupt("value of " + QuotedText(name) + " is a " + DescribePickleValue(value) +
                     ", not a tensor (only state dicts of tensors can be read)");
    }
    const PickleValue* fn = value.items[0];
    const std::vector<const PickleValue*>* args = &value.items[1]->items;
    for (int depth = 0; depth <= kMaxRebuildDepth; ++depth) {
      auto bad_args = [&](const char* expected) {
        return Corrupt("tensor " + QuotedText(name) + ": " + DescribePickleValue(*fn) + " takes " +
                       expected + " arguments, got " + std::to_string(args->size()));
      };
      if (fn->IsGlobal("torch._utils", "_rebuild_parameter") ||
          fn->IsGlobal("torch._utils", "_rebuild_parameter_with_state")) {
        const size_t want = fn->name == "_rebuild_parameter" ? 3 : 4;
        if (args->size() != want) return bad_args(want == 3 ? "3" : "4");
        const PickleValue* data = (*args)[0];
        if (data->kind != PickleKind::kCall) {
          return Corrupt("tensor " + QuotedText(name) + ": parameter data is a " +
                         DescribePickleValue(*data) + ", not a tensor");
        }
        fn = data->items[0];
        args = &data->items[1]->items;
        continue;
      }
      if (fn->IsGlobal("torch._tensor", "_rebuild_from_type_v2")) {
        if (args->size() != 4) return bad_args("4");
        const PickleValue& type = *(*args)[1];
        if (!type.IsGlobal("torch", "Tensor") &&
            !type.IsGlobal("torch.nn.parameter", "Parameter")) {
          return Unsupported("tensor " + QuotedText(name) + ": tensor subclass " +
                             DescribePickleValue(type) + " is not supported");
        }
        if ((*args)[0]->kind != PickleKind::kGlobal || (*args)[2]->kind != PickleKind::kTuple) {
          return Corrupt("tensor " + QuotedText(name) + ": malformed _rebuild_from_type_v2 arguments");
        }
        fn = (*args)[0];  // result = func(*args)
        args = &(*args)[2]->items;
        continue;
      }
      Rebuild r;
      if (fn->IsGlobal("torch._utils", "_rebuild_tensor_v2")) {
        if (args->size() != 6 && args->size() != 7) return bad_args("6 or 7");
      } else if (fn->IsGlobal("torch._utils", "_rebuild_tensor_v3")) {
        if (args->size() != 7 && args->size() != 8) return bad_args("7 or 8");
        r.dtype = (*args)[6];
      } else {
        return Unsupported("tensor " + QuotedText(name) + ": " + DescribePickleValue(*fn) +
                           " cannot rebuild a tensor");
      }
      r.pid = (*args)[0];
      r.offset = (*args)[1];
      r.size = (*args)[2];
      r.stride = (*args)[3];
      return r;
    }
    return Corrupt("tensor " + QuotedText(name) + ": rebuild calls nested too deeply");
  }

  Status ParseTensor(const std::string& name, const PickleValue& value, TensorInfo* info,
                     TensorView* view) {
    ALLOY_ASSIGN_OR_RETURN(Rebuild r, UnwrapRebuild(name, value));
    const std::string tensor = "tensor " + QuotedText(name);
    // The storage reference (§3.5).
    if (r.pid->kind != PickleKind::kPersistentId) {
      return Corrupt(tensor + ": the storage argument is a " + DescribePickleValue(*r.pid) +
                     ", not a persistent id");
    }
    ALLOY_ASSIGN_OR_RETURN(size_t storage_idx, ResolveStorage(name, *r.pid->items[0]));
    Storage& storage = storages_[storage_idx];
    const StorageClass* cls = FindClass(storage.type_name);

    // The element type.
    DType dtype = DType::kU8;
    if (r.dtype != nullptr) {
      if (r.dtype->kind != PickleKind::kGlobal || r.dtype->text != "torch") {
        return Corrupt(tensor + ": dtype argument is a " + DescribePickleValue(*r.dtype));
      }
      std::optional<DType> d = TorchDType(r.dtype->name);
      if (!d) return Unsupported(tensor + ": dtype torch." + r.dtype->name + " is not supported");
      if (cls->dtype && *cls->dtype != *d) {
        return Corrupt("conflicting storage dtype: " + tensor + " has dtype torch." +
                       r.dtype->name + " but storage " + QuotedText(storage.key) + " is a " +
                       storage.type_name);
      }
      dtype = *d;
    } else if (cls->untyped) {
      return Corrupt(tensor + ": _rebuild_tensor_v2 with an UntypedStorage has no dtype");
    } else if (!cls->dtype) {
      return Unsupported(tensor + ": storage type " + storage.type_name + " is not supported");
    } else {
      dtype = *cls->dtype;
    }
    const uint64_t isz = ItemSize(dtype);

    // The view (§3.6): non-negative ints, rank-matched strides, in bounds.
    std::vector<int64_t> shape;
    std::vector<int64_t> stride;
    ALLOY_RETURN_IF_ERROR(IntTuple(tensor, "size", *r.size, &shape));
    ALLOY_RETURN_IF_ERROR(IntTuple(tensor, "stride", *r.stride, &stride));
    if (r.offset->kind != PickleKind::kInt) {
      return Corrupt(tensor + ": storage offset is a " + DescribePickleValue(*r.offset));
    }
    if (r.offset->integer < 0) {
      return Corrupt("out-of-bounds view: " + tensor + " has negative storage offset " +
                     std::to_string(r.offset->integer));
    }
    if (stride.size() != shape.size()) {
      return Corrupt(tensor + ": " + std::to_string(stride.size()) + " strides for " +
                     std::to_string(shape.size()) + " dimensions");
    }
    Result<uint64_t> nbytes = CheckedByteSize(dtype, shape);
    if (!nbytes.ok()) {
      return Corrupt(tensor + ": shape " + ShapeString(shape) + " overflows: " +
                     nbytes.status().message());
    }
    const auto offset = static_cast<uint64_t>(r.offset->integer);
    const uint64_t storage_elems = storage.nbytes / isz;
    const std::string what = std::string(DTypeName(dtype)) + " " + ShapeString(shape) +
                             " at offset " + std::to_string(offset) + " with strides " +
                             ShapeString(stride);
    uint64_t extent = offset;  // one past the last element used
    bool empty = false;
    for (int64_t d : shape) empty |= d == 0;
    if (empty) {
      if (offset > storage_elems) {
        return Corrupt("out-of-bounds view: " + tensor + " (" + what + ") starts past the " +
                       std::to_string(storage_elems) + " elements of storage " +
                       QuotedText(storage.key));
      }
    } else {
      bool ok = CheckedAdd(extent, 1, &extent);
      for (size_t d = 0; d < shape.size() && ok; ++d) {
        uint64_t step = 0;
        ok = CheckedMul(static_cast<uint64_t>(shape[d] - 1), static_cast<uint64_t>(stride[d]),
                        &step) &&
             CheckedAdd(extent, step, &extent);
      }
      if (!ok || extent > storage_elems) {
        return Corrupt("out-of-bounds view: " + tensor + " (" + what + ") needs elements [" +
                       std::to_string(offset) + ", " + (ok ? std::to_string(extent) : "2^64+") +
                       ") of storage " + QuotedText(storage.key) + ", which holds " +
                       std::to_string(storage_elems));
      }
    }
    // A view with more elements than its storage reads some of them more than
    // once (an expanded, stride-0 view): a tiny file could then describe an
    // arbitrarily large tensor. State dicts do not need that; refuse it.
    if (!empty && nbytes.value() / isz > storage_elems) {
      return Corrupt("overlapping view: " + tensor + " (" + what + ") has more elements than "
                     "the " + std::to_string(storage_elems) + " of storage " +
                     QuotedText(storage.key) + " (an expanded view; save it with .contiguous())");
    }
    // Contiguous iff the strides are C-order ones (size-1 dims don't count).
    bool contiguous = true;
    uint64_t expected = 1;
    for (size_t d = shape.size(); d-- > 0 && !empty;) {
      if (shape[d] != 1 && static_cast<uint64_t>(stride[d]) != expected) contiguous = false;
      expected *= static_cast<uint64_t>(shape[d]);  // <= numel, no overflow
    }

    view->storage = storage_idx;
    view->data_offset = storage.data_offset + offset * isz;  // <= payload end
    view->span_bytes = (extent - offset) * isz;
    view->stride = std::move(stride);
    view->contiguous = contiguous;
    info->name = name;
    info->dtype = dtype;
    info->shape = std::move(shape);
    info->nbytes = *nbytes;
    info->file_index = 0;
    info->file_offset = view->data_offset;
    ++storage.n_users;
    return Status::OK();
  }

  Status IntTuple(const std::string& tensor, const char* what, const PickleValue& v,
                  std::vector<int64_t>* out) const {
    if (v.kind != PickleKind::kTuple) {
      return Corrupt(tensor + ": " + what + " is a " + DescribePickleValue(v) + ", not a tuple");
    }
    if (v.items.size() > kMaxDims) {
      return Corrupt(tensor + ": " + std::to_string(v.items.size()) + " dimensions (limit " +
                     std::to_string(kMaxDims) + ")");
    }
    for (const PickleValue* item : v.items) {
      if (item->kind != PickleKind::kInt) {
        return Corrupt(tensor + ": " + what + " entry is a " + DescribePickleValue(*item) +
                       ", not an int");
      }
      if (item->integer < 0) {
        return Corrupt("out-of-bounds view: " + tensor + " has negative " + what + " " +
                       std::to_string(item->integer));
      }
      out->push_back(item->integer);
    }
    return Status::OK();
  }

  static const StorageClass* FindClass(std::string_view name) {
    for (const StorageClass& cls : kStorageClasses) {
      if (cls.name == name) return &cls;
    }
    return nullptr;
  }

  // pid = ('storage', storage_type, key, location, numel).
  Result<size_t> ResolveStorage(const std::string& name, const PickleValue& pid) {
    const std::string tensor = "tensor " + QuotedText(name);
    auto invalid = [&](const std::string& why) {
      return Corrupt("invalid persistent id for " + tensor + ": " + why);
    };
    if (pid.kind != PickleKind::kTuple) {
      return invalid("expected a tuple ('storage', type, key, location, numel), got a " +
                     DescribePickleValue(pid));
    }
    if (pid.items.size() != 5) {
      return invalid("expected 5 elements, got " + std::to_string(pid.items.size()));
    }
    const PickleValue& tag = *pid.items[0];
    if ((tag.kind != PickleKind::kString && tag.kind != PickleKind::kBytes) ||
        tag.text != "storage") {
      return invalid("pid[0] is a " + DescribePickleValue(tag) + ", expected 'storage'");
    }
    const PickleValue& type = *pid.items[1];
    const StorageClass* cls = type.kind == PickleKind::kGlobal && type.text == "torch"
                                  ? FindClass(type.name)
                                  : nullptr;
    if (cls == nullptr) {
      return invalid("storage type is a " + DescribePickleValue(type) +
                     ", expected a torch storage class");
    }
    const PickleValue& key = *pid.items[2];
    if (key.kind != PickleKind::kString || key.text.empty()) {
      return invalid("storage key is a " + DescribePickleValue(key) + ", expected a string");
    }
    if (pid.items[3]->kind != PickleKind::kString) {
      return invalid("location is a " + DescribePickleValue(*pid.items[3]));
    }
    const PickleValue& numel = *pid.items[4];
    if (numel.kind != PickleKind::kInt || numel.integer < 0) {
      return invalid("numel is a " + DescribePickleValue(numel));
    }

    auto it = by_key_.find(key.text);
    if (it != by_key_.end()) {
      const Storage& s = storages_[it->second];
      if (s.type_name != cls->name) {
        return Corrupt("conflicting storage dtype for storage " + QuotedText(key.text) + ": " +
                       s.type_name + " for tensor " + QuotedText(s.first_user) + ", " +
                       std::string(cls->name) + " for " + tensor);
      }
      if (s.numel != static_cast<uint64_t>(numel.integer)) {
        return Corrupt("storage size mismatch for storage " + QuotedText(key.text) + ": numel " +
                       std::to_string(s.numel) + " for tensor " + QuotedText(s.first_user) + ", " +
                       std::to_string(numel.integer) + " for " + tensor);
      }
      return it->second;
    }

    const std::string entry_name = prefix_ + "/data/" + key.text;
    const ZipEntry* entry = zip_.Find(entry_name);
    if (entry == nullptr) {
      return Corrupt("missing storage " + QuotedText(key.text) + " for " + tensor + ": no entry " +
                     QuotedText(entry_name) + " in the archive");
    }
    if (entry->method != kZipStored) {
      return Unsupported("compressed storage " + QuotedText(entry_name) + " (zip method " +
                         std::to_string(entry->method) + ", " +
                         std::to_string(entry->uncompressed_size) +
                         " bytes inflated) refused: torch.save stores storages uncompressed, "
                         "and inflating untrusted data is a zip-bomb risk");
    }
    const uint64_t unit = cls->dtype ? ItemSize(*cls->dtype) : 1;
    uint64_t expected = 0;
    if (!CheckedMul(static_cast<uint64_t>(numel.integer), unit, &expected) ||
        expected != entry->uncompressed_size) {
      return Corrupt("storage size mismatch for storage " + QuotedText(key.text) + " (" +
                     std::string(cls->name) + ", numel " + std::to_string(numel.integer) +
                     ") used by " + tensor + ": entry " + QuotedText(entry_name) + " holds " +
                     std::to_string(entry->uncompressed_size) + " bytes (file byte " +
                     std::to_string(entry->data_offset) + ")");
    }
    Storage s;
    s.key = key.text;
    s.type_name = std::string(cls->name);
    s.numel = static_cast<uint64_t>(numel.integer);
    s.data_offset = entry->data_offset;
    s.nbytes = entry->uncompressed_size;
    s.first_user = name;
    by_key_.emplace(s.key, storages_.size());
    storages_.push_back(std::move(s));
    return storages_.size() - 1;
  }

  const ByteSource& src_;
  const ZipArchive& zip_;
  const std::string prefix_;
  std::vector<Storage> storages_;
  std::map<std::string, size_t, std::less<>> by_key_;
};

// Swaps every `unit`-byte group of `bytes` (big-endian → little-endian).
void SwapBytes(uint8_t* bytes, uint64_t n, uint64_t unit) {
  if (unit <= 1) return;
  for (uint64_t pos = 0; pos + unit <= n; pos += unit) std::reverse(bytes + pos, bytes + pos + unit);
}

// Copies `count` elements of `isz` bytes, starting at C-order element
// `first`, from the strided view over `region` (element [0,...,0] at byte 0)
// into `dst`. Whole rows of the last dimension are copied at once: with
// memcpy when they are contiguous, else element by element (the transposed
// case).
void Gather(std::span<const uint8_t> region, std::span<const int64_t> shape,
            std::span<const int64_t> stride, uint64_t isz, uint64_t first, uint64_t count,
            uint8_t* dst) {
  const size_t rank = shape.size();
  std::vector<uint64_t> index(rank, 0);
  uint64_t rem = first;
  for (size_t d = rank; d-- > 0;) {
    const auto n = static_cast<uint64_t>(shape[d]);
    index[d] = rem % n;
    rem /= n;
  }
  const auto last_size = static_cast<uint64_t>(shape[rank - 1]);
  const uint64_t last_step = static_cast<uint64_t>(stride[rank - 1]) * isz;
  while (count > 0) {
    uint64_t pos = 0;
    for (size_t d = 0; d < rank; ++d) pos += index[d] * static_cast<uint64_t>(stride[d]);
    const uint8_t* src = region.data() + pos * isz;
    const uint64_t run = std::min(count, last_size - index[rank - 1]);
    if (last_step == isz) {
      std::memcpy(dst, src, run * isz);
      dst += run * isz;
    } else {
      for (uint64_t i = 0; i < run; ++i, src += last_step, dst += isz) {
        switch (isz) {
          case 2: std::memcpy(dst, src, 2); break;
          case 4: std::memcpy(dst, src, 4); break;
          case 8: std::memcpy(dst, src, 8); break;
          default: std::memcpy(dst, src, isz); break;
        }
      }
    }
    count -= run;
    index[rank - 1] = 0;
    for (size_t d = rank - 1; d-- > 0;) {
      if (++index[d] < static_cast<uint64_t>(shape[d])) break;
      index[d] = 0;
    }
  }
}

class TorchSource final : public TensorSource {
 public:
  TorchSource(std::unique_ptr<ByteSource> src, std::vector<TensorInfo> tensors,
              std::vector<TensorView> views, std::vector<Storage> storages, bool big_endian)
      : src_(std::move(src)),
        tensors_(std::move(tensors)),
        views_(std::move(views)),
        storages_(std::move(storages)),
        big_endian_(big_endian),
        files_{src_->name()} {
    for (size_t tensor_idx = 0; tensor_idx < tensors_.size(); ++tensor_idx) {
      index_.emplace(tensors_[tensor_idx].name, tensor_idx);
    }
  }

  const std::string& name() const override { return src_->name(); }
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const TensorInfo* Find(std::string_view name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

  Result<std::span<const uint8_t>> View(const TensorInfo& info) override {
    ALLOY_ASSIGN_OR_RETURN(size_t idx, Locate(info));
    const TensorInfo& t = tensors_[idx];
    if (t.nbytes == 0) return std::span<const uint8_t>();
    if (Direct(idx)) return src_->View(views_[idx].data_offset, t.nbytes);
    {
      std::lock_guard<std::mutex> lock(owned_mu_);
      auto it = owned_.find(idx);
      if (it != owned_.end()) return std::span<const uint8_t>(it->second.get(), t.nbytes);
    }
    // Materialized outside the lock so other tensors are not held up.
    auto buffer = std::make_unique_for_overwrite<uint8_t[]>(static_cast<size_t>(t.nbytes));
    ALLOY_RETURN_IF_ERROR(Read(t, 0, std::span<uint8_t>(buffer.get(), t.nbytes)));
    std::lock_guard<std::mutex> lock(owned_mu_);
    auto [it, inserted] = owned_.emplace(idx, std::move(buffer));
    return std::span<const uint8_t>(it->second.get(), t.nbytes);
  }

  Status Read(const TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const override {
    ALLOY_ASSIGN_OR_RETURN(size_t idx, Locate(info));
    const TensorInfo& t = tensors_[idx];
    uint64_t end = 0;
    if (!CheckedAdd(offset, out.size(), &end) || end > t.nbytes) {
      return Status::InvalidArgument(src_->name() + ": read of [offset " + std::to_string(offset) +
                                     ", +" + std::to_string(out.size()) + ") is outside tensor '" +
                                     t.name + "' (" + std::to_string(t.nbytes) + " bytes)");
    }
    if (out.empty()) return Status::OK();
    const TensorView& v = views_[idx];
    if (Direct(idx)) return src_->ReadAt(v.data_offset + offset, out);

    // Whole elements covering the request; a bounce buffer when the request
    // starts or ends inside an element.
    const uint64_t isz = ItemSize(t.dtype);
    const uint64_t first = offset / isz;
    const uint64_t last = (end + isz - 1) / isz;
    const bool aligned = offset % isz == 0 && end % isz == 0;
    std::vector<uint8_t> bounce;
    uint8_t* dst = out.data();
    if (!aligned) {
      bounce.resize(static_cast<size_t>((last - first) * isz));
      dst = bounce.data();
    }
    const std::span<uint8_t> elems(dst, static_cast<size_t>((last - first) * isz));
    if (v.contiguous) {
      ALLOY_RETURN_IF_ERROR(src_->ReadAt(v.data_offset + first * isz, elems));
    } else {
      // The strided region through the byte source's view: zero-copy when
      // mapped, one cached read otherwise (freed by Release of the tensor),
      // so chunked reads of a transposed weight do not re-read it.
      ALLOY_ASSIGN_OR_RETURN(std::span<const uint8_t> region,
                             src_->View(v.data_offset, v.span_bytes));
      Gather(region, t.shape, v.stride, isz, first, last - first, dst);
    }
    if (big_endian_) SwapBytes(dst, elems.size(), t.dtype == DType::kC64 ? 4 : isz);
    if (!aligned) std::memcpy(out.data(), bounce.data() + (offset - first * isz), out.size());
    return Status::OK();
  }

  void Release(const TensorInfo& info, uint64_t offset, uint64_t len) override {
    Result<size_t> found = Locate(info);
    if (!found.ok()) return;
    const size_t idx = *found;
    const TensorInfo& t = tensors_[idx];
    if (offset >= t.nbytes) return;
    len = std::min(len, t.nbytes - offset);
    const bool whole = offset == 0 && len == t.nbytes;
    if (whole) {
      std::lock_guard<std::mutex> lock(owned_mu_);
      owned_.erase(idx);
    }
    // A shared storage's pages (or pread buffers) may back another tensor's
    // live view, so only unshared storages are given back.
    const TensorView& v = views_[idx];
    if (storages_[v.storage].n_users > 1) return;
    if (v.contiguous) {
      src_->Release(v.data_offset + offset, len);
    } else if (whole) {
      src_->Release(v.data_offset, v.span_bytes);
    }
  }

  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const std::vector<std::string>& files() const override { return files_; }

 private:
  // Contiguous little-endian tensors are plain byte ranges of the file.
  bool Direct(size_t idx) const { return views_[idx].contiguous && !big_endian_; }

  Result<size_t> Locate(const TensorInfo& info) const {
    if (!tensors_.empty() && &info >= tensors_.data() &&
        &info < tensors_.data() + tensors_.size()) {
      return static_cast<size_t>(&info - tensors_.data());
    }
    auto it = index_.find(info.name);
    if (it == index_.end()) {
      return Status::InvalidArgument(src_->name() + ": no tensor " + QuotedText(info.name));
    }
    return it->second;
  }

  std::unique_ptr<ByteSource> src_;
  const std::vector<TensorInfo> tensors_;
  const std::vector<TensorView> views_;
  const std::vector<Storage> storages_;
  const bool big_endian_;
  const std::map<std::string, std::string> metadata_;
  const std::vector<std::string> files_;
  std::map<std::string, size_t, std::less<>> index_;
  std::mutex owned_mu_;
  std::unordered_map<size_t, std::unique_ptr<uint8_t[]>> owned_;
};

// Refuses everything that is not a torch.save zip, naming what it is.
Status CheckMagic(const ByteSource& src) {
  uint8_t head[264] = {};
  const size_t n = static_cast<size_t>(std::min<uint64_t>(src.size(), sizeof head));
  ALLOY_RETURN_IF_ERROR(src.ReadAt(0, std::span<uint8_t>(head, n)));
  if (n >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return Status::OK();
  const std::string& name = src.name();
  if (n >= sizeof kLegacyMagic && std::memcmp(head, kLegacyMagic, sizeof kLegacyMagic) == 0) {
    return Status::Unsupported(name + ": legacy PyTorch format (torch.save before torch 1.6, "
                                      "not a zip archive) is not supported; re-save with "
                                      "torch >= 1.6 or convert to safetensors");
  }
  if (n >= 8 && std::memcmp(head, "PYTORCH1", 8) == 0) {
    return Status::Unsupported(name + ": PYTORCH1 preview-release archive is not supported; "
                                      "re-save with torch >= 1.6 or convert to safetensors");
  }
  if (n >= 262 && std::memcmp(head + 257, "ustar", 5) == 0) {
    return Status::Unsupported(name + ": tar-format PyTorch checkpoint (torch < 0.4) is not "
                                      "supported; re-save with torch >= 1.6 or convert to "
                                      "safetensors");
  }
  if (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) {
    return Status::Unsupported(name + ": a bare pickle stream, not a torch.save zip archive; "
                                      "legacy PyTorch files are not supported (re-save with "
                                      "torch >= 1.6 or convert to safetensors)");
  }
  return Status::Corrupt(name + ": not a PyTorch checkpoint: expected a zip archive "
                                "(PK\\x03\\x04), found other bytes");
}

// The top-level directory every entry lives in, the refusal of TorchScript
// archives, and the data.pkl entry.
Result<std::string> CheckLayout(const ByteSource& src, const ZipArchive& zip) {
  auto invalid = [&](const std::string& why) {
    return Status::Corrupt(src.name() + ": invalid archive: " + why);
  };
  if (zip.entries().empty()) return invalid("no entries");
  const std::string& first = zip.entries().front().name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos || slash == 0) {
    return invalid("entry " + QuotedText(first) + " is not inside a top-level directory");
  }
  const std::string prefix = first.substr(0, slash);
  size_t n_pickles = 0;
  for (const ZipEntry& entry : zip.entries()) {
    std::string_view name = entry.name;
    if (name.size() <= prefix.size() + 1 || name.compare(0, prefix.size(), prefix) != 0 ||
        name[prefix.size()] != '/') {
      return invalid("entry " + QuotedText(name) + " is not under the top-level directory " +
                     QuotedText(prefix + "/"));
    }
    const std::string_view rest = name.substr(prefix.size() + 1);
    if (rest == "constants.pkl" || rest.starts_with("code/")) {
      return Status::Unsupported(src.name() + ": TorchScript archive (" + QuotedText(name) +
                                 ") is not supported; save the model's state_dict() with "
                                 "torch.save instead");
    }
    if (rest == "data.pkl" || rest.ends_with("/data.pkl")) ++n_pickles;
  }
  if (zip.Find(prefix + "/data.pkl") == nullptr) {
    return invalid("no " + QuotedText(prefix + "/data.pkl") + " entry");
  }
  if (n_pickles != 1) return invalid(std::to_string(n_pickles) + " data.pkl entries");
  return prefix;
}

Result<bool> ReadBigEndian(const ByteSource& src, const ZipArchive& zip,
                           const std::string& prefix) {
  const ZipEntry* entry = zip.Find(prefix + "/byteorder");
  if (entry == nullptr) return false;  // very old files: little
  ALLOY_ASSIGN_OR_RETURN(std::string order, ReadStoredEntry(src, *entry, kMaxSmallEntryBytes));
  if (order == "little") return false;
  if (order == "big") return true;
  return Status::Corrupt(src.name() + ": unknown byte order " + QuotedText(order) + " in " +
                         QuotedText(entry->name) + " (expected 'little' or 'big')");
}

}  // namespace

Result<std::unique_ptr<TensorSource>> OpenTorch(std::unique_ptr<ByteSource> src) {
  ALLOY_RETURN_IF_ERROR(CheckMagic(*src));
  ALLOY_ASSIGN_OR_RETURN(ZipArchive zip, ZipArchive::Open(*src));
  ALLOY_ASSIGN_OR_RETURN(std::string prefix, CheckLayout(*src, zip));
  ALLOY_ASSIGN_OR_RETURN(bool big_endian, ReadBigEndian(*src, zip, prefix));

  const ZipEntry& pkl = *zip.Find(prefix + "/data.pkl");
  const PickleLimits limits;
  ALLOY_ASSIGN_OR_RETURN(std::string bytes, ReadStoredEntry(*src, pkl, limits.max_bytes));
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<Pickle> pickle,
                         Unpickle(bytes, src->name() + ": " + pkl.name, limits));

  std::vector<TensorInfo> tensors;
  std::vector<TensorView> views;
  std::vector<Storage> storages;
  ALLOY_RETURN_IF_ERROR(
      StateDictParser(*src, zip, prefix).Parse(pickle->root(), &tensors, &views, &storages));
  return std::unique_ptr<TensorSource>(new TorchSource(
      std::move(src), std::move(tensors), std::move(views), std::move(storages), big_endian));
}

Result<std::unique_ptr<TensorSource>> OpenTorchFile(const std::string& path, FileAccess access) {
  ALLOY_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> src, OpenFileSource(path, access));
  return OpenTorch(std::move(src));
}

}  // namespace alloy::formats

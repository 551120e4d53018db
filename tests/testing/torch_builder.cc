#include "tests/testing/torch_builder.h"

#include <cstring>
#include <stdexcept>

#include "formats/zip_reader.h"

namespace alloy::testing {
namespace {

void PutLe(std::string* out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint64_t ClassItemSize(const std::string& cls) {
  if (cls == "DoubleStorage" || cls == "LongStorage" || cls == "ComplexFloatStorage") return 8;
  if (cls == "ComplexDoubleStorage") return 16;
  if (cls == "FloatStorage" || cls == "IntStorage") return 4;
  if (cls == "HalfStorage" || cls == "BFloat16Storage" || cls == "ShortStorage") return 2;
  return 1;  // Char, Byte, Bool, Untyped
}

// Writes torch's memo pattern: the first use of a string or global is
// memoized, later uses are BINGETs.
class MemoWriter {
 public:
  explicit MemoWriter(PickleWriter* w) : w_(*w) {}

  void Global(const std::string& module, const std::string& name) {
    Cached("g:" + module + "\n" + name, [&] { w_.Global(module, name); });
  }
  void String(const std::string& s) {
    Cached("s:" + s, [&] { w_.Unicode(s); });
  }
  // Memoizes whatever is on top of the stack; returns its index.
  uint32_t Put() {
    w_.Put(next_);
    return next_++;
  }
  void OrderedDict() {
    Global("collections", "OrderedDict");
    w_.EmptyTuple().Reduce();
    Put();
  }
  PickleWriter& w() { return w_; }

 private:
  template <typename F>
  void Cached(const std::string& key, F emit) {
    auto it = memo_.find(key);
    if (it != memo_.end()) {
      w_.Get(it->second);
      return;
    }
    emit();
    memo_[key] = Put();
  }

  PickleWriter& w_;
  std::map<std::string, uint32_t> memo_;
  uint32_t next_ = 0;
};

void IntTuple(PickleWriter& w, const std::vector<int64_t>& values) {
  if (values.empty()) {
    w.EmptyTuple();
    return;
  }
  if (values.size() <= 3) {
    for (int64_t v : values) w.Int(v);
    w.TupleN(static_cast<int>(values.size()));
    return;
  }
  w.Mark();
  for (int64_t v : values) w.Int(v);
  w.Tuple();
}

}  // namespace

// ---- PickleWriter ----

PickleWriter& PickleWriter::Proto(uint8_t version) {
  bytes_ += '\x80';
  bytes_ += static_cast<char>(version);
  return *this;
}
PickleWriter& PickleWriter::Global(std::string_view module, std::string_view name) {
  bytes_ += 'c';
  bytes_.append(module);
  bytes_ += '\n';
  bytes_.append(name);
  bytes_ += '\n';
  return *this;
}
PickleWriter& PickleWriter::StackGlobal(std::string_view module, std::string_view name) {
  ShortUnicode(module);
  ShortUnicode(name);
  return Op(0x93);
}
PickleWriter& PickleWriter::Mark() { return Op('('); }
PickleWriter& PickleWriter::EmptyDict() { return Op('}'); }
PickleWriter& PickleWriter::EmptyTuple() { return Op(')'); }
PickleWriter& PickleWriter::EmptyList() { return Op(']'); }
PickleWriter& PickleWriter::Tuple() { return Op('t'); }
PickleWriter& PickleWriter::TupleN(int n) {
  if (n < 1 || n > 3) throw std::invalid_argument("TupleN takes 1..3");
  return Op(static_cast<uint8_t>(0x84 + n));
}
PickleWriter& PickleWriter::Int(int64_t v) {
  if (v >= 0 && v < 256) {
    Op('K');
    PutLe(&bytes_, static_cast<uint64_t>(v), 1);
  } else if (v >= 0 && v < 65536) {
    Op('M');
    PutLe(&bytes_, static_cast<uint64_t>(v), 2);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    Op('J');
    PutLe(&bytes_, static_cast<uint64_t>(v), 4);
  } else {
    Op(0x8A);
    bytes_ += '\x08';
    PutLe(&bytes_, static_cast<uint64_t>(v), 8);
  }
  return *this;
}
PickleWriter& PickleWriter::Unicode(std::string_view s) {
  Op('X');
  PutLe(&bytes_, s.size(), 4);
  bytes_.append(s);
  return *this;
}
PickleWriter& PickleWriter::ShortUnicode(std::string_view s) {
  Op(0x8C);
  PutLe(&bytes_, s.size(), 1);
  bytes_.append(s);
  return *this;
}
PickleWriter& PickleWriter::None() { return Op('N'); }
PickleWriter& PickleWriter::Bool(bool v) { return Op(v ? 0x88 : 0x89); }
PickleWriter& PickleWriter::Put(uint32_t index) {
  if (index < 256) {
    Op('q');
    PutLe(&bytes_, index, 1);
  } else {
    Op('r');
    PutLe(&bytes_, index, 4);
  }
  return *this;
}
PickleWriter& PickleWriter::Get(uint32_t index) {
  if (index < 256) {
    Op('h');
    PutLe(&bytes_, index, 1);
  } else {
    Op('j');
    PutLe(&bytes_, index, 4);
  }
  return *this;
}
PickleWriter& PickleWriter::BinPersId() { return Op('Q'); }
PickleWriter& PickleWriter::Reduce() { return Op('R'); }
PickleWriter& PickleWriter::SetItem() { return Op('s'); }
PickleWriter& PickleWriter::SetItems() { return Op('u'); }
PickleWriter& PickleWriter::Append() { return Op('a'); }
PickleWriter& PickleWriter::Build() { return Op('b'); }
PickleWriter& PickleWriter::Stop() { return Op('.'); }
PickleWriter& PickleWriter::Op(uint8_t op) {
  bytes_ += static_cast<char>(op);
  return *this;
}
PickleWriter& PickleWriter::Raw(std::string_view bytes) {
  bytes_.append(bytes);
  return *this;
}

std::string MaliciousPickle(std::string_view module, std::string_view name, bool stack_global) {
  PickleWriter w;
  w.Proto(stack_global ? 4 : 2);
  if (stack_global) {
    w.StackGlobal(module, name);
  } else {
    w.Global(module, name);
  }
  return w.Unicode("echo pwned").TupleN(1).Reduce().Stop().bytes();
}

// ---- zip ----

std::string BuildZip(const std::vector<ZipEntrySpec>& entries, const ZipOptions& options) {
  constexpr uint16_t kFlags = 0x0808;  // data descriptor + UTF-8 names, like torch
  std::string out;
  std::vector<uint64_t> offsets;
  for (const ZipEntrySpec& e : entries) {
    const std::string& local_name = e.local_name ? *e.local_name : e.name;
    offsets.push_back(out.size());
    PutLe(&out, 0x04034b50, 4);
    PutLe(&out, 0, 2);  // version needed
    PutLe(&out, kFlags, 2);
    PutLe(&out, e.method, 2);
    PutLe(&out, 0, 4);   // time, date
    out.append(12, '\0');  // crc and sizes live in the data descriptor
    PutLe(&out, local_name.size(), 2);
    // The FB extra field pads the payload start to a multiple of 64.
    const uint64_t header_end = out.size() + 2 + local_name.size() + 4;
    const uint64_t pad = (64 - header_end % 64) % 64;
    PutLe(&out, 4 + pad, 2);
    out += local_name;
    out += "FB";
    PutLe(&out, pad, 2);
    out.append(static_cast<size_t>(pad), 'Z');
    out += e.payload;
    PutLe(&out, 0x08074b50, 4);
    PutLe(&out, options.record_crc ? formats::Crc32(e.payload) : 0, 4);
    PutLe(&out, e.payload.size(), 4);
    PutLe(&out, e.uncompressed_size.value_or(e.payload.size()), 4);
  }
  const uint64_t cd_offset = out.size();
  for (size_t i = 0; i < entries.size(); ++i) {
    const ZipEntrySpec& e = entries[i];
    PutLe(&out, 0x02014b50, 4);
    PutLe(&out, 0x031e, 2);  // made by
    PutLe(&out, 0x2d, 2);    // needed
    PutLe(&out, kFlags, 2);
    PutLe(&out, e.method, 2);
    PutLe(&out, 0, 4);
    PutLe(&out, options.record_crc ? formats::Crc32(e.payload) : 0, 4);
    PutLe(&out, e.payload.size(), 4);
    PutLe(&out, e.uncompressed_size.value_or(e.payload.size()), 4);
    PutLe(&out, e.name.size(), 2);
    PutLe(&out, 0, 2);   // extra
    PutLe(&out, 0, 2);   // comment
    PutLe(&out, 0, 2);   // disk
    PutLe(&out, 0, 2);   // internal attributes
    PutLe(&out, 0, 4);   // external attributes
    PutLe(&out, offsets[i], 4);
    out += e.name;
  }
  const uint64_t cd_size = out.size() - cd_offset;
  if (options.zip64_end) {
    const uint64_t zip64_offset = out.size();
    PutLe(&out, 0x06064b50, 4);
    PutLe(&out, 44, 8);
    PutLe(&out, 0x031e, 2);
    PutLe(&out, 0x2d, 2);
    PutLe(&out, 0, 8);  // disks
    PutLe(&out, entries.size(), 8);
    PutLe(&out, entries.size(), 8);
    PutLe(&out, cd_size, 8);
    PutLe(&out, cd_offset, 8);
    PutLe(&out, 0x07064b50, 4);
    PutLe(&out, 0, 4);
    PutLe(&out, zip64_offset, 8);
    PutLe(&out, 1, 4);
  }
  PutLe(&out, 0x06054b50, 4);
  PutLe(&out, 0, 4);  // disks
  PutLe(&out, entries.size(), 2);
  PutLe(&out, entries.size(), 2);
  PutLe(&out, cd_size, 4);
  PutLe(&out, cd_offset, 4);
  PutLe(&out, 0, 2);
  out += options.trailing;
  return out;
}

// ---- TorchBuilder ----

TorchBuilder& TorchBuilder::Prefix(std::string prefix) {
  prefix_ = std::move(prefix);
  return *this;
}
TorchBuilder& TorchBuilder::Storage(std::string key, std::string bytes) {
  storages_.emplace_back(std::move(key), std::move(bytes));
  return *this;
}
TorchBuilder& TorchBuilder::Add(TorchTensor t) {
  tensors_.push_back(std::move(t));
  return *this;
}
TorchBuilder& TorchBuilder::Wrap(std::string key) {
  wrap_ = std::move(key);
  return *this;
}
TorchBuilder& TorchBuilder::ByteOrder(std::optional<std::string> order) {
  byteorder_ = std::move(order);
  return *this;
}
TorchBuilder& TorchBuilder::ModuleMetadata(bool on) {
  metadata_ = on;
  return *this;
}
TorchBuilder& TorchBuilder::Pickle(std::string raw) {
  pickle_ = std::move(raw);
  return *this;
}
TorchBuilder& TorchBuilder::CompressStorage(std::string key, uint64_t claimed_size) {
  compressed_[std::move(key)] = claimed_size;
  return *this;
}

std::string TorchBuilder::PickleBytes() const {
  if (pickle_) return *pickle_;
  PickleWriter w;
  MemoWriter m(&w);
  w.Proto(2);
  if (!wrap_.empty()) {
    w.EmptyDict();
    m.Put();
    m.String(wrap_);
  }
  m.OrderedDict();
  std::map<std::string, uint32_t> tensor_memo;
  w.Mark();
  for (const TorchTensor& t : tensors_) {
    m.String(t.name);
    if (!t.raw_value.empty()) {
      w.Raw(t.raw_value);
      continue;
    }
    if (!t.alias_of.empty()) {
      w.Get(tensor_memo.at(t.alias_of));
      continue;
    }
    if (t.parameter) {
      m.Global("torch._utils", "_rebuild_parameter");
      w.Mark();
    }
    m.Global("torch._utils", t.v3_dtype.empty() ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3");
    w.Mark();
    if (!t.raw_pid.empty()) {
      w.Raw(t.raw_pid);
    } else {
      int64_t numel = t.storage_numel;
      if (numel < 0) {
        numel = 0;
        for (const auto& [key, bytes] : storages_) {
          if (key == t.storage_key) {
            numel = static_cast<int64_t>(bytes.size() / ClassItemSize(t.storage_class));
          }
        }
      }
      w.Mark();
      m.String("storage");
      m.Global("torch", t.storage_class);
      m.String(t.storage_key);
      m.String("cpu");
      w.Int(numel);
      w.Tuple();
      m.Put();
    }
    w.BinPersId();
    w.Int(t.offset);
    IntTuple(w, t.size);
    m.Put();
    std::vector<int64_t> stride = t.stride;
    if (stride.empty() && !t.size.empty()) {
      stride.assign(t.size.size(), 1);
      for (size_t d = t.size.size() - 1; d-- > 0;) stride[d] = stride[d + 1] * t.size[d + 1];
    }
    IntTuple(w, stride);
    m.Put();
    w.Bool(false);
    m.OrderedDict();
    if (!t.v3_dtype.empty()) m.Global("torch", t.v3_dtype);
    w.Tuple();
    m.Put();
    w.Reduce();
    if (t.parameter) {
      w.Bool(true);
      m.OrderedDict();
      w.Tuple().Reduce();
    }
    tensor_memo[t.name] = m.Put();
  }
  w.SetItems();
  if (metadata_) {
    // {'_metadata': OrderedDict({'': {'version': 1}})}, as state_dict() leaves it.
    w.EmptyDict();
    m.Put();
    m.String("_metadata");
    m.OrderedDict();
    m.String("");
    w.EmptyDict();
    m.Put();
    m.String("version");
    w.Int(1).SetItem().SetItem().SetItem().Build();
  }
  if (!wrap_.empty()) w.SetItem();
  w.Stop();
  return w.bytes();
}

std::vector<ZipEntrySpec> TorchBuilder::Entries() const {
  std::vector<ZipEntrySpec> entries;
  entries.push_back({prefix_ + "/data.pkl", PickleBytes()});
  if (byteorder_) entries.push_back({prefix_ + "/byteorder", *byteorder_});
  for (const auto& [key, bytes] : storages_) {
    ZipEntrySpec e{prefix_ + "/data/" + key, bytes};
    auto it = compressed_.find(key);
    if (it != compressed_.end()) {
      e.method = 8;
      e.uncompressed_size = it->second;
    }
    entries.push_back(std::move(e));
  }
  entries.push_back({prefix_ + "/version", "3\n"});
  return entries;
}

std::string TorchBuilder::Build(const ZipOptions& options) const {
  return BuildZip(Entries(), options);
}

std::string U16Bytes(std::initializer_list<uint16_t> values) {
  std::string out;
  for (uint16_t v : values) PutLe(&out, v, 2);
  return out;
}

std::string I64Bytes(std::initializer_list<int64_t> values) {
  std::string out;
  for (int64_t v : values) PutLe(&out, static_cast<uint64_t>(v), 8);
  return out;
}

}  // namespace alloy::testing

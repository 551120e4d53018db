// Test helpers that emit torch.save bytes directly: the pickle opcodes
// torch.save writes for a state dict, and the zip layout of PyTorch's
// PyTorchStreamWriter (STORED entries, payloads aligned to 64 bytes by an
// `FB` local extra field, data descriptors, ZIP64 end records), with knobs
// to break one rule at a time (checkpoint-formats.md §3 and §7 cases 37-48).
//
// Thread safety: plain values; not for concurrent mutation.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace alloy::testing {

// Emits pickle opcodes one at a time.
class PickleWriter {
 public:
  PickleWriter& Proto(uint8_t version = 2);
  PickleWriter& Global(std::string_view module, std::string_view name);
  // SHORT_BINUNICODE module, SHORT_BINUNICODE name, STACK_GLOBAL.
  PickleWriter& StackGlobal(std::string_view module, std::string_view name);
  PickleWriter& Mark();
  PickleWriter& EmptyDict();
  PickleWriter& EmptyTuple();
  PickleWriter& EmptyList();
  PickleWriter& Tuple();              // TUPLE (everything since MARK)
  PickleWriter& TupleN(int n);        // TUPLE1 / TUPLE2 / TUPLE3
  PickleWriter& Int(int64_t v);       // the smallest of BININT1, BININT2, BININT, LONG1
  PickleWriter& Unicode(std::string_view s);       // BINUNICODE
  PickleWriter& ShortUnicode(std::string_view s);  // SHORT_BINUNICODE
  PickleWriter& None();
  PickleWriter& Bool(bool v);         // NEWTRUE / NEWFALSE
  PickleWriter& Put(uint32_t index);  // BINPUT, or LONG_BINPUT above 255
  PickleWriter& Get(uint32_t index);  // BINGET, or LONG_BINGET above 255
  PickleWriter& BinPersId();
  PickleWriter& Reduce();
  PickleWriter& SetItem();
  PickleWriter& SetItems();
  PickleWriter& Append();
  PickleWriter& Build();
  PickleWriter& Stop();
  PickleWriter& Op(uint8_t op);
  PickleWriter& Raw(std::string_view bytes);

  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// The classic exploit: GLOBAL (or STACK_GLOBAL) module.name, called with
// ('echo pwned',) through REDUCE.
std::string MaliciousPickle(std::string_view module, std::string_view name, bool stack_global);

// One zip entry as PyTorchStreamWriter writes it, plus corruption knobs.
struct ZipEntrySpec {
  std::string name{};     // full name, e.g. "archive/data/0"
  std::string payload{};
  uint16_t method = 0;  // 8 = DEFLATE (the payload is not actually compressed)
  std::optional<uint64_t> uncompressed_size{};  // overrides the declared size
  std::optional<std::string> local_name{};      // a different name in the local header
};

struct ZipOptions {
  bool zip64_end = true;       // ZIP64 end record + locator before the EOCD (torch does)
  std::string trailing{};      // bytes after the EOCD
  // false: every CRC-32 is 0, which the reader takes as "not recorded"
  // (zip_reader.h); the fuzz seeds use it so a mutated entry still gets read.
  bool record_crc = true;
};

std::string BuildZip(const std::vector<ZipEntrySpec>& entries, const ZipOptions& options = {});

// One state-dict entry. Storage bytes are added with TorchBuilder::Storage.
struct TorchTensor {
  std::string name{};
  std::string storage_key = "0";
  std::string storage_class = "FloatStorage";  // torch.<class>
  int64_t storage_numel = -1;                  // pid numel; -1: storage bytes / itemsize
  int64_t offset = 0;                          // elements
  std::vector<int64_t> size{};
  std::vector<int64_t> stride{};               // empty: C-contiguous strides of `size`
  std::string v3_dtype{};   // non-empty: _rebuild_tensor_v3 with torch.<v3_dtype>
  bool parameter = false;   // wrapped in torch._utils._rebuild_parameter
  std::string alias_of{};   // BINGET the (memoized) tensor of this earlier key
  std::string raw_pid{};    // pickle bytes replacing the pid tuple before BINPERSID
  std::string raw_value{};  // pickle bytes replacing the whole value
};

class TorchBuilder {
 public:
  TorchBuilder& Prefix(std::string prefix);  // default "archive"
  TorchBuilder& Storage(std::string key, std::string bytes);
  TorchBuilder& Add(TorchTensor t);
  // {key: state_dict} instead of the bare state dict.
  TorchBuilder& Wrap(std::string key);
  // The byteorder entry; nullopt leaves it out. Default "little".
  TorchBuilder& ByteOrder(std::optional<std::string> order);
  // Emits the `_metadata` BUILD that nn.Module.state_dict() carries (default on).
  TorchBuilder& ModuleMetadata(bool on);
  // Replaces data.pkl.
  TorchBuilder& Pickle(std::string raw);
  // Stores `key`'s entry compressed (method 8) claiming `claimed_size` bytes.
  TorchBuilder& CompressStorage(std::string key, uint64_t claimed_size);

  // data.pkl as torch.save writes it.
  std::string PickleBytes() const;
  // The entries in torch's order: data.pkl, byteorder, data/<key>..., version.
  std::vector<ZipEntrySpec> Entries() const;
  std::string Build(const ZipOptions& options = {}) const;

 private:
  std::string prefix_ = "archive";
  std::vector<std::pair<std::string, std::string>> storages_;
  std::vector<TorchTensor> tensors_;
  std::string wrap_;
  std::optional<std::string> byteorder_ = "little";
  bool metadata_ = true;
  std::optional<std::string> pickle_;
  std::map<std::string, uint64_t> compressed_;
};

// Little-endian encodings of raw element bits.
std::string U16Bytes(std::initializer_list<uint16_t> values);
std::string I64Bytes(std::initializer_list<int64_t> values);

}  // namespace alloy::testing

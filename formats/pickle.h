// A safe, symbolic unpickler for the `data.pkl` of torch.save archives
// (checkpoint-formats.md §3.3, §3.4, §3.7). Nothing in the stream is ever
// executed: GLOBAL/STACK_GLOBAL resolve only names on a fixed allow-list
// (tensor rebuilds, storage and dtype markers, OrderedDict, _codecs.encode)
// into inert kGlobal values, REDUCE of a tensor rebuild becomes an inert kCall
// value (candle's model), and every other global is refused as
// "disallowed global module.name (possible malicious pickle)".
//
// Supported opcodes: protocol 2 as torch.save emits it (PROTO, GLOBAL,
// EMPTY_DICT/TUPLE/LIST, MARK, TUPLE/1/2/3, BININT/1/2, LONG1, BINFLOAT,
// BINUNICODE, SHORT_BINSTRING, NONE, NEWTRUE/NEWFALSE, BINPUT/LONG_BINPUT,
// BINGET/LONG_BINGET, BINPERSID, REDUCE, NEWOBJ, SETITEM/S, APPEND/S, BUILD,
// STOP) plus FRAME, MEMOIZE, SHORT_BINUNICODE, BINUNICODE8, STACK_GLOBAL,
// SHORT_BINBYTES, BINBYTES and BINBYTES8. Every other opcode is refused by name.
//
// Values live in an arena owned by the Pickle and refer to each other by
// pointer: a memo GET pushes the same node again (no copy), so nested tuples
// of memo references cost linear time and memory, and destruction is flat.
// Object count, container slots, memo entries, stack size and mark depth
// are capped (PickleLimits).
//
// Thread safety: a Pickle is immutable after Unpickle() returns.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/status.h"

namespace alloy::formats {

enum class PickleKind : uint8_t {
  kNone,
  kBool,
  kInt,            // fits in int64
  kBigInt,         // a LONG1 that does not fit in int64 (value not kept)
  kFloat,
  kString,         // valid UTF-8
  kBytes,
  kTuple,
  kList,
  kDict,           // dict or OrderedDict, insertion order kept
  kGlobal,         // an allow-listed module.name
  kCall,           // an allow-listed tensor rebuild applied to an args tuple
  kPersistentId,   // BINPERSID of a pid
};

struct PickleValue {
  PickleKind kind = PickleKind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;  // kString, kBytes; kGlobal: the module
  std::string name;  // kGlobal: the name
  // kTuple/kList: elements; kDict: key0, value0, key1, value1, ...;
  // kCall: callable (kGlobal), args (kTuple); kPersistentId: the pid.
  std::vector<const PickleValue*> items;

  bool IsGlobal(std::string_view module, std::string_view global_name) const {
    return kind == PickleKind::kGlobal && text == module && name == global_name;
  }
};

// "tuple", "dict", "global torch.FloatStorage", ... for messages.
std::string DescribePickleValue(const PickleValue& v);

// True when module.name is on the allow-list of checkpoint-formats.md §3.4.
bool IsAllowedPickleGlobal(std::string_view module, std::string_view name);

struct PickleLimits {
  uint64_t max_bytes = uint64_t{256} << 20;
  uint64_t max_objects = uint64_t{1} << 23;
  uint64_t max_references = uint64_t{1} << 25;  // container slots (tuple/list/dict items)
  uint64_t max_memo = uint64_t{1} << 22;
  uint64_t max_stack = uint64_t{1} << 20;
  uint64_t max_mark_depth = 4096;
};

// The values of one unpickled stream. root() is valid while the Pickle lives.
class Pickle {
 public:
  const PickleValue& root() const { return *root_; }
  size_t object_count() const { return arena_.size(); }

 private:
  friend class Unpickler;
  std::deque<PickleValue> arena_;  // stable addresses
  const PickleValue* root_ = nullptr;
};

// Unpickles `bytes`; `name` (e.g. "m.bin: archive/data.pkl") prefixes every
// message. Fails with kUnsupported for a disallowed global ("disallowed global
// os.system (possible malicious pickle)"), a refused opcode ("unsupported
// opcode INST (0x69)") or a protocol above 5; with kCorrupt ("corrupt pickle:
// ...", naming the byte offset) for stack underflow, an undefined memo index,
// an unclosed MARK, a missing STOP, lengths past the end, invalid UTF-8,
// REDUCE/BUILD/SETITEM on the wrong kind of object, or a cap exceeded.
// Bytes after STOP are ignored.
Result<std::unique_ptr<Pickle>> Unpickle(std::string_view bytes, const std::string& name,
                                         const PickleLimits& limits = PickleLimits());

}  // namespace alloy::formats

#include "formats/pickle.h"

#include <array>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace alloy::formats {
namespace {

// Opcode bytes (Python's pickletools names).
enum Op : uint8_t {
  kMark = 0x28,
  kStop = 0x2E,
  kEmptyTuple = 0x29,
  kBinBytes = 0x42,
  kShortBinBytes = 0x43,
  kBinFloat = 0x47,
  kBinInt = 0x4A,
  kBinInt1 = 0x4B,
  kBinInt2 = 0x4D,
  kNone = 0x4E,
  kBinPersId = 0x51,
  kReduce = 0x52,
  kShortBinString = 0x55,
  kBinUnicode = 0x58,
  kEmptyList = 0x5D,
  kAppend = 0x61,
  kBuild = 0x62,
  kGlobal = 0x63,
  kAppends = 0x65,
  kBinGet = 0x68,
  kLongBinGet = 0x6A,
  kBinPut = 0x71,
  kLongBinPut = 0x72,
  kSetItem = 0x73,
  kTuple = 0x74,
  kSetItems = 0x75,
  kEmptyDict = 0x7D,
  kProto = 0x80,
  kNewObj = 0x81,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8A,
  kShortBinUnicode = 0x8C,
  kBinUnicode8 = 0x8D,
  kBinBytes8 = 0x8E,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
};

// Names of the opcodes alloy refuses, so the message says what was found.
const char* RefusedOpcodeName(uint8_t op) {
  switch (op) {
    case 0x30: return "POP";
    case 0x31: return "POP_MARK";
    case 0x32: return "DUP";
    case 0x46: return "FLOAT";
    case 0x49: return "INT";
    case 0x4C: return "LONG";
    case 0x50: return "PERSID";
    case 0x53: return "STRING";
    case 0x54: return "BINSTRING";
    case 0x56: return "UNICODE";
    case 0x64: return "DICT";
    case 0x67: return "GET";
    case 0x69: return "INST";
    case 0x6C: return "LIST";
    case 0x6F: return "OBJ";
    case 0x70: return "PUT";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x8B: return "LONG4";
    case 0x8F: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

constexpr size_t kMaxGlobalLine = 1024;

// Decodes one UTF-8 sequence at s[*pos]; false on malformed input
// (overlong forms, surrogates and code points above U+10FFFF included).
bool DecodeUtf8(std::string_view s, size_t* pos, uint32_t* cp) {
  const auto b0 = static_cast<uint8_t>(s[*pos]);
  size_t len = 0;
  uint32_t min = 0;
  if (b0 < 0x80) {
    *cp = b0;
    *pos += 1;
    return true;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, min = 0x80, *cp = b0 & 0x1Fu;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, min = 0x800, *cp = b0 & 0x0Fu;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, min = 0x10000, *cp = b0 & 0x07u;
  } else {
    return false;
  }
  if (s.size() - *pos < len) return false;
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<uint8_t>(s[*pos + i]);
    if ((b & 0xC0) != 0x80) return false;
    *cp = (*cp << 6) | (b & 0x3Fu);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return false;
  *pos += len;
  return true;
}

bool ValidUtf8(std::string_view s) {
  size_t pos = 0;
  uint32_t cp = 0;
  while (pos < s.size()) {
    if (!DecodeUtf8(s, &pos, &cp)) return false;
  }
  return true;
}


std::string Hex2(uint8_t op) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = "0x";
  out += kHex[op >> 4];
  out += kHex[op & 15];
  return out;
}

bool IsTensorRebuild(const PickleValue& g) {
  return g.IsGlobal("torch._utils", "_rebuild_tensor_v2") ||
         g.IsGlobal("torch._utils", "_rebuild_tensor_v3") ||
         g.IsGlobal("torch._utils", "_rebuild_parameter") ||
         g.IsGlobal("torch._utils", "_rebuild_parameter_with_state") ||
         g.IsGlobal("torch._tensor", "_rebuild_from_type_v2");
}

}  // namespace

std::string DescribePickleValue(const PickleValue& v) {
  switch (v.kind) {
    case PickleKind::kNone: return "None";
    case PickleKind::kBool: return v.boolean ? "True" : "False";
    case PickleKind::kInt: return "int " + std::to_string(v.integer);
    case PickleKind::kBigInt: return "int too large for 64 bits";
    case PickleKind::kFloat: return "float";
    case PickleKind::kString: return "string '" + PrintableText(v.text) + "'";
    case PickleKind::kBytes: return "bytes";
    case PickleKind::kTuple: return "tuple of " + std::to_string(v.items.size());
    case PickleKind::kList: return "list";
    case PickleKind::kDict: return "dict";
    case PickleKind::kGlobal: return "global " + PrintableText(v.text) + "." + PrintableText(v.name);
    case PickleKind::kCall: return "call of " + DescribePickleValue(*v.items[0]);
    case PickleKind::kPersistentId: return "persistent id";
  }
  return "unknown";
}

bool IsAllowedPickleGlobal(std::string_view module, std::string_view name) {
  static constexpr std::array<std::string_view, 4> kUtils = {
      "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
      "_rebuild_parameter_with_state"};
  // Storage classes, the byte storage, type markers and dtype names.
  static constexpr std::array<std::string_view, 45> kTorch = {
      "DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage",
      "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
      "ComplexFloatStorage", "ComplexDoubleStorage", "UntypedStorage", "Tensor",
      "float64", "double", "float32", "float", "float16", "half", "bfloat16", "int64", "long",
      "int32", "int", "int16", "short", "int8", "uint8", "bool", "complex64", "cfloat",
      "complex128", "cdouble", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
      "float8_e5m2fnuz", "float8_e8m0fnu", "uint16", "uint32", "uint64", "complex32",
      "chalf", "float4_e2m1fn_x2"};
  auto in = [&](const auto& list) {
    for (std::string_view n : list) {
      if (n == name) return true;
    }
    return false;
  };
  if (module == "collections") return name == "OrderedDict";
  if (module == "torch._utils") return in(kUtils);
  if (module == "torch._tensor") return name == "_rebuild_from_type_v2";
  if (module == "torch.nn.parameter") return name == "Parameter";
  if (module == "torch") return in(kTorch);
  if (module == "_codecs") return name == "encode";
  return false;
}

class Unpickler {
 public:
  Unpickler(std::string_view bytes, const std::string& name, const PickleLimits& limits)
      : in_(bytes), name_(name), limits_(limits), pickle_(new Pickle()) {}

  Result<std::unique_ptr<Pickle>> Run() {
    if (in_.size() > limits_.max_bytes) {
      return Status::Corrupt(name_ + ": pickle of " + std::to_string(in_.size()) +
                             " bytes exceeds the limit of " + std::to_string(limits_.max_bytes));
    }
    while (pos_ < in_.size()) {
      op_pos_ = pos_;
      const auto op = static_cast<uint8_t>(in_[pos_++]);
      if (op == kStop) {
        ALLOY_RETURN_IF_ERROR(Stop());
        return std::move(pickle_);
      }
      ALLOY_RETURN_IF_ERROR(Step(op));
    }
    return Corrupt("missing STOP: the stream ends after " + std::to_string(in_.size()) + " bytes");
  }

 private:
  Status Corrupt(const std::string& msg) const {
    return Status::Corrupt(name_ + ": corrupt pickle at byte " + std::to_string(op_pos_) + ": " +
                           msg);
  }
  Status Refuse(const std::string& msg) const {
    return Status::Unsupported(name_ + ": " + msg + " at pickle byte " + std::to_string(op_pos_));
  }

  Status Step(uint8_t op) {
    switch (op) {
      case kProto: {
        uint8_t version = 0;
        ALLOY_RETURN_IF_ERROR(ReadU8(&version));
        if (version > 5) return Refuse("pickle protocol " + std::to_string(version));
        return Status::OK();
      }
      case kFrame: {
        uint64_t len = 0;
        ALLOY_RETURN_IF_ERROR(ReadLe(8, &len));
        if (len > in_.size() - pos_) return Corrupt("FRAME length past the end of the stream");
        return Status::OK();
      }
      case kGlobal: return GlobalOp();
      case kStackGlobal: return StackGlobalOp();
      case kMark:
        if (marks_.size() >= limits_.max_mark_depth) return Corrupt("MARK depth limit exceeded");
        marks_.push_back(stack_.size());
        return Status::OK();
      case kEmptyTuple: return PushNew(PickleKind::kTuple);
      case kEmptyList: return PushNew(PickleKind::kList);
      case kEmptyDict: return PushNew(PickleKind::kDict);
      case kTuple: return TupleFromMark();
      case kTuple1: return TupleOf(1);
      case kTuple2: return TupleOf(2);
      case kTuple3: return TupleOf(3);
      case kBinInt1: return IntOp(1, false);
      case kBinInt2: return IntOp(2, false);
      case kBinInt: return IntOp(4, true);
      case kLong1: return Long1();
      case kBinFloat: return FloatOp();
      case kBinUnicode: return TextOp(4, PickleKind::kString);
      case kShortBinUnicode: return TextOp(1, PickleKind::kString);
      case kBinUnicode8: return TextOp(8, PickleKind::kString);
      case kShortBinString: return TextOp(1, PickleKind::kBytes);
      case kShortBinBytes: return TextOp(1, PickleKind::kBytes);
      case kBinBytes: return TextOp(4, PickleKind::kBytes);
      case kBinBytes8: return TextOp(8, PickleKind::kBytes);
      case kNone: return Push(Constant(&none_, PickleKind::kNone, false));
      case kNewTrue: return Push(Constant(&true_, PickleKind::kBool, true));
      case kNewFalse: return Push(Constant(&false_, PickleKind::kBool, false));
      case kBinPut: return PutOp(1);
      case kLongBinPut: return PutOp(4);
      case kMemoize: return Memoize(memo_.size(), "MEMOIZE");
      case kBinGet: return GetOp(1);
      case kLongBinGet: return GetOp(4);
      case kBinPersId: {
        PickleValue* pid = nullptr;
        ALLOY_RETURN_IF_ERROR(Pop("BINPERSID", &pid));
        ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(PickleKind::kPersistentId));
        v->items.push_back(pid);
        return Push(v);
      }
      case kReduce: return ReduceOp();
      case kNewObj: return NewObjOp();
      case kBuild: return BuildOp();
      case kSetItem: return SetItemOp();
      case kSetItems: return SetItemsOp();
      case kAppend: return AppendOp();
      case kAppends: return AppendsOp();
      default: break;
    }
    if (const char* refused = RefusedOpcodeName(op)) {
      return Refuse("unsupported opcode " + std::string(refused) + " (" + Hex2(op) + ")");
    }
    return Refuse("unsupported opcode: unknown byte " + Hex2(op));
  }

  // ---- reading the stream ----

  Status ReadU8(uint8_t* out) {
    if (pos_ >= in_.size()) return Corrupt("truncated operand");
    *out = static_cast<uint8_t>(in_[pos_++]);
    return Status::OK();
  }
  Status ReadLe(size_t n, uint64_t* out) {
    if (in_.size() - pos_ < n) return Corrupt("truncated operand");
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | static_cast<uint8_t>(in_[pos_ + i]);
    pos_ += n;
    *out = v;
    return Status::OK();
  }
  Status ReadBytes(uint64_t n, std::string_view* out) {
    if (n > in_.size() - pos_) {
      return Corrupt("length " + std::to_string(n) + " runs past the end of the stream (" +
                     std::to_string(in_.size() - pos_) + " bytes left)");
    }
    *out = in_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return Status::OK();
  }
  Status ReadLine(std::string_view* out) {
    const size_t end = in_.find('\n', pos_);
    if (end == std::string_view::npos) return Corrupt("GLOBAL operand without a newline");
    if (end - pos_ > kMaxGlobalLine) return Corrupt("GLOBAL operand longer than 1024 bytes");
    *out = in_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return Status::OK();
  }

  // ---- values and the stack ----

  Result<PickleValue*> New(PickleKind kind) {
    if (pickle_->arena_.size() >= limits_.max_objects) {
      return Corrupt("more than " + std::to_string(limits_.max_objects) + " objects");
    }
    PickleValue& v = pickle_->arena_.emplace_back();
    v.kind = kind;
    return &v;
  }
  // None/True/False are shared: nothing ever mutates them.
  PickleValue* Constant(PickleValue** slot, PickleKind kind, bool value) {
    if (*slot == nullptr) {
      *slot = &pickle_->arena_.emplace_back();
      (*slot)->kind = kind;
      (*slot)->boolean = value;
    }
    return *slot;
  }
  // Containers hold pointers, so memo references can fill them without new
  // objects; their slots are capped separately.
  Status AddRefs(size_t n) {
    refs_ += n;
    if (refs_ > limits_.max_references) {
      return Corrupt("more than " + std::to_string(limits_.max_references) +
                     " container items");
    }
    return Status::OK();
  }
  Status Push(PickleValue* v) {
    if (stack_.size() >= limits_.max_stack) return Corrupt("stack size limit exceeded");
    stack_.push_back(v);
    return Status::OK();
  }
  Status PushNew(PickleKind kind) {
    ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(kind));
    return Push(v);
  }
  size_t FrameBase() const { return marks_.empty() ? 0 : marks_.back(); }
  Status Pop(const char* opname, PickleValue** out) {
    if (stack_.size() <= FrameBase()) return Corrupt(std::string("stack underflow in ") + opname);
    *out = stack_.back();
    stack_.pop_back();
    return Status::OK();
  }
  Status Top(const char* opname, PickleValue** out) {
    if (stack_.size() <= FrameBase()) return Corrupt(std::string("stack underflow in ") + opname);
    *out = stack_.back();
    return Status::OK();
  }
  // Pops everything above the last MARK (and the mark) into `items`.
  Status PopMark(const char* opname, std::vector<const PickleValue*>* items) {
    if (marks_.empty()) return Corrupt(std::string(opname) + " without a MARK");
    const size_t base = marks_.back();
    marks_.pop_back();
    items->assign(stack_.begin() + static_cast<std::ptrdiff_t>(base), stack_.end());
    stack_.resize(base);
    return Status::OK();
  }

  // ---- opcodes ----

  Status IntOp(size_t n, bool is_signed) {
    uint64_t raw = 0;
    ALLOY_RETURN_IF_ERROR(ReadLe(n, &raw));
    ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(PickleKind::kInt));
    v->integer = is_signed ? static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(raw)))
                           : static_cast<int64_t>(raw);
    return Push(v);
  }

  // LONG1: n bytes of two's complement, little-endian. Up to 8 bytes fit.
  Status Long1() {
    uint8_t n = 0;
    ALLOY_RETURN_IF_ERROR(ReadU8(&n));
    std::string_view raw;
    ALLOY_RETURN_IF_ERROR(ReadBytes(n, &raw));
    if (n > 8) {
      // Sign-extension bytes are harmless; anything else is a big int.
      const auto sign = static_cast<uint8_t>(raw[7] & 0x80 ? 0xFF : 0x00);
      bool fits = true;
      for (size_t i = 8; i < n; ++i) fits &= static_cast<uint8_t>(raw[i]) == sign;
      if (!fits) return PushNew(PickleKind::kBigInt);
      raw = raw.substr(0, 8);
    }
    uint64_t u = 0;
    for (size_t i = raw.size(); i-- > 0;) u = (u << 8) | static_cast<uint8_t>(raw[i]);
    if (!raw.empty() && raw.size() < 8 && (static_cast<uint8_t>(raw.back()) & 0x80)) {
      u |= ~uint64_t{0} << (8 * raw.size());  // sign-extend
    }
    ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(PickleKind::kInt));
    v->integer = static_cast<int64_t>(u);
    return Push(v);
  }

  Status FloatOp() {
    std::string_view raw;
    ALLOY_RETURN_IF_ERROR(ReadBytes(8, &raw));
    uint64_t bits = 0;
    for (char c : raw) bits = (bits << 8) | static_cast<uint8_t>(c);  // big-endian
    ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(PickleKind::kFloat));
    std::memcpy(&v->real, &bits, sizeof bits);
    return Push(v);
  }

  Status TextOp(size_t len_bytes, PickleKind kind) {
    uint64_t len = 0;
    ALLOY_RETURN_IF_ERROR(ReadLe(len_bytes, &len));
    std::string_view raw;
    ALLOY_RETURN_IF_ERROR(ReadBytes(len, &raw));
    if (kind == PickleKind::kString && !ValidUtf8(raw)) return Corrupt("invalid UTF-8 in string");
    ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(kind));
    v->text.assign(raw);
    return Push(v);
  }

  Status PushGlobal(std::string_view module, std::string_view name, const char* via) {
    if (!IsAllowedPickleGlobal(module, name)) {
      return Refuse("disallowed global " + PrintableText(module) + "." + PrintableText(name) +
                    " (possible malicious pickle) in " + via);
    }
    ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(PickleKind::kGlobal));
    v->text.assign(module);
    v->name.assign(name);
    return Push(v);
  }

  Status GlobalOp() {
    std::string_view module;
    std::string_view name;
    ALLOY_RETURN_IF_ERROR(ReadLine(&module));
    ALLOY_RETURN_IF_ERROR(ReadLine(&name));
    return PushGlobal(module, name, "GLOBAL");
  }

  Status StackGlobalOp() {
    PickleValue* name = nullptr;
    PickleValue* module = nullptr;
    ALLOY_RETURN_IF_ERROR(Pop("STACK_GLOBAL", &name));
    ALLOY_RETURN_IF_ERROR(Pop("STACK_GLOBAL", &module));
    if (module->kind != PickleKind::kString || name->kind != PickleKind::kString) {
      return Corrupt("STACK_GLOBAL needs two strings, got " + DescribePickleValue(*module) +
                     " and " + DescribePickleValue(*name));
    }
    return PushGlobal(module->text, name->text, "STACK_GLOBAL");
  }

  Status TupleOf(size_t n) {
    if (stack_.size() - FrameBase() < n) return Corrupt("stack underflow in TUPLE" +
                                                        std::to_string(n));
    ALLOY_RETURN_IF_ERROR(AddRefs(n));
    ALLOY_ASSIGN_OR_RETURN(PickleValue * t, New(PickleKind::kTuple));
    t->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return Push(t);
  }

  Status TupleFromMark() {
    std::vector<const PickleValue*> items;
    ALLOY_RETURN_IF_ERROR(PopMark("TUPLE", &items));
    ALLOY_RETURN_IF_ERROR(AddRefs(items.size()));
    ALLOY_ASSIGN_OR_RETURN(PickleValue * t, New(PickleKind::kTuple));
    t->items = std::move(items);
    return Push(t);
  }

  Status PutOp(size_t n) {
    uint64_t index = 0;
    ALLOY_RETURN_IF_ERROR(ReadLe(n, &index));
    return Memoize(index, "BINPUT");
  }

  // memo[index] = top of stack, by reference.
  Status Memoize(uint64_t index, const char* opname) {
    PickleValue* top = nullptr;
    ALLOY_RETURN_IF_ERROR(Top(opname, &top));
    auto it = memo_.find(index);
    if (it != memo_.end()) {
      it->second = top;
      return Status::OK();
    }
    if (memo_.size() >= limits_.max_memo) {
      return Corrupt("more than " + std::to_string(limits_.max_memo) + " memo entries");
    }
    memo_.emplace(index, top);
    return Status::OK();
  }

  Status GetOp(size_t n) {
    uint64_t index = 0;
    ALLOY_RETURN_IF_ERROR(ReadLe(n, &index));
    auto it = memo_.find(index);
    if (it == memo_.end()) {
      return Corrupt("BINGET of undefined memo index " + std::to_string(index));
    }
    return Push(it->second);
  }

  Status ReduceOp() {
    PickleValue* args = nullptr;
    PickleValue* callable = nullptr;
    ALLOY_RETURN_IF_ERROR(Pop("REDUCE", &args));
    ALLOY_RETURN_IF_ERROR(Pop("REDUCE", &callable));
    if (callable->kind != PickleKind::kGlobal) {
      return Corrupt("REDUCE callable is a " + DescribePickleValue(*callable) + ", not a global");
    }
    if (args->kind != PickleKind::kTuple) {
      return Corrupt("REDUCE arguments are a " + DescribePickleValue(*args) + ", not a tuple");
    }
    if (callable->IsGlobal("collections", "OrderedDict")) {
      if (!args->items.empty()) return Refuse("OrderedDict with constructor arguments");
      return PushNew(PickleKind::kDict);
    }
    if (callable->IsGlobal("_codecs", "encode")) return CodecsEncode(*args);
    if (!IsTensorRebuild(*callable)) {
      return Refuse("REDUCE of " + DescribePickleValue(*callable) + " (not callable)");
    }
    ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(PickleKind::kCall));
    v->items = {callable, args};
    return Push(v);
  }

  // _codecs.encode(str, "latin1"): how protocol 2 pickles a bytes object.
  Status CodecsEncode(const PickleValue& args) {
    if (args.items.size() != 2 || args.items[0]->kind != PickleKind::kString ||
        args.items[1]->kind != PickleKind::kString ||
        (args.items[1]->text != "latin1" && args.items[1]->text != "latin-1")) {
      return Refuse("_codecs.encode other than (str, 'latin1')");
    }
    const std::string& s = args.items[0]->text;
    ALLOY_ASSIGN_OR_RETURN(PickleValue * v, New(PickleKind::kBytes));
    size_t pos = 0;
    uint32_t cp = 0;
    while (pos < s.size()) {
      if (!DecodeUtf8(s, &pos, &cp) || cp > 0xFF) {
        return Corrupt("_codecs.encode: the string is not latin-1");
      }
      v->text.push_back(static_cast<char>(cp));
    }
    return Push(v);
  }

  Status NewObjOp() {
    PickleValue* args = nullptr;
    PickleValue* cls = nullptr;
    ALLOY_RETURN_IF_ERROR(Pop("NEWOBJ", &args));
    ALLOY_RETURN_IF_ERROR(Pop("NEWOBJ", &cls));
    if (cls->IsGlobal("collections", "OrderedDict") && args->kind == PickleKind::kTuple &&
        args->items.empty()) {
      return PushNew(PickleKind::kDict);
    }
    return Refuse("NEWOBJ of " + DescribePickleValue(*cls));
  }

  // Only an (Ordered)dict may receive state (its `_metadata`); it is dropped.
  Status BuildOp() {
    PickleValue* state = nullptr;
    PickleValue* target = nullptr;
    ALLOY_RETURN_IF_ERROR(Pop("BUILD", &state));
    ALLOY_RETURN_IF_ERROR(Top("BUILD", &target));
    if (target->kind != PickleKind::kDict) {
      return Refuse("BUILD on a " + DescribePickleValue(*target) + " (only OrderedDict state)");
    }
    return Status::OK();
  }

  Status SetItemOp() {
    PickleValue* value = nullptr;
    PickleValue* key = nullptr;
    PickleValue* dict = nullptr;
    ALLOY_RETURN_IF_ERROR(Pop("SETITEM", &value));
    ALLOY_RETURN_IF_ERROR(Pop("SETITEM", &key));
    ALLOY_RETURN_IF_ERROR(Top("SETITEM", &dict));
    if (dict->kind != PickleKind::kDict) {
      return Corrupt("SETITEM on a " + DescribePickleValue(*dict) + ", not a dict");
    }
    ALLOY_RETURN_IF_ERROR(AddRefs(2));
    dict->items.push_back(key);
    dict->items.push_back(value);
    return Status::OK();
  }

  Status SetItemsOp() {
    std::vector<const PickleValue*> items;
    ALLOY_RETURN_IF_ERROR(PopMark("SETITEMS", &items));
    PickleValue* dict = nullptr;
    ALLOY_RETURN_IF_ERROR(Top("SETITEMS", &dict));
    if (dict->kind != PickleKind::kDict) {
      return Corrupt("SETITEMS on a " + DescribePickleValue(*dict) + ", not a dict");
    }
    if (items.size() % 2 != 0) return Corrupt("SETITEMS with an odd number of items");
    ALLOY_RETURN_IF_ERROR(AddRefs(items.size()));
    dict->items.insert(dict->items.end(), items.begin(), items.end());
    return Status::OK();
  }

  Status AppendOp() {
    PickleValue* value = nullptr;
    PickleValue* list = nullptr;
    ALLOY_RETURN_IF_ERROR(Pop("APPEND", &value));
    ALLOY_RETURN_IF_ERROR(Top("APPEND", &list));
    if (list->kind != PickleKind::kList) {
      return Corrupt("APPEND on a " + DescribePickleValue(*list) + ", not a list");
    }
    ALLOY_RETURN_IF_ERROR(AddRefs(1));
    list->items.push_back(value);
    return Status::OK();
  }

  Status AppendsOp() {
    std::vector<const PickleValue*> items;
    ALLOY_RETURN_IF_ERROR(PopMark("APPENDS", &items));
    PickleValue* list = nullptr;
    ALLOY_RETURN_IF_ERROR(Top("APPENDS", &list));
    if (list->kind != PickleKind::kList) {
      return Corrupt("APPENDS on a " + DescribePickleValue(*list) + ", not a list");
    }
    ALLOY_RETURN_IF_ERROR(AddRefs(items.size()));
    list->items.insert(list->items.end(), items.begin(), items.end());
    return Status::OK();
  }

  Status Stop() {
    if (!marks_.empty()) return Corrupt("STOP with " + std::to_string(marks_.size()) +
                                        " MARK(s) never closed");
    if (stack_.size() != 1) {
      return Corrupt("STOP with " + std::to_string(stack_.size()) +
                     " values on the stack, expected 1");
    }
    pickle_->root_ = stack_.back();
    return Status::OK();
  }

  const std::string_view in_;
  const std::string& name_;
  const PickleLimits& limits_;
  std::unique_ptr<Pickle> pickle_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<PickleValue*> stack_;
  std::vector<size_t> marks_;  // stack sizes at each open MARK
  uint64_t refs_ = 0;
  std::unordered_map<uint64_t, PickleValue*> memo_;
  PickleValue* none_ = nullptr;
  PickleValue* true_ = nullptr;
  PickleValue* false_ = nullptr;
};

Result<std::unique_ptr<Pickle>> Unpickle(std::string_view bytes, const std::string& name,
                                         const PickleLimits& limits) {
  return Unpickler(bytes, name, limits).Run();
}

}  // namespace alloy::formats

#include "formats/torch_reader.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/model_dir.h"
#include "formats/pickle.h"
#include "formats/zip_reader.h"
#include "tests/testing/safetensors_builder.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/torch_builder.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::formats {
namespace {

using namespace std::string_literals;

using testing::BuildZip;
using testing::F32Bytes;
using testing::I64Bytes;
using testing::PickleWriter;
using testing::TempDir;
using testing::TorchBuilder;
using testing::TorchTensor;
using testing::U16Bytes;
using testing::WriteFileBytes;
using testing::ZipEntrySpec;

Result<std::unique_ptr<TensorSource>> OpenBytes(const std::string& bytes) {
  return OpenTorch(MakeMemorySource(bytes, "t.bin"));
}

std::unique_ptr<TensorSource> MustOpen(const std::string& bytes) {
  auto r = OpenBytes(bytes);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::string ReadAll(const TensorSource& src, const std::string& name) {
  const TensorInfo* info = src.Find(name);
  REQUIRE(info != nullptr);
  std::string out(info->nbytes, '\0');
  Status st = src.Read(*info, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()),
                                                     out.size()));
  INFO(st.ToString());
  REQUIRE(st.ok());
  return out;
}

std::string ViewAll(TensorSource& src, const std::string& name) {
  const TensorInfo* info = src.Find(name);
  REQUIRE(info != nullptr);
  auto view = src.View(*info);
  INFO(view.status().ToString());
  REQUIRE(view.ok());
  return std::string(reinterpret_cast<const char*>(view->data()), view->size());
}

// Every byte range [begin, end) with a step, to cover unaligned partial reads.
void CheckPartialReads(const TensorSource& src, const std::string& name,
                       const std::string& expected) {
  const TensorInfo* info = src.Find(name);
  REQUIRE(info != nullptr);
  for (size_t begin = 0; begin < expected.size(); begin += 3) {
    for (size_t end = begin; end <= expected.size(); end += 5) {
      std::string out(end - begin, '\0');
      REQUIRE(src.Read(*info, begin,
                       std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), out.size()))
                  .ok());
      CHECK(out == expected.substr(begin, end - begin));
    }
  }
}

void CheckFails(const Result<std::unique_ptr<TensorSource>>& r, ErrorCode code,
                const std::string& substring) {
  REQUIRE_FALSE(r.ok());
  INFO(r.status().ToString());
  CHECK(r.status().code() == code);
  CHECK_THAT(r.status().message(), Catch::Contains(substring));
}

void CheckBytesFail(const std::string& bytes, ErrorCode code, const std::string& substring) {
  CheckFails(OpenBytes(bytes), code, substring);
}

std::string Floats(int begin, int end) {
  std::string out;
  for (int i = begin; i < end; ++i) out += F32Bytes({static_cast<float>(i)});
  return out;
}

// Byte-reverses every `unit` bytes.
std::string Swapped(std::string bytes, size_t unit) {
  for (size_t i = 0; i + unit <= bytes.size(); i += unit) {
    std::reverse(bytes.begin() + static_cast<std::ptrdiff_t>(i),
                 bytes.begin() + static_cast<std::ptrdiff_t>(i + unit));
  }
  return bytes;
}

// A valid one-tensor checkpoint, the base of most corruptions.
TorchBuilder OneTensor() {
  TorchBuilder b;
  b.Storage("0", Floats(0, 6));
  b.Add({.name = "w", .size = {2, 3}});
  return b;
}

enum class Mode { kMemory, kMmap, kPread };

}  // namespace

TEST_CASE("torch reader reads f32 f16 bf16 and i64 tensors exactly", "[formats][torch]") {
  const std::string f32 = F32Bytes({1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f});
  const std::string f16 = U16Bytes({0x3C00, 0xC000, 0x7BFF, 0x0001});
  const std::string bf16 = U16Bytes({0x3F80, 0xBF80, 0x7F7F, 0x0001, 0xFFFF});
  const std::string i64 = I64Bytes({-1, 0, int64_t{1} << 40});
  TorchBuilder b;
  b.Storage("0", f32).Storage("1", f16).Storage("2", bf16).Storage("3", i64);
  b.Add({.name = "model.f32", .storage_key = "0", .size = {2, 3}});
  b.Add({.name = "model.f16", .storage_key = "1", .storage_class = "HalfStorage", .size = {4}});
  b.Add({.name = "model.bf16", .storage_key = "2", .storage_class = "BFloat16Storage",
         .size = {5}});
  b.Add({.name = "model.i64", .storage_key = "3", .storage_class = "LongStorage", .size = {3, 1}});
  const std::string bytes = b.Build();

  const Mode mode = GENERATE(Mode::kMemory, Mode::kMmap, Mode::kPread);
  TempDir tmp;
  std::unique_ptr<TensorSource> src;
  if (mode == Mode::kMemory) {
    src = MustOpen(bytes);
  } else {
    WriteFileBytes(tmp.Join("m.pt"), bytes);
    auto r = OpenTorchFile(tmp.Join("m.pt"), mode == Mode::kMmap ? FileAccess::kMmap
                                                                  : FileAccess::kPread);
    REQUIRE(r.ok());
    src = std::move(r).value();
  }
  REQUIRE(src->tensors().size() == 4);
  // State-dict order, not storage or name order.
  CHECK(src->tensors()[0].name == "model.f32");
  CHECK(src->tensors()[1].name == "model.f16");
  CHECK(src->tensors()[2].name == "model.bf16");
  CHECK(src->tensors()[3].name == "model.i64");
  CHECK(src->tensors()[0].dtype == DType::kF32);
  CHECK(src->tensors()[0].shape == std::vector<int64_t>{2, 3});
  CHECK(src->tensors()[0].nbytes == 24);
  CHECK(src->tensors()[1].dtype == DType::kF16);
  CHECK(src->tensors()[2].dtype == DType::kBF16);
  CHECK(src->tensors()[3].dtype == DType::kI64);
  CHECK(src->tensors()[3].shape == std::vector<int64_t>{3, 1});
  CHECK(src->tensors()[0].file_offset % 64 == 0);  // torch's aligned payloads
  CHECK(src->metadata().empty());
  CHECK(src->files().size() == 1);

  CHECK(ReadAll(*src, "model.f32") == f32);
  CHECK(ReadAll(*src, "model.f16") == f16);
  CHECK(ReadAll(*src, "model.bf16") == bf16);
  CHECK(ReadAll(*src, "model.i64") == i64);
  CHECK(ViewAll(*src, "model.bf16") == bf16);
  CheckPartialReads(*src, "model.f32", f32);
  const TensorInfo& first = src->tensors()[0];
  std::string out(4, '\0');
  CHECK(src->Read(first, 22, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), 4))
            .code() == ErrorCode::kInvalidArgument);
  src->Release(first);
  CHECK(ViewAll(*src, "model.f32") == f32);
}

TEST_CASE("torch reader handles scalars and empty tensors", "[formats][torch]") {
  TorchBuilder b;
  b.Storage("0", F32Bytes({7.0f})).Storage("1", "");
  b.Add({.name = "scalar", .storage_key = "0", .size = {}});
  b.Add({.name = "empty", .storage_key = "1", .size = {0, 3}});
  auto src = MustOpen(b.Build());
  CHECK(src->Find("scalar")->shape.empty());
  CHECK(ReadAll(*src, "scalar") == F32Bytes({7.0f}));
  CHECK(src->Find("empty")->nbytes == 0);
  CHECK(ViewAll(*src, "empty").empty());
}

TEST_CASE("tensors sharing one storage share its bytes", "[formats][torch]") {
  TorchBuilder b;
  b.Storage("0", Floats(0, 8));
  b.Add({.name = "a", .size = {4}});
  b.Add({.name = "b", .offset = 4, .size = {2, 2}});
  b.Add({.name = "tied", .alias_of = "a"});
  b.Add({.name = "mid", .offset = 2, .size = {3}});
  auto src = MustOpen(b.Build());
  REQUIRE(src->tensors().size() == 4);
  CHECK(ReadAll(*src, "a") == Floats(0, 4));
  CHECK(ReadAll(*src, "b") == Floats(4, 8));
  CHECK(ReadAll(*src, "tied") == Floats(0, 4));
  CHECK(ReadAll(*src, "mid") == Floats(2, 5));
  CHECK(src->Find("tied")->file_offset == src->Find("a")->file_offset);
  CHECK(src->Find("b")->file_offset == src->Find("a")->file_offset + 16);
  // Releasing one tied tensor must not disturb the other's view.
  auto view = src->View(*src->Find("tied"));
  REQUIRE(view.ok());
  src->Release(*src->Find("a"));
  CHECK(std::string(reinterpret_cast<const char*>(view->data()), view->size()) == Floats(0, 4));
}

TEST_CASE("non-contiguous views are gathered in C order", "[formats][torch]") {
  TorchBuilder b;
  b.Storage("0", Floats(0, 6));    // x = arange(6).reshape(2, 3)
  b.Storage("1", Floats(0, 24));   // y = arange(24).reshape(4, 6)
  b.Storage("2", Floats(0, 24));   // z = arange(24).reshape(2, 3, 4)
  b.Add({.name = "xt", .storage_key = "0", .size = {3, 2}, .stride = {1, 3}});  // x.T
  b.Add({.name = "slice", .storage_key = "1", .offset = 6, .size = {2, 3},
         .stride = {6, 2}});                                                    // y[1:3, ::2]
  b.Add({.name = "col", .storage_key = "1", .offset = 2, .size = {4}, .stride = {6}});  // y[:, 2]
  b.Add({.name = "perm", .storage_key = "2", .size = {4, 2, 3}, .stride = {1, 12, 4}});
  b.Add({.name = "bcast", .storage_key = "0", .offset = 3, .size = {2, 3}, .stride = {0, 1}});

  const Mode mode = GENERATE(Mode::kMemory, Mode::kMmap, Mode::kPread);
  TempDir tmp;
  std::unique_ptr<TensorSource> src;
  if (mode == Mode::kMemory) {
    src = MustOpen(b.Build());
  } else {
    WriteFileBytes(tmp.Join("m.pt"), b.Build());
    auto r = OpenTorchFile(tmp.Join("m.pt"), mode == Mode::kMmap ? FileAccess::kMmap
                                                                  : FileAccess::kPread);
    REQUIRE(r.ok());
    src = std::move(r).value();
  }
  const std::string xt = F32Bytes({0, 3, 1, 4, 2, 5});
  const std::string slice = F32Bytes({6, 8, 10, 12, 14, 16});
  const std::string col = F32Bytes({2, 8, 14, 20});
  std::string perm;  // z.permute(2, 0, 1)[k][i][j] = z[i][j][k] = 12i + 4j + k
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 3; ++j) perm += F32Bytes({static_cast<float>(12 * i + 4 * j + k)});
    }
  }
  const std::string bcast = F32Bytes({3, 4, 5, 3, 4, 5});
  CHECK(ReadAll(*src, "xt") == xt);
  CHECK(ReadAll(*src, "slice") == slice);
  CHECK(ReadAll(*src, "col") == col);
  CHECK(ReadAll(*src, "perm") == perm);
  CHECK(ReadAll(*src, "bcast") == bcast);
  CheckPartialReads(*src, "xt", xt);
  CheckPartialReads(*src, "perm", perm);
  CHECK(ViewAll(*src, "perm") == perm);
  CHECK(ViewAll(*src, "xt") == xt);
  src->Release(*src->Find("xt"));
  CHECK(ViewAll(*src, "xt") == xt);
  CHECK(ReadAll(*src, "xt") == xt);
}

TEST_CASE("big-endian archives are byte-swapped", "[formats][torch]") {
  const std::string f32 = Floats(0, 6);
  const std::string bf16 = U16Bytes({0x3F80, 0xC000, 0x1234});
  const std::string i64 = I64Bytes({-2, 1 << 20});
  const std::string c64 = F32Bytes({1, 2, 3, 4});
  TorchBuilder b;
  b.ByteOrder("big");
  b.Storage("0", Swapped(f32, 4)).Storage("1", Swapped(bf16, 2)).Storage("2", Swapped(i64, 8));
  b.Storage("3", Swapped(c64, 4));
  b.Add({.name = "w", .storage_key = "0", .size = {2, 3}});
  b.Add({.name = "wt", .storage_key = "0", .size = {3, 2}, .stride = {1, 3}});
  b.Add({.name = "h", .storage_key = "1", .storage_class = "BFloat16Storage", .size = {3}});
  b.Add({.name = "l", .storage_key = "2", .storage_class = "LongStorage", .size = {2}});
  b.Add({.name = "c", .storage_key = "3", .storage_class = "ComplexFloatStorage", .size = {2}});
  auto src = MustOpen(b.Build());
  CHECK(ReadAll(*src, "w") == f32);
  CHECK(ReadAll(*src, "wt") == F32Bytes({0, 3, 1, 4, 2, 5}));
  CHECK(ReadAll(*src, "h") == bf16);
  CHECK(ReadAll(*src, "l") == i64);
  CHECK(ReadAll(*src, "c") == c64);
  CHECK(ViewAll(*src, "w") == f32);
  CheckPartialReads(*src, "w", f32);
}

TEST_CASE("wrapped state dicts are unwrapped", "[formats][torch]") {
  for (const char* key : {"state_dict", "model"}) {
    TorchBuilder b = OneTensor();
    b.Wrap(key);
    auto src = MustOpen(b.Build());
    REQUIRE(src->tensors().size() == 1);
    CHECK(ReadAll(*src, "w") == Floats(0, 6));
  }
  SECTION("a dict with tensors is not unwrapped even if it has a state_dict key") {
    TorchBuilder b = OneTensor();
    b.Add({.name = "state_dict", .raw_value = PickleWriter().EmptyDict().bytes()});
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "value of 'state_dict' is a dict, not a tensor");
  }
  SECTION("no tensors and no wrapper") {
    TorchBuilder b;
    b.Add({.name = "epoch", .raw_value = PickleWriter().Int(3).bytes()});
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "no tensors found");
  }
  SECTION("an empty state dict has no tensors") {
    TorchBuilder b;
    auto src = MustOpen(b.Build());
    CHECK(src->tensors().empty());
  }
}

TEST_CASE("parameters and v3 rebuilds are read", "[formats][torch]") {
  TorchBuilder b;
  b.Storage("0", Floats(0, 4)).Storage("1", std::string("\x01\x38\x7e\xfe", 4));
  b.Storage("2", U16Bytes({1, 65535}));
  b.Add({.name = "p", .size = {4}, .parameter = true});
  b.Add({.name = "f8", .storage_key = "1", .storage_class = "UntypedStorage", .size = {4},
         .v3_dtype = "float8_e4m3fn"});
  b.Add({.name = "u16", .storage_key = "2", .storage_class = "UntypedStorage", .size = {2},
         .v3_dtype = "uint16"});
  auto src = MustOpen(b.Build());
  CHECK(ReadAll(*src, "p") == Floats(0, 4));
  CHECK(src->Find("f8")->dtype == DType::kF8_E4M3);
  CHECK(ReadAll(*src, "f8") == std::string("\x01\x38\x7e\xfe", 4));
  CHECK(src->Find("u16")->dtype == DType::kU16);
  CHECK(ReadAll(*src, "u16") == U16Bytes({1, 65535}));
  SECTION("v3 with a dtype alloy has no type for") {
    TorchBuilder c;
    c.Storage("0", std::string(16, '\0'));
    c.Add({.name = "z", .storage_class = "UntypedStorage", .size = {1},
           .v3_dtype = "complex128"});
    CheckBytesFail(c.Build(), ErrorCode::kUnsupported, "dtype torch.complex128 is not supported");
  }
}

TEST_CASE("sharded pytorch_model.bin index and directories", "[formats][torch][model_dir]") {
  TempDir tmp;
  TorchBuilder s1;
  s1.Storage("0", Floats(0, 4)).Add({.name = "a", .size = {4}});
  s1.Add({.name = "b", .offset = 1, .size = {2}});
  TorchBuilder s2;
  s2.Storage("0", Floats(10, 16)).Add({.name = "c", .size = {3, 2}, .stride = {1, 3}});
  WriteFileBytes(tmp.Join("pytorch_model-00001-of-00002.bin"), s1.Build());
  WriteFileBytes(tmp.Join("pytorch_model-00002-of-00002.bin"), s2.Build());
  const std::string index =
      R"({"metadata": {"total_size": 40}, "weight_map": {"a": "pytorch_model-00001-of-00002.bin",)"
      R"( "b": "pytorch_model-00001-of-00002.bin", "c": "pytorch_model-00002-of-00002.bin"}})";
  WriteFileBytes(tmp.Join("pytorch_model.bin.index.json"), index);

  SECTION("the index is read") {
    auto r = OpenModel(tmp.path());
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    TensorSource& src = **r;
    REQUIRE(src.tensors().size() == 3);
    CHECK(src.tensors()[2].name == "c");
    CHECK(src.tensors()[2].file_index == 1);
    CHECK(src.files().size() == 2);
    CHECK(ReadAll(src, "a") == Floats(0, 4));
    CHECK(ReadAll(src, "b") == Floats(1, 3));
    CHECK(ReadAll(src, "c") == F32Bytes({10, 13, 11, 14, 12, 15}));
    CHECK(ViewAll(src, "c") == F32Bytes({10, 13, 11, 14, 12, 15}));
  }
  SECTION("a .safetensors shard in a pytorch_model.bin index") {
    WriteFileBytes(tmp.Join("pytorch_model.bin.index.json"),
                   R"({"weight_map": {"a": "model-00001-of-00002.safetensors"}})");
    auto r = OpenModel(tmp.path());
    CheckFails(r, ErrorCode::kCorrupt, "extension mismatch");
    CheckFails(r, ErrorCode::kCorrupt, "is not a .bin file");
  }
  SECTION("a tensor missing from its .bin shard") {
    WriteFileBytes(tmp.Join("pytorch_model.bin.index.json"),
                   R"({"weight_map": {"zz": "pytorch_model-00001-of-00002.bin"}})");
    CheckFails(OpenModel(tmp.path()), ErrorCode::kCorrupt, "not found in shard");
  }
  SECTION("safetensors is preferred over .bin") {
    testing::WriteSafetensorsFixture(tmp.Join("model.safetensors"),
                                     {testing::PatternTensor("st", DType::kF32, {2}, 1)});
    auto r = OpenModel(tmp.path());
    REQUIRE(r.ok());
    REQUIRE((*r)->tensors().size() == 1);
    CHECK((*r)->tensors()[0].name == "st");
  }
  SECTION("pytorch_model.bin alone") {
    std::filesystem::remove(tmp.Join("pytorch_model.bin.index.json"));
    TorchBuilder one = OneTensor();
    one.Prefix("pytorch_model");
    WriteFileBytes(tmp.Join("pytorch_model.bin"), one.Build());
    auto r = OpenModel(tmp.path());
    REQUIRE(r.ok());
    CHECK(ReadAll(**r, "w") == Floats(0, 6));
    // A file argument is sniffed by content, whatever its name.
    WriteFileBytes(tmp.Join("weights.safetensors"), one.Build());
    auto f = OpenModel(tmp.Join("weights.safetensors"));
    REQUIRE(f.ok());
    CHECK(ReadAll(**f, "w") == Floats(0, 6));
  }
}

TEST_CASE("case 37: archive layout errors", "[formats][torch][malformed]") {
  std::vector<ZipEntrySpec> entries = OneTensor().Entries();
  SECTION("an entry outside the prefix") {
    entries.push_back({"other/x", "x"});
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt,
                   "invalid archive: entry 'other/x' is not under the top-level directory");
  }
  SECTION("entry 0 at the top level") {
    entries.insert(entries.begin(), ZipEntrySpec{"data.pkl", "x"});
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt, "not inside a top-level directory");
  }
  SECTION("no data.pkl") {
    entries.erase(entries.begin());
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt, "invalid archive: no 'archive/data.pkl'");
  }
  SECTION("two data.pkl") {
    entries.push_back({"archive/sub/data.pkl", entries[0].payload});
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt, "invalid archive: 2 data.pkl entries");
  }
  SECTION("a duplicate entry name") {
    entries.push_back(entries[0]);
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt, "duplicate entry 'archive/data.pkl'");
  }
}

TEST_CASE("zip structure errors", "[formats][torch][zip]") {
  std::vector<ZipEntrySpec> entries = OneTensor().Entries();
  SECTION("a '..' entry name") {
    entries.push_back({"archive/../../etc/passwd", "x"});
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt, "'..' path component");
  }
  SECTION("an absolute entry name") {
    entries.push_back({"/archive/x", "x"});
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt, "absolute path");
  }
  SECTION("local header name differs from the central one") {
    entries[2].local_name = "archive/data/9";
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt, "names 'archive/data/9' instead");
  }
  SECTION("bytes after the end record") {
    CheckBytesFail(BuildZip(entries, {.trailing = "junk"}), ErrorCode::kCorrupt,
                   "no end of central directory record ending at EOF");
  }
  SECTION("not a zip at all") {
    CheckBytesFail("{\"a\": 1}", ErrorCode::kCorrupt, "not a PyTorch checkpoint");
    CheckBytesFail("PK\x03\x04", ErrorCode::kCorrupt, "too small");
  }
  SECTION("a STORED entry whose sizes differ") {
    entries[0].uncompressed_size = entries[0].payload.size() + 1;
    CheckBytesFail(BuildZip(entries), ErrorCode::kCorrupt, "STORED entry 'archive/data.pkl'");
  }
  SECTION("without the ZIP64 end record") {
    auto src = MustOpen(BuildZip(entries, {.zip64_end = false}));
    CHECK(ReadAll(*src, "w") == Floats(0, 6));
  }
  SECTION("a payload running into the central directory") {
    std::string bytes = BuildZip(entries);
    // Entry 2's central record: grow its compressed size field past the directory.
    const size_t cd = bytes.find("PK\x01\x02");
    size_t rec = cd;
    for (int i = 0; i < 2; ++i) rec = bytes.find("PK\x01\x02", rec + 4);
    bytes[rec + 22] = '\x01';
    bytes[rec + 26] = '\x01';
    CheckBytesFail(bytes, ErrorCode::kCorrupt, "runs past the start of the central directory");
  }
  SECTION("a corrupted data.pkl CRC") {
    std::string bytes = BuildZip(entries);
    const size_t pkl = bytes.find("\x80\x02");
    bytes[pkl + 3] ^= 1;
    CheckBytesFail(bytes, ErrorCode::kCorrupt, "CRC-32 mismatch");
  }
}

TEST_CASE("case 38: disallowed globals are refused without execution", "[formats][torch][malformed]") {
  TempDir tmp;
  const std::string marker = tmp.Join("pwned");
  const std::vector<std::pair<std::string, std::string>> globals = {
      {"os", "system"},          {"posix", "system"},  {"builtins", "eval"},
      {"subprocess", "Popen"},   {"nt", "system"},     {"builtins", "getattr"},
      {"builtins", "__import__"}, {"runpy", "_run_code"}, {"numpy.core.multiarray", "scalar"},
      {"torch.serialization", "_get_layout"}, {"_io", "BytesIO"}, {"torch", "load"},
      {"collections", "OrderedDictX"}, {"torch._utils", "_rebuild_qtensor"}};
  for (const auto& [module, name] : globals) {
    for (bool stack_global : {false, true}) {
      PickleWriter w;
      w.Proto(stack_global ? 4 : 2);
      if (stack_global) {
        w.StackGlobal(module, name);
      } else {
        w.Global(module, name);
      }
      w.Unicode("touch " + marker).TupleN(1).Reduce().Stop();
      TorchBuilder b = OneTensor();
      b.Pickle(w.bytes());
      INFO(module << "." << name << (stack_global ? " via STACK_GLOBAL" : " via GLOBAL"));
      CheckBytesFail(b.Build(), ErrorCode::kUnsupported,
                     "disallowed global " + module + "." + name + " (possible malicious pickle)");
      CheckBytesFail(b.Build(), ErrorCode::kUnsupported,
                     stack_global ? "STACK_GLOBAL" : "GLOBAL");
    }
  }
  SECTION("a disallowed global inside an otherwise valid state dict") {
    TorchBuilder b = OneTensor();
    const std::string evil = testing::MaliciousPickle("os", "system", false);
    b.Add({.name = "evil", .raw_value = evil.substr(2, evil.size() - 3)});
    CheckBytesFail(b.Build(), ErrorCode::kUnsupported, "disallowed global os.system");
  }
  CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("case 39: refused opcodes are named", "[formats][torch][malformed]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\x80\x02(i__main__\nX\n.", "INST (0x69)"},
      {"\x80\x02(o.", "OBJ (0x6F)"},
      {"\x80\x02\x82\x01.", "EXT1 (0x82)"},
      {"\x80\x04)}\x92.", "NEWOBJ_EX (0x92)"},
      {"\x80\x02P0\n.", "PERSID (0x50)"},
      {"\x80\x02I1\n.", "INT (0x49)"},
      {"\x80\x02S'x'\n.", "STRING (0x53)"},
      {"\x80\x02g0\n.", "GET (0x67)"},
      {"\x80\x05\x96\x00\x00\x00\x00\x00\x00\x00\x00."s, "BYTEARRAY8 (0x96)"},
      {"\x80\x02\xff.", "unknown byte 0xFF"},
      {"\x80\x06}.", "pickle protocol 6"},
  };
  for (const auto& [pickle, expected] : cases) {
    TorchBuilder b = OneTensor();
    b.Pickle(pickle);
    INFO(expected);
    CheckBytesFail(b.Build(), ErrorCode::kUnsupported, expected);
  }
  SECTION("REDUCE and BUILD outside the allowed shapes") {
    TorchBuilder b = OneTensor();
    b.Pickle(PickleWriter().Proto().Global("torch", "FloatStorage").EmptyTuple().Reduce().Stop()
                 .bytes());
    CheckBytesFail(b.Build(), ErrorCode::kUnsupported, "REDUCE of global torch.FloatStorage");
    b.Pickle(PickleWriter().Proto().EmptyList().EmptyDict().Build().Stop().bytes());
    CheckBytesFail(b.Build(), ErrorCode::kUnsupported, "BUILD on a list");
    b.Pickle(PickleWriter().Proto().Global("torch", "Tensor").EmptyTuple().Op(0x81).Stop()
                 .bytes());
    CheckBytesFail(b.Build(), ErrorCode::kUnsupported, "NEWOBJ of global torch.Tensor");
  }
}

TEST_CASE("case 40: invalid persistent ids", "[formats][torch][malformed]") {
  auto with_pid = [](const std::string& raw_pid) {
    TorchBuilder b;
    b.Storage("0", Floats(0, 6));
    b.Add({.name = "w", .size = {2, 3}, .raw_pid = raw_pid});
    return b.Build();
  };
  CheckBytesFail(with_pid(PickleWriter().Unicode("0").bytes()), ErrorCode::kCorrupt,
                 "invalid persistent id for tensor 'w': expected a tuple");
  CheckBytesFail(with_pid(PickleWriter()
                              .Mark().Unicode("storagex").Global("torch", "FloatStorage")
                              .Unicode("0").Unicode("cpu").Int(6).Tuple().bytes()),
                 ErrorCode::kCorrupt, "invalid persistent id for tensor 'w': pid[0]");
  CheckBytesFail(with_pid(PickleWriter()
                              .Mark().Unicode("storage").Global("torch", "Tensor")
                              .Unicode("0").Unicode("cpu").Int(6).Tuple().bytes()),
                 ErrorCode::kCorrupt, "expected a torch storage class");
  CheckBytesFail(with_pid(PickleWriter()
                              .Mark().Unicode("storage").Global("torch", "FloatStorage")
                              .Int(0).Unicode("cpu").Int(6).Tuple().bytes()),
                 ErrorCode::kCorrupt, "storage key is a int 0");
  CheckBytesFail(with_pid(PickleWriter().Unicode("storage").TupleN(1).bytes()),
                 ErrorCode::kCorrupt, "expected 5 elements, got 1");
  // The storage argument is not a persistent id at all.
  TorchBuilder b;
  b.Add({.name = "w", .raw_value = PickleWriter()
                                       .Global("torch._utils", "_rebuild_tensor_v2")
                                       .Mark().Int(0).Int(0).EmptyTuple().EmptyTuple()
                                       .Bool(false).EmptyDict().Tuple().Reduce().bytes()});
  CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "not a persistent id");
}

TEST_CASE("cases 41 to 44: storage and view errors", "[formats][torch][malformed]") {
  SECTION("case 41: missing storage") {
    TorchBuilder b;
    b.Storage("0", Floats(0, 6));
    b.Add({.name = "w", .storage_key = "7", .storage_numel = 6, .size = {6}});
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt,
                   "missing storage '7' for tensor 'w': no entry 'archive/data/7'");
  }
  SECTION("case 42: storage size mismatch") {
    TorchBuilder b;
    b.Storage("0", Floats(0, 6));
    b.Add({.name = "w", .storage_numel = 7, .size = {6}});
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "storage size mismatch for storage '0'");
  }
  SECTION("case 42: two pids disagree on numel") {
    TorchBuilder b;
    b.Storage("0", Floats(0, 6));
    b.Add({.name = "a", .size = {6}});
    b.Add({.name = "b", .storage_numel = 5, .size = {5}});
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "storage size mismatch for storage '0'");
  }
  SECTION("case 43: one storage key with two dtypes") {
    TorchBuilder b;
    b.Storage("0", Floats(0, 6));
    b.Add({.name = "a", .size = {6}});
    b.Add({.name = "b", .storage_class = "IntStorage", .size = {6}});
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt,
                   "conflicting storage dtype for storage '0': FloatStorage for tensor 'a', "
                   "IntStorage for tensor 'b'");
  }
  SECTION("case 44: views out of bounds") {
    const std::vector<TorchTensor> bad = {
        {.name = "w", .offset = 1, .size = {6}},
        {.name = "w", .size = {2, 3}, .stride = {4, 1}},
        {.name = "w", .size = {7}},
        {.name = "w", .offset = 7, .size = {0}},
        {.name = "w", .size = {2, 2}, .stride = {INT64_MAX / 2, 1}},
    };
    for (const TorchTensor& t : bad) {
      TorchBuilder b;
      b.Storage("0", Floats(0, 6)).Add(t);
      CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "out-of-bounds view: tensor 'w'");
    }
  }
  SECTION("case 44: negative size, stride or offset") {
    const std::vector<std::pair<TorchTensor, std::string>> bad = {
        {{.name = "w", .size = {-1}, .stride = {1}}, "negative size -1"},
        {{.name = "w", .size = {2}, .stride = {-1}}, "negative stride -1"},
        {{.name = "w", .offset = -2, .size = {2}}, "negative storage offset -2"},
    };
    for (const auto& [t, expected] : bad) {
      TorchBuilder b;
      b.Storage("0", Floats(0, 6)).Add(t);
      CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "out-of-bounds view: tensor 'w' has " + expected);
    }
  }
  SECTION("a size that overflows") {
    TorchBuilder b;
    b.Storage("0", Floats(0, 6));
    b.Add({.name = "w", .size = {int64_t{1} << 40, int64_t{1} << 40}, .stride = {0, 0}});
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "overflows");
  }
  SECTION("an expanded view larger than its storage") {
    // A tiny file must not describe a huge tensor by repeating one row.
    TorchBuilder b;
    b.Storage("0", Floats(0, 6));
    b.Add({.name = "w", .size = {1000, 6}, .stride = {0, 1}});
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "overlapping view");
  }
}

TEST_CASE("case 45: compressed storages are refused", "[formats][torch][malformed]") {
  TorchBuilder b = OneTensor();
  b.CompressStorage("0", uint64_t{40} << 30);  // the torch_dos bomb: 40 GB inflated
  CheckBytesFail(b.Build(), ErrorCode::kUnsupported, "compressed storage 'archive/data/0'");
  TorchBuilder c = OneTensor();
  std::vector<ZipEntrySpec> entries = c.Entries();
  entries[0].method = 8;
  CheckBytesFail(BuildZip(entries), ErrorCode::kUnsupported, "is compressed (method 8)");
}

TEST_CASE("case 46: corrupt pickles", "[formats][torch][malformed]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\x80\x02h\x05.", "BINGET of undefined memo index 5"},
      {"\x80\x02R.", "stack underflow in REDUCE"},
      {"\x80\x02}(X\x01\x00\x00\x00"s + "au.", "SETITEMS with an odd number of items"},
      {"\x80\x02u.", "SETITEMS without a MARK"},
      {"\x80\x02((}.", "MARK(s) never closed"},
      {"\x80\x02}", "missing STOP"},
      {"\x80\x02X\xff\x00\x00\x00"s + "ab.", "runs past the end of the stream"},
      {"\x80\x02X\x02\x00\x00\x00\xff\xfe."s, "invalid UTF-8"},
      {"\x80\x02X\x03\x00\x00\x00\xed\xa0\x80."s, "invalid UTF-8"},
      {"\x80\x02}}.", "2 values on the stack"},
      {"\x80\x02.", "STOP with 0 values"},
      {"\x80\x02q\x00."s, "stack underflow in BINPUT"},
      {"\x80\x02](K\x01K\x02u.", "SETITEMS on a list"},
      {"\x80\x02}K\x01" "a.", "APPEND on a dict"},
      {"\x80\x02" "ctorch\nFloatStorage", "GLOBAL operand without a newline"},
      {"\x80\x02\x95\xff\x00\x00\x00\x00\x00\x00\x00}."s, "FRAME length past the end"},
      {"\x80\x02K", "truncated operand"},
  };
  for (const auto& [pickle, expected] : cases) {
    TorchBuilder b = OneTensor();
    b.Pickle(pickle);
    INFO(expected);
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "corrupt pickle at byte");
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, expected);
  }
  SECTION("the message names the archive entry") {
    TorchBuilder b = OneTensor();
    b.Pickle("\x80\x02R.");
    CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "t.bin: archive/data.pkl: corrupt pickle");
  }
}

TEST_CASE("case 47: unknown byte order", "[formats][torch][malformed]") {
  TorchBuilder b = OneTensor();
  b.ByteOrder("middle");
  CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "unknown byte order 'middle'");
  b.ByteOrder(std::nullopt);  // absent: little
  auto src = MustOpen(b.Build());
  CHECK(ReadAll(*src, "w") == Floats(0, 6));
}

TEST_CASE("case 48: legacy and TorchScript formats are unsupported", "[formats][torch][malformed]") {
  SECTION("legacy pickle") {
    const std::string legacy("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.",
                             21);
    CheckBytesFail(legacy, ErrorCode::kUnsupported, "legacy PyTorch format");
    CheckBytesFail(legacy, ErrorCode::kUnsupported, "re-save with torch >= 1.6");
    CheckBytesFail("\x80\x02}.", ErrorCode::kUnsupported, "bare pickle stream");
  }
  SECTION("PYTORCH1 and tar") {
    CheckBytesFail("PYTORCH1" + std::string(40, '\0'), ErrorCode::kUnsupported, "PYTORCH1");
    std::string tar(1024, '\0');
    std::memcpy(tar.data() + 257, "ustar", 5);
    CheckBytesFail(tar, ErrorCode::kUnsupported, "tar-format");
  }
  SECTION("TorchScript archives") {
    for (const char* name : {"archive/constants.pkl", "archive/code/__torch__.py"}) {
      std::vector<ZipEntrySpec> entries = OneTensor().Entries();
      entries.push_back({name, "x"});
      CheckBytesFail(BuildZip(entries), ErrorCode::kUnsupported, "TorchScript archive");
    }
  }
  SECTION("through OpenModel") {
    TempDir tmp;
    WriteFileBytes(tmp.Join("old.pt"),
                   std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
    CheckFails(OpenModel(tmp.Join("old.pt")), ErrorCode::kUnsupported, "legacy PyTorch format");
    WriteFileBytes(tmp.Join("p1.pt"), "PYTORCH1" + std::string(80, 'x'));
    CheckFails(OpenModel(tmp.Join("p1.pt")), ErrorCode::kUnsupported, "PYTORCH1");
  }
}

TEST_CASE("a memo bomb unpickles in linear time", "[formats][torch][pickle]") {
  // t0 = (); t_{i+1} = (t_i, t_i): 2^200 leaves if memo GETs were copies.
  PickleWriter w;
  w.Proto().Mark().EmptyTuple().Put(5000);
  for (int i = 0; i < 200; ++i) w.Get(5000).Get(5000).TupleN(2).Put(5000);
  w.Tuple().Stop();
  const auto start = std::chrono::steady_clock::now();
  auto pickle = Unpickle(w.bytes(), "bomb");
  REQUIRE(pickle.ok());
  CHECK((*pickle)->object_count() <= 203);
  const PickleValue& top = (*pickle)->root();
  REQUIRE(top.items.size() == 201);
  CHECK(top.items[200]->items[0] == top.items[199]);  // shared, not copied
  // In a state dict the bomb is refused as a non-tensor value, without a walk.
  TorchBuilder b = OneTensor();
  b.Add({.name = "x", .raw_value = w.bytes().substr(2, w.bytes().size() - 3)});
  CheckBytesFail(b.Build(), ErrorCode::kCorrupt, "value of 'x' is a tuple of 201, not a tensor");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}

TEST_CASE("pickle limits are enforced", "[formats][torch][pickle]") {
  PickleWriter many;
  many.Proto().EmptyList();
  for (int i = 0; i < 100; ++i) many.EmptyTuple().Append();
  many.Stop();
  PickleLimits limits;
  limits.max_objects = 50;
  CHECK_THAT(Unpickle(many.bytes(), "p", limits).status().message(),
             Catch::Contains("more than 50 objects"));
  limits = PickleLimits();
  limits.max_references = 50;
  CHECK_THAT(Unpickle(many.bytes(), "p", limits).status().message(),
             Catch::Contains("more than 50 container items"));
  limits = PickleLimits();
  limits.max_mark_depth = 8;
  CHECK_THAT(Unpickle("\x80\x02((((((((((", "p", limits).status().message(),
             Catch::Contains("MARK depth limit"));
  limits = PickleLimits();
  limits.max_stack = 4;
  CHECK_THAT(Unpickle("\x80\x02}}}}}}", "p", limits).status().message(),
             Catch::Contains("stack size limit"));
  limits = PickleLimits();
  limits.max_memo = 2;
  CHECK_THAT(Unpickle("\x80\x02}q\x00q\x01q\x02."s, "p", limits).status().message(),
             Catch::Contains("more than 2 memo entries"));
  limits = PickleLimits();
  limits.max_bytes = 4;
  CHECK_THAT(Unpickle("\x80\x02}}}}.", "p", limits).status().message(),
             Catch::Contains("exceeds the limit"));
}

TEST_CASE("pickle values are inert and shared", "[formats][torch][pickle]") {
  PickleWriter w;
  w.Proto().EmptyList().Put(0).Mark().Int(-5).Int(70000).Int(int64_t{1} << 40).Int(-(int64_t{1} << 40));
  w.Unicode("h\xc3\xa9").Bool(true).None().Get(0).Op(0x65);  // APPENDS
  w.Raw(std::string("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01", 11)).Append();  // 2^64
  w.Raw(std::string("\x8a\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 12)).Append();  // -1
  w.Raw(std::string("G\x3f\xf8\x00\x00\x00\x00\x00\x00", 9)).Append();  // 1.5
  w.Global("_codecs", "encode").Unicode("\xc3\xbf" "a").Unicode("latin1").TupleN(2).Reduce();
  w.Append().Stop();
  auto p = Unpickle(w.bytes(), "p");
  INFO(p.status().ToString());
  REQUIRE(p.ok());
  const PickleValue& list = (*p)->root();
  REQUIRE(list.kind == PickleKind::kList);
  REQUIRE(list.items.size() == 12);
  CHECK(list.items[0]->integer == -5);
  CHECK(list.items[1]->integer == 70000);
  CHECK(list.items[2]->integer == int64_t{1} << 40);
  CHECK(list.items[3]->integer == -(int64_t{1} << 40));
  CHECK(list.items[4]->text == "h\xc3\xa9");
  CHECK(list.items[5]->boolean);
  CHECK(list.items[6]->kind == PickleKind::kNone);
  CHECK(list.items[7] == &list);  // the memo GET is the same node
  CHECK(list.items[8]->kind == PickleKind::kBigInt);
  CHECK(list.items[9]->integer == -1);
  CHECK(list.items[10]->real == 1.5);
  CHECK(list.items[11]->kind == PickleKind::kBytes);
  CHECK(list.items[11]->text == "\xff" "a");
  CHECK(IsAllowedPickleGlobal("torch._utils", "_rebuild_tensor_v2"));
  CHECK_FALSE(IsAllowedPickleGlobal("torch._utils", "_rebuild_tensor"));
  CHECK_FALSE(IsAllowedPickleGlobal("os", "system"));
}

TEST_CASE("truncated and bit-flipped files never crash", "[formats][torch][robustness]") {
  TorchBuilder b;
  b.Storage("0", Floats(0, 12)).Storage("1", U16Bytes({1, 2, 3, 4}));
  b.Add({.name = "a", .size = {3, 4}});
  b.Add({.name = "t", .size = {4, 3}, .stride = {1, 4}, .parameter = true});
  b.Add({.name = "h", .storage_key = "1", .storage_class = "HalfStorage", .size = {2, 2}});
  b.Add({.name = "tied", .alias_of = "a"});
  const std::string pickle = b.PickleBytes();
  REQUIRE(Unpickle(pickle, "p").ok());
  for (size_t n = 0; n < pickle.size(); ++n) {
    INFO("pickle truncated to " << n << " bytes");
    CHECK_FALSE(Unpickle(pickle.substr(0, n), "p").ok());
  }
  const std::string file = b.Build();
  REQUIRE(OpenBytes(file).ok());
  for (size_t n = 0; n < file.size(); ++n) {
    INFO("file truncated to " << n << " bytes");
    CHECK_FALSE(OpenBytes(file.substr(0, n)).ok());
  }
  // Every byte of the pickle flipped in turn: errors or a readable source.
  std::mt19937 rng(1234);
  size_t opened = 0;
  for (size_t pos = 0; pos < pickle.size(); ++pos) {
    std::string bad = pickle;
    bad[pos] = static_cast<char>(bad[pos] ^ static_cast<char>(1 + rng() % 255));
    TorchBuilder c = b;
    c.Pickle(bad);
    auto r = OpenBytes(c.Build());
    if (!r.ok()) continue;
    ++opened;
    for (const TensorInfo& info : (*r)->tensors()) {
      std::string out(info.nbytes, '\0');
      CHECK((*r)->Read(info, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()),
                                                    out.size()))
                .ok());
    }
  }
  CHECK(opened < pickle.size());
  // And every byte of the zip (headers, directory, payloads), two at a time.
  for (size_t pos = 0; pos + 1 < file.size(); ++pos) {
    std::string bad = file;
    bad[pos] = static_cast<char>(bad[pos] ^ static_cast<char>(1 + rng() % 255));
    bad[(pos * 7919) % file.size()] ^= static_cast<char>(0x80);
    auto r = OpenBytes(bad);
    if (!r.ok()) continue;
    for (const TensorInfo& info : (*r)->tensors()) {
      std::string out(info.nbytes, '\0');
      CHECK((*r)->Read(info, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()),
                                                    out.size()))
                .ok());
      CHECK((*r)->View(info).ok());
    }
  }
}

TEST_CASE("torch.save files written by real torch round-trip exactly", "[formats][torch][python]") {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    WARN("python3-torch not installed: skipping the torch.save round trip");
    return;
  }
  TempDir tmp;
  const std::string script = R"PY(
import collections, json, os, sys
import torch
out = sys.argv[1]
torch.manual_seed(0)
names = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16', torch.int64: 'I64'}
manifest = {}
def raw(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()
def save(name, obj, tensors):
    torch.save(obj, os.path.join(out, name + '.bin'))
    entries = []
    for i, (k, t) in enumerate(tensors.items()):
        with open(os.path.join(out, '%s.%d.raw' % (name, i)), 'wb') as f:
            f.write(raw(t))
        entries.append([k, names[t.dtype], list(t.shape)])
    manifest[name] = entries
sd = collections.OrderedDict()
sd['f32'] = torch.randn(3, 5)
sd['f16'] = torch.randn(4, 2).half()
sd['bf16'] = torch.randn(7).bfloat16()
sd['i64'] = torch.arange(-5, 5, dtype=torch.int64)
sd['scalar'] = torch.tensor(2.5)
sd['empty'] = torch.zeros(0, 3)
save('dtypes', sd, sd)
a = torch.randn(4, 6)
x = torch.randn(6)
w = torch.randn(5, 3)
sd = collections.OrderedDict()
sd['a'] = a
sd['b'] = a
sd['x_tail'] = x[1:]
sd['x'] = x
sd['w_t'] = w.t()
sd['a_col'] = a[:, 2]
sd['h_t'] = torch.randn(3, 4).half().t()
sd['bf_t'] = torch.randn(2, 5).bfloat16().t()
sd['perm'] = torch.randn(2, 3, 4).permute(2, 0, 1)
save('shared', sd, sd)
m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
sd = m.state_dict()
save('wrapped', {'state_dict': sd, 'epoch': 3}, sd)
save('params', m.state_dict(keep_vars=True), m.state_dict())
with open(os.path.join(out, 'manifest.json'), 'w') as f:
    json.dump(manifest, f)
)PY";
  WriteFileBytes(tmp.Join("make.py"), script);
  const std::string cmd = "/usr/bin/python3 " + tmp.Join("make.py") + " " + tmp.path() + " > " +
                          tmp.Join("log.txt") + " 2>&1";
  const int rc = std::system(cmd.c_str());
  INFO(testing::ReadFileBytes(tmp.Join("log.txt")));
  REQUIRE(rc == 0);
  const nlohmann::json manifest =
      nlohmann::json::parse(testing::ReadFileBytes(tmp.Join("manifest.json")));
  REQUIRE(manifest.size() == 4);
  for (const auto& [file, entries] : manifest.items()) {
    for (FileAccess access : {FileAccess::kMmap, FileAccess::kPread}) {
      auto r = OpenModel(tmp.Join(file + ".bin"), access);
      INFO(file << ": " << r.status().ToString());
      REQUIRE(r.ok());
      TensorSource& src = **r;
      REQUIRE(src.tensors().size() == entries.size());
      for (size_t i = 0; i < entries.size(); ++i) {
        const std::string name = entries[i][0].get<std::string>();
        INFO(file << " tensor " << name);
        const TensorInfo& info = src.tensors()[i];
        CHECK(info.name == name);
        CHECK(DTypeName(info.dtype) == entries[i][1].get<std::string>());
        CHECK(info.shape == entries[i][2].get<std::vector<int64_t>>());
        const std::string expected =
            testing::ReadFileBytes(tmp.Join(file + "." + std::to_string(i) + ".raw"));
        CHECK(ReadAll(src, name) == expected);
        CHECK(ViewAll(src, name) == expected);
        src.Release(info);
      }
    }
  }
}

}  // namespace alloy::formats

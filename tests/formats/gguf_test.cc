// GGUF (checkpoint-formats.md §4): the spec's minimal example, the header
// serializer and writer, the GgufSource round trip, every malformed-file case
// of §7 (49-65), truncations, and the type table.
#include "formats/gguf.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/gguf_builder.h"
#include "tests/testing/temp_dir.h"

namespace alloy::formats {
namespace {

using testing::GgArray;
using testing::GgF32s;
using testing::GgLe;
using testing::GgString;
using testing::GgufBuilder;
using testing::GgufMalformedCase;
using testing::GgufSpecExampleBytes;
using testing::MalformedGgufCases;
using testing::TempDir;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Reads `n` bytes at `offset` of `info` through Read (or ReadRaw).
std::string ReadBytes(const GgufSource& src, const TensorInfo& info, uint64_t offset, size_t n,
                      bool raw = false) {
  std::string out(n, '\0');
  std::span<uint8_t> span(reinterpret_cast<uint8_t*>(out.data()), n);
  const Status s = raw ? src.ReadRaw(info, offset, span) : src.Read(info, offset, span);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return out;
}

template <typename T>
GgufValue ScalarValue(GgufValueType type, T v) {
  GgufValue value;
  value.type = type;
  value.raw = GgLe<T>(v);
  return value;
}

// A source of `size` bytes that holds `prefix` followed by `fill` bytes, with
// nothing behind them: stands in for a huge file. Counts the bytes read.
class SparseSource final : public ByteSource {
 public:
  SparseSource(std::string prefix, uint64_t size, char fill)
      : prefix_(std::move(prefix)), size_(size), fill_(fill) {}
  const std::string& name() const override { return name_; }
  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset > size_ || out.size() > size_ - offset) return Status::Corrupt("read past the end");
    for (size_t i = 0; i < out.size(); ++i) {
      const uint64_t at = offset + i;
      out[i] = static_cast<uint8_t>(at < prefix_.size() ? prefix_[static_cast<size_t>(at)] : fill_);
    }
    bytes_read_ += out.size();
    return Status::OK();
  }
  Result<std::span<const uint8_t>> View(uint64_t, uint64_t) override {
    return Status::Unsupported("no views");
  }
  void Release(uint64_t, uint64_t) override {}
  void Prefetch(uint64_t, uint64_t) override {}
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  std::string name_ = "huge.gguf";
  std::string prefix_;
  uint64_t size_;
  char fill_;
  mutable uint64_t bytes_read_ = 0;
};

// magic, version 3, the two counts.
std::string Preamble(int64_t n_tensors, int64_t n_kv) {
  return "GGUF" + GgLe<uint32_t>(3) + GgLe<int64_t>(n_tensors) + GgLe<int64_t>(n_kv);
}

// ---- the spec's minimal example (§4.1) ----

TEST_CASE("GGUF: the spec's 160-byte minimal example parses", "[formats][gguf]") {
  const std::string bytes = GgufSpecExampleBytes();
  REQUIRE(bytes.size() == 160);
  // The builder lays the same file out.
  GgufBuilder b;
  b.KvString("general.architecture", "llama");
  b.Tensor("t", {2}, 0, GgF32s({1.0f, 2.0f}));
  CHECK(b.Build() == bytes);
  CHECK(b.Infos().size() == 102);

  auto header = ReadGgufHeader(*MakeMemorySource(bytes, "min.gguf"));
  REQUIRE(header.ok());
  CHECK(header->version == 3);
  CHECK(header->alignment == 32);
  CHECK(header->data_offset == 128);
  REQUIRE(header->kvs.size() == 1);
  CHECK(header->kvs[0].key == "general.architecture");
  CHECK(header->kvs[0].value.type == GgufValueType::kString);
  CHECK(header->Architecture() == "llama");
  REQUIRE(header->tensors.size() == 1);
  const GgufTensor& t = header->tensors[0];
  CHECK(t.name == "t");
  CHECK(t.ne == std::vector<int64_t>{2});
  CHECK(t.type == 0);
  CHECK(t.offset == 0);
  CHECK(t.nbytes == 8);

  auto src = GgufSource::Open(MakeMemorySource(bytes, "min.gguf"));
  REQUIRE(src.ok());
  REQUIRE((*src)->tensors().size() == 1);
  const TensorInfo& info = (*src)->tensors()[0];
  CHECK(info.shape == std::vector<int64_t>{2});
  CHECK(info.dtype == DType::kF32);
  CHECK(info.nbytes == 8);
  CHECK(info.file_offset == 128);
  CHECK_FALSE((*src)->quantized(info));
  CHECK(ReadBytes(**src, info, 0, 8) == GgF32s({1.0f, 2.0f}));
  CHECK(ReadBytes(**src, info, 4, 4) == GgF32s({2.0f}));
  auto view = (*src)->View(info);
  REQUIRE(view.ok());
  CHECK(std::string(reinterpret_cast<const char*>(view->data()), view->size()) ==
        GgF32s({1.0f, 2.0f}));
  CHECK((*src)->metadata().at("general.architecture") == "llama");
  CHECK((*src)->Find("t") == &info);
  CHECK((*src)->Find("u") == nullptr);
  CHECK(LooksLikeGguf(*MakeMemorySource(bytes, "min.gguf")));
  CHECK_FALSE(LooksLikeGguf(*MakeMemorySource("GGU", "short")));
  CHECK_FALSE(LooksLikeGguf(*MakeMemorySource("GGUG" + bytes.substr(4), "ggug")));
}

TEST_CASE("GGUF: PlanGgufLayout reproduces the spec example's header bytes", "[formats][gguf]") {
  const std::string bytes = GgufSpecExampleBytes();
  std::vector<GgufKv> kvs = {{"general.architecture", GgufValue::String("llama")}};
  std::vector<GgufTensor> tensors(1);
  tensors[0].name = "t";
  tensors[0].ne = {2};
  tensors[0].type = static_cast<uint32_t>(GgmlType::kF32);
  auto layout = PlanGgufLayout(kvs, tensors);
  REQUIRE(layout.ok());
  CHECK(layout->header == bytes.substr(0, 128));
  CHECK(layout->file_size == 160);
  CHECK(tensors[0].offset == 0);
  CHECK(tensors[0].nbytes == 8);

  // The writer adds the data and its padding: the whole file, byte for byte.
  TempDir dir;
  const std::string path = dir.Join("min.gguf");
  GgufWriter writer(path, false);
  REQUIRE(writer.Begin(kvs, tensors).ok());
  REQUIRE(writer.WriteAt(0, 0, AsBytes(GgF32s({1.0f, 2.0f}))).ok());
  REQUIRE(writer.Finish().ok());
  CHECK(testing::ReadFileBytes(path) == bytes);
}

TEST_CASE("GGUF: PlanGgufLayout refuses what it cannot write", "[formats][gguf]") {
  auto plan = [](std::vector<GgufKv> kvs, std::vector<GgufTensor> tensors, uint32_t align = 32) {
    return PlanGgufLayout(kvs, tensors, align).status();
  };
  GgufTensor t;
  t.name = "t";
  t.ne = {2};
  const GgufKv arch{"general.architecture", GgufValue::String("llama")};
  CHECK(plan({arch}, {t}).ok());
  CHECK(plan({arch}, {t}, 48).code() == ErrorCode::kInvalidArgument);
  CHECK(plan({arch}, {t}, 0).code() == ErrorCode::kInvalidArgument);
  CHECK(plan({arch, arch}, {t}).code() == ErrorCode::kInvalidArgument);
  CHECK(plan({{"", GgufValue::Uint32(1)}}, {t}).code() == ErrorCode::kInvalidArgument);
  CHECK(plan({arch}, {t, t}).code() == ErrorCode::kInvalidArgument);
  GgufTensor bad = t;
  bad.name = std::string(64, 'n');
  CHECK(plan({arch}, {bad}).code() == ErrorCode::kInvalidArgument);
  bad.name = "";
  CHECK(plan({arch}, {bad}).code() == ErrorCode::kInvalidArgument);
  bad = t;
  bad.ne = {1, 1, 1, 1, 2};
  CHECK(plan({arch}, {bad}).code() == ErrorCode::kInvalidArgument);
  bad = t;
  bad.type = 4;  // removed Q4_2
  CHECK(plan({arch}, {bad}).code() == ErrorCode::kInvalidArgument);
  bad.type = static_cast<uint32_t>(GgmlType::kQ8_0);  // ne[0] = 2 is not a whole block
  CHECK(plan({arch}, {bad}).code() == ErrorCode::kInvalidArgument);
}

// ---- writer → reader ----

struct RoundTripFixture {
  std::vector<GgufKv> kvs;
  std::vector<GgufTensor> tensors;
  std::vector<std::string> data;  // stored bytes per tensor
};

RoundTripFixture EveryTypeFixture() {
  RoundTripFixture f;
  f.kvs = {
      {"general.architecture", GgufValue::String("llama")},
      {"test.u8", ScalarValue<uint8_t>(GgufValueType::kU8, 200)},
      {"test.i8", ScalarValue<int8_t>(GgufValueType::kI8, -5)},
      {"test.u16", ScalarValue<uint16_t>(GgufValueType::kU16, 60000)},
      {"test.i16", ScalarValue<int16_t>(GgufValueType::kI16, -30000)},
      {"test.u32", GgufValue::Uint32(4000000000u)},
      {"test.i32", GgufValue::Int32(-2000000000)},
      {"test.f32", GgufValue::Float32(0.5f)},
      {"test.bool", GgufValue::Bool(true)},
      {"test.u64", ScalarValue<uint64_t>(GgufValueType::kU64, (uint64_t{1} << 63) + 5)},
      {"test.i64", ScalarValue<int64_t>(GgufValueType::kI64, -(int64_t{1} << 40))},
      {"test.f64", ScalarValue<double>(GgufValueType::kF64, 1e-5)},
      {"test.empty_string", GgufValue::String("")},
      {"tokenizer.ggml.tokens", GgufValue::StringArray({"<s>", "", "hello", "\xE2\x96\x81x"})},
      {"tokenizer.ggml.scores",
       GgufValue::Float32Array(std::vector<float>{0.0f, -1.5f, 2.25f, 1e30f})},
      {"tokenizer.ggml.token_type", GgufValue::Int32Array(std::vector<int32_t>{3, 1, 1, -7})},
      {"test.empty_array", GgufValue::Float32Array(std::vector<float>{})},
  };
  auto add = [&f](std::string name, std::vector<int64_t> ne, GgmlType type, std::string bytes) {
    GgufTensor t;
    t.name = std::move(name);
    t.ne = std::move(ne);
    t.type = static_cast<uint32_t>(type);
    f.tensors.push_back(std::move(t));
    f.data.push_back(std::move(bytes));
  };
  std::string f32;
  for (int i = 0; i < 6; ++i) f32 += GgLe<float>(static_cast<float>(i) - 2.5f);
  add("blk.0.f32", {3, 2}, GgmlType::kF32, f32);                            // torch [2, 3]
  add("blk.0.f16", {4}, GgmlType::kF16,
      std::string("\x00\x3c\x00\xc0\x00\x00\xff\x7b", 8));  // 1, -2, 0, 65504
  add("blk.0.bf16", {2, 2}, GgmlType::kBF16, std::string("\x80\x3f\x00\x40\x40\x40\x80\xbf", 8));
  add("blk.0.i32", {3}, GgmlType::kI32, GgLe<int32_t>(7) + GgLe<int32_t>(-1) + GgLe<int32_t>(0));
  // Q8_0, torch [2, 32]: two blocks of (f16 d, 32 × int8).
  std::string q8;
  for (int block = 0; block < 2; ++block) {
    q8 += block == 0 ? std::string("\x00\x38", 2) : std::string("\x00\x3c", 2);  // d = 0.5, 1
    for (int j = 0; j < 32; ++j) q8 += static_cast<char>(j - 16 + block);
  }
  add("blk.0.q8_0", {32, 2}, GgmlType::kQ8_0, q8);
  add("empty", {0, 3}, GgmlType::kF32, "");
  return f;
}

// Writes `f` to `path` with `alignment`; returns the tensors with offsets.
std::vector<GgufTensor> WriteFixture(const RoundTripFixture& f, const std::string& path,
                                     uint32_t alignment = kGgufDefaultAlignment) {
  GgufWriter writer(path, false);
  const Status begun = writer.Begin(f.kvs, f.tensors, alignment);
  INFO(begun.ToString());
  REQUIRE(begun.ok());
  for (size_t i = 0; i < f.data.size(); ++i) {
    // In two pieces, second first, as concurrent writers may do.
    const std::string& d = f.data[i];
    const size_t half = d.size() / 2;
    REQUIRE(writer.WriteAt(i, half, AsBytes(d.substr(half))).ok());
    if (half > 0) REQUIRE(writer.WriteAt(i, 0, AsBytes(d.substr(0, half))).ok());
  }
  REQUIRE(writer.Finish().ok());
  return writer.tensors();
}

// The GgufSource of `path` through every read mode.
std::vector<std::unique_ptr<GgufSource>> OpenEveryWay(const std::string& path) {
  std::vector<std::unique_ptr<GgufSource>> out;
  for (FileAccess access : {FileAccess::kMmap, FileAccess::kPread}) {
    auto src = GgufSource::OpenFile(path, access);
    INFO(src.status().ToString());
    REQUIRE(src.ok());
    out.push_back(std::move(*src));
  }
  auto mem = GgufSource::Open(MakeMemorySource(testing::ReadFileBytes(path), path));
  REQUIRE(mem.ok());
  out.push_back(std::move(*mem));
  return out;
}

TEST_CASE("GGUF: writer and reader round trip every type", "[formats][gguf]") {
  const RoundTripFixture f = EveryTypeFixture();
  TempDir dir;
  const std::string path = dir.Join("every.gguf");
  const std::vector<GgufTensor> written = WriteFixture(f, path);
  const std::vector<std::unique_ptr<GgufSource>> sources = OpenEveryWay(path);
  for (size_t mode = 0; mode < sources.size(); ++mode) {
    INFO("read mode " << mode);
    GgufSource& src = *sources[mode];
    const GgufHeader& h = src.header();
    CHECK(h.version == 3);
    CHECK(h.alignment == 32);
    CHECK(h.data_offset % 32 == 0);
    CHECK(h.data_offset + written.back().offset + written.back().nbytes <=
          std::filesystem::file_size(path));

    // Metadata: same keys, order, types and bytes.
    REQUIRE(h.kvs.size() == f.kvs.size());
    for (size_t i = 0; i < f.kvs.size(); ++i) {
      INFO(f.kvs[i].key);
      CHECK(h.kvs[i].key == f.kvs[i].key);
      CHECK(h.kvs[i].value.type == f.kvs[i].value.type);
      CHECK(h.kvs[i].value.elem_type == f.kvs[i].value.elem_type);
      CHECK(h.kvs[i].value.count == f.kvs[i].value.count);
      CHECK(h.kvs[i].value.raw == f.kvs[i].value.raw);
      CHECK(h.kvs[i].value.strings == f.kvs[i].value.strings);
    }
    CHECK(h.Find("test.u8")->AsUint() == 200u);
    CHECK(h.Find("test.i8")->AsInt() == -5);
    CHECK_FALSE(h.Find("test.i8")->AsUint().has_value());
    CHECK(h.Find("test.u16")->AsUint() == 60000u);
    CHECK(h.Find("test.i16")->AsInt() == -30000);
    CHECK(h.Find("test.u32")->AsUint() == 4000000000u);
    CHECK(h.Find("test.i32")->AsInt() == -2000000000);
    CHECK(h.Find("test.f32")->AsFloat() == 0.5);
    CHECK(h.Find("test.bool")->Describe() == "true");
    CHECK_FALSE(h.Find("test.bool")->AsInt().has_value());
    CHECK(h.Find("test.u64")->AsUint() == (uint64_t{1} << 63) + 5);
    CHECK_FALSE(h.Find("test.u64")->AsInt().has_value());
    CHECK(h.Find("test.i64")->AsInt() == -(int64_t{1} << 40));
    CHECK(h.Find("test.f64")->AsFloat() == 1e-5);
    CHECK(h.Find("test.f64")->Describe() == "1e-05");
    CHECK(*h.Find("test.empty_string")->AsString() == "");
    CHECK(h.Find("tokenizer.ggml.tokens")->strings[3] == "\xE2\x96\x81x");
    CHECK(h.Find("tokenizer.ggml.tokens")->Describe() == "[4 × string]");
    CHECK(h.Find("tokenizer.ggml.scores")->raw == GgF32s({0.0f, -1.5f, 2.25f, 1e30f}));
    CHECK(h.Find("test.empty_array")->count == 0);
    CHECK(src.metadata().at("test.u32") == "4000000000");
    CHECK(src.metadata().at("general.architecture") == "llama");
    CHECK(src.metadata().count("tokenizer.ggml.tokens") == 0);  // arrays are not listed

    // Tensors: torch-order shapes, plain dtypes, offsets as planned, data back.
    REQUIRE(src.tensors().size() == f.tensors.size());
    const std::vector<std::vector<int64_t>> shapes = {{2, 3}, {4}, {2, 2}, {3}, {2, 32}, {3, 0}};
    const std::vector<DType> dtypes = {DType::kF32, DType::kF16, DType::kBF16,
                                       DType::kI32, DType::kF32, DType::kF32};
    for (size_t i = 0; i < f.tensors.size(); ++i) {
      const TensorInfo& info = src.tensors()[i];
      INFO(info.name);
      CHECK(info.name == f.tensors[i].name);
      CHECK(info.shape == shapes[i]);
      CHECK(info.dtype == dtypes[i]);
      CHECK(src.gguf_tensor(info).ne == f.tensors[i].ne);
      CHECK(src.gguf_tensor(info).offset == written[i].offset);
      CHECK(src.gguf_tensor(info).nbytes == f.data[i].size());
      CHECK(info.file_offset == h.data_offset + written[i].offset);
      CHECK(info.file_offset % 32 == 0);
      CHECK(ReadBytes(src, info, 0, f.data[i].size(), /*raw=*/true) == f.data[i]);
      if (!src.quantized(info)) {
        CHECK(info.nbytes == f.data[i].size());
        CHECK(ReadBytes(src, info, 0, f.data[i].size()) == f.data[i]);
      }
    }
    const TensorInfo& q8 = *src.Find("blk.0.q8_0");
    CHECK(src.quantized(q8));
    CHECK(src.gguf_tensor(q8).type == static_cast<uint32_t>(GgmlType::kQ8_0));
    CHECK(q8.nbytes == 64 * 4);  // the logical F32 size
    CHECK(src.gguf_tensor(q8).nbytes == 68);
    // ReadRaw: the second block alone, and its scale.
    CHECK(ReadBytes(src, q8, 34, 34, true) == f.data[4].substr(34));
    CHECK(ReadBytes(src, q8, 34, 2, true) == std::string("\x00\x3c", 2));
    std::vector<uint8_t> buf(4);
    const Status refused = src.Read(q8, 0, buf);
    CHECK(refused.code() == ErrorCode::kUnsupported);
    CHECK(refused.message().find("tensor 'blk.0.q8_0' is Q8_0-quantized") != std::string::npos);
    CHECK(src.View(q8).status().code() == ErrorCode::kUnsupported);
    // Bounds.
    std::vector<uint8_t> two(2);
    CHECK(src.ReadRaw(q8, 67, two).code() == ErrorCode::kInvalidArgument);
    CHECK(src.ReadRaw(q8, UINT64_MAX, two).code() == ErrorCode::kInvalidArgument);
    const TensorInfo& f32 = *src.Find("blk.0.f32");
    CHECK(src.Read(f32, 23, two).code() == ErrorCode::kInvalidArgument);
    CHECK_FALSE(src.quantized(f32));
    auto view = src.View(f32);
    REQUIRE(view.ok());
    CHECK(view->size() == 24);
    src.Release(f32, 0, 24);
    CHECK(ReadBytes(src, f32, 20, 4) == GgLe<float>(2.5f));
  }
}

TEST_CASE("GGUF: alignment 64 is honoured by the writer and the reader", "[formats][gguf]") {
  const RoundTripFixture f = EveryTypeFixture();
  TempDir dir;
  SECTION("given as the layout alignment") {
    const std::string path = dir.Join("a64.gguf");
    const std::vector<GgufTensor> written = WriteFixture(f, path, 64);
    for (size_t i = 1; i < written.size(); ++i) {
      CHECK(written[i].offset % 64 == 0);
      CHECK(written[i].offset >= written[i - 1].offset + written[i - 1].nbytes);
    }
    for (const auto& src : OpenEveryWay(path)) {
      const GgufHeader& h = src->header();
      CHECK(h.alignment == 64);
      // The file says so: readers find the alignment in general.alignment.
      REQUIRE(h.Find("general.alignment") != nullptr);
      CHECK(h.Find("general.alignment")->type == GgufValueType::kU32);
      CHECK(h.Find("general.alignment")->AsUint() == 64u);
      CHECK(h.data_offset % 64 == 0);
      for (size_t i = 0; i < f.tensors.size(); ++i) {
        const TensorInfo& info = src->tensors()[i];
        CHECK(info.file_offset % 64 == 0);
        CHECK(ReadBytes(*src, info, 0, f.data[i].size(), true) == f.data[i]);
      }
    }
    const uint64_t last = written.back().offset + written.back().nbytes;
    CHECK(std::filesystem::file_size(path) % 64 == 0);
    CHECK(std::filesystem::file_size(path) >= last);
  }
  SECTION("given as general.alignment too") {
    RoundTripFixture g = f;
    g.kvs.push_back({"general.alignment", GgufValue::Uint32(64)});
    const std::string path = dir.Join("a64kv.gguf");
    WriteFixture(g, path, 64);
    for (const auto& src : OpenEveryWay(path)) {
      CHECK(src->header().alignment == 64);
      CHECK(src->header().kvs.size() == g.kvs.size());  // not written twice
    }
  }
  SECTION("a general.alignment that contradicts the layout is refused") {
    RoundTripFixture g = f;
    g.kvs.push_back({"general.alignment", GgufValue::Uint32(64)});
    std::vector<GgufTensor> tensors = g.tensors;
    auto layout = PlanGgufLayout(g.kvs, tensors, 32);
    REQUIRE_FALSE(layout.ok());
    CHECK(layout.status().code() == ErrorCode::kInvalidArgument);
    CHECK(layout.status().message().find("general.alignment") != std::string::npos);
    g.kvs.back().value = GgufValue::Int32(64);  // the wrong type
    CHECK(PlanGgufLayout(g.kvs, tensors, 64).status().code() == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("GGUF: version 2 files are read like version 3", "[formats][gguf]") {
  GgufBuilder b;
  b.Version(2).KvString("general.architecture", "llama");
  b.Tensor("t", {2}, 0, GgF32s({1.0f, 2.0f}));
  auto h = ReadGgufHeader(*MakeMemorySource(b.Build(), "v2.gguf"));
  REQUIRE(h.ok());
  CHECK(h->version == 2);
  CHECK(h->tensors.size() == 1);
}

// ---- malformed files (§7, cases 49-65) ----

TEST_CASE("GGUF: the malformed table covers §7 cases 49-65", "[formats][gguf]") {
  std::set<std::string> ids;
  std::set<int> numbers;
  for (const GgufMalformedCase& c : MalformedGgufCases()) {
    CHECK(ids.insert(c.id).second);
    CHECK_FALSE(c.expected_substring.empty());
    numbers.insert(std::stoi(c.id.substr(0, 2)));
  }
  for (int n = 49; n <= 65; ++n) {
    INFO("case " << n);
    CHECK(numbers.count(n) == 1);
  }
  CHECK(numbers.size() == 17);
}

void CheckRefused(const GgufMalformedCase& c, const Status& s, const std::string& file) {
  INFO(c.id << ": " << s.ToString());
  CHECK(s.code() == c.code);
  CHECK(s.message().rfind(file + ": ", 0) == 0);
  CHECK(s.message().find(c.expected_substring) != std::string::npos);
  if (c.byte) {
    CHECK(s.message().rfind(file + ": byte " + std::to_string(*c.byte) + ": ", 0) == 0);
  }
}

TEST_CASE("GGUF: malformed files are refused (memory source)", "[formats][gguf]") {
  for (const GgufMalformedCase& c : MalformedGgufCases()) {
    DYNAMIC_SECTION(c.id) {
      auto header = ReadGgufHeader(*MakeMemorySource(c.bytes, "bad.gguf"));
      REQUIRE_FALSE(header.ok());
      CheckRefused(c, header.status(), "bad.gguf");
      // The source agrees.
      auto src = GgufSource::Open(MakeMemorySource(c.bytes, "bad.gguf"));
      REQUIRE_FALSE(src.ok());
      CHECK(src.status().message() == header.status().message());
    }
  }
}

TEST_CASE("GGUF: malformed files are refused (file sources)", "[formats][gguf]") {
  TempDir dir;
  const std::string path = dir.Join("bad.gguf");
  for (const GgufMalformedCase& c : MalformedGgufCases()) {
    testing::WriteFileBytes(path, c.bytes);
    for (FileAccess access : {FileAccess::kMmap, FileAccess::kPread}) {
      INFO((access == FileAccess::kMmap ? "mmap" : "pread"));
      auto src = GgufSource::OpenFile(path, access);
      REQUIRE_FALSE(src.ok());
      CheckRefused(c, src.status(), path);
    }
  }
}

TEST_CASE("GGUF: full messages name the file the byte and the rule", "[formats][gguf]") {
  auto message = [](const std::string& bytes) {
    auto r = ReadGgufHeader(*MakeMemorySource(bytes, "m.gguf"));
    REQUIRE_FALSE(r.ok());
    return r.status().message();
  };
  GgufBuilder base;
  base.KvString("general.architecture", "llama");
  base.Tensor("t", {2}, 0, GgF32s({1.0f, 2.0f}));
  CHECK(message(GgufBuilder(base).Magic("GGUG").Build()) ==
        "m.gguf: byte 0: bad magic 'GGUG' (a GGUF file starts with 'GGUF')");
  CHECK(message(GgufBuilder(base).Version(0x03000000).Build()) ==
        "m.gguf: byte 4: version 50331648 reads byte-swapped: a big-endian GGUF file, which alloy "
        "does not read");
  CHECK(message(GgufBuilder(base).TruncateAt(135).Build()) ==
        "m.gguf: tensor 't': data [128, +8) is not within the file's 135 bytes (truncated or "
        "corrupt)");
  GgufBuilder q(base);
  q.Tensor("blk.0.ffn\n", {48}, static_cast<uint32_t>(GgmlType::kQ4_0), "");
  CHECK(message(q.Build()) ==
        "m.gguf: byte 102: tensor 'blk.0.ffn\\x0a': row length 48 is not a multiple of Q4_0's "
        "block of 32");
  GgufBuilder hole(base);
  hole.Tensor("u", {2}, 0, GgF32s({3.0f, 4.0f})).offset = 64;
  CHECK(message(hole.Build()) ==
        "m.gguf: tensor 'u': data offset 64 but the previous tensors end at 32 (tensors must be "
        "back to back, each padded to 32 bytes)");
}

// ---- huge lengths and counts: refused before anything is allocated ----

TEST_CASE("GGUF: a string length of 2^63 fails fast", "[formats][gguf]") {
  // The file claims 2^64 - 1 bytes, so only the 1 GiB cap stands in the way.
  const std::string prefix = Preamble(0, 1) + GgString("k") + GgLe<uint32_t>(testing::kGgString) +
                             GgLe<uint64_t>(uint64_t{1} << 63);
  SparseSource src(prefix, UINT64_MAX, 'x');
  auto h = ReadGgufHeader(src);
  REQUIRE_FALSE(h.ok());
  CHECK(h.status().code() == ErrorCode::kCorrupt);
  CHECK(h.status().message().find("byte 37: metadata string length 9223372036854775808 exceeds") !=
        std::string::npos);
  CHECK(src.bytes_read() <= (uint64_t{1} << 20));  // one read window, no scan
}

TEST_CASE("GGUF: an array count of 2^62 fails fast", "[formats][gguf]") {
  for (uint32_t elem : {testing::kGgU8, testing::kGgString, testing::kGgF64}) {
    INFO("element type " << elem);
    const std::string prefix = Preamble(0, 1) + GgString("k") +
                               GgLe<uint32_t>(testing::kGgArray) +
                               GgArray(elem, uint64_t{1} << 62, "");
    SparseSource src(prefix, UINT64_MAX, '\0');
    auto h = ReadGgufHeader(src);
    REQUIRE_FALSE(h.ok());
    CHECK(h.status().code() == ErrorCode::kCorrupt);
    CHECK(h.status().message().find("byte 41: metadata 'k': array of 4611686018427387904 elements "
                                    "exceeds") != std::string::npos);
    CHECK(src.bytes_read() <= (uint64_t{1} << 20));
  }
}

TEST_CASE("GGUF: huge counts in a huge file allocate nothing up front", "[formats][gguf]") {
  // A 1 TiB file (nothing behind it: 0xFF after the preamble) whose counts
  // pass the bytes-left test; the first record is garbage, so the reader must
  // stop there instead of reserving memory for billions of records.
  const uint64_t size = uint64_t{1} << 40;
  SECTION("metadata count") {
    SparseSource src(Preamble(0, static_cast<int64_t>(size / 14 - 2)), size, '\xFF');
    auto h = ReadGgufHeader(src);
    REQUIRE_FALSE(h.ok());
    CHECK(h.status().code() == ErrorCode::kCorrupt);
    CHECK(h.status().message().find("byte 24: metadata key length 18446744073709551615 exceeds") !=
          std::string::npos);
  }
  SECTION("tensor count") {
    SparseSource src(Preamble(static_cast<int64_t>(size / 25 - 2), 0), size, '\xFF');
    auto h = ReadGgufHeader(src);
    REQUIRE_FALSE(h.ok());
    CHECK(h.status().code() == ErrorCode::kCorrupt);
    CHECK(h.status().message().find("byte 24: tensor name length 18446744073709551615 exceeds") !=
          std::string::npos);
  }
  SECTION("string array count at the 2^30 cap") {
    SparseSource src(Preamble(0, 1) + GgString("tokenizer.ggml.tokens") +
                         GgLe<uint32_t>(testing::kGgArray) +
                         GgArray(testing::kGgString, uint64_t{1} << 30, ""),
                     size, '\xFF');
    auto h = ReadGgufHeader(src);
    REQUIRE_FALSE(h.ok());
    CHECK(h.status().code() == ErrorCode::kCorrupt);
    CHECK(h.status().message().find("byte 69: array string length 18446744073709551615 exceeds") !=
          std::string::npos);
  }
}

// ---- truncations and mutations ----

// Parses `bytes`; if it parses, reads a little of every tensor. Never crashes.
Status ParseAndTouch(const std::string& bytes) {
  auto src = GgufSource::Open(MakeMemorySource(bytes, "cut.gguf"));
  if (!src.ok()) return src.status();
  for (const TensorInfo& info : (*src)->tensors()) {
    const uint64_t stored = (*src)->gguf_tensor(info).nbytes;
    std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(stored, 8)));
    CHECK((*src)->ReadRaw(info, 0, buf).ok());
    if (!(*src)->quantized(info)) CHECK((*src)->Read(info, 0, buf).ok());
  }
  return Status::OK();
}

TEST_CASE("GGUF: truncating a valid file at every byte fails cleanly", "[formats][gguf]") {
  // Every KV type and a tensor of each kind; the last tensor fills its
  // 32-byte slot exactly, so every proper prefix misses some required byte.
  RoundTripFixture f = EveryTypeFixture();
  GgufTensor last;
  last.name = "last";
  last.ne = {8};
  last.type = static_cast<uint32_t>(GgmlType::kF32);
  f.tensors.push_back(last);
  f.data.push_back(GgF32s({1, 2, 3, 4, 5, 6, 7, 8}));
  TempDir dir;
  const std::string path = dir.Join("full.gguf");
  WriteFixture(f, path);
  const std::string bytes = testing::ReadFileBytes(path);
  REQUIRE(ParseAndTouch(bytes).ok());
  for (size_t len = 0; len < bytes.size(); ++len) {
    const Status s = ParseAndTouch(bytes.substr(0, len));
    INFO("cut at " << len << ": " << s.ToString());
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == ErrorCode::kCorrupt);
  }
}

TEST_CASE("GGUF: the last tensor's trailing padding is not required", "[formats][gguf]") {
  // Like llama.cpp's bound (data_offset + offset + nbytes <= file size): the
  // spec example cut anywhere in its last 24 padding bytes still parses, and
  // one byte into the data it does not.
  const std::string bytes = GgufSpecExampleBytes();
  for (size_t len = 0; len < bytes.size(); ++len) {
    const Status s = ParseAndTouch(bytes.substr(0, len));
    INFO("cut at " << len << ": " << s.ToString());
    if (len >= 136) {
      CHECK(s.ok());
    } else {
      CHECK(s.code() == ErrorCode::kCorrupt);
    }
  }
}

TEST_CASE("GGUF: random byte mutations never crash the reader", "[formats][gguf]") {
  std::vector<std::string> seeds = {GgufSpecExampleBytes()};
  for (const GgufMalformedCase& c : MalformedGgufCases()) {
    if (c.bytes.size() < 400) seeds.push_back(c.bytes);
  }
  std::mt19937 rng(4321);
  const char interesting[] = {'\0', '\x01', '\x02', '\x03', '\x04', '\x08', '\x09',
                              '\x20', '\x40', '\x7f', '\x80', '\xff'};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = seeds[static_cast<size_t>(iter) % seeds.size()];
    if (bytes.empty()) continue;
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < n; ++m) {
      const size_t pos = rng() % bytes.size();
      bytes[pos] = rng() % 2 ? static_cast<char>(rng() & 0xFF)
                             : interesting[rng() % sizeof(interesting)];
    }
    const Status s = ParseAndTouch(bytes);
    if (!s.ok()) CHECK((s.code() == ErrorCode::kCorrupt || s.code() == ErrorCode::kUnsupported));
  }
}

// ---- fuzz regressions (tests/fuzz/regressions/gguf_fuzz/) ----

TEST_CASE("GGUF: a zero dim does not hide an element count overflow", "[formats][gguf]") {
  // gguf_fuzz found this 200-byte file: a Q2_K tensor with ne [0, 2^51,
  // 94516574382362] passed the reader (0 elements in GGUF order), then
  // GgufSource::Open threw std::bad_variant_access from CheckedNumel of the
  // torch-order shape, whose partial product overflows before the 0.
  const std::string crash(
      "\x47\x47\x55\x46\x03\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00"
      "\x02\x00\x00\x00\x00\x00\x00\x00\x14\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x14\x00\x00\x00\x00\x00\x00\x00\x67\x65\x6e\x65"
      "\x72\x61\x72\x65\x08\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00"
      "\x6c\x6c\x61\x6d\x61\x11\x00\x00\x00\x00\x00\x00\x00\x67\x1f\x00"
      "\x00\x00\x61\x6c\x2e\x61\xb2\x69\x67\x6e\x6d\x65\x6e\x74\x04\x00"
      "\x00\x00\x40\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x03"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x08\x00\x1a\x69\xd7\x5a\xf6\x55\x00\x00\x0a\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x44\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00",
      200);
  auto src = GgufSource::Open(MakeMemorySource(crash, "crash.gguf"));
  REQUIRE_FALSE(src.ok());
  CHECK(src.status().code() == ErrorCode::kCorrupt);
  CHECK(src.status().message().find("tensor '\\x00': element count of [0, 2251799813685248, "
                                    "94516574382362] overflows int64") != std::string::npos);
  // The same shape made by hand, for a plain type too.
  for (uint32_t type : {0u, 10u}) {
    GgufBuilder b;
    b.Tensor("z", {0, int64_t{1} << 51, int64_t{1} << 47}, type, "");
    auto h = ReadGgufHeader(*MakeMemorySource(b.Build(), "z.gguf"));
    REQUIRE_FALSE(h.ok());
    CHECK(h.status().message().find("byte 24: tensor 'z': element count") != std::string::npos);
  }
  // A zero dim with a product of the others that fits is fine in either order.
  GgufBuilder ok;
  ok.Tensor("z", {0, int64_t{1} << 40, int64_t{1} << 20}, 10, "");
  auto opened = GgufSource::Open(MakeMemorySource(ok.Build(), "ok.gguf"));
  REQUIRE(opened.ok());
  const std::vector<int64_t> torch_shape = {int64_t{1} << 20, int64_t{1} << 40, 0};
  CHECK((*opened)->tensors()[0].shape == torch_shape);
  CHECK((*opened)->tensors()[0].nbytes == 0);
}

// ---- the type table (§4.3) ----

TEST_CASE("GGUF: GgmlTypeTraitsOf matches the spec's type table", "[formats][gguf]") {
  struct Row {
    uint32_t id;
    const char* name;
    uint32_t block_elems, block_bytes;
  };
  // checkpoint-formats.md §4.3; removed ids have block size 0.
  const Row rows[] = {
      {0, "F32", 1, 4},        {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
      {3, "Q4_1", 32, 20},     {4, "Q4_2", 0, 0},        {5, "Q4_3", 0, 0},
      {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},
      {9, "Q8_1", 32, 36},     {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},
      {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},   {14, "Q6_K", 256, 210},
      {15, "Q8_K", 256, 292},  {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
      {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},  {20, "IQ4_NL", 32, 18},
      {21, "IQ3_S", 256, 110}, {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136},
      {24, "I8", 1, 1},        {25, "I16", 1, 2},        {26, "I32", 1, 4},
      {27, "I64", 1, 8},       {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
      {30, "BF16", 1, 2},      {31, "Q4_0_4_4", 0, 0},   {32, "Q4_0_4_8", 0, 0},
      {33, "Q4_0_8_8", 0, 0},  {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},
      {36, "IQ4_NL_4_4", 0, 0}, {37, "IQ4_NL_4_8", 0, 0}, {38, "IQ4_NL_8_8", 0, 0},
      {39, "MXFP4", 32, 17},   {40, "NVFP4", 64, 36},    {41, "Q1_0", 128, 18},
      {42, "Q2_0", 64, 18},
  };
  REQUIRE(std::size(rows) == kGgmlTypeCount);
  for (const Row& r : rows) {
    INFO("type " << r.id);
    const GgmlTypeTraits t = GgmlTypeTraitsOf(r.id);
    CHECK(t.name == r.name);
    CHECK(t.block_elems == r.block_elems);
    CHECK(t.block_bytes == r.block_bytes);
    CHECK(GgmlTypeName(r.id) == r.name);
  }
  for (uint32_t id : {43u, 99u, 0xFFFFFFFFu}) {
    CHECK(GgmlTypeTraitsOf(id).name.empty());
    CHECK(GgmlTypeTraitsOf(id).block_elems == 0);
  }
  CHECK(GgmlTypeName(99) == "type 99");
  // The enum holds the file ids.
  CHECK(static_cast<uint32_t>(GgmlType::kQ8_0) == 8);
  CHECK(static_cast<uint32_t>(GgmlType::kBF16) == 30);
  CHECK(static_cast<uint32_t>(GgmlType::kQ6_K) == 14);
}

TEST_CASE("GGUF: ParseGgmlTypeName and the plain dtypes", "[formats][gguf]") {
  CHECK(ParseGgmlTypeName("q8_0") == GgmlType::kQ8_0);
  CHECK(ParseGgmlTypeName("Q4_0") == GgmlType::kQ4_0);
  CHECK(ParseGgmlTypeName("q4_k") == GgmlType::kQ4_K);
  CHECK(ParseGgmlTypeName("f16") == GgmlType::kF16);
  CHECK(ParseGgmlTypeName("Bf16") == GgmlType::kBF16);
  CHECK(ParseGgmlTypeName("F32") == GgmlType::kF32);
  CHECK_FALSE(ParseGgmlTypeName("q4_2").has_value());  // removed
  CHECK_FALSE(ParseGgmlTypeName("").has_value());
  CHECK_FALSE(ParseGgmlTypeName("q8").has_value());
  CHECK_FALSE(ParseGgmlTypeName("fp16").has_value());

  const std::pair<GgmlType, DType> plain[] = {
      {GgmlType::kF32, DType::kF32}, {GgmlType::kF16, DType::kF16}, {GgmlType::kBF16, DType::kBF16},
      {GgmlType::kF64, DType::kF64}, {GgmlType::kI8, DType::kI8},   {GgmlType::kI16, DType::kI16},
      {GgmlType::kI32, DType::kI32}, {GgmlType::kI64, DType::kI64}};
  for (const auto& [g, d] : plain) {
    CHECK(GgmlPlainDType(static_cast<uint32_t>(g)) == d);
    CHECK(GgmlTypeOfDType(d) == g);
  }
  CHECK_FALSE(GgmlPlainDType(static_cast<uint32_t>(GgmlType::kQ8_0)).has_value());
  CHECK_FALSE(GgmlPlainDType(4).has_value());
  CHECK_FALSE(GgmlTypeOfDType(DType::kU8).has_value());
  CHECK_FALSE(GgmlTypeOfDType(DType::kF8_E4M3).has_value());
}

TEST_CASE("GGUF: GgmlByteSize", "[formats][gguf]") {
  auto size = [](GgmlType type, std::vector<int64_t> ne) {
    return GgmlByteSize(static_cast<uint32_t>(type), ne);
  };
  CHECK(*size(GgmlType::kF32, {3, 2}) == 24);
  CHECK(*size(GgmlType::kF32, {}) == 4);  // a scalar
  CHECK(*size(GgmlType::kF16, {0, 5}) == 0);
  CHECK(*size(GgmlType::kBF16, {7}) == 14);
  CHECK(*size(GgmlType::kQ8_0, {64, 2}) == 4 * 34);
  CHECK(*size(GgmlType::kQ4_0, {32}) == 18);
  CHECK(*size(GgmlType::kQ4_K, {256, 3, 2}) == 6 * 144);
  CHECK(*size(GgmlType::kQ6_K, {512}) == 2 * 210);
  auto fails = [](Result<uint64_t> r, const std::string& what) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kCorrupt);
    CHECK(r.status().message().find(what) != std::string::npos);
  };
  fails(size(GgmlType::kQ4_0, {48}), "row length 48 is not a multiple of Q4_0's block of 32");
  fails(size(GgmlType::kQ8_0, {}), "row length 1 is not a multiple");
  fails(size(GgmlType::kF32, {2, -3}), "negative dimension -3");
  fails(size(GgmlType::kF32, {int64_t{1} << 32, int64_t{1} << 31}), "overflows int64");
  fails(size(GgmlType::kF32, {0, int64_t{1} << 51, int64_t{1} << 47}), "overflows int64");
  CHECK(*size(GgmlType::kF32, {0, int64_t{1} << 40, int64_t{1} << 20}) == 0);
  fails(GgmlByteSize(4, std::vector<int64_t>{32}), "unknown or removed type Q4_2");
  fails(GgmlByteSize(43, std::vector<int64_t>{32}), "unknown or removed type type 43");
  // numel fits in int64 but the byte size does not.
  fails(size(GgmlType::kF64, {int64_t{1} << 62}), "overflows");
}

}  // namespace
}  // namespace alloy::formats

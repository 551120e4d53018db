#include "formats/safetensors_writer.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <thread>

#include "formats/safetensors_reader.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::formats {
namespace {

using testing::FixtureTensor;
using testing::InfoOf;
using testing::PatternTensor;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::WriteSafetensorsFixture;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string Le64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(v >> (8 * i));
  return out;
}

std::string F32(std::initializer_list<float> values) {
  std::string out;
  for (float f : values) {
    char b[4];
    std::memcpy(b, &f, 4);
    out.append(b, 4);
  }
  return out;
}

TensorInfo Info(std::string name, DType dtype, std::vector<int64_t> shape) {
  auto info = MakeTensorInfo(std::move(name), dtype, std::move(shape));
  REQUIRE(info.ok());
  return *info;
}

// The header JSON (without the length prefix and padding).
std::string HeaderJson(const SafetensorsLayout& layout) {
  std::string json = layout.header.substr(8);
  while (!json.empty() && json.back() == ' ') json.pop_back();
  return json;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST_CASE("writer reproduces the worked example of §1.1 byte for byte", "[formats][writer]") {
  TempDir tmp;
  const std::string path = tmp.Join("w.safetensors");
  WriteSafetensorsFixture(path, {{"w", DType::kF32, {2}, F32({1.0f, 2.0f})}});
  // §1.1's JSON is `{"w":{...}}`; the writer always adds {"format":"pt"}
  // (§1.7 rule 8) in front of it, so N grows from 56 to 88.
  const std::string tensor_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string json = R"({"__metadata__":{"format":"pt"},)" + tensor_entry + "}";
  REQUIRE(json.size() == 85);
  const std::string expected =
      Le64(88) + json + "   " + std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
  CHECK(ReadFileBytes(path) == expected);
  CHECK(expected.size() == 104);
}

TEST_CASE("layout of the worked example", "[formats][writer]") {
  auto layout = PlanSafetensorsLayout({Info("w", DType::kF32, {2})}, {});
  REQUIRE(layout.ok());
  CHECK(layout->header.size() == 96);
  CHECK(layout->header.substr(0, 8) == Le64(88));
  CHECK(layout->data_offsets == std::vector<uint64_t>{0});
  CHECK(layout->file_size == 104);
}

TEST_CASE("tensors are ordered by dtype descending, then name byte-wise", "[formats][writer]") {
  const std::vector<TensorInfo> tensors = {
      Info("b", DType::kBF16, {2}),       Info("a", DType::kF32, {1}), Info("z", DType::kU8, {3}),
      Info("c", DType::kF32, {2}),        Info("m", DType::kI64, {1}), Info("B", DType::kBF16, {1}),
      Info("\xc3\xa9", DType::kF32, {1}),  // "é" (0xC3) sorts after ASCII
  };
  auto layout = PlanSafetensorsLayout(tensors, {});
  REQUIRE(layout.ok());
  // Data order: m(I64, 8) a(F32, 4) c(F32, 8) é(F32, 4) B(BF16, 2) b(BF16, 4) z(U8, 3).
  CHECK(layout->data_offsets == std::vector<uint64_t>{26, 8, 30, 12, 0, 24, 20});
  const std::string json = HeaderJson(*layout);
  const std::vector<std::string> keys = {"\"m\"", "\"a\"", "\"c\"", "\"\xc3\xa9\"",
                                         "\"B\"", "\"b\"", "\"z\""};
  size_t last = 0;
  for (const std::string& key : keys) {
    const size_t at = json.find(key + ":{");
    INFO(key);
    REQUIRE(at != std::string::npos);
    CHECK(at > last);
    last = at;
  }
  CHECK(layout->file_size == layout->header.size() + 33);
}

TEST_CASE("metadata comes first, sorted, with format pt added", "[formats][writer]") {
  auto layout =
      PlanSafetensorsLayout({Info("w", DType::kF16, {1})}, {{"zeta", "1"}, {"alpha", "2"}});
  REQUIRE(layout.ok());
  CHECK(HeaderJson(*layout) == R"({"__metadata__":{"alpha":"2","format":"pt","zeta":"1"},)"
                               R"("w":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})");

  SECTION("an explicit format is kept") {
    auto mlx = PlanSafetensorsLayout({}, {{"format", "mlx"}});
    REQUIRE(mlx.ok());
    CHECK(HeaderJson(*mlx) == R"({"__metadata__":{"format":"mlx"}})");
  }
}

TEST_CASE("names are escaped like serde_json", "[formats][writer]") {
  const std::string name = std::string("q\"b\\n\nt\tc") + '\x01' + "\xc3\xa9\xf0\x9f\x98\x80/";
  auto layout = PlanSafetensorsLayout({Info(name, DType::kU8, {1})}, {{"k\"", "v\n"}});
  REQUIRE(layout.ok());
  CHECK(HeaderJson(*layout) ==
        "{\"__metadata__\":{\"format\":\"pt\",\"k\\\"\":\"v\\n\"},"
        "\"q\\\"b\\\\n\\nt\\tc\\u0001\xc3\xa9\xf0\x9f\x98\x80/\":"
        "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}");

  SECTION("invalid UTF-8 is refused") {
    auto bad = PlanSafetensorsLayout({Info("x\xff", DType::kU8, {1})}, {});
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(bad.status().message(), Catch::Contains("UTF-8"));
  }
}

TEST_CASE("header is space-padded to a multiple of 8", "[formats][writer]") {
  for (size_t len = 1; len <= 16; ++len) {
    auto layout = PlanSafetensorsLayout({Info(std::string(len, 'x'), DType::kF32, {})}, {});
    REQUIRE(layout.ok());
    const std::string& h = layout->header;
    CHECK(h.size() % 8 == 0);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(h[static_cast<size_t>(i)]);
    CHECK(n == h.size() - 8);
    const std::string json = HeaderJson(*layout);
    CHECK(json.back() == '}');
    CHECK(h.size() - 8 - json.size() < 8);
  }
}

TEST_CASE("case 29: a tensor called __metadata__ is refused", "[formats][writer]") {
  auto layout = PlanSafetensorsLayout({Info("__metadata__", DType::kF32, {1})}, {});
  REQUIRE_FALSE(layout.ok());
  CHECK(layout.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(layout.status().message(), Catch::Contains("__metadata__"));

  TempDir tmp;
  auto writer = MakeSafetensorsWriter(tmp.Join("m.safetensors"));
  Status st = writer->Begin({Info("__metadata__", DType::kF32, {1})}, {});
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK(ListDir(tmp.path()).empty());
}

TEST_CASE("bad tensor lists are refused", "[formats][writer]") {
  SECTION("duplicate name, same dtype") {
    auto r = PlanSafetensorsLayout({Info("w", DType::kF32, {1}), Info("w", DType::kF32, {2})}, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("duplicate tensor name 'w'"));
  }
  SECTION("duplicate name, different dtypes") {
    auto r = PlanSafetensorsLayout(
        {Info("w", DType::kF32, {1}), Info("v", DType::kF16, {1}), Info("w", DType::kI8, {2})}, {});
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains("duplicate tensor name 'w'"));
  }
  SECTION("empty name") {
    auto r = PlanSafetensorsLayout({Info("", DType::kF32, {1})}, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("empty tensor name"));
  }
  SECTION("nbytes disagrees with the shape") {
    TensorInfo t = Info("w", DType::kF32, {2, 3});
    t.nbytes = 23;
    auto r = PlanSafetensorsLayout({t}, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("tensor 'w': nbytes 23 disagrees"));
    CHECK_THAT(r.status().message(), Catch::Contains("24 bytes"));
  }
  SECTION("negative dimension") {
    TensorInfo t;
    t.name = "w";
    t.shape = {-1};
    auto r = PlanSafetensorsLayout({t}, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
  }
  SECTION("odd F4 element count") {
    TensorInfo t;
    t.name = "w";
    t.dtype = DType::kF4;
    t.shape = {3};
    auto r = PlanSafetensorsLayout({t}, {});
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains("tensor 'w'"));
  }
}

TEST_CASE("a header over 100 MB (kMaxSafetensorsHeaderBytes) is refused", "[formats][writer]") {
  // Built in place: fresh 100 MB allocations are slow on small machines.
  std::vector<TensorInfo> tensors(1);
  tensors[0].name.assign(kMaxSafetensorsHeaderBytes, 'n');
  tensors[0].dtype = DType::kU8;
  tensors[0].shape = {1};
  tensors[0].nbytes = 1;
  auto r = PlanSafetensorsLayout(tensors, {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(r.status().message(), Catch::Contains("exceeds the limit of 100000000"));
}

TEST_CASE("the output appears only at Finish", "[formats][writer]") {
  TempDir tmp;
  const std::string path = tmp.Join("out.safetensors");
  const FixtureTensor t = PatternTensor("w", DType::kBF16, {4, 4}, 1);
  auto writer = MakeSafetensorsWriter(path);
  REQUIRE(writer->Begin({InfoOf(t)}, {}).ok());

  const std::vector<std::string> during = ListDir(tmp.path());
  REQUIRE(during.size() == 1);
  std::string prefix = "out.safetensors.tmp-";
  prefix += std::to_string(::getpid());
  prefix += "-";
  CHECK_THAT(during[0], Catch::StartsWith(prefix));
  CHECK_FALSE(std::filesystem::exists(path));
  // The temporary file already has its final size.
  auto planned = PlanSafetensorsLayout({InfoOf(t)}, {});
  REQUIRE(planned.ok());
  CHECK(std::filesystem::file_size(tmp.Join(during[0])) == planned->file_size);

  REQUIRE(writer->WriteAt(0, 0, AsBytes(t.data)).ok());
  REQUIRE(writer->Finish().ok());
  CHECK(ListDir(tmp.path()) == std::vector<std::string>{"out.safetensors"});
  CHECK(std::filesystem::file_size(path) == planned->file_size);
}

TEST_CASE("Abort and the destructor remove the temporary file", "[formats][writer]") {
  TempDir tmp;
  const std::string path = tmp.Join("out.safetensors");
  const TensorInfo info = Info("w", DType::kF32, {8});
  SECTION("Abort") {
    auto writer = MakeSafetensorsWriter(path);
    REQUIRE(writer->Begin({info}, {}).ok());
    REQUIRE(ListDir(tmp.path()).size() == 1);
    writer->Abort();
    CHECK(ListDir(tmp.path()).empty());
    writer->Abort();  // idempotent
    CHECK(writer->WriteAt(0, 0, AsBytes(std::string(4, 'x'))).code() ==
          ErrorCode::kInvalidArgument);
  }
  SECTION("destructor") {
    {
      auto writer = MakeSafetensorsWriter(path);
      REQUIRE(writer->Begin({info}, {}).ok());
      REQUIRE(writer->WriteAt(0, 0, AsBytes(std::string(32, 'x'))).ok());
    }
    CHECK(ListDir(tmp.path()).empty());
  }
  SECTION("Abort after Finish keeps the file") {
    auto writer = MakeSafetensorsWriter(path);
    REQUIRE(writer->Begin({info}, {}).ok());
    REQUIRE(writer->WriteAt(0, 0, AsBytes(std::string(32, 'x'))).ok());
    REQUIRE(writer->Finish().ok());
    writer->Abort();
    writer.reset();
    CHECK(ListDir(tmp.path()) == std::vector<std::string>{"out.safetensors"});
  }
}

TEST_CASE("Finish refuses incomplete writes", "[formats][writer]") {
  TempDir tmp;
  const std::string path = tmp.Join("out.safetensors");
  auto writer = MakeSafetensorsWriter(path);
  REQUIRE(writer->Begin({Info("a", DType::kF32, {2}), Info("b", DType::kF32, {2})}, {}).ok());
  REQUIRE(writer->WriteAt(0, 0, AsBytes(std::string(8, 'a'))).ok());
  REQUIRE(writer->WriteAt(1, 0, AsBytes(std::string(4, 'b'))).ok());
  Status st = writer->Finish();
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains("tensor 'b': only 4 of 8 bytes were written"));
  CHECK_FALSE(std::filesystem::exists(path));
  // The writer is still usable: complete the data and finish.
  REQUIRE(writer->WriteAt(1, 4, AsBytes(std::string(4, 'c'))).ok());
  REQUIRE(writer->Finish().ok());
  CHECK(ReadFileBytes(path).substr(ReadFileBytes(path).size() - 16) ==
        std::string(8, 'a') + "bbbbcccc");
}

TEST_CASE("WriteAt checks its arguments", "[formats][writer]") {
  TempDir tmp;
  auto writer = MakeSafetensorsWriter(tmp.Join("out.safetensors"));
  const std::string four(4, 'x');
  CHECK(writer->WriteAt(0, 0, AsBytes(four)).code() == ErrorCode::kInvalidArgument);
  CHECK(writer->Finish().code() == ErrorCode::kInvalidArgument);
  REQUIRE(writer->Begin({Info("w", DType::kF32, {2})}, {}).ok());
  CHECK(writer->Begin({Info("w", DType::kF32, {2})}, {}).code() == ErrorCode::kInvalidArgument);

  Status st = writer->WriteAt(1, 0, AsBytes(four));
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains("tensor index 1 out of range"));
  st = writer->WriteAt(0, 6, AsBytes(four));
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains("tensor 'w': write [6, +4) is outside"));
  st = writer->WriteAt(0, UINT64_MAX - 1, AsBytes(four));
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK(writer->WriteAt(0, 8, {}).ok());
}

TEST_CASE("concurrent WriteAt from several threads", "[formats][writer]") {
  TempDir tmp;
  const std::string path = tmp.Join("par.safetensors");
  std::vector<FixtureTensor> tensors;
  for (uint32_t i = 0; i < 6; ++i) {
    std::string name = "t";
    name += std::to_string(i);
    tensors.push_back(PatternTensor(std::move(name), i % 2 ? DType::kF32 : DType::kBF16,
                                    {37, static_cast<int64_t>(100 + i)}, i));
  }
  std::vector<TensorInfo> infos;
  for (const auto& t : tensors) infos.push_back(InfoOf(t));
  auto writer = MakeSafetensorsWriter(path);
  REQUIRE(writer->Begin(infos, {}).ok());

  // Thread k writes every n_threads-th 1000-byte chunk of every tensor.
  constexpr size_t kThreads = 4;
  constexpr size_t kChunk = 1000;
  std::vector<Status> results(kThreads);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < kThreads; ++k) {
    threads.emplace_back([&, k] {
      for (size_t ti = 0; ti < tensors.size(); ++ti) {
        const std::string& d = tensors[ti].data;
        for (size_t off = k * kChunk; off < d.size(); off += kThreads * kChunk) {
          const size_t n = std::min(kChunk, d.size() - off);
          Status st = writer->WriteAt(ti, off, AsBytes(d).subspan(off, n));
          if (!st.ok()) results[k] = st;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const Status& st : results) CHECK(st.ok());
  REQUIRE(writer->Finish().ok());

  auto src = OpenSafetensorsFile(path);
  REQUIRE(src.ok());
  CheckSourceHolds(**src, tensors);
}

TEST_CASE("written files read back through both access modes", "[formats][writer]") {
  TempDir tmp;
  const std::string path = tmp.Join("rt.safetensors");
  const std::vector<FixtureTensor> tensors = {
      PatternTensor("model.layers.0.weight", DType::kBF16, {3, 5}, 1),
      PatternTensor("scalar", DType::kF64, {}, 2),
      PatternTensor("empty", DType::kF32, {2, 0}, 3),
      PatternTensor("ids", DType::kI64, {7}, 4),
      PatternTensor("packed", DType::kF4, {6}, 5),
      PatternTensor("flags", DType::kBool, {3}, 6),
  };
  WriteSafetensorsFixture(path, tensors, {{"source", "alloy-test"}});
  auto access = GENERATE(FileAccess::kMmap, FileAccess::kPread);
  auto src = OpenSafetensorsFile(path, access);
  INFO(src.status().ToString());
  REQUIRE(src.ok());
  CHECK((*src)->metadata() ==
        std::map<std::string, std::string>{{"format", "pt"}, {"source", "alloy-test"}});
  REQUIRE((*src)->tensors().size() == tensors.size());
  // Data order: I64, F64, F32, BF16, F4, BOOL.
  std::vector<std::string> order;
  for (const TensorInfo& t : (*src)->tensors()) order.push_back(t.name);
  CHECK(order == std::vector<std::string>{"ids", "scalar", "empty", "model.layers.0.weight",
                                          "packed", "flags"});
  for (const FixtureTensor& t : tensors) {
    const TensorInfo* info = (*src)->Find(t.name);
    REQUIRE(info != nullptr);
    CHECK(info->dtype == t.dtype);
    CHECK(info->shape == t.shape);
    std::string got(t.data.size(), '\0');
    REQUIRE(
        (*src)
            ->Read(*info, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(got.data()), got.size()))
            .ok());
    CHECK(got == t.data);
    // The reference writer's alignment: every tensor starts naturally aligned.
    const uint64_t elem = std::max(DTypeBits(t.dtype) / 8, 1);
    CHECK(info->file_offset % elem == 0);
  }
}

TEST_CASE("a file with no tensors", "[formats][writer]") {
  TempDir tmp;
  const std::string path = tmp.Join("empty.safetensors");
  WriteSafetensorsFixture(path, {});
  CHECK(ReadFileBytes(path) == Le64(32) + R"({"__metadata__":{"format":"pt"}})");
  auto src = OpenSafetensorsFile(path);
  REQUIRE(src.ok());
  CHECK((*src)->tensors().empty());
}

TEST_CASE("replacing a file that is still mapped leaves the old mapping intact",
          "[formats][writer]") {
  TempDir tmp;
  const std::string path = tmp.Join("m.safetensors");
  const FixtureTensor old_t = PatternTensor("w", DType::kF32, {64}, 1);
  WriteSafetensorsFixture(path, {old_t});
  auto src = OpenSafetensorsFile(path, FileAccess::kMmap);
  REQUIRE(src.ok());
  auto view = (*src)->View((*src)->tensors()[0]);
  REQUIRE(view.ok());

  const FixtureTensor new_t = PatternTensor("w", DType::kF32, {16}, 2);
  WriteSafetensorsFixture(path, {new_t});  // shorter: an in-place write would truncate
  CHECK(std::string(reinterpret_cast<const char*>(view->data()), view->size()) == old_t.data);
  auto fresh = OpenSafetensorsFile(path);
  REQUIRE(fresh.ok());
  CHECK((*fresh)->tensors()[0].nbytes == 64);
}

TEST_CASE("I/O failures name the path", "[formats][writer]") {
  TempDir tmp;
  SECTION("missing directory") {
    const std::string path = tmp.Join("no/such/dir/x.safetensors");
    auto writer = MakeSafetensorsWriter(path);
    Status st = writer->Begin({Info("w", DType::kF32, {1})}, {});
    CHECK(st.code() == ErrorCode::kIoError);
    CHECK_THAT(st.message(), Catch::Contains(path));
    CHECK_THAT(st.message(), Catch::Contains("No such file or directory"));
  }
  SECTION("rename onto a non-empty directory fails clearly, without fallback") {
    const std::string path = tmp.Join("taken");
    testing::WriteFileBytes(path + "/inside", "x");
    auto writer = MakeSafetensorsWriter(path, SafetensorsWriterOptions{.fsync = true});
    REQUIRE(writer->Begin({Info("w", DType::kF32, {1})}, {}).ok());
    REQUIRE(writer->WriteAt(0, 0, AsBytes(std::string(4, 'x'))).ok());
    Status st = writer->Finish();
    CHECK(st.code() == ErrorCode::kIoError);
    CHECK_THAT(st.message(), Catch::Contains("cannot rename"));
    CHECK_THAT(st.message(), Catch::Contains(path));
    CHECK_THAT(st.message(), Catch::Contains("never falls back"));
    CHECK(ListDir(tmp.path()) == std::vector<std::string>{"taken"});
  }
}

TEST_CASE("fsync option produces the same file", "[formats][writer]") {
  TempDir tmp;
  const FixtureTensor t = PatternTensor("w", DType::kF16, {9}, 3);
  for (bool fsync : {false, true}) {
    const std::string path = tmp.Join(fsync ? "a.safetensors" : "b.safetensors");
    auto writer = MakeSafetensorsWriter(path, SafetensorsWriterOptions{.fsync = fsync});
    REQUIRE(writer->Begin({InfoOf(t)}, {}).ok());
    REQUIRE(writer->WriteAt(0, 0, AsBytes(t.data)).ok());
    REQUIRE(writer->Finish().ok());
  }
  CHECK(ReadFileBytes(tmp.Join("a.safetensors")) == ReadFileBytes(tmp.Join("b.safetensors")));
}

}  // namespace
}  // namespace alloy::formats

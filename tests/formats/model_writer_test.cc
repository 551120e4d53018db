#include "formats/model_writer.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "formats/model_dir.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;
using testing::FixtureTensor;
using testing::InfoOf;
using testing::PatternTensor;
using testing::ReadFileBytes;
using testing::TempDir;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// U8 tensors of the given byte sizes, named t0, t1, ...
std::vector<FixtureTensor> U8Tensors(const std::vector<int64_t>& sizes) {
  std::vector<FixtureTensor> out;
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::string name = "t";
    name += std::to_string(i);
    out.push_back(PatternTensor(std::move(name), DType::kU8, {sizes[i]}, static_cast<uint32_t>(i)));
  }
  return out;
}

std::unique_ptr<ModelDirWriter> Create(const std::string& out, ModelWriterOptions options = {}) {
  auto w = ModelDirWriter::Create(out, options);
  INFO(w.status().ToString());
  REQUIRE(w.ok());
  return std::move(w).value();
}

void BeginAndWrite(ModelDirWriter& w, const std::vector<FixtureTensor>& tensors) {
  std::vector<TensorInfo> infos;
  for (const auto& t : tensors) infos.push_back(InfoOf(t));
  Status st = w.Begin(infos, {});
  INFO(st.ToString());
  REQUIRE(st.ok());
  for (size_t i = 0; i < tensors.size(); ++i) {
    REQUIRE(w.WriteAt(i, 0, AsBytes(tensors[i].data)).ok());
  }
}

void WriteModel(const std::string& out, const std::vector<FixtureTensor>& tensors,
                ModelWriterOptions options = {}) {
  auto w = Create(out, options);
  BeginAndWrite(*w, tensors);
  Status st = w->Finish();
  INFO(st.ToString());
  REQUIRE(st.ok());
}

TEST_CASE("ParseByteSize accepts decimal, binary and mergekit units", "[formats][model_writer]") {
  struct Row {
    const char* text;
    uint64_t bytes;
  };
  const Row rows[] = {
      {"5B", 5'000'000'000ULL},
      {"5b", 5'000'000'000ULL},
      {"500M", 500'000'000ULL},
      {"500m", 500'000'000ULL},
      {"2GB", 2'000'000'000ULL},
      {"2gb", 2'000'000'000ULL},
      {"1GiB", 1ULL << 30},
      {"1gib", 1ULL << 30},
      {"1.5GB", 1'500'000'000ULL},
      {"1048576", 1048576},
      {"10k", 10'000},
      {"10KB", 10'000},
      {"1KiB", 1024},
      {"2MiB", 2ULL << 20},
      {"0.5KiB", 512},
      {"2 TB", 2'000'000'000'000ULL},
      {" 3mb ", 3'000'000},
      {"1TiB", 1ULL << 40},
      {"2t", 2'000'000'000'000ULL},
      {".5GB", 500'000'000},
      {"0", 0},
      {"1.0000000001KB", 1000},
      {"18446744073709551615", UINT64_MAX},
  };
  for (const Row& row : rows) {
    INFO(row.text);
    auto r = ParseByteSize(row.text);
    REQUIRE(r.ok());
    CHECK(*r == row.bytes);
  }
}

TEST_CASE("ParseByteSize rejects malformed sizes", "[formats][model_writer]") {
  for (const char* text : {"", " ", "GB", "-1", "-1GB", "5XB", "1.2.3", "5e9", "abc", "1.", "5 G B",
                           "18446744073709551616", "20000000TB", "1GBs", "+5GB", "0x10"}) {
    INFO(text);
    auto r = ParseByteSize(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.status().message(),
               Catch::Contains("invalid byte size '" + std::string(text) + "'"));
  }
}

TEST_CASE("ShardFileName follows the HF pattern", "[formats][model_writer]") {
  CHECK(ShardFileName(1, 1) == "model.safetensors");
  CHECK(ShardFileName(1, 2) == "model-00001-of-00002.safetensors");
  CHECK(ShardFileName(5, 5) == "model-00005-of-00005.safetensors");
  CHECK(ShardFileName(12, 120) == "model-00012-of-00120.safetensors");
}

TEST_CASE("shards are cut greedily in Begin order", "[formats][model_writer]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  // Limit 100: [40 40] [40] [250 alone] [10 0 60] [50].
  const auto tensors = U8Tensors({40, 40, 40, 250, 10, 0, 60, 50});
  auto w = Create(out, {.max_shard_bytes = 100});
  BeginAndWrite(*w, tensors);
  const std::vector<std::string> files = {
      "model-00001-of-00005.safetensors", "model-00002-of-00005.safetensors",
      "model-00003-of-00005.safetensors", "model-00004-of-00005.safetensors",
      "model-00005-of-00005.safetensors"};
  CHECK(w->weight_files() == files);
  REQUIRE(w->Finish().ok());

  auto src = OpenModel(out);
  REQUIRE(src.ok());
  std::map<std::string, uint32_t> shard_of;
  for (const TensorInfo& t : (*src)->tensors()) shard_of[t.name] = t.file_index;
  CHECK(
      shard_of ==
      std::map<std::string, uint32_t>{
          {"t0", 0}, {"t1", 0}, {"t2", 1}, {"t3", 2}, {"t4", 3}, {"t5", 3}, {"t6", 3}, {"t7", 4}});
}

TEST_CASE("shard edge cases", "[formats][model_writer]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  std::vector<std::string> expected;
  std::vector<FixtureTensor> tensors;
  SECTION("exact fit stays in one shard") {
    tensors = U8Tensors({50, 50, 1});
    expected = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  }
  SECTION("zero-size tensors never start a shard") {
    tensors = U8Tensors({0, 250, 0, 0});
    expected = {"model.safetensors"};
  }
  SECTION("an oversized first tensor is alone") {
    tensors = U8Tensors({101, 1});
    expected = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  }
  SECTION("no tensors gives one empty shard") { expected = {"model.safetensors"}; }
  auto w = Create(out, {.max_shard_bytes = 100});
  BeginAndWrite(*w, tensors);
  CHECK(w->weight_files() == expected);
  REQUIRE(w->Finish().ok());
  auto src = OpenModel(out);
  REQUIRE(src.ok());
  CHECK((*src)->tensors().size() == tensors.size());
}

TEST_CASE("the index lists every tensor, sorted, with total_size", "[formats][model_writer]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  std::vector<FixtureTensor> tensors = {PatternTensor("zeta", DType::kF32, {4}, 1),
                                        PatternTensor("alpha", DType::kF32, {2}, 2),
                                        PatternTensor("mid", DType::kBF16, {1}, 3)};
  WriteModel(out, tensors, {.max_shard_bytes = 16});
  CHECK(ListDir(out) == std::vector<std::string>{"model-00001-of-00002.safetensors",
                                                 "model-00002-of-00002.safetensors",
                                                 "model.safetensors.index.json"});
  CHECK(ReadFileBytes(out + "/model.safetensors.index.json") ==
        "{\n"
        "  \"metadata\": {\n"
        "    \"total_size\": 26\n"
        "  },\n"
        "  \"weight_map\": {\n"
        "    \"alpha\": \"model-00002-of-00002.safetensors\",\n"
        "    \"mid\": \"model-00002-of-00002.safetensors\",\n"
        "    \"zeta\": \"model-00001-of-00002.safetensors\"\n"
        "  }\n"
        "}\n");
}

TEST_CASE("a single shard is model.safetensors without an index", "[formats][model_writer]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  auto w = Create(out);
  BeginAndWrite(*w, U8Tensors({10, 20}));
  REQUIRE(w->AddFile("config.json", "{}\n").ok());
  REQUIRE(w->Finish().ok());
  CHECK(ListDir(out) == std::vector<std::string>{"config.json", "model.safetensors"});
  CHECK(ReadFileBytes(out + "/config.json") == "{}\n");
}

TEST_CASE("sharded output reads back byte-identical", "[formats][model_writer]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  std::vector<FixtureTensor> tensors;
  for (uint32_t i = 0; i < 9; ++i) {
    std::string name = "layers.";
    name += std::to_string(i);
    name += ".weight";
    tensors.push_back(PatternTensor(std::move(name), i % 3 ? DType::kBF16 : DType::kF32,
                                    {16, static_cast<int64_t>(8 + i)}, i));
  }
  WriteModel(out, tensors, {.max_shard_bytes = 1000, .fsync = true});
  auto src = OpenModel(out);
  INFO(src.status().ToString());
  REQUIRE(src.ok());
  CHECK((*src)->files().size() > 1);
  CHECK((*src)->metadata().at("format") == "pt");
  REQUIRE((*src)->tensors().size() == tensors.size());
  CheckSourceHolds(**src, tensors);
}

TEST_CASE("nothing named out_dir exists until Finish", "[formats][model_writer]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  const std::string partial = out + ".alloy-partial-" + std::to_string(::getpid());
  auto w = Create(out, {.max_shard_bytes = 10});
  CHECK_FALSE(fs::exists(out));
  CHECK(fs::is_directory(partial));
  const auto tensors = U8Tensors({8, 8});
  BeginAndWrite(*w, tensors);
  testing::WriteFileBytes(tmp.Join("src/config.json"), "{}");
  REQUIRE(w->CopyFile(tmp.Join("src/config.json"), "config.json").ok());
  CHECK(fs::exists(partial + "/config.json"));
  CHECK_FALSE(fs::exists(out));
  CHECK(w->out_dir() == out);
  REQUIRE(w->Finish().ok());
  CHECK(fs::is_directory(out));
  CHECK_FALSE(fs::exists(partial));
  CHECK(ListDir(tmp.path()) == std::vector<std::string>{"out", "src"});
  CHECK(ListDir(out) == std::vector<std::string>{"config.json", "model-00001-of-00002.safetensors",
                                                 "model-00002-of-00002.safetensors",
                                                 "model.safetensors.index.json"});
}

TEST_CASE("Abort and the destructor remove the partial directory", "[formats][model_writer]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  SECTION("Abort") {
    auto w = Create(out);
    BeginAndWrite(*w, U8Tensors({8}));
    w->Abort();
    w->Abort();
    CHECK(ListDir(tmp.path()).empty());
    CHECK(w->AddFile("x.txt", "x").code() == ErrorCode::kInvalidArgument);
  }
  SECTION("destructor") {
    {
      auto w = Create(out);
      BeginAndWrite(*w, U8Tensors({8}));
    }
    CHECK(ListDir(tmp.path()).empty());
  }
  SECTION("Finish refuses incomplete data; nothing is published") {
    auto w = Create(out, {.max_shard_bytes = 10});
    const auto tensors = U8Tensors({8, 8});
    std::vector<TensorInfo> infos = {InfoOf(tensors[0]), InfoOf(tensors[1])};
    REQUIRE(w->Begin(infos, {}).ok());
    REQUIRE(w->WriteAt(0, 0, AsBytes(tensors[0].data)).ok());
    Status st = w->Finish();
    CHECK(st.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(st.message(), Catch::Contains("tensor 't1': only 0 of 8 bytes"));
    CHECK_FALSE(fs::exists(out));
    // Completing the data makes Finish succeed.
    REQUIRE(w->WriteAt(1, 0, AsBytes(tensors[1].data)).ok());
    REQUIRE(w->Finish().ok());
    CHECK(ListDir(out).size() == 3);
  }
}

TEST_CASE("overwrite rules", "[formats][model_writer]") {
  TempDir tmp;
  const std::string out = tmp.Join("out");
  const auto tensors = U8Tensors({4});

  SECTION("a non-empty directory needs overwrite") {
    testing::WriteFileBytes(out + "/old.txt", "old");
    auto r = ModelDirWriter::Create(out, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("--overwrite"));
    CHECK_THAT(r.status().message(), Catch::Contains(out));

    // Not a model: even --overwrite refuses to delete it.
    r = ModelDirWriter::Create(out, {.overwrite = true});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("does not look like a model"));
    CHECK(ListDir(out) == std::vector<std::string>{"old.txt"});

    testing::WriteFileBytes(out + "/config.json", "{}");
    WriteModel(out, tensors, {.overwrite = true});
    CHECK(ListDir(out) == std::vector<std::string>{"model.safetensors"});
    CHECK(ListDir(tmp.path()) == std::vector<std::string>{"out"});  // no .alloy-old-* left
  }
  SECTION("an empty directory is replaced") {
    fs::create_directories(out);
    WriteModel(out, tensors);
    CHECK(ListDir(out) == std::vector<std::string>{"model.safetensors"});
  }
  SECTION("a file is refused even with overwrite") {
    testing::WriteFileBytes(out, "file");
    auto r = ModelDirWriter::Create(out, {.overwrite = true});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("not a directory"));
  }
  SECTION("a directory that fills up during the run is not clobbered") {
    auto w = Create(out);
    BeginAndWrite(*w, tensors);
    testing::WriteFileBytes(out + "/late.txt", "late");
    Status st = w->Finish();
    CHECK(st.code() == ErrorCode::kInvalidArgument);
    CHECK(ListDir(out) == std::vector<std::string>{"late.txt"});
    CHECK(ListDir(tmp.path()) == std::vector<std::string>{"out"});
  }
  SECTION("partial directories of live processes are left alone") {
    const std::string live = out + ".alloy-partial-" + std::to_string(::getppid());
    testing::WriteFileBytes(live + "/model.safetensors", "junk");
    WriteModel(out + "/", tensors);  // a trailing slash names the same directory
    CHECK(ListDir(tmp.path()) ==
          std::vector<std::string>{"out", "out.alloy-partial-" + std::to_string(::getppid())});
  }
  SECTION("missing parent directories are created") {
    WriteModel(tmp.Join("a/b/out"), tensors);
    CHECK(ListDir(tmp.Join("a/b/out")) == std::vector<std::string>{"model.safetensors"});
  }
}

TEST_CASE("extra files need plain, unreserved names", "[formats][model_writer]") {
  TempDir tmp;
  auto w = Create(tmp.Join("out"));
  for (const char* name : {"", ".", "..", "../x", "a/b", "a\\b", "/abs", "model.safetensors",
                           "model-00001-of-00002.safetensors", "model.safetensors.index.json"}) {
    INFO(name);
    CHECK(w->AddFile(name, "x").code() == ErrorCode::kInvalidArgument);
    CHECK(w->CopyFile(tmp.Join("src"), name).code() == ErrorCode::kInvalidArgument);
  }
  Status st = w->CopyFile(tmp.Join("does-not-exist"), "config.json");
  CHECK(st.code() == ErrorCode::kNotFound);
  CHECK_THAT(st.message(), Catch::Contains("does-not-exist"));
  testing::WriteFileBytes(tmp.Join("tok.json"), "{\"a\":1}");
  REQUIRE(w->CopyFile(tmp.Join("tok.json"), "tokenizer.json").ok());
  BeginAndWrite(*w, U8Tensors({1}));
  REQUIRE(w->Finish().ok());
  CHECK(ReadFileBytes(tmp.Join("out/tokenizer.json")) == "{\"a\":1}");
}

TEST_CASE("Begin validates the whole tensor list", "[formats][model_writer]") {
  TempDir tmp;
  auto w = Create(tmp.Join("out"), {.max_shard_bytes = 4});
  const auto a = PatternTensor("w", DType::kU8, {4}, 1);
  SECTION("duplicates across shards") {
    Status st = w->Begin({InfoOf(a), InfoOf(a)}, {});
    CHECK(st.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(st.message(), Catch::Contains("duplicate tensor name 'w'"));
  }
  SECTION("reserved name") {
    Status st = w->Begin({InfoOf(PatternTensor("__metadata__", DType::kU8, {1}, 1))}, {});
    CHECK(st.code() == ErrorCode::kInvalidArgument);
  }
  SECTION("WriteAt range") {
    REQUIRE(w->Begin({InfoOf(a)}, {}).ok());
    CHECK(w->WriteAt(1, 0, AsBytes(a.data)).code() == ErrorCode::kInvalidArgument);
    CHECK(w->WriteAt(0, 1, AsBytes(a.data)).code() == ErrorCode::kInvalidArgument);
    CHECK(w->Begin({InfoOf(a)}, {}).code() == ErrorCode::kInvalidArgument);
  }
  CHECK(ModelDirWriter::Create(tmp.Join("x"), {.max_shard_bytes = 0}).status().code() ==
        ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace alloy::formats

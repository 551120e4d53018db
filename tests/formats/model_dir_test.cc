#include "formats/model_dir.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;
using testing::FixtureTensor;
using testing::PatternTensor;
using testing::TempDir;
using testing::WriteFileBytes;
using testing::WriteSafetensorsFixture;

constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

// A valid two-shard model: a, b in shard 1; c in shard 2.
struct ShardedModel {
  TempDir tmp;
  FixtureTensor a = PatternTensor("a", DType::kF32, {4}, 1);
  FixtureTensor b = PatternTensor("b", DType::kBF16, {2, 3}, 2);
  FixtureTensor c = PatternTensor("c", DType::kI8, {5}, 3);

  ShardedModel() {
    WriteSafetensorsFixture(tmp.Join(kShard1), {a, b}, {{"origin", "shard1"}});
    WriteSafetensorsFixture(tmp.Join(kShard2), {c}, {{"origin", "shard2"}});
    WriteIndex(R"({"a": "model-00001-of-00002.safetensors",)"
               R"( "b": "model-00001-of-00002.safetensors",)"
               R"( "c": "model-00002-of-00002.safetensors"})");
  }
  void WriteIndex(const std::string& weight_map_json) {
    WriteRawIndex(R"({"metadata": {"total_size": 1}, "weight_map": )" + weight_map_json + "}");
  }
  void WriteRawIndex(const std::string& text) {
    WriteFileBytes(tmp.Join("model.safetensors.index.json"), text);
  }
  const std::string& dir() const { return tmp.path(); }
};

std::string ViewString(TensorSource& src, const std::string& name) {
  const TensorInfo* info = src.Find(name);
  REQUIRE(info != nullptr);
  auto view = src.View(*info);
  REQUIRE(view.ok());
  return std::string(reinterpret_cast<const char*>(view->data()), view->size());
}

void CheckOpenFails(const std::string& path, ErrorCode code, const std::string& substring) {
  auto r = OpenModel(path);
  REQUIRE_FALSE(r.ok());
  INFO(r.status().ToString());
  CHECK(r.status().code() == code);
  CHECK_THAT(r.status().message(), Catch::Contains(substring));
}

TEST_CASE("a sharded directory opens as one source", "[formats][model_dir]") {
  ShardedModel m;
  std::vector<std::string> warnings;
  auto src = OpenModel(m.dir(), FileAccess::kMmap, &warnings);
  INFO(src.status().ToString());
  REQUIRE(src.ok());
  CHECK(warnings.empty());
  std::vector<std::pair<std::string, uint32_t>> listed;
  for (const TensorInfo& t : (*src)->tensors()) listed.emplace_back(t.name, t.file_index);
  // Shard order, then data order within a shard (F32 before BF16).
  CHECK(listed == std::vector<std::pair<std::string, uint32_t>>{{"a", 0}, {"b", 0}, {"c", 1}});
  CHECK((*src)->files() == std::vector<std::string>{m.tmp.Join(kShard1), m.tmp.Join(kShard2)});
  CHECK((*src)->metadata().at("origin") == "shard1");
  CHECK((*src)->name() == m.dir());
  CHECK(ViewString(**src, "a") == m.a.data);
  CHECK(ViewString(**src, "b") == m.b.data);
  CHECK(ViewString(**src, "c") == m.c.data);
  CHECK((*src)->Find("missing") == nullptr);

  // Read and Release work through a caller's copy of the TensorInfo too.
  TensorInfo copy = *(*src)->Find("c");
  std::string part(2, '\0');
  REQUIRE(
      (*src)->Read(copy, 3, std::span<uint8_t>(reinterpret_cast<uint8_t*>(part.data()), 2)).ok());
  CHECK(part == m.c.data.substr(3, 2));
  (*src)->Release(copy);
  CHECK((*src)
            ->Read(copy, 4, std::span<uint8_t>(reinterpret_cast<uint8_t*>(part.data()), 2))
            .code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("metadata.total_size is informational only", "[formats][model_dir]") {
  ShardedModel m;
  m.WriteRawIndex(R"({"metadata": {"total_size": "lots", "mergekit_version": "0.1"},)"
                  R"( "weight_map": {"a": "model-00001-of-00002.safetensors"}})");
  std::vector<std::string> warnings;
  auto src = OpenModel(m.dir(), FileAccess::kPread, &warnings);
  REQUIRE(src.ok());
  CHECK((*src)->tensors().size() == 1);
  CHECK(warnings.size() == 1);  // b is unmapped; shard 2 is not referenced at all
}

TEST_CASE("case 30: traversal in shard names", "[formats][model_dir]") {
  ShardedModel m;
  const std::string name =
      GENERATE(as<std::string>{}, "../x.safetensors", "/etc/x", "C:x", "\\\\server\\share\\x",
               "sub/../x.safetensors", "a\\..\\x.safetensors", "./model.safetensors", "",
               "c:/x.safetensors", "sub//x.safetensors");
  nlohmann::json wm = {{"a", name}};
  m.WriteIndex(wm.dump());
  CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "invalid shard path");
}

TEST_CASE("case 31: a .bin shard in a safetensors index", "[formats][model_dir]") {
  ShardedModel m;
  WriteFileBytes(m.tmp.Join("pytorch_model-00001-of-00001.bin"), "PK\x03\x04");
  m.WriteIndex(R"({"a": "pytorch_model-00001-of-00001.bin"})");
  CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "extension mismatch");
}

TEST_CASE("case 32: a referenced shard is missing", "[formats][model_dir]") {
  ShardedModel m;
  fs::remove(m.tmp.Join(kShard2));
  CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "missing shard 'model-00002-of-00002.safetensors'");
}

TEST_CASE("case 33: a tensor mapped to a shard that lacks it", "[formats][model_dir]") {
  ShardedModel m;
  m.WriteIndex(R"({"a": "model-00001-of-00002.safetensors",)"
               R"( "b": "model-00001-of-00002.safetensors",)"
               R"( "c": "model-00002-of-00002.safetensors",)"
               R"( "d": "model-00002-of-00002.safetensors"})");
  CheckOpenFails(m.dir(), ErrorCode::kCorrupt,
                 "tensor 'd' not found in shard 'model-00002-of-00002.safetensors'");
}

TEST_CASE("case 34: the same tensor in two shards", "[formats][model_dir]") {
  ShardedModel m;
  WriteSafetensorsFixture(m.tmp.Join(kShard2), {m.c, PatternTensor("a", DType::kF32, {4}, 9)});
  CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "tensor 'a' defined in multiple shards");
}

TEST_CASE("case 35: malformed weight_map", "[formats][model_dir]") {
  ShardedModel m;
  SECTION("absent") {
    m.WriteRawIndex(R"({"metadata": {"total_size": 1}})");
    CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "invalid index: missing \"weight_map\"");
  }
  SECTION("not an object") {
    const std::string value = GENERATE(as<std::string>{}, "[]", "\"x\"", "null", "3");
    m.WriteIndex(value);
    CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "\"weight_map\" must be an object");
  }
  SECTION("non-string values") {
    const std::string value = GENERATE(as<std::string>{}, "1", "null", "{}", "[\"x\"]", "true");
    m.WriteIndex(R"({"a": )" + value + "}");
    CheckOpenFails(m.dir(), ErrorCode::kCorrupt,
                   "weight_map value for tensor 'a' must be a string");
  }
  SECTION("duplicate keys") {
    m.WriteIndex(R"({"a": "model-00001-of-00002.safetensors",)"
                 R"( "a": "model-00002-of-00002.safetensors"})");
    CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "invalid index");
    CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "duplicate key");
  }
  SECTION("top level not an object") {
    m.WriteRawIndex("[1, 2]");
    CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "invalid index: expected a JSON object");
  }
  SECTION("not JSON") {
    m.WriteRawIndex("{\"weight_map\": {,}}");
    CheckOpenFails(m.dir(), ErrorCode::kCorrupt, "invalid index");
  }
}

TEST_CASE("unmapped tensors are warned about and ignored", "[formats][model_dir]") {
  ShardedModel m;
  m.WriteIndex(R"({"a": "model-00001-of-00002.safetensors",)"
               R"( "c": "model-00002-of-00002.safetensors"})");
  std::vector<std::string> warnings;
  auto src = OpenModel(m.dir(), FileAccess::kMmap, &warnings);
  REQUIRE(src.ok());
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("tensor 'b' is not listed"));
  CHECK_THAT(warnings[0], Catch::Contains(kShard1));
  CHECK((*src)->Find("b") == nullptr);
  CHECK((*src)->tensors().size() == 2);
  CHECK(OpenModel(m.dir()).ok());  // warnings are optional
}

TEST_CASE("directory layouts", "[formats][model_dir]") {
  TempDir tmp;
  const FixtureTensor w = PatternTensor("w", DType::kF16, {3}, 4);
  SECTION("model.safetensors") {
    WriteSafetensorsFixture(tmp.Join("model.safetensors"), {w});
    auto src = OpenModel(tmp.path() + "/");
    REQUIRE(src.ok());
    CHECK(ViewString(**src, "w") == w.data);
  }
  SECTION("the index wins over model.safetensors") {
    WriteSafetensorsFixture(tmp.Join("model.safetensors"), {w});
    WriteFileBytes(tmp.Join("model.safetensors.index.json"), "{\"weight_map\": 1}");
    CheckOpenFails(tmp.path(), ErrorCode::kCorrupt, "invalid index");
  }
  SECTION("pytorch_model.bin goes to the torch reader") {
    WriteFileBytes(tmp.Join("pytorch_model.bin"), "PK\x03\x04");
    CheckOpenFails(tmp.path(), ErrorCode::kCorrupt, "pytorch_model.bin");
    CheckOpenFails(tmp.path(), ErrorCode::kCorrupt, "invalid zip archive");
  }
  SECTION("pytorch_model.bin.index.json is validated like the safetensors index") {
    WriteFileBytes(tmp.Join("pytorch_model.bin.index.json"), "{}");
    CheckOpenFails(tmp.path(), ErrorCode::kCorrupt, "pytorch_model.bin.index.json");
    CheckOpenFails(tmp.path(), ErrorCode::kCorrupt, "invalid index");
  }
  SECTION("a PEFT adapter is unsupported") {
    WriteFileBytes(tmp.Join("adapter_config.json"), "{}");
    WriteSafetensorsFixture(tmp.Join("adapter_model.safetensors"), {w});
    CheckOpenFails(tmp.path(), ErrorCode::kUnsupported, "adapter_config.json");
  }
  SECTION("an empty directory lists what was looked for") {
    auto r = OpenModel(tmp.path());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kNotFound);
    for (const char* name :
         {"model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
          "pytorch_model.bin", "adapter_config.json"}) {
      CHECK_THAT(r.status().message(), Catch::Contains(name));
    }
  }
  SECTION("differently named weights are pointed out") {
    WriteSafetensorsFixture(tmp.Join("consolidated.safetensors"), {w});
    CheckOpenFails(tmp.path(), ErrorCode::kNotFound, "consolidated.safetensors");
  }
  SECTION("a missing path") {
    CheckOpenFails(tmp.Join("nope"), ErrorCode::kNotFound, tmp.Join("nope"));
  }
}

TEST_CASE("file arguments are sniffed by content, not extension", "[formats][model_dir]") {
  TempDir tmp;
  SECTION("safetensors under another name") {
    const FixtureTensor w = PatternTensor("w", DType::kF32, {2}, 1);
    WriteSafetensorsFixture(tmp.Join("weights.bin"), {w});
    auto src = OpenModel(tmp.Join("weights.bin"));
    REQUIRE(src.ok());
    CHECK(ViewString(**src, "w") == w.data);
  }
  SECTION("zip (torch.save)") {
    WriteFileBytes(tmp.Join("x.safetensors"), std::string("PK\x03\x04", 4) + std::string(60, '\0'));
    CheckOpenFails(tmp.Join("x.safetensors"), ErrorCode::kCorrupt, "invalid zip archive");
  }
  SECTION("legacy pickle") {
    WriteFileBytes(tmp.Join("x.pt"), std::string("\x80\x02\x8a\x0a", 4) + std::string(30, 'z'));
    CheckOpenFails(tmp.Join("x.pt"), ErrorCode::kUnsupported, "PyTorch");
  }
  SECTION("GGUF") {
    // A GGUF header (whatever the extension) goes to the GGUF reader: an
    // impossible tensor count is its error.
    WriteFileBytes(tmp.Join("m.safetensors"), std::string("GGUF\x03\0\0\0", 8) +
                                                  std::string("\0\0\0\0\0\x01\0\0", 8) +
                                                  std::string(40, '\0'));
    CheckOpenFails(tmp.Join("m.safetensors"), ErrorCode::kCorrupt, "tensor count");
  }
  SECTION("JSON") {
    WriteFileBytes(tmp.Join("config.json"), "{\"hidden_size\": 8}");
    CheckOpenFails(tmp.Join("config.json"), ErrorCode::kInvalidArgument, "JSON file");
  }
  SECTION("garbage goes to the safetensors reader") {
    WriteFileBytes(tmp.Join("g.safetensors"), "abc");
    CheckOpenFails(tmp.Join("g.safetensors"), ErrorCode::kCorrupt, "g.safetensors");
  }
}

TEST_CASE("companion files", "[formats][model_dir]") {
  TempDir tmp;
  CHECK(CompanionFileNames().size() == 12);
  CHECK(CompanionFileNames().front() == "config.json");
  WriteFileBytes(tmp.Join("merges.txt"), "m");
  WriteFileBytes(tmp.Join("config.json"), "{}");
  WriteFileBytes(tmp.Join("tokenizer.json"), "{}");
  WriteFileBytes(tmp.Join("README.md"), "r");
  fs::create_directories(tmp.Join("vocab.json"));  // a directory is not a companion file
  CHECK(ListCompanionFiles(tmp.path()) ==
        std::vector<std::string>{"config.json", "tokenizer.json", "merges.txt"});
  CHECK(ListCompanionFiles(tmp.Join("missing")).empty());
}

TEST_CASE("ModelDirectoryOf", "[formats][model_dir]") {
  TempDir tmp;
  WriteFileBytes(tmp.Join("m/model.safetensors"), "x");
  CHECK(ModelDirectoryOf(tmp.Join("m")) == tmp.Join("m"));
  CHECK(ModelDirectoryOf(tmp.Join("m/model.safetensors")) == tmp.Join("m"));
  CHECK(ModelDirectoryOf("model.safetensors") == ".");
}

}  // namespace
}  // namespace alloy::formats

// Tests for formats/path_guard: files reached through a model directory must
// resolve inside it (the hub-cache repo folder for a snapshot) unless the
// caller follows symlinks; one test per refusal, through OpenModel, the
// sharded index and LoraAdapter::Open.
#include "formats/path_guard.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "formats/lora_adapter.h"
#include "formats/model_dir.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::formats {
namespace {

namespace fs = std::filesystem;
using testing::PatternTensor;
using testing::TempDir;
using testing::WriteFileBytes;

constexpr const char* kSha = "0123456789abcdef0123456789abcdef01234567";

// WriteSafetensorsFixture after creating the file's directory.
void WriteSafetensorsFixture(const std::string& path,
                             const std::vector<testing::FixtureTensor>& tensors) {
  fs::create_directories(fs::path(path).parent_path());
  testing::WriteSafetensorsFixture(path, tensors);
}

void Link(const std::string& target, const std::string& link) {
  fs::create_directories(fs::path(link).parent_path());
  fs::create_symlink(target, link);
}

void ExpectOutside(const Status& st, const std::string& path) {
  INFO(st.ToString());
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains(path) &&
                               Catch::Contains("symlink leads outside the model directory") &&
                               Catch::Contains("--follow-symlinks"));
}

TEST_CASE("path guard: links inside the directory are fine", "[formats][path_guard]") {
  TempDir tmp;
  WriteFileBytes(tmp.Join("m/sub/real.json"), "{}");
  Link("sub/real.json", tmp.Join("m/config.json"));
  CHECK(CheckInsideDirectory(tmp.Join("m"), tmp.Join("m/config.json"), SymlinkPolicy::kStayInside)
            .ok());
  // Absent files and dangling links are left to the caller's "missing" error.
  CHECK(CheckInsideDirectory(tmp.Join("m"), tmp.Join("m/absent.json"), SymlinkPolicy::kStayInside)
            .ok());
  Link("nowhere.json", tmp.Join("m/dangling.json"));
  CHECK(CheckInsideDirectory(tmp.Join("m"), tmp.Join("m/dangling.json"), SymlinkPolicy::kStayInside)
            .ok());
  // The directory itself may be reached through a link.
  Link(tmp.Join("m"), tmp.Join("alias"));
  CHECK(CheckInsideDirectory(tmp.Join("alias"), tmp.Join("alias/config.json"),
                             SymlinkPolicy::kStayInside)
            .ok());
}

TEST_CASE("path guard: a link to /etc/passwd is refused unless followed", "[formats][path_guard]") {
  TempDir tmp;
  Link("/etc/passwd", tmp.Join("m/tokenizer.json"));
  ExpectOutside(
      CheckInsideDirectory(tmp.Join("m"), tmp.Join("m/tokenizer.json"), SymlinkPolicy::kStayInside),
      tmp.Join("m/tokenizer.json"));
  ExpectOutside(CheckFilesInsideDirectory(tmp.Join("m"), {"config.json", "tokenizer.json"},
                                          SymlinkPolicy::kStayInside),
                "tokenizer.json");
  CHECK(CheckInsideDirectory(tmp.Join("m"), tmp.Join("m/tokenizer.json"), SymlinkPolicy::kFollow)
            .ok());
}

TEST_CASE("path guard: a link to a sibling directory is refused", "[formats][path_guard]") {
  TempDir tmp;
  WriteFileBytes(tmp.Join("other/secret.json"), "{}");
  Link("../other/secret.json", tmp.Join("m/config.json"));
  ExpectOutside(
      CheckInsideDirectory(tmp.Join("m"), tmp.Join("m/config.json"), SymlinkPolicy::kStayInside),
      "config.json");
  // A prefix of the directory's name is not inside it: m-evil is not m.
  WriteFileBytes(tmp.Join("m-evil/x.json"), "{}");
  Link("../m-evil/x.json", tmp.Join("m/x.json"));
  ExpectOutside(
      CheckInsideDirectory(tmp.Join("m"), tmp.Join("m/x.json"), SymlinkPolicy::kStayInside),
      "x.json");
}

TEST_CASE("path guard: hub-cache snapshots may link into their repo's blobs",
          "[formats][path_guard]") {
  TempDir tmp;
  const std::string repo = tmp.Join("hub/models--org--name");
  const std::string snapshot = repo + "/snapshots/" + kSha;
  WriteSafetensorsFixture(repo + "/blobs/b1", {PatternTensor("w", DType::kF32, {2, 3}, 1)});
  WriteFileBytes(repo + "/blobs/b2", "{}");
  Link("../../blobs/b1", snapshot + "/model.safetensors");
  Link("../../blobs/b2", snapshot + "/config.json");
  CHECK(ContainmentRoot(snapshot) == fs::canonical(repo).string());
  CHECK(ContainmentRoot(snapshot + "/") == fs::canonical(repo).string());
  CHECK(ContainmentRoot(tmp.Join("hub")) == fs::canonical(tmp.Join("hub")).string());
  auto src = OpenModel(snapshot);
  INFO(src.status().ToString());
  REQUIRE(src.ok());
  CHECK((*src)->Find("w") != nullptr);
  CHECK(CheckInsideDirectory(snapshot, snapshot + "/config.json", SymlinkPolicy::kStayInside).ok());

  // A snapshot link leaving the repo folder is still refused.
  WriteFileBytes(tmp.Join("hub/models--org--other/blobs/x"), "{}");
  Link("../../../models--org--other/blobs/x", snapshot + "/tokenizer.json");
  ExpectOutside(
      CheckInsideDirectory(snapshot, snapshot + "/tokenizer.json", SymlinkPolicy::kStayInside),
      "tokenizer.json");
}

TEST_CASE("path guard: model.safetensors linking outside is refused by OpenModel",
          "[formats][path_guard][model_dir]") {
  TempDir tmp;
  WriteSafetensorsFixture(tmp.Join("elsewhere/w.safetensors"),
                          {PatternTensor("w", DType::kF32, {2}, 1)});
  Link(tmp.Join("elsewhere/w.safetensors"), tmp.Join("m/model.safetensors"));
  auto refused = OpenModel(tmp.Join("m"), FileAccess::kPread);
  REQUIRE_FALSE(refused.ok());
  ExpectOutside(refused.status(), tmp.Join("m/model.safetensors"));
  auto followed = OpenModel(tmp.Join("m"), FileAccess::kPread, nullptr, SymlinkPolicy::kFollow);
  INFO(followed.status().ToString());
  REQUIRE(followed.ok());
  // A file named directly is the user's choice, not the directory's.
  CHECK(OpenModel(tmp.Join("m/model.safetensors"), FileAccess::kPread).ok());
}

TEST_CASE("path guard: an index or a shard linking outside is refused",
          "[formats][path_guard][model_dir]") {
  TempDir tmp;
  WriteSafetensorsFixture(tmp.Join("elsewhere/s1.safetensors"),
                          {PatternTensor("w", DType::kF32, {2}, 1)});
  const std::string index =
      R"({"metadata": {}, "weight_map": {"w": "model-00001-of-00001.safetensors"}})";
  SECTION("a shard") {
    WriteFileBytes(tmp.Join("m/model.safetensors.index.json"), index);
    Link(tmp.Join("elsewhere/s1.safetensors"), tmp.Join("m/model-00001-of-00001.safetensors"));
    auto r = OpenModel(tmp.Join("m"), FileAccess::kPread);
    REQUIRE_FALSE(r.ok());
    ExpectOutside(r.status(), "model-00001-of-00001.safetensors");
    CHECK(OpenModel(tmp.Join("m"), FileAccess::kPread, nullptr, SymlinkPolicy::kFollow).ok());
  }
  SECTION("a shard inside a linked subdirectory") {
    WriteFileBytes(tmp.Join("m/model.safetensors.index.json"),
                   R"({"weight_map": {"w": "sub/s1.safetensors"}})");
    Link(tmp.Join("elsewhere"), tmp.Join("m/sub"));
    auto r = OpenModel(tmp.Join("m"), FileAccess::kPread);
    REQUIRE_FALSE(r.ok());
    ExpectOutside(r.status(), "sub/s1.safetensors");
  }
  SECTION("the index itself") {
    WriteFileBytes(tmp.Join("elsewhere/model.safetensors.index.json"), index);
    Link(tmp.Join("elsewhere/model.safetensors.index.json"),
         tmp.Join("m/model.safetensors.index.json"));
    auto r = OpenModel(tmp.Join("m"), FileAccess::kPread);
    REQUIRE_FALSE(r.ok());
    ExpectOutside(r.status(), "model.safetensors.index.json");
  }
}

TEST_CASE("path guard: pytorch_model.bin linking outside is refused",
          "[formats][path_guard][model_dir]") {
  TempDir tmp;
  WriteFileBytes(tmp.Join("elsewhere/x.bin"), "PK");
  Link(tmp.Join("elsewhere/x.bin"), tmp.Join("m/pytorch_model.bin"));
  auto r = OpenModel(tmp.Join("m"), FileAccess::kPread);
  REQUIRE_FALSE(r.ok());
  ExpectOutside(r.status(), "pytorch_model.bin");
}

TEST_CASE("path guard: adapter files linking outside are refused", "[formats][path_guard][lora]") {
  TempDir tmp;
  const std::string key = "base_model.model.model.layers.0.self_attn.q_proj";
  WriteSafetensorsFixture(tmp.Join("elsewhere/a.safetensors"),
                          {PatternTensor(key + ".lora_A.weight", DType::kF32, {2, 6}, 1),
                           PatternTensor(key + ".lora_B.weight", DType::kF32, {5, 2}, 2)});
  WriteFileBytes(tmp.Join("elsewhere/adapter_config.json"), R"({"peft_type": "LORA", "r": 2})");
  SECTION("the weights") {
    WriteFileBytes(tmp.Join("a/adapter_config.json"), R"({"peft_type": "LORA", "r": 2})");
    Link(tmp.Join("elsewhere/a.safetensors"), tmp.Join("a/adapter_model.safetensors"));
    auto r = LoraAdapter::Open(tmp.Join("a"));
    REQUIRE_FALSE(r.ok());
    ExpectOutside(r.status(), "adapter_model.safetensors");
    CHECK(LoraAdapter::Open(tmp.Join("a"), FileAccess::kPread, SymlinkPolicy::kFollow).ok());
  }
  SECTION("the config") {
    Link(tmp.Join("elsewhere/adapter_config.json"), tmp.Join("a/adapter_config.json"));
    WriteSafetensorsFixture(tmp.Join("a/adapter_model.safetensors"),
                            {PatternTensor(key + ".lora_A.weight", DType::kF32, {2, 6}, 1),
                             PatternTensor(key + ".lora_B.weight", DType::kF32, {5, 2}, 2)});
    auto r = LoraAdapter::Open(tmp.Join("a"));
    REQUIRE_FALSE(r.ok());
    ExpectOutside(r.status(), "adapter_config.json");
  }
}

}  // namespace
}  // namespace alloy::formats

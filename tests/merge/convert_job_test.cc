#include "merge/convert_job.h"

#include <catch2/catch.hpp>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "examples/tiny_models.h"
#include "formats/file_util.h"
#include "formats/model_dir.h"
#include "formats/safetensors_writer.h"
#include "merge/codec.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

using formats::DType;
using testing::TempDir;

// name → raw bytes of every tensor of the model at `path`.
std::map<std::string, std::pair<DType, std::string>> ReadAll(const std::string& path) {
  auto src = formats::OpenModel(path);
  REQUIRE(src.ok());
  std::map<std::string, std::pair<DType, std::string>> out;
  for (const formats::TensorInfo& t : (*src)->tensors()) {
    auto view = (*src)->View(t);
    REQUIRE(view.ok());
    out[t.name] = {t.dtype, std::string(reinterpret_cast<const char*>(view->data()), view->size())};
  }
  return out;
}

std::vector<float> Decode(DType dtype, const std::string& bytes) {
  std::vector<float> out(bytes.size() * 8 / static_cast<size_t>(formats::DTypeBits(dtype)));
  DecodeToF32(dtype, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, out);
  return out;
}

// x rounded to `dtype` (f16 saturating, as with --clamp-f16) and decoded again.
float RoundTrip(float x, DType dtype) {
  std::vector<uint8_t> buf(static_cast<size_t>(formats::DTypeBits(dtype)) / 8);
  kernels::EncodeStats stats;
  EncodeFromF32(dtype, {&x, 1}, buf, kernels::Overflow::kSaturate, &stats);
  float back = 0;
  DecodeToF32(dtype, buf, {&back, 1});
  return back;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

examples::TinyModelSpec Spec(DType dtype, uint64_t shard_bytes = formats::kDefaultMaxShardBytes) {
  auto spec = examples::TinyModelPreset("tiny", examples::Family::kQwen2);
  REQUIRE(spec.has_value());
  spec->dtype = dtype;
  spec->model_index = 1;
  spec->max_shard_bytes = shard_bytes;
  return *spec;
}

ConvertModelOptions To(DType dtype) {
  ConvertModelOptions options;
  options.convert.dtype = dtype;
  return options;
}

TEST_CASE("convert round trips are exact where the value is representable", "[merge][convert]") {
  TempDir dir;
  const DType sources[] = {DType::kBF16, DType::kF16, DType::kF32};
  const DType targets[] = {DType::kBF16, DType::kF16, DType::kF32, DType::kF8_E4M3,
                           DType::kF8_E5M2, DType::kF64};
  for (DType from : sources) {
    const std::string src = dir.Join(std::string("src-") + std::string(formats::DTypeName(from)));
    REQUIRE(examples::WriteTinyModel(Spec(from), src).ok());
    const auto original = ReadAll(src);
    for (DType to : targets) {
      DYNAMIC_SECTION(formats::DTypeName(from) << " -> " << formats::DTypeName(to) << " -> back") {
        const std::string mid = dir.Join("mid"), back = dir.Join("back");
        ConvertModelOptions there = To(to);
        there.overwrite = true;
        there.convert.clamp_f16 = true;  // small values only; clamping never triggers
        auto r1 = ConvertModel(src, mid, there, nullptr);
        REQUIRE(r1.ok());
        ConvertModelOptions home = To(from);
        home.overwrite = true;
        REQUIRE(ConvertModel(mid, back, home, nullptr).ok());
        const auto result = ReadAll(back);
        REQUIRE(result.size() == original.size());
        size_t n_exact = 0;
        for (const auto& [name, entry] : original) {
          REQUIRE(result.at(name).first == from);
          const std::vector<float> want = Decode(from, entry.second);
          const std::vector<float> got = Decode(from, result.at(name).second);
          REQUIRE(want.size() == got.size());
          for (size_t i = 0; i < want.size(); ++i) {
            // Representable values come back bit for bit; the rest are rounded
            // once each way, to nearest even.
            const bool representable = SameBits(RoundTrip(want[i], to), want[i]);
            const float expect = RoundTrip(RoundTrip(want[i], to), from);
            if (representable) ++n_exact;
            if (!SameBits(got[i], representable ? want[i] : expect)) {
              FAIL(name << "[" << i << "]: " << want[i] << " came back as " << got[i]);
            }
          }
        }
        if (from != DType::kF32) CHECK(n_exact > 0);
        if (to == from || to == DType::kF32 || to == DType::kF64) {
          CHECK(result == original);  // same or wider: lossless for every value
        }
      }
    }
  }
}

TEST_CASE("a sharded checkpoint rewritten keeps tensor data byte-identical", "[merge][convert]") {
  TempDir dir;
  REQUIRE(examples::WriteTinyModel(Spec(DType::kBF16, 20'000), dir.Join("sharded")).ok());
  const auto original = ReadAll(dir.Join("sharded"));
  ConvertModelOptions options = To(DType::kBF16);
  options.max_shard_bytes = 50'000;
  auto report = ConvertModel(dir.Join("sharded"), dir.Join("out"), options, nullptr);
  REQUIRE(report.ok());
  CHECK(report->n_converted == 0);
  CHECK(report->n_copied == original.size());
  CHECK(ReadAll(dir.Join("out")) == original);
}

TEST_CASE("convert output is byte-identical at 1 and 2 threads", "[merge][convert]") {
  TempDir dir;
  REQUIRE(examples::WriteTinyModel(Spec(DType::kF32, 30'000), dir.Join("in")).ok());
  for (int threads : {1, 2}) {
    ConvertModelOptions options = To(DType::kBF16);
    options.convert.threads = threads;
    options.convert.chunk_elems = 1000;  // many chunks per tensor
    options.max_shard_bytes = 30'000;
    REQUIRE(ConvertModel(dir.Join("in"), dir.Join("t" + std::to_string(threads)), options, nullptr).ok());
  }
  auto files = formats::OpenModel(dir.Join("t1"));
  REQUIRE(files.ok());
  REQUIRE((*files)->files().size() > 1);
  for (const std::string& f : (*files)->files()) {
    const std::string name = f.substr(f.rfind('/') + 1);
    CHECK(testing::ReadFileBytes(dir.Join("t1/" + name)) == testing::ReadFileBytes(dir.Join("t2/" + name)));
  }
  CHECK(testing::ReadFileBytes(dir.Join("t1/model.safetensors.index.json")) ==
        testing::ReadFileBytes(dir.Join("t2/model.safetensors.index.json")));
}

TEST_CASE("convert copies companion files and rewrites torch_dtype", "[merge][convert]") {
  TempDir dir;
  REQUIRE(examples::WriteTinyModel(Spec(DType::kBF16), dir.Join("in")).ok());
  REQUIRE(ConvertModel(dir.Join("in"), dir.Join("out"), To(DType::kF16), nullptr).ok());
  for (const std::string& name : formats::ListCompanionFiles(dir.Join("in"))) {
    INFO(name);
    REQUIRE(formats::ListCompanionFiles(dir.Join("out")).size() ==
            formats::ListCompanionFiles(dir.Join("in")).size());
    if (name != "config.json") {
      CHECK(testing::ReadFileBytes(dir.Join("in/" + name)) ==
            testing::ReadFileBytes(dir.Join("out/" + name)));
    }
  }
  auto config = nlohmann::json::parse(testing::ReadFileBytes(dir.Join("out/config.json")));
  CHECK(config["torch_dtype"] == "float16");
  auto in_config = nlohmann::json::parse(testing::ReadFileBytes(dir.Join("in/config.json")));
  in_config["torch_dtype"] = "float16";
  CHECK(config == in_config);
}

// Writes a one-file checkpoint with the given tensors (f32 values, stored as `dtype`).
// Tests convert `dir/model.safetensors` into `dir/out`: with `dir` itself as
// the input, `dir/out` would be an output inside the input, which is refused.
void WriteModel(const std::string& dir, DType dtype,
                const std::vector<std::pair<std::string, std::vector<float>>>& tensors) {
  std::vector<formats::TensorInfo> infos;
  for (const auto& [name, values] : tensors) {
    auto info = formats::MakeTensorInfo(name, dtype, {static_cast<int64_t>(values.size())});
    REQUIRE(info.ok());
    infos.push_back(*info);
  }
  auto sink = formats::MakeSafetensorsWriter(dir + "/model.safetensors");
  testing::WriteFileBytes(dir + "/config.json", "{\"torch_dtype\": \"bfloat16\"}");
  REQUIRE(sink->Begin(infos, {}).ok());
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::vector<uint8_t> bytes(infos[i].nbytes);
    kernels::EncodeStats stats;
    EncodeFromF32(dtype, tensors[i].second, bytes, kernels::Overflow::kToInf, &stats);
    REQUIRE(sink->WriteAt(i, 0, bytes).ok());
  }
  REQUIRE(sink->Finish().ok());
}

TEST_CASE("f16 overflow fails by default naming the tensor and --clamp-f16 saturates",
          "[merge][convert]") {
  TempDir dir;
  WriteModel(dir.path(), DType::kBF16,
             {{"ok.weight", {1.0f, -2.0f}}, {"big.weight", {1.0f, 1e5f, -7e4f, 3.0f}}});
  auto failed = ConvertModel(dir.Join("model.safetensors"), dir.Join("out"), To(DType::kF16), nullptr);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().code() == formats::ErrorCode::kInvalidArgument);
  CHECK_THAT(failed.status().message(), Catch::Contains("'big.weight'") &&
                                            Catch::Contains("2 overflowed") &&
                                            Catch::Contains("--clamp-f16"));
  CHECK_FALSE(formats::IsDirectory(dir.Join("out")));

  ConvertModelOptions clamp = To(DType::kF16);
  clamp.convert.clamp_f16 = true;
  auto report = ConvertModel(dir.Join("model.safetensors"), dir.Join("out"), clamp, nullptr);
  REQUIRE(report.ok());
  CHECK(report->n_clamped == 2);
  REQUIRE(report->issues.size() == 1);
  CHECK(report->issues[0].name == "big.weight");
  const auto out = ReadAll(dir.Join("out"));
  CHECK(Decode(DType::kF16, out.at("big.weight").second) ==
        std::vector<float>{1.0f, 65504.0f, -65504.0f, 3.0f});
}

TEST_CASE("fp8 conversion saturates and counts clamped values", "[merge][convert]") {
  TempDir dir;
  WriteModel(dir.path(), DType::kF32, {{"w", {0.5f, 1000.0f, -500.0f, 448.0f}}});
  auto report = ConvertModel(dir.Join("model.safetensors"), dir.Join("out"), To(DType::kF8_E4M3), nullptr);
  REQUIRE(report.ok());
  CHECK(report->n_clamped == 2);
  CHECK(Decode(DType::kF8_E4M3, ReadAll(dir.Join("out")).at("w").second) ==
        std::vector<float>{0.5f, 448.0f, -448.0f, 448.0f});
}

TEST_CASE("integer tensors are copied unchanged", "[merge][convert]") {
  TempDir dir;
  auto ids = formats::MakeTensorInfo("position_ids", DType::kI64, {3});
  auto w = formats::MakeTensorInfo("w", DType::kF32, {2});
  REQUIRE((ids.ok() && w.ok()));
  auto sink = formats::MakeSafetensorsWriter(dir.Join("model.safetensors"));
  REQUIRE(sink->Begin({*ids, *w}, {}).ok());
  const int64_t id_values[] = {0, 1, 2};
  const float w_values[] = {1.5f, 2.5f};
  REQUIRE(sink->WriteAt(0, 0, {reinterpret_cast<const uint8_t*>(id_values), 24}).ok());
  REQUIRE(sink->WriteAt(1, 0, {reinterpret_cast<const uint8_t*>(w_values), 8}).ok());
  REQUIRE(sink->Finish().ok());
  auto report = ConvertModel(dir.Join("model.safetensors"), dir.Join("out"), To(DType::kBF16), nullptr);
  REQUIRE(report.ok());
  CHECK(report->n_converted == 1);
  CHECK(report->n_copied == 1);
  const auto out = ReadAll(dir.Join("out"));
  CHECK(out.at("position_ids").first == DType::kI64);
  CHECK(out.at("position_ids").second == std::string(reinterpret_cast<const char*>(id_values), 24));
  CHECK(out.at("w").first == DType::kBF16);
}

TEST_CASE("convert refuses an existing output directory unless overwriting", "[merge][convert]") {
  TempDir dir;
  WriteModel(dir.path(), DType::kF32, {{"w", {1.0f}}});
  testing::WriteFileBytes(dir.Join("out/keep.txt"), "mine");
  auto refused = ConvertModel(dir.Join("model.safetensors"), dir.Join("out"), To(DType::kBF16), nullptr);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == formats::ErrorCode::kInvalidArgument);
  CHECK(testing::ReadFileBytes(dir.Join("out/keep.txt")) == "mine");
  ConvertModelOptions overwrite = To(DType::kBF16);
  overwrite.overwrite = true;
  // Not a model directory: --overwrite still refuses to delete it.
  refused = ConvertModel(dir.Join("model.safetensors"), dir.Join("out"), overwrite, nullptr);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), Catch::Contains("does not look like a model"));
  CHECK(testing::ReadFileBytes(dir.Join("out/keep.txt")) == "mine");
  testing::WriteFileBytes(dir.Join("out/model.safetensors"), "an old output");
  REQUIRE(ConvertModel(dir.Join("model.safetensors"), dir.Join("out"), overwrite, nullptr).ok());
  CHECK_FALSE(formats::IsRegularFile(dir.Join("out/keep.txt")));
  CHECK(formats::IsRegularFile(dir.Join("out/model.safetensors")));
}

TEST_CASE("a malformed config.json fails before any output exists", "[merge][convert]") {
  TempDir dir;
  WriteModel(dir.path(), DType::kF32, {{"w", {1.0f}}});
  testing::WriteFileBytes(dir.Join("config.json"), "{\"a\": 1, \"a\": 2}");
  auto failed = ConvertModel(dir.Join("model.safetensors"), dir.Join("out"), To(DType::kBF16), nullptr);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().code() == formats::ErrorCode::kCorrupt);
  CHECK_THAT(failed.status().message(), Catch::Contains("config.json"));
  CHECK_FALSE(formats::IsDirectory(dir.Join("out")));
}

}  // namespace
}  // namespace alloy::merge

namespace alloy::merge {
namespace {

TEST_CASE("a cancelled conversion stops and leaves no output", "[merge][convert]") {
  testing::TempDir dir;
  REQUIRE(examples::WriteTinyModel(Spec(DType::kF32), dir.Join("in")).ok());
  std::atomic<bool> cancel{true};
  ConvertModelOptions options = To(DType::kBF16);
  options.convert.cancel = &cancel;
  auto result = ConvertModel(dir.Join("in"), dir.Join("out"), options, nullptr);
  REQUIRE_FALSE(result.ok());
  CHECK_THAT(result.status().message(), Catch::Contains("interrupted"));
  CHECK_FALSE(formats::IsDirectory(dir.Join("out")));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    CHECK(entry.path().filename().string().find("alloy-partial") == std::string::npos);
  }
}

}  // namespace
}  // namespace alloy::merge

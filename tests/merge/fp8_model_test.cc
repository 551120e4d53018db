// Block-scaled FP8 checkpoints in the merge layer (merge/fp8_model.h): F8
// weights with `_scale_inv` companions read as float32 = fp8 × block scale,
// scale tensors hidden, refusals of missing/misshapen/mistyped scales, and
// plain F8 checkpoints left at face value.
#include "merge/fp8_model.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "formats/json_strict.h"
#include "kernels/convert.h"
#include "merge/convert_job.h"
#include "merge/gguf_model.h"
#include "tests/testing/safetensors_builder.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::ErrorCode;
using formats::TensorInfo;
using formats::TensorSource;
using testing::SafetensorsBuilder;
using testing::TempDir;

constexpr const char* kFp8Config =
    R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic",
                                "fmt": "e4m3", "weight_block_size": [2, 3]}})";

// Random finite E4M3 codes (never the NaN patterns 0x7F / 0xFF).
std::vector<uint8_t> Codes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> codes(n);
  for (uint8_t& c : codes) {
    do {
      c = static_cast<uint8_t>(rng() & 0xFF);
    } while ((c & 0x7F) == 0x7F);
  }
  return codes;
}

std::vector<float> Scales(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(1e-4f, 2e-2f);
  std::vector<float> s(n);
  for (float& x : s) x = dist(rng);
  return s;
}

std::string Bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
std::string F32Data(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}
std::string Bf16Data(const std::vector<float>& v) {
  std::string s;
  for (float x : v) {
    const uint16_t b = kernels::F32ToBf16(x);
    s.push_back(static_cast<char>(b & 0xFF));
    s.push_back(static_cast<char>(b >> 8));
  }
  return s;
}
// The scales as the reader sees them (bf16-rounded when stored as BF16).
std::vector<float> AsBf16(std::vector<float> v) {
  for (float& x : v) x = kernels::Bf16ToF32(kernels::F32ToBf16(x));
  return v;
}

// The scalar reference: element (r, c) = fp8(code) × scale[r / br][c / bc].
std::vector<float> Reference(const std::vector<uint8_t>& codes, DType dtype, int64_t rows,
                             int64_t cols, const std::vector<float>& scales, int64_t br,
                             int64_t bc) {
  const int64_t scale_cols = (cols + bc - 1) / bc;
  std::vector<float> out(codes.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r * cols + c);
      const float v = dtype == DType::kF8_E4M3 ? kernels::F8E4M3ToF32(codes[i])
                                               : kernels::F8E5M2ToF32(codes[i]);
      out[i] = v * scales[static_cast<size_t>((r / br) * scale_cols + c / bc)];
    }
  }
  return out;
}

// dir/name/model.safetensors (and config.json when `config` is not empty).
std::string WriteModel(const TempDir& dir, const std::string& name, const SafetensorsBuilder& b,
                       const std::string& config) {
  const std::string m = dir.Join(name);
  testing::WriteFileBytes(m + "/model.safetensors", b.Build());
  if (!config.empty()) testing::WriteFileBytes(m + "/config.json", config);
  return m;
}

std::unique_ptr<TensorSource> Open(const std::string& path) {
  auto src = OpenCheckpoint(path);
  INFO(src.status().ToString());
  REQUIRE(src.ok());
  return std::move(src).value();
}

std::vector<float> ReadFloats(const TensorSource& src, const TensorInfo& info) {
  REQUIRE(info.dtype == DType::kF32);
  std::vector<float> v(static_cast<size_t>(info.nbytes / 4));
  REQUIRE(src.Read(info, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(v.data()),
                                               static_cast<size_t>(info.nbytes)))
              .ok());
  return v;
}

void CheckSameBits(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      if (mismatches++ < 5) FAIL_CHECK("element " << i << ": " << got[i] << " != " << want[i]);
    }
  }
  CHECK(mismatches == 0);
}

std::string Refusal(const std::string& path) {
  auto src = OpenCheckpoint(path);
  REQUIRE_FALSE(src.ok());
  return src.status().ToString();
}

TEST_CASE("fp8 block-scaled weights read as f32 equal to fp8 times the block scale",
          "[merge][fp8]") {
  TempDir dir;
  // 5 × 7 with 2 × 3 blocks: edge blocks in both directions (scale 3 × 3).
  const std::vector<uint8_t> codes = Codes(35, 1);
  const std::vector<float> scales = Scales(9, 2);
  const std::vector<uint8_t> codes_e5 = Codes(12, 3);
  const std::vector<float> scales_e5 = Scales(2, 4);
  SafetensorsBuilder b;
  b.Add("model.norm.weight", "F32", {3}, testing::F32Bytes({1.0f, 2.0f, 3.0f}));
  b.Add("q.weight", "F8_E4M3", {5, 7}, Bytes(codes));
  b.Add("q.weight_scale_inv", "F32", {3, 3}, F32Data(scales));
  b.Add("k.weight", "F8_E5M2", {4, 3}, Bytes(codes_e5));
  b.Add("k.weight_scale_inv", "F32", {2, 1}, F32Data(scales_e5));
  const std::string m = WriteModel(dir, "m", b, kFp8Config);
  std::unique_ptr<TensorSource> src = Open(m);

  const TensorInfo* q = src->Find("q.weight");
  REQUIRE(q != nullptr);
  CHECK(q->dtype == DType::kF32);
  CHECK(q->shape == std::vector<int64_t>{5, 7});
  CHECK(q->nbytes == 35 * 4);
  const std::vector<float> want = Reference(codes, DType::kF8_E4M3, 5, 7, scales, 2, 3);
  CheckSameBits(ReadFloats(*src, *q), want);
  CheckSameBits(ReadFloats(*src, *src->Find("k.weight")),
                Reference(codes_e5, DType::kF8_E5M2, 4, 3, scales_e5, 2, 3));

  SECTION("any byte range, aligned or not, reads the same bytes") {
    std::string whole(want.size() * 4, '\0');
    std::memcpy(whole.data(), want.data(), whole.size());
    for (const auto& [offset, len] : std::vector<std::pair<uint64_t, uint64_t>>{
             {0, 1}, {1, 6}, {3, 29}, {27, 4}, {28, 56}, {101, 39}, {139, 1}, {0, 140}}) {
      std::string got(static_cast<size_t>(len), '\0');
      REQUIRE(src->Read(*q, offset, std::span<uint8_t>(reinterpret_cast<uint8_t*>(got.data()),
                                                       got.size()))
                  .ok());
      CHECK(got == whole.substr(static_cast<size_t>(offset), static_cast<size_t>(len)));
    }
    std::vector<uint8_t> past(8);
    CHECK(src->Read(*q, 136, past).code() == ErrorCode::kInvalidArgument);
  }
  SECTION("View materializes the same values") {
    auto view = src->View(*q);
    REQUIRE(view.ok());
    REQUIRE(view->size() == want.size() * 4);
    CHECK(std::memcmp(view->data(), want.data(), view->size()) == 0);
    src->Release(*q);
  }
  SECTION("unscaled tensors pass through") {
    const TensorInfo* norm = src->Find("model.norm.weight");
    REQUIRE(norm != nullptr);
    CheckSameBits(ReadFloats(*src, *norm), {1.0f, 2.0f, 3.0f});
  }
}

TEST_CASE("fp8 scale tensors are hidden from the listing", "[merge][fp8]") {
  TempDir dir;
  SafetensorsBuilder b;
  b.Add("a.weight", "F8_E4M3", {2, 3}, Bytes(Codes(6, 5)));
  b.Add("a.weight_scale_inv", "F32", {1, 1}, F32Data({0.5f}));
  b.Add("a.bias", "BF16", {2}, Bf16Data({1.0f, -1.0f}));
  std::unique_ptr<TensorSource> src = Open(WriteModel(dir, "m", b, kFp8Config));
  REQUIRE(src->tensors().size() == 2);
  CHECK(src->tensors()[0].name == "a.weight");
  CHECK(src->tensors()[0].dtype == DType::kF32);
  CHECK(src->tensors()[1].name == "a.bias");
  CHECK(src->tensors()[1].dtype == DType::kBF16);
  CHECK(src->Find("a.weight_scale_inv") == nullptr);
}

TEST_CASE("fp8 without config uses 128x128 blocks with bf16 scales and edge blocks",
          "[merge][fp8]") {
  TempDir dir;
  // 130 × 257: blocks of 128 leave a 2-row and a 1-column edge (scale 2 × 3).
  const int64_t rows = 130, cols = 257;
  const std::vector<uint8_t> codes = Codes(static_cast<size_t>(rows * cols), 6);
  const std::vector<float> scales = Scales(6, 7);
  SafetensorsBuilder b;
  b.Add("w.weight", "F8_E4M3", {rows, cols}, Bytes(codes));
  b.Add("w.weight_scale_inv", "BF16", {2, 3}, Bf16Data(scales));
  std::unique_ptr<TensorSource> src = Open(WriteModel(dir, "m", b, ""));
  CHECK(src->tensors().size() == 1);
  CheckSameBits(ReadFloats(*src, *src->Find("w.weight")),
                Reference(codes, DType::kF8_E4M3, rows, cols, AsBf16(scales), 128, 128));
}

TEST_CASE("fp8 reads larger than one dequantization piece stay exact", "[merge][fp8]") {
  TempDir dir;
  const int64_t rows = 600, cols = 500;  // 300000 elements: more than one 2^18 piece
  const std::vector<uint8_t> codes = Codes(static_cast<size_t>(rows * cols), 8);
  const std::vector<float> scales = Scales(20, 9);
  SafetensorsBuilder b;
  b.Add("w.weight", "F8_E4M3", {rows, cols}, Bytes(codes));
  b.Add("w.weight_scale_inv", "F16", {5, 4}, [&] {
    std::string s;
    for (float x : scales) {
      const uint16_t h = kernels::F32ToF16(x);
      s.push_back(static_cast<char>(h & 0xFF));
      s.push_back(static_cast<char>(h >> 8));
    }
    return s;
  }());
  std::vector<float> stored = scales;
  for (float& x : stored) x = kernels::F16ToF32(kernels::F32ToF16(x));
  std::unique_ptr<TensorSource> src = Open(WriteModel(dir, "m", b, ""));
  CheckSameBits(ReadFloats(*src, *src->Find("w.weight")),
                Reference(codes, DType::kF8_E4M3, rows, cols, stored, 128, 128));
}

TEST_CASE("fp8 weight without its scale tensor is refused", "[merge][fp8]") {
  TempDir dir;
  SafetensorsBuilder b;
  b.Add("a.weight", "F8_E4M3", {2, 3}, Bytes(Codes(6, 10)));
  b.Add("a.weight_scale_inv", "F32", {1, 1}, F32Data({0.5f}));
  b.Add("b.weight", "F8_E4M3", {2, 3}, Bytes(Codes(6, 11)));
  for (const std::string& config : {std::string(kFp8Config), std::string()}) {
    const std::string m = WriteModel(dir, config.empty() ? "noconfig" : "config", b, config);
    auto src = OpenCheckpoint(m);
    REQUIRE_FALSE(src.ok());
    CHECK(src.status().code() == ErrorCode::kCorrupt);
    CHECK_THAT(src.status().ToString(),
               Catch::Contains(m + "/model.safetensors") &&
                   Catch::Contains("FP8 tensor 'b.weight' has no 'b.weight_scale_inv' scale "
                                   "tensor: refusing to dequantize"));
  }
  SECTION("config quant_method fp8 alone makes the checkpoint FP8-quantized") {
    SafetensorsBuilder only;
    only.Add("b.weight", "F8_E4M3", {2, 3}, Bytes(Codes(6, 12)));
    CHECK_THAT(Refusal(WriteModel(dir, "only", only, kFp8Config)),
               Catch::Contains("FP8 tensor 'b.weight' has no 'b.weight_scale_inv'"));
  }
}

TEST_CASE("fp8 scale of the wrong shape is refused naming both shapes and the block",
          "[merge][fp8]") {
  TempDir dir;
  SafetensorsBuilder b;
  b.Add("a.weight", "F8_E4M3", {5, 7}, Bytes(Codes(35, 13)));
  b.Add("a.weight_scale_inv", "F32", {2, 3}, F32Data(Scales(6, 14)));
  auto src = OpenCheckpoint(WriteModel(dir, "m", b, kFp8Config));
  REQUIRE_FALSE(src.ok());
  CHECK(src.status().code() == ErrorCode::kCorrupt);
  CHECK_THAT(src.status().ToString(),
             Catch::Contains("'a.weight_scale_inv' has shape [2, 3]") &&
                 Catch::Contains("'a.weight' of shape [5, 7]") &&
                 Catch::Contains("block size [2, 3] needs [3, 3]"));
}

TEST_CASE("fp8 scales of another dtype or on non-2-D tensors are refused", "[merge][fp8]") {
  TempDir dir;
  SECTION("I32 scale") {
    SafetensorsBuilder b;
    b.Add("a.weight", "F8_E4M3", {2, 3}, Bytes(Codes(6, 15)));
    b.Add("a.weight_scale_inv", "I32", {1, 1}, testing::I32Bytes({1}));
    CHECK_THAT(Refusal(WriteModel(dir, "m", b, kFp8Config)),
               Catch::Contains("'a.weight_scale_inv' is I32") &&
                   Catch::Contains("must be F32, BF16 or F16"));
  }
  SECTION("3-D weight") {
    SafetensorsBuilder b;
    b.Add("e.weight", "F8_E4M3", {2, 2, 3}, Bytes(Codes(12, 16)));
    b.Add("e.weight_scale_inv", "F32", {1, 1}, F32Data({0.5f}));
    auto src = OpenCheckpoint(WriteModel(dir, "m", b, kFp8Config));
    REQUIRE_FALSE(src.ok());
    CHECK(src.status().code() == ErrorCode::kUnsupported);
    CHECK_THAT(src.status().ToString(), Catch::Contains("'e.weight' has shape [2, 2, 3]"));
  }
  SECTION("scale on a BF16 tensor") {
    SafetensorsBuilder b;
    b.Add("a.weight", "BF16", {2, 3}, Bf16Data(Scales(6, 17)));
    b.Add("a.weight_scale_inv", "F32", {1, 1}, F32Data({0.5f}));
    CHECK_THAT(Refusal(WriteModel(dir, "m", b, "")),
               Catch::Contains("which is BF16, not F8_E4M3 or F8_E5M2"));
  }
  SECTION("scale without its tensor") {
    SafetensorsBuilder b;
    b.Add("a.weight_scale_inv", "F32", {1, 1}, F32Data({0.5f}));
    CHECK_THAT(Refusal(WriteModel(dir, "m", b, "")),
               Catch::Contains("has no tensor 'a.weight' to scale"));
  }
  SECTION("malformed weight_block_size") {
    SafetensorsBuilder b;
    b.Add("a.weight", "F8_E4M3", {2, 3}, Bytes(Codes(6, 18)));
    b.Add("a.weight_scale_inv", "F32", {1, 1}, F32Data({0.5f}));
    auto src = OpenCheckpoint(WriteModel(
        dir, "m", b, R"({"quantization_config": {"quant_method": "fp8", "weight_block_size": [0]}})"));
    REQUIRE_FALSE(src.ok());
    CHECK(src.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(src.status().ToString(), Catch::Contains("weight_block_size"));
  }
}

TEST_CASE("f8 tensors of a checkpoint that is not fp8-quantized keep face value",
          "[merge][fp8]") {
  TempDir dir;
  const std::vector<uint8_t> codes = Codes(6, 19);
  SafetensorsBuilder b;
  b.Add("a.weight", "F8_E4M3", {2, 3}, Bytes(codes));
  const std::string m = WriteModel(
      dir, "m", b, R"({"architectures": ["LlamaForCausalLM"], "torch_dtype": "float8_e4m3fn"})");
  std::unique_ptr<TensorSource> src = Open(m);
  const TensorInfo* a = src->Find("a.weight");
  REQUIRE(a != nullptr);
  CHECK(a->dtype == DType::kF8_E4M3);
  std::vector<uint8_t> got(6);
  REQUIRE(src->Read(*a, 0, got).ok());
  CHECK(got == codes);
  // DequantizeFp8 hands the same source back.
  TensorSource* before = src.get();
  auto same = DequantizeFp8(std::move(src), nullptr);
  REQUIRE(same.ok());
  CHECK(same->get() == before);
  CHECK_FALSE(IsFp8Quantized(**same, nullptr));
}

TEST_CASE("convert of an fp8 checkpoint writes the dequantized weights and no scales",
          "[merge][fp8]") {
  TempDir dir;
  const std::vector<uint8_t> codes = Codes(35, 20);
  const std::vector<float> scales = Scales(9, 21);
  SafetensorsBuilder b;
  b.Add("q.weight", "F8_E4M3", {5, 7}, Bytes(codes));
  b.Add("q.weight_scale_inv", "F32", {3, 3}, F32Data(scales));
  const std::string m = WriteModel(dir, "m", b, kFp8Config);
  ConvertModelOptions options;
  options.convert.dtype = DType::kF32;
  std::vector<std::string> warnings;
  auto report = ConvertModel(m, dir.Join("out"), options, &warnings);
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  std::unique_ptr<TensorSource> out = Open(dir.Join("out"));
  REQUIRE(out->tensors().size() == 1);
  CheckSameBits(ReadFloats(*out, *out->Find("q.weight")),
                Reference(codes, DType::kF8_E4M3, 5, 7, scales, 2, 3));
  // The output is not FP8 any more: transformers must not load it as such.
  const std::string config = testing::ReadFileBytes(dir.Join("out/config.json"));
  CHECK(config.find("quantization_config") == std::string::npos);
  // Converted back to FP8 at face value, alloy reopens it (no longer FP8-quantized).
  options.convert.dtype = DType::kF8_E4M3;
  REQUIRE(ConvertModel(dir.Join("out"), dir.Join("f8"), options, &warnings).ok());
  CHECK(Open(dir.Join("f8"))->Find("q.weight")->dtype == DType::kF8_E4M3);
}

TEST_CASE("DropFp8QuantizationConfig removes only fp8 quantization configs", "[merge][fp8]") {
  nlohmann::json c = nlohmann::json::parse(
      R"({"quantization_config": {"quant_method": "fp8"}, "text_config":
          {"quantization_config": {"quant_method": "fp8"}, "hidden_size": 8}})");
  CHECK(DropFp8QuantizationConfig(c));
  CHECK(c.dump() == R"({"text_config":{"hidden_size":8}})");
  nlohmann::json gptq = nlohmann::json::parse(R"({"quantization_config": {"quant_method": "gptq"}})");
  CHECK_FALSE(DropFp8QuantizationConfig(gptq));
  CHECK(gptq.contains("quantization_config"));
}

}  // namespace
}  // namespace alloy::merge

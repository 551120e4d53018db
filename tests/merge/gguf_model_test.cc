// GGUF in the merge layer (merge/gguf_model.h): dequantized reads, the
// HF ↔ GGUF name map and Q/K permutation, conversion both ways, the GGUF
// sink, and merging GGUF inputs against merging their HF conversions.
#include "merge/gguf_model.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>

#include "examples/tiny_models.h"
#include "formats/file_util.h"
#include "formats/gguf.h"
#include "formats/safetensors_writer.h"
#include "kernels/convert.h"
#include "kernels/quant.h"
#include "merge/convert_job.h"
#include "merge/merge_job.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

using formats::GgmlType;
using formats::GgufKv;
using formats::GgufTensor;
using formats::GgufValue;
using formats::Status;
using formats::TensorInfo;
using formats::TensorSource;
using testing::TempDir;

std::vector<uint8_t> ReadAll(const TensorSource& src, const TensorInfo& info) {
  std::vector<uint8_t> bytes(static_cast<size_t>(info.nbytes));
  REQUIRE(src.Read(info, 0, bytes).ok());
  return bytes;
}

std::vector<float> ReadFloats(const TensorSource& src, const TensorInfo& info) {
  REQUIRE(info.dtype == formats::DType::kF32);
  std::vector<uint8_t> bytes = ReadAll(src, info);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

std::unique_ptr<TensorSource> Open(const std::string& path) {
  auto src = OpenCheckpoint(path);
  INFO(src.status().ToString());
  REQUIRE(src.ok());
  return std::move(src).value();
}

// A tiny llama model in f32 under dir/<name>.
std::string TinyModel(const TempDir& dir, const std::string& name, int index,
                      examples::Family family = examples::Family::kLlama) {
  examples::TinyModelSpec spec;
  spec.family = family;
  spec.dtype = formats::DType::kF32;
  spec.model_index = index;
  spec.finetune_scale = 0.02;
  const std::string out = dir.Join(name);
  REQUIRE(examples::WriteTinyModel(spec, out).ok());
  return out;
}

Status Convert(const std::string& in, const std::string& out, const std::string& dtype) {
  ConvertModelOptions options;
  options.convert.dtype = formats::DType::kF32;
  if (auto d = formats::ParseUserDType(dtype)) {
    options.convert.dtype = *d;
  } else {
    options.gguf_type = formats::ParseGgmlTypeName(dtype);
  }
  std::vector<std::string> warnings;
  return ConvertModel(in, out, options, &warnings).status();
}

// Every tensor of `a` equals the tensor of the same name in `b`, byte for byte.
void RequireSameTensors(const TensorSource& a, const TensorSource& b) {
  REQUIRE(a.tensors().size() == b.tensors().size());
  for (const TensorInfo& t : a.tensors()) {
    INFO(t.name);
    const TensorInfo* u = b.Find(t.name);
    REQUIRE(u != nullptr);
    REQUIRE(u->shape == t.shape);
    REQUIRE(u->dtype == t.dtype);
    CHECK(ReadAll(a, t) == ReadAll(b, *u));
  }
}

TEST_CASE("HF and GGUF llama names map both ways", "[gguf]") {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
      {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
      {"model.layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
      {"model.layers.12.self_attn.q_proj.bias", "blk.12.attn_q.bias"},
      {"model.layers.3.self_attn.k_proj.weight", "blk.3.attn_k.weight"},
      {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
      {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
      {"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight"},
      {"model.layers.3.mlp.gate_proj.weight", "blk.3.ffn_gate.weight"},
      {"model.layers.3.mlp.up_proj.weight", "blk.3.ffn_up.weight"},
      {"model.layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight"},
  };
  for (const auto& [hf, gguf] : pairs) {
    CHECK(GgufNameForHf(hf) == gguf);
    CHECK(HfNameForGguf(gguf) == hf);
  }
  CHECK_FALSE(GgufNameForHf("model.layers.0.mlp.experts.0.w1.weight"));
  CHECK_FALSE(GgufNameForHf("model.layers.x.mlp.up_proj.weight"));
  CHECK_FALSE(HfNameForGguf("blk.0.ffn_gate_exps.weight"));
}

TEST_CASE("HF to GGUF interleaves the rotary halves of each Q head", "[gguf]") {
  // One head of size 4: HF rows [h0 h1 | h2 h3] (halves), GGUF rows in pairs
  // (h0 h2) (h1 h3): GGUF row 2i + p ← HF row p·2 + i.
  TempDir dir;
  const std::string path = dir.Join("m.safetensors");
  std::unique_ptr<formats::TensorSink> w = formats::MakeSafetensorsWriter(path);
  TensorInfo q = formats::MakeTensorInfo("model.layers.0.self_attn.q_proj.weight",
                                         formats::DType::kF32, {4, 2}).value();
  REQUIRE(w->Begin({q}, {}).ok());
  const float rows[8] = {0, 0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f};
  REQUIRE(w->WriteAt(0, 0, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(rows), 32))
              .ok());
  REQUIRE(w->Finish().ok());
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                           {"num_attention_heads", 1},
                           {"num_key_value_heads", 1}};
  auto gguf = HfAsGguf(Open(path), config);
  REQUIRE(gguf.ok());
  const TensorInfo* t = (*gguf)->Find("blk.0.attn_q.weight");
  REQUIRE(t != nullptr);
  CHECK(ReadFloats(**gguf, *t) == std::vector<float>{0, 0.5f, 2, 2.5f, 1, 1.5f, 3, 3.5f});
  // A read starting inside a row.
  std::vector<uint8_t> part(12);
  REQUIRE((*gguf)->Read(*t, 12, part).ok());
  float got[3];
  std::memcpy(got, part.data(), 12);
  CHECK(got[0] == 2.5f);
  CHECK(got[1] == 1.0f);
  CHECK(got[2] == 1.5f);
}

TEST_CASE("HF to GGUF to HF conversion is lossless in f32", "[gguf]") {
  TempDir dir;
  for (examples::Family family : {examples::Family::kLlama, examples::Family::kQwen2}) {
    const std::string name(examples::FamilyName(family));
    INFO(name);
    const std::string hf = TinyModel(dir, name, 0, family);
    REQUIRE(Convert(hf, dir.Join(name + ".gguf"), "f32").ok());
    REQUIRE(Convert(dir.Join(name + ".gguf"), dir.Join(name + "-back"), "f32").ok());
    auto a = Open(hf);
    auto b = Open(dir.Join(name + "-back"));
    RequireSameTensors(*a, *b);
    // The GGUF file has the model's metadata.
    auto g = Open(dir.Join(name + ".gguf"));
    const formats::GgufHeader* h = GgufHeaderOf(*g);
    REQUIRE(h != nullptr);
    CHECK(h->Architecture() == name);
    CHECK(h->Find(name + ".block_count")->AsUint() == 2u);
    CHECK(h->Find(name + ".attention.head_count_kv")->AsUint() == 2u);
    CHECK(h->Find("tokenizer.ggml.tokens")->count == 256u);
    // Back in HF layout: config from the metadata.
    const nlohmann::json config = ConfigFromGguf(*h, *g);
    CHECK(config["num_hidden_layers"] == 2);
    CHECK(config["num_key_value_heads"] == 2);
    CHECK(config["vocab_size"] == 256);
  }
}

TEST_CASE("GGUF Q8_0 conversion stays within one quantization step", "[gguf]") {
  TempDir dir;
  const std::string hf = TinyModel(dir, "base", 0);
  REQUIRE(Convert(hf, dir.Join("q8.gguf"), "q8_0").ok());
  auto g = Open(dir.Join("q8.gguf"));
  const formats::GgufHeader* h = GgufHeaderOf(*g);
  REQUIRE(h != nullptr);
  size_t n_q8 = 0;
  for (const GgufTensor& t : h->tensors) {
    INFO(t.name);
    if (t.ne.size() == 1) {
      CHECK(t.type == static_cast<uint32_t>(GgmlType::kF32));  // norms stay f32
    } else {
      CHECK(t.type == static_cast<uint32_t>(GgmlType::kQ8_0));
      ++n_q8;
    }
  }
  CHECK(n_q8 > 0);
  CHECK(h->Find("general.file_type")->AsUint() == 7u);
  CHECK(h->Find("general.quantization_version")->AsUint() == 2u);
  REQUIRE(Convert(dir.Join("q8.gguf"), dir.Join("back"), "f32").ok());
  auto a = Open(hf);
  auto b = Open(dir.Join("back"));
  for (const TensorInfo& t : a->tensors()) {
    INFO(t.name);
    const std::vector<float> x = ReadFloats(*a, t);
    const std::vector<float> y = ReadFloats(*b, *b->Find(t.name));
    REQUIRE(x.size() == y.size());
    for (size_t blk = 0; blk < x.size(); blk += 32) {
      float amax = 0;
      const size_t end = std::min(x.size(), blk + 32);
      for (size_t i = blk; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
      // Half a step of d = amax/127, plus the f16 rounding of d (×127).
      const float bound = amax / 127 * (0.5f + 127.0f / 1024);
      for (size_t i = blk; i < end; ++i) REQUIRE(std::fabs(x[i] - y[i]) <= bound);
    }
  }
}

TEST_CASE("Quantized GGUF tensors read as their dequantized values at any offset", "[gguf]") {
  TempDir dir;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(64 * 3);
  for (float& v : values) v = normal(rng);
  std::vector<uint8_t> q8(values.size() / 32 * 34), q4(values.size() / 32 * 18);
  kernels::QuantizeQ8_0(values, q8);
  kernels::QuantizeQ4_0(values, q4);
  formats::GgufWriter w(dir.Join("q.gguf"), false);
  std::vector<GgufTensor> tensors = {
      {"a.weight", {64, 3}, static_cast<uint32_t>(GgmlType::kQ8_0), 0, 0},
      {"b.weight", {64, 3}, static_cast<uint32_t>(GgmlType::kQ4_0), 0, 0}};
  REQUIRE(w.Begin({{"general.architecture", GgufValue::String("llama")}}, tensors).ok());
  REQUIRE(w.WriteAt(0, 0, q8).ok());
  REQUIRE(w.WriteAt(1, 0, q4).ok());
  REQUIRE(w.Finish().ok());

  auto src = Open(dir.Join("q.gguf"));
  for (const auto& [name, kind, raw] :
       {std::tuple{"a.weight", kernels::QuantKind::kQ8_0, &q8},
        std::tuple{"b.weight", kernels::QuantKind::kQ4_0, &q4}}) {
    INFO(name);
    const TensorInfo* t = src->Find(name);
    REQUIRE(t != nullptr);
    CHECK(t->dtype == formats::DType::kF32);
    CHECK(t->shape == std::vector<int64_t>{3, 64});
    std::vector<float> expect(values.size());
    kernels::Dequantize(kind, *raw, expect);
    CHECK(ReadFloats(*src, *t) == expect);
    // Unaligned ranges crossing block boundaries.
    for (uint64_t offset : {0u, 4u, 100u, 126u, 131u, 500u}) {
      std::vector<uint8_t> part(150);
      REQUIRE(src->Read(*t, offset, part).ok());
      CHECK(std::memcmp(part.data(), reinterpret_cast<const uint8_t*>(expect.data()) + offset,
                        part.size()) == 0);
    }
    auto view = src->View(*t);
    REQUIRE(view.ok());
    CHECK(std::memcmp(view->data(), expect.data(), view->size()) == 0);
    src->Release(*t);
  }
}

TEST_CASE("A donor GGUF aligned to 64 bytes converts and merges into 32-aligned files", "[gguf]") {
  TempDir dir;
  std::vector<float> values(64 * 2, 0.25f);
  formats::GgufWriter w(dir.Join("a64.gguf"), false);
  std::vector<GgufTensor> tensors = {
      {"blk.0.ffn_up.weight", {64, 2}, static_cast<uint32_t>(GgmlType::kF32), 0, 0}};
  REQUIRE(w.Begin({{"general.architecture", GgufValue::String("llama")}}, tensors, 64).ok());
  REQUIRE(w.WriteAt(0, 0, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()),
                                                   values.size() * 4))
              .ok());
  REQUIRE(w.Finish().ok());
  REQUIRE(GgufHeaderOf(*Open(dir.Join("a64.gguf")))->alignment == 64u);
  REQUIRE(Convert(dir.Join("a64.gguf"), dir.Join("c.gguf"), "f16").ok());
  CHECK(GgufHeaderOf(*Open(dir.Join("c.gguf")))->alignment == 32u);
  const std::string recipe = dir.Join("r.yml");
  testing::WriteFileBytes(recipe, "merge_method: linear\nmodels:\n  - model: " +
                                      dir.Join("a64.gguf") + "\n    parameters: {weight: 1.0}\n");
  auto report = RunMergeFile(recipe, dir.Join("m.gguf"), MergeJobOptions());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  auto merged = Open(dir.Join("m.gguf"));
  CHECK(GgufHeaderOf(*merged)->alignment == 32u);
  CHECK(ReadFloats(*merged, *merged->Find("blk.0.ffn_up.weight")) == values);
}

TEST_CASE("The GGUF sink quantizes writes that split blocks anywhere", "[gguf]") {
  TempDir dir;
  std::vector<float> values(32 * 8);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(static_cast<float>(i));
  const auto* bytes = reinterpret_cast<const uint8_t*>(values.data());
  TensorInfo t = formats::MakeTensorInfo("w.weight", formats::DType::kF32, {2, 128}).value();
  auto write = [&](const std::string& path, std::vector<size_t> cuts) {
    GgufSinkOptions options;
    options.type_for = [](const TensorInfo&) { return GgmlType::kQ8_0; };
    auto sink = MakeGgufSink(path, options);
    REQUIRE(sink->Begin({t}, {}).ok());
    cuts.push_back(t.nbytes);
    size_t at = 0;
    for (size_t cut : cuts) {
      REQUIRE(sink->WriteAt(0, at, std::span<const uint8_t>(bytes + at, cut - at)).ok());
      at = cut;
    }
    REQUIRE(sink->Finish().ok());
  };
  write(dir.Join("whole.gguf"), {});
  write(dir.Join("cut.gguf"), {3, 130, 131, 512, 700});
  CHECK(testing::ReadFileBytes(dir.Join("whole.gguf")) ==
        testing::ReadFileBytes(dir.Join("cut.gguf")));
  // An incomplete block is refused at Finish.
  GgufSinkOptions options;
  options.type_for = [](const TensorInfo&) { return GgmlType::kQ8_0; };
  auto sink = MakeGgufSink(dir.Join("partial.gguf"), options);
  REQUIRE(sink->Begin({t}, {}).ok());
  REQUIRE(sink->WriteAt(0, 0, std::span<const uint8_t>(bytes, t.nbytes - 4)).ok());
  CHECK_FALSE(sink->Finish().ok());
}

std::string WriteRecipe(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.Join(name);
  testing::WriteFileBytes(path, text);
  return path;
}

MergeJobOptions Quiet() {
  MergeJobOptions options;
  options.execute.threads = 2;
  return options;
}

TEST_CASE("Merging GGUF models equals merging their HF conversions then converting", "[gguf]") {
  TempDir dir;
  const std::string base = TinyModel(dir, "base", 0);
  const std::string ft1 = TinyModel(dir, "ft1", 1);
  const std::string ft2 = TinyModel(dir, "ft2", 2);
  for (const std::string m : {"base", "ft1", "ft2"}) {
    REQUIRE(Convert(dir.Join(m), dir.Join(m + ".gguf"), "f32").ok());
  }
  const std::vector<std::pair<std::string, std::string>> methods = {
      {"linear", "merge_method: linear\nmodels:\n  - model: @base\n    parameters: {weight: 0.3}\n"
                 "  - model: @ft1\n    parameters: {weight: 0.7}\ndtype: float32\n"},
      {"slerp", "merge_method: slerp\nbase_model: @base\nmodels:\n  - model: @base\n  - model: @ft1\n"
                "parameters: {t: 0.4}\ndtype: float32\n"},
      {"ties", "merge_method: ties\nbase_model: @base\nmodels:\n  - model: @ft1\n"
               "    parameters: {weight: 0.5, density: 0.5}\n  - model: @ft2\n"
               "    parameters: {weight: 0.5, density: 0.5}\ndtype: float32\n"},
      {"slices", "slices:\n  - sources:\n      - model: @base\n        layer_range: [0, 2]\n"
                 "  - sources:\n      - model: @ft1\n        layer_range: [1, 2]\n"
                 "merge_method: passthrough\ndtype: float32\n"},
  };
  for (const auto& [method, text] : methods) {
    INFO(method);
    auto spell = [&](std::string t, const std::string& suffix) {
      for (const std::string m : {"base", "ft1", "ft2"}) {
        size_t pos;
        while ((pos = t.find("@" + m)) != std::string::npos) t.replace(pos, m.size() + 1, dir.Join(m) + suffix);
      }
      return t;
    };
    const std::string g = WriteRecipe(dir, method + "-gguf.yml", spell(text, ".gguf"));
    const std::string h = WriteRecipe(dir, method + "-hf.yml", spell(text, ""));
    auto r1 = RunMergeFile(g, dir.Join(method + ".gguf"), Quiet());
    INFO(r1.status().ToString());
    REQUIRE(r1.ok());
    auto r2 = RunMergeFile(h, dir.Join(method + "-hf"), Quiet());
    REQUIRE(r2.ok());
    REQUIRE(Convert(dir.Join(method + "-hf"), dir.Join(method + "-conv.gguf"), "f32").ok());
    auto merged = Open(dir.Join(method + ".gguf"));
    auto converted = Open(dir.Join(method + "-conv.gguf"));
    RequireSameTensors(*merged, *converted);
    const formats::GgufHeader* mh = GgufHeaderOf(*merged);
    CHECK(mh->Find("llama.block_count")->AsUint() == (method == "slices" ? 3u : 2u));
    CHECK(mh->Find("tokenizer.ggml.tokens") != nullptr);
  }
}

TEST_CASE("Merging quantized GGUF models keeps Q8_0 and writes K-quant donors as Q8_0", "[gguf]") {
  TempDir dir;
  TinyModel(dir, "base", 0);
  TinyModel(dir, "ft1", 1);
  REQUIRE(Convert(dir.Join("base"), dir.Join("base.gguf"), "q8_0").ok());
  REQUIRE(Convert(dir.Join("ft1"), dir.Join("ft1.gguf"), "q8_0").ok());
  const std::string recipe = WriteRecipe(
      dir, "r.yml",
      "merge_method: linear\nmodels:\n  - model: " + dir.Join("base.gguf") +
          "\n    parameters: {weight: 0.5}\n  - model: " + dir.Join("ft1.gguf") +
          "\n    parameters: {weight: 0.5}\n");
  auto report = RunMergeFile(recipe, dir.Join("out.gguf"), Quiet());
  INFO(report.status().ToString());
  REQUIRE(report.ok());
  auto out = Open(dir.Join("out.gguf"));
  for (const GgufTensor& t : GgufHeaderOf(*out)->tensors) {
    INFO(t.name);
    CHECK(t.type == (t.ne.size() == 1 ? static_cast<uint32_t>(GgmlType::kF32)
                                      : static_cast<uint32_t>(GgmlType::kQ8_0)));
  }
}

TEST_CASE("GGUF merges refuse mixed inputs and outputs not ending in .gguf", "[gguf]") {
  TempDir dir;
  TinyModel(dir, "base", 0);
  TinyModel(dir, "ft1", 1);
  REQUIRE(Convert(dir.Join("base"), dir.Join("base.gguf"), "f32").ok());
  const std::string mixed = WriteRecipe(
      dir, "mixed.yml",
      "merge_method: linear\nmodels:\n  - model: " + dir.Join("base.gguf") +
          "\n    parameters: {weight: 0.5}\n  - model: " + dir.Join("ft1") +
          "\n    parameters: {weight: 0.5}\n");
  auto r = RunMergeFile(mixed, dir.Join("out.gguf"), Quiet());
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("GGUF and non-GGUF"));
  const std::string only = WriteRecipe(
      dir, "only.yml",
      "merge_method: linear\nmodels:\n  - model: " + dir.Join("base.gguf") +
          "\n    parameters: {weight: 1.0}\n");
  r = RunMergeFile(only, dir.Join("outdir"), Quiet());
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("ending in .gguf"));
  CHECK_FALSE(formats::IsRegularFile(dir.Join("outdir")));
}

}  // namespace
}  // namespace alloy::merge

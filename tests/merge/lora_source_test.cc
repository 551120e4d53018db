// Tests for merge/lora_source (`model+lora`): values against W + s·B·A
// written from the PEFT formulas, any read split equals the whole tensor,
// saved modules replace tensors, and one test per refusal.
#include "merge/lora_source.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "examples/tiny_models.h"
#include "formats/model_dir.h"
#include "kernels/convert.h"
#include "merge/model_opener.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::merge {
namespace {

using formats::DType;
using formats::ErrorCode;
using formats::TensorInfo;
using testing::TempDir;

examples::TinyModelSpec Spec(DType dtype) {
  examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  spec.hidden_size = 16;
  spec.intermediate_size = 32;
  spec.vocab_size = 24;
  spec.num_layers = 2;
  spec.dtype = dtype;
  return spec;
}

std::vector<float> ReadF32(formats::TensorSource& src, const TensorInfo& info, uint64_t first = 0,
                           uint64_t n = 0) {
  const size_t elem = static_cast<size_t>(formats::DTypeBits(info.dtype)) / 8;
  if (n == 0) n = info.numel() - first;
  std::vector<uint8_t> bytes(n * elem);
  REQUIRE(src.Read(info, first * elem, bytes).ok());
  std::vector<float> out(n);
  if (info.dtype == DType::kF32) {
    std::memcpy(out.data(), bytes.data(), bytes.size());
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      out[i] = kernels::Bf16ToF32(b);
    }
  }
  return out;
}

// W + scale · Σ_k L(i, k)·R(k, j), the sum in k order in float64.
double Expected(double w, double scale, int64_t rank, const std::function<double(int64_t)>& l,
                const std::function<double(int64_t)>& r) {
  double delta = 0.0;
  for (int64_t k = 0; k < rank; ++k) delta += l(k) * r(k);
  return w + scale * delta;
}

formats::Result<OpenedModel> OpenWithLora(DiskModelOpener& opener, const std::string& base,
                                          const std::string& adapter) {
  ModelRef ref;
  ref.text = base + "+" + adapter;
  ref.path = base;
  ref.lora_path = adapter;
  return opener.Open(ref);
}

TEST_CASE("lora source: W + s·B·A for linear layers and (B·A)ᵀ for embeddings", "[merge][lora]") {
  TempDir dir;
  const examples::TinyModelSpec spec = Spec(DType::kF32);
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("base")).ok());
  for (bool rslora : {false, true}) {
    CAPTURE(rslora);
    examples::TinyLoraSpec lora;
    lora.rank = 3;
    lora.alpha = 6;
    lora.use_rslora = rslora;
    lora.embeddings = true;
    const std::string adapter = dir.Join(rslora ? "rs" : "plain");
    REQUIRE(examples::WriteTinyLoraAdapter(spec, lora, adapter).ok());
    DiskModelOpener opener;
    auto opened = OpenWithLora(opener, dir.Join("base"), adapter);
    INFO(opened.status().ToString());
    REQUIRE(opened.ok());
    formats::TensorSource& src = *opened->source;
    const double scale = rslora ? 6.0 / std::sqrt(3.0) : 2.0;

    const std::string q = "model.layers.1.self_attn.q_proj.weight";
    const std::string qa = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight";
    const std::string qb = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight";
    const TensorInfo* info = src.Find(q);
    REQUIRE(info != nullptr);
    const int64_t in = info->shape[1];
    const std::vector<float> got = ReadF32(src, *info);
    size_t bad = 0;
    for (int64_t i = 0; i < info->shape[0]; ++i) {
      for (int64_t j = 0; j < in; ++j) {
        const double want = Expected(
            examples::TinyModelValue(spec, q, static_cast<uint64_t>(i * in + j)), scale, 3,
            [&](int64_t k) { return examples::TinyLoraValue(lora, qb, static_cast<uint64_t>(i * 3 + k)); },
            [&](int64_t k) { return examples::TinyLoraValue(lora, qa, static_cast<uint64_t>(k * in + j)); });
        bad += got[static_cast<size_t>(i * in + j)] != static_cast<float>(want);
      }
    }
    CHECK(bad == 0);

    const std::string e = "model.embed_tokens.weight";
    const std::string ea = "base_model.model.model.embed_tokens.lora_embedding_A";
    const std::string eb = "base_model.model.model.embed_tokens.lora_embedding_B";
    const TensorInfo* emb = src.Find(e);
    REQUIRE(emb != nullptr);
    const int64_t vocab = emb->shape[0], dim = emb->shape[1];
    const std::vector<float> got_e = ReadF32(src, *emb);
    bad = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      for (int64_t d = 0; d < dim; ++d) {
        const double want = Expected(
            examples::TinyModelValue(spec, e, static_cast<uint64_t>(v * dim + d)), scale, 3,
            [&](int64_t k) { return examples::TinyLoraValue(lora, ea, static_cast<uint64_t>(k * vocab + v)); },
            [&](int64_t k) { return examples::TinyLoraValue(lora, eb, static_cast<uint64_t>(d * 3 + k)); });
        bad += got_e[static_cast<size_t>(v * dim + d)] != static_cast<float>(want);
      }
    }
    CHECK(bad == 0);

    // Untouched tensors read as the base's.
    const std::string k_proj = "model.layers.0.self_attn.k_proj.weight";
    const std::vector<float> k_vals = ReadF32(src, *src.Find(k_proj));
    for (size_t i = 0; i < k_vals.size(); ++i) {
      if (k_vals[i] != examples::TinyModelValue(spec, k_proj, i)) ++bad;
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("lora source: any read split equals the whole tensor, in bf16 too",
          "[merge][lora]") {
  TempDir dir;
  const examples::TinyModelSpec spec = Spec(DType::kBF16);
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("base")).ok());
  examples::TinyLoraSpec lora;
  lora.dtype = DType::kBF16;
  REQUIRE(examples::WriteTinyLoraAdapter(spec, lora, dir.Join("lora")).ok());
  DiskModelOpener opener;
  auto opened = OpenWithLora(opener, dir.Join("base"), dir.Join("lora"));
  REQUIRE(opened.ok());
  formats::TensorSource& src = *opened->source;
  const TensorInfo& info = *src.Find("model.layers.0.self_attn.v_proj.weight");
  const std::vector<float> whole = ReadF32(src, info);
  const std::vector<float> plain = ReadF32(src, *src.Find("model.layers.0.self_attn.k_proj.weight"));
  CHECK(whole.size() == info.numel());
  for (uint64_t first : {uint64_t{0}, uint64_t{5}, uint64_t{17}}) {
    for (uint64_t n : {uint64_t{1}, uint64_t{7}, uint64_t{40}}) {
      const std::vector<float> part = ReadF32(src, info, first, n);
      for (uint64_t i = 0; i < n; ++i) CHECK(part[i] == whole[first + i]);
    }
  }
  // A computed tensor has no bytes to map; untouched ones still map.
  CHECK(src.View(info).status().code() == ErrorCode::kUnsupported);
  CHECK(src.View(*src.Find("model.layers.0.self_attn.k_proj.weight")).ok());
  src.Release(info);
  // A read that splits an element is refused.
  std::vector<uint8_t> odd(3);
  CHECK(src.Read(info, 1, odd).code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("lora source: a saved module replaces the base tensor", "[merge][lora]") {
  TempDir dir;
  const examples::TinyModelSpec spec = Spec(DType::kF32);
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("base")).ok());
  const std::string adapter = dir.Join("lora");
  REQUIRE(examples::WriteTinyLoraAdapter(spec, examples::TinyLoraSpec{}, adapter).ok());
  // Rewrite the adapter with an extra full lm_head (modules_to_save).
  auto tensors = formats::OpenModel(adapter + "/adapter_model.safetensors");
  REQUIRE(tensors.ok());
  std::vector<testing::FixtureTensor> fixture;
  for (const TensorInfo& t : (*tensors)->tensors()) {
    std::string data(t.nbytes, '\0');
    REQUIRE((*tensors)->Read(t, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(data.data()),
                                                       data.size()))
                .ok());
    fixture.push_back({t.name, t.dtype, t.shape, data});
  }
  tensors->reset();
  const std::vector<int64_t> head_shape = {spec.vocab_size, spec.hidden_size};
  fixture.push_back(testing::PatternTensor("base_model.model.lm_head.weight", DType::kBF16,
                                           head_shape, 9));
  testing::WriteSafetensorsFixture(adapter + "/adapter_model.safetensors", fixture);
  DiskModelOpener opener;
  auto opened = OpenWithLora(opener, dir.Join("base"), adapter);
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  const TensorInfo* head = opened->source->Find("lm_head.weight");
  REQUIRE(head != nullptr);
  CHECK(head->dtype == DType::kBF16);
  std::vector<uint8_t> bytes(head->nbytes);
  REQUIRE(opened->source->Read(*head, 0, bytes).ok());
  CHECK(std::string(bytes.begin(), bytes.end()) == fixture.back().data);
}

TEST_CASE("lora source: adapters that do not fit the model are refused", "[merge][lora][errors]") {
  TempDir dir;
  const examples::TinyModelSpec spec = Spec(DType::kF32);
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("base")).ok());
  examples::TinyModelSpec other = spec;
  SECTION("another shape") {
    other.hidden_size = 32;
    REQUIRE(examples::WriteTinyLoraAdapter(other, examples::TinyLoraSpec{}, dir.Join("lora")).ok());
    DiskModelOpener opener;
    auto opened = OpenWithLora(opener, dir.Join("base"), dir.Join("lora"));
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(opened.status().message(), Catch::Contains("the factors make a delta of shape"));
  }
  SECTION("a module the model does not have") {
    other.num_layers = 3;
    REQUIRE(examples::WriteTinyLoraAdapter(other, examples::TinyLoraSpec{}, dir.Join("lora")).ok());
    DiskModelOpener opener;
    auto opened = OpenWithLora(opener, dir.Join("base"), dir.Join("lora"));
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(opened.status().message(),
               Catch::Contains("model.layers.2.self_attn.q_proj.weight") &&
                   Catch::Contains("trained on tiny-llama"));
  }
  SECTION("an adapter directory that is not one") {
    DiskModelOpener opener;
    auto opened = OpenWithLora(opener, dir.Join("base"), dir.Join("base"));
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == ErrorCode::kNotFound);
    CHECK_THAT(opened.status().message(), Catch::Contains("no adapter_config.json"));
  }
}

TEST_CASE("lora source: model and model+lora are two models", "[merge][lora]") {
  TempDir dir;
  const examples::TinyModelSpec spec = Spec(DType::kF32);
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("base")).ok());
  REQUIRE(examples::WriteTinyLoraAdapter(spec, examples::TinyLoraSpec{}, dir.Join("lora")).ok());
  DiskModelOpener opener;
  ModelRef bare;
  bare.text = bare.path = dir.Join("base");
  auto a = opener.Open(bare);
  auto b = OpenWithLora(opener, dir.Join("base"), dir.Join("lora"));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->identity != b->identity);
  CHECK(a->directory == b->directory);  // config and tokenizer from the base
  CHECK(a->source != b->source);
}

}  // namespace
}  // namespace alloy::merge

#include "merge/model_info.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "examples/tiny_models.h"
#include "formats/model_dir.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

TEST_CASE("LayerIndexOf reads the layer number from common layouts", "[merge][model_info]") {
  CHECK(LayerIndexOf("model.layers.12.mlp.up_proj.weight") == 12);
  CHECK(LayerIndexOf("transformer.h.3.attn.c_attn.weight") == 3);
  CHECK(LayerIndexOf("blocks.0.ffn.weight") == 0);
  CHECK(LayerIndexOf("model.embed_tokens.weight") == -1);
  CHECK(LayerIndexOf("model.layers.x.weight") == -1);
  CHECK(LayerIndexOf("model.mylayers.4.weight") == -1);
}

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<formats::TensorSource> src;
  nlohmann::json config;
  examples::TinyModelSpec spec;

  explicit Fixture(examples::Family family) {
    spec = *examples::TinyModelPreset("tiny", family);
    REQUIRE(examples::WriteTinyModel(spec, dir.Join("m")).ok());
    auto opened = formats::OpenModel(dir.Join("m"));
    REQUIRE(opened.ok());
    src = std::move(*opened);
    config = nlohmann::json::parse(testing::ReadFileBytes(dir.Join("m/config.json")));
  }
};

TEST_CASE("SummarizeModel counts parameters as the sum of shape products", "[merge][model_info]") {
  for (examples::Family family : examples::kAllFamilies) {
    Fixture f(family);
    const ModelSummary s = SummarizeModel(*f.src, &f.config, f.dir.Join("m"));
    uint64_t params = 0, bytes = 0;
    for (const formats::TensorInfo& t : f.src->tensors()) {
      uint64_t n = 1;
      for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
      params += n;
      bytes += t.nbytes;
    }
    CHECK(s.n_params == params);
    CHECK(s.n_bytes == bytes);
    CHECK(s.n_tensors == f.src->tensors().size());
    CHECK(s.detected_layers == f.spec.num_layers);
    CHECK(s.config_layers == f.spec.num_layers);
    CHECK(s.hidden_size == f.spec.hidden_size);
    CHECK(s.vocab_size == f.spec.vocab_size);
    CHECK(s.tied_embeddings == (family == examples::Family::kGemma));
    CHECK(s.attention_shapes.size() == static_cast<size_t>(4 * f.spec.num_layers));
  }
}

TEST_CASE("memory table follows the documented formulas", "[merge][model_info]") {
  Fixture f(examples::Family::kLlama);
  const ModelSummary s = SummarizeModel(*f.src, &f.config, "m");
  const double p = static_cast<double>(s.n_params);
  double a16 = 0;
  for (const auto& [out, in] : s.attention_shapes) a16 += 16.0 * static_cast<double>(out + in);
  const double linear = static_cast<double>(s.n_linear_params);
  std::map<std::string, double> want = {
      {"inference weights/fp32", 4 * p},
      {"inference weights/fp16", 2 * p},
      {"inference weights/bf16", 2 * p},
      {"inference weights/int8", p},
      {"inference weights/int4", 0.5 * p},
      {"full fine-tune, Adam/mixed precision", 16 * p},
      {"full fine-tune, Adam/fp32", 16 * p},
      {"LoRA (q,k,v,o)/rank 16", 2 * p + 16 * a16},
      {"LoRA (q,k,v,o)/rank 64", 2 * p + 16 * a16 * 4},
      {"QLoRA (4-bit base, q,k,v,o)/rank 16", linear * (0.5 + 4.0 / 64) + (p - linear) * 2 + 16 * a16},
  };
  std::map<std::string, double> got;
  for (const MemoryRow& row : EstimateMemory(s)) got[row.scenario + "/" + row.setting] = row.bytes;
  for (const auto& [key, bytes] : want) {
    INFO(key);
    REQUIRE(got.count(key) == 1);
    CHECK(got[key] == Approx(bytes));
  }
  // Linear parameters exclude embeddings and lm_head.
  uint64_t expect_linear = 0;
  for (const formats::TensorInfo& t : f.src->tensors()) {
    if (t.shape.size() == 2 && t.name.find("embed") == std::string::npos &&
        t.name.find("lm_head") == std::string::npos) {
      expect_linear += t.numel();
    }
  }
  CHECK(s.n_linear_params == expect_linear);
}

TEST_CASE("SummarizeModel works without config.json", "[merge][model_info]") {
  Fixture f(examples::Family::kMistral);
  const ModelSummary s = SummarizeModel(*f.src, nullptr, "m");
  CHECK(s.architecture.empty());
  CHECK_FALSE(s.config_layers.has_value());
  CHECK(s.detected_layers == f.spec.num_layers);
}

}  // namespace
}  // namespace alloy::merge

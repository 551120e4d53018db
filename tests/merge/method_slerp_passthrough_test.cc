// slerp, nearswap and passthrough (mergekit-semantics.md §1.5, §1.11, §1.14)
// against references written from the formulas, through the whole executor;
// layer stacking with passthrough slices (a Goliath-style interleave); and
// threads 1 vs 2 byte identity for the three methods.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "formats/file_util.h"
#include "merge/executor.h"
#include "tests/merge/merge_test_support.h"

namespace alloy::merge {
namespace {

using testing_support::FileBytes;
using testing_support::kLayerWeight;
using testing_support::MiniModel;
using testing_support::OneTensorModel;
using testing_support::RunRecipe;
using testing_support::ValuesTensor;
using Values = std::vector<float>;

std::string TwoModelRecipe(const std::string& method, const std::string& global) {
  return "merge_method: " + method + "\nbase_model: $D/a\nmodels:\n  - model: $D/a\n"
         "  - model: $D/b\nparameters: {" + global + "}\n";
}

// slerp's coefficients from the formulas, in float64.
std::pair<double, double> SlerpRef(const Values& v0, const Values& v1, double t) {
  double aa = 0, bb = 0, ab = 0;
  for (size_t i = 0; i < v0.size(); ++i) {
    aa += double(v0[i]) * v0[i];
    bb += double(v1[i]) * v1[i];
    ab += double(v0[i]) * v1[i];
  }
  const double n0 = std::sqrt(aa), n1 = std::sqrt(bb);
  const double dot = ab / ((n0 > 1e-8 ? n0 : 1) * (n1 > 1e-8 ? n1 : 1));
  if (std::fabs(dot) > 0.9995) return {1 - t, t};
  const double th = std::acos(dot);
  return {std::sin((1 - t) * th) / std::sin(th), std::sin(t * th) / std::sin(th)};
}

Values Blend(const Values& v0, const Values& v1, std::pair<double, double> s) {
  Values out(v0.size());
  for (size_t i = 0; i < v0.size(); ++i) {
    out[i] = static_cast<float>(double(float(s.first) * v0[i]) + double(float(s.second) * v1[i]));
  }
  return out;
}

TEST_CASE("slerp: the spherical blend, the lerp fallback and the end points", "[merge][slerp]") {
  struct Case {
    const char* name;
    Values a, b;
  };
  const Case cases[] = {
      {"orthogonal", {3, 0, 0, 0}, {0, 4, 0, 0}},
      {"obtuse", {1, 2, -1, 0.5f}, {-2, 0.5f, 1, 1}},
      {"colinear", {1, 2, 3, 4}, {2, 4, 6, 8}},        // |dot| = 1: lerp
      {"antipodal", {1, 2, 3, 4}, {-1, -2, -3, -4}},   // dot = −1: lerp
      {"zero base", {0, 0, 0, 0}, {1, -1, 2, 0.25f}},  // norm 0: not normalized
  };
  // One directory per case: RunRecipe writes models a and b once.
  for (const Case& c : cases) {
    for (double t : {0.0, 0.3, 0.5, 1.0}) {
      CAPTURE(c.name, t);
      alloy::testing::TempDir d;
      auto got = RunRecipe(d, TwoModelRecipe("slerp", "t: " + std::to_string(t)),
                           {OneTensorModel("a", c.a), OneTensorModel("b", c.b)});
      INFO(got.status.ToString());
      REQUIRE(got.status.ok());
      const Values& v = got.values.at(kLayerWeight);
      const Values want = Blend(c.a, c.b, SlerpRef(c.a, c.b, t));
      for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == Approx(want[i]).margin(1e-6));
      if (t == 0.0) CHECK(v == c.a);  // the base, value for value
      if (t == 1.0 && std::string(c.name) != "zero base") CHECK(v == c.b);
    }
  }
}

TEST_CASE("slerp: t follows a gradient over the layers", "[merge][slerp]") {
  alloy::testing::TempDir dir;
  auto layered = [](const std::string& name, float v) {
    MiniModel m;
    m.name = name;
    m.layers = 3;
    for (int i = 0; i < 3; ++i) {
      m.tensors.push_back(ValuesTensor("model.layers." + std::to_string(i) + ".mlp.up_proj.weight",
                                       {2}, {v, 2 * v}));
    }
    return m;
  };
  // Colinear models (b = 3a): the lerp, so layer i holds (1 − t_i)·a + t_i·b.
  auto got = RunRecipe(dir, TwoModelRecipe("slerp", "t: [0, 0.5, 1]"),
                       {layered("a", 1.0f), layered("b", 3.0f)});
  INFO(got.status.ToString());
  REQUIRE(got.status.ok());
  CHECK(got.values.at("model.layers.0.mlp.up_proj.weight") == Values{1, 2});
  CHECK(got.values.at("model.layers.1.mlp.up_proj.weight") == Values{2, 4});
  CHECK(got.values.at("model.layers.2.mlp.up_proj.weight") == Values{3, 6});
}

TEST_CASE("nearswap: w = clamp(t / |B − X|, 0, 1) per element", "[merge][nearswap]") {
  alloy::testing::TempDir dir;
  const Values b = {1, 1, 1, 1, 0}, x = {1.0005f, 2, 1, -3, 0.25f};
  auto got = RunRecipe(dir, TwoModelRecipe("nearswap", "t: 0.001"),
                       {OneTensorModel("a", b), OneTensorModel("b", x)});
  INFO(got.status.ToString());
  REQUIRE(got.status.ok());
  const Values& v = got.values.at(kLayerWeight);
  for (size_t i = 0; i < b.size(); ++i) {
    const float w = std::clamp(0.001f / std::max(std::fabs(b[i] - x[i]), 1e-6f), 0.0f, 1.0f);
    CHECK(v[i] == static_cast<float>(double(w * x[i]) + double((1 - w) * b[i])));
  }
  CHECK(v[2] == 1.0f);  // equal values: w = 1, X itself
  CHECK(v[0] == x[0]);  // |B − X| < t: w clamps to 1, X swaps in
  CHECK(v[1] == Approx(1.001f).epsilon(1e-6));  // far: w = t/1, mostly the base
}

TEST_CASE("passthrough: scale via filters changes exactly the filtered tensors",
          "[merge][passthrough]") {
  alloy::testing::TempDir dir;
  MiniModel m;
  m.name = "a";
  const Values o = {1, -2, 3, 0.5f}, up = {4, 5, 6, 7};
  m.tensors.push_back(ValuesTensor("model.layers.0.self_attn.o_proj.weight", {2, 2}, o));
  m.tensors.push_back(ValuesTensor("model.layers.0.mlp.up_proj.weight", {2, 2}, up));
  auto got = RunRecipe(dir, R"(merge_method: passthrough
models:
  - model: $D/a
    parameters:
      scale:
        - filter: o_proj
          value: 0
        - value: 1
)", {m});
  INFO(got.status.ToString());
  REQUIRE(got.status.ok());
  CHECK(got.values.at("model.layers.0.self_attn.o_proj.weight") == Values{0, 0, 0, 0});
  CHECK(got.values.at("model.layers.0.mlp.up_proj.weight") == up);

  // Without a scale the bytes are copied as they are.
  auto copy = RunRecipe(dir, "merge_method: passthrough\nmodels:\n  - model: $D/a\n", {m},
                        {.out_name = "copy"});
  REQUIRE(copy.status.ok());
  CHECK(copy.values.at("model.layers.0.self_attn.o_proj.weight") == o);
}

// Layer i of model `name` holds the values {100·tag + i, ...} in every tensor.
MiniModel Stack(const std::string& name, float tag, int layers) {
  MiniModel m;
  m.name = name;
  m.layers = layers;
  m.tensors.push_back(ValuesTensor("model.embed_tokens.weight", {2, 2}, {tag, tag, tag, tag}));
  for (int i = 0; i < layers; ++i) {
    const float v = 100 * tag + static_cast<float>(i);
    const std::string p = "model.layers." + std::to_string(i);
    m.tensors.push_back(ValuesTensor(p + ".self_attn.q_proj.weight", {2, 2}, {v, v, v, v}));
    m.tensors.push_back(ValuesTensor(p + ".input_layernorm.weight", {2}, {v, -v}));
  }
  m.tensors.push_back(ValuesTensor("model.norm.weight", {2}, {tag, -tag}));
  return m;
}

TEST_CASE("passthrough slices: a Goliath-style interleave of two 4-layer models",
          "[merge][passthrough][slices]") {
  alloy::testing::TempDir dir;
  auto got = RunRecipe(dir, R"(merge_method: passthrough
dtype: float32
slices:
  - sources:
      - model: $D/a
        layer_range: [0, 2]
  - sources:
      - model: $D/b
        layer_range: [1, 3]
  - sources:
      - model: $D/a
        layer_range: [2, 4]
  - sources:
      - model: $D/b
        layer_range: [3, 4]
)", {Stack("a", 1, 4), Stack("b", 2, 4)});
  INFO(got.status.ToString());
  REQUIRE(got.status.ok());
  // Output layer → (model tag, source layer).
  const std::vector<std::pair<float, int>> expect = {{1, 0}, {1, 1}, {2, 1}, {2, 2}, {1, 2},
                                                     {1, 3}, {2, 3}};
  size_t n_layer_tensors = 0;
  for (const auto& [name, values] : got.values) {
    n_layer_tensors += name.rfind("model.layers.", 0) == 0;
  }
  CHECK(n_layer_tensors == 2 * expect.size());
  for (size_t i = 0; i < expect.size(); ++i) {
    const float v = 100 * expect[i].first + static_cast<float>(expect[i].second);
    const std::string p = "model.layers." + std::to_string(i);
    CHECK(got.values.at(p + ".self_attn.q_proj.weight") == Values{v, v, v, v});
    CHECK(got.values.at(p + ".input_layernorm.weight") == Values{v, -v});
  }
  // Pre-weights from the first slice's model, post-weights from the last's.
  CHECK(got.values.at("model.embed_tokens.weight") == Values{1, 1, 1, 1});
  CHECK(got.values.at("model.norm.weight") == Values{2, -2});
  auto config = formats::ReadSmallFile(got.out_dir + "/config.json");
  REQUIRE(config.ok());
  CHECK_THAT(*config, Catch::Contains("\"num_hidden_layers\": 7"));
}

TEST_CASE("slerp, nearswap, passthrough: threads 1 and 2 write the same bytes",
          "[merge][determinism]") {
  alloy::testing::TempDir dir;
  const size_t n = 3 * kMergeChunkElems + 123;
  Values a(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = std::sin(0.001f * static_cast<float>(i));
    b[i] = std::cos(0.0007f * static_cast<float>(i)) * 0.5f;
  }
  const std::vector<MiniModel> models = {OneTensorModel("a", a), OneTensorModel("b", b)};
  const std::vector<std::string> recipes = {
      TwoModelRecipe("slerp", "t: 0.35"),
      TwoModelRecipe("nearswap", "t: 0.01"),
      "merge_method: passthrough\nmodels:\n  - model: $D/b\n    parameters: {scale: 0.5}\n",
  };
  testing_support::CheckThreadsAgree(dir, recipes, models, "r");
}

}  // namespace
}  // namespace alloy::merge

// linear and task_arithmetic against references written from the formulas
// (mergekit-semantics.md §1.1, §1.2), through the whole executor.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "kernels/convert.h"
#include "tests/merge/merge_test_support.h"

namespace alloy::merge {
namespace {

using testing_support::MiniModel;
using testing_support::RunRecipe;
using testing_support::ValuesTensor;

// One layer tensor and one post tensor per model, values chosen per model.
MiniModel Model(const std::string& name, const std::vector<float>& w, const std::vector<float>& n) {
  MiniModel m;
  m.name = name;
  m.tensors.push_back(ValuesTensor("model.layers.0.mlp.down_proj.weight", {2, 3}, w));
  m.tensors.push_back(ValuesTensor("model.norm.weight", {3}, n));
  return m;
}

TEST_CASE("linear: weighted average, normalize default true", "[merge][linear]") {
  alloy::testing::TempDir dir;
  std::vector<MiniModel> models = {Model("a", {1, 2, 3, 4, 5, 6}, {1, 1, 1}),
                                   Model("b", {3, 2, 1, 0, -1, -2}, {0, 2, 4})};
  auto out = RunRecipe(dir, R"(merge_method: linear
models:
  - model: $D/a
    parameters: {weight: 0.25}
  - model: $D/b
    parameters: {weight: 0.75}
)", models);
  INFO(out.status.ToString());
  REQUIRE(out.status.ok());
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {3, 2, 1, 0, -1, -2};
  const auto& got = out.values["model.layers.0.mlp.down_proj.weight"];
  REQUIRE(got.size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    const double expect = (0.25 * a[i] + 0.75 * b[i]) / 1.0;
    CHECK(got[i] == static_cast<float>(expect));
  }
  CHECK(out.values["model.norm.weight"] == std::vector<float>{0.25f, 1.75f, 3.25f});
}

TEST_CASE("linear: normalize false sums, and Σw = 0 with normalize is refused", "[merge][linear]") {
  alloy::testing::TempDir dir;
  std::vector<MiniModel> models = {Model("a", {1, 2, 3, 4, 5, 6}, {1, 1, 1}),
                                   Model("b", {3, 2, 1, 0, -1, -2}, {0, 2, 4})};
  auto summed = RunRecipe(dir, R"(merge_method: linear
parameters: {normalize: false}
models:
  - model: $D/a
    parameters: {weight: 1}
  - model: $D/b
    parameters: {weight: 2}
)", models, {.out_name = "sum"});
  REQUIRE(summed.status.ok());
  CHECK(summed.values["model.norm.weight"] == std::vector<float>{1, 5, 9});

  auto zero = RunRecipe(dir, R"(merge_method: linear
models:
  - model: $D/a
    parameters: {weight: 1}
  - model: $D/b
    parameters: {weight: -1}
)", models, {.out_name = "zero"});
  REQUIRE_FALSE(zero.status.ok());
  CHECK_THAT(zero.status.message(), Catch::Contains("sum to 0"));
  CHECK_THAT(zero.status.message(), Catch::Contains("normalize: false"));
}

TEST_CASE("linear: the recipe dtype rounds the inputs before merging", "[merge][linear]") {
  alloy::testing::TempDir dir;
  // float32 values that bf16 cannot hold: mergekit casts them to `dtype` first.
  const std::vector<float> a = {1.00390625f + 1e-6f, -2.0117f, 3.3333f, 0.1f, 5e-3f, 7.77f};
  const std::vector<float> b = {0.3f, 2.0078f, -1.1111f, 0.2f, 6e-3f, -7.77f};
  std::vector<MiniModel> models = {Model("a", a, {1, 1, 1}), Model("b", b, {0, 2, 4})};
  auto out = RunRecipe(dir, R"(merge_method: linear
models:
  - model: $D/a
    parameters: {weight: 0.25}
  - model: $D/b
    parameters: {weight: 0.75}
dtype: bfloat16
out_dtype: float32
)", models);
  INFO(out.status.ToString());
  REQUIRE(out.status.ok());
  const auto& got = out.values["model.layers.0.mlp.down_proj.weight"];
  REQUIRE(got.size() == 6);
  auto bf16 = [](float x) { return kernels::Bf16ToF32(kernels::F32ToBf16(x)); };
  size_t differs_from_uncast = 0;
  for (size_t i = 0; i < 6; ++i) {
    const double cast = double(0.25f * bf16(a[i])) + double(0.75f * bf16(b[i]));
    const double uncast = double(0.25f * a[i]) + double(0.75f * b[i]);
    CHECK(got[i] == static_cast<float>(cast));
    differs_from_uncast += got[i] != static_cast<float>(uncast);
  }
  CHECK(differs_from_uncast > 0);
}

TEST_CASE("task_arithmetic: base + lambda * sum of weighted deltas", "[merge][task_arithmetic]") {
  alloy::testing::TempDir dir;
  std::vector<MiniModel> models = {Model("base", {1, 1, 1, 1, 1, 1}, {0, 0, 0}),
                                   Model("x", {2, 0, 1, -3, 1.5f, 1}, {1, 2, 3}),
                                   Model("y", {1, 3, 0, 1, -1, 1}, {-1, 0, 1})};
  auto out = RunRecipe(dir, R"(merge_method: task_arithmetic
base_model: $D/base
parameters: {lambda: 0.5}
models:
  - model: $D/x
    parameters: {weight: 1.0}
  - model: $D/y
    parameters: {weight: 0.5}
)", models);
  INFO(out.status.ToString());
  REQUIRE(out.status.ok());
  const std::vector<float> x = {2, 0, 1, -3, 1.5f, 1}, y = {1, 3, 0, 1, -1, 1};
  const auto& got = out.values["model.layers.0.mlp.down_proj.weight"];
  for (size_t i = 0; i < 6; ++i) {
    const double expect = 1 + 0.5 * (1.0 * (x[i] - 1) + 0.5 * (y[i] - 1));
    CHECK(got[i] == static_cast<float>(expect));
  }
  // zero deltas stay at the base
  CHECK(out.values["model.layers.0.mlp.down_proj.weight"][5] == 1.0f);
  CHECK(out.values["model.norm.weight"] == std::vector<float>{0.25f, 1.0f, 1.75f});
}

}  // namespace
}  // namespace alloy::merge

// Determinism of whole merges (style guide §8, Decisions (b) and (f)): for
// every implemented method, model.safetensors is byte-identical at 1 and 2
// threads and across repeated runs with the same seed, on tensors that span
// several 65,536-element chunks (with rows shorter and longer than a chunk,
// and many equal magnitudes so top-k ties straddle chunk boundaries). The
// random methods (DARE, DELLA) change with the seed; the others ignore it.
// A non-float tensor is copied unchanged.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "merge/executor.h"
#include "tests/merge/merge_test_support.h"

namespace alloy::merge {
namespace {

using testing_support::FileBytes;
using testing_support::MiniModel;
using testing_support::RunOptions;
using testing_support::RunRecipe;
using testing_support::ValuesTensor;

struct Shape {
  const char* name;
  std::vector<int64_t> dims;
};

// Sizes relative to kMergeChunkElems = 65,536: ~2.3 chunks with 500-wide
// rows, ~2.3 chunks with 50,021-wide rows (rows do not divide a chunk), and
// rows of 70,001 (longer than a chunk), plus small 1-D norms.
const std::vector<Shape>& Shapes() {
  static const std::vector<Shape> kShapes = {
      {"model.embed_tokens.weight", {300, 500}},
      {"model.layers.0.input_layernorm.weight", {500}},
      {"model.layers.0.mlp.up_proj.weight", {3, 50021}},
      {"model.norm.weight", {500}},
      {"lm_head.weight", {2, 70001}},
  };
  return kShapes;
}

// int64 elements of model.position_ids: 560 KB, several copy pieces.
constexpr int64_t kPositionIds = 70001;
int64_t PositionId(int64_t i) { return 3 * i + 1; }

// Model 0 is the base; model i > 0 adds a task vector quantized to
// multiples of 1/256 (about a tenth of it zero), so magnitudes tie a lot.
MiniModel Model(int index) {
  MiniModel m;
  m.name = "m" + std::to_string(index);
  for (size_t shape_idx = 0; shape_idx < Shapes().size(); ++shape_idx) {
    const Shape& shape = Shapes()[shape_idx];
    int64_t n = 1;
    for (int64_t d : shape.dims) n *= d;
    std::mt19937 base_rng(static_cast<uint32_t>(1000 + shape_idx));
    std::mt19937 delta_rng(static_cast<uint32_t>(2000 + 17 * index + static_cast<int>(shape_idx)));
    std::uniform_real_distribution<float> base(-1.0f, 1.0f);
    std::uniform_int_distribution<int> delta(-8, 8);
    std::vector<float> values(static_cast<size_t>(n));
    for (float& v : values) {
      v = base(base_rng);
      const int q = delta(delta_rng);
      if (index > 0) v += static_cast<float>(q) / 256.0f;
    }
    m.tensors.push_back(ValuesTensor(shape.name, shape.dims, values));
  }
  // A non-float buffer, copied unchanged (in parallel pieces) from the base.
  alloy::testing::FixtureTensor ids;
  ids.name = "model.position_ids";
  ids.dtype = formats::DType::kI64;
  ids.shape = {kPositionIds};
  for (int64_t i = 0; i < kPositionIds; ++i) {
    const int64_t v = PositionId(i);
    ids.data.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  m.tensors.push_back(std::move(ids));
  return m;
}

struct MethodCase {
  const char* method;
  bool random;
  const char* global;     // top-level parameters (YAML flow mapping) or ""
  const char* per_model;  // per fine-tune parameters, "%w" replaced by its weight
};

const std::vector<MethodCase>& Cases() {
  static const std::vector<MethodCase> kCases = {
      {"linear", false, "", "weight: %w"},
      {"task_arithmetic", false, "", "weight: %w"},
      {"ties", false, "", "weight: %w, density: 0.4"},
      {"dare_ties", true, "", "weight: %w, density: 0.4"},
      {"dare_linear", true, "", "weight: %w, density: 0.4"},
      {"breadcrumbs", false, "", "weight: %w, density: 0.6, gamma: 0.05"},
      {"breadcrumbs_ties", false, "", "weight: %w, density: 0.6, gamma: 0.05"},
      {"della", true, "", "weight: %w, density: 0.4, epsilon: 0.1"},
      {"della_linear", true, "", "weight: %w, density: 0.4, epsilon: 0.1"},
      {"sce", false, "select_topk: 0.5", ""},
      {"ram", false, "", ""},
      {"ramplus_tl", false, "r: 0.2", ""},
  };
  return kCases;
}

std::string Recipe(const MethodCase& c) {
  const char* const weights[] = {"0.6", "0.3", "-0.2"};
  std::string r = "merge_method: " + std::string(c.method) + "\nbase_model: $D/m0\nmodels:\n";
  // linear treats the base as a plain input and needs its weight.
  r += "  - model: $D/m0\n";
  if (std::string(c.method) == "linear") r += "    parameters: {weight: 0.1}\n";
  for (int i = 1; i <= 3; ++i) {
    r += "  - model: $D/m" + std::to_string(i) + "\n";
    std::string params = c.per_model;
    if (params.empty()) continue;
    params.replace(params.find("%w"), 2, weights[i - 1]);
    r += "    parameters: {" + params + "}\n";
  }
  if (*c.global) r += "parameters: {" + std::string(c.global) + "}\n";
  return r;
}

TEST_CASE("merge determinism: threads and seeds and chunking do not change the bytes",
          "[merge][determinism]") {
  alloy::testing::TempDir dir;
  std::vector<MiniModel> models;
  for (int i = 0; i < 4; ++i) models.push_back(Model(i));
  std::vector<std::string> skipped;
  size_t n_covered = 0;
  for (const MethodCase& c : Cases()) {
    if (!HasMergeMethod(c.method)) {
      skipped.push_back(c.method);
      continue;
    }
    ++n_covered;
    const std::string recipe = Recipe(c);
    INFO(c.method << " recipe:\n" << recipe);
    auto run = [&](int threads, uint64_t seed, const std::string& out) {
      RunOptions options;
      options.threads = threads;
      options.seed = seed;
      options.out_name = std::string(c.method) + "-" + out;
      auto result = RunRecipe(dir, recipe, models, options);
      INFO(out << ": " << result.status.ToString());
      REQUIRE(result.status.ok());
      // The merge did something: tensors span several chunks.
      REQUIRE(result.values.at("model.embed_tokens.weight").size() > 2 * kMergeChunkElems);
      const std::vector<float>& ids = result.values.at("model.position_ids");
      REQUIRE(ids.size() == static_cast<size_t>(kPositionIds));
      CHECK(result.dtypes.at("model.position_ids") == formats::DType::kI64);
      size_t n_wrong = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        n_wrong += ids[i] != static_cast<float>(PositionId(static_cast<int64_t>(i)));
      }
      CHECK(n_wrong == 0);
      return FileBytes(result.out_dir + "/model.safetensors");
    };
    const std::string one = run(1, 7, "t1");
    const std::string two = run(2, 7, "t2");
    CHECK(one.size() > 4 * 2 * kMergeChunkElems);
    CHECK(one == two);
    CHECK(run(2, 7, "t2-again") == two);
    if (c.random) {
      CHECK(run(2, 8, "seed8") != two);
    } else {
      CHECK(run(2, 8, "seed8") == two);
    }
  }
  if (!skipped.empty()) {
    std::string list;
    for (const std::string& m : skipped) list += " " + m;
    WARN("skipped (merge method not implemented yet):" << list);
  }
  CHECK(n_covered + skipped.size() == 12);
}

}  // namespace
}  // namespace alloy::merge

// sce, ram and ramplus_tl (mergekit-semantics.md §1.12, §1.13) through the
// whole executor: hand-computed cases, whole-tensor references written from
// the formulas, and byte-identical output at 1 and 2 threads on a tensor of
// several chunks.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tests/merge/merge_test_support.h"

namespace alloy::merge {
namespace {

using testing_support::MiniModel;
using testing_support::OneTensorModel;
using testing_support::RunOptions;
using testing_support::RunRecipe;
using testing_support::ValuesTensor;

constexpr const char* kWeight = testing_support::kLayerWeight;

using Values = std::vector<float>;


// A recipe over base + the named models, with global `params` (YAML flow map).
std::string Recipe(const std::string& method, const std::vector<std::string>& models,
                   const std::string& params = "") {
  std::string r = "merge_method: " + method + "\nbase_model: $D/base\n";
  if (!params.empty()) r += "parameters: " + params + "\n";
  r += "models:\n";
  for (const std::string& m : models) r += "  - model: $D/" + m + "\n";
  return r;
}

// Task vectors in float32, as the method computes them.
std::vector<Values> TaskVectors(const Values& base, const std::vector<Values>& xs) {
  std::vector<Values> tv(xs.size(), Values(base.size()));
  for (size_t i = 0; i < xs.size(); ++i) {
    for (size_t j = 0; j < base.size(); ++j) tv[i][j] = xs[i][j] - base[j];
  }
  return tv;
}

// §1.13, straight from the formulas (λ_i = 1 for ram).
std::vector<double> RamReference(const Values& base, const std::vector<Values>& xs, double eps,
                                 bool plus, double r = 0, double alpha = 0) {
  const std::vector<Values> tv = TaskVectors(base, xs);
  const size_t n = xs.size(), numel = base.size();
  const float eps_f = static_cast<float>(eps);
  auto nz = [&](size_t i, size_t j) { return std::fabs(tv[i][j]) > eps_f; };
  std::vector<int> count(numel, 0);
  for (size_t j = 0; j < numel; ++j) {
    for (size_t i = 0; i < n; ++i) count[j] += nz(i, j);
  }
  std::vector<double> lambda(n, 1.0);
  if (plus) {
    for (size_t i = 0; i < n; ++i) {
      double shared = 0, unique = 0;
      for (size_t j = 0; j < numel; ++j) {
        shared += nz(i, j) && count[j] > 1;
        unique += nz(i, j) && count[j] == 1;
      }
      const double rho = shared / std::max(unique, eps);
      lambda[i] = 1 + r * std::min(std::max(rho, 0.0), alpha);
    }
  }
  std::vector<double> out(numel);
  for (size_t j = 0; j < numel; ++j) {
    double delta = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!nz(i, j)) continue;
      if (count[j] == 1) delta += tv[i][j] * lambda[i];
      if (count[j] > 1) delta += static_cast<double>(tv[i][j]) / count[j];
    }
    out[j] = base[j] + delta;
  }
  return out;
}

// §1.12, straight from the formulas; the top-k keeps the lowest flat indices
// among equal variances (Decision f).
std::vector<double> SceReference(const Values& base, const std::vector<Values>& xs, double p) {
  std::vector<Values> tv = TaskVectors(base, xs);
  const size_t n = xs.size(), numel = base.size();
  if (p < 1) {
    std::vector<float> mask(numel, 0.0f);
    if (p > 0) {
      std::vector<float> var(numel);
      uint64_t nz = 0;
      for (size_t j = 0; j < numel; ++j) {
        double mean = 0, sq = 0;
        for (size_t i = 0; i < n; ++i) mean += tv[i][j];
        mean /= static_cast<double>(n);
        for (size_t i = 0; i < n; ++i) sq += (tv[i][j] - mean) * (tv[i][j] - mean);
        var[j] = static_cast<float>(sq / static_cast<double>(n));
        nz += var[j] != 0;
      }
      const uint64_t k =
          std::min(nz, static_cast<uint64_t>(static_cast<float>(nz) * static_cast<float>(p)));
      std::vector<size_t> order(numel);
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return var[a] > var[b]; });
      for (size_t r = 0; r < k; ++r) mask[order[r]] = 1.0f;
    }
    for (auto& t : tv) {
      for (size_t j = 0; j < numel; ++j) t[j] *= mask[j];
    }
  }
  std::vector<double> s(n, 0.0);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    for (float v : tv[i]) s[i] += static_cast<double>(v) * v;
    s[i] /= static_cast<double>(numel);
    sum += s[i];
  }
  for (double& w : s) w = std::fabs(sum) < 1e-6 ? 1.0 / static_cast<double>(n) : w / sum;
  std::vector<double> out(numel);
  for (size_t j = 0; j < numel; ++j) {
    double vote = 0;
    for (size_t i = 0; i < n; ++i) vote += tv[i][j];
    const double majority = vote >= 0 ? 1 : -1;
    double mixed = 0, divisor = 0;
    for (size_t i = 0; i < n; ++i) {
      if (tv[i][j] * majority <= 0) continue;
      mixed += tv[i][j] * s[i];
      divisor += s[i];
    }
    out[j] = base[j] + mixed / std::max(divisor, 1e-6);
  }
  return out;
}

// Every value within float32 rounding of the reference; reports the first miss.
void CheckClose(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  size_t misses = 0, first = 0;
  for (size_t j = 0; j < got.size(); ++j) {
    const double tolerance = 1e-6 * std::max(1.0, std::fabs(want[j]));
    if (!(std::fabs(got[j] - want[j]) <= tolerance)) {
      if (misses++ == 0) first = j;
    }
  }
  INFO("first miss at " << first << ": got " << got[first] << ", want " << want[first]);
  CHECK(misses == 0);
}

std::vector<float> Narrow(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// ---------------------------------------------------------------- ram

TEST_CASE("ram: unique deltas kept, shared ones averaged, |τ| ≤ ε dropped", "[merge][ram]") {
  alloy::testing::TempDir dir;
  const Values base = {1, 1, 1, 1, 1, 1};
  const Values x = {2, 1, 3, 0, 1.5f, 1.625f};  // τ = 1, 0, 2, -1, 0.5, 0.625
  const Values y = {4, 1, 1, -2, 1, 1.5f};      // τ = 3, 0, 0, -3, 0, 0.5
  std::vector<MiniModel> models = {OneTensorModel("base", base), OneTensorModel("x", x), OneTensorModel("y", y)};
  auto out = RunRecipe(dir, Recipe("ram", {"x", "y"}, "{epsilon: 0.5}"), models);
  INFO(out.status.ToString());
  REQUIRE(out.status.ok());
  // τ = 0.5 is not above ε = 0.5: element 4 has no contributor, element 5 only x.
  CHECK(out.values[kWeight] == Values{3, 1, 3, -1, 1, 1.625f});
  CheckClose(out.values[kWeight], RamReference(base, {x, y}, 0.5, false));

  // Default ε = 1e-5: 0.5 now counts, so element 4 is x's alone and 5 is shared.
  auto def = RunRecipe(dir, Recipe("ram", {"x", "y"}), models, {.out_name = "default"});
  REQUIRE(def.status.ok());
  CHECK(def.values[kWeight] == Values{3, 1, 3, -1, 1.5f, 1.5625f});
}

TEST_CASE("ram: zero deltas give the base, all-negative deltas average", "[merge][ram]") {
  alloy::testing::TempDir dir;
  const Values base = {0.5f, -2, 3, 0};
  const Values neg1 = {-0.5f, -3, 2, -1};      // τ = -1 everywhere
  const Values neg2 = {-2.5f, -4, 3, -0.25f};  // τ = -3, -2, 0, -0.25
  std::vector<MiniModel> models = {OneTensorModel("base", base), OneTensorModel("same", base), OneTensorModel("same2", base),
                                   OneTensorModel("neg1", neg1), OneTensorModel("neg2", neg2)};
  auto zero = RunRecipe(dir, Recipe("ram", {"same", "same2"}), models, {.out_name = "zero"});
  REQUIRE(zero.status.ok());
  CHECK(zero.values[kWeight] == base);
  auto plus_zero =
      RunRecipe(dir, Recipe("ramplus_tl", {"same", "same2"}), models, {.out_name = "pzero"});
  REQUIRE(plus_zero.status.ok());
  CHECK(plus_zero.values[kWeight] == base);

  auto neg = RunRecipe(dir, Recipe("ram", {"neg1", "neg2"}), models, {.out_name = "neg"});
  REQUIRE(neg.status.ok());
  CHECK(neg.values[kWeight] == Values{-1.5f, -3.5f, 2, -0.625f});
}

TEST_CASE("ramplus_tl: unique deltas scaled by λ_i = 1 + r·clamp(S_i/U_i, 0, alpha)",
          "[merge][ram]") {
  alloy::testing::TempDir dir;
  const Values base = {1, 1, 1, 1, 1, 1};
  const Values x = {2, 1, 3, 0, 1.5f, 1.625f};  // S_x = 2 (0, 3), U_x = 2 (2, 5): ρ = 1
  const Values y = {4, 1, 1, -2, 1, 1.5f};      // S_y = 2, U_y = 0: ρ = 2/ε, clamped
  std::vector<MiniModel> models = {OneTensorModel("base", base), OneTensorModel("x", x), OneTensorModel("y", y)};
  SECTION("ρ below alpha: λ_x = 1 + 0.5·1") {
    auto out = RunRecipe(dir, Recipe("ramplus_tl", {"x", "y"}, "{epsilon: 0.5, r: 0.5, alpha: 2}"),
                         models);
    INFO(out.status.ToString());
    REQUIRE(out.status.ok());
    CHECK(out.values[kWeight] == Values{3, 1, 4, -1, 1, 1.9375f});
    CheckClose(out.values[kWeight], RamReference(base, {x, y}, 0.5, true, 0.5, 2));
  }
  SECTION("ρ clamped to alpha: λ_x = 1 + 0.5·0.25") {
    auto out = RunRecipe(
        dir, Recipe("ramplus_tl", {"x", "y"}, "{epsilon: 0.5, r: 0.5, alpha: 0.25}"), models);
    REQUIRE(out.status.ok());
    CHECK(out.values[kWeight] == Values{3, 1, 3.25f, -1, 1, 1.703125f});
  }
  SECTION("alpha < 0: torch's clamp returns alpha, λ_x = 1 − 0.5·0.5") {
    auto out = RunRecipe(
        dir, Recipe("ramplus_tl", {"x", "y"}, "{epsilon: 0.5, r: 0.5, alpha: -0.5}"), models);
    REQUIRE(out.status.ok());
    CHECK(out.values[kWeight] == Values{3, 1, 2.5f, -1, 1, 1.46875f});
  }
  SECTION("defaults r = 0.1, alpha = 0.2") {
    auto out = RunRecipe(dir, Recipe("ramplus_tl", {"x", "y"}), models);
    REQUIRE(out.status.ok());
    CheckClose(out.values[kWeight], RamReference(base, {x, y}, 1e-5, true, 0.1, 0.2));
  }
}

TEST_CASE("ramplus_tl: ε = 0 and an unchanged model give NaN everywhere, as mergekit",
          "[merge][ram]") {
  // S_i = U_i = 0 → ρ_i = 0/max(0, 0) = NaN → λ_i = NaN, and mergekit's
  // (τ'·unique)·λ multiplies it into every element (Decision d).
  alloy::testing::TempDir dir;
  const Values base = {1, 2, 3};
  const Values x = {2, 2, 5};
  std::vector<MiniModel> models = {OneTensorModel("base", base), OneTensorModel("x", x), OneTensorModel("same", base)};
  auto out = RunRecipe(dir, Recipe("ramplus_tl", {"x", "same"}, "{epsilon: 0}"), models);
  INFO(out.status.ToString());
  REQUIRE(out.status.ok());
  for (float v : out.values[kWeight]) CHECK(std::isnan(v));
  // ram has no λ: the same inputs merge normally.
  auto ram =
      RunRecipe(dir, Recipe("ram", {"x", "same"}, "{epsilon: 0}"), models, {.out_name = "ram"});
  REQUIRE(ram.status.ok());
  CHECK(ram.values[kWeight] == x);
}

TEST_CASE("ram and ramplus_tl: three models against the reference", "[merge][ram]") {
  alloy::testing::TempDir dir;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::bernoulli_distribution sparse(0.4);
  const size_t numel = 48;
  Values base(numel);
  std::vector<Values> xs(3, Values(numel));
  for (float& v : base) v = normal(rng);
  for (Values& x : xs) {
    for (size_t j = 0; j < numel; ++j) x[j] = sparse(rng) ? base[j] + 0.1f * normal(rng) : base[j];
  }
  std::vector<MiniModel> models = {OneTensorModel("base", base, {6, 8}), OneTensorModel("a", xs[0], {6, 8}),
                                   OneTensorModel("b", xs[1], {6, 8}), OneTensorModel("c", xs[2], {6, 8})};
  auto ram = RunRecipe(dir, Recipe("ram", {"a", "b", "c"}, "{epsilon: 0.02}"), models,
                       {.out_name = "ram"});
  INFO(ram.status.ToString());
  REQUIRE(ram.status.ok());
  CheckClose(ram.values[kWeight], RamReference(base, xs, 0.02, false));
  auto plus = RunRecipe(dir, Recipe("ramplus_tl", {"a", "b", "c"}, "{r: 0.3, alpha: 0.7}"), models,
                        {.out_name = "plus"});
  REQUIRE(plus.status.ok());
  CheckClose(plus.values[kWeight], RamReference(base, xs, 1e-5, true, 0.3, 0.7));
}

// ---------------------------------------------------------------- sce

TEST_CASE("sce: weights mean(TV²) normalised, unweighted sign election", "[merge][sce]") {
  alloy::testing::TempDir dir;
  const Values base = {1, 1, 1, 1};
  const Values x = {2, 0, 3, 1};   // τ = 1, -1, 2, 0: s = 1.5
  const Values y = {4, 2, -1, 1};  // τ = 3, 1, -2, 0: s = 3.5 → weights 0.3, 0.7
  std::vector<MiniModel> models = {OneTensorModel("base", base), OneTensorModel("x", x), OneTensorModel("y", y)};
  auto out = RunRecipe(dir, Recipe("sce", {"x", "y"}), models);
  INFO(out.status.ToString());
  REQUIRE(out.status.ok());
  // 0: both agree → 0.3·1 + 0.7·3. 1, 2: votes sum to 0 → + wins, one agrees.
  // 3: nobody moved → 0 / max(0, 1e-6).
  CHECK(out.values[kWeight] == Narrow({1 + (0.3 * 1 + 0.7 * 3), 2, 3, 1}));
  CheckClose(out.values[kWeight], SceReference(base, {x, y}, 1.0));
}

TEST_CASE("sce: all-negative and zero deltas", "[merge][sce]") {
  alloy::testing::TempDir dir;
  const Values base = {0, 0};
  const Values x = {-1, -2};  // s = 2.5
  const Values y = {-3, -2};  // s = 6.5
  std::vector<MiniModel> models = {OneTensorModel("base", base), OneTensorModel("x", x), OneTensorModel("y", y),
                                   OneTensorModel("same", base)};
  auto neg = RunRecipe(dir, Recipe("sce", {"x", "y"}), models, {.out_name = "neg"});
  REQUIRE(neg.status.ok());
  CHECK(neg.values[kWeight] == Narrow({(-1 * 2.5 - 3 * 6.5) / 9, -2}));
  auto zero = RunRecipe(dir, Recipe("sce", {"same"}), models, {.out_name = "zero"});
  REQUIRE(zero.status.ok());
  CHECK(zero.values[kWeight] == base);
}

TEST_CASE("sce: Σs < 1e-6 falls back to uniform weights", "[merge][sce]") {
  alloy::testing::TempDir dir;
  const Values base = {0, 0};
  const Values x = {1e-4f, 2e-4f};
  const Values y = {3e-4f, -1e-4f};
  std::vector<MiniModel> models = {OneTensorModel("base", base), OneTensorModel("x", x), OneTensorModel("y", y)};
  auto out = RunRecipe(dir, Recipe("sce", {"x", "y"}), models);
  REQUIRE(out.status.ok());
  const auto& got = out.values[kWeight];
  // Uniform: (1e-4 + 3e-4)/2; mean(TV²) weights (1/3, 2/3) would give 2.33e-4.
  CHECK(got[0] == Approx(0.5 * (1e-4 + 3e-4)).epsilon(1e-6));
  CHECK(got[1] == Approx(2e-4).epsilon(1e-6));
  CheckClose(got, SceReference(base, {x, y}, 1.0));
}

TEST_CASE("sce: select_topk edge values and ties at the cut-off", "[merge][sce]") {
  alloy::testing::TempDir dir;
  const Values base(8, 0.0f);
  // var = ((x − y)/2)² = .25, 0, 1, .25, 1, 2.25, .25, 0: nz = 6.
  const Values x = {1, 0, 2, 0, 0, 3, 1, 0};
  const Values y = {0, 0, 0, 1, 2, 0, 0, 0};
  std::vector<MiniModel> models = {OneTensorModel("base", base), OneTensorModel("x", x), OneTensorModel("y", y)};
  // "0.7" → "k0p7", "-1" → "km1": one output directory per value.
  auto OutName = [](std::string topk) {
    std::replace(topk.begin(), topk.end(), '.', 'p');
    std::replace(topk.begin(), topk.end(), '-', 'm');
    return "k" + topk;
  };
  auto run = [&](const std::string& topk) {
    auto out = RunRecipe(dir, Recipe("sce", {"x", "y"}, "{select_topk: " + topk + "}"), models,
                         {.out_name = OutName(topk)});
    INFO(out.status.ToString());
    REQUIRE(out.status.ok());
    return out.values[kWeight];
  };
  SECTION("0.7: k = 4, one of the three 0.25 ties kept — the lowest index") {
    // kept: 0, 2, 4, 5; TV weights 14/8 and 4/8; each element has one mover.
    const auto got = run("0.7");
    CHECK(got == Values{1, 0, 2, 0, 2, 3, 0, 0});
    CheckClose(got, SceReference(base, {x, y}, 0.7));
  }
  SECTION("0.5: k = 3, no tie at the cut-off") {
    const auto got = run("0.5");
    CHECK(got == Values{0, 0, 2, 0, 2, 3, 0, 0});
    CheckClose(got, SceReference(base, {x, y}, 0.5));
  }
  SECTION("0.1: k = int(0.6) = 0 masks everything: the base") { CHECK(run("0.1") == base); }
  SECTION("0 and negative mask everything") {
    CHECK(run("0") == base);
    CHECK(run("-1") == base);
  }
  SECTION("1 and above mask nothing") {
    const auto got = run("1");
    CheckClose(got, SceReference(base, {x, y}, 1.0));
    CHECK(run("1.5") == got);
    // Every element has one mover, so nothing is averaged away.
    CHECK(got == Values{1, 0, 2, 1, 2, 3, 1, 0});
  }
}

TEST_CASE("sce: three models against the reference", "[merge][sce]") {
  alloy::testing::TempDir dir;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t numel = 60;
  Values base(numel);
  std::vector<Values> xs(3, Values(numel));
  for (float& v : base) v = normal(rng);
  for (Values& x : xs) {
    // Quarter steps make equal variances, so the cut-off has ties.
    for (size_t j = 0; j < numel; ++j) x[j] = base[j] + std::round(4 * normal(rng)) / 4;
  }
  std::vector<MiniModel> models = {OneTensorModel("base", base, {6, 10}), OneTensorModel("a", xs[0], {6, 10}),
                                   OneTensorModel("b", xs[1], {6, 10}), OneTensorModel("c", xs[2], {6, 10})};
  for (double p : {1.0, 0.5, 0.3, 0.05}) {
    INFO("select_topk " << p);
    auto out =
        RunRecipe(dir, Recipe("sce", {"a", "b", "c"}, "{select_topk: " + std::to_string(p) + "}"),
                  models, {.out_name = "p" + std::to_string(static_cast<int>(p * 100))});
    INFO(out.status.ToString());
    REQUIRE(out.status.ok());
    CheckClose(out.values[kWeight], SceReference(base, xs, p));
  }
}

// ------------------------------------------------- several chunks, threads

TEST_CASE("sce, ram, ramplus_tl: several chunks, 1 and 2 threads byte-identical",
          "[merge][sce][ram]") {
  alloy::testing::TempDir dir;
  const std::vector<int64_t> shape = {300, 512};  // 153,600 elements: three chunks
  const size_t numel = 300 * 512;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> grid(-128, 128);
  std::uniform_int_distribution<int> step(-3, 3);
  std::bernoulli_distribution moved(0.5);
  // Values on a 1/64 grid keep X − B exact; small steps make many equal
  // variances, so the top-k cut-off falls inside a long run of ties.
  Values base(numel);
  std::vector<Values> xs(3, Values(numel));
  for (float& v : base) v = static_cast<float>(grid(rng)) / 64;
  for (Values& x : xs) {
    for (size_t j = 0; j < numel; ++j) {
      x[j] = base[j] + (moved(rng) ? static_cast<float>(step(rng)) / 64 : 0.0f);
    }
  }
  std::vector<MiniModel> models = {OneTensorModel("base", base, shape), OneTensorModel("a", xs[0], shape),
                                   OneTensorModel("b", xs[1], shape), OneTensorModel("c", xs[2], shape)};
  struct Case {
    std::string name, method, params;
    std::vector<double> want;
  };
  const std::vector<Case> cases = {
      {"sce30", "sce", "{select_topk: 0.3}", SceReference(base, xs, 0.3)},
      {"sce100", "sce", "", SceReference(base, xs, 1.0)},
      {"ram", "ram", "{epsilon: 0.02}", RamReference(base, xs, 0.02, false)},
      {"plus", "ramplus_tl", "{r: 0.2, alpha: 0.9}", RamReference(base, xs, 1e-5, true, 0.2, 0.9)},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    const std::string recipe = Recipe(c.method, {"a", "b", "c"}, c.params);
    auto one = RunRecipe(dir, recipe, models, {.threads = 1, .out_name = c.name + "_t1"});
    auto two = RunRecipe(dir, recipe, models, {.threads = 2, .out_name = c.name + "_t2"});
    INFO(one.status.ToString() << " / " << two.status.ToString());
    REQUIRE(one.status.ok());
    REQUIRE(two.status.ok());
    CHECK(testing_support::FileBytes(one.out_dir + "/model.safetensors") ==
          testing_support::FileBytes(two.out_dir + "/model.safetensors"));
    CheckClose(one.values[kWeight], c.want);
  }
}

}  // namespace
}  // namespace alloy::merge

// The generalized task-arithmetic family (mergekit-semantics.md §1.2, §1.3:
// task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs,
// breadcrumbs_ties, della, della_linear) through the whole executor, against
// references written here from the formulas: hand-checked small cases, the
// tie rule of Decision (f) across chunks, statistics and invariants of the
// random masks (Decision (b)), and byte-identical output at 1 and 2 threads.
// Also StreamSelector (merge/methods/stream_select.h) on a fake TensorPass.
#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/random.h"
#include "merge/methods/stream_select.h"
#include "tests/merge/merge_test_support.h"

namespace alloy::merge {
namespace {

using testing_support::FileBytes;
using testing_support::MiniModel;
using testing_support::OneTensorModel;
using testing_support::RunOptions;
using testing_support::RunRecipe;
using testing_support::ValuesTensor;

constexpr const char* kWeight = testing_support::kLayerWeight;

using Values = std::vector<float>;
using Mask = std::vector<uint8_t>;


// base + the models a, b, ... with per-model parameters (YAML flow maps);
// the base is listed first, so model_index is 0 for the base, 1 for a, ...
std::string Recipe(const std::string& method, const std::vector<std::string>& model_params,
                   const std::string& globals = "") {
  std::string r = "merge_method: " + method + "\nbase_model: $D/base\n";
  if (!globals.empty()) r += "parameters: " + globals + "\n";
  r += "models:\n  - model: $D/base\n";
  for (size_t i = 0; i < model_params.size(); ++i) {
    r += "  - model: $D/" + std::string(1, static_cast<char>('a' + i)) + "\n    parameters: " +
         model_params[i] + "\n";
  }
  return r;
}

std::vector<MiniModel> Models(const Values& base, const std::vector<Values>& xs,
                              std::vector<int64_t> shape = {}) {
  std::vector<MiniModel> models = {OneTensorModel("base", base, shape)};
  for (size_t i = 0; i < xs.size(); ++i) {
    models.push_back(OneTensorModel(std::string(1, static_cast<char>('a' + i)), xs[i], shape));
  }
  return models;
}

// ---- references, straight from §1.2 / §1.3 ----

uint32_t Key(float v) {
  const uint32_t bits = std::bit_cast<uint32_t>(v) & 0x7FFFFFFFu;
  return bits > 0x7F800000u ? 0x7F800001u : bits;
}

Values Delta(const Values& x, const Values& base) {
  Values d(x.size());
  for (size_t i = 0; i < x.size(); ++i) d[i] = x[i] - base[i];
  return d;
}

// TIES: k = floor(density·n); keep the k largest |δ|, ties by lowest index.
Mask TopKRef(const Values& d, double density) {
  const size_t n = d.size();
  const size_t k = static_cast<size_t>(std::floor(density * static_cast<double>(n)));
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return Key(d[a]) != Key(d[b]) ? Key(d[a]) > Key(d[b]) : a < b;
  });
  Mask keep(n, 0);
  for (size_t i = 0; i < k; ++i) keep[order[i]] = 1;
  return keep;
}

// Breadcrumbs with mergekit's arithmetic and its top == 0 quirk.
Mask BreadcrumbsRef(const Values& d, double density, double gamma) {
  const int64_t n = static_cast<int64_t>(d.size());
  const int64_t keep_n = static_cast<int64_t>(density * static_cast<double>(n));
  int64_t top = static_cast<int64_t>(gamma * static_cast<double>(n));
  int64_t bot = n - keep_n - top;
  if (bot < 0) {
    top += bot;
    bot = 0;
  }
  std::vector<size_t> order(d.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return Key(d[a]) != Key(d[b]) ? Key(d[a]) < Key(d[b]) : a < b;
  });
  Mask keep(d.size(), 0);
  if (top == 0) return keep;  // indices[bot:-0] is empty
  for (int64_t pos = bot; pos < n - top; ++pos) keep[order[static_cast<size_t>(pos)]] = 1;
  return keep;
}

// DELLA's mask (Decision b's generator, ranks per row of the last dim).
Mask DellaRef(const Values& d, size_t row_len, uint64_t seed, uint32_t model, float density,
              float epsilon) {
  const uint64_t name_hash = kernels::HashName(kWeight);
  Mask keep(d.size(), 0);
  for (size_t row = 0; row < d.size(); row += row_len) {
    std::vector<size_t> order(row_len);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const uint32_t ka = Key(d[row + a]), kb = Key(d[row + b]);
      return ka != kb ? ka < kb : a < b;
    });
    for (size_t pos = 0; pos < row_len; ++pos) {
      const size_t i = row + order[pos];
      const float rn = static_cast<float>(pos) / static_cast<float>(row_len - 1);
      const float p = (density - epsilon) + rn * (2.0f * epsilon);
      keep[i] = kernels::Uniform(seed, name_hash, model, i) < p;
    }
  }
  return keep;
}

Mask DareRef(size_t n, uint64_t seed, uint32_t model, float density) {
  const uint64_t name_hash = kernels::HashName(kWeight);
  Mask keep(n);
  for (size_t i = 0; i < n; ++i) keep[i] = kernels::Uniform(seed, name_hash, model, i) < density;
  return keep;
}

// mergekit's L1 rescale factor.
float RescaleRef(const Values& d, const Mask& keep) {
  double all = 0, kept = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    all += std::fabs(static_cast<double>(d[i]));
    kept += std::fabs(static_cast<double>(d[i] * static_cast<float>(keep[i])));
  }
  if (all < 1e-7 || kept < 1e-7) return 1.0f;
  return static_cast<float>(all / kept);
}

Values Sparse(const Values& d, const Mask& keep, float scale = 1.0f) {
  Values s(d.size());
  for (size_t i = 0; i < d.size(); ++i) s[i] = (d[i] * static_cast<float>(keep[i])) * scale;
  return s;
}

// §1.2 steps 4-8 on sparsified deltas S_i.
Values CombineRef(const Values& base, const std::vector<Values>& s, const Values& w,
                  bool consensus, bool normalize, double lambda = 1.0) {
  Values out(base.size());
  for (size_t j = 0; j < base.size(); ++j) {
    double mixed = 0, div = 0;
    if (consensus) {
      double vote = 0;
      for (size_t m = 0; m < s.size(); ++m) vote += static_cast<double>(w[m] * s[m][j]);
      const float majority = vote >= 0 ? 1.0f : -1.0f;
      for (size_t m = 0; m < s.size(); ++m) {
        const float weighted = w[m] * s[m][j];
        const bool agree = (weighted > 0 && majority > 0) || (weighted < 0 && majority < 0);
        if (agree) {
          mixed += static_cast<double>(weighted);
          div += static_cast<double>(w[m]);
        }
      }
      if (normalize) mixed /= div == 0 ? 1.0 : div;
    } else {
      for (size_t m = 0; m < s.size(); ++m) {
        mixed += static_cast<double>(w[m] * s[m][j]);
        div += static_cast<double>(w[m]);
      }
      if (normalize) mixed /= std::fabs(div) < 1e-8 ? 1.0 : div;
    }
    out[j] = static_cast<float>(static_cast<double>(base[j]) + lambda * mixed);
  }
  return out;
}

Values Normal(size_t n, uint32_t seed, float mean, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  Values v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Normal values rounded to multiples of 1/1024, so that adding k/16 is exact.
Values Dyadic(size_t n, uint32_t seed) {
  Values v = Normal(n, seed, 0.0f, 0.1f);
  for (float& x : v) x = std::round(x * 1024.0f) / 1024.0f;
  return v;
}

// base + k/16 for k uniform in [-4, 4]: with a Dyadic base the deltas are
// exactly k/16, so every magnitude is shared by many elements.
Values Quantized(const Values& base, uint32_t seed) {
  std::mt19937 rng(seed);
  Values v(base.size());
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = base[i] + static_cast<float>(static_cast<int>(rng() % 9) - 4) / 16.0f;
  }
  return v;
}

// Runs a recipe and returns the merged weight (REQUIREs success).
Values Merged(const alloy::testing::TempDir& dir, const std::string& recipe,
              const std::vector<MiniModel>& models, const RunOptions& options = {}) {
  auto out = RunRecipe(dir, recipe, models, options);
  INFO(out.status.ToString());
  REQUIRE(out.status.ok());
  return out.values[kWeight];
}

void CheckEqual(const Values& got, const Values& expect) {
  REQUIRE(got.size() == expect.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(expect[i])) {
      if (bad < 5) UNSCOPED_INFO("element " << i << ": got " << got[i] << ", expected " << expect[i]);
      ++bad;
    }
  }
  CHECK(bad == 0);
}

void CheckClose(const Values& got, const Values& expect, double rel) {
  REQUIRE(got.size() == expect.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = rel * std::max(1.0, std::fabs(static_cast<double>(expect[i])));
    if (std::fabs(static_cast<double>(got[i]) - expect[i]) > tol) {
      if (bad < 5) UNSCOPED_INFO("element " << i << ": got " << got[i] << ", expected " << expect[i]);
      ++bad;
    }
  }
  CHECK(bad == 0);
}

// ---- task_arithmetic ----

TEST_CASE("task_arithmetic: normalize with Σw = 0 divides by 1, lambda scales",
          "[merge][task_arithmetic]") {
  alloy::testing::TempDir dir;
  const Values base = {0.5f, 1, -1, 2}, a = {1.5f, 1, -2, 2.25f}, b = {0.5f, 3, -1, 1};
  const Values got = Merged(dir,
                            Recipe("task_arithmetic", {"{weight: 1.0}", "{weight: -1.0}"},
                                   "{normalize: true, lambda: 0.5}"),
                            Models(base, {a, b}));
  // mixed = δa − δb; the divisor Σw = 0 is replaced by 1 (|div| < 1e-8).
  CHECK(got == Values{1.0f, 0.0f, -1.5f, 2.625f});
  CheckEqual(got, CombineRef(base, {Delta(a, base), Delta(b, base)}, {1, -1}, false, true, 0.5));
}

// ---- ties ----

TEST_CASE("ties: top-k keeps the lowest indices among equal magnitudes, with sign election",
          "[merge][task_arithmetic][ties]") {
  alloy::testing::TempDir dir;
  const Values base(8, 0.5f);
  const Values da = {0.5f, -0.25f, 0.25f, 0.25f, -1, 0, 0.25f, 0.125f};
  const Values db = {-0.5f, 0.5f, -0.75f, 0.25f, 0.5f, 0.25f, -0.25f, 0};
  Values a(8), b(8);
  for (size_t i = 0; i < 8; ++i) a[i] = base[i] + da[i], b[i] = base[i] + db[i];
  const Values got =
      Merged(dir, Recipe("ties", {"{weight: 1.0, density: 0.5}", "{weight: 0.5, density: 0.75}"}),
             Models(base, {a, b}, {2, 4}));
  // a keeps 1, 0.5 and the first two of its four 0.25s (indices 1, 2);
  // b keeps 0.75, its three 0.5s and the first two of its 0.25s (3, 5).
  CHECK(TopKRef(da, 0.5) == Mask{1, 1, 1, 0, 1, 0, 0, 0});
  CHECK(TopKRef(db, 0.75) == Mask{1, 1, 1, 1, 1, 1, 0, 0});
  CHECK(got == Values{1.0f, 1.0f, -0.25f, 0.75f, -0.5f, 0.75f, 0.5f, 0.5f});
  CheckEqual(got, CombineRef(base, {Sparse(da, TopKRef(da, 0.5)), Sparse(db, TopKRef(db, 0.75))},
                             {1.0f, 0.5f}, true, true));
}

TEST_CASE("ties: density 1, k = 1, zero and all-negative deltas", "[merge][task_arithmetic][ties]") {
  alloy::testing::TempDir dir;
  const Values base = {0, 0, 0, 0};
  SECTION("all-negative deltas keep their largest magnitudes") {
    const Values a = {-1, -2, -3, -4}, b = {-4, -3, -2, -1};
    const Values got =
        Merged(dir, Recipe("ties", {"{weight: 1.0, density: 0.5}", "{weight: 1.0, density: 0.5}"}),
               Models(base, {a, b}));
    CHECK(got == Values{-4, -3, -3, -4});
  }
  SECTION("density 1 is sign-consensus averaging") {
    const Values a = {1, -2, 3, 0}, b = {3, 1, -1, 0};
    const Values got =
        Merged(dir, Recipe("ties", {"{weight: 1.0}", "{weight: 1.0}"}), Models(base, {a, b}));
    // −2 + 1 = −1 elects −: only a agrees (−2 / 1); element 3 has no votes.
    CHECK(got == Values{2, -2, 3, 0});
  }
  SECTION("density giving k = 1 keeps the first of equal magnitudes") {
    const Values a = {2, 2, -2, 2};
    const Values got = Merged(dir, Recipe("ties", {"{weight: 1.0, density: 0.25}"}),
                              Models(base, {a}));
    CHECK(got == Values{2, 0, 0, 0});
  }
  SECTION("zero deltas leave the base") {
    const Values base2 = {0.25f, -1, 3, 0};
    const Values got = Merged(dir, Recipe("ties", {"{weight: 0.3, density: 0.5}"}),
                              Models(base2, {base2}));
    CHECK(got == base2);
  }
}

TEST_CASE("ties: negative weights flip votes, and a zero divisor becomes 1",
          "[merge][task_arithmetic][ties]") {
  alloy::testing::TempDir dir;
  const Values base = {0, 0, 0};
  const Values a = {1, 1, 1}, b = {1, 2, -1};
  const Values got =
      Merged(dir, Recipe("ties", {"{weight: 1.0}", "{weight: -1.0}"}), Models(base, {a, b}));
  // W = {1, −1}: vote 0 → +, a agrees: 1/1. W = {1, −2}: − wins, b agrees:
  // −2 / −1 = 2. W = {1, 1}: both agree, Σw·M = 0 → divide by 1: 2.
  CHECK(got == Values{1, 2, 2});
  const Values raw = Merged(dir,
                            Recipe("ties", {"{weight: 1.0}", "{weight: -1.0}"},
                                   "{normalize: false}"),
                            Models(base, {a, b}), {.out_name = "raw"});
  CHECK(raw == Values{1, -2, 2});
}

TEST_CASE("ties: a density that keeps 0 elements is an error", "[merge][task_arithmetic][ties]") {
  alloy::testing::TempDir dir;
  const Values base(8, 0.0f), a(8, 1.0f);
  auto out = RunRecipe(dir, Recipe("ties", {"{weight: 1.0, density: 0.1}"}), Models(base, {a}));
  REQUIRE_FALSE(out.status.ok());
  CHECK(out.status.code() == formats::ErrorCode::kInvalidArgument);
  CHECK_THAT(out.status.message(), Catch::Contains("density 0.1 keeps 0 of 8 elements"));
  CHECK_THAT(out.status.message(), Catch::Contains(kWeight));
  CHECK_THAT(out.status.message(), Catch::Contains("/a' (recipe line 5)"));
  CHECK_THAT(out.status.message(), Catch::Contains("raise density"));
}

TEST_CASE("ties: multi-model reference, with rescale and lambda", "[merge][task_arithmetic][ties]") {
  alloy::testing::TempDir dir;
  const size_t n = 96;
  const Values base = Dyadic(n, 1);
  const Values a = Quantized(base, 2), b = Quantized(base, 3), c = Quantized(base, 4);
  const std::vector<Values> d = {Delta(a, base), Delta(b, base), Delta(c, base)};
  const Values w = {0.5f, 0.3f, -0.25f};
  const double dens[] = {0.5, 0.3, 0.9};
  std::vector<Values> s;
  for (size_t m = 0; m < 3; ++m) s.push_back(Sparse(d[m], TopKRef(d[m], dens[m])));
  const std::vector<std::string> params = {"{weight: 0.5, density: 0.5}",
                                           "{weight: 0.3, density: 0.3}",
                                           "{weight: -0.25, density: 0.9}"};
  CheckEqual(Merged(dir, Recipe("ties", params), Models(base, {a, b, c})),
             CombineRef(base, s, w, true, true));
  std::vector<Values> rescaled;
  for (size_t m = 0; m < 3; ++m) {
    const Mask keep = TopKRef(d[m], dens[m]);
    rescaled.push_back(Sparse(d[m], keep, RescaleRef(d[m], keep)));
  }
  CheckClose(Merged(dir, Recipe("ties", params, "{rescale: true, lambda: 0.7}"),
                    Models(base, {a, b, c}), {.out_name = "rescaled"}),
             CombineRef(base, rescaled, w, true, true, 0.7), 1e-6);
}

// ---- breadcrumbs ----

TEST_CASE("breadcrumbs: window of the (|δ|, index) order, and gamma·N < 1 zeroes everything",
          "[merge][task_arithmetic][breadcrumbs]") {
  alloy::testing::TempDir dir;
  SECTION("top = 1, ties split by index at the lower end") {
    const Values base(10, 1.0f);
    const Values d = {1.0f / 8, 3.0f / 8, 2.0f / 8, 2.0f / 8, 5.0f / 8,
                      2.0f / 8, 4.0f / 8, 2.0f / 8, 1.0f / 8, 9.0f / 8};
    Values a(10);
    for (size_t i = 0; i < 10; ++i) a[i] = base[i] + d[i];
    // keep 5, top 1, bot 4: ascending positions [4, 9) are i5, i7, i1, i6, i4;
    // of the four 2/8 ties the two with the highest indices are kept.
    CHECK(BreadcrumbsRef(d, 0.5, 0.1) == Mask{0, 1, 0, 0, 1, 1, 1, 1, 0, 0});
    const Values got = Merged(dir, Recipe("breadcrumbs", {"{weight: 1.0, density: 0.5, gamma: 0.1}"}),
                              Models(base, {a}));
    CheckEqual(got, CombineRef(base, {Sparse(d, BreadcrumbsRef(d, 0.5, 0.1))}, {1.0f}, false,
                               false));
    CHECK(got[5] == 1.25f);
    CHECK(got[2] == 1.0f);
  }
  SECTION("gamma·N < 1: the whole delta is zeroed (Decision d)") {
    const Values base(8, 0.5f), a = {1, 2, 3, 4, 5, 6, 7, 8};
    const Values got = Merged(dir, Recipe("breadcrumbs", {"{weight: 1.0, density: 0.5}"}),
                              Models(base, {a}));
    CHECK(got == base);
  }
  SECTION("density 1 returns the delta unchanged, whatever gamma") {
    const Values base(8, 0.5f), a = {1, 2, 3, 4, 5, 6, 7, 8};
    const Values got =
        Merged(dir, Recipe("breadcrumbs", {"{weight: 1.0, density: 1.0, gamma: 0.25}"}),
               Models(base, {a}));
    CHECK(got == a);
  }
  SECTION("bot < 0 moves the excess from top") {
    const Values base(10, 0.0f), a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    // keep 9, top 2, bot −1 → top 1, bot 0: everything but the largest.
    const Values got = Merged(
        dir, Recipe("breadcrumbs", {"{weight: 1.0, density: 0.95, gamma: 0.2}"}), Models(base, {a}));
    CHECK(got == Values{1, 2, 3, 4, 5, 6, 7, 8, 9, 0});
  }
}

TEST_CASE("breadcrumbs_ties: multi-model reference with ties at both ends",
          "[merge][task_arithmetic][breadcrumbs]") {
  alloy::testing::TempDir dir;
  const size_t n = 200;
  const Values base = Dyadic(n, 5);
  const Values a = Quantized(base, 6), b = Quantized(base, 7);
  const Values da = Delta(a, base), db = Delta(b, base);
  const std::vector<std::string> params = {"{weight: 0.6, density: 0.4, gamma: 0.05}",
                                           "{weight: 0.4, density: 0.7, gamma: 0.2}"};
  const std::vector<Values> s = {Sparse(da, BreadcrumbsRef(da, 0.4, 0.05)),
                                 Sparse(db, BreadcrumbsRef(db, 0.7, 0.2))};
  CheckEqual(Merged(dir, Recipe("breadcrumbs_ties", params), Models(base, {a, b})),
             CombineRef(base, s, {0.6f, 0.4f}, true, false));
  CheckEqual(Merged(dir, Recipe("breadcrumbs", params, "{normalize: true}"), Models(base, {a, b}),
                    {.out_name = "linear"}),
             CombineRef(base, s, {0.6f, 0.4f}, false, true));
  // rescale: the kept L1 mass matches the whole delta's.
  const Mask ka = BreadcrumbsRef(da, 0.4, 0.05), kb = BreadcrumbsRef(db, 0.7, 0.2);
  CheckClose(Merged(dir, Recipe("breadcrumbs", params, "{rescale: true}"), Models(base, {a, b}),
                    {.out_name = "rescaled"}),
             CombineRef(base, {Sparse(da, ka, RescaleRef(da, ka)), Sparse(db, kb, RescaleRef(db, kb))},
                        {0.6f, 0.4f}, false, false),
             1e-6);
}

// ---- DARE ----

TEST_CASE("dare_linear: kept fraction ≈ density, L1 preserved, seeds", "[merge][task_arithmetic][dare]") {
  alloy::testing::TempDir dir;
  const size_t n = 64 * 256;
  const Values base(n, 0.0f);
  Values a = Normal(n, 11, 0.0f, 0.01f);
  for (float& v : a) v = v == 0.0f ? 0.01f : v;
  const std::string recipe = Recipe("dare_linear", {"{weight: 1.0, density: 0.3}"});
  const Values got = Merged(dir, recipe, Models(base, {a}, {64, 256}), {.seed = 7});
  size_t kept = 0;
  double l1_in = 0, l1_out = 0;
  for (size_t i = 0; i < n; ++i) {
    kept += got[i] != 0.0f;
    l1_in += std::fabs(static_cast<double>(a[i]));
    l1_out += std::fabs(static_cast<double>(got[i]));
  }
  const double frac = static_cast<double>(kept) / static_cast<double>(n);
  CHECK(std::fabs(frac - 0.3) < 4 * std::sqrt(0.3 * 0.7 / static_cast<double>(n)));
  CHECK(l1_out == Approx(l1_in).epsilon(1e-6));
  // Exactly the mask of Decision (b): U(seed, name, model 1, i) < density.
  const Mask keep = DareRef(n, 7, 1, 0.3f);
  CheckEqual(got, CombineRef(base, {Sparse(a, keep, RescaleRef(a, keep))}, {1}, false, false));

  const Values same = Merged(dir, recipe, Models(base, {a}, {64, 256}), {.seed = 7, .out_name = "same"});
  CHECK(same == got);
  const Values other =
      Merged(dir, recipe, Models(base, {a}, {64, 256}), {.seed = 8, .out_name = "other"});
  CHECK(other != got);
  const Values raw = Merged(dir, Recipe("dare_linear", {"{weight: 1.0, density: 0.3}"}, "{rescale: false}"),
                            Models(base, {a}, {64, 256}), {.seed = 7, .out_name = "raw"});
  CheckEqual(raw, CombineRef(base, {Sparse(a, keep)}, {1}, false, false));
}

TEST_CASE("dare_ties: two models against the reference, density 1 and 0",
          "[merge][task_arithmetic][dare]") {
  alloy::testing::TempDir dir;
  const size_t n = 64 * 256;
  const Values base = Normal(n, 21, 0.0f, 0.05f);
  const Values a = Normal(n, 22, 0.0f, 0.05f), b = Normal(n, 23, 0.0f, 0.05f);
  const Values da = Delta(a, base), db = Delta(b, base);
  const Mask ka = DareRef(n, 3, 1, 0.5f), kb = DareRef(n, 3, 2, 0.25f);
  const Values got = Merged(dir,
                            Recipe("dare_ties", {"{weight: 0.7, density: 0.5}",
                                                 "{weight: 0.3, density: 0.25}"}),
                            Models(base, {a, b}, {64, 256}), {.seed = 3});
  CheckClose(got,
             CombineRef(base, {Sparse(da, ka, RescaleRef(da, ka)), Sparse(db, kb, RescaleRef(db, kb))},
                        {0.7f, 0.3f}, true, false),
             1e-6);
  // density 1: no sparsification and no rescale; density 0 drops everything.
  const Values dense = Merged(dir, Recipe("dare_ties", {"{weight: 0.7}", "{weight: 0.3, density: 0}"}),
                              Models(base, {a, b}, {64, 256}), {.out_name = "dense"});
  CheckEqual(dense, CombineRef(base, {da, Values(n, 0.0f)}, {0.7f, 0.3f}, true, false));
}

// ---- DELLA ----

TEST_CASE("della_linear: rank-weighted keep probabilities per row, L1 preserved",
          "[merge][task_arithmetic][della]") {
  alloy::testing::TempDir dir;
  const size_t rows = 64, cols = 256, n = rows * cols;
  const Values base(n, 0.0f);
  Values a = Normal(n, 31, 0.0f, 0.01f);
  for (float& v : a) v = v == 0.0f ? 0.01f : v;
  const Values got = Merged(dir, Recipe("della_linear", {"{weight: 1.0, density: 0.5, epsilon: 0.2}"}),
                            Models(base, {a}, {64, 256}), {.seed = 5});
  const Mask keep = DellaRef(a, cols, 5, 1, 0.5f, 0.2f);
  CheckEqual(got, CombineRef(base, {Sparse(a, keep, RescaleRef(a, keep))}, {1}, false, false));
  size_t kept = 0;
  double mag_kept = 0, mag_dropped = 0, l1_in = 0, l1_out = 0;
  for (size_t i = 0; i < n; ++i) {
    kept += keep[i];
    (keep[i] ? mag_kept : mag_dropped) += std::fabs(a[i]);
    l1_in += std::fabs(static_cast<double>(a[i]));
    l1_out += std::fabs(static_cast<double>(got[i]));
  }
  CHECK(std::fabs(static_cast<double>(kept) / static_cast<double>(n) - 0.5) < 0.02);
  CHECK(mag_kept / static_cast<double>(kept) > 1.2 * mag_dropped / static_cast<double>(n - kept));
  CHECK(l1_out == Approx(l1_in).epsilon(1e-6));
}

TEST_CASE("della: consensus reference, density ≤ 0, density 1, epsilon range, 1-element rows",
          "[merge][task_arithmetic][della]") {
  alloy::testing::TempDir dir;
  const size_t n = 32 * 64;
  const Values base = Normal(n, 41, 0.0f, 0.05f);
  const Values a = Normal(n, 42, 0.0f, 0.05f), b = Normal(n, 43, 0.0f, 0.05f);
  const Values da = Delta(a, base), db = Delta(b, base);
  SECTION("two models") {
    const Mask ka = DellaRef(da, 64, 9, 1, 0.4f, 0.1f), kb = DellaRef(db, 64, 9, 2, 0.6f, 0.15f);
    const Values got = Merged(dir,
                              Recipe("della", {"{weight: 0.5, density: 0.4, epsilon: 0.1}",
                                               "{weight: 0.5, density: 0.6}"}),
                              Models(base, {a, b}, {32, 64}), {.seed = 9});
    CheckClose(got,
               CombineRef(base, {Sparse(da, ka, RescaleRef(da, ka)), Sparse(db, kb, RescaleRef(db, kb))},
                          {0.5f, 0.5f}, true, true),
               1e-6);
  }
  SECTION("density ≤ 0 gives zeros before the epsilon check; density 1 is unchanged") {
    const Values got = Merged(dir,
                              Recipe("della_linear", {"{weight: 1.0, density: 0.0, epsilon: 0.5}",
                                                      "{weight: 1.0, density: 1.0}"}),
                              Models(base, {a, b}, {32, 64}));
    CheckEqual(got, CombineRef(base, {Values(n, 0.0f), db}, {1, 1}, false, false));
  }
  SECTION("density ± epsilon outside (0, 1) is an error") {
    auto out = RunRecipe(dir, Recipe("della", {"{weight: 1.0, density: 0.1}"}),
                         Models(base, {a}, {32, 64}));
    REQUIRE_FALSE(out.status.ok());
    CHECK(out.status.code() == formats::ErrorCode::kInvalidArgument);
    CHECK_THAT(out.status.message(), Catch::Contains("epsilon"));
    CHECK_THAT(out.status.message(), Catch::Contains(kWeight));
  }
  SECTION("rows of one element are an error") {
    auto out = RunRecipe(dir, Recipe("della", {"{weight: 1.0, density: 0.5}"}),
                         Models(base, {a}, {static_cast<int64_t>(n), 1}));
    REQUIRE_FALSE(out.status.ok());
    CHECK_THAT(out.status.message(), Catch::Contains("rows of 1 element"));
  }
}

// ---- several chunks, threads ----

TEST_CASE("tie quotas and windows spanning several chunks match the references",
          "[merge][task_arithmetic][ties][breadcrumbs]") {
  alloy::testing::TempDir dir;
  const size_t rows = 300, cols = 512, n = rows * cols;  // 2.3 chunks of 65,536
  const Values base = Dyadic(n, 51);
  // Deltas in {−4..4}/16: each magnitude is shared by ~20% of the elements,
  // so every threshold's ties spread over all chunks.
  const Values a = Quantized(base, 52), b = Quantized(base, 53);
  const Values da = Delta(a, base), db = Delta(b, base);
  REQUIRE(std::count(da.begin(), da.end(), 0.25f) > 10000);  // ties everywhere
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    const std::string tag = std::to_string(threads);
    CheckEqual(Merged(dir,
                      Recipe("ties", {"{weight: 1.0, density: 0.5}", "{weight: 0.5, density: 0.33}"}),
                      Models(base, {a, b}, {300, 512}), {.threads = threads, .out_name = "t" + tag}),
               CombineRef(base, {Sparse(da, TopKRef(da, 0.5)), Sparse(db, TopKRef(db, 0.33))},
                          {1.0f, 0.5f}, true, true));
    CheckEqual(Merged(dir,
                      Recipe("breadcrumbs", {"{weight: 1.0, density: 0.3, gamma: 0.25}",
                                             "{weight: 0.5, density: 0.5, gamma: 0.01}"}),
                      Models(base, {a, b}, {300, 512}), {.threads = threads, .out_name = "b" + tag}),
               CombineRef(base,
                          {Sparse(da, BreadcrumbsRef(da, 0.3, 0.25)),
                           Sparse(db, BreadcrumbsRef(db, 0.5, 0.01))},
                          {1.0f, 0.5f}, false, false));
  }
}

TEST_CASE("tie quotas at full-precision magnitudes span several chunks",
          "[merge][task_arithmetic][ties][breadcrumbs]") {
  // Magnitudes k·0.1f have nonzero low mantissa bits, so the select pass
  // cannot hand out per-chunk tie counts: the emit counts them in order.
  alloy::testing::TempDir dir;
  const size_t n = 300 * 512;
  const Values base(n, 0.0f);
  std::mt19937 rng(71);
  Values a(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = static_cast<float>(static_cast<int>(rng() % 7) - 3) * 0.1f;
    b[i] = static_cast<float>(static_cast<int>(rng() % 5) - 2) * 0.3f;
  }
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    const std::string tag = std::to_string(threads);
    CheckEqual(Merged(dir,
                      Recipe("ties", {"{weight: 1.0, density: 0.4}", "{weight: 0.5, density: 0.7}"}),
                      Models(base, {a, b}, {300, 512}), {.threads = threads, .out_name = "t" + tag}),
               CombineRef(base, {Sparse(a, TopKRef(a, 0.4)), Sparse(b, TopKRef(b, 0.7))},
                          {1.0f, 0.5f}, true, true));
    CheckEqual(Merged(dir,
                      Recipe("breadcrumbs_ties", {"{weight: 1.0, density: 0.5, gamma: 0.2}",
                                                  "{weight: 0.5, density: 0.2, gamma: 0.3}"}),
                      Models(base, {a, b}, {300, 512}), {.threads = threads, .out_name = "b" + tag}),
               CombineRef(base,
                          {Sparse(a, BreadcrumbsRef(a, 0.5, 0.2)),
                           Sparse(b, BreadcrumbsRef(b, 0.2, 0.3))},
                          {1.0f, 0.5f}, true, false));
  }
}

TEST_CASE("every method is byte-identical at 1 and 2 threads on several chunks",
          "[merge][task_arithmetic]") {
  alloy::testing::TempDir dir;
  const size_t n = 300 * 512;
  const Values base = Normal(n, 61, 0.0f, 0.05f);
  Values a = Normal(n, 62, 0.0f, 0.05f);
  const Values b = Quantized(base, 63);  // float32 deltas (a) and tie-heavy ones (b)
  const auto models = Models(base, {a, b}, {300, 512});
  for (const char* method : {"task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs",
                             "breadcrumbs_ties", "della", "della_linear"}) {
    CAPTURE(method);
    const std::string recipe = Recipe(
        method, {"{weight: 0.6, density: 0.45, gamma: 0.02, epsilon: 0.1}",
                 "{weight: 0.4, density: 0.3, gamma: 0.1, epsilon: 0.2}"},
        "{rescale: true}");
    std::string bytes[2];
    for (int threads : {1, 2}) {
      const std::string name = std::string(method) + "_" + std::to_string(threads);
      auto out = RunRecipe(dir, recipe, models, {.threads = threads, .seed = 4, .out_name = name});
      INFO(out.status.ToString());
      REQUIRE(out.status.ok());
      bytes[threads - 1] = FileBytes(out.out_dir + "/model.safetensors");
    }
    CHECK(bytes[0].size() > n * 4);
    CHECK(bytes[0] == bytes[1]);
  }
}

// ---- StreamSelector on a fake pass ----

// A TensorPass over nothing: Scan hands out chunks of `chunk` elements of a
// 1-D tensor of `numel`, one at a time, on slots cycling through `slots`;
// with `scramble` in a fixed shuffled chunk order (as parallel workers might
// take them), else in order.
class FakePass final : public TensorPass {
 public:
  FakePass(uint64_t numel, size_t chunk, size_t slots, bool scramble) : scramble_(scramble) {
    numel_ = numel;
    chunk_elems_ = chunk;
    num_slots_ = slots;
    tensor_.shape = {static_cast<int64_t>(numel)};
    tensor_.output_name = "fake";
  }
  const PlannedTensor& tensor() const override { return tensor_; }
  formats::Status Scan(const ScanFn& fn) override {
    ++scans;
    const size_t n_chunks = num_chunks();
    std::vector<size_t> order(n_chunks);
    std::iota(order.begin(), order.end(), size_t{0});
    if (scramble_) std::shuffle(order.begin(), order.end(), std::mt19937(99));
    for (size_t step = 0; step < n_chunks; ++step) {
      Chunk c;
      c.index = order[step];
      c.begin = static_cast<uint64_t>(c.index) * chunk_elems_;
      c.size = static_cast<size_t>(std::min<uint64_t>(chunk_elems_, numel_ - c.begin));
      c.slot = (step + step / 5) % num_slots_;
      fn(c);
    }
    return formats::Status::OK();
  }
  formats::Status Emit(const EmitFn&) override { return formats::Status::Unsupported("fake"); }
  formats::Status EmitElementwise(const EmitFn&) override {
    return formats::Status::Unsupported("fake");
  }
  formats::Status ScanReduce(size_t, const PartialFn&, const CombineFn&) override {
    return formats::Status::Unsupported("fake");
  }
  formats::Status ScanOrdered(size_t, const CountFn&, const OrderedScanFn&) override {
    return formats::Status::Unsupported("fake");
  }
  formats::Status EmitOrdered(size_t, const CountFn&, const OrderedEmitFn&) override {
    return formats::Status::Unsupported("fake");
  }
  int scans = 0;

 private:
  PlannedTensor tensor_;
  bool scramble_;
};

// Answers `queries` over keys[stream][i] with the selector and checks them
// against a sort; returns the number of Scans used.
int CheckSelect(const std::vector<std::vector<uint32_t>>& keys,
                const std::vector<methods::KeyQuery>& queries, size_t chunk, size_t slots,
                bool scramble = true) {
  FakePass pass(keys[0].size(), chunk, slots, scramble);
  methods::StreamSelector selector;
  auto answers = selector.Select(pass, keys.size(), queries,
                                 [&](const Chunk& c, size_t stream, std::span<uint32_t> out) {
                                   for (size_t j = 0; j < c.size; ++j) out[j] = keys[stream][c.begin + j];
                                 });
  REQUIRE(answers.ok());
  for (size_t q = 0; q < queries.size(); ++q) {
    std::vector<uint32_t> sorted = keys[queries[q].stream];
    std::sort(sorted.begin(), sorted.end());
    const uint32_t key = sorted[queries[q].rank];
    const auto lo = std::lower_bound(sorted.begin(), sorted.end(), key);
    const auto hi = std::upper_bound(sorted.begin(), sorted.end(), key);
    CAPTURE(q, queries[q].rank);
    CHECK((*answers)[q].key == key);
    CHECK((*answers)[q].n_below == static_cast<uint64_t>(lo - sorted.begin()));
    CHECK((*answers)[q].n_equal == static_cast<uint64_t>(hi - lo));
  }
  return pass.scans;
}

TEST_CASE("StreamSelector: exact answers in one pass for mixed keys",
          "[merge][task_arithmetic][stream_select]") {
  std::mt19937 gen(1);
  auto rng = [&gen] { return static_cast<uint32_t>(gen()); };
  const size_t n = 300000;
  std::vector<std::vector<uint32_t>> keys(2, std::vector<uint32_t>(n));
  for (size_t i = 0; i < n; ++i) {
    // Stream 0: bf16-like keys (low half 0) with ~5% full-precision ones;
    // stream 1: all in one high bin, full precision, many duplicates.
    const uint32_t hi = 0x3A00u + rng() % 300u;
    keys[0][i] = (hi << 16) | (rng() % 20 == 0 ? rng() & 0xFFFFu : 0u);
    keys[1][i] = 0x3C000000u + rng() % 5000u;
  }
  std::vector<methods::KeyQuery> queries;
  for (uint64_t rank : {uint64_t{0}, uint64_t{1}, n / 3, n / 2, n - 1}) {
    queries.push_back({0, rank});
    queries.push_back({1, rank});
  }
  CHECK(CheckSelect(keys, queries, 4096, 3) == 1);
  CHECK(CheckSelect(keys, queries, 65536, 1) == 1);
}

TEST_CASE("StreamSelector: per-chunk counts of the answer key",
          "[merge][task_arithmetic][stream_select]") {
  std::mt19937 gen(4);
  const size_t n = 200000, chunk = 8192;
  std::vector<std::vector<uint32_t>> keys(2, std::vector<uint32_t>(n));
  for (size_t i = 0; i < n; ++i) {
    keys[0][i] = (0x3A00u + static_cast<uint32_t>(gen() % 200u)) << 16;  // low halves 0
    keys[1][i] = 0x3C000000u + static_cast<uint32_t>(gen() % 50u);      // low halves not 0
  }
  FakePass pass(n, chunk, 2, true);
  methods::StreamSelector selector;
  const std::vector<methods::KeyQuery> queries = {{0, n / 2}, {1, n / 3}};
  auto answers = selector.Select(pass, 2, queries,
                                 [&](const Chunk& c, size_t stream, std::span<uint32_t> out) {
                                   for (size_t j = 0; j < c.size; ++j) out[j] = keys[stream][c.begin + j];
                                 });
  REQUIRE(answers.ok());
  std::vector<uint64_t> counts(pass.num_chunks());
  REQUIRE(selector.EqualCountsPerChunk(0, (*answers)[0].key, counts));
  uint64_t total = 0;
  for (size_t c = 0; c < counts.size(); ++c) {
    const auto first = keys[0].begin() + static_cast<std::ptrdiff_t>(c * chunk);
    const auto last = keys[0].begin() + static_cast<std::ptrdiff_t>(std::min(n, (c + 1) * chunk));
    CHECK(counts[c] == static_cast<uint64_t>(std::count(first, last, (*answers)[0].key)));
    total += counts[c];
  }
  CHECK(total == (*answers)[0].n_equal);
  // Keys with low bits set, and bins far from the query, are not recorded.
  CHECK_FALSE(selector.EqualCountsPerChunk(1, (*answers)[1].key, counts));
  CHECK_FALSE(selector.EqualCountsPerChunk(0, 0x3A000000u, counts));
}

TEST_CASE("StreamSelector: narrowed spill windows still answer in one pass",
          "[merge][task_arithmetic][stream_select]") {
  std::mt19937 rng(3);
  const size_t n = 3000000;  // > the spill list: slots narrow to the query windows
  std::vector<std::vector<uint32_t>> keys(1, std::vector<uint32_t>(n));
  std::normal_distribution<float> normal(0.0f, 0.01f);
  for (size_t i = 0; i < n; ++i) keys[0][i] = std::bit_cast<uint32_t>(std::fabs(normal(rng)));
  CHECK(CheckSelect(keys, {{0, n / 2}, {0, n / 10}, {0, n - n / 50}}, 65536, 2) == 1);
}

TEST_CASE("StreamSelector: an unrepresentative start falls back to the refinement pass",
          "[merge][task_arithmetic][stream_select]") {
  std::mt19937 gen(2);
  auto rng = [&gen] { return static_cast<uint32_t>(gen()); };
  const size_t n = 3000000;
  std::vector<std::vector<uint32_t>> keys(1, std::vector<uint32_t>(n));
  // The first 1.2M keys are small, the rest large: the spill window chosen
  // from the start misses the upper queries, which lie among the large keys.
  for (size_t i = 0; i < n; ++i) {
    keys[0][i] = i < 1200000 ? 0x30000000u + (rng() & 0xFFFFFu) : 0x40000000u + (rng() & 0xFFFFFu);
  }
  CHECK(CheckSelect(keys, {{0, n / 2}, {0, 10}, {0, n - 5}}, 65536, 1, false) == 2);
}

}  // namespace
}  // namespace alloy::merge

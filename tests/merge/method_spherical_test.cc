// nuslerp, multislerp, karcher and model_stock against references written
// directly from mergekit's vector formulas (mergekit-semantics.md §1.6–§1.9)
// — alloy computes them from Gram matrices, so these check the rewrite.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "merge/executor.h"
#include "tests/merge/merge_test_support.h"

namespace alloy::merge {
namespace {

using testing_support::FileBytes;
using testing_support::kLayerWeight;
using testing_support::MiniModel;
using testing_support::OneTensorModel;
using testing_support::RunRecipe;
using Vec = std::vector<double>;
using Values = std::vector<float>;

double Dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
Vec Axpy(double a, const Vec& x, const Vec& y) {  // a·x + y
  Vec out(y);
  for (size_t i = 0; i < x.size(); ++i) out[i] += a * x[i];
  return out;
}
Vec Scale(double a, const Vec& x) { return Axpy(a, x, Vec(x.size(), 0.0)); }
Vec ToVec(const Values& v) { return Vec(v.begin(), v.end()); }

void CheckNear(const Values& got, const Vec& want, double tol = 2e-6) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == Approx(want[i]).margin(tol).epsilon(tol));
  }
}

Vec NuslerpRef(double t, const Vec& v0, const Vec& v1) {
  const Vec u0 = Scale(1 / std::max(std::sqrt(Dot(v0, v0)), 1e-7), v0);
  const Vec u1 = Scale(1 / std::max(std::sqrt(Dot(v1, v1)), 1e-7), v1);
  const double theta = std::acos(std::clamp(Dot(u0, u1), -1.0, 1.0));
  const double s = std::sin(theta);
  if (std::fabs(s) < 1e-8) return Axpy(t, v1, Scale(1 - t, v0));
  return Axpy(std::sin(t * theta) / s, v1, Scale(std::sin((1 - t) * theta) / s, v0));
}

std::string Models(const std::vector<std::string>& names, const std::vector<std::string>& params) {
  std::string r = "models:\n";
  for (size_t i = 0; i < names.size(); ++i) {
    r += "  - model: $D/" + names[i] + "\n";
    if (!params[i].empty()) r += "    parameters: {" + params[i] + "}\n";
  }
  return r;
}

TEST_CASE("nuslerp: flattened, per row, and on task vectors", "[merge][nuslerp]") {
  const Values a = {1, 2, -1, 0.5f, 3, -2}, b = {-2, 0.5f, 1, 1, 0, 4}, base = {0.5f, 0, 0, 1, 1, -1};
  const double t = 0.75 / (0.25 + 0.75);
  SECTION("flattened, no base") {
    alloy::testing::TempDir dir;
    auto got = RunRecipe(dir, "merge_method: nuslerp\n" + Models({"a", "b"}, {"weight: 0.25", "weight: 0.75"}),
                         {OneTensorModel("a", a, {2, 3}), OneTensorModel("b", b, {2, 3})});
    INFO(got.status.ToString());
    REQUIRE(got.status.ok());
    CheckNear(got.values.at(kLayerWeight), NuslerpRef(t, ToVec(a), ToVec(b)));
  }
  SECTION("per row of a non-square tensor") {
    alloy::testing::TempDir dir;
    auto got = RunRecipe(dir,
                         "merge_method: nuslerp\nparameters: {nuslerp_flatten: false}\n" +
                             Models({"a", "b"}, {"weight: 0.25", "weight: 0.75"}),
                         {OneTensorModel("a", a, {2, 3}), OneTensorModel("b", b, {2, 3})});
    INFO(got.status.ToString());
    REQUIRE(got.status.ok());
    Vec want;
    for (int r = 0; r < 2; ++r) {
      const Vec row = NuslerpRef(t, Vec(a.begin() + 3 * r, a.begin() + 3 * r + 3),
                                 Vec(b.begin() + 3 * r, b.begin() + 3 * r + 3));
      want.insert(want.end(), row.begin(), row.end());
    }
    CheckNear(got.values.at(kLayerWeight), want);
  }
  SECTION("with a base: task vectors") {
    alloy::testing::TempDir dir;
    auto got = RunRecipe(dir,
                         "merge_method: nuslerp\nbase_model: $D/base\n" +
                             Models({"base", "a", "b"}, {"", "weight: 0.25", "weight: 0.75"}),
                         {OneTensorModel("base", base, {2, 3}), OneTensorModel("a", a, {2, 3}),
                          OneTensorModel("b", b, {2, 3})});
    INFO(got.status.ToString());
    REQUIRE(got.status.ok());
    Vec da = ToVec(a), db = ToVec(b);
    for (size_t i = 0; i < da.size(); ++i) da[i] -= base[i], db[i] -= base[i];
    CheckNear(got.values.at(kLayerWeight), Axpy(1.0, NuslerpRef(t, da, db), ToVec(base)));
  }
  SECTION("row_wise: vectors along dimension 0 (the columns)") {
    alloy::testing::TempDir dir;
    auto got = RunRecipe(
        dir,
        "merge_method: nuslerp\nparameters: {nuslerp_flatten: false, nuslerp_row_wise: true}\n" +
            Models({"a", "b"}, {"weight: 0.25", "weight: 0.75"}),
        {OneTensorModel("a", a, {2, 3}), OneTensorModel("b", b, {2, 3})});
    INFO(got.status.ToString());
    REQUIRE(got.status.ok());
    Vec want(6);
    for (int col = 0; col < 3; ++col) {
      const Vec r = NuslerpRef(t, {a[col], a[3 + col]}, {b[col], b[3 + col]});
      want[col] = r[0];
      want[3 + col] = r[1];
    }
    CheckNear(got.values.at(kLayerWeight), want);
  }
}

TEST_CASE("multislerp: three task vectors on a base", "[merge][multislerp]") {
  alloy::testing::TempDir dir;
  const std::vector<Values> xs = {{1, 2, 0, -1}, {0.5f, -1, 2, 1}, {3, 0.25f, 1, 0}};
  const Values base = {0.1f, 0.2f, -0.3f, 0.4f};
  const Vec w0 = {0.2, 0.3, 0.5};  // already normalized
  auto got = RunRecipe(dir,
                       "merge_method: multislerp\nbase_model: $D/base\n" +
                           Models({"base", "x0", "x1", "x2"},
                                  {"", "weight: 0.2", "weight: 0.3", "weight: 0.5"}),
                       {OneTensorModel("base", base), OneTensorModel("x0", xs[0]),
                        OneTensorModel("x1", xs[1]), OneTensorModel("x2", xs[2])});
  INFO(got.status.ToString());
  REQUIRE(got.status.ok());
  const double eps = 1e-8;
  std::vector<Vec> x, u;
  Vec r;
  for (const Values& v : xs) {
    Vec d = ToVec(v);
    for (size_t i = 0; i < d.size(); ++i) d[i] -= base[i];
    r.push_back(std::sqrt(Dot(d, d)));
    u.push_back(Scale(1 / (r.back() + eps), d));
    x.push_back(d);
  }
  Vec m(4, 0.0);
  for (size_t i = 0; i < 3; ++i) m = Axpy(w0[i], u[i], m);
  const Vec mh = Scale(1 / std::sqrt(Dot(m, m)), m);
  Vec tau(4, 0.0);
  for (size_t i = 0; i < 3; ++i) tau = Axpy(w0[i], Axpy(-Dot(u[i], mh), mh, u[i]), tau);
  const double a = std::sqrt(Dot(tau, tau)) + eps;
  Vec y = Axpy(std::sin(a) / a, tau, Scale(std::cos(a), mh));
  double scale = 0;
  for (size_t i = 0; i < 3; ++i) scale += w0[i] * r[i];
  CheckNear(got.values.at(kLayerWeight), Axpy(scale, y, ToVec(base)));
}

TEST_CASE("karcher: identical inputs, and the mean of two directions", "[merge][karcher]") {
  SECTION("identical tensors give that tensor") {
    alloy::testing::TempDir dir;
    const Values v = {1, -2, 3, 0.5f};
    auto got = RunRecipe(dir, "merge_method: karcher\n" + Models({"a", "b", "c"}, {"", "", ""}),
                         {OneTensorModel("a", v), OneTensorModel("b", v), OneTensorModel("c", v)});
    INFO(got.status.ToString());
    REQUIRE(got.status.ok());
    CheckNear(got.values.at(kLayerWeight), ToVec(v));
  }
  SECTION("two orthogonal vectors: the bisector, scaled by the mean norm") {
    alloy::testing::TempDir dir;
    auto got = RunRecipe(dir, "merge_method: karcher\n" + Models({"a", "b"}, {"", ""}),
                         {OneTensorModel("a", {3, 0}), OneTensorModel("b", {0, 5})});
    INFO(got.status.ToString());
    REQUIRE(got.status.ok());
    const double s = (3.0 + 5.0) / 2 / std::sqrt(2.0);
    CheckNear(got.values.at(kLayerWeight), {s, s}, 1e-5);
  }
}

TEST_CASE("model_stock: orthogonal task vectors keep the base, others interpolate",
          "[merge][model_stock]") {
  const Values base = {1, 1, 1, 1};
  SECTION("orthogonal: cos 0, t 0, the base") {
    alloy::testing::TempDir dir;
    auto got = RunRecipe(dir, "merge_method: model_stock\nbase_model: $D/base\n" +
                                  Models({"base", "a", "b"}, {"", "", ""}),
                         {OneTensorModel("base", base), OneTensorModel("a", {2, 1, 1, 1}),
                          OneTensorModel("b", {1, 3, 1, 1})});
    INFO(got.status.ToString());
    REQUIRE(got.status.ok());
    CHECK(got.values.at(kLayerWeight) == base);
  }
  SECTION("three models, flattened and filter-wise") {
    const std::vector<Values> ws = {{2, 1, 0, 1.5f}, {1.5f, 2, 1, 1}, {2, 2, 0.5f, 2}};
    for (bool filter_wise : {false, true}) {
      CAPTURE(filter_wise);
      alloy::testing::TempDir dir;
      auto got = RunRecipe(dir,
                           "merge_method: model_stock\nbase_model: $D/base\nparameters: {filter_wise: " +
                               std::string(filter_wise ? "true" : "false") + "}\n" +
                               Models({"base", "a", "b", "c"}, {"", "", "", ""}),
                           {OneTensorModel("base", base, {2, 2}), OneTensorModel("a", ws[0], {2, 2}),
                            OneTensorModel("b", ws[1], {2, 2}), OneTensorModel("c", ws[2], {2, 2})});
      INFO(got.status.ToString());
      REQUIRE(got.status.ok());
      Vec want;
      const size_t row = filter_wise ? 2 : 4;
      for (size_t r0 = 0; r0 < 4; r0 += row) {
        std::vector<Vec> d;
        for (const Values& w : ws) {
          Vec v;
          for (size_t i = r0; i < r0 + row; ++i) v.push_back(double(w[i]) - base[i]);
          d.push_back(v);
        }
        double c = 0;
        for (size_t i = 0; i < 3; ++i) {
          for (size_t j = i + 1; j < 3; ++j) {
            c += std::clamp(Dot(d[i], d[j]) / std::max(std::sqrt(Dot(d[i], d[i]) * Dot(d[j], d[j])), 1e-6),
                            -1.0, 1.0);
          }
        }
        c /= 3;
        const double t = 3 * c / (1 + 2 * c);
        for (size_t i = 0; i < row; ++i) {
          const double avg = (double(ws[0][r0 + i]) + ws[1][r0 + i] + ws[2][r0 + i]) / 3;
          want.push_back(t * avg + (1 - t) * base[r0 + i]);
        }
      }
      CheckNear(got.values.at(kLayerWeight), want, 1e-5);
    }
  }
  SECTION("the base and one other model are refused before writing") {
    alloy::testing::TempDir dir;
    auto got = RunRecipe(dir, "merge_method: model_stock\nbase_model: $D/base\n" +
                                  Models({"base", "a"}, {"", ""}),
                         {OneTensorModel("base", base), OneTensorModel("a", {2, 1, 1, 1})});
    REQUIRE_FALSE(got.status.ok());
    CHECK_THAT(got.status.message(), Catch::Contains("model_stock"));
  }
}

// arcee_fusion's reference: kl per row, imp, exact quartiles, the mask.
Vec ArceeRef(const Values& b, const Values& f, size_t row) {
  const size_t n = b.size();
  std::vector<float> imp(n);
  for (size_t r0 = 0; r0 < n; r0 += row) {
    double fm = -INFINITY, bm = -INFINITY, fs = 0, bs = 0, kl = 0;
    for (size_t j = r0; j < r0 + row; ++j) fm = std::max(fm, double(f[j])), bm = std::max(bm, double(b[j]));
    for (size_t j = r0; j < r0 + row; ++j) fs += std::exp(f[j] - fm), bs += std::exp(b[j] - bm);
    for (size_t j = r0; j < r0 + row; ++j) {
      const double p = std::exp(f[j] - fm) / fs + 1e-8, q = std::exp(b[j] - bm) / bs + 1e-8;
      kl += p * std::log(p / q);
    }
    for (size_t j = r0; j < r0 + row; ++j) imp[j] = std::fabs(f[j] - b[j]) * static_cast<float>(kl);
  }
  std::vector<float> sorted = imp;
  std::sort(sorted.begin(), sorted.end());
  const float thr = sorted[(n - 1) / 2] + 1.5f * (sorted[3 * (n - 1) / 4] - sorted[(n - 1) / 4]);
  Vec out(n);
  for (size_t i = 0; i < n; ++i) out[i] = b[i] + (f[i] - b[i]) * (imp[i] >= thr ? 1.0f : 0.0f);
  return out;
}

TEST_CASE("arcee_fusion: KL-weighted importance and an exact quartile threshold",
          "[merge][arcee_fusion]") {
  const size_t rows = 50, cols = 40;
  Values b(rows * cols), f(rows * cols);
  for (size_t i = 0; i < b.size(); ++i) {
    b[i] = std::sin(0.37f * float(i));
    // A few rows change a lot; most change a little.
    f[i] = b[i] + ((i / cols) % 7 == 0 ? 0.8f : 0.01f) * std::cos(1.3f * float(i));
  }
  alloy::testing::TempDir dir;
  auto got = RunRecipe(dir, "merge_method: arcee_fusion\nbase_model: $D/b\n" +
                                Models({"b", "f"}, {"", ""}),
                       {OneTensorModel("b", b, {int64_t(rows), int64_t(cols)}),
                        OneTensorModel("f", f, {int64_t(rows), int64_t(cols)})});
  INFO(got.status.ToString());
  REQUIRE(got.status.ok());
  const Values& v = got.values.at(kLayerWeight);
  const Vec want = ArceeRef(b, f, cols);
  size_t bad = 0, taken = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    bad += v[i] != static_cast<float>(want[i]);
    taken += v[i] != b[i];
  }
  CHECK(bad == 0);
  CHECK(taken > 0);
  CHECK(taken < v.size() / 2);
}

TEST_CASE("nuslerp, multislerp, karcher, model_stock: threads 1 and 2 write the same bytes",
          "[merge][determinism]") {
  alloy::testing::TempDir dir;
  const size_t n = 2 * kMergeChunkElems + 80;  // 16 rows of 8197: rows span chunks
  static_assert((2 * kMergeChunkElems + 80) % 16 == 0);
  std::vector<MiniModel> models;
  for (int m = 0; m < 4; ++m) {
    Values v(n);
    for (size_t i = 0; i < n; ++i) v[i] = std::sin(0.001f * float(i) * float(m + 1)) + 0.1f * float(m);
    models.push_back(OneTensorModel("m" + std::to_string(m), v, {16, static_cast<int64_t>(n / 16)}));
  }
  const std::string four = Models({"m0", "m1", "m2", "m3"}, {"weight: 0.1", "weight: 0.2", "weight: 0.3", "weight: 0.4"});
  const std::vector<std::string> recipes = {
      "merge_method: nuslerp\n" + Models({"m1", "m2"}, {"weight: 0.3", "weight: 0.7"}),
      "merge_method: nuslerp\nparameters: {nuslerp_flatten: false}\n" +
          Models({"m1", "m2"}, {"weight: 0.3", "weight: 0.7"}),
      "merge_method: nuslerp\nbase_model: $D/m0\nparameters: {nuslerp_flatten: false, "
      "nuslerp_row_wise: true}\n" + Models({"m0", "m1", "m2"}, {"", "weight: 0.3", "weight: 0.7"}),
      "merge_method: multislerp\nbase_model: $D/m0\n" + four,
      "merge_method: karcher\n" + Models({"m0", "m1", "m2"}, {"", "", ""}),
      "merge_method: model_stock\nbase_model: $D/m0\n" + Models({"m0", "m1", "m2", "m3"}, {"", "", "", ""}),
      "merge_method: arcee_fusion\nbase_model: $D/m0\n" + Models({"m0", "m1"}, {"", ""}),
  };
  testing_support::CheckThreadsAgree(dir, recipes, models, "s");
}

}  // namespace
}  // namespace alloy::merge

// nuslerp, multislerp, karcher and model_stock (mergekit-semantics.md
// §1.6–§1.9) as Gram-matrix methods (gram.h): each closed form below is
// mergekit's, rewritten on the dot products of the input vectors, because
// every vector it builds (unit vectors, means, tangents, the Karcher
// iterate) is a linear combination of the inputs. Scalars are float64.
#include <algorithm>
#include <cmath>
#include <string>

#include "merge/methods/gram.h"
#include "merge/methods/methods.h"

namespace alloy::merge::methods {
namespace {

using formats::Result;
using formats::Status;

// xᵀ G y for coefficient vectors over the Gram basis.
double Dot(const Gram& g, const std::vector<double>& x, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < g.n; ++i) {
    for (size_t j = 0; j < g.n; ++j) s += x[i] * g.at(i, j) * y[j];
  }
  return s;
}


// ---- nuslerp (§1.6) ----

class Nuslerp final : public GramMethod {
 protected:
  Result<Layout> Vectors(const TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    Layout layout;
    layout.vectors = NonBaseInputs(pass);
    layout.base = pass.base_input();
    if (layout.vectors.size() == 1) {  // one model present: itself
      layout.passthrough = static_cast<int>(layout.vectors[0]);
      return layout;
    }
    if (layout.vectors.size() != 2) {
      return Status::InvalidArgument("nuslerp: tensor '" + t.output_name + "' has " +
                                     std::to_string(layout.vectors.size()) +
                                     " models besides the base; nuslerp merges exactly two");
    }
    const bool flatten = Param(t.params, "nuslerp_flatten") != 0;
    const bool row_wise = Param(t.params, "nuslerp_row_wise") != 0;
    // row_wise transposes dims 0 and −1 first: the vectors run along dim 0.
    layout.per_row = !flatten && !row_wise && t.shape.size() > 1;
    layout.per_column = !flatten && row_wise && t.shape.size() > 1;
    const double w1 = Param(t.inputs[layout.vectors[0]].params, "weight");
    const double w2 = Param(t.inputs[layout.vectors[1]].params, "weight");
    t_ = std::fabs(w1 + w2) < 1e-6 ? 0.5 : w2 / (w1 + w2);
    return layout;
  }

  Result<Combination> Combine(const PlannedTensor&, const Gram& g) const override {
    const double n0 = std::max(std::sqrt(g.at(0, 0)), 1e-7);
    const double n1 = std::max(std::sqrt(g.at(1, 1)), 1e-7);
    const double theta = std::acos(std::clamp(g.at(0, 1) / (n0 * n1), -1.0, 1.0));
    const double s = std::sin(theta);
    Combination c;
    c.add_base = true;
    if (std::fabs(s) < 1e-8) {
      c.coefs = {1.0 - t_, t_};
    } else {
      c.coefs = {std::sin((1.0 - t_) * theta) / s, std::sin(t_ * theta) / s};
    }
    return c;
  }

 private:
  double t_ = 0.5;
};

// ---- multislerp (§1.7) ----

class Multislerp final : public GramMethod {
 public:
  Status Check(const MergePlan&, const PlannedTensor& t) const override {
    if (Param(t.params, "normalize_weights") == 0) return Status::OK();
    double sum = 0;
    size_t others = 0;
    for (const PlannedInput& in : t.inputs) {
      if (in.is_base) continue;
      sum += Param(in.params, "weight");
      ++others;
    }
    if (others > 1 && sum == 0) {
      return Status::InvalidArgument("multislerp: the weights of tensor '" + t.output_name +
                                     "' sum to 0, and normalize_weights divides by that sum; "
                                     "change the weights or set `normalize_weights: false`");
    }
    return Status::OK();
  }

 protected:
  Result<Layout> Vectors(const TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    Layout layout;
    layout.vectors = NonBaseInputs(pass);
    layout.base = pass.base_input();
    if (layout.vectors.size() == 1) {  // returned unchanged, base not added
      layout.passthrough = static_cast<int>(layout.vectors[0]);
      return layout;
    }
    weights_.clear();
    for (size_t i : layout.vectors) weights_.push_back(Param(t.inputs[i].params, "weight"));
    if (Param(t.params, "normalize_weights") != 0) {
      double sum = 0;
      for (double w : weights_) sum += w;
      for (double& w : weights_) w /= sum;
    }
    eps_ = Param(t.params, "eps");
    return layout;
  }

  Result<Combination> Combine(const PlannedTensor& t, const Gram& g) const override {
    const size_t n = g.n;
    std::vector<double> r(n), m(n, 0.0);
    for (size_t i = 0; i < n; ++i) {
      r[i] = std::sqrt(g.at(i, i));
      m[i] = weights_[i] / (r[i] + eps_);  // m = Σ wᵢ uᵢ, uᵢ = xᵢ / (rᵢ + eps)
    }
    Combination c;
    c.add_base = true;
    const double m_norm = std::sqrt(std::max(Dot(g, m, m), 0.0));
    if (m_norm < eps_) {
      if (n == 2) {
        c.coefs = weights_;
        return c;
      }
      return Status::InvalidArgument("multislerp: the models' vectors of tensor '" +
                                     t.output_name + "' cancel out (antipodal inputs)");
    }
    std::vector<double> mh(n);
    for (size_t i = 0; i < n; ++i) mh[i] = m[i] / m_norm;
    // τ = Σ wᵢ (uᵢ − (uᵢ·m̂) m̂).
    std::vector<double> gm(n, 0.0);  // G·m̂
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) gm[i] += g.at(i, j) * mh[j];
    }
    std::vector<double> tau(n, 0.0);
    for (size_t i = 0; i < n; ++i) {
      const double inv = 1.0 / (r[i] + eps_);
      const double proj = gm[i] * inv;  // uᵢ·m̂
      tau[i] += weights_[i] * inv;
      for (size_t j = 0; j < n; ++j) tau[j] -= weights_[i] * proj * mh[j];
    }
    const double a = std::sqrt(std::max(Dot(g, tau, tau), 0.0)) + eps_;
    double scale = 0;
    for (size_t i = 0; i < n; ++i) scale += weights_[i] * r[i];
    c.coefs.resize(n);
    for (size_t i = 0; i < n; ++i) {
      c.coefs[i] = (mh[i] * std::cos(a) + tau[i] * (std::sin(a) / a)) * scale;
    }
    return c;
  }

 private:
  std::vector<double> weights_;
  double eps_ = 1e-8;
};

// ---- karcher (§1.8) ----

class Karcher final : public GramMethod {
 protected:
  Result<Layout> Vectors(const TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    Layout layout;
    for (size_t i = 0; i < pass.num_inputs(); ++i) layout.vectors.push_back(i);  // base too
    max_iter_ = static_cast<int>(Param(t.params, "max_iter"));
    tol_ = Param(t.params, "tol");
    return layout;
  }

  Result<Combination> Combine(const PlannedTensor&, const Gram& g) const override {
    const size_t n = g.n;
    const double alpha = 1.0 / static_cast<double>(n);
    std::vector<double> norm(n);
    std::vector<size_t> valid;
    for (size_t i = 0; i < n; ++i) {
      norm[i] = std::sqrt(g.at(i, i));
      if (norm[i] > tol_) valid.push_back(i);
    }
    Combination c;
    c.coefs.assign(n, 0.0);
    if (valid.empty()) return c;  // zeros
    // Work in the basis of unit vectors uᵢ = xᵢ/nᵢ: Gu[i][j] = G[i][j]/(nᵢnⱼ).
    Gram gu;
    gu.n = n;
    gu.g.assign(n * n, 0.0);
    for (size_t i : valid) {
      for (size_t j : valid) gu.g[i * n + j] = g.at(i, j) / (norm[i] * norm[j]);
    }
    const double abar = 1.0 / static_cast<double>(valid.size());  // ᾱ renormalized
    std::vector<double> u(n, 0.0);
    for (size_t i : valid) u[i] = abar;
    double u_norm = std::sqrt(std::max(Dot(gu, u, u), 0.0));
    if (u_norm < tol_) {
      std::fill(u.begin(), u.end(), 0.0);
      u[valid[0]] = 1.0;
    } else {
      for (double& x : u) x /= u_norm;
    }
    for (int iter = 0; iter < max_iter_; ++iter) {
      std::vector<double> gu_u(n, 0.0);  // u·u_i
      for (size_t i : valid) {
        for (size_t j = 0; j < n; ++j) gu_u[i] += gu.at(i, j) * u[j];
      }
      std::vector<double> tv(n, 0.0);
      for (size_t i : valid) {
        const double cos_i = std::clamp(gu_u[i], -1.0, 1.0);
        const double theta = std::acos(cos_i);
        if (theta < tol_) continue;
        const double f = abar * theta / std::sin(theta);
        tv[i] += f;
        for (size_t j = 0; j < n; ++j) tv[j] -= f * cos_i * u[j];
      }
      const double t_norm = std::sqrt(std::max(Dot(gu, tv, tv), 0.0));
      if (t_norm < tol_) break;
      for (size_t j = 0; j < n; ++j) {
        u[j] = std::cos(t_norm) * u[j] + std::sin(t_norm) * tv[j] / t_norm;
      }
      u_norm = std::sqrt(std::max(Dot(gu, u, u), 0.0));
      if (u_norm > tol_) {
        for (double& x : u) x /= u_norm;
      }
    }
    double scale = 0;
    for (size_t i = 0; i < n; ++i) scale += alpha * norm[i];  // zero norms included
    for (size_t i : valid) c.coefs[i] = scale * u[i] / norm[i];
    return c;
  }

 private:
  int max_iter_ = 10;
  double tol_ = 1e-5;
};

// ---- model_stock (§1.9) ----

class ModelStock final : public GramMethod {
 public:
  Status Check(const MergePlan&, const PlannedTensor& t) const override {
    ALLOY_RETURN_IF_ERROR(RequireBase(t));
    if (t.inputs.size() == 2) {
      return Status::InvalidArgument(
          "model_stock: tensor '" + t.output_name +
          "' is in the base and only one other model; model_stock needs at least two others");
    }
    return Status::OK();
  }

 protected:
  Result<Layout> Vectors(const TensorPass& pass) override {
    const PlannedTensor& t = pass.tensor();
    Layout layout;
    layout.base = pass.base_input();
    layout.vectors = NonBaseInputs(pass);
    if (layout.vectors.empty()) {  // only the base
      layout.passthrough = layout.base;
      return layout;
    }
    layout.per_row = Param(t.params, "filter_wise") != 0 && t.shape.size() > 1;
    return layout;
  }

  Result<Combination> Combine(const PlannedTensor&, const Gram& g) const override {
    const size_t n = g.n;
    double sum = 0;
    size_t pairs = 0;
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = i + 1; j < n; ++j) {
        const double denom = std::max(std::sqrt(g.at(i, i)) * std::sqrt(g.at(j, j)), 1e-6);
        sum += std::clamp(g.at(i, j) / denom, -1.0, 1.0);
        ++pairs;
      }
    }
    const double cos = sum / static_cast<double>(pairs);
    const double nn = static_cast<double>(n);
    const double t = nn * cos / (1.0 + (nn - 1.0) * cos);
    // t·w_avg + (1 − t)·w0 = w0 + (t/N)·Σ dᵢ.
    Combination c;
    c.add_base = true;
    c.coefs.assign(n, t / nn);
    return c;
  }
};

}  // namespace

std::unique_ptr<MergeMethod> MakeNuslerp() { return std::make_unique<Nuslerp>(); }
std::unique_ptr<MergeMethod> MakeMultislerp() { return std::make_unique<Multislerp>(); }
std::unique_ptr<MergeMethod> MakeKarcher() { return std::make_unique<Karcher>(); }
std::unique_ptr<MergeMethod> MakeModelStock() { return std::make_unique<ModelStock>(); }

}  // namespace alloy::merge::methods

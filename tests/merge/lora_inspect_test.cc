// Tests for merge/lora_inspect: the spectrum of every module's ΔW = s·B·A
// against an SVD of the dense product, rsLoRA scales, and base checks.
#include "merge/lora_inspect.h"

#include <Eigen/Dense>
#include <cmath>
#include <string>

#include <catch2/catch.hpp>

#include "examples/tiny_models.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

examples::TinyModelSpec Llama() {
  return *examples::TinyModelPreset("tiny", examples::Family::kLlama);
}

// ΔW = scale · B·A of a module, dense, from the generator's values.
Eigen::MatrixXd DenseDelta(const examples::TinyLoraSpec& lora, const std::string& module,
                           int64_t out, int64_t in, double scale) {
  const std::string prefix = "base_model.model." + module;
  Eigen::MatrixXd b(out, lora.rank), a(lora.rank, in);
  for (int64_t i = 0; i < out; ++i) {
    for (int64_t k = 0; k < lora.rank; ++k) {
      b(i, k) = examples::TinyLoraValue(lora, prefix + ".lora_B.weight",
                                        static_cast<uint64_t>(i * lora.rank + k));
    }
  }
  for (int64_t k = 0; k < lora.rank; ++k) {
    for (int64_t j = 0; j < in; ++j) {
      a(k, j) = examples::TinyLoraValue(lora, prefix + ".lora_A.weight",
                                        static_cast<uint64_t>(k * in + j));
    }
  }
  return scale * b * a;
}

TEST_CASE("InspectLora spectra equal the SVD of the dense delta", "[lora]") {
  alloy::testing::TempDir dir;
  for (bool rslora : {false, true}) {
    examples::TinyLoraSpec lora;
    lora.rank = 6;
    lora.alpha = 12;
    lora.use_rslora = rslora;
    const std::string path = dir.Join(rslora ? "rs" : "plain");
    REQUIRE(examples::WriteTinyLoraAdapter(Llama(), lora, path).ok());
    auto report = InspectLora(path, std::nullopt);
    REQUIRE(report.ok());
    REQUIRE(report->modules.size() == 4);  // q_proj and v_proj of 2 layers
    CHECK(report->use_rslora == rslora);
    const double scale = rslora ? 12 / std::sqrt(6.0) : 2.0;
    for (const LoraModuleReport& m : report->modules) {
      CHECK(m.scale == Approx(scale));
      CHECK(m.rank == 6);
      const Eigen::MatrixXd delta = DenseDelta(lora, m.module, m.shape[0], m.shape[1], scale);
      const Eigen::VectorXd sv = Eigen::JacobiSVD<Eigen::MatrixXd>(delta).singularValues();
      REQUIRE(m.singular_values.size() == 6);
      double nuclear = 0;
      for (size_t i = 0; i < 6; ++i) {
        CHECK(m.singular_values[i] == Approx(sv(static_cast<Eigen::Index>(i))).epsilon(1e-9));
        nuclear += sv(static_cast<Eigen::Index>(i));
      }
      CHECK(m.frobenius == Approx(delta.norm()).epsilon(1e-9));
      CHECK(m.nuclear == Approx(nuclear).epsilon(1e-9));
      CHECK(m.effective_rank == Approx(nuclear * nuclear / delta.squaredNorm()).epsilon(1e-9));
      CHECK(m.effective_rank <= 6.0 + 1e-9);
      CHECK_FALSE(m.base_frobenius.has_value());
    }
  }
}

TEST_CASE("EnergyTopK is the share of the squared singular values", "[lora]") {
  CHECK(EnergyTopK({3, 4}, 1) == Approx(9.0 / 25));
  CHECK(EnergyTopK({3, 4}, 5) == 1);
  CHECK(EnergyTopK({}, 2) == 1);
}

TEST_CASE("InspectLora with a base reports relative norms and refuses a base that does not fit",
          "[lora]") {
  alloy::testing::TempDir dir;
  REQUIRE(examples::WriteTinyModel(Llama(), dir.Join("base")).ok());
  examples::TinyLoraSpec lora;
  REQUIRE(examples::WriteTinyLoraAdapter(Llama(), lora, dir.Join("adapter")).ok());
  auto report = InspectLora(dir.Join("adapter"), dir.Join("base"));
  REQUIRE(report.ok());
  for (const LoraModuleReport& m : report->modules) {
    REQUIRE(m.base_frobenius.has_value());
    CHECK(*m.base_frobenius > 0);
  }
  examples::TinyModelSpec wide = Llama();
  wide.hidden_size = 128;
  wide.intermediate_size = 256;
  REQUIRE(examples::WriteTinyModel(wide, dir.Join("wide")).ok());
  auto bad = InspectLora(dir.Join("adapter"), dir.Join("wide"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == formats::ErrorCode::kInvalidArgument);
  CHECK(bad.status().message().find("has shape [64, 64]") != std::string::npos);
  auto missing = InspectLora(dir.Join("nope"), std::nullopt);
  CHECK(missing.status().code() == formats::ErrorCode::kNotFound);
}

}  // namespace
}  // namespace alloy::merge

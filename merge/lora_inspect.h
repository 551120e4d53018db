// InspectLora: what a PEFT LoRA adapter does to its base, module by module
// (`alloy lora inspect`): rank, scale, and the spectrum of ΔW = s·B·A — its
// Frobenius and nuclear norms, effective rank (‖ΔW‖_*/‖ΔW‖_F)² and the energy
// in its top singular values. The spectrum is exact (kernels/lowrank.h: QR of
// the factors and the SVD of an r × r core), never a sketch.
//
// Thread safety: pure function of the files it reads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/lora_adapter.h"
#include "formats/path_guard.h"
#include "formats/status.h"

namespace alloy::merge {

struct LoraModuleReport {
  std::string module;     // model.layers.0.self_attn.q_proj
  std::string base_name;  // the base tensor it changes
  formats::LoraKind kind = formats::LoraKind::kLinear;
  std::vector<int64_t> shape;  // ΔW's shape as the base tensor holds it
  int64_t rank = 0;
  double alpha = 0;
  double scale = 0;
  std::vector<double> singular_values;  // of ΔW = s·B·A, descending (kBias: ‖s·bias‖)
  double frobenius = 0;                 // ‖ΔW‖_F
  double nuclear = 0;                   // ‖ΔW‖_* = Σσ
  double effective_rank = 0;            // (‖ΔW‖_*/‖ΔW‖_F)², 0 for a zero delta
  std::optional<double> base_frobenius;  // ‖W‖_F of the base tensor, with a base
};

struct LoraInspectReport {
  std::string directory;
  std::string base_model;  // adapter_config.json's base_model_name_or_path
  int64_t default_rank = 0;
  double default_alpha = 0;
  bool use_rslora = false;
  uint64_t n_parameters = 0;  // elements of every factor and saved module
  std::vector<LoraModuleReport> modules;   // adapter file order
  std::vector<std::string> modules_to_save;  // base tensors replaced whole
};

// The share of Σσ² in the first k singular values (1 for a zero delta).
double EnergyTopK(const std::vector<double>& singular_values, size_t k);

// Inspects the adapter in `adapter_dir`; with `base` (a model reference),
// also reads ‖W‖_F of every changed base tensor and checks the shapes fit.
// Fails with the adapter's or model's errors, or kInvalidArgument when a
// module's base tensor is missing or has another shape. `symlinks`: whether
// the adapter's and the base's files may be symlinks leading outside their
// directories (formats/path_guard.h).
formats::Result<LoraInspectReport> InspectLora(
    const std::string& adapter_dir, const std::optional<std::string>& base,
    formats::SymlinkPolicy symlinks = formats::SymlinkPolicy::kStayInside);

}  // namespace alloy::merge

// DescribePlan: the `alloy merge --dry-run` summary.
#include <map>

#include "formats/file_util.h"
#include "merge/plan.h"

namespace alloy::merge {

std::string DescribePlan(const MergePlan& plan) {
  std::string out = "method: " + plan.method + "\n";
  out += "models: " + std::to_string(plan.models.size()) + "\n";
  for (size_t model_idx = 0; model_idx < plan.models.size(); ++model_idx) {
    const PlannedModel& model = plan.models[model_idx];
    out += "  [" + std::to_string(model_idx) + "] " + model.ref.text;
    if (model.path != model.ref.text) out += " -> " + model.path;
    out += " (" + std::to_string(model.num_layers) + " layers, " +
           std::string(formats::DTypeName(model.stored_dtype));
    if (!model.architecture.empty()) out += ", " + model.architecture;
    if (model.is_base) out += ", base";
    if (model_idx == plan.config_donor) out += ", config donor";
    out += ")\n";
  }
  size_t n_inputs = 0;
  size_t n_copies = 0;
  for (const PlannedTensor& tensor : plan.tensors) {
    n_inputs += tensor.inputs.size();
    if (tensor.copy_only) ++n_copies;
  }
  out += "output: " + std::to_string(plan.tensors.size()) + " tensors (" +
         std::to_string(n_inputs) + " tensor reads";
  if (n_copies > 0) out += ", " + std::to_string(n_copies) + " copied unchanged";
  out += "), " + std::to_string(plan.num_layers) + " layers" +
         (plan.uses_slices ? " (num_hidden_layers rewritten)" : "") + ", " +
         formats::HumanBytes(static_cast<double>(plan.total_bytes)) + ", " +
         std::string(formats::DTypeName(plan.out_dtype)) + "\n";
  out += "tokenizer from: " + plan.tokenizer_directory + "\n";
  if (!plan.warnings.empty()) {
    out += "warnings: " + std::to_string(plan.warnings.size()) + "\n";
    for (const std::string& warning : plan.warnings) out += "  - " + warning + "\n";
  }
  return out;
}

}  // namespace alloy::merge

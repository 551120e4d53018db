#include "cli/generated_recipe.h"

#include "merge/model_opener.h"
#include "merge/plan.h"
#include "merge/recipe.h"
#include "merge/recipe_model_ref.h"

namespace alloy::cli {

using formats::Status;

std::string YamlScalar(const std::string& s) {
  bool plain = !s.empty() && s.find('/') != std::string::npos;
  for (size_t i = 0; i < s.size() && plain; ++i) {
    const char c = s[i];
    const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '/';
    plain = word || (i > 0 && (c == '-' || c == '@' || c == '+'));
  }
  if (plain) return s;
  std::string quoted = "'";
  for (char c : s) {
    quoted += c;
    if (c == '\'') quoted += '\'';
  }
  return quoted + "'";
}

formats::Result<ProbedModel> ProbeModel(const std::string& model,
                                        formats::SymlinkPolicy symlinks) {
  for (char c : model) {
    if (static_cast<unsigned char>(c) < 0x20) {
      return Status::InvalidArgument("MODEL must not contain control characters");
    }
  }
  formats::Result<merge::ModelRef> ref = merge::ParseModelRef(model);
  if (!ref.ok()) return ref.status().WithContext("MODEL '" + model + "'");
  merge::Recipe probe;
  probe.merge_method = "passthrough";
  merge::ModelEntry entry;
  entry.model = *ref;
  probe.models.push_back(std::move(entry));
  merge::DiskModelOpener opener({}, formats::FileAccess::kPread, 1.0, symlinks);
  // Opened first for the opener's own message; the plan reuses it.
  Status opened = opener.Open(*ref).status();
  if (!opened.ok()) {
    const std::string what = "model '" + model + "'";
    return opened.message().find(what) == std::string::npos ? opened.WithContext(what) : opened;
  }
  ALLOY_ASSIGN_OR_RETURN(merge::MergePlan plan,
                         merge::PlanMerge(probe, merge::PlanInputs{opener.AsOpener(), "", false}));
  return ProbedModel{plan.models.at(0).num_layers, plan.models.at(0).stored_dtype};
}


}  // namespace alloy::cli

// Fuzzes mergekit-moe recipe YAML: ParseMoeRecipeText (parse + validation
// only), with and without allow_all_same_experts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "merge/moe_recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  alloy::merge::MoeParseOptions options;
  options.allow_all_same_experts = size > 0 && (data[0] & 1);
  (void)alloy::merge::ParseMoeRecipeText(text, "fuzz-moe.yaml", options);
  return 0;
}

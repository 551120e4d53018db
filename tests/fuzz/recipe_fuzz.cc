// Fuzzes mergekit recipe YAML: ParseRecipeText (parse + static validation
// only), then MergeOrder and FormatWarning on what it accepts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "merge/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  alloy::formats::Result<alloy::merge::RecipeFile> parsed =
      alloy::merge::ParseRecipeText(text, "fuzz.yaml");
  if (!parsed.ok()) return 0;
  (void)alloy::merge::MergeOrder(*parsed);
  for (const auto& w : parsed->warnings) (void)alloy::merge::FormatWarning("fuzz.yaml", w);
  return 0;
}

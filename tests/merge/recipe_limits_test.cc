// Hostile recipes: the caps of merge/recipe_yaml.h (recipe bytes, YAML nodes
// in the text, nodes visited with aliases expanded, nesting depth) for both
// recipe readers, and document names that are paths. One test per refusal.
#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "merge/moe_recipe.h"
#include "merge/recipe.h"

namespace alloy::merge {
namespace {

using formats::ErrorCode;

constexpr const char* kLinear =
    "merge_method: linear\n"
    "models:\n"
    "  - model: a\n"
    "    parameters: {weight: 0.5}\n"
    "  - model: b\n"
    "    parameters: {weight: 0.5}\n";

constexpr const char* kMoe =
    "base_model: base\n"
    "gate_mode: random\n"
    "experts:\n"
    "  - source_model: a\n"
    "  - source_model: b\n";

// Anchors nested `levels` deep, each level a list aliasing the previous one
// `fanout` times: fanout^levels leaves once expanded.
std::string Laughs(int levels, int fanout) {
  std::string out = "l0: &l0 [lol";
  for (int i = 1; i < fanout; ++i) out += ", lol";
  out += "]\n";
  for (int level = 1; level < levels; ++level) {
    const std::string prev = "*l" + std::to_string(level - 1);
    out += "l" + std::to_string(level) + ": &l" + std::to_string(level) + " [" + prev;
    for (int i = 1; i < fanout; ++i) out += ", " + prev;
    out += "]\n";
  }
  return out;
}

void ExpectRefused(const formats::Status& st, std::string_view substring) {
  INFO(st.ToString());
  REQUIRE_FALSE(st.ok());
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::StartsWith("recipe.yaml:"));
  CHECK_THAT(st.message(), Catch::Contains(std::string(substring)));
}

formats::Status Merge(const std::string& text) {
  return ParseRecipeText(text, "recipe.yaml").status();
}

formats::Status Moe(const std::string& text) {
  return ParseMoeRecipeText(text, "recipe.yaml").status();
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The time bound is about work not growing with the expansion (10^10 nodes
// would take hours); ThreadSanitizer (make test-tsan) runs this code 5-15x slower.
#if defined(__SANITIZE_THREAD__)
constexpr double kSecondBound = 5.0;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr double kSecondBound = 5.0;
#else
constexpr double kSecondBound = 1.0;
#endif
#else
constexpr double kSecondBound = 1.0;
#endif

TEST_CASE("a billion-laughs recipe is refused in well under a second", "[merge][recipe][limits]") {
  const std::string laughs = Laughs(10, 10);  // 10^10 nodes expanded
  auto start = std::chrono::steady_clock::now();
  ExpectRefused(Merge(std::string(kLinear) + laughs), "expands to more than 1000000 YAML nodes");
  CHECK(SecondsSince(start) < kSecondBound);
  start = std::chrono::steady_clock::now();
  ExpectRefused(Moe(std::string(kMoe) + laughs), "expands to more than 1000000 YAML nodes");
  CHECK(SecondsSince(start) < kSecondBound);
}

TEST_CASE("a small alias expansion is still read", "[merge][recipe][limits]") {
  // 10^4 leaves: well under the cap, so only the unknown keys are warned about.
  formats::Result<RecipeFile> parsed =
      ParseRecipeText(std::string(kLinear) + Laughs(4, 10), "recipe.yaml");
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  CHECK(parsed->warnings.size() == 4);
  // Anchors for repeated parameters, as people write them.
  parsed = ParseRecipeText(
      "merge_method: linear\n"
      "models:\n"
      "  - model: a\n"
      "    parameters: &half {weight: 0.5}\n"
      "  - model: b\n"
      "    parameters: *half\n",
      "recipe.yaml");
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  CHECK(parsed->documents[0].models.size() == 2);
}

TEST_CASE("an anchor that contains its own alias is refused", "[merge][recipe][limits]") {
  // yaml-cpp builds a cycle; the walk stops at the depth cap.
  ExpectRefused(Merge(std::string(kLinear) + "loop: &loop [x, *loop]\n"),
                "YAML nesting deeper than 64 levels");
  ExpectRefused(Moe(std::string(kMoe) + "loop: &loop {k: *loop}\n"),
                "YAML nesting deeper than 64 levels");
}

TEST_CASE("YAML text nesting deeper than 64 levels is refused", "[merge][recipe][limits]") {
  // The document's mapping is level 1; 63 lists under it reach 64.
  const std::string at_cap = "x: " + std::string(63, '[') + std::string(63, ']') + "\n";
  formats::Status st = Merge(std::string(kLinear) + at_cap);
  INFO(st.ToString());
  CHECK(st.ok());
  const std::string deep = "x: " + std::string(64, '[') + std::string(64, ']') + "\n";
  ExpectRefused(Merge(std::string(kLinear) + deep), "YAML nesting deeper than 64 levels");
  ExpectRefused(Moe(std::string(kMoe) + deep), "YAML nesting deeper than 64 levels");
  std::string maps = "x:\n";
  for (int i = 0; i < 70; ++i) maps += std::string(2 * static_cast<size_t>(i) + 2, ' ') + "k:\n";
  ExpectRefused(Merge(std::string(kLinear) + maps), "YAML nesting deeper than 64 levels");
  // 100,000 levels would overflow the stack of a recursive reader.
  const std::string abyss = "x: " + std::string(100000, '[') + std::string(100000, ']') + "\n";
  ExpectRefused(Merge(std::string(kLinear) + abyss), "YAML nesting deeper than 64 levels");
}

TEST_CASE("aliases nesting deeper than 64 levels are refused", "[merge][recipe][limits]") {
  // Each level is shallow in the text but one level deeper once expanded.
  std::string chain = "a0: &a0 [x]\n";
  for (int i = 1; i < 70; ++i) {
    chain += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) +
             "]\n";
  }
  ExpectRefused(Merge(std::string(kLinear) + chain), "YAML nesting deeper than 64 levels");
  ExpectRefused(Moe(std::string(kMoe) + chain), "YAML nesting deeper than 64 levels");
}

TEST_CASE("more than 100000 YAML nodes in the text are refused", "[merge][recipe][limits]") {
  std::string wide = "x: [";
  for (int i = 0; i < 100001; ++i) wide += "1,";
  wide += "1]\n";
  const auto start = std::chrono::steady_clock::now();
  ExpectRefused(Merge(std::string(kLinear) + wide), "holds more than 100000 YAML nodes");
  ExpectRefused(Moe(std::string(kMoe) + wide), "holds more than 100000 YAML nodes");
  CHECK(SecondsSince(start) < 2.0);  // refused by the pass that builds nothing
}

TEST_CASE("a recipe over 1 MiB is refused unread", "[merge][recipe][limits]") {
  const std::string big = std::string(kLinear) + "# " + std::string(size_t{1} << 20, 'x') + "\n";
  ExpectRefused(Merge(big), "more than the limit of 1048576");
  ExpectRefused(Moe(std::string(kMoe) + "# " + std::string(size_t{1} << 20, 'x') + "\n"),
                "more than the limit of 1048576");
}

TEST_CASE("a document name that is a path is refused", "[merge][recipe][limits]") {
  for (const std::string name : {"../escape", "/tmp/x", "a/b", "..", ".", "a\\\\b"}) {
    INFO(name);
    const std::string text = "name: \"" + name + "\"\n" + kLinear + "---\n" + kLinear;
    ExpectRefused(Merge(text), "is a path, not a name");
  }
  // Plain names, dots inside included, are fine.
  formats::Status st = Merge(std::string("name: stage.1\n") + kLinear + "---\n" + kLinear);
  INFO(st.ToString());
  CHECK(st.ok());
}

}  // namespace
}  // namespace alloy::merge

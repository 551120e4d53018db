#include "merge/moe_recipe.h"

#include <catch2/catch.hpp>
#include <string>

namespace alloy::merge {
namespace {

using formats::ErrorCode;

constexpr std::string_view kTwoExperts = R"(base_model: org/base
gate_mode: cheap_embed
dtype: bfloat16
experts_per_token: 2
experts:
  - source_model: org/code
    positive_prompts: ["code", "python"]
    negative_prompts: ["poem"]
    noise_scale: 0.1
  - source_model: org/chat
    positive_prompts:
      - "chat"
)";

void ExpectMoeError(std::string_view text, int line, std::string_view substring,
                    const MoeParseOptions& options = {}) {
  formats::Result<MoeRecipe> parsed = ParseMoeRecipeText(text, "moe.yaml", options);
  REQUIRE(!parsed.ok());
  INFO(parsed.status().ToString());
  CHECK(parsed.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(parsed.status().message(),
             Catch::StartsWith("moe.yaml:" + std::to_string(line) + ":"));
  CHECK_THAT(parsed.status().message(), Catch::Contains(std::string(substring)));
}

TEST_CASE("ParseMoeRecipeText reads the mergekit-moe schema", "[merge][recipe][moe]") {
  formats::Result<MoeRecipe> parsed =
      ParseMoeRecipeText(std::string(kTwoExperts) + "extra: 1\n", "moe.yaml");
  INFO((parsed.ok() ? std::string("ok") : parsed.status().ToString()));
  REQUIRE(parsed.ok());
  CHECK(parsed->base_model.path == "org/base");
  CHECK(parsed->gate_mode == "cheap_embed");
  CHECK(parsed->dtype == formats::DType::kBF16);
  CHECK(parsed->experts_per_token == 2);
  REQUIRE(parsed->experts.size() == 2);
  CHECK(parsed->experts[0].positive_prompts == std::vector<std::string>{"code", "python"});
  CHECK(parsed->experts[0].negative_prompts == std::vector<std::string>{"poem"});
  CHECK(parsed->experts[0].noise_scale == 0.1);
  CHECK(parsed->experts[1].line == 10);
  REQUIRE(parsed->warnings.size() == 1);
  CHECK(parsed->warnings[0].line == 13);
}

TEST_CASE("moe error: more experts per token than experts", "[merge][recipe][moe]") {
  ExpectMoeError(
      "base_model: b\nexperts_per_token: 3\nexperts:\n"
      "  - {source_model: a, positive_prompts: [x]}\n",
      3, "1 experts but `experts_per_token` is 3");
}

TEST_CASE("moe error: experts_per_token below 1", "[merge][recipe][moe]") {
  ExpectMoeError(
      "base_model: b\nexperts_per_token: 0\nexperts:\n"
      "  - {source_model: a, positive_prompts: [x]}\n",
      2, "`experts_per_token` must be at least 1");
}

TEST_CASE("moe error: an expert without positive prompts", "[merge][recipe][moe]") {
  const std::string text =
      "base_model: b\nexperts:\n  - {source_model: a, positive_prompts: [x]}\n"
      "  - source_model: c\n";
  ExpectMoeError(text, 4, "expert `c` has no `positive_prompts`");
  REQUIRE(ParseMoeRecipeText(text + "gate_mode: random\n", "moe.yaml").ok());
}

TEST_CASE("moe error: identical prompts for every expert", "[merge][recipe][moe]") {
  ExpectMoeError(
      "base_model: b\nexperts:\n  - {source_model: a, positive_prompts: ['']}\n"
      "  - {source_model: c, positive_prompts: ['']}\n",
      2, "every expert has the same prompts");
}

TEST_CASE("moe error: every expert is the same model", "[merge][recipe][moe]") {
  const std::string text =
      "base_model: b\nexperts:\n  - {source_model: a, positive_prompts: [x]}\n"
      "  - {source_model: ./a, positive_prompts: [y]}\n";
  ExpectMoeError(text, 3, "every expert is the same model `a`");
  MoeParseOptions allow;
  allow.allow_all_same_experts = true;
  REQUIRE(ParseMoeRecipeText(text, "moe.yaml", allow).ok());
}

TEST_CASE("moe error: unknown gate_mode", "[merge][recipe][moe]") {
  ExpectMoeError("gate_mode: learned\nbase_model: b\n", 1, "unknown `gate_mode` 'learned'");
}

TEST_CASE("moe error: no base model", "[merge][recipe][moe]") {
  ExpectMoeError("experts:\n  - {source_model: a, positive_prompts: [x]}\n", 1,
                 "needs `base_model:`");
}

TEST_CASE("moe error: an expert without source_model", "[merge][recipe][moe]") {
  ExpectMoeError("base_model: b\nexperts:\n  - positive_prompts: [x]\n", 3,
                 "an expert needs `source_model:`");
}

TEST_CASE("moe error: text yaml-cpp loops on is refused", "[merge][recipe][moe]") {
  ExpectMoeError(",\n", 1, "does not get past this text");
}

TEST_CASE("moe error: YAML syntax error", "[merge][recipe][moe]") {
  ExpectMoeError("base_model: b\nexperts: [\n", 3, "YAML syntax error");
}

}  // namespace
}  // namespace alloy::merge

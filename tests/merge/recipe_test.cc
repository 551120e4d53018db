#include "merge/recipe.h"

#include <catch2/catch.hpp>
#include <string>

#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

using formats::ErrorCode;

RecipeFile MustParse(std::string_view text) {
  formats::Result<RecipeFile> parsed = ParseRecipeText(text, "recipe.yaml");
  INFO((parsed.ok() ? std::string("ok") : parsed.status().ToString()));
  REQUIRE(parsed.ok());
  return std::move(parsed).value();
}

Recipe MustParseOne(std::string_view text) {
  RecipeFile file = MustParse(text);
  REQUIRE(file.documents.size() == 1);
  return std::move(file.documents.front());
}

// Asserts a refusal with `code` whose message names "recipe.yaml:<line>:" and
// contains `substring`.
void ExpectError(std::string_view text, ErrorCode code, int line, std::string_view substring) {
  formats::Result<RecipeFile> parsed = ParseRecipeText(text, "recipe.yaml");
  REQUIRE(!parsed.ok());
  INFO(parsed.status().ToString());
  CHECK(parsed.status().code() == code);
  CHECK_THAT(parsed.status().message(),
             Catch::StartsWith("recipe.yaml:" + std::to_string(line) + ":"));
  CHECK_THAT(parsed.status().message(), Catch::Contains(std::string(substring)));
}

void ExpectInvalid(std::string_view text, int line, std::string_view substring) {
  ExpectError(text, ErrorCode::kInvalidArgument, line, substring);
}

bool HasWarning(const RecipeFile& file, int line, std::string_view substring) {
  for (const Warning& w : file.warnings) {
    if (w.line == line && w.message.find(substring) != std::string::npos) return true;
  }
  return false;
}

constexpr std::string_view kLinear = R"(merge_method: linear
models:
  - model: a
    parameters:
      weight: 0.5
  - model: b
    parameters:
      weight: 0.5
)";

// ---- model references (§2.2) ----

TEST_CASE("ParseModelRef splits path, revision and LoRA", "[merge][recipe]") {
  auto plain = ParseModelRef("org/name");
  REQUIRE(plain.ok());
  CHECK(plain->path == "org/name");
  CHECK(plain->revision.empty());
  CHECK(!plain->has_lora());

  auto full = ParseModelRef("org/model@v2+org/adapter@main");
  REQUIRE(full.ok());
  CHECK(full->text == "org/model@v2+org/adapter@main");
  CHECK(full->path == "org/model");
  CHECK(full->revision == "v2");
  CHECK(full->lora_path == "org/adapter");
  CHECK(full->lora_revision == "main");

  auto lora = ParseModelRef("/m/base+/m/lora");
  REQUIRE(lora.ok());
  CHECK(lora->path == "/m/base");
  CHECK(lora->lora_path == "/m/lora");
}

TEST_CASE("ParseModelRef refuses malformed references", "[merge][recipe]") {
  CHECK(ParseModelRef("a+b+c").status().message().find("more than one '+'") != std::string::npos);
  CHECK(ParseModelRef("a@1@2").status().message().find("more than one '@'") != std::string::npos);
  CHECK(ParseModelRef("  ").status().code() == ErrorCode::kInvalidArgument);
  CHECK(ParseModelRef("a@").status().message().find("empty revision") != std::string::npos);
  CHECK(ParseModelRef("+lora").status().message().find("empty path") != std::string::npos);
}

TEST_CASE("ApplyPathMap normalises backslashes and replaces the longest prefix",
          "[merge][recipe]") {
  const std::vector<std::pair<std::string, std::string>> map = {
      {"D:\\Uni", "/data/uni"}, {"D:/Uni/Masterarbeit Code", "/data/thesis"}, {"E:/m", "/x"}};
  auto ref = ParseModelRef("D:\\Uni\\Masterarbeit Code\\model_2+E:\\m\\lora");
  REQUIRE(ref.ok());
  ApplyPathMap(*ref, map);
  CHECK(ref->path == "/data/thesis/model_2");
  CHECK(ref->lora_path == "/x/lora");
  CHECK(ref->text == "D:\\Uni\\Masterarbeit Code\\model_2+E:\\m\\lora");

  auto other = ParseModelRef("D:/University/m");  // not at a component boundary
  REQUIRE(other.ok());
  ApplyPathMap(*other, map);
  CHECK(other->path == "D:/University/m");

  auto exact = ParseModelRef("E:/m");
  REQUIRE(exact.ok());
  ApplyPathMap(*exact, map);
  CHECK(exact->path == "/x");
}

TEST_CASE("ModelKey treats different spellings of one directory as one model (Decision h)",
          "[merge][recipe]") {
  auto key = [](std::string_view s) { return ModelKey(*ParseModelRef(s)); };
  CHECK(key("//home/a/m") == key("/home/a/m"));
  CHECK(key("/home/alpha//Storage/m/") == key("/home/alpha/Storage/m"));
  CHECK(key("E:\\a\\m") == key("E:/a/m"));
  CHECK(key("./m") == key("m"));
  CHECK(key("org/m@v1") != key("org/m"));
}

// ---- parameter values (§2.3–2.5) ----

TEST_CASE("EvaluateGradient interpolates as mergekit does", "[merge][recipe]") {
  const std::vector<double> g = {0, 0.5, 0.3, 0.7, 1};
  CHECK(EvaluateGradient(g, 0.0) == 0.0);
  CHECK(EvaluateGradient(g, 1.0) == 1.0);
  CHECK(EvaluateGradient(g, 0.5) == 0.3);
  CHECK(EvaluateGradient(g, 0.125) == Approx(0.25));
  CHECK(EvaluateGradient({0.55}, 0.7) == 0.55);
  // Layer k of an L-layer slice: t = k/(L-1), s = t*(m-1), then the same
  // double arithmetic as the Python reference.
  const std::vector<double> two = {0.65, 0.35};
  for (int k = 0; k < 40; ++k) {
    const double t = static_cast<double>(k) / 39.0;
    const double s = t * 1.0;
    const double i0 = std::floor(s);
    const double frac = s - i0;
    const double expected = (1 - frac) * two[static_cast<size_t>(i0)] +
                            frac * two[std::min<size_t>(1, static_cast<size_t>(i0) + 1)];
    CHECK(EvaluateGradient(two, t) == expected);
  }
}

TEST_CASE("EvaluateSetting picks the first matching filter", "[merge][recipe]") {
  const Recipe r = MustParseOne(R"(merge_method: slerp
base_model: a
models: [{model: a}, {model: b}]
parameters:
  t:
    - filter: self_attn
      value: [0, 1]
    - filter: layers.1
      value: 0.9
    - value: 0.5
)");
  const ParamSetting& t = r.parameters.at("t");
  REQUIRE(t.kind == ParamSetting::Kind::kConditional);
  REQUIRE(t.entries.size() == 3);
  CHECK(t.entries[2].line == 10);
  CHECK(*EvaluateSetting(t, "model.layers.3.self_attn.q_proj.weight", 1.0) == 1.0);
  CHECK(*EvaluateSetting(t, "model.layers.3.self_attn.q_proj.weight", 0.0) == 0.0);
  // §2.4: substring, so `layers.1` also matches layer 10.
  CHECK(*EvaluateSetting(t, "model.layers.10.mlp.up_proj.weight", 0.0) == 0.9);
  CHECK(*EvaluateSetting(t, "model.norm.weight", 0.0) == 0.5);
  CHECK(*EvaluateSetting(t, "", 0.0) == 0.5);

  ParamSetting only_filters = t;
  only_filters.entries.pop_back();
  CHECK(!EvaluateSetting(only_filters, "lm_head.weight", 0.0).has_value());
  CHECK(!EvaluateSetting(only_filters, "", 0.0).has_value());  // empty name never matches
  only_filters.entries[0].filter = "*";
  CHECK(*EvaluateSetting(only_filters, "", 0.0) == 0.0);
}

TEST_CASE("ResolveParameter follows mergekit's precedence", "[merge][recipe]") {
  ParamMap first_source;
  ParamMap second_source = {{"density", ParamSetting::Scalar(0.7)}};
  ParamMap slice = {{"weight", ParamSetting::Gradient({0.9, 0.1})}};
  ParamMap module = {{"weight", ParamSetting::Scalar(0.3)}, {"lambda", ParamSetting::Scalar(2)}};
  ParamMap global = {{"weight", ParamSetting::Scalar(0.8)},
                     {"density", ParamSetting::Scalar(0.4)},
                     {"epsilon", ParamSetting::Scalar(0.1)}};
  // A source filter that does not match falls through to the next level.
  ParamSetting filtered;
  filtered.kind = ParamSetting::Kind::kConditional;
  filtered.entries.push_back({std::string("mlp"), NumericSetting{false, {0.25}}, 0});
  first_source.emplace("epsilon", filtered);

  ParamScope scope{{&first_source, &second_source}, &slice, &module, &global};
  CHECK(*ResolveModelParameter(scope, "density", "layers.0.self_attn.q", 0) == 0.7);
  CHECK(*ResolveModelParameter(scope, "weight", "layers.0.self_attn.q", 1.0) == 0.1);
  CHECK(*ResolveModelParameter(scope, "epsilon", "layers.0.mlp.up", 0) == 0.25);
  CHECK(*ResolveModelParameter(scope, "epsilon", "layers.0.self_attn.q", 0) == 0.1);
  CHECK(*ResolveModelParameter(scope, "lambda", "x", 0) == 2);
  CHECK(!ResolveModelParameter(scope, "gamma", "x", 0).has_value());
  // Method-global parameters never read the source level.
  CHECK(*ResolveGlobalParameter(scope, "density", "layers.0.self_attn.q", 0) == 0.4);
  scope.slice = nullptr;
  scope.module = nullptr;
  CHECK(*ResolveParameter(scope, "weight", "x", 0) == 0.8);
}

TEST_CASE("Scalars are read leniently, as mergekit's pydantic floats", "[merge][recipe]") {
  const Recipe r = MustParseOne(R"(merge_method: ties
base_model: base
models:
  - model: a
    parameters: {weight: .5, density: 1}
parameters:
  normalize: true
  int8_mask: no
  rescale: "0.25"
  lambda: 1e-3
  gamma: 0x10
  epsilon: 1_000
)");
  auto value = [&](const ParamMap& m, const char* name) { return m.at(name).numeric.values.at(0); };
  CHECK(value(r.models[0].parameters, "weight") == 0.5);
  CHECK(value(r.models[0].parameters, "density") == 1.0);
  CHECK(value(r.parameters, "normalize") == 1.0);
  CHECK(value(r.parameters, "int8_mask") == 0.0);
  CHECK(value(r.parameters, "rescale") == 0.25);
  CHECK(value(r.parameters, "lambda") == 0.001);
  CHECK(value(r.parameters, "gamma") == 16.0);
  CHECK(value(r.parameters, "epsilon") == 1000.0);
  CHECK(r.parameters.at("lambda").line == 10);
}

// ---- the data model ----

TEST_CASE("models: syntax keeps every field and the raw text", "[merge][recipe]") {
  const std::string text = std::string("# comment\n") + R"(merge_method: task_arithmetic
base_model: org/base
models:
  - model: org/base
  - model: org/a
    parameters:
      weight: [1, 0.5]
dtype: bfloat16
out_dtype: torch.float16
chat_template: chatml
tokenizer_source: base
)";
  const RecipeFile file = MustParse(text);
  const Recipe& r = file.documents.at(0);
  CHECK(r.merge_method == "task_arithmetic");
  REQUIRE(r.base_model.has_value());
  CHECK(r.base_model->path == "org/base");
  CHECK(r.base_model->line == 3);
  REQUIRE(r.models.size() == 2);
  CHECK(r.models[1].model.path == "org/a");
  CHECK(r.models[1].line == 6);
  CHECK(r.models[1].parameters.at("weight").kind == ParamSetting::Kind::kGradient);
  CHECK(r.dtype == formats::DType::kBF16);
  CHECK(r.out_dtype == formats::DType::kF16);
  CHECK(r.chat_template == "chatml");
  CHECK(r.tokenizer.source == TokenizerSpec::Source::kBase);
  CHECK(r.raw_text == text);
  CHECK(r.first_line == 1);
  CHECK(file.warnings.empty());
}

TEST_CASE("slices: syntax reads half-open layer ranges and per-level parameters",
          "[merge][recipe]") {
  const Recipe r = MustParseOne(R"(merge_method: linear
parameters:
  weight: 0.8
slices:
  - sources:
      - model: "D:/a b/m1"
        layer_range: [0, 16]
        parameters:
          weight: 0.2
      - model: m2
        layer_range: [16.0, 32]
    parameters:
      weight: [0.9, 0.1]
    base_model: m2
  - sources:
    - layer_range:
      - 31
      - 32
      model: m2
)");
  REQUIRE(r.slices.size() == 2);
  const Slice& s0 = r.slices[0];
  REQUIRE(s0.sources.size() == 2);
  CHECK(s0.sources[0].model.path == "D:/a b/m1");
  CHECK(s0.sources[0].layer_begin == 0);
  CHECK(s0.sources[0].layer_end == 16);
  CHECK(s0.sources[1].layer_begin == 16);
  CHECK(s0.sources[0].parameters.count("weight") == 1);
  CHECK(s0.parameters.at("weight").numeric.values == std::vector<double>{0.9, 0.1});
  REQUIRE(s0.base_model.has_value());
  CHECK(s0.base_model->path == "m2");
  CHECK(r.slices[1].sources[0].layer_begin == 31);
  CHECK(r.slices[1].sources[0].layer_end == 32);
}

TEST_CASE("modules: syntax is parsed and kept", "[merge][recipe]") {
  const Recipe r = MustParseOne(R"(merge_method: slerp
base_model: a
modules:
  default:
    parameters:
      t: 0.5
    slices:
      - sources:
          - {model: a, layer_range: [0, 2]}
          - {model: b, layer_range: [0, 2]}
)");
  REQUIRE(r.modules.size() == 1);
  CHECK(r.modules[0].name == "default");
  CHECK(r.modules[0].slices.size() == 1);
  CHECK(r.modules[0].parameters.count("t") == 1);
}

TEST_CASE("tokenizer forms and dict model references are parsed", "[merge][recipe]") {
  const Recipe by_model = MustParseOne(std::string(kLinear) + "tokenizer_source: org/tok@v1\n");
  CHECK(by_model.tokenizer.source == TokenizerSpec::Source::kModel);
  CHECK(by_model.tokenizer.model.path == "org/tok");
  CHECK(by_model.tokenizer.model.revision == "v1");

  const Recipe block =
      MustParseOne(std::string(kLinear) + "tokenizer:\n  source: base\n  pad_to_multiple_of: 64\n");
  CHECK(block.tokenizer.source == TokenizerSpec::Source::kBase);
  CHECK(block.tokenizer.pad_to_multiple_of == 64);

  const Recipe dict = MustParseOne(R"(merge_method: passthrough
models:
  - model:
      model: {path: org/m, revision: main}
      lora: {path: org/l}
      override_architecture: MistralForCausalLM
)");
  const ModelRef& ref = dict.models.at(0).model;
  CHECK(ref.path == "org/m");
  CHECK(ref.revision == "main");
  CHECK(ref.lora_path == "org/l");
  CHECK(ref.override_architecture == "MistralForCausalLM");
  CHECK(ref.text == "org/m@main+org/l");
}

TEST_CASE("multi-document files: names, references and merge order", "[merge][recipe]") {
  const RecipeFile file = MustParse(R"(merge_method: linear
models:
  - {model: final-input, parameters: {weight: 1}}
  - {model: stage2, parameters: {weight: 1}}
name: stage1
---
name: stage2
merge_method: passthrough
models:
  - model: org/x
---
merge_method: linear
models:
  - {model: stage1, parameters: {weight: 1}}
  - {model: stage2+org/lora, parameters: {weight: 1}}
)");
  REQUIRE(file.documents.size() == 3);
  CHECK(file.documents[1].first_line == 7);
  CHECK(file.documents[1].raw_text.rfind("name: stage2\n", 0) == 0);
  CHECK(file.documents[0].depends_on == std::vector<size_t>{1});
  CHECK(file.documents[2].depends_on == std::vector<size_t>{0, 1});
  CHECK(file.documents[2].models[1].model.intermediate == "stage2");
  auto order = MergeOrder(file);
  REQUIRE(order.ok());
  CHECK(*order == std::vector<size_t>{1, 0, 2});
}

TEST_CASE("document markers, CRLF line ends and comment-only documents", "[merge][recipe]") {
  const RecipeFile file = MustParse(
      "# header\r\n---\r\nmerge_method: passthrough\r\nmodels:\r\n  - model: a\r\n...\r\n"
      "# trailing comment\r\n");
  REQUIRE(file.documents.size() == 1);
  CHECK(file.documents[0].first_line == 3);
  CHECK(file.documents[0].models.at(0).model.path == "a");
  CHECK(file.documents[0].models.at(0).line == 5);
}

TEST_CASE("a slice's own base_model needs no weight", "[merge][recipe]") {
  const Recipe r = MustParseOne(R"(merge_method: ties
slices:
  - base_model: b
    sources:
      - {model: b, layer_range: [0, 2]}
      - {model: a, layer_range: [0, 2], parameters: {weight: 1}}
)");
  CHECK(r.slices.at(0).base_model->path == "b");
}

TEST_CASE("unknown keys are warnings with their line (Decision e)", "[merge][recipe]") {
  const RecipeFile file = MustParse(std::string(kLinear) + R"(embed_slerp: true
int8_mask: true
)");
  CHECK(HasWarning(file, 9, "unknown top-level key `embed_slerp` is ignored"));
  CHECK(HasWarning(file, 10, "probably belongs under `parameters:`"));
  CHECK(FormatWarning("r.yaml", file.warnings.at(0)) ==
        "r.yaml:9:1: warning: unknown top-level key `embed_slerp` is ignored");

  const RecipeFile nested = MustParse(R"(merge_method: linear
models:
  - model: a
    note: hi
    parameters:
      weight: 1
      wieght: 2
)");
  CHECK(HasWarning(nested, 4, "unknown key `note` in a `models:` entry"));
  CHECK(HasWarning(nested, 7, "`wieght` is not read by any mergekit method"));
}

TEST_CASE("parameters the method does not read are warnings", "[merge][recipe]") {
  const RecipeFile file = MustParse(R"(merge_method: linear
models:
  - model: a
    parameters:
      weight: 1
      density: 0.5
parameters:
  normalize: true
  t: 0.3
)");
  CHECK(HasWarning(file, 6,
                   "parameter `density` is not used by `linear` (it reads: normalize "
                   "weight); it is ignored"));
  CHECK(HasWarning(file, 9, "parameter `t` is not used by `linear`"));
  CHECK(file.warnings.size() == 2);
  const RecipeFile karcher = MustParse(
      "merge_method: karcher\nmodels:\n  - model: a\n"
      "    parameters: {weight: 1}\n");
  CHECK(HasWarning(karcher, 4, "`weight` is not used by `karcher`"));
}

TEST_CASE("slerp with a base outside the sources warns (Decision i)", "[merge][recipe]") {
  const RecipeFile file = MustParse(R"(merge_method: slerp
base_model: other
slices:
  - sources:
      - {model: a, layer_range: [0, 4]}
      - {model: b, layer_range: [0, 4]}
parameters:
  t: 0.5
)");
  CHECK(HasWarning(file, 2, "alloy uses the first one, `a`, as the base"));
}

TEST_CASE("KnownMergeMethods lists mergekit's 20 methods", "[merge][recipe]") {
  const auto& names = KnownMergeMethods();
  CHECK(names.size() == 20);
  CHECK(std::find(names.begin(), names.end(), "della_linear") != names.end());
  CHECK(std::find(names.begin(), names.end(), "della_ties") == names.end());
}

// ---- errors: one test per path ----

TEST_CASE("error: text yaml-cpp loops on is refused (fuzz regressions)", "[merge][recipe]") {
  // yaml-cpp 0.7's LoadAll never returns on these (tests/fuzz/regressions).
  ExpectInvalid(",\n", 1, "does not get past this text");
  ExpectInvalid("!a ,\n", 1, "does not get past this text");
}

TEST_CASE("error: YAML syntax error names yaml-cpp's position", "[merge][recipe]") {
  ExpectInvalid("merge_method: linear\nmodels: [a, b\n", 3, "YAML syntax error");
}

TEST_CASE("error: top-level keys in different columns", "[merge][recipe]") {
  ExpectInvalid("  slices:\n  - sources: []\nmerge_method: passthrough\n", 3,
                "less indented than the recipe's first line (line 1, column 3)");
}

TEST_CASE("error: duplicate keys name both lines", "[merge][recipe]") {
  ExpectInvalid(std::string(kLinear) + "merge_method: ties\n", 9,
                "duplicate key `merge_method` (first at line 1)");
  ExpectInvalid(
      "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: 1\n"
      "      weight: 2\n",
      6, "duplicate key `weight` (first at line 5)");
}

TEST_CASE("error: parameters given as a list", "[merge][recipe]") {
  ExpectInvalid("merge_method: linear\nmodels: [{model: a}]\nparameters:\n  - weight: 1.0\n", 3,
                "`parameters` must be a mapping, got a list");
}

TEST_CASE("error: parameters given as a scalar", "[merge][recipe]") {
  ExpectInvalid("merge_method: linear\nmodels: [{model: a}]\nparameters: 1\n", 3,
                "`parameters` must be a mapping of `name: value`, got a scalar");
}

TEST_CASE("error: a parameter next to `parameters` in a model entry", "[merge][recipe]") {
  ExpectInvalid(R"(merge_method: ties
base_model: b
models:
  - model: a
    parameters:
      density: 0.5
    weight: 0.5
)",
                7,
                "recipe.yaml:7:5: `weight` is a sibling of `parameters` — indent it under "
                "`parameters:`");
}

TEST_CASE("error: a parameter in a model entry without `parameters`", "[merge][recipe]") {
  ExpectInvalid("merge_method: linear\nmodels:\n  - model: a\n    weight: 1\n", 4,
                "`weight` must be under `parameters:` in a `models:` entry");
}

TEST_CASE("error: a parameter next to `sources` in a slice", "[merge][recipe]") {
  ExpectInvalid(R"(merge_method: slerp
base_model: a
slices:
  - sources:
      - {model: a, layer_range: [0, 4]}
      - {model: b, layer_range: [0, 4]}
    t: 0.5
)",
                7, "`t` must be under `parameters:` in a slice");
}

TEST_CASE("error: unknown merge method lists the known ones", "[merge][recipe]") {
  ExpectInvalid("merge_method: della_ties\nmodels: [{model: a}]\n", 1,
                "unknown merge_method `della_ties`; mergekit 0.1.4 knows: linear, slerp, ");
}

TEST_CASE("error: missing merge_method", "[merge][recipe]") {
  ExpectInvalid("# x\nmodels: [{model: a}]\n", 2, "has no `merge_method:`");
}

TEST_CASE("error: both models and slices", "[merge][recipe]") {
  ExpectInvalid(std::string(kLinear) + "slices:\n  - sources: [{model: a, layer_range: [0, 1]}]\n",
                10, "give exactly one of `models:`, `slices:` or `modules:`");
}

TEST_CASE("error: no models at all", "[merge][recipe]") {
  ExpectInvalid("merge_method: linear\ndtype: float16\n", 1, "lists no models");
}

TEST_CASE("error: layer_range shape and order", "[merge][recipe]") {
  const std::string head = "merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n";
  ExpectInvalid(head + "        layer_range: [0, 4, 8]\n", 5, "must be two integers");
  ExpectInvalid(head + "        layer_range: [4, 4]\n", 5, "is empty; it is half-open");
  ExpectInvalid(head + "        layer_range: [0, 2.5]\n", 5, "non-negative integers, got '2.5'");
  ExpectInvalid(head, 4, "a slice source needs `layer_range:`");
}

TEST_CASE("error: sources of one slice with different lengths", "[merge][recipe]") {
  ExpectInvalid(R"(merge_method: linear
parameters: {weight: 1}
slices:
  - sources:
      - {model: a, layer_range: [0, 16]}
      - {model: b, layer_range: [8, 32]}
)",
                6, "same number of layers: `a` has 16, `b` has 24");
}

TEST_CASE("error: a method that needs a base model has none", "[merge][recipe]") {
  ExpectInvalid("merge_method: ties\nmodels: [{model: a, parameters: {weight: 1}}]\n", 1,
                "`ties` needs a `base_model:`");
}

TEST_CASE("error: slerp without t", "[merge][recipe]") {
  ExpectInvalid("models: [{model: a}, {model: b}]\nbase_model: a\nmerge_method: slerp\n", 3,
                "`slerp` needs parameter `t` (0 gives the base model, 1 the other one); add it");
}

TEST_CASE("error: slerp with t at the top level points at the stray key", "[merge][recipe]") {
  ExpectInvalid(
      "models: [{model: a}, {model: b}]\nbase_model: a\nmerge_method: slerp\nparameters:\nt: 0.5\n",
      5, "this `t:` is at the top level, where mergekit ignores it");
}

TEST_CASE("error: a model without the weight its method needs", "[merge][recipe]") {
  ExpectInvalid(
      "merge_method: linear\nmodels:\n  - {model: a, parameters: {weight: 1}}\n  - model: b\n", 4,
      "model `b` has no `weight`; `linear` needs one per model");
  // The base of a task-arithmetic merge needs none; a global weight covers all.
  MustParse(
      "merge_method: ties\nbase_model: //b\nmodels: [{model: /b}, {model: a}]\n"
      "parameters: {weight: 1}\n");
  MustParse(
      "merge_method: ties\nbase_model: //b\nmodels: [{model: /b}, "
      "{model: a, parameters: {weight: 1}}]\n");
}

TEST_CASE("error: unknown dtype", "[merge][recipe]") {
  ExpectInvalid(std::string(kLinear) + "dtype: bfloat\n", 9, "unknown `dtype` 'bfloat'");
  ExpectInvalid(std::string(kLinear) + "out_dtype: int3\n", 9, "unknown `out_dtype` 'int3'");
  ExpectInvalid(std::string(kLinear) + "dtype: I64\n", 9, "unknown `dtype` 'I64'");
}

TEST_CASE("error: tokenizer union is not supported yet", "[merge][recipe]") {
  ExpectError(std::string(kLinear) + "tokenizer_source: union\n", ErrorCode::kUnsupported, 9,
              "tokenizer source `union` is not supported yet");
  // A `tokenizer:` block defaults to union (§2.7).
  ExpectError(std::string(kLinear) + "tokenizer:\n  pad_to_multiple_of: 8\n",
              ErrorCode::kUnsupported, 9, "`union` is not supported yet");
}

TEST_CASE("error: tokenizer token overrides are not supported yet", "[merge][recipe]") {
  ExpectError(std::string(kLinear) + "tokenizer:\n  source: base\n  tokens:\n    x: {source: a}\n",
              ErrorCode::kUnsupported, 9, "`tokenizer: tokens:` overrides are not supported yet");
}

TEST_CASE("error: tokenizer_source and tokenizer together", "[merge][recipe]") {
  ExpectInvalid(std::string(kLinear) + "tokenizer_source: base\ntokenizer:\n  source: base\n", 10,
                "either `tokenizer_source:` or a `tokenizer:` block, not both");
}

TEST_CASE("error: an unnamed document before another", "[merge][recipe]") {
  ExpectInvalid(std::string(kLinear) + "---\n" + std::string(kLinear), 1,
                "followed by another but has no `name:`");
}

TEST_CASE("error: duplicate document names", "[merge][recipe]") {
  ExpectInvalid(std::string(kLinear) + "name: x\n---\n" + std::string(kLinear) + "name: x\n", 11,
                "duplicate document name `x` (first at line 1)");
}

TEST_CASE("error: documents that depend on each other", "[merge][recipe]") {
  for (std::string_view text : {"name: a\nmerge_method: passthrough\nmodels: [{model: b}]\n---\n"
                                "name: b\nmerge_method: passthrough\nmodels: [{model: a}]\n",
                                "name: a\nmerge_method: passthrough\nmodels: [{model: a}]\n"}) {
    formats::Result<RecipeFile> parsed = ParseRecipeText(text, "recipe.yaml");
    REQUIRE(!parsed.ok());
    CHECK(parsed.status().code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(parsed.status().message(), Catch::Contains("refer to each other in a cycle"));
  }
}

TEST_CASE("error: a cycle names only the documents on it, with their lines", "[merge][recipe]") {
  const std::string text =
      "name: a\nmerge_method: passthrough\nmodels: [{model: b}]\n---\n"
      "name: b\nmerge_method: passthrough\nmodels: [{model: a}]\n---\n"
      "merge_method: passthrough\nmodels: [{model: a}]\n";
  formats::Result<RecipeFile> parsed = ParseRecipeText(text, "recipe.yaml");
  REQUIRE(!parsed.ok());
  CHECK_THAT(parsed.status().message(),
             Catch::Contains("documents `a` (line 1), `b` (line 5) refer to each other"));
  CHECK_THAT(parsed.status().message(), !Catch::Contains("final document"));
}

TEST_CASE("error: a parameter that is not a number", "[merge][recipe]") {
  ExpectInvalid("merge_method: linear\nmodels: [{model: a}]\nparameters:\n  weight: half\n", 4,
                "parameter `weight` must be a number, got 'half'");
  ExpectInvalid("merge_method: linear\nmodels: [{model: a}]\nparameters:\n  weight: .inf\n", 4,
                "must be a finite number");
}

TEST_CASE("error: a parameter without a value", "[merge][recipe]") {
  ExpectInvalid("merge_method: linear\nmodels: [{model: a}]\nparameters:\n  weight:\n", 4,
                "parameter `weight` has no value");
}

TEST_CASE("error: an empty gradient", "[merge][recipe]") {
  ExpectInvalid("merge_method: linear\nmodels: [{model: a}]\nparameters:\n  weight: []\n", 4,
                "is an empty list");
}

TEST_CASE("error: a bare filter/value mapping", "[merge][recipe]") {
  ExpectInvalid(
      "merge_method: linear\nmodels: [{model: a}]\nparameters:\n  weight:\n"
      "    filter: mlp\n    value: 1\n",
      5, "single `filter`/`value` mapping");
}

TEST_CASE("error: a list mixing numbers and filters", "[merge][recipe]") {
  ExpectInvalid(
      "merge_method: linear\nmodels: [{model: a}]\nparameters:\n  weight:\n"
      "    - 1\n    - {filter: mlp, value: 1}\n",
      5, "mixes numbers and `filter`/`value` entries");
}

TEST_CASE("error: a conditional entry without value", "[merge][recipe]") {
  ExpectInvalid(
      "merge_method: linear\nmodels: [{model: a}]\nparameters:\n  weight:\n    - filter: mlp\n", 5,
      "a conditional entry needs `value:`");
}

TEST_CASE("error: a nested conditional value", "[merge][recipe]") {
  ExpectInvalid(
      "merge_method: linear\nmodels: [{model: a}]\nparameters:\n  weight:\n"
      "    - filter: mlp\n      value: {filter: x, value: 1}\n",
      6, "conditional lists do not nest");
}

TEST_CASE("error: a malformed model reference", "[merge][recipe]") {
  ExpectInvalid("merge_method: passthrough\nmodels:\n  - model: a+b+c\n", 3, "more than one '+'");
}

TEST_CASE("error: a models entry without model", "[merge][recipe]") {
  ExpectInvalid("merge_method: passthrough\nmodels:\n  - parameters: {scale: 1}\n", 3,
                "a `models:` entry needs `model:`");
}

TEST_CASE("error: passthrough with more than one input", "[merge][recipe]") {
  ExpectInvalid(R"(merge_method: passthrough
slices:
  - sources:
      - {model: a, layer_range: [0, 4]}
      - {model: b, layer_range: [0, 4]}
)",
                3, "passthrough takes exactly one source per slice");
  ExpectInvalid("merge_method: passthrough\nmodels: [{model: a}, {model: b}]\n", 2,
                "passthrough takes exactly one model");
}

TEST_CASE("error: mergekit-moe recipes are refused", "[merge][recipe]") {
  ExpectError("base_model: m\ngate_mode: hidden\nexperts:\n  - source_model: a\n",
              ErrorCode::kUnsupported, 1,
              "mergekit-moe recipes run with `alloy moe RECIPE OUT`");
}

TEST_CASE("error: an empty recipe", "[merge][recipe]") {
  ExpectInvalid("# only a comment\n\n", 1, "the recipe is empty");
}

TEST_CASE("error: a recipe that is not a mapping", "[merge][recipe]") {
  ExpectInvalid("- merge_method: linear\n", 1, "a recipe must be a mapping of keys");
}

TEST_CASE("error: an invalid chat template", "[merge][recipe]") {
  ExpectInvalid(std::string(kLinear) + "chat_template: chatmlx\n", 1, "invalid `chat_template`");
}

TEST_CASE("error: an unreadable recipe file", "[merge][recipe]") {
  testing::TempDir dir;
  formats::Result<RecipeFile> parsed = ParseRecipeFile(dir.Join("missing.yaml"));
  REQUIRE(!parsed.ok());
  CHECK(parsed.status().code() != ErrorCode::kInvalidArgument);
  CHECK_THAT(parsed.status().message(), Catch::Contains("missing.yaml"));
}

TEST_CASE("ParseRecipeFile reads a file and names it in messages", "[merge][recipe]") {
  testing::TempDir dir;
  const std::string path = dir.Join("r.yaml");
  testing::WriteFileBytes(path, std::string(kLinear) + "merge_method: ties\n");
  formats::Result<RecipeFile> parsed = ParseRecipeFile(path);
  REQUIRE(!parsed.ok());
  CHECK_THAT(parsed.status().message(), Catch::StartsWith(path + ":9:1: duplicate key"));
  testing::WriteFileBytes(path, kLinear);
  REQUIRE(ParseRecipeFile(path).ok());
}

}  // namespace
}  // namespace alloy::merge

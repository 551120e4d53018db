#include "merge/plan.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "examples/tiny_models.h"
#include "merge/model_opener.h"
#include "merge/recipe.h"
#include "tests/testing/temp_dir.h"

namespace alloy::merge {
namespace {

using formats::ErrorCode;

// Tiny models in a temp dir plus a disk opener; recipes say `$D/<name>`.
struct Models {
  testing::TempDir dir;
  DiskModelOpener opener;

  examples::TinyModelSpec Spec(examples::Family family = examples::Family::kLlama,
                               int model_index = 0) {
    examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", family);
    spec.hidden_size = 16;
    spec.intermediate_size = 32;
    spec.vocab_size = 64;
    spec.model_index = model_index;
    return spec;
  }
  void Write(const std::string& name, const examples::TinyModelSpec& spec) {
    REQUIRE(examples::WriteTinyModel(spec, dir.Join(name)).ok());
  }
  // Two llama models "a" (the base weights) and "b" (a fine-tune) of `layers` layers.
  void WritePair(int64_t layers) {
    examples::TinyModelSpec spec = Spec();
    spec.num_layers = layers;
    Write("a", spec);
    spec.model_index = 1;
    Write("b", spec);
  }
  Recipe Parse(std::string text) {
    for (size_t pos = 0; (pos = text.find("$D", pos)) != std::string::npos;) {
      text.replace(pos, 2, dir.path());
    }
    formats::Result<RecipeFile> parsed = ParseRecipeText(text, "recipe.yaml");
    INFO(parsed.status().ToString());
    REQUIRE(parsed.ok());
    return parsed->documents.back();
  }
  formats::Result<MergePlan> Plan(const std::string& text) {
    PlanInputs inputs;
    inputs.open = opener.AsOpener();
    inputs.recipe_name = "recipe.yaml";
    return PlanMerge(Parse(text), inputs);
  }
};

const PlannedTensor* FindTensor(const MergePlan& plan, const std::string& name) {
  for (const PlannedTensor& tensor : plan.tensors) {
    if (tensor.output_name == name) return &tensor;
  }
  return nullptr;
}

bool HasWarning(const MergePlan& plan, const std::string& substring) {
  for (const std::string& warning : plan.warnings) {
    if (warning.find(substring) != std::string::npos) return true;
  }
  return false;
}

size_t TensorCount(const examples::TinyModelSpec& spec) {
  return examples::TinyModelTensors(spec)->size();
}

TEST_CASE("plan: linear over three models", "[merge][plan]") {
  Models m;
  for (int i = 0; i < 3; ++i) m.Write("m" + std::to_string(i), m.Spec(examples::Family::kLlama, i));
  auto plan = m.Plan(R"(merge_method: linear
models:
  - model: $D/m0
    parameters: {weight: 0.5}
  - model: $D/m1
    parameters: {weight: 0.3}
  - model: $D/m2
    parameters: {weight: 0.2}
dtype: float16
)");
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  CHECK(plan->models.size() == 3);
  CHECK(!plan->base_model);
  CHECK(plan->config_donor == 0);
  CHECK(plan->num_layers == 2);
  CHECK(!plan->uses_slices);
  CHECK(plan->out_dtype == formats::DType::kF16);
  CHECK(plan->tensors.size() == TensorCount(m.Spec()));
  CHECK(plan->tensors.front().output_name == "model.embed_tokens.weight");
  CHECK(plan->tensors.back().output_layer == -1);
  uint64_t bytes = 0;
  for (const PlannedTensor& tensor : plan->tensors) {
    REQUIRE(tensor.inputs.size() == 3);
    CHECK(tensor.out_dtype == formats::DType::kF16);
    CHECK(tensor.params.at("normalize") == 1.0);
    CHECK(tensor.inputs[0].params.at("weight") == 0.5);
    CHECK(tensor.inputs[2].params.at("weight") == 0.2);
    CHECK(tensor.inputs[1].model_index == 1);
    CHECK(tensor.inputs[1].input_name == tensor.output_name);
    bytes += tensor.nbytes;
  }
  CHECK(bytes == plan->total_bytes);
  CHECK(plan->output_config["torch_dtype"] == "float16");
  CHECK(plan->output_config["num_hidden_layers"] == 2);
  const std::string summary = DescribePlan(*plan);
  CHECK(summary.find("method: linear") != std::string::npos);
  CHECK(summary.find("models: 3") != std::string::npos);
  CHECK(summary.find(std::to_string(plan->tensors.size()) + " tensors") != std::string::npos);
  CHECK(summary.find("F16") != std::string::npos);
}

TEST_CASE("plan: task_arithmetic adds the base as an input", "[merge][plan]") {
  Models m;
  m.Write("base", m.Spec());
  m.Write("a", m.Spec(examples::Family::kLlama, 1));
  m.Write("b", m.Spec(examples::Family::kLlama, 2));
  auto plan = m.Plan(R"(merge_method: task_arithmetic
base_model: $D/base
models:
  - model: $D/a
    parameters: {weight: 0.5}
  - model: $D/b
    parameters: {weight: 0.3}
parameters: {lambda: 0.8}
)");
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  REQUIRE(plan->models.size() == 3);
  CHECK(plan->base_model == size_t{2});
  CHECK(plan->models[2].is_base);
  CHECK(plan->config_donor == 2);
  CHECK(plan->out_dtype == formats::DType::kBF16);  // the base's stored dtype
  for (const PlannedTensor& tensor : plan->tensors) {
    REQUIRE(tensor.inputs.size() == 3);
    CHECK(tensor.inputs[2].is_base);
    CHECK(tensor.inputs[2].params.count("weight") == 0);
    CHECK(tensor.inputs[2].params.at("density") == 1.0);
    CHECK(tensor.inputs[1].params.at("weight") == 0.3);
    CHECK(tensor.params.at("lambda") == 0.8);
    CHECK(tensor.params.at("normalize") == 0.0);
    CHECK(tensor.params.at("rescale") == 0.0);
  }
}

TEST_CASE("plan: ties resolves per-model density before the global one", "[merge][plan]") {
  Models m;
  m.Write("base", m.Spec());
  m.Write("a", m.Spec(examples::Family::kLlama, 1));
  m.Write("b", m.Spec(examples::Family::kLlama, 2));
  auto plan = m.Plan(R"(merge_method: ties
base_model: $D/base
models:
  - model: $D/base
  - model: $D/a
    parameters: {weight: 1, density: 0.7}
  - model: $D/b
    parameters:
      weight: 0.5
      density:
        - filter: mlp
          value: 0.2
parameters: {density: 0.4}
)");
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  CHECK(plan->base_model == size_t{0});
  const PlannedTensor* mlp = FindTensor(*plan, "model.layers.1.mlp.up_proj.weight");
  const PlannedTensor* attn = FindTensor(*plan, "model.layers.1.self_attn.q_proj.weight");
  REQUIRE(mlp != nullptr);
  REQUIRE(attn != nullptr);
  CHECK(mlp->params.at("normalize") == 1.0);  // ties' default
  CHECK(mlp->inputs[1].params.at("density") == 0.7);
  CHECK(mlp->inputs[2].params.at("density") == 0.2);
  CHECK(attn->inputs[2].params.at("density") == 0.4);  // the filter does not match
  CHECK(attn->inputs[0].is_base);
}

TEST_CASE("plan: slerp t per layer follows mergekit's gradient formula", "[merge][plan]") {
  Models m;
  m.WritePair(5);
  auto plan = m.Plan(R"(slices:
  - sources:
      - model: $D/a
        layer_range: [0, 5]
      - model: $D/b
        layer_range: [0, 5]
merge_method: slerp
base_model: $D/elsewhere
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: [0.2, 0.8]
)");
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  CHECK(plan->models.size() == 2);
  CHECK(HasWarning(*plan, "is not a source of this slice"));
  const std::vector<double> attn = {0, 0.5, 0.3, 0.7, 1};
  const std::vector<double> mlp = {1, 0.5, 0.7, 0.3, 0};
  for (int k = 0; k < 5; ++k) {
    const double t = k / 4.0;
    const std::string layer = "model.layers." + std::to_string(k) + ".";
    const PlannedTensor* q = FindTensor(*plan, layer + "self_attn.q_proj.weight");
    const PlannedTensor* up = FindTensor(*plan, layer + "mlp.up_proj.weight");
    const PlannedTensor* norm = FindTensor(*plan, layer + "input_layernorm.weight");
    REQUIRE(q != nullptr);
    REQUIRE(up != nullptr);
    REQUIRE(norm != nullptr);
    CHECK(q->t == t);
    CHECK(q->params.at("t") == EvaluateGradient(attn, t));
    CHECK(up->params.at("t") == EvaluateGradient(mlp, t));
    CHECK(norm->params.at("t") == Approx(0.2 + 0.6 * t));
    REQUIRE(q->inputs.size() == 2);
    CHECK(q->inputs[0].is_base);  // Decision (i): the first source
    CHECK(!q->inputs[1].is_base);
  }
  // Non-layer tensors, post-weights included, are evaluated at t = 0 (Decision
  // (d)).
  CHECK(FindTensor(*plan, "model.embed_tokens.weight")->params.at("t") == 0.2);
  CHECK(FindTensor(*plan, "model.norm.weight")->params.at("t") == 0.2);
  CHECK(FindTensor(*plan, "lm_head.weight")->params.at("t") == 0.2);
}

TEST_CASE("plan: passthrough frankenmerge renumbers layers", "[merge][plan]") {
  Models m;
  m.WritePair(4);
  auto plan = m.Plan(R"(slices:
  - sources:
    - model: $D/a
      layer_range: [0, 4]
  - sources:
    - model: $D/b
      layer_range: [2, 4]
merge_method: passthrough
)");
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  CHECK(plan->uses_slices);
  CHECK(plan->num_layers == 6);
  CHECK(plan->output_config["num_hidden_layers"] == 6);
  const PlannedTensor* up5 = FindTensor(*plan, "model.layers.5.mlp.up_proj.weight");
  REQUIRE(up5 != nullptr);
  REQUIRE(up5->inputs.size() == 1);
  CHECK(up5->inputs[0].model_index == 1);
  CHECK(up5->inputs[0].input_name == "model.layers.3.mlp.up_proj.weight");
  CHECK(up5->output_layer == 5);
  CHECK(up5->t == 1.0);
  CHECK(FindTensor(*plan, "model.layers.4.mlp.up_proj.weight")->t == 0.0);
  CHECK(FindTensor(*plan, "model.layers.6.mlp.up_proj.weight") == nullptr);
  CHECK(FindTensor(*plan, "model.embed_tokens.weight")->inputs[0].model_index == 0);
  CHECK(FindTensor(*plan, "model.norm.weight")->inputs[0].model_index == 1);
  CHECK(FindTensor(*plan, "lm_head.weight")->inputs[0].model_index == 1);
  CHECK(plan->tensors.size() == 3 + 6 * 9);
}

TEST_CASE("plan: a tied model reads lm_head from its embedding", "[merge][plan]") {
  Models m;
  m.Write("untied", m.Spec());
  examples::TinyModelSpec tied = m.Spec(examples::Family::kLlama, 1);
  tied.tie_embeddings = true;
  m.Write("tied", tied);
  m.Write("g0", m.Spec(examples::Family::kGemma));
  m.Write("g1", m.Spec(examples::Family::kGemma, 1));
  auto plan = m.Plan(R"(merge_method: linear
models:
  - model: $D/untied
    parameters: {weight: 1}
  - model: $D/tied
    parameters: {weight: 1}
)");
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  const PlannedTensor* head = FindTensor(*plan, "lm_head.weight");
  REQUIRE(head != nullptr);
  REQUIRE(head->inputs.size() == 2);
  CHECK(!head->inputs[0].is_tied);
  CHECK(head->inputs[1].is_tied);
  CHECK(head->inputs[1].input_name == "model.embed_tokens.weight");
  CHECK(head->is_embed);

  auto gemma = m.Plan(R"(merge_method: linear
models:
  - model: $D/g0
    parameters: {weight: 1}
  - model: $D/g1
    parameters: {weight: 1}
)");
  INFO(gemma.status().ToString());
  REQUIRE(gemma.ok());
  CHECK(FindTensor(*gemma, "lm_head.weight") == nullptr);  // gemma ties it; none is written
  CHECK(gemma->tensors.size() == TensorCount(m.Spec(examples::Family::kGemma)));
}

TEST_CASE("plan: a weight that no filter gives is a missing parameter", "[merge][plan]") {
  Models m;
  m.Write("a", m.Spec());
  m.Write("b", m.Spec(examples::Family::kLlama, 1));
  auto plan = m.Plan(R"(merge_method: linear
models:
  - model: $D/a
    parameters: {weight: 0.5}
  - model: $D/b
    parameters:
      weight:
        - filter: mlp
          value: 0.5
)");
  REQUIRE(!plan.ok());
  CHECK(plan.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(plan.status().message(),
             Catch::Contains("recipe.yaml:5: Missing required parameter `weight` for model") &&
                 Catch::Contains("/b', tensor 'model.embed_tokens.weight'"));
}

TEST_CASE("plan: a shape mismatch names the tensor and both models", "[merge][plan]") {
  Models m;
  m.Write("a", m.Spec());
  examples::TinyModelSpec wide = m.Spec(examples::Family::kLlama, 1);
  wide.intermediate_size = 48;
  m.Write("b", wide);
  auto plan = m.Plan(R"(merge_method: linear
models:
  - model: $D/a
    parameters: {weight: 0.5}
  - model: $D/b
    parameters: {weight: 0.5}
)");
  REQUIRE(!plan.ok());
  CHECK(plan.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(plan.status().message(),
             Catch::Contains("tensor 'model.layers.0.mlp.") &&
                 Catch::Contains("[16, 32] in model '" + m.dir.path() + "/a'") &&
                 Catch::Contains("[16, 48] in model '" + m.dir.path() + "/b'"));
}

TEST_CASE("plan: a layer range beyond the model is refused", "[merge][plan]") {
  Models m;
  m.Write("a", m.Spec());
  auto plan = m.Plan(R"(slices:
  - sources:
    - model: $D/a
      layer_range: [0, 8]
merge_method: passthrough
)");
  REQUIRE(!plan.ok());
  CHECK(plan.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(plan.status().message(),
             Catch::Contains("recipe.yaml:3: layer_range [0, 8] of model") &&
                 Catch::Contains("is out of bounds: it has 2 layers"));
}

TEST_CASE("plan: slerp needs exactly two models", "[merge][plan]") {
  Models m;
  for (int i = 0; i < 3; ++i) m.Write("m" + std::to_string(i), m.Spec(examples::Family::kLlama, i));
  auto plan = m.Plan(R"(slices:
  - sources:
      - {model: $D/m0, layer_range: [0, 2]}
      - {model: $D/m1, layer_range: [0, 2]}
      - {model: $D/m2, layer_range: [0, 2]}
merge_method: slerp
base_model: $D/m0
parameters: {t: 0.5}
)");
  REQUIRE(!plan.ok());
  CHECK_THAT(plan.status().message(),
             Catch::Contains("'slerp' merges exactly 1 model(s) besides the "
                             "base, this slice has 2"));
}

TEST_CASE("plan: different vocabularies merge the common sub-matrix", "[merge][plan]") {
  Models m;
  m.Write("a", m.Spec());
  examples::TinyModelSpec big = m.Spec(examples::Family::kLlama, 1);
  big.vocab_size = 80;
  m.Write("b", big);
  const std::string models = R"(
models:
  - model: $D/a
    parameters: {weight: 0.5}
  - model: $D/b
    parameters: {weight: 0.5}
)";
  auto plan = m.Plan("merge_method: linear" + models);
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  const PlannedTensor* embed = FindTensor(*plan, "model.embed_tokens.weight");
  CHECK(embed->shape == std::vector<int64_t>{64, 16});
  CHECK(embed->inputs[1].input_shape == std::vector<int64_t>{80, 16});
  CHECK(FindTensor(*plan, "lm_head.weight")->shape == std::vector<int64_t>{64, 16});
  CHECK(HasWarning(*plan, "using the common sub-matrix of size [64, 16]"));
  CHECK(plan->output_config["vocab_size"] == 64);

  auto with_tokenizer = m.Plan("merge_method: linear\ntokenizer_source: base" + models);
  REQUIRE(!with_tokenizer.ok());
  CHECK(with_tokenizer.status().code() == ErrorCode::kUnsupported);

  auto ta = m.Plan("merge_method: task_arithmetic\nbase_model: $D/a" + models);
  REQUIRE(ta.ok());
  CHECK(FindTensor(*ta, "model.embed_tokens.weight")->shape == std::vector<int64_t>{64, 16});
  auto ta_small_base = m.Plan("merge_method: task_arithmetic\nbase_model: $D/b" + models);
  REQUIRE(!ta_small_base.ok());
  CHECK_THAT(ta_small_base.status().message(), Catch::Contains("model.embed_tokens.weight"));
}

TEST_CASE("plan: one model spelled two ways is one model", "[merge][plan]") {
  Models m;
  m.Write("base", m.Spec());
  m.Write("ft", m.Spec(examples::Family::kLlama, 1));
  std::filesystem::create_directory_symlink(m.dir.Join("ft"), m.dir.Join("link"));
  auto plan = m.Plan(R"(merge_method: ties
base_model: /$D//base/
models:
  - model: $D/base
  - model: $D/ft
    parameters: {weight: 1.0, density: 0.6}
  - model: $D/link
    parameters: {weight: 0.5}
)");
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  REQUIRE(plan->models.size() == 2);
  CHECK(plan->base_model == size_t{0});
  const PlannedTensor& tensor = plan->tensors.front();
  REQUIRE(tensor.inputs.size() == 2);
  CHECK(tensor.inputs[0].is_base);
  CHECK(tensor.inputs[1].params.at("weight") == 1.0);  // the first entry wins
  CHECK(tensor.inputs[1].params.at("density") == 0.6);
}

TEST_CASE("plan: the disk opener applies --path-map and opens each model once", "[merge][plan]") {
  Models m;
  m.Write("a", m.Spec());
  m.Write("b", m.Spec(examples::Family::kLlama, 1));
  DiskModelOpener opener({{"E:/models", m.dir.path()}});
  PlanInputs inputs;
  inputs.open = opener.AsOpener();
  auto plan = PlanMerge(m.Parse(R"(merge_method: linear
models:
  - model: 'E:\models\a'
    parameters: {weight: 1}
  - model: E:/models/b
    parameters: {weight: 1}
  - model: 'E:\models\a\'
    parameters: {weight: 2}
)"),
                        inputs);
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  REQUIRE(plan->models.size() == 2);
  CHECK(plan->models[0].directory == std::filesystem::canonical(m.dir.Join("a")).string());
  CHECK(plan->models[0].ref.text == "E:\\models\\a");
  CHECK(plan->tensors.front().inputs[0].params.at("weight") == 1.0);

  ModelRef missing;
  missing.path = "E:/models/none";
  missing.text = missing.path;
  auto opened = opener.Open(missing);
  REQUIRE(!opened.ok());
  CHECK(opened.status().code() == ErrorCode::kNotFound);
}

TEST_CASE("plan: an injected opener's errors name the recipe line", "[merge][plan]") {
  Models m;
  PlanInputs inputs;
  inputs.recipe_name = "r.yaml";
  inputs.open = [](const ModelRef& ref) -> formats::Result<OpenedModel> {
    return formats::Status::NotFound("no checkpoint at " + ref.path);
  };
  auto plan = PlanMerge(m.Parse("merge_method: linear\nmodels:\n  - model: x/y\n    "
                                "parameters: {weight: 1}\n"),
                        inputs);
  REQUIRE(!plan.ok());
  CHECK(plan.status().code() == ErrorCode::kNotFound);
  CHECK_THAT(plan.status().message(), Catch::StartsWith("r.yaml:3: model 'x/y'"));
}

// An in-memory source with headers only: the planner never reads data.
class HeaderOnlySource : public formats::TensorSource {
 public:
  HeaderOnlySource(std::string name, std::vector<formats::TensorInfo> tensors)
      : name_(std::move(name)), tensors_(std::move(tensors)) {}
  const std::string& name() const override { return name_; }
  const std::vector<formats::TensorInfo>& tensors() const override { return tensors_; }
  const formats::TensorInfo* Find(std::string_view name) const override {
    for (const formats::TensorInfo& info : tensors_) {
      if (info.name == name) return &info;
    }
    return nullptr;
  }
  formats::Result<std::span<const uint8_t>> View(const formats::TensorInfo&) override {
    FAIL("the planner must not read tensor data");
    return formats::Status::Unsupported("no data");
  }
  formats::Status Read(const formats::TensorInfo&, uint64_t, std::span<uint8_t>) const override {
    FAIL("the planner must not read tensor data");
    return formats::Status::Unsupported("no data");
  }
  void Release(const formats::TensorInfo&, uint64_t, uint64_t) override {}
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const std::vector<std::string>& files() const override { return files_; }

 private:
  std::string name_;
  std::vector<formats::TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> files_;
};

formats::TensorInfo Info(std::string name, std::vector<int64_t> shape,
                         formats::DType dtype = formats::DType::kBF16) {
  return *formats::MakeTensorInfo(std::move(name), dtype, std::move(shape));
}

// Two-layer models: `extra` tensors are appended to the common ones.
struct FakeModels {
  std::map<std::string, std::unique_ptr<HeaderOnlySource>> sources;
  std::map<std::string, nlohmann::json> configs;

  void Add(const std::string& path, std::vector<formats::TensorInfo> extra, int64_t n_config = 2,
           int64_t mlp = 8) {
    std::vector<formats::TensorInfo> tensors = {Info("model.embed_tokens.weight", {32, 4})};
    for (int layer = 0; layer < 2; ++layer) {
      const std::string prefix = "model.layers." + std::to_string(layer) + ".";
      tensors.push_back(Info(prefix + "self_attn.q_proj.weight", {4, 4}));
      tensors.push_back(Info(prefix + "mlp.up_proj.weight", {mlp, 4}));
    }
    tensors.push_back(Info("model.norm.weight", {4}));
    for (formats::TensorInfo& info : extra) tensors.push_back(std::move(info));
    sources[path] = std::make_unique<HeaderOnlySource>(path, std::move(tensors));
    configs[path] = {{"num_hidden_layers", n_config}, {"architectures", {"LlamaForCausalLM"}}};
  }
  formats::Result<MergePlan> Plan(const std::string& text) {
    formats::Result<RecipeFile> parsed = ParseRecipeText(text, "fake.yaml");
    REQUIRE(parsed.ok());
    PlanInputs inputs;
    inputs.open = [this](const ModelRef& ref) -> formats::Result<OpenedModel> {
      auto it = sources.find(ref.path);
      if (it == sources.end()) return formats::Status::NotFound("no model " + ref.path);
      return OpenedModel{it->second.get(), ref.path, ref.path, configs[ref.path], ""};
    };
    return PlanMerge(parsed->documents.back(), inputs);
  }
};

const char* const kFakeTaskArithmetic = R"(merge_method: task_arithmetic
base_model: base
models:
  - model: a
    parameters: {weight: 1}
)";

TEST_CASE("plan: optional tensors drop the models that lack them", "[merge][plan]") {
  FakeModels fake;
  fake.Add("base", {});
  fake.Add("a", {Info("model.layers.0.self_attn.q_proj.bias", {4}),
                 Info("model.layers.1.self_attn.q_proj.bias", {4})});
  auto plan = fake.Plan(kFakeTaskArithmetic);
  INFO(plan.status().ToString());
  REQUIRE(!plan.ok());  // the base lacks a tensor the other model has
  CHECK_THAT(plan.status().message(), Catch::Contains("the base model 'base' lacks it"));

  auto linear = fake.Plan(R"(merge_method: linear
models:
  - {model: base, parameters: {weight: 1}}
  - {model: a, parameters: {weight: 1}}
)");
  REQUIRE(linear.ok());
  const PlannedTensor* bias = FindTensor(*linear, "model.layers.1.self_attn.q_proj.bias");
  REQUIRE(bias != nullptr);
  REQUIRE(bias->inputs.size() == 1);
  CHECK(bias->inputs[0].model_index == 1);
  CHECK(HasWarning(*linear,
                   "model 'base' lacks 'model.layers.0.self_attn.q_proj.bias' (and 1 "
                   "more like it)"));
}

TEST_CASE("plan: task arithmetic skips a model whose shape differs from the base",
          "[merge][plan]") {
  FakeModels fake;
  fake.Add("base", {});
  fake.Add("a", {}, 2, 12);
  auto plan = fake.Plan(kFakeTaskArithmetic);
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  const PlannedTensor* up = FindTensor(*plan, "model.layers.0.mlp.up_proj.weight");
  REQUIRE(up->inputs.size() == 1);
  CHECK(up->inputs[0].is_base);
  CHECK(HasWarning(*plan,
                   "skipping model 'a' due to size mismatch ([12, 4] vs "
                   "the base's [8, 4])"));
}

TEST_CASE("plan: non-float tensors are copied from the first input", "[merge][plan]") {
  FakeModels fake;
  fake.Add("base", {Info("model.position_ids", {1, 16}, formats::DType::kI64)});
  fake.Add("a", {Info("model.position_ids", {1, 16}, formats::DType::kI64)});
  auto plan = fake.Plan(kFakeTaskArithmetic);
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  const PlannedTensor* ids = FindTensor(*plan, "model.position_ids");
  REQUIRE(ids != nullptr);
  CHECK(ids->copy_only);
  REQUIRE(ids->inputs.size() == 1);
  CHECK(ids->inputs[0].is_base);
  CHECK(ids->out_dtype == formats::DType::kI64);
  CHECK(ids->nbytes == 16 * 8);
  CHECK(FindTensor(*plan, "model.norm.weight")->out_dtype == formats::DType::kBF16);
}

TEST_CASE("plan: config.json layer count must match the tensor names", "[merge][plan]") {
  FakeModels fake;
  fake.Add("base", {}, 3);
  fake.Add("a", {});
  auto plan = fake.Plan(kFakeTaskArithmetic);
  REQUIRE(!plan.ok());
  CHECK_THAT(plan.status().message(),
             Catch::Contains("model 'base': config.json says num_hidden_layers = 3 but its "
                             "tensor names have 2 layers"));
}

TEST_CASE("plan: mixing architectures needs allow_crimes", "[merge][plan]") {
  FakeModels fake;
  fake.Add("base", {});
  fake.Add("a", {});
  fake.configs["a"]["architectures"] = {"MistralForCausalLM"};
  auto plan = fake.Plan(kFakeTaskArithmetic);
  REQUIRE(!plan.ok());
  CHECK_THAT(plan.status().message(), Catch::Contains("needs --allow-crimes"));
}

TEST_CASE("plan: one module reads its parameters at precedence level 3", "[merge][plan]") {
  FakeModels fake;
  fake.Add("a", {});
  fake.Add("b", {});
  auto plan = fake.Plan(R"(merge_method: slerp
base_model: a
modules:
  default:
    parameters:
      t: 0.25
    slices:
      - sources:
          - {model: a, layer_range: [0, 2]}
          - {model: b, layer_range: [0, 2]}
)");
  INFO(plan.status().ToString());
  REQUIRE(plan.ok());
  CHECK(plan->uses_slices);
  CHECK(plan->base_model == size_t{0});
  for (const PlannedTensor& tensor : plan->tensors) CHECK(tensor.params.at("t") == 0.25);
}

TEST_CASE("plan: a task-arithmetic slice must contain its base", "[merge][plan]") {
  FakeModels fake;
  fake.Add("base", {});
  fake.Add("a", {});
  auto plan = fake.Plan(R"(merge_method: task_arithmetic
base_model: base
slices:
  - sources:
      - {model: a, layer_range: [0, 2], parameters: {weight: 1}}
)");
  REQUIRE(!plan.ok());
  CHECK(plan.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(plan.status().message(),
             Catch::Contains("'task_arithmetic' needs the base model 'base' among the slice's "
                             "sources"));
}

}  // namespace
}  // namespace alloy::merge

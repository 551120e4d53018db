// `alloy upscale`: RunUpscale called with option structs on an 8-layer tiny
// llama (every output tensor checked against the source tensor it must be a
// copy or an average of), the generated recipe, every error path, and the
// built binary (help text, an error, --print-recipe).
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cmd_upscale.h"
#include "examples/tiny_models.h"
#include "formats/file_util.h"
#include "formats/model_dir.h"
#include "kernels/convert.h"
#include "merge/model_info.h"
#include "merge/recipe.h"
#include "tests/cli/cli_test_support.h"
#include "tests/testing/temp_dir.h"

namespace alloy::cli {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

using testing_support::Binary;
using testing_support::Q;
using testing_support::Run;

Run Upscale(const UpscaleCmdOptions& options) {
  return testing_support::RunCommand(RunUpscale, options);
}

// An 8-layer tiny llama (bf16) at dir/m.
std::string EightLayerModel(const TempDir& dir) {
  examples::TinyModelSpec spec = *examples::TinyModelPreset("tiny", examples::Family::kLlama);
  spec.num_layers = 8;
  REQUIRE(examples::WriteTinyModel(spec, dir.Join("m")).ok());
  return dir.Join("m");
}

UpscaleCmdOptions Options(const TempDir& dir, int64_t layers) {
  UpscaleCmdOptions options;
  options.model = dir.Join("m");
  options.output = dir.Join("out");
  options.layers = layers;
  options.quiet = true;
  options.threads = 2;
  return options;
}

// Every tensor of the model at `dir`, name → bytes.
std::map<std::string, std::string> TensorBytes(const std::string& dir) {
  auto src = formats::OpenModel(dir, formats::FileAccess::kPread);
  REQUIRE(src.ok());
  std::map<std::string, std::string> out;
  for (const formats::TensorInfo& info : (*src)->tensors()) {
    REQUIRE(info.dtype == formats::DType::kBF16);
    std::string bytes(info.nbytes, '\0');
    REQUIRE((*src)
                ->Read(info, 0,
                       std::span<uint8_t>(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()))
                .ok());
    out[info.name] = std::move(bytes);
  }
  return out;
}

// "model.layers.12.mlp.up_proj.weight" with layer 12 replaced by `layer`.
std::string WithLayer(const std::string& name, int64_t layer) {
  const int64_t old = merge::LayerIndexOf(name);
  REQUIRE(old >= 0);
  const std::string from = ".layers." + std::to_string(old) + ".";
  const size_t pos = name.find(from);
  REQUIRE(pos != std::string::npos);
  return name.substr(0, pos) + ".layers." + std::to_string(layer) + "." +
         name.substr(pos + from.size());
}

std::vector<float> DecodeBf16(const std::string& bytes) {
  std::vector<float> out(bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t bits;
    std::memcpy(&bits, bytes.data() + 2 * i, 2);
    out[i] = kernels::Bf16ToF32(bits);
  }
  return out;
}

int64_t ConfigLayers(const std::string& dir) {
  const auto config = nlohmann::json::parse(testing::ReadFileBytes(dir + "/config.json"));
  return config.at("num_hidden_layers").get<int64_t>();
}

// Output layer count from tensor names.
int64_t TensorLayers(const std::map<std::string, std::string>& tensors) {
  int64_t max = -1;
  for (const auto& [name, bytes] : tensors) max = std::max(max, merge::LayerIndexOf(name));
  return max + 1;
}

// Pre/post weights (no layer index) are the model's, byte for byte.
void CheckNonLayerTensors(const std::map<std::string, std::string>& source,
                          const std::map<std::string, std::string>& output) {
  size_t n = 0;
  for (const auto& [name, bytes] : output) {
    if (merge::LayerIndexOf(name) >= 0) continue;
    INFO(name);
    REQUIRE(source.count(name) == 1);
    CHECK(bytes == source.at(name));
    ++n;
  }
  CHECK(n == 3);  // embed_tokens, norm, lm_head
}

TEST_CASE("upscale: layer split follows SOLAR (d1 = ceil and d2 = floor)", "[cli][upscale]") {
  auto solar = ComputeUpscaleLayout(32, 48, std::nullopt);
  REQUIRE(solar.ok());
  CHECK(solar->first_end() == 24);
  CHECK(solar->second_begin() == 8);
  auto odd = ComputeUpscaleLayout(32, 47, std::nullopt);
  REQUIRE(odd.ok());
  CHECK(odd->drop_first == 9);
  CHECK(odd->drop_second == 8);
  CHECK(odd->first_end() + (32 - odd->second_begin()) == 47);
  auto full = ComputeUpscaleLayout(32, 64, std::nullopt);
  REQUIRE(full.ok());
  CHECK(full->first_end() == 32);
  CHECK(full->second_begin() == 0);
  auto blend = ComputeUpscaleLayout(32, 46, 2);
  REQUIRE(blend.ok());
  CHECK(blend->first_end() == 24);
  CHECK(blend->second_begin() == 8);
  CHECK(blend->first_end() + (32 - blend->second_begin()) - blend->blend == 46);
}

TEST_CASE("upscale 8 -> 12 layers copies every tensor from the right source layer",
          "[cli][upscale]") {
  TempDir dir;
  const std::string model = EightLayerModel(dir);
  Run r = Upscale(Options(dir, 12));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.empty());  // --quiet

  const auto source = TensorBytes(model);
  const auto output = TensorBytes(dir.Join("out"));
  CHECK(TensorLayers(output) == 12);
  CHECK(ConfigLayers(dir.Join("out")) == 12);
  CHECK(output.size() == 3 + 12 * (source.size() - 3) / 8);
  CheckNonLayerTensors(source, output);
  size_t n_layer_tensors = 0;
  for (const auto& [name, bytes] : output) {
    const int64_t i = merge::LayerIndexOf(name);
    if (i < 0) continue;
    // Copy 1 keeps [0, 6), copy 2 keeps [2, 8).
    const int64_t from = i < 6 ? i : i - 6 + 2;
    const std::string source_name = WithLayer(name, from);
    INFO(name << " <- " << source_name);
    REQUIRE(source.count(source_name) == 1);
    CHECK(bytes == source.at(source_name));
    ++n_layer_tensors;
  }
  CHECK(n_layer_tensors == 12 * (source.size() - 3) / 8);

  // Everything `alloy merge` writes; mergekit_config.yml is the generated recipe.
  for (const char* file : {"config.json", "tokenizer.json", "tokenizer_config.json",
                           "mergekit_config.yml", "README.md", "model.safetensors"}) {
    CHECK(formats::IsRegularFile(dir.Join("out/") + file));
  }
  UpscaleCmdOptions print = Options(dir, 12);
  print.print_recipe = true;
  Run printed = Upscale(print);
  REQUIRE(printed.code == 0);
  CHECK(testing::ReadFileBytes(dir.Join("out/mergekit_config.yml")) == printed.out);
  // No work directory is left next to OUT.
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    CHECK(entry.path().filename().string().find("alloy-upscale") == std::string::npos);
  }
}

TEST_CASE("upscale --blend 2 to 10 layers averages the seam layer pairs", "[cli][upscale]") {
  TempDir dir;
  const std::string model = EightLayerModel(dir);
  UpscaleCmdOptions options = Options(dir, 10);
  options.blend = 2;
  Run r = Upscale(options);
  INFO(r.err);
  REQUIRE(r.code == 0);

  const auto source = TensorBytes(model);
  const auto output = TensorBytes(dir.Join("out"));
  CHECK(TensorLayers(output) == 10);
  CHECK(ConfigLayers(dir.Join("out")) == 10);
  CHECK(output.size() == 3 + 10 * (source.size() - 3) / 8);
  CheckNonLayerTensors(source, output);
  // d1 = d2 = 2: copy 1 [0, 6), copy 2 [2, 8); output 0-3 = 0-3,
  // 4-5 = avg(4-5, 2-3), 6-9 = 4-7.
  size_t n_blended = 0, n_exact = 0;
  for (const auto& [name, bytes] : output) {
    const int64_t i = merge::LayerIndexOf(name);
    if (i < 0) continue;
    INFO(name);
    if (i < 4 || i >= 6) {
      const std::string source_name = WithLayer(name, i < 4 ? i : i - 2);
      REQUIRE(source.count(source_name) == 1);
      CHECK(bytes == source.at(source_name));
      continue;
    }
    const std::vector<float> a = DecodeBf16(source.at(WithLayer(name, i)));
    const std::vector<float> b = DecodeBf16(source.at(WithLayer(name, i - 2)));
    const std::vector<float> got = DecodeBf16(bytes);
    REQUIRE(got.size() == a.size());
    size_t n_bad = 0, n_differs_from_a = 0;
    for (size_t e = 0; e < got.size(); ++e) {
      const double avg = 0.5 * static_cast<double>(a[e]) + 0.5 * static_cast<double>(b[e]);
      // One rounding to bf16: within half a bf16 ulp (8 significant bits) of
      // the exact average, and equal to the round-to-nearest-even result.
      const double half_ulp = avg == 0 ? 0 : std::ldexp(1.0, std::ilogb(avg) - 8);
      if (std::fabs(static_cast<double>(got[e]) - avg) > half_ulp) ++n_bad;
      if (kernels::F32ToBf16(got[e]) == kernels::F32ToBf16(static_cast<float>(avg))) ++n_exact;
      if (got[e] != a[e]) ++n_differs_from_a;
    }
    CHECK(n_bad == 0);
    CHECK(n_differs_from_a > 0);  // really an average, not copy 1's layer
    n_blended += got.size();
  }
  CHECK(n_blended > 0);
  CHECK(n_exact == n_blended);
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    CHECK(entry.path().filename().string().find("alloy-upscale") == std::string::npos);
  }
}

TEST_CASE("upscale --print-recipe prints a recipe with the right layer ranges",
          "[cli][upscale]") {
  TempDir dir;
  EightLayerModel(dir);
  UpscaleCmdOptions options = Options(dir, 12);
  options.print_recipe = true;
  options.output.clear();  // OUT is not needed
  Run r = Upscale(options);
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto file = merge::ParseRecipeText(r.out, "printed");
  REQUIRE(file.ok());
  CHECK(file->warnings.empty());
  REQUIRE(file->documents.size() == 1);
  const merge::Recipe& recipe = file->documents[0];
  CHECK(recipe.merge_method == "passthrough");
  REQUIRE(recipe.dtype.has_value());
  CHECK(*recipe.dtype == formats::DType::kBF16);
  REQUIRE(recipe.slices.size() == 2);
  REQUIRE(recipe.slices[0].sources.size() == 1);
  REQUIRE(recipe.slices[1].sources.size() == 1);
  CHECK(recipe.slices[0].sources[0].model.path == dir.Join("m"));
  CHECK(recipe.slices[0].sources[0].layer_begin == 0);
  CHECK(recipe.slices[0].sources[0].layer_end == 6);
  CHECK(recipe.slices[1].sources[0].layer_begin == 2);
  CHECK(recipe.slices[1].sources[0].layer_end == 8);
  CHECK_FALSE(fs::exists(dir.Join("out")));

  SECTION("with --blend: a seam document, then a linear document") {
    options.layers = 10;
    options.blend = 2;
    r = Upscale(options);
    REQUIRE(r.code == 0);
    file = merge::ParseRecipeText(r.out, "printed");
    REQUIRE(file.ok());
    CHECK(file->warnings.empty());
    REQUIRE(file->documents.size() == 2);
    const merge::Recipe& seam = file->documents[0];
    CHECK(seam.merge_method == "passthrough");
    REQUIRE(seam.slices.size() == 1);
    CHECK(seam.slices[0].sources[0].layer_begin == 2);
    CHECK(seam.slices[0].sources[0].layer_end == 4);
    const merge::Recipe& last = file->documents[1];
    CHECK(last.merge_method == "linear");
    REQUIRE(last.slices.size() == 4);
    auto range = [&](size_t s, size_t src) {
      return std::make_pair(last.slices[s].sources[src].layer_begin,
                            last.slices[s].sources[src].layer_end);
    };
    auto weight = [&](size_t s, size_t src) {
      return last.slices[s].sources[src].parameters.at("weight").numeric.values.at(0);
    };
    CHECK(range(0, 0) == std::make_pair(int64_t{0}, int64_t{4}));
    CHECK(weight(0, 0) == 1.0);
    for (size_t k = 0; k < 2; ++k) {
      REQUIRE(last.slices[1 + k].sources.size() == 2);
      const int64_t i = static_cast<int64_t>(k);
      CHECK(range(1 + k, 0) == std::make_pair(4 + i, 5 + i));
      CHECK(last.slices[1 + k].sources[1].model.intermediate == seam.name);
      CHECK(range(1 + k, 1) == std::make_pair(i, i + 1));
      CHECK(weight(1 + k, 0) == 0.5);
      CHECK(weight(1 + k, 1) == 0.5);
    }
    CHECK(range(3, 0) == std::make_pair(int64_t{4}, int64_t{8}));
    CHECK(weight(3, 0) == 1.0);
  }
}

TEST_CASE("upscale: a model path with spaces and quotes is quoted in the recipe",
          "[cli][upscale]") {
  TempDir dir;
  EightLayerModel(dir);
  const std::string odd = dir.Join("my model's: dir");
  fs::rename(dir.Join("m"), odd);
  UpscaleCmdOptions options = Options(dir, 9);
  options.model = odd;
  options.print_recipe = true;
  Run r = Upscale(options);
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto file = merge::ParseRecipeText(r.out, "printed");
  REQUIRE(file.ok());
  REQUIRE(file->documents.size() == 1);
  CHECK(file->documents[0].slices.at(0).sources.at(0).model.path == odd);
  options.print_recipe = false;
  r = Upscale(options);
  CHECK(r.code == 0);
  CHECK(ConfigLayers(dir.Join("out")) == 9);
}

TEST_CASE("upscale --dry-run plans and writes nothing and --json is parseable", "[cli][upscale]") {
  TempDir dir;
  EightLayerModel(dir);
  UpscaleCmdOptions options = Options(dir, 12);
  options.quiet = false;
  options.dry_run = true;
  Run r = Upscale(options);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("8 -> 12 layers") &&
                        Catch::Contains("12 layers (num_hidden_layers rewritten)") &&
                        Catch::Contains("dry run: the recipe is valid; nothing was written"));
  CHECK_FALSE(fs::exists(dir.Join("out")));

  options.dry_run = false;
  options.json = true;
  options.blend = 1;
  options.layers = 9;
  r = Upscale(options);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["layers_in"] == 8);
  CHECK(j["layers_out"] == 9);
  CHECK(j["blend"] == 1);
  CHECK(j["method"] == "linear");
  CHECK(j["tensors"].get<size_t>() > 0);
  CHECK(j["bytes_written"].get<uint64_t>() > 0);
  CHECK(ConfigLayers(dir.Join("out")) == 9);
}

TEST_CASE("upscale: --layers not more than the model's layers exits 2", "[cli][upscale][errors]") {
  TempDir dir;
  EightLayerModel(dir);
  for (int64_t n : {8, 5, 0, -3}) {
    Run r = Upscale(Options(dir, n));
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("--layers " + std::to_string(n) +
                                      " is not more than the model's 8 layers") &&
                          Catch::Contains("possible values are 9 to 16"));
  }
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

TEST_CASE("upscale: --layers more than two copies exits 2", "[cli][upscale][errors]") {
  TempDir dir;
  EightLayerModel(dir);
  Run r = Upscale(Options(dir, 17));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--layers 17 is more than 2 × 8 layers") &&
                        Catch::Contains("possible values are 9 to 16"));
  UpscaleCmdOptions options = Options(dir, 15);
  options.blend = 2;
  r = Upscale(options);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--layers 15 is more than 2 × 8 - 2 = 14 layers") &&
                        Catch::Contains("possible values are 9 to 14"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

TEST_CASE("upscale: a bad --blend exits 2", "[cli][upscale][errors]") {
  TempDir dir;
  EightLayerModel(dir);
  UpscaleCmdOptions options = Options(dir, 10);
  for (int64_t k : {0, -1}) {
    options.blend = k;
    Run r = Upscale(options);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("--blend " + std::to_string(k) + " must be at least 1"));
  }
  options.blend = 8;
  Run r = Upscale(options);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--blend 8 is too large for a model of 8 layers: at most 7"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
}

TEST_CASE("upscale: a missing model exits 2 naming it", "[cli][upscale][errors]") {
  TempDir dir;
  UpscaleCmdOptions options = Options(dir, 12);
  options.model = dir.Join("nope");
  Run r = Upscale(options);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("alloy: error: model '" + dir.Join("nope") + "'"));
  CHECK_FALSE(fs::exists(dir.Join("out")));
  options.model = "no-such-org/no-such-model";  // not a local path: the hub cache
  r = Upscale(options);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("model 'no-such-org/no-such-model' not found"));
}

TEST_CASE("upscale: a missing OUT without --print-recipe exits 2", "[cli][upscale][errors]") {
  TempDir dir;
  EightLayerModel(dir);
  UpscaleCmdOptions options = Options(dir, 12);
  options.output.clear();
  Run r = Upscale(options);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("OUT is required (or pass --print-recipe)"));
}

TEST_CASE("upscale: an existing non-empty OUT needs --overwrite", "[cli][upscale][errors]") {
  TempDir dir;
  EightLayerModel(dir);
  UpscaleCmdOptions options = Options(dir, 10);
  options.blend = 1;
  REQUIRE(Upscale(options).code == 0);
  Run r = Upscale(options);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("exists and is not empty; pass --overwrite"));
  options.overwrite = true;
  options.layers = 11;
  r = Upscale(options);
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(ConfigLayers(dir.Join("out")) == 11);
}

TEST_CASE("upscale --help mentions every option and an example", "[cli][upscale]") {
  TempDir dir;
  Run r = Binary("upscale --help", dir);
  CHECK(r.code == 0);
  for (const char* option : {"MODEL", "OUT", "--layers", "--blend", "--print-recipe",
                             "--overwrite", "--threads", "--quiet", "--json", "--dry-run",
                             "Examples:", "--layers 48", "Exit codes"}) {
    CHECK_THAT(r.out, Catch::Contains(option));
  }
  r = Binary("--help", dir);
  CHECK_THAT(r.out, Catch::Contains("upscale"));
}

TEST_CASE("upscale binary: a bad --layers exits 2 and --print-recipe works", "[cli][upscale]") {
  TempDir dir;
  EightLayerModel(dir);
  Run r = Binary("upscale " + Q(dir.Join("m")) + " " + Q(dir.Join("out")) + " --layers 17", dir);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("alloy: error: --layers 17 is more than 2 × 8 layers"));
  r = Binary("upscale " + Q(dir.Join("m")) + " --layers 12 --blend", dir);
  CHECK(r.code == 2);  // usage error
  r = Binary("upscale " + Q(dir.Join("m")) + " --layers 12 --print-recipe --json", dir);
  CHECK(r.code == 2);  // excluded together
  r = Binary("upscale " + Q(dir.Join("m")) + " --layers 12 --print-recipe", dir);
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("layer_range: [0, 6]") &&
                        Catch::Contains("layer_range: [2, 8]"));
  r = Binary("upscale " + Q(dir.Join("m")) + " " + Q(dir.Join("out")) + " --layers 12", dir);
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("wrote ") && Catch::Contains("(12 layers"));
  CHECK(ConfigLayers(dir.Join("out")) == 12);
}

}  // namespace
}  // namespace alloy::cli

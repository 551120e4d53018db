// Helpers for merge method tests: hand-made mini models (a config.json and a
// few tensors with chosen values) and a one-call "run this recipe on them and
// give me the output values".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "formats/status.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/writer_fixtures.h"

namespace alloy::merge::testing_support {

// A tensor with the given values stored as `dtype` (f32, bf16, f16: RNE).
alloy::testing::FixtureTensor ValuesTensor(std::string name, std::vector<int64_t> shape,
                                           const std::vector<float>& values,
                                           formats::DType dtype = formats::DType::kF32);

// A Llama-like model directory: config.json (LlamaForCausalLM,
// num_hidden_layers = layers) and `tensors` in model.safetensors. Layer
// tensors must be named model.layers.<i>.<...>.
struct MiniModel {
  std::string name;  // directory name under the test's TempDir
  std::vector<alloy::testing::FixtureTensor> tensors;
  int layers = 1;
};

// The layer tensor OneTensorModel holds.
inline constexpr const char* kLayerWeight = "model.layers.0.mlp.down_proj.weight";

// A one-layer model holding only kLayerWeight with `values` (shape: 1-D
// when empty).
MiniModel OneTensorModel(const std::string& name, const std::vector<float>& values,
                         std::vector<int64_t> shape = {});

// Writes `m` under dir (once: an existing model.safetensors is kept) and
// returns its directory.
std::string WriteMiniModel(const alloy::testing::TempDir& dir, const MiniModel& m);

struct MergeOutput {
  formats::Status status;
  std::string out_dir;
  std::map<std::string, std::vector<float>> values;  // output tensors decoded to f32
  std::map<std::string, formats::DType> dtypes;
  std::string stderr_text;  // warnings
};

struct RunOptions {
  int threads = 1;
  uint64_t seed = 0;
  std::string out_name = "out";
};

// Writes `models` under dir, replaces every "$D" in `recipe` by dir.path(),
// writes it to dir/<out_name>.yaml and runs RunMergeFile into
// dir/<out_name>. On success the output is read back.
MergeOutput RunRecipe(const alloy::testing::TempDir& dir, std::string recipe,
                      const std::vector<MiniModel>& models, const RunOptions& options = {});

// The raw bytes of `file` (whole file), for byte-identity checks.
std::string FileBytes(const std::string& file);

// Runs every recipe at --threads 1 and 2 (outputs <prefix><i>-t1/-t2 under
// dir) and checks that model.safetensors is byte-identical.
void CheckThreadsAgree(const alloy::testing::TempDir& dir, const std::vector<std::string>& recipes,
                       const std::vector<MiniModel>& models, const std::string& prefix);

}  // namespace alloy::merge::testing_support
